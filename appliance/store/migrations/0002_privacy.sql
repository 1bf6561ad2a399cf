-- Privacy core (issue 5, first part): key ring, data subjects and their links, the audit
-- chain, the do-not-call list, and encrypted recordings.

-- Keys wrapped under the master key (AES-256-GCM): the blind-index key, the key for
-- system-held values (DNC numbers) and the audit chain key. Rotation re-wraps these rows.
CREATE TABLE keyring (
    name TEXT PRIMARY KEY,
    wrapped BLOB NOT NULL,
    kek_id TEXT NOT NULL,               -- id of the master key that wraps it
    created_at REAL NOT NULL
);

-- A data subject: one person-identifier (E.164 number, e-mail, extension, ...). Its data key
-- encrypts everything about it; deleting the row shreds every copy of that data.
CREATE TABLE subjects (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('phone', 'email', 'extension', 'other', 'call')),
    blind_index BLOB NOT NULL UNIQUE,   -- HMAC-SHA256 of the normalised identifier
    value_enc BLOB NOT NULL,            -- the identifier, sealed under the subject's data key
    wrapped_key BLOB NOT NULL,          -- the subject's data key, wrapped under the master key
    kek_id TEXT NOT NULL,
    created_at REAL NOT NULL
);

-- What each subject's data reached. item_type grows with later issues (transcript, report,
-- lead, consent); item_id is the item's key in its own table, as text.
CREATE TABLE subject_links (
    subject_id INTEGER NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    item_type TEXT NOT NULL,
    item_id TEXT NOT NULL,
    role TEXT NOT NULL,                 -- caller, callee, key (a recording's key holder), ...
    linked_at REAL NOT NULL,
    PRIMARY KEY (subject_id, item_type, item_id, role)
) WITHOUT ROWID;
CREATE INDEX subject_links_item ON subject_links (item_type, item_id);

-- Append-only (the triggers; one line each: migrations split at ';' ending a line),
-- hash-chained (HMAC-SHA256 under the audit key) record of every read, export,
-- change and deletion of personal data. Never holds personal data itself.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    purpose TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Numbers never to be dialled. Kept apart from subjects: an opt-out outlives erasure.
CREATE TABLE dnc (
    id INTEGER PRIMARY KEY,
    blind_index BLOB NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    number_enc BLOB NOT NULL,           -- sealed under the keyring's 'values' key
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    added_at REAL NOT NULL,
    added_by TEXT NOT NULL
);

-- Recordings are stored encrypted (appliance.privacy.stream format); sha256 and size_bytes
-- stay those of the plaintext WAV.
ALTER TABLE recordings ADD COLUMN cipher TEXT NOT NULL DEFAULT '';
ALTER TABLE recordings ADD COLUMN key_subjects TEXT NOT NULL DEFAULT '';
ALTER TABLE recordings ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
