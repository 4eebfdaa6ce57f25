-- WebDAV folders made by MKCOL (event `dir_created`). Storage holds files, and a
-- folder is otherwise implied by a file under it; a row here makes a folder exist while
-- it is empty, as WebDAV clients expect after MKCOL. A folder event that removes the
-- folder (`tree_deleted`, or `tree_copied` moving it) removes its rows. The paths end
-- with `/`. A user's rows go with the user.

CREATE TABLE dav_dirs (
    owner  TEXT COLLATE "C" NOT NULL REFERENCES users (pubkey) ON DELETE CASCADE,
    path   TEXT COLLATE "C" NOT NULL,
    seq    BIGINT NOT NULL,
    PRIMARY KEY (owner, path)
);
