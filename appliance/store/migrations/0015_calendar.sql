-- Appointments and dialogue outcomes (issue 10).
-- A booking's time span and line are in clear (free slots are computed from them); who booked
-- and why (name, callback number, reason) is sealed in details_enc under a key derived from the
-- data keys of `key_subjects`, so erasing the caller shreds it. call_id has no foreign key: the
-- booking is written during the call, before its CDR arrives.
CREATE TABLE bookings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    line TEXT NOT NULL,
    starts_at REAL NOT NULL,            -- epoch seconds (UTC)
    ends_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'cancelled')),
    call_id TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    details_enc BLOB NOT NULL,
    key_subjects TEXT NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX bookings_span ON bookings (line, starts_at);
CREATE INDEX bookings_call ON bookings (call_id);
-- What the dialogue engine collected on a call (the post-call report is filled from it).
-- Only the task, flags and counts are in clear; the slots are sealed like a booking's details.
CREATE TABLE dialogue_outcomes (
    call_id TEXT PRIMARY KEY,
    line TEXT NOT NULL,
    task TEXT NOT NULL,                 -- the playbook task the call ended on ('' = none)
    status TEXT NOT NULL,               -- done | transferred | opted_out | abandoned
    booking_id INTEGER REFERENCES bookings (id) ON DELETE SET NULL,
    turns INTEGER NOT NULL,
    created_at REAL NOT NULL,
    slots_enc BLOB NOT NULL,
    key_subjects TEXT NOT NULL
);
