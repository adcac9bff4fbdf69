-- Rejection alerts: per sender, whether its owners get mail (the sortiment's `advarsler`).
ALTER TABLE sortiment_senders ADD COLUMN alerts INTEGER NOT NULL DEFAULT 1;

-- The outbox: one row per rejected delivery, written in the same transaction as its receipts, so that a
-- rejection without an alert, or an alert for a receipt that was rolled back, cannot happen. The sender task
-- sends the rows of one sender together as one mail.
CREATE TABLE alert_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    group_key TEXT NOT NULL,            -- rows with the same key go out as one mail
    afsender_system TEXT,
    recipients TEXT NOT NULL,           -- JSON: {"to": [...], "cc": [...]}
    payload TEXT NOT NULL,              -- JSON: the delivery and its rejected receipts (CPR masked)
    created_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL, -- the grouping window, then the backoff after a failed try
    lease_until TIMESTAMP,              -- while 'sending': when another process may take it over
    claimed_by TEXT,
    last_error TEXT,
    sent_at TIMESTAMP,
    message_id TEXT
);
CREATE INDEX alert_outbox_due ON alert_outbox (status, next_attempt_at);
