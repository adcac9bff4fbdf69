DROP TABLE erp_journal_lines;
DROP TABLE erp_journal;
DROP TABLE receipt_errors;
DROP TABLE receipts;
DROP TABLE deliveries;
DROP TABLE sortiment_konteringer;
DROP TABLE sortiment_senders;
DROP TABLE sortiment_versions;
