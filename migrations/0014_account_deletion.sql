-- Account deletion (DELETE /account, event `account_deleted`): the user's row goes, and
-- with it everything the user owned, but the log keeps the user's subjects and their
-- sequences. A later signup of the same key must append at the account subject's last
-- sequence and its first file write at the file subject's, which only this tombstone
-- still knows. A signup removes the tombstone and starts the new row from it.
CREATE TABLE deleted_users (
    pubkey      TEXT COLLATE "C" PRIMARY KEY,
    -- The account_deleted event: also the last sequence of the account subject.
    seq         BIGINT NOT NULL,
    -- The last sequence of the user's file subject (moved by file events that raced
    -- the deletion and were dropped).
    file_seq    BIGINT NOT NULL,
    deleted_us  BIGINT NOT NULL
);

-- A deleted account's grants stay, revoked, so an app holding one of its grants cannot
-- come back if the key signs up again: grants no longer need their owner's row.
ALTER TABLE grants DROP CONSTRAINT grants_owner_fkey;
