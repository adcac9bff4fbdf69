//! Batch files (masse): the claim on a file, its progress in chunks of items, and the receipts it gets.
//!
//! A file's row is its claim. The process that holds the lease books the file's items chunk by chunk; every
//! chunk is one transaction that also renews the lease and moves `items_done` on, so that after a crash the
//! file is resumed after the last committed chunk, and a process that lost its lease cannot book anything.

use chrono::{Duration, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::booking::{close_delivery, decide_items, enqueue_alert, open_delivery, to_json, DeliveryRecord, ItemPlan, Opened};
use super::schema::{batch_files, batch_receipts};
use super::{execute_native, AnyConnection, Db, StorageError};
use crate::alerts::AlertTarget;
use crate::domain::receipt::{timestamp, Receipt, ReceiptSet, Status, NIL_UUID};
use crate::domain::rejection::Finding;

/// A file as it was found, before it is claimed.
#[derive(Debug, Clone)]
pub struct NewBatchFile {
    /// What identifies the file for idempotency: (Sender, SendersFileId), or its content hash.
    pub file_key: String,
    pub integration: String,
    pub file_name: String,
    pub stored_name: String,
    pub content_hash: String,
    pub size_bytes: i64,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, Queryable)]
pub struct BatchFile {
    pub id: i32,
    pub file_key: String,
    pub integration: String,
    pub file_name: String,
    pub stored_name: String,
    pub content_hash: String,
    pub size_bytes: i64,
    pub metadata: Option<String>,
    pub state: String,
    pub delivery_id: Option<i32>,
    pub leverance_id: Option<String>,
    pub afsender_system: Option<String>,
    pub items_total: Option<i32>,
    pub items_done: i32,
    pub accepted_count: i32,
    pub rejected_count: i32,
    pub claimed_by: String,
    pub lease_until: NaiveDateTime,
    pub received_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    pub receipt_file: Option<String>,
}

pub const PROCESSING: &str = "processing";
/// Every item is decided; the receipt file is being written.
pub const RECEIPT: &str = "receipt";
pub const DONE: &str = "done";

/// What claiming a file gave.
#[derive(Debug)]
pub enum Claimed {
    /// This process owns the file now: a new one, or one whose owner stopped.
    Mine(BatchFile),
    /// A file with this key was processed before: its receipts stand.
    Done(BatchFile),
    /// Another process is working on a file with this key.
    Busy,
}

/// The lease under which a process works on a file.
#[derive(Debug, Clone)]
pub struct Lease {
    pub batch_id: i32,
    pub owner: String,
    pub duration: Duration,
}

/// Where a delivery's items go: its row, or nowhere because its LeveranceId was used for other content.
#[derive(Debug, Clone)]
pub enum Target {
    Delivery(i32),
    Conflict(Finding),
}

impl Db {
    pub fn batch_file(&self, id: i32) -> Result<Option<BatchFile>, StorageError> {
        let mut conn = self.conn()?;
        Ok(batch_files::table.find(id).first(&mut *conn).optional()?)
    }

    pub fn batch_file_by_stored_name(&self, stored_name: &str) -> Result<Option<BatchFile>, StorageError> {
        let mut conn = self.conn()?;
        Ok(batch_files::table.filter(batch_files::stored_name.eq(stored_name)).first(&mut *conn).optional()?)
    }

    /// Files of an integration, not done, whose owner's lease ran out: their owner stopped.
    pub fn abandoned_batch_files(&self, integration: &str) -> Result<Vec<BatchFile>, StorageError> {
        let mut conn = self.conn()?;
        Ok(batch_files::table
            .filter(batch_files::integration.eq(integration))
            .filter(batch_files::state.ne(DONE))
            .filter(batch_files::lease_until.lt(Utc::now().naive_utc()))
            .order(batch_files::id)
            .load(&mut *conn)?)
    }

    /// Claims a file found in the processing folder under `new.stored_name`.
    pub fn claim_batch_file(&self, new: &NewBatchFile, owner: &str, lease: Duration) -> Result<Claimed, StorageError> {
        self.write(|conn| {
            let now = Utc::now().naive_utc();
            let existing: Option<BatchFile> = batch_files::table.filter(batch_files::file_key.eq(&new.file_key)).first(conn).optional()?;
            match existing {
                None => {
                    diesel::insert_into(batch_files::table)
                        .values((
                            batch_files::file_key.eq(&new.file_key),
                            batch_files::integration.eq(&new.integration),
                            batch_files::file_name.eq(&new.file_name),
                            batch_files::stored_name.eq(&new.stored_name),
                            batch_files::content_hash.eq(&new.content_hash),
                            batch_files::size_bytes.eq(new.size_bytes),
                            batch_files::metadata.eq(&new.metadata),
                            batch_files::state.eq(PROCESSING),
                            batch_files::claimed_by.eq(owner),
                            batch_files::lease_until.eq(now + lease),
                            batch_files::received_at.eq(now),
                        ))
                        .execute(conn)?;
                    let row = batch_files::table.filter(batch_files::file_key.eq(&new.file_key)).first(conn)?;
                    Ok(Claimed::Mine(row))
                }
                Some(row) if row.state == DONE => Ok(Claimed::Done(row)),
                Some(row) if row.stored_name == new.stored_name && row.lease_until < now => {
                    take_over(conn, &row, owner, lease)?;
                    let row = batch_files::table.find(row.id).first(conn)?;
                    Ok(Claimed::Mine(row))
                }
                Some(_) => Ok(Claimed::Busy),
            }
        })
    }

