-- Privacy part 2 (issue 5): rights requests (Art. 15-22), restrictions, legal holds and the
-- list of erased subjects (re-applied when an older backup is restored).

-- One data subject request. Never holds personal data in the clear: the identifier and any
-- parameters (rectified values) are sealed under the keyring's 'values' key and emptied when
-- the subject is erased; `response` and the log hold counts and ids only.
CREATE TABLE rights_requests (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('access', 'erasure', 'rectification', 'restriction', 'objection')),
    status TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    blind_index BLOB NOT NULL,
    identifier_enc BLOB NOT NULL,
    params_enc BLOB NOT NULL DEFAULT x'',
    channel TEXT NOT NULL,              -- cli, api, ui, phone
    received_at REAL NOT NULL,
    due_at REAL NOT NULL,
    extended INTEGER NOT NULL DEFAULT 0,
    extension_reason TEXT NOT NULL DEFAULT '',
    verified_at REAL,
    verified_by TEXT NOT NULL DEFAULT '',
    verification TEXT NOT NULL DEFAULT '', -- method and the attesting admin's note
    code_hash BLOB,                     -- one-time code (spoken to the subject), keyed hash
    code_expires_at REAL,
    code_attempts INTEGER NOT NULL DEFAULT 0,
    checkpoint INTEGER NOT NULL DEFAULT 0, -- steps done: processing resumes after them
    refused_reason TEXT NOT NULL DEFAULT '',
    response TEXT NOT NULL DEFAULT '',  -- JSON for the subject, no personal data
    export_path TEXT NOT NULL DEFAULT '',
    closed_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX rights_requests_open ON rights_requests (status, due_at);
CREATE INDEX rights_requests_subject ON rights_requests (blind_index);

-- The execution log: every step's outcome, failures included (no personal data).
CREATE TABLE rights_request_log (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL REFERENCES rights_requests (id),
    at REAL NOT NULL,
    step TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'info')),
    message TEXT NOT NULL
);
CREATE INDEX rights_request_log_request ON rights_request_log (request_id, id);

-- Restricted subjects (Art. 18): frozen, never dialled, excluded from processing.
CREATE TABLE restrictions (
    blind_index BLOB PRIMARY KEY,
    request_id INTEGER,
    added_at REAL NOT NULL,
    added_by TEXT NOT NULL
);

-- Legal holds override retention and erasure until released or expired.
CREATE TABLE legal_holds (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL CHECK (scope IN ('subject', 'call', 'case')),
    case_ref TEXT NOT NULL DEFAULT '',
    subject_id INTEGER,                 -- scope 'subject'
    reason TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    released_at REAL
);
CREATE TABLE legal_hold_calls (
    hold_id INTEGER NOT NULL REFERENCES legal_holds (id),
    call_id TEXT NOT NULL,
    PRIMARY KEY (hold_id, call_id)
) WITHOUT ROWID;
CREATE INDEX legal_hold_calls_call ON legal_hold_calls (call_id);

-- Subjects erased: a backup taken before the erasure is restored with these erased again.
CREATE TABLE erased_subjects (
    blind_index BLOB PRIMARY KEY,
    erased_at REAL NOT NULL,
    request_id INTEGER
);
