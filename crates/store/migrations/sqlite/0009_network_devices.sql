-- Network devices: headless machines (servers, routers) that belong to one location and
-- to no user. A device row has either a user (a user device, whose locations follow the
-- user's groups) or a location (a network device). A network device is created by an
-- admin before its key is known: `pubkey` stays NULL until the machine enrolls with a
-- `network_device` token (such tokens have no user; `device_id` names their device).
--
-- SQLite cannot drop NOT NULL, so `devices` and `tokens` are rebuilt. Migrations run in a
-- transaction, where foreign keys cannot be switched off, and dropping a parent table
-- runs its ON DELETE actions: the child rows are kept aside first and put back after.

CREATE TEMP TABLE keep_device_addresses AS SELECT * FROM device_addresses;
CREATE TEMP TABLE keep_polling_tokens AS SELECT * FROM polling_tokens;
CREATE TEMP TABLE keep_peer_stats AS SELECT * FROM peer_stats;
CREATE TEMP TABLE keep_token_sessions AS SELECT * FROM token_sessions;
CREATE TEMP TABLE keep_tokens AS SELECT * FROM tokens;
CREATE TEMP TABLE keep_seq AS SELECT name, seq FROM sqlite_sequence WHERE name IN ('devices', 'tokens');

CREATE TABLE devices_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    pubkey TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    location_id BIGINT REFERENCES locations(id) ON DELETE CASCADE,
    description TEXT,
    UNIQUE (user_id, name),
    CHECK ((user_id IS NULL) <> (location_id IS NULL))
);
INSERT INTO devices_new (id, user_id, name, pubkey, created_at)
    SELECT id, user_id, name, pubkey, created_at FROM devices;
DROP TABLE devices;
ALTER TABLE devices_new RENAME TO devices;

CREATE TABLE tokens_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    user_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
    issued_by BIGINT REFERENCES users(id) ON DELETE SET NULL,
    email TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    session_deadline BIGINT,
    used_at BIGINT,
    revoked_at BIGINT,
    device_id BIGINT REFERENCES devices(id) ON DELETE SET NULL
);
INSERT INTO tokens_new (id, hash, kind, user_id, issued_by, email, created_at, expires_at, session_deadline,
                        used_at, revoked_at, device_id)
    SELECT id, hash, kind, user_id, issued_by, email, created_at, expires_at, session_deadline,
           used_at, revoked_at, device_id FROM keep_tokens;
DROP TABLE tokens;
ALTER TABLE tokens_new RENAME TO tokens;

INSERT INTO device_addresses SELECT * FROM keep_device_addresses;
INSERT INTO polling_tokens SELECT * FROM keep_polling_tokens;
INSERT INTO peer_stats SELECT * FROM keep_peer_stats;
INSERT INTO token_sessions SELECT * FROM keep_token_sessions;
-- The polling tokens' delete trigger recorded the live tokens as removed: they are not.
DELETE FROM removed_polling_tokens WHERE hash IN (SELECT hash FROM keep_polling_tokens);
-- Ids of deleted rows are never handed out again.
UPDATE sqlite_sequence SET seq = max(seq, (SELECT k.seq FROM keep_seq k WHERE k.name = sqlite_sequence.name))
    WHERE name IN (SELECT name FROM keep_seq);

DROP TABLE keep_device_addresses;
DROP TABLE keep_polling_tokens;
DROP TABLE keep_peer_stats;
DROP TABLE keep_token_sessions;
DROP TABLE keep_tokens;
DROP TABLE keep_seq;

CREATE UNIQUE INDEX devices_location_name ON devices(location_id, name) WHERE location_id IS NOT NULL;
CREATE INDEX tokens_user ON tokens(user_id, kind);
CREATE INDEX tokens_user_created ON tokens(user_id, kind, created_at);
CREATE INDEX tokens_device ON tokens(device_id, kind);

-- The triggers of migration 0005 went with the old table; gateways also hear a network
-- device's key (set at enrollment) and its location.
CREATE TRIGGER devices_epoch_ins AFTER INSERT ON devices BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER devices_epoch_del AFTER DELETE ON devices BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER devices_epoch_upd AFTER UPDATE OF pubkey, user_id, location_id ON devices
BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
