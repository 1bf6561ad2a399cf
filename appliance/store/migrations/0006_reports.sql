-- Post-call AI reports (issue 4): one per call, written by the local LLM from the transcript.
-- report_enc is the report JSON sealed (AES-256-GCM) under a key derived from the data keys
-- of `key_subjects` (the call's subjects and those the report names), so erasing any of them
-- shreds it. `errors` and `notes` hold field paths and rule names only, never values.
CREATE TABLE call_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE REFERENCES calls (id) ON DELETE CASCADE,
    line TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'needs_review', 'failed')),
    attempts INTEGER NOT NULL,
    schema_id TEXT NOT NULL,            -- the schema's $id, or sha256:<hex> of its text
    model TEXT NOT NULL,                -- manifest name of the LLM ('' when none ran)
    report_enc BLOB NOT NULL,
    key_subjects TEXT NOT NULL,         -- comma-separated subject ids, in key derivation order
    errors TEXT NOT NULL DEFAULT '[]',  -- JSON: what each failed attempt ran into
    notes TEXT NOT NULL DEFAULT '{}',   -- JSON: paths nulled (unsupported) and filled (facts)
    review_id INTEGER                   -- the human review item, when flagged
);
CREATE INDEX call_reports_created ON call_reports (created_at);
