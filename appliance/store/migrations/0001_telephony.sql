-- Calls, their CDRs and recordings, and the lines they reached.
CREATE TABLE lines (
    name TEXT PRIMARY KEY,
    extension TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    record_legs TEXT NOT NULL,          -- comma-separated: caller, callee, mixed
    updated_at REAL NOT NULL
);

-- One row per call (Asterisk linkedid): what the caller experienced.
CREATE TABLE calls (
    id TEXT PRIMARY KEY,                -- Asterisk linkedid
    line TEXT,
    direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound', 'internal', 'unknown')),
    calling_number TEXT NOT NULL,
    caller_name TEXT NOT NULL,
    dialed_number TEXT NOT NULL,
    started_at REAL NOT NULL,
    answered_at REAL,
    ended_at REAL,
    disposition TEXT NOT NULL,
    flags TEXT NOT NULL DEFAULT ''      -- e.g. 'reconciled'
);
CREATE INDEX calls_started ON calls (started_at);
CREATE INDEX calls_line ON calls (line, started_at);

-- One row per Asterisk CDR (a call can have several: transfer, forward).
CREATE TABLE cdrs (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls (id),
    uniqueid TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    calling_number TEXT NOT NULL,
    caller_name TEXT NOT NULL,
    dialed_number TEXT NOT NULL,
    context TEXT NOT NULL,
    direction TEXT NOT NULL,
    line TEXT,
    start_at REAL NOT NULL,
    answer_at REAL,
    end_at REAL NOT NULL,
    duration_s INTEGER NOT NULL,
    billable_s INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    hangup_cause INTEGER,
    hangup_cause_text TEXT NOT NULL,
    channel TEXT NOT NULL,
    dest_channel TEXT NOT NULL,
    last_app TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('ami', 'reconciled')),
    written_at REAL NOT NULL,
    UNIQUE (uniqueid, sequence)
);
CREATE INDEX cdrs_call ON cdrs (call_id);
CREATE INDEX cdrs_start ON cdrs (start_at);

CREATE TABLE recordings (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    line TEXT NOT NULL,
    leg TEXT NOT NULL CHECK (leg IN ('caller', 'callee', 'mixed')),
    path TEXT NOT NULL UNIQUE,
    format TEXT NOT NULL,
    duration_s REAL NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    flags TEXT NOT NULL DEFAULT '',     -- e.g. 'orphan' when found by the spool sweep
    created_at REAL NOT NULL,
    UNIQUE (call_id, line, leg)
);
CREATE INDEX recordings_call ON recordings (call_id);
