-- The device an enrollment or desktop-configuration session registered: one per session.
ALTER TABLE tokens ADD COLUMN device_id BIGINT REFERENCES devices(id) ON DELETE SET NULL;
