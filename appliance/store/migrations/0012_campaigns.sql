-- Outbound lead campaigns (issue 8): lead lists, their imports, campaigns and every dial
-- attempt. Personal data (number, name, e-mail, extra columns) is sealed under the lead's
-- subject key (fields_enc), so erasing the subject crypto-shreds it; the blind index stays
-- for de-duplication (a keyed hash, like the do-not-call list's).
CREATE TABLE lead_lists (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE leads (
    id INTEGER PRIMARY KEY,
    list_id INTEGER NOT NULL REFERENCES lead_lists (id) ON DELETE CASCADE,
    blind_index BLOB NOT NULL,
    subject_id INTEGER REFERENCES subjects (id) ON DELETE SET NULL,
    country TEXT NOT NULL,              -- ISO 3166 alpha-2 of the number
    timezone TEXT NOT NULL,             -- IANA zone the calling window is read in
    basis TEXT NOT NULL,                -- lawful basis / consent the list gives for calling
    fields_enc BLOB NOT NULL,           -- sealed JSON under the subject key; x'' once erased
    state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'erased')),
    import_id INTEGER,
    source_line INTEGER NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (list_id, blind_index)
);
CREATE INDEX leads_subject ON leads (subject_id);
CREATE INDEX leads_blind_index ON leads (blind_index);

-- One upload: counts and the row report (line numbers and reasons, never the values).
CREATE TABLE lead_imports (
    id INTEGER PRIMARY KEY,
    list_id INTEGER NOT NULL REFERENCES lead_lists (id) ON DELETE CASCADE,
    file_name TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    rows INTEGER NOT NULL,
    imported INTEGER NOT NULL,
    unchanged INTEGER NOT NULL,
    bad TEXT NOT NULL,                  -- JSON [[line, reason], ...]
    at REAL NOT NULL,
    by TEXT NOT NULL
);

CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    line TEXT NOT NULL,
    list_id INTEGER NOT NULL REFERENCES lead_lists (id),
    state TEXT NOT NULL CHECK (state IN ('draft', 'running', 'paused', 'stopped', 'done')),
    settings TEXT NOT NULL,             -- JSON, appliance.campaign.model.Settings
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    updated_at REAL NOT NULL
);

-- A lead's progress in one campaign. 'dialling' while an attempt is out; final states:
-- done (an outcome), blocked (DNC, restriction, objection, erased, ineligible), exhausted.
CREATE TABLE campaign_leads (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id INTEGER NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'dialling', 'done', 'blocked', 'exhausted')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',    -- no personal data: a reason or an appointment slot
    updated_at REAL NOT NULL,
    PRIMARY KEY (campaign_id, lead_id)
);
CREATE INDEX campaign_leads_due ON campaign_leads (campaign_id, state, next_at);

-- Every attempt, claimed (state 'dialling'; 'ended': the call is over, its report awaited) in the same transaction that moves the lead to
-- 'dialling', before the originate is sent: a restart finds it and resolves it from the CDRs.
CREATE TABLE campaign_attempts (
    id INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id INTEGER NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    call_id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('dialling', 'ended', 'done', 'blocked', 'failed', 'lost')),
    claimed_at REAL NOT NULL,
    ended_at REAL,
    disposition TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    billable_s INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX campaign_attempts_campaign ON campaign_attempts (campaign_id, state);
