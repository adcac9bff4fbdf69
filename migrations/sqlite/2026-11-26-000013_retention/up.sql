-- Retention: what is past its period ([retention] in the configuration) is deleted, or pseudonymised where the
-- row must stay. A mark says a row has been done, so that a daily run takes only what is new, a batch at a time.
ALTER TABLE deliveries ADD COLUMN purged_at TIMESTAMP;          -- its kept answer pseudonymised
ALTER TABLE receipts ADD COLUMN purged_at TIMESTAMP;            -- a rejected receipt's texts and values removed
ALTER TABLE batch_files ADD COLUMN archive_purged_at TIMESTAMP; -- the archived file deleted, its receipt file's errors pseudonymised
CREATE INDEX deliveries_to_purge ON deliveries (received_at) WHERE purged_at IS NULL;
CREATE INDEX receipts_rejected_to_purge ON receipts (processed_at) WHERE purged_at IS NULL AND status <> 'Accepteret';
CREATE INDEX erp_journal_by_created ON erp_journal (created_at);
CREATE INDEX erp_journal_lines_by_journal ON erp_journal_lines (journal_id);
CREATE INDEX erp_claims_by_created ON erp_claims (created_at);
CREATE INDEX erp_claim_parties_by_claim ON erp_claim_parties (claim_id);
CREATE INDEX erp_claim_parties_by_debtor_data ON erp_claim_parties (debtor_data_id);
CREATE INDEX erp_debtor_data_by_created ON erp_debtor_data (created_at);
CREATE INDEX receipt_errors_by_receipt ON receipt_errors (kvittering_id);
-- An expected batch file ([[batch.expected]]) that had not arrived by its time, alerted once a day: the row is
-- written by the one process (of several sharing the database) that sends the alert.
CREATE TABLE expected_file_alerts (
    afsender_system TEXT NOT NULL,
    integration TEXT NOT NULL,
    day DATE NOT NULL,
    alerted_at TIMESTAMP NOT NULL,
    PRIMARY KEY (afsender_system, integration, day)
);
