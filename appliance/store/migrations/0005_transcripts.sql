-- Post-call transcripts (issue 4): one per recorded leg, sealed under the call's subject keys,
-- a full-text index of keyed word tokens (never plaintext), and the post-call job queue.
-- Triggers are written on one line each: migrations split at ';' ending a line.

-- One transcript per recorded leg. text_enc holds the segments and words as JSON, sealed under
-- a key derived from the data keys of `key_subjects` (like the recording's file key), so
-- erasing any of those subjects shreds it. recording_id is informational: the recording may
-- go first (its own retention) while the transcript stays.
CREATE TABLE transcripts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    recording_id INTEGER,
    line TEXT NOT NULL,
    leg TEXT NOT NULL CHECK (leg IN ('caller', 'callee', 'mixed')),
    language TEXT NOT NULL,             -- detected (or the line's) ISO 639-1 code
    language_prob REAL NOT NULL,
    model TEXT NOT NULL,                -- manifest name of the STT model
    created_at REAL NOT NULL,
    duration_s REAL NOT NULL,           -- audio transcribed
    text_enc BLOB NOT NULL,
    key_subjects TEXT NOT NULL,         -- comma-separated subject ids, in key derivation order
    UNIQUE (call_id, line, leg)
);
CREATE INDEX transcripts_created ON transcripts (created_at);

-- What the search index points at: one row per transcript segment (times only, no words).
-- Its id is the rowid of the segment's row in transcript_fts.
CREATE TABLE transcript_segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transcript_id INTEGER NOT NULL REFERENCES transcripts (id) ON DELETE CASCADE,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL
);
CREATE INDEX transcript_segments_transcript ON transcript_segments (transcript_id);

-- Full-text index over keyed tokens: each word is HMAC-SHA256'd under the keyring's 'search'
-- key (appliance.voice.transcripts), so the index answers "which segments contain the word
-- w" for whoever holds the key and nothing to anyone reading the file.
CREATE VIRTUAL TABLE transcript_fts USING fts5(tokens, tokenize = 'ascii');

-- A deleted transcript (erasure, retention, a deleted call cascading) takes its segments and
-- their index rows with it, in the same transaction.
CREATE TRIGGER transcript_segments_unindex AFTER DELETE ON transcript_segments BEGIN DELETE FROM transcript_fts WHERE rowid = old.id; END;

-- Post-call work per call: transcribe, then report, then done. A recording's row creates (or
-- reopens) its call's job in the recording's own transaction, so no recorded call is missed
-- whatever crashes when; `gen` counts recordings added, so a job that ran while another leg
-- arrived knows to run again. Failures keep the job with its attempts and error (no personal
-- data) and a later next_at (backoff); nothing is ever dropped.
CREATE TABLE post_call_jobs (
    call_id TEXT PRIMARY KEY,
    stage TEXT NOT NULL CHECK (stage IN ('transcribe', 'report', 'done')),
    gen INTEGER NOT NULL DEFAULT 1,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    next_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX post_call_jobs_due ON post_call_jobs (stage, next_at);
CREATE TRIGGER recordings_post_call_job AFTER INSERT ON recordings BEGIN INSERT INTO post_call_jobs (call_id, stage, gen, attempts, last_error, next_at, updated_at) VALUES (new.call_id, 'transcribe', 1, 0, '', new.created_at, new.created_at) ON CONFLICT (call_id) DO UPDATE SET stage = 'transcribe', gen = gen + 1, next_at = MIN(next_at, excluded.next_at), updated_at = excluded.updated_at; END;
CREATE TRIGGER calls_post_call_job_gone AFTER DELETE ON calls BEGIN DELETE FROM post_call_jobs WHERE call_id = old.id; END;
