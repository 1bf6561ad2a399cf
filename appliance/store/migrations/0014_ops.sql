-- Operating the box (issue 12): alerts and run-time settings such as the log level.
-- An alert is open until resolved; at most one open alert per (kind, key), so a condition
-- that keeps firing raises its count instead of flooding the admin with copies. Messages
-- carry no personal data (the callers build them from ids, line names and figures).
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    severity TEXT NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
    message TEXT NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    resolved_at REAL,
    acked_at REAL,
    acked_by TEXT,
    notified_at REAL,
    notify_error TEXT
);
CREATE UNIQUE INDEX alerts_open_one ON alerts (kind, key) WHERE resolved_at IS NULL;
CREATE INDEX alerts_by_time ON alerts (last_at);
-- Settings every process of the box reads at run time (e.g. log_level), changed by the CLI
-- or the admin API without a restart.
CREATE TABLE ops_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL
);
-- Call counts for /metrics without scanning a million calls per scrape, kept by triggers in
-- the same transaction as the rows they count. 'calls': calls in the store now, by line and
-- disposition (exact: a disposition settled by a later CDR moves its call, retention's
-- deletes take it off). 'cdrs': CDRs ever written, by line and disposition (only grows).
CREATE TABLE ops_counts (
    metric TEXT NOT NULL CHECK (metric IN ('calls', 'cdrs')),
    line TEXT NOT NULL,
    disposition TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (metric, line, disposition)
) WITHOUT ROWID;
INSERT INTO ops_counts (metric, line, disposition, n) SELECT 'calls', COALESCE(line, ''), disposition, COUNT(*) FROM calls GROUP BY 2, 3;
INSERT INTO ops_counts (metric, line, disposition, n) SELECT 'cdrs', COALESCE(line, ''), disposition, COUNT(*) FROM cdrs GROUP BY 2, 3;
CREATE TRIGGER ops_count_call_added AFTER INSERT ON calls BEGIN INSERT INTO ops_counts (metric, line, disposition, n) VALUES ('calls', COALESCE(new.line, ''), new.disposition, 1) ON CONFLICT (metric, line, disposition) DO UPDATE SET n = n + 1; END;
CREATE TRIGGER ops_count_call_moved AFTER UPDATE OF line, disposition ON calls WHEN old.line IS NOT new.line OR old.disposition IS NOT new.disposition BEGIN UPDATE ops_counts SET n = n - 1 WHERE metric = 'calls' AND line = COALESCE(old.line, '') AND disposition = old.disposition; INSERT INTO ops_counts (metric, line, disposition, n) VALUES ('calls', COALESCE(new.line, ''), new.disposition, 1) ON CONFLICT (metric, line, disposition) DO UPDATE SET n = n + 1; END;
CREATE TRIGGER ops_count_call_removed AFTER DELETE ON calls BEGIN UPDATE ops_counts SET n = n - 1 WHERE metric = 'calls' AND line = COALESCE(old.line, '') AND disposition = old.disposition; END;
CREATE TRIGGER ops_count_cdr_added AFTER INSERT ON cdrs BEGIN INSERT INTO ops_counts (metric, line, disposition, n) VALUES ('cdrs', COALESCE(new.line, ''), new.disposition, 1) ON CONFLICT (metric, line, disposition) DO UPDATE SET n = n + 1; END;
