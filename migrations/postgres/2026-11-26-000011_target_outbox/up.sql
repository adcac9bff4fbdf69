-- Rows for a target profile's file targets and tables in a database the ERP owns: written in the booking
-- transaction with what they come from, and taken from here exactly once, into files by the file writer, into
-- the ERP's database by the forwarder. A file is first recorded (writing), its rows marked as its own, then
-- written under a temporary name and renamed (renaming, then written): after a crash the record says whether
-- the rename had happened. The forwarder records what it copied in a table of its own in the ERP's database,
-- in the same transaction as the rows, and then marks them forwarded here.
CREATE TABLE target_files (
    id SERIAL PRIMARY KEY,
    target TEXT NOT NULL,                -- file:<folder>/<name>, as the profile names the target
    name TEXT NOT NULL,                  -- the file's name in its folder
    state TEXT NOT NULL CHECK (state IN ('writing', 'renaming', 'written')),
    row_count INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    written_at TIMESTAMP,
    UNIQUE (target, name)
);
CREATE TABLE target_outbox (
    id SERIAL PRIMARY KEY,
    target TEXT NOT NULL,
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
    payload TEXT NOT NULL,               -- JSON: the row's line, the file's header line, which rows share a file
    created_at TIMESTAMP NOT NULL,
    file_id INTEGER REFERENCES target_files(id),
    forwarded_at TIMESTAMP,              -- a database target's row: when it was copied
    last_error TEXT,                     -- a database target's row the ERP's database refused on its own: why
    retry_at TIMESTAMP                   -- and when it is tried again; the rows after it go on meanwhile
);
CREATE INDEX target_outbox_waiting ON target_outbox (target, id) WHERE file_id IS NULL AND forwarded_at IS NULL;
CREATE INDEX target_outbox_of_file ON target_outbox (file_id, id);
-- This adapter installation (its database), as the forwarder names it in an ERP database's record of what it
-- copied: installations that share one ERP database, whose outbox numbers overlap, are told apart. Made once.
CREATE TABLE installation_identity (
    id TEXT PRIMARY KEY NOT NULL
);
-- The columns of a database target's table as last read from the ERP's database: a profile is checked against
-- them, and the adapter starts and books while that database is away.
CREATE TABLE target_columns (
    target TEXT PRIMARY KEY NOT NULL,    -- database:<name>/<table>
    column_types TEXT NOT NULL,          -- JSON
    read_at TIMESTAMP NOT NULL
);
