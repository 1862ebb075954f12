-- What each change to the served peers touched, so that a gateway session re-reads only
-- those devices and users instead of its location's whole peer set on every change.
-- `epoch` is the change counter's value after the change; a row with neither a device nor a
-- user means anything may have changed (a location, its groups, a gateway token). Rows
-- older than what sessions need are pruned by core.
CREATE TABLE peer_changes (
    epoch BIGINT NOT NULL,
    device_id BIGINT,
    user_id BIGINT
);
CREATE INDEX peer_changes_epoch ON peer_changes(epoch);

-- Each trigger now bumps the counter and records what it touched, in that order.
DROP TRIGGER devices_epoch_ins;
DROP TRIGGER devices_epoch_del;
DROP TRIGGER devices_epoch_upd;
DROP TRIGGER device_addresses_epoch_ins;
DROP TRIGGER device_addresses_epoch_del;
DROP TRIGGER device_addresses_epoch_upd;
DROP TRIGGER users_epoch_active;
DROP TRIGGER users_epoch_del;
DROP TRIGGER groups_epoch_del;
DROP TRIGGER group_members_epoch_ins;
DROP TRIGGER group_members_epoch_del;
DROP TRIGGER location_groups_epoch_ins;
DROP TRIGGER location_groups_epoch_del;
DROP TRIGGER locations_epoch_ins;
DROP TRIGGER locations_epoch_del;
DROP TRIGGER locations_epoch_upd;
DROP TRIGGER gateway_tokens_epoch_revoke;
DROP TRIGGER gateway_tokens_epoch_del;

CREATE TRIGGER devices_epoch_ins AFTER INSERT ON devices BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NEW.id, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER devices_epoch_del AFTER DELETE ON devices BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, OLD.id, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER devices_epoch_upd AFTER UPDATE OF pubkey, user_id, location_id ON devices BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NEW.id, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER device_addresses_epoch_ins AFTER INSERT ON device_addresses BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NEW.device_id, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER device_addresses_epoch_del AFTER DELETE ON device_addresses BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, OLD.device_id, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER device_addresses_epoch_upd AFTER UPDATE ON device_addresses BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NEW.device_id, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER users_epoch_active AFTER UPDATE OF is_active ON users WHEN OLD.is_active IS NOT NEW.is_active BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, NEW.id FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER users_epoch_del AFTER DELETE ON users BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, OLD.id FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER groups_epoch_del AFTER DELETE ON groups BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER group_members_epoch_ins AFTER INSERT ON group_members BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, NEW.user_id FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER group_members_epoch_del AFTER DELETE ON group_members BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, OLD.user_id FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER location_groups_epoch_ins AFTER INSERT ON location_groups BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER location_groups_epoch_del AFTER DELETE ON location_groups BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER locations_epoch_ins AFTER INSERT ON locations BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER locations_epoch_del AFTER DELETE ON locations BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER locations_epoch_upd AFTER UPDATE ON locations BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER gateway_tokens_epoch_revoke AFTER UPDATE OF revoked_at ON gateway_tokens BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, NULL FROM peer_epoch WHERE id = 1;
END;
CREATE TRIGGER gateway_tokens_epoch_del AFTER DELETE ON gateway_tokens BEGIN
    UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    INSERT INTO peer_changes (epoch, device_id, user_id) SELECT value, NULL, NULL FROM peer_epoch WHERE id = 1;
END;
