-- API tokens for the JSON API (issue 5 item 10; the admin UI's users come with issue 6).
-- Only a SHA-256 of the token's random secret is kept: the token is shown once at creation.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,               -- space-separated, e.g. "rights:read rights:write"
    secret_sha256 BLOB NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    expires_at REAL,
    last_used_at REAL,
    revoked_at REAL
);
