-- The SFTP users a sender sends batch files as, on Serviceplatformen (JSON list).
ALTER TABLE sortiment_senders ADD COLUMN sftp_users TEXT NOT NULL DEFAULT '[]';
