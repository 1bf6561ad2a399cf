-- Consent to recording, asked by the voice agent on `after-consent` lines (issue 4).
CREATE TABLE consents (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    line TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('given', 'refused', 'no-answer')),
    method TEXT NOT NULL CHECK (method IN ('dtmf', 'speech', 'timeout', 'hangup')),
    prompt TEXT NOT NULL,               -- exactly what the caller was told
    asked_at REAL NOT NULL,
    decided_at REAL NOT NULL
);
CREATE INDEX consents_call ON consents (call_id);
