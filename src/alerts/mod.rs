//! Rejection alerts: what goes into the outbox with a rejection, how a group of them reads as one mail, and
//! the task that sends the outbox.

pub mod mail;
pub mod sender;

use serde::{Deserialize, Serialize};

use crate::domain::receipt::Receipt;

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
    pub fn rejected_count(&self) -> usize {
        self.rejected_total.unwrap_or(self.rejected.len())
    }
}
