-- `homeserver reseed` re-creates a lost log from the projections (store::reseed): the
-- new log begins with events that re-state the state of the old one. Recorded here so
-- the feed can tell its readers which events are re-statements
-- (`Pubky-Log-Reseeded-Through`) and where the state came from.
ALTER TABLE log_identity
    ADD COLUMN reseeded_through BIGINT,
    -- The previous log's identity as the projections had recorded it.
    ADD COLUMN reseeded_from TEXT;
