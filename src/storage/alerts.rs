//! The alert outbox: claiming due groups so that one process sends each, and recording how sending went.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::alert_outbox;
use super::text::Stored;
use super::{Db, StorageError};
use crate::domain::alert::{Alert, AlertTarget};
use crate::domain::sortiment::Integration;

/// Alerts that go out as one mail, claimed by this process.
#[derive(Debug)]
pub struct ClaimedGroup {
    pub ids: Vec<i32>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub payloads: Vec<Alert>,
    /// Tries so far (the highest of the group).
    pub attempts: i32,
}

/// One outbox row, for `fkoeko alerts list`.
#[derive(Debug, Queryable)]
pub struct OutboxRow {
    pub id: i32,
    pub afsender_system: Option<String>,
    pub recipients: String,
    pub created_at: NaiveDateTime,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub last_error: Option<String>,
    pub sent_at: Option<NaiveDateTime>,
}

#[derive(serde::Deserialize)]
struct Recipients {
    to: Vec<String>,
    cc: Vec<String>,
}

fn corrupt(e: serde_json::Error) -> StorageError {
    StorageError::Corrupt(e.to_string())
}

impl Db {
    /// Claims the groups that are due: their grouping window or backoff has passed, or another process's claim
    /// ran out (it died while sending). A row is claimed by an update that only changes it while it is still
    /// claimable, and only the rows this process changed are its own: two processes never send the same row,
    /// on SQLite (one writer at a time) or PostgreSQL (the second update waits for the first, then finds the
    /// row taken).
    pub fn claim_due_alerts(&self, now: DateTime<Utc>, instance: &str, lease: chrono::Duration) -> Result<Vec<ClaimedGroup>, StorageError> {
        let now_naive = now.naive_utc();
        self.write(|conn| {
            let claimable =
                alert_outbox::status.eq("pending").or(alert_outbox::status.eq("sending").and(alert_outbox::lease_until.lt(now_naive)));
            let keys: Vec<String> = alert_outbox::table
                .filter(claimable)
                .filter(alert_outbox::next_attempt_at.le(now_naive).or(alert_outbox::status.eq("sending")))
                .select(alert_outbox::group_key)
                .distinct()
                .limit(50)
                .load(conn)?;
            let mut groups = Vec::with_capacity(keys.len());
            for key in keys {
                let mut ids: Vec<i32> = diesel::update(alert_outbox::table.filter(alert_outbox::group_key.eq(&key)).filter(claimable))
                    .set((
                        alert_outbox::status.eq("sending"),
                        alert_outbox::lease_until.eq((now + lease).naive_utc()),
                        alert_outbox::claimed_by.eq(instance),
                    ))
                    .returning(alert_outbox::id)
                    .get_results(conn)?;
                if ids.is_empty() {
                    continue;
                }
                ids.sort_unstable();
                let rows: Vec<(String, String, i32)> = alert_outbox::table
                    .filter(alert_outbox::id.eq_any(&ids))
                    .order(alert_outbox::id)
                    .select((alert_outbox::recipients, alert_outbox::payload, alert_outbox::attempts))
                    .load(conn)?;
                let Some(last) = rows.last() else { continue };
                let recipients: Recipients = serde_json::from_str(&last.0).map_err(corrupt)?;
                groups.push(ClaimedGroup {
                    ids,
                    to: recipients.to,
                    cc: recipients.cc,
                    payloads: rows.iter().map(|r| serde_json::from_str(&r.1)).collect::<Result<_, _>>().map_err(corrupt)?,
                    attempts: rows.iter().map(|r| r.2).max().unwrap_or(0),
                });
            }
            Ok(groups)
        })
    }

    pub fn alerts_sent(&self, ids: &[i32], message_id: &str, now: DateTime<Utc>) -> Result<(), StorageError> {
        diesel::update(alert_outbox::table.filter(alert_outbox::id.eq_any(ids)))
            .set((
                alert_outbox::status.eq("sent"),
                alert_outbox::sent_at.eq(now.naive_utc()),
                alert_outbox::message_id.eq(message_id),
                alert_outbox::lease_until.eq(None::<NaiveDateTime>),
                alert_outbox::attempts.eq(alert_outbox::attempts + 1),
            ))
            .execute(&mut self.conn()?)?;
        Ok(())
    }

