DROP TABLE alert_outbox;
ALTER TABLE sortiment_senders DROP COLUMN alerts;
