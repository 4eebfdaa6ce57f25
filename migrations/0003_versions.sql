-- Version history (docs/merkle.md, "Version history"): every file event is already a
-- row of `events`; a PUT row is one version of its path. These columns let a version
-- be served without the log: its length and content type as written (NULL for
-- deletions, and for rows projected before this migration that are not the current
-- version of their path, which readers treat as unknown).
ALTER TABLE events ADD COLUMN content_length BIGINT;
ALTER TABLE events ADD COLUMN content_type TEXT;

-- The versions of one path, newest first, and "the event after this one" (when a
-- version was replaced) in one index probe.
CREATE INDEX events_owner_path_seq ON events (owner, path, seq);

-- Blob garbage collection asks which of a batch of hashes a retained version still
-- references.
CREATE INDEX events_content_hash ON events (content_hash) WHERE content_hash IS NOT NULL;

-- Rows projected before: the current version of each path is known from `entries`.
UPDATE events e SET content_length = en.size, content_type = en.content_type
FROM entries en
WHERE e.op = 'PUT' AND en.owner = e.owner AND en.path = e.path AND en.seq = e.seq;
