-- The administrator's contact from the last enrollment start, shown when a later token
-- (update-instance) or the polling token is refused.
ALTER TABLE instances ADD COLUMN admin_contact TEXT;
-- SHA-256 of the token that enrolled or last updated the instance: a provisioning.json still
-- holding it (the client stopped between saving and deleting the file) is removed at start.
ALTER TABLE instances ADD COLUMN spent_token_sha256 TEXT;
