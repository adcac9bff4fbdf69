DROP TABLE batch_receipts;
DROP TABLE batch_files;
