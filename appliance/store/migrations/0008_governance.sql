-- Governance (issue 5): the human review queue (Art. 22), the breach register (Art. 33/34)
-- and its event log. Rows name things by id and hold no personal data.

-- Items the agent or the report writer flags for a person to decide on. `call_id` ties an
-- item to the call it concerns (without a foreign key: a report may be flagged before its
-- CDR is stored); the trigger below removes the item when that call is erased or purged.
CREATE TABLE review_items (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                 -- report, decision, ...
    ref TEXT NOT NULL,                  -- what to review, by id: call:<id>, report:<id>
    call_id TEXT,
    reason TEXT NOT NULL,
    flagged_by TEXT NOT NULL,
    flagged_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'decided')),
    outcome TEXT CHECK (outcome IS NULL OR outcome IN ('approved', 'corrected', 'rejected')),
    decided_by TEXT,
    decided_role TEXT,
    decided_at REAL,
    note TEXT NOT NULL DEFAULT '',
    CHECK ((status = 'open') = (outcome IS NULL))
);
CREATE INDEX review_items_status ON review_items (status, flagged_at);
CREATE INDEX review_items_call ON review_items (call_id);
CREATE TRIGGER review_items_call_gone AFTER DELETE ON calls
    BEGIN DELETE FROM review_items WHERE call_id = OLD.id; END;

-- Personal data breaches. Kept for good (Art. 33(5): the controller documents every breach),
-- so no retention category and no erasure path reaches these rows.
CREATE TABLE breaches (
    id INTEGER PRIMARY KEY,
    summary TEXT NOT NULL,              -- what happened, without personal data
    occurred_at REAL,                   -- NULL while unknown
    discovered_at REAL NOT NULL,        -- starts the 72-hour clock (Art. 33(1))
    categories TEXT NOT NULL,           -- comma-separated data categories
    subjects_affected INTEGER NOT NULL CHECK (subjects_affected >= 0),
    consequences TEXT NOT NULL,
    measures TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'reported', 'closed')),
    authority_decision TEXT CHECK (authority_decision IS NULL
        OR authority_decision IN ('notified', 'not-required')),
    authority_at REAL,
    authority_ref TEXT NOT NULL DEFAULT '',
    authority_note TEXT NOT NULL DEFAULT '', -- why not required, or reasons for a late notice
    subjects_decision TEXT CHECK (subjects_decision IS NULL
        OR subjects_decision IN ('notified', 'not-required')),
    subjects_at REAL,
    subjects_note TEXT NOT NULL DEFAULT '',  -- how they were told, or why not (Art. 34(3))
    closed_at REAL,
    close_note TEXT NOT NULL DEFAULT '',
    recorded_by TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX breaches_status ON breaches (status, discovered_at);

-- Every step on a breach, for the register's own history (the audit chain has them too).
CREATE TABLE breach_events (
    id INTEGER PRIMARY KEY,
    breach_id INTEGER NOT NULL REFERENCES breaches (id),
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX breach_events_breach ON breach_events (breach_id, id);
