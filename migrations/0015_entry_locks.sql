-- Storage locks (`webdav-locks`): the projection of the lock events (`lock_acquired`,
-- `lock_refreshed`, `lock_released`). At most one row per file path; a row is the live
-- lock while `expires_us` (microseconds since the Unix epoch) is in the future, and an
-- expired row is only a leftover that the next lock of the path replaces. The token is
-- kept as its SHA-256, as in the events. A user's rows go with the user.

CREATE TABLE entry_locks (
    owner       TEXT COLLATE "C" NOT NULL REFERENCES users (pubkey) ON DELETE CASCADE,
    path        TEXT COLLATE "C" NOT NULL,
    token_hash  BYTEA NOT NULL,
    expires_us  BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (owner, path)
);
CREATE INDEX entry_locks_expires ON entry_locks (owner, expires_us);
