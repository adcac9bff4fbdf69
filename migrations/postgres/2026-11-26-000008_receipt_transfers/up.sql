-- Receipt files sent back through Serviceplatformen's SFTP service: the receipt file and its .trigger go to the
-- outgoing folder, and the platform's .sftpreceipt says whether it was delivered. One row per receipt file;
-- an error keeps it for another try after a back-off, and after the last try it is failed (the operator acts).
CREATE TABLE receipt_transfers (
    id SERIAL PRIMARY KEY,
    integration TEXT NOT NULL,
    receipt_name TEXT NOT NULL,          -- its name in the outgoing folder; the .trigger and .sftpreceipt follow it
    batch_id INTEGER REFERENCES batch_files(id),
    senders_file_id TEXT NOT NULL,       -- the receipt file's own id toward the platform: the same on every try
    kept_as TEXT NOT NULL,               -- the copy in archive/ it is sent again from
    trigger_document TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('written', 'sent', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,  -- written: when it is sent (again); sent: when silence counts as an error
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (integration, receipt_name, senders_file_id)
);
CREATE INDEX receipt_transfers_due ON receipt_transfers (state, next_attempt_at);
