-- Grant session slots (grant-session-slots): a grant may hold several bearer sessions,
-- one per slot the client names (`session_id`; NULL = the legacy slot every session
-- had before), and counts its issuances in a fixed 60-second window.
--
-- The window columns are NULL on grants projected before this migration: nothing was
-- counted for them, and their next issuance opens a new window. A rebuild fills them
-- from the log, so `homeserver rebuild` compares them only where the live row has them.

ALTER TABLE grant_sessions DROP CONSTRAINT grant_sessions_grant_id_key;
ALTER TABLE grant_sessions ADD COLUMN session_id TEXT COLLATE "C";
CREATE UNIQUE INDEX grant_sessions_slot ON grant_sessions (grant_id, COALESCE(session_id, ''));

ALTER TABLE grants
    ADD COLUMN session_window_start_us BIGINT,
    ADD COLUMN session_window_count INTEGER;
