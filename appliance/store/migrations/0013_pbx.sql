-- PBX configuration (issue 11). The whole configuration (trunks, extensions, inbound routes,
-- outbound rules, settings) is one JSON snapshot per applied version: the newest row is what
-- is live, and a rollback appends a copy of an older one, so history is never rewritten.
-- Secrets inside (trunk and SIP passwords) are sealed with the keyring ('values' key).
CREATE TABLE pbx_versions (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    files_sha TEXT NOT NULL,
    rollback_of INTEGER
);
-- Addresses blocked from SIP after repeated failed authentication (fail2ban-style).
CREATE TABLE pbx_blocks (
    address TEXT PRIMARY KEY,
    blocked_at REAL NOT NULL,
    until REAL NOT NULL,
    failures INTEGER NOT NULL,
    reason TEXT NOT NULL
);
-- Desk-phone provisioning: the SIP password is handed out once per issued token.
CREATE TABLE pbx_provisioning (
    mac TEXT PRIMARY KEY,
    extension TEXT NOT NULL,
    issued_at REAL NOT NULL,
    delivered_at REAL
);
