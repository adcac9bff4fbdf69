-- The index that keeps an item accepted once also finds the items a group of deliveries (or a chunk of a batch
-- file) names, many at a time: `reference IN (...)`. With the reference first, that is a search of the index
-- for each; behind the sender, PostgreSQL may read every receipt of the sender and filter them.
CREATE UNIQUE INDEX receipts_accepted_by_reference ON receipts (reference, integration, afsender_system)
    WHERE status = 'Accepteret';
DROP INDEX receipts_accepted_once;
