-- One event may stand for several file changes: an account deletion removes every file
-- of the user, a directory moved over WebDAV moves every file under it, each as ONE
-- event so the change is atomic on the log. The feed shows each file change as a line
-- of its own, so `events` gets a line number within the event (0 for the events that
-- change one file, which is every event projected before this migration) and the
-- number of lines the event has. The public cursor stays the event's sequence: a page
-- of a feed or stream never ends inside an event, so resuming after a sequence can
-- never skip a line of it.
ALTER TABLE events ADD COLUMN line INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN lines INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD PRIMARY KEY (seq, line);
