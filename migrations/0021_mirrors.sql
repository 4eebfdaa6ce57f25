-- Mirrors (docs/mirror.md): users this homeserver keeps a live, verified, read-only
-- copy of, whose primary is another homeserver. Not a projection of the log: it is the
-- mirror follower's own state, like a projector checkpoint, so `homeserver rebuild`
-- neither fills nor compares it. The copied files themselves are ordinary events in
-- this homeserver's log (marked `origin: {source: mirror}`), so the entries, feeds and
-- Merkle trees of a mirrored user are built by the same projector as everyone's.
--
-- `cursor` is the last sequence of the primary's log whose event this homeserver has
-- applied (the resume point of the primary's event stream); it moves only after the
-- event is appended here and its root checked, so a crash replays at most one event,
-- which the root check then finds already applied. `read_token` is a bearer session
-- at the primary, granted by the user for reading `/priv/` (absent: public data only);
-- it never leaves this table.

CREATE TABLE mirrors (
    user_key          TEXT COLLATE "C" PRIMARY KEY,
    source_url        TEXT NOT NULL,
    -- The primary homeserver's key: every root statement it signs is checked with it.
    source_key        TEXT NOT NULL,
    read_token        TEXT,
    -- Who asked for it: 'operator' or 'user'.
    started_by        TEXT NOT NULL,
    -- copying | following | retrying | failed
    state             TEXT NOT NULL DEFAULT 'copying',
    cursor            BIGINT NOT NULL DEFAULT 0,
    -- The primary's roots (hex) as last seen signed or on its stream, and the sequence
    -- of the primary's event that produced the last one.
    source_root_pub   TEXT,
    source_root_priv  TEXT,
    source_seq        BIGINT NOT NULL DEFAULT 0,
    events_applied    BIGINT NOT NULL DEFAULT 0,
    last_error        TEXT,
    last_error_us     BIGINT,
    last_sync_us      BIGINT,
    created_us        BIGINT NOT NULL
);