    /// Takes over a file whose owner's lease ran out; false when another process was first.
    pub fn take_over_batch_file(&self, file: &BatchFile, owner: &str, lease: Duration) -> Result<bool, StorageError> {
        self.write(|conn| take_over(conn, file, owner, lease))
    }

    /// Opens the file's delivery (or finds it again when the file is resumed); records the item count.
    pub fn start_batch(&self, lease: &Lease, record: &DeliveryRecord, items_total: usize) -> Result<(Target, i32), StorageError> {
        self.write(|conn| {
            let file = renew(conn, lease, None)?;
            diesel::update(batch_files::table.find(lease.batch_id))
                .set((
                    batch_files::items_total.eq(items_total as i32),
                    batch_files::leverance_id.eq(record.delivery_id.map(|id| id.to_string())),
                    batch_files::afsender_system.eq(record.sender.map(|id| id.to_string())),
                ))
                .execute(conn)?;
            if let Some(key) = file.delivery_id {
                return Ok((Target::Delivery(key), file.items_done));
            }
            let target = match open_delivery(conn, record, Utc::now())? {
                Opened::New(key) | Opened::Seen { key, .. } => {
                    diesel::update(batch_files::table.find(lease.batch_id)).set(batch_files::delivery_id.eq(key)).execute(conn)?;
                    Target::Delivery(key)
                }
                Opened::Conflict(finding) => Target::Conflict(finding),
            };
            Ok((target, file.items_done))
        })
    }

