-- Gateways: per-location tokens, the agents seen, their peers' counters, and the change
-- counter gateway sessions poll.

CREATE TABLE gateway_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    location_id BIGINT NOT NULL REFERENCES locations(id) ON DELETE CASCADE,
    hash TEXT NOT NULL UNIQUE,
    name TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX gateway_tokens_location ON gateway_tokens(location_id);

-- One row per (location, gateway key) ever seen. A gateway is connected while `connected`
-- is set AND `last_seen_at` is recent: the session refreshes it, so rows left behind by a
-- crashed core time out instead of claiming a connection forever.
CREATE TABLE gateways (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    location_id BIGINT NOT NULL REFERENCES locations(id) ON DELETE CASCADE,
    pubkey TEXT NOT NULL,
    version TEXT NOT NULL,
    hostname TEXT NOT NULL,
    remote TEXT,
    connected BIGINT NOT NULL DEFAULT 0,
    -- The session holding the connection; a stale session's close leaves a newer one alone.
    session_id TEXT,
    connected_at BIGINT,
    last_seen_at BIGINT,
    disconnected_at BIGINT,
    UNIQUE (location_id, pubkey)
);

CREATE TABLE peer_stats (
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    location_id BIGINT NOT NULL REFERENCES locations(id) ON DELETE CASCADE,
    endpoint TEXT,
    latest_handshake BIGINT,
    rx_bytes BIGINT NOT NULL,
    tx_bytes BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, location_id)
);
CREATE INDEX peer_stats_location ON peer_stats(location_id);

-- Bumped by the triggers below on every write that can change a gateway's configuration,
-- whatever path made it (API, enrollment, directory sync, another core replica).
CREATE TABLE peer_epoch (
    id BIGINT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO peer_epoch (id, value) VALUES (1, 0);

CREATE TRIGGER devices_epoch_ins AFTER INSERT ON devices BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER devices_epoch_del AFTER DELETE ON devices BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER devices_epoch_upd AFTER UPDATE OF pubkey, user_id ON devices BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER device_addresses_epoch_ins AFTER INSERT ON device_addresses BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER device_addresses_epoch_del AFTER DELETE ON device_addresses BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER device_addresses_epoch_upd AFTER UPDATE ON device_addresses BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER users_epoch_active AFTER UPDATE OF is_active ON users WHEN OLD.is_active IS NOT NEW.is_active
BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER users_epoch_del AFTER DELETE ON users BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER groups_epoch_del AFTER DELETE ON groups BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER group_members_epoch_ins AFTER INSERT ON group_members BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER group_members_epoch_del AFTER DELETE ON group_members BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER location_groups_epoch_ins AFTER INSERT ON location_groups BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER location_groups_epoch_del AFTER DELETE ON location_groups BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;

CREATE TRIGGER locations_epoch_ins AFTER INSERT ON locations BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER locations_epoch_del AFTER DELETE ON locations BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER locations_epoch_upd AFTER UPDATE ON locations BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;

-- A revoked token ends its sessions.
CREATE TRIGGER gateway_tokens_epoch_revoke AFTER UPDATE OF revoked_at ON gateway_tokens
BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER gateway_tokens_epoch_del AFTER DELETE ON gateway_tokens BEGIN UPDATE peer_epoch SET value = value + 1 WHERE id = 1; END;
