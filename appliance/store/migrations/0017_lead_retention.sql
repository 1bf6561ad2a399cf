-- Leads and bookings under retention (issue 8; appliance.privacy.retention, categories `lead`
-- and `booking` under the contact period). A lead's age counts from the last import that listed
-- it or its last dial attempt, whichever is later; past the period its personal data, blind
-- index and subject link go. A lead no campaign counts is deleted; one a campaign's report
-- counts stays as a stub (no data, an unlinkable random index) marked purged_at.
ALTER TABLE leads ADD COLUMN seen_at REAL;
ALTER TABLE leads ADD COLUMN purged_at REAL;
-- A lead's attempts, for its age (retention) and for a subject's access export.
CREATE INDEX campaign_attempts_lead ON campaign_attempts (lead_id);
-- Bookings by age (retention counts from the appointment's end).
CREATE INDEX bookings_ends ON bookings (ends_at);
