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

-- The counter is still bumped once per transaction, at commit, under its row lock: so
-- epochs follow commit order, and every row of a given epoch is committed before a reader
-- can see that epoch.
CREATE OR REPLACE FUNCTION bump_peer_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rec RECORD;
    touched_device BIGINT;
    touched_user BIGINT;
BEGIN
    IF current_setting('onramp.peer_epoch_bumped', true) IS DISTINCT FROM 'yes' THEN
        PERFORM set_config('onramp.peer_epoch_bumped', 'yes', true);
        UPDATE peer_epoch SET value = value + 1 WHERE id = 1;
    END IF;
    IF TG_OP = 'DELETE' THEN rec := OLD; ELSE rec := NEW; END IF;
    IF TG_TABLE_NAME = 'devices' THEN
        touched_device := rec.id;
    ELSIF TG_TABLE_NAME = 'device_addresses' THEN
        touched_device := rec.device_id;
    ELSIF TG_TABLE_NAME = 'users' THEN
        touched_user := rec.id;
    ELSIF TG_TABLE_NAME = 'group_members' THEN
        touched_user := rec.user_id;
    END IF;
    INSERT INTO peer_changes (epoch, device_id, user_id)
        SELECT value, touched_device, touched_user FROM peer_epoch WHERE id = 1;
    RETURN NULL;
END
$$;
