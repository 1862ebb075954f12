-- Directory sync. `source` says who is authoritative for a user: 'local' (Onramp: the
-- admin) or 'ldap' (the directory sync; linking a local user sets it too).
-- `directory_disabled` marks a user the sync disabled, so it enables only those again.
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
ALTER TABLE users ADD COLUMN directory_dn TEXT;
ALTER TABLE users ADD COLUMN directory_disabled BIGINT NOT NULL DEFAULT 0;

-- One row per directory source: the lease that lets one process (of all core replicas and
-- CLIs sharing the database) sync at a time, and the last run's outcome.
CREATE TABLE directory_sync (
    source TEXT PRIMARY KEY,
    holder TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    next_run_at BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    last_started BIGINT,
    last_finished BIGINT,
    last_error TEXT,
    last_summary TEXT
);
