//! What an alert says and to whom, decided when what it is about is written; `alerts` renders and sends it. Two
//! kinds: a sender's rejected deliveries, for its owners; and a receipt file the platform could not deliver, for
//! the operators.

use serde::{Deserialize, Serialize};

use super::delivery::DeliveryRecord;
use super::receipt::{Receipt, ReceiptSet, Status};

/// Who is told about a sender's rejections, decided when the rejection is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertTarget {
    /// Rows with the same key go out together: one sender, one set of recipients.
    pub group_key: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
}

/// What an alert says about one rejected delivery. Receipts carry CPR numbers masked already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPayload {
    pub sender: Option<String>,
    pub sender_name: Option<String>,
    pub integration: String,
    pub transport: String,
    pub delivery_id: String,
    pub received_at: String,
    pub rejected: Vec<Receipt>,
    pub accepted: usize,
    /// How many were rejected in all; a large batch file's alert lists only the first of them. Absent in
    /// alerts written before it was added: then `rejected` is all of them.
    #[serde(default)]
    pub rejected_total: Option<usize>,
}

impl AlertPayload {
    /// The alert about the rejected receipts of `set`, or none when nothing in it was rejected. `counts`
    /// (accepted, rejected) are the whole delivery's: a batch file's set holds only its first rejections.
    pub fn of(record: &DeliveryRecord, set: &ReceiptSet, counts: (usize, usize)) -> Option<Self> {
        let rejected: Vec<Receipt> = set.receipts.iter().filter(|r| r.status == Status::Afvist).cloned().collect();
        (!rejected.is_empty()).then(|| AlertPayload {
            sender: record.sender.map(|s| s.to_string()),
            sender_name: record.sender_name.clone(),
            integration: record.integration.as_str().to_string(),
            transport: record.transport.as_str().to_string(),
            delivery_id: set.delivery_id.to_string(),
            received_at: set.processed_at.to_string(),
            accepted: counts.0,
            rejected_total: Some(counts.1),
            rejected,
        })
    }

    pub fn rejected_count(&self) -> usize {
        self.rejected_total.unwrap_or(self.rejected.len())
    }
}

/// An alert in the outbox. Stored as its payload's JSON without a tag (rows written before the second kind are
/// rejections), told apart by their fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Alert {
    Rejection(AlertPayload),
    ReceiptFileUndelivered(UndeliveredReceiptFile),
}

/// A receipt file Serviceplatformen did not deliver to the sender after the last try: the sender has no receipt,
/// and an operator must act (see `fkoeko batch list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndeliveredReceiptFile {
    pub integration: String,
    pub receipt_name: String,
    pub senders_file_id: String,
    /// Who it was for: the sender's SFTP user, or its IT system.
    pub recipient: String,
    pub attempts: i32,
    pub last_error: String,
    pub failed_at: String,
}
