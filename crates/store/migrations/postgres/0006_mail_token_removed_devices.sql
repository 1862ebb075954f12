-- The token a queued message carries (invitation, desktop configuration, password reset):
-- the outbox worker checks it at send time and cancels a message whose token was revoked,
-- replaced, used or has expired, instead of mailing a dead link.
ALTER TABLE mail_outbox ADD COLUMN token_id BIGINT;

-- Polling tokens of deleted devices (and of deleted users' devices), by hash, so that a
-- poll with one is told "this device was removed" instead of "invalid token". Filled by a
-- trigger, so every path that deletes a device (also the cascade from a user) records it.
CREATE TABLE removed_polling_tokens (
    hash TEXT PRIMARY KEY,
    removed_at BIGINT NOT NULL
);

CREATE FUNCTION record_removed_polling_token() RETURNS trigger AS $$
BEGIN
    INSERT INTO removed_polling_tokens (hash, removed_at)
    VALUES (OLD.hash, EXTRACT(EPOCH FROM now())::BIGINT)
    ON CONFLICT (hash) DO NOTHING;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER polling_tokens_removed AFTER DELETE ON polling_tokens
    FOR EACH ROW EXECUTE FUNCTION record_removed_polling_token();
