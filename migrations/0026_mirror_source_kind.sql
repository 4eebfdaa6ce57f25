-- Mirrors from any Pubky homeserver (docs/mirror.md, "Sources"): how this homeserver
-- reads the primary. 'merkle': a homeserver of ours, which signs per-user Merkle roots
-- and answers diffs and nodes (the copy is by diff, every event's root checked).
-- 'plain': any other Pubky homeserver (the reference one among them), which signs no
-- roots: the copy is by listing and reads, the follow by its `/events-stream` alone,
-- and the mirror has no source root to show. Existing mirrors are all of ours.
ALTER TABLE mirrors ADD COLUMN source_kind TEXT NOT NULL DEFAULT 'merkle';
