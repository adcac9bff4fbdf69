-- Mapping versions: every set of mapping files that has been in force, newest last. A change on the web page,
-- in the files under mappings/, or a rollback adds a row; nothing is changed or deleted, so that each booking's
-- mapping_version can be looked up and any version brought back.
CREATE TABLE mapping_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    version TEXT NOT NULL,              -- hash of the files, as recorded with each booking
    files TEXT NOT NULL,                -- JSON object: file name -> content
    author TEXT NOT NULL,               -- the user who saved it, or 'mappings/' for a change in the files
    source TEXT NOT NULL CHECK (source IN ('filer', 'side', 'tilbagerulning')),
    comment TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX mapping_versions_by_version ON mapping_versions (version);

-- Logins to the web page. The cookie holds a random token; only its hash is stored, so the table alone does
-- not let anyone in. Shared by every instance on the database.
CREATE TABLE admin_sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_name TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