    /// Decides and books the items from position `first` (0-based) on, in one transaction with their receipts
    /// and the file's progress. Fails with `LeaseLost`, writing nothing, if this process no longer owns the file
    /// or another one moved it on.
    pub fn commit_batch_chunk(
        &self,
        lease: &Lease,
        record: &DeliveryRecord,
        target: &Target,
        first: i32,
        plans: &[ItemPlan],
    ) -> Result<Vec<Receipt>, StorageError> {
        self.write(|conn| {
            let at = Utc::now();
            renew(conn, lease, Some(first))?;
            let receipts = match target {
                Target::Delivery(key) => decide_items(conn, record, *key, plans, at)?,
                Target::Conflict(finding) => {
                    let delivery_id = record.delivery_id.map_or_else(|| NIL_UUID.to_string(), |id| id.to_string());
                    plans
                        .iter()
                        .map(|p| Receipt::rejected(&delivery_id, &p.reference, &timestamp(at), std::slice::from_ref(finding)))
                        .collect()
                }
            };
            let rows: Vec<_> = receipts
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        batch_receipts::batch_id.eq(lease.batch_id),
                        batch_receipts::position.eq(first + i as i32),
                        batch_receipts::status.eq(r.status.as_str()),
                        batch_receipts::receipt_json.eq(to_json(r)),
                    )
                })
                .collect();
            // In slices: SQLite allows a limited number of parameters in one statement.
            for rows in rows.chunks(500) {
                execute_native(conn, diesel::insert_into(batch_receipts::table).values(rows))?;
            }
            let accepted = receipts.iter().filter(|r| r.status == Status::Accepteret).count() as i32;
            diesel::update(batch_files::table.find(lease.batch_id))
                .set((
                    batch_files::items_done.eq(first + receipts.len() as i32),
                    batch_files::accepted_count.eq(batch_files::accepted_count + accepted),
                    batch_files::rejected_count.eq(batch_files::rejected_count + (receipts.len() as i32 - accepted)),
                ))
                .execute(conn)?;
            Ok(receipts)
        })
    }

    /// Every item is decided: records the delivery's outcome and its alert, and the time the receipt file
    /// states. Returns the file as it now stands.
    pub fn finish_batch(
        &self,
        lease: &Lease,
        record: &DeliveryRecord,
        target: &Target,
        alert: Option<(&AlertTarget, Duration)>,
    ) -> Result<BatchFile, StorageError> {
        self.write(|conn| {
            let file = renew(conn, lease, None)?;
            let at = Utc::now();
            let (accepted, rejected) = (file.accepted_count as usize, file.rejected_count as usize);
            // The alert lists the first rejections; the mail shows no more than that anyway.
            let listed: Vec<String> = batch_receipts::table
                .filter(batch_receipts::batch_id.eq(lease.batch_id))
                .filter(batch_receipts::status.eq(Status::Afvist.as_str()))
                .order(batch_receipts::position)
                .select(batch_receipts::receipt_json)
                .limit(crate::alerts::mail::MAX_LISTED as i64)
                .load(conn)?;
            let listed = listed
                .iter()
                .map(|j| serde_json::from_str(j))
                .collect::<Result<Vec<Receipt>, _>>()
                .map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let delivery_id = record.delivery_id.map_or_else(|| NIL_UUID.to_string(), |id| id.to_string());
            let sender = record.sender.map_or_else(|| NIL_UUID.to_string(), |id| id.to_string());
            let summary = ReceiptSet::new(delivery_id, sender, timestamp(at), listed);
            if let Target::Delivery(key) = target {
                // The receipts themselves are in batch_receipts; the delivery keeps the counts.
                let empty = ReceiptSet::new(summary.delivery_id.clone(), summary.sender.clone(), summary.processed_at.clone(), Vec::new());
                close_delivery(conn, *key, accepted, rejected, &to_json(&empty))?;
            }
            enqueue_alert(conn, record, &summary, (accepted, rejected), alert, at)?;
            diesel::update(batch_files::table.find(lease.batch_id))
                .set((batch_files::state.eq(RECEIPT), batch_files::finished_at.eq(at.naive_utc())))
                .execute(conn)?;
            Ok(batch_files::table.find(lease.batch_id).first(conn)?)
        })
    }

    /// The receipts of a file in order, `limit` at a time after position `after` (use -1 to start).
    pub fn batch_receipts_page(&self, batch_id: i32, after: i32, limit: i64) -> Result<Vec<(i32, Receipt)>, StorageError> {
        let mut conn = self.conn()?;
        let rows: Vec<(i32, String)> = batch_receipts::table
            .filter(batch_receipts::batch_id.eq(batch_id))
            .filter(batch_receipts::position.gt(after))
            .order(batch_receipts::position)
            .select((batch_receipts::position, batch_receipts::receipt_json))
            .limit(limit)
            .load(&mut *conn)?;
        rows.into_iter()
            .map(|(p, json)| serde_json::from_str(&json).map(|r| (p, r)).map_err(|e| StorageError::Corrupt(e.to_string())))
            .collect()
    }

    /// The receipt file is written and the input archived.
    pub fn mark_batch_done(&self, lease: &Lease, receipt_file: &str) -> Result<(), StorageError> {
        self.write(|conn| {
            renew(conn, lease, None)?;
            diesel::update(batch_files::table.find(lease.batch_id))
                .set((batch_files::state.eq(DONE), batch_files::receipt_file.eq(receipt_file)))
                .execute(conn)?;
            Ok(())
        })
    }
}

fn take_over(conn: &mut AnyConnection, file: &BatchFile, owner: &str, lease: Duration) -> Result<bool, StorageError> {
    let now = Utc::now().naive_utc();
    let taken = diesel::update(batch_files::table.find(file.id))
        .filter(batch_files::claimed_by.eq(&file.claimed_by))
        .filter(batch_files::lease_until.eq(file.lease_until))
        .filter(batch_files::lease_until.lt(now))
        .set((batch_files::claimed_by.eq(owner), batch_files::lease_until.eq(now + lease)))
        .execute(conn)?;
    if taken == 1 {
        tracing::warn!(file = %file.file_name, previous_owner = %file.claimed_by, done = file.items_done, "taking over a batch file whose process stopped");
    }
    Ok(taken == 1)
}

/// Renews the lease, inside the caller's transaction; with `at` also checks that no other process has moved
/// the file on since this one read its position.
fn renew(conn: &mut AnyConnection, lease: &Lease, at: Option<i32>) -> Result<BatchFile, StorageError> {
    let until = Utc::now().naive_utc() + lease.duration;
    let mut update = diesel::update(batch_files::table.find(lease.batch_id)).filter(batch_files::claimed_by.eq(&lease.owner)).into_boxed();
    if let Some(at) = at {
        update = update.filter(batch_files::items_done.eq(at));
    }
    if update.set(batch_files::lease_until.eq(until)).execute(conn)? != 1 {
        return Err(StorageError::LeaseLost);
    }
    Ok(batch_files::table.find(lease.batch_id).first(conn)?)
}
