-- WebDAV dead properties (event `props_patched`, PROPPATCH): per file or folder path
-- (folders end with `/`), each property named by its XML namespace and local name,
-- `xml` being the property element as clients read it back. A delete of the resource
-- (`file_deleted`, `tree_deleted`) removes its rows, a copy or move (`tree_copied`)
-- carries them along. A user's rows go with the user.

CREATE TABLE dav_props (
    owner  TEXT COLLATE "C" NOT NULL REFERENCES users (pubkey) ON DELETE CASCADE,
    path   TEXT COLLATE "C" NOT NULL,
    ns     TEXT NOT NULL,
    name   TEXT NOT NULL,
    xml    TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    PRIMARY KEY (owner, path, ns, name)
);
