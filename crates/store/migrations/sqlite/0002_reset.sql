-- Browser sessions of enrollment and password-reset tokens: the edge's cookie carries an
-- opaque random id, only its hash is stored here, so every edge and core replica resolves it.
CREATE TABLE token_sessions (
    hash TEXT NOT NULL PRIMARY KEY,
    token_id BIGINT NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);
CREATE INDEX token_sessions_expiry ON token_sessions(expires_at);
CREATE INDEX tokens_user_created ON tokens(user_id, kind, created_at);
