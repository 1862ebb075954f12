-- Sign-in sessions of the admin web UI and the self-service portal. Kept in the database,
-- not in a process, so every core replica behind a load balancer knows every session.
-- The cookie carries a random secret; only its SHA-256 is stored.
CREATE TABLE web_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- Per-session anti-CSRF token every state-changing form and htmx request must echo.
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    ip TEXT,
    user_agent TEXT
);
CREATE INDEX web_sessions_user ON web_sessions(user_id);

-- Failed sign-ins, for the per-account and per-address limits (shared by all replicas).
CREATE TABLE web_login_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL,
    ip TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX web_login_failures_user ON web_login_failures(username, at);
CREATE INDEX web_login_failures_ip ON web_login_failures(ip, at);
