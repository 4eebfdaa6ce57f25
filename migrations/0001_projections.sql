-- Projections of the event log. Everything in these tables can be rebuilt by
-- replaying the log (`homeserver rebuild`), which runs this same file inside a fresh
-- schema: keep it free of schema-qualified names.
--
-- Paths and keys use COLLATE "C" so that ordering and range scans are byte order,
-- which is what listings and cursors promise.

CREATE TABLE projector_checkpoints (
    name      TEXT PRIMARY KEY,
    last_seq  BIGINT NOT NULL
);

CREATE TABLE users (
    pubkey              TEXT COLLATE "C" PRIMARY KEY,
    created_us          BIGINT NOT NULL,
    disabled            BOOLEAN NOT NULL DEFAULT false,
    used_bytes          BIGINT NOT NULL DEFAULT 0,
    -- Limits: NULL = server default; storage_quota_mb -1 = unlimited.
    storage_quota_mb    BIGINT,
    allowed_write_paths JSONB,
    rate_read           TEXT,
    rate_write          TEXT,
    -- Sequence of the user's last event on its file and account subjects: the
    -- expected-sequence a writer sends to the log.
    file_seq            BIGINT NOT NULL DEFAULT 0,
    acct_seq            BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE entries (
    owner         TEXT COLLATE "C" NOT NULL REFERENCES users (pubkey),
    path          TEXT COLLATE "C" NOT NULL,
    content_hash  BYTEA NOT NULL,
    size          BIGINT NOT NULL,
    content_type  TEXT NOT NULL,
    modified_us   BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    PRIMARY KEY (owner, path)
);
CREATE INDEX entries_content_hash ON entries (content_hash);

-- File events, for the feeds. seq is the log's stream sequence: the public cursor.
CREATE TABLE events (
    seq           BIGINT PRIMARY KEY,
    owner         TEXT COLLATE "C" NOT NULL,
    op            TEXT NOT NULL CHECK (op IN ('PUT', 'DEL')),
    path          TEXT COLLATE "C" NOT NULL,
    content_hash  BYTEA,
    created_us    BIGINT NOT NULL,
    private       BOOLEAN NOT NULL
);
CREATE INDEX events_owner_seq ON events (owner, seq);
CREATE INDEX events_public_seq ON events (seq) WHERE NOT private;

CREATE TABLE signup_tokens (
    token_hash        BYTEA PRIMARY KEY,
    created_us        BIGINT NOT NULL,
    used_by           TEXT COLLATE "C",
    used_us           BIGINT,
    limits            JSONB NOT NULL DEFAULT '{}'
);

CREATE TABLE grants (
    grant_id      TEXT COLLATE "C" PRIMARY KEY,
    owner         TEXT COLLATE "C" NOT NULL REFERENCES users (pubkey),
    client_id     TEXT NOT NULL,
    client_key    TEXT NOT NULL,
    capabilities  TEXT NOT NULL,
    issued_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_us    BIGINT,
    created_us    BIGINT NOT NULL
);
CREATE INDEX grants_owner ON grants (owner);

-- Bearer sessions: only the SHA-256 of the token is known here. One per grant.
CREATE TABLE grant_sessions (
    token_hash  BYTEA PRIMARY KEY,
    grant_id    TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES grants (grant_id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL,
    created_us  BIGINT NOT NULL
);

-- Legacy cookie sessions: only the SHA-256 of the secret is known here.
CREATE TABLE cookie_sessions (
    secret_hash   BYTEA PRIMARY KEY,
    owner         TEXT COLLATE "C" NOT NULL REFERENCES users (pubkey),
    capabilities  TEXT NOT NULL,
    created_us    BIGINT NOT NULL
);

-- Single-use values: PoP nonces and AuthToken ids. Shared by every instance and
-- surviving restarts because they come from the log.
CREATE TABLE used_nonces (
    nonce    TEXT COLLATE "C" PRIMARY KEY,
    owner    TEXT COLLATE "C" NOT NULL,
    used_us  BIGINT NOT NULL
);
