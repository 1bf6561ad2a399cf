-- Admin UI users and their sessions (issue 6). Passwords: argon2id hashes. Sessions: only the
-- SHA-256 of the cookie's random value is stored, so a copy of the database cannot log in.
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'dpo', 'operator', 'auditor')),
    password_hash TEXT NOT NULL,
    must_change INTEGER NOT NULL DEFAULT 1,  -- a one-time password must be replaced at login
    lines TEXT NOT NULL DEFAULT '',          -- operators: the lines whose calls they may see
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    disabled_at REAL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until REAL,
    last_login_at REAL
);

CREATE TABLE sessions (
    id_sha256 BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
