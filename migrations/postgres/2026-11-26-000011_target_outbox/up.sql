-- Rows for a target profile's file targets: written in the booking transaction with what they come from, and
-- taken from here into files by the file writer, exactly once. A file is first recorded (writing), its rows
-- marked as its own, then written under a temporary name and renamed (renaming, then written): after a crash
-- the record says whether the rename had happened.
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
    file_id INTEGER REFERENCES target_files(id)
);
CREATE INDEX target_outbox_waiting ON target_outbox (target, id) WHERE file_id IS NULL;
CREATE INDEX target_outbox_of_file ON target_outbox (file_id, id);
