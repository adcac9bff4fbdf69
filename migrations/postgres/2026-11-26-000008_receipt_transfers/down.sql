DROP TABLE receipt_transfers;
