CREATE UNIQUE INDEX receipts_accepted_once ON receipts (integration, afsender_system, reference)
    WHERE status = 'Accepteret';
DROP INDEX receipts_accepted_by_reference;
