-- Garbage collection of Merkle nodes (docs/merkle.md, "Garbage collection").
--
-- Every root a tree had until it was replaced, and when (Postgres clock, unix
-- microseconds). The projector writes a row in the batch that replaces a root; the
-- collector keeps the nodes of roots replaced less than the grace period ago (a client
-- may be in the middle of a diff against one), deletes every other node no current
-- root refers to, and prunes the rows older than the grace period.
-- Not compared by `homeserver rebuild`: the times are those of this projector's run.
CREATE TABLE merkle_root_history (
    owner        TEXT COLLATE "C" NOT NULL,
    private      BOOLEAN NOT NULL,
    root         BYTEA NOT NULL,
    replaced_us  BIGINT NOT NULL,
    PRIMARY KEY (owner, private, root)
);

CREATE INDEX merkle_root_history_replaced ON merkle_root_history (replaced_us);

-- Nodes written before this table existed have no history: record each existing tree
-- as replaced long ago (the all-zero hash standing for an empty root), so that the
-- first periodic collection sweeps it once.
INSERT INTO merkle_root_history (owner, private, root, replaced_us)
SELECT owner, private, COALESCE(root, decode(repeat('00', 32), 'hex')), 0
FROM merkle_roots;
