-- Bookings written to a line's CalDAV calendar on the LAN (issue 10). A row says the event
-- `uid` is on the server for `booking_id`. No foreign key: when the booking is cancelled or
-- erased the row stays until the event is deleted from the server, so a server that was down
-- is cleaned up when it answers again. A booked booking without a row is still to be written.
-- Nothing personal here (the event names no one; the uid is derived from the booking id).
CREATE TABLE caldav_events (
    booking_id INTEGER PRIMARY KEY,
    line TEXT NOT NULL,
    uid TEXT NOT NULL UNIQUE,
    written_at REAL NOT NULL
);
CREATE INDEX caldav_events_line ON caldav_events (line);