    /// A failed try: back to pending until `retry_at`, or given up (`retry_at` None).
    pub fn alerts_failed(&self, ids: &[i32], attempts: i32, error: &str, retry_at: Option<DateTime<Utc>>) -> Result<(), StorageError> {
        let status = if retry_at.is_some() { "pending" } else { "failed" };
        // One transaction: a retry is never left pending without its new time.
        self.write(|conn| {
            diesel::update(alert_outbox::table.filter(alert_outbox::id.eq_any(ids)))
                .set((
                    alert_outbox::status.eq(status),
                    alert_outbox::attempts.eq(attempts),
                    alert_outbox::last_error.eq(error),
                    alert_outbox::lease_until.eq(None::<NaiveDateTime>),
                ))
                .execute(conn)?;
            if let Some(at) = retry_at {
                diesel::update(alert_outbox::table.filter(alert_outbox::id.eq_any(ids)))
                    .set(alert_outbox::next_attempt_at.eq(at.naive_utc()))
                    .execute(conn)?;
            }
            Ok(())
        })
    }

    pub fn list_alerts(&self, status: Option<&str>) -> Result<Vec<OutboxRow>, StorageError> {
        let mut query = alert_outbox::table
            .select((
                alert_outbox::id,
                alert_outbox::afsender_system,
                alert_outbox::recipients,
                alert_outbox::created_at,
                alert_outbox::status,
                alert_outbox::attempts,
                alert_outbox::next_attempt_at,
                alert_outbox::last_error,
                alert_outbox::sent_at,
            ))
            .order(alert_outbox::id)
            .into_boxed();
        if let Some(status) = status {
            query = query.filter(alert_outbox::status.eq(status.to_string()));
        }
        Ok(query.load(&mut self.conn()?)?)
    }
}

impl Db {
    /// Whether a batch file from `sender` in `integration` has been received since `since`.
    pub fn batch_file_since(&self, sender: uuid::Uuid, integration: Integration, since: NaiveDateTime) -> Result<bool, StorageError> {
        use super::schema::batch_files;
        let found: i64 = batch_files::table
            .filter(batch_files::afsender_system.eq(sender.to_string()))
            .filter(batch_files::integration.eq(Stored(integration)))
            .filter(batch_files::received_at.ge(since))
            .count()
            .get_result(&mut *self.conn()?)?;
        Ok(found > 0)
    }

    /// Records that the day's expected file from `sender` is missing, with its alert (if anyone is to be told),
    /// once: false when it was recorded already (by this or another process sharing the database).
    pub fn record_missing_file(
        &self,
        sender: uuid::Uuid,
        integration: Integration,
        day: chrono::NaiveDate,
        alert: Option<(&AlertTarget, &Alert)>,
    ) -> Result<bool, StorageError> {
        use super::schema::expected_file_alerts;
        let now = chrono::Utc::now();
        // A process that lost the race to insert runs again and finds the row.
        self.write(|conn| {
            let key = expected_file_alerts::table
                .filter(expected_file_alerts::afsender_system.eq(sender.to_string()))
                .filter(expected_file_alerts::integration.eq(Stored(integration)))
                .filter(expected_file_alerts::day.eq(day));
            if key.count().get_result::<i64>(conn)? > 0 {
                return Ok(false);
            }
            diesel::insert_into(expected_file_alerts::table)
                .values((
                    expected_file_alerts::afsender_system.eq(sender.to_string()),
                    expected_file_alerts::integration.eq(Stored(integration)),
                    expected_file_alerts::day.eq(day),
                    expected_file_alerts::alerted_at.eq(now.naive_utc()),
                ))
                .execute(conn)?;
            if let Some((target, alert)) = alert {
                super::booking::enqueue_alert(conn, target, alert, Some(sender), now, now)?;
            }
            Ok(true)
        })
    }
}
