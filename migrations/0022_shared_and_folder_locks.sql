-- WebDAV's shared locks and folder locks (`lock_acquired` with `shared`, `deep`,
-- `lock_owner`). Several shared locks may have the same root, so a lock is now one
-- row per (path, token) rather than one per path. A folder lock's path ends with `/`;
-- `deep` is depth infinity (it covers every path under the folder). `lock_owner` is
-- the request's `DAV:owner` element, shown by lock discovery. The locks taken on
-- `/storage/` stay exclusive locks of depth 0 on files, as before.

ALTER TABLE entry_locks
    ADD COLUMN shared     BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN deep       BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN lock_owner TEXT;
ALTER TABLE entry_locks DROP CONSTRAINT entry_locks_pkey;
ALTER TABLE entry_locks ADD PRIMARY KEY (owner, path, token_hash);
