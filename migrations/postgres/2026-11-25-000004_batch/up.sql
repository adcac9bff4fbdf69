-- Batch files (masse). One row per file taken from a drop folder; the row is the claim: a process owns the
-- file while its lease runs and renews the lease with every chunk of items it books, so that another process
-- takes a file over only from a process that has stopped.
CREATE TABLE batch_files (
    id SERIAL PRIMARY KEY,
    file_key TEXT NOT NULL UNIQUE,      -- 'sftp:<Sender>:<SendersFileId>' or 'sha256:<content hash>'
    integration TEXT NOT NULL,
    file_name TEXT NOT NULL,            -- the name it arrived under
    stored_name TEXT NOT NULL UNIQUE,   -- its name in processing/ and archive/
    content_hash TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    metadata TEXT,                      -- the .metadata document, when the file came with one
    state TEXT NOT NULL CHECK (state IN ('processing', 'receipt', 'done')),
    delivery_id INTEGER REFERENCES deliveries(id),
    leverance_id TEXT,                  -- the file's LeveranceId and AfsenderSystem, for its receipt file
    afsender_system TEXT,
    items_total INTEGER,
    items_done INTEGER NOT NULL DEFAULT 0,
    accepted_count INTEGER NOT NULL DEFAULT 0,
    rejected_count INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT NOT NULL,
    lease_until TIMESTAMP NOT NULL,
    received_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,              -- also the receipt file's Behandlet, so a rewritten file is the same
    receipt_file TEXT
);
CREATE INDEX batch_files_by_state ON batch_files (state, lease_until);

-- The receipt of each item of a batch file, in file order, written in the transaction that decides it; the
-- receipt file is written from here once the whole file is done, and a re-dropped file gets it again.
CREATE TABLE batch_receipts (
    batch_id INTEGER NOT NULL REFERENCES batch_files(id),
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    receipt_json TEXT NOT NULL,
    PRIMARY KEY (batch_id, position)
);
