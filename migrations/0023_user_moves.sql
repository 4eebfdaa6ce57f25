-- Moves (docs/move.md): a user who left this homeserver for another one, and a user
-- who arrived here from another one. Projections of the `user_moved` event, which is a
-- file event: it travels on the user's file subject, so the log orders it with the
-- user's writes. A write appended before it is part of the final root the new
-- homeserver must reach; a write that comes after it conflicts, reads the user again
-- and finds `moved_to` set.
--
-- `moved_to`: the homeserver (z32 key) the user moved to; writes are refused from the
-- event on, reads are served for the grace period after `moved_us`.
-- `arrived_from`: on the homeserver the user moved to, the one they came from (set when
-- the mirror became the primary).
ALTER TABLE users ADD COLUMN moved_to TEXT;
ALTER TABLE users ADD COLUMN moved_us BIGINT;
ALTER TABLE users ADD COLUMN arrived_from TEXT;

-- The feed line of a move: `MOVED pubky://<user>/pub/`, with the homeserver the user
-- lives on from then on.
ALTER TABLE events DROP CONSTRAINT events_op_check;
ALTER TABLE events ADD CONSTRAINT events_op_check CHECK (op IN ('PUT', 'DEL', 'MOVED'));
ALTER TABLE events ADD COLUMN moved_to TEXT;
