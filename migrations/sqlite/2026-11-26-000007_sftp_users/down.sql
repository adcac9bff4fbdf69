ALTER TABLE sortiment_senders DROP COLUMN sftp_users;
