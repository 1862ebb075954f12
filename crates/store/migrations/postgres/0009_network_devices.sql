-- Network devices: headless machines (servers, routers) that belong to one location and
-- to no user. A device row has either a user (a user device, whose locations follow the
-- user's groups) or a location (a network device). A network device is created by an
-- admin before its key is known: `pubkey` stays NULL until the machine enrolls with a
-- `network_device` token (such tokens have no user; `device_id` names their device).
ALTER TABLE devices ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE devices ALTER COLUMN pubkey DROP NOT NULL;
ALTER TABLE devices ADD COLUMN location_id BIGINT REFERENCES locations(id) ON DELETE CASCADE;
ALTER TABLE devices ADD COLUMN description TEXT;
ALTER TABLE devices ADD CONSTRAINT devices_owner CHECK ((user_id IS NULL) <> (location_id IS NULL));
-- Network device names are unique per location (user device names per user, as before).
CREATE UNIQUE INDEX devices_location_name ON devices(location_id, name) WHERE location_id IS NOT NULL;

ALTER TABLE tokens ALTER COLUMN user_id DROP NOT NULL;
CREATE INDEX tokens_device ON tokens(device_id, kind);

-- Gateways hear a network device's key (set at enrollment) and its location.
DROP TRIGGER devices_epoch ON devices;
CREATE CONSTRAINT TRIGGER devices_epoch AFTER INSERT OR DELETE OR UPDATE OF pubkey, user_id, location_id ON devices
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_peer_epoch();
