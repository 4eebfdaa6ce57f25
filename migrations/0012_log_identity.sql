-- The identity of the log these projections were built from (domain::log_identity):
-- every process compares it with the log it is given before reading or writing, so
-- projections are never served with a new or re-created stream, which would skip
-- every new event up to the old checkpoint. One row; absent until first recorded.
CREATE TABLE log_identity (
    only_row     BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    stream       TEXT NOT NULL,
    -- When NATS created the stream (RFC 3339, as NATS reports it).
    created      TEXT NOT NULL,
    -- The stream's first event (NULL while the log was empty when recorded).
    first_seq    BIGINT,
    first_id     TEXT,
    recorded_us  BIGINT NOT NULL
);

-- The message id of the last event each checkpoint applied: the event at that
-- sequence in the log must still be that one (a log restored from an older backup,
-- or forked from one, is caught here). NULL for checkpoints written before.
ALTER TABLE projector_checkpoints ADD COLUMN last_id TEXT;
