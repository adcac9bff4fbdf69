DROP TABLE installation_identity;
DROP TABLE target_columns;
DROP TABLE target_outbox;
DROP TABLE target_files;
