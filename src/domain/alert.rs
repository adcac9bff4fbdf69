//! What an alert says and to whom, decided when what it is about is written; `alerts` renders and sends it. Three
//! kinds: a sender's rejected deliveries, for its owners; a receipt file the platform could not deliver, for the
//! operators; and an expected batch file that has not arrived by its time, for the sender's owners and the
//! operators.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
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
    ExpectedFileMissing(MissingFile),
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

/// A batch file a sender is expected to deliver every day (`[[batch.expected]]`): alerted when none has arrived
/// by its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFile {
    /// AfsenderSystem.
    pub sender: uuid::Uuid,
    pub integration: super::sortiment::Integration,
    /// The time of day (the machine's local time) by which the day's file has arrived.
    pub by: ClockTime,
    /// Also expected on Saturdays and Sundays.
    #[serde(default)]
    pub weekends: bool,
}

impl ExpectedFile {
    /// The day whose file is due at local time `now`: a day it is expected, once its time has passed.
    pub fn due(&self, now: NaiveDateTime) -> Option<NaiveDate> {
        let day = now.date();
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        (now.time() >= self.by.0 && (self.weekends || !weekend)).then_some(day)
    }
}

/// A time of day written HH:MM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockTime(pub NaiveTime);

impl std::fmt::Display for ClockTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%H:%M"))
    }
}

impl Serialize for ClockTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NaiveTime::parse_from_str(&text, "%H:%M")
            .map(ClockTime)
            .map_err(|_| serde::de::Error::custom(format!("'{text}' is not a time of day written HH:MM (e.g. 07:00)")))
    }
}

/// No file arrived from a sender by its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingFile {
    pub sender: String,
    pub sender_name: Option<String>,
    pub integration: String,
    pub day: String,
    pub expected_by: String,
}

#[cfg(test)]
mod expected_tests {
    use super::*;

    fn at(day: &str, time: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(&format!("{day} {time}"), "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn a_file_is_due_after_its_time_on_the_days_it_is_expected() {
        let expected: ExpectedFile =
            toml::from_str("sender = \"6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01\"\nintegration = \"SF1590_A\"\nby = \"07:00\"").unwrap();
        // 2026-11-26 is a Thursday, 2026-11-28 a Saturday.
        assert_eq!(expected.due(at("2026-11-26", "06:59")), None);
        assert_eq!(expected.due(at("2026-11-26", "07:00")), NaiveDate::from_ymd_opt(2026, 11, 26));
        assert_eq!(expected.due(at("2026-11-28", "09:00")), None);
        assert_eq!(
            ExpectedFile { weekends: true, ..expected.clone() }.due(at("2026-11-28", "09:00")),
            NaiveDate::from_ymd_opt(2026, 11, 28)
        );
        let wrong =
            toml::from_str::<ExpectedFile>("sender = \"6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01\"\nintegration = \"SF1590_A\"\nby = \"7\"");
        assert!(wrong.unwrap_err().to_string().contains("'7' is not a time of day written HH:MM"));
    }
}
