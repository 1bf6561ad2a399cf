-- Retention (issue 5): the purge job's runs, the audit chain's sealed prefix, encrypted files
-- waiting to be removed, and the indexes that keep expiry queries to range scans on 1 M rows.

-- One row per purge or dry run. `counts` is JSON {category: {deleted, anonymised, held}}:
-- counts only, no personal data. A row left 'running' marks a run that died midway.
CREATE TABLE retention_runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,           -- the run's instant on the policy clock
    finished_at REAL,
    dry_run INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    counts TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'error')),
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX retention_runs_started ON retention_runs (started_at);

-- The audit chain keeps its own retention: a prefix past the audit period is dropped under a
-- checkpoint naming the last dropped row and its hash. The same transaction appends a sealed
-- (HMAC-chained) 'audit.checkpoint' row saying the same, which is what `audit verify` trusts;
-- this table is the delete trigger's gate and the verifier's index to it.
CREATE TABLE audit_checkpoints (
    upto_seq INTEGER PRIMARY KEY,       -- rows with seq <= upto_seq are gone
    upto_hash TEXT NOT NULL,            -- hash of row upto_seq: the next row's prev_hash
    rows INTEGER NOT NULL,              -- how many rows this checkpoint dropped
    sealed_seq INTEGER NOT NULL,        -- the audit row that seals it
    run_id INTEGER,
    at REAL NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;

-- Still append-only, except for rows a checkpoint already covers.
DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log WHEN OLD.seq > (SELECT COALESCE(MAX(upto_seq), 0) FROM audit_checkpoints)
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Encrypted files whose rows a purge deleted, queued in the deleting transaction: a run that
-- dies before unlinking them leaves them here, and the next run removes them first.
CREATE TABLE retention_files (
    path TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL,
    queued_at REAL NOT NULL
);

-- Expiry scans: per line (the policy can differ per line) then by age.
CREATE INDEX recordings_line_created ON recordings (line, created_at);
CREATE INDEX consents_line_decided ON consents (line, decided_at);
CREATE INDEX transcripts_line_created ON transcripts (line, created_at);
CREATE INDEX call_reports_line_created ON call_reports (line, created_at);
CREATE INDEX subjects_created ON subjects (created_at);
-- Calls split by whether their CDRs are still identifying or already anonymised (billing
-- fields only), so the CDR and bookkeeping scans each read only their own rows.
CREATE INDEX calls_identified ON calls (line, started_at) WHERE flags NOT LIKE '%anonymised%';
CREATE INDEX calls_anonymised ON calls (line, started_at) WHERE flags LIKE '%anonymised%';
