-- Merkle Search Trees over each user's entries (docs/merkle.md): one over the public
-- paths, one over /priv/. Maintained by the projector in the same transaction as the
-- entries, so a root always describes exactly the entries committed with it.

-- Immutable nodes, addressed by the BLAKE3 hash of `body` (the canonical encoding).
-- Per owner so that a user's nodes are served and dropped with that user only; a node
-- belongs to one of the two trees (their keys are disjoint), which `private` records.
CREATE TABLE merkle_nodes (
    owner    TEXT COLLATE "C" NOT NULL,
    hash     BYTEA NOT NULL,
    private  BOOLEAN NOT NULL,
    body     BYTEA NOT NULL,
    PRIMARY KEY (owner, hash)
);

-- The current root of each tree (NULL = empty) and the event that produced it.
CREATE TABLE merkle_roots (
    owner    TEXT COLLATE "C" NOT NULL,
    private  BOOLEAN NOT NULL,
    root     BYTEA,
    seq      BIGINT NOT NULL,
    PRIMARY KEY (owner, private)
);

-- The root of the file's tree right after each file event, for the feeds.
ALTER TABLE events ADD COLUMN merkle_root BYTEA;
