//! Batch files (masse): the claim on a file, its progress in chunks of items, and the receipts it gets.
//!
//! A file's row is its claim. The process that holds the lease books the file's items chunk by chunk; every
//! chunk is one transaction that also renews the lease and moves `items_done` on, so that after a crash the
//! file is resumed after the last committed chunk, and a process that lost its lease cannot book anything.

use chrono::{Duration, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::booking::to_json;
use super::schema::{batch_files, batch_receipts};
use super::text::Stored;
use super::{execute_native, AnyConnection, Db, StorageError};
use crate::domain::audit::{AuditAction, AuditEntry};
use crate::domain::delivery::DeliveryRecord;
use crate::domain::receipt::{Receipt, Status};
use crate::domain::sortiment::Integration;

/// A file as it was found, before it is claimed.
#[derive(Debug, Clone)]
pub struct NewBatchFile {
    /// What identifies the file for idempotency: (Sender, SendersFileId), or its content hash.
    pub file_key: String,
    pub integration: Integration,
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
    #[diesel(deserialize_as = Stored<Integration>)]
    pub integration: Integration,
    pub file_name: String,
    pub stored_name: String,
    pub content_hash: String,
    pub size_bytes: i64,
    pub metadata: Option<String>,
    #[diesel(deserialize_as = Stored<BatchState>)]
    pub state: BatchState,
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
    /// When its archived copy was deleted at the end of its retention period.
    pub archive_purged_at: Option<NaiveDateTime>,
}

/// What an operator may ask of a batch file (the page Batchfiler, `fkoeko batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reprocess {
    /// A file that is not done: take it over now.
    TakeOver,
    /// A done file: write its receipt file again.
    WriteReceipt,
}

impl Reprocess {
    pub fn audit_action(self) -> AuditAction {
        match self {
            Reprocess::TakeOver => AuditAction::BatchTakenOver,
            Reprocess::WriteReceipt => AuditAction::ReceiptRewritten,
        }
    }
}

pub use super::text::BatchState;

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

impl Db {
    pub fn batch_file(&self, id: i32) -> Result<Option<BatchFile>, StorageError> {
        let mut conn = self.conn()?;
        Ok(batch_files::table.find(id).first(&mut *conn).optional()?)
    }

    /// The latest batch files, newest first.
    pub fn recent_batch_files(&self, limit: i64) -> Result<Vec<BatchFile>, StorageError> {
        let mut conn = self.conn()?;
        Ok(batch_files::table.order(batch_files::id.desc()).limit(limit).load(&mut *conn)?)
    }

    pub fn batch_file_by_stored_name(&self, stored_name: &str) -> Result<Option<BatchFile>, StorageError> {
        let mut conn = self.conn()?;
        Ok(batch_files::table.filter(batch_files::stored_name.eq(stored_name)).first(&mut *conn).optional()?)
    }

    /// Files of an integration, not done, whose owner's lease ran out: their owner stopped.
    pub fn abandoned_batch_files(&self, integration: Integration) -> Result<Vec<BatchFile>, StorageError> {
        let mut conn = self.conn()?;
        Ok(batch_files::table
            .filter(batch_files::integration.eq(Stored(integration)))
            .filter(batch_files::state.ne(Stored(BatchState::Done)))
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
                            batch_files::integration.eq(Stored(new.integration)),
                            batch_files::file_name.eq(&new.file_name),
                            batch_files::stored_name.eq(&new.stored_name),
                            batch_files::content_hash.eq(&new.content_hash),
                            batch_files::size_bytes.eq(new.size_bytes),
                            batch_files::metadata.eq(&new.metadata),
                            batch_files::state.eq(Stored(BatchState::Processing)),
                            batch_files::claimed_by.eq(owner),
                            batch_files::lease_until.eq(now + lease),
                            batch_files::received_at.eq(now),
                        ))
                        .execute(conn)?;
                    let row = batch_files::table.filter(batch_files::file_key.eq(&new.file_key)).first(conn)?;
                    Ok(Claimed::Mine(row))
                }
                Some(row) if row.state == BatchState::Done => Ok(Claimed::Done(row)),
                Some(row) if row.stored_name == new.stored_name && row.lease_until < now => {
                    take_over(conn, &row, owner, lease)?;
                    let row = batch_files::table.find(row.id).first(conn)?;
                    Ok(Claimed::Mine(row))
                }
                Some(_) => Ok(Claimed::Busy),
            }
        })
    }

    /// Does what an operator asks of a file (`Reprocess`) and records it in the audit trail, in one transaction:
    /// the file's lease ends, so the next round of any receiver acts on it at once. `None`: no such file, or not
    /// in a state the request applies to.
    pub fn reprocess_batch_file(&self, id: i32, how: Reprocess, actor: &str, origin: &str) -> Result<Option<BatchFile>, StorageError> {
        let unleased = Utc::now().naive_utc() - Duration::seconds(1);
        self.write(|conn| {
            let file = batch_files::table.find(id);
            let changed = match how {
                // Its process failed or hangs: taken over, carried on from the last committed chunk.
                Reprocess::TakeOver => diesel::update(file.filter(batch_files::state.ne(Stored(BatchState::Done))))
                    .set(batch_files::lease_until.eq(unleased))
                    .execute(conn)?,
                // Back to the receipt step: the receipt file written again from the stored receipts (and sent back
                // again through Serviceplatformen); nothing is decided or booked again.
                Reprocess::WriteReceipt => diesel::update(file.filter(batch_files::state.eq(Stored(BatchState::Done))))
                    .set((batch_files::state.eq(Stored(BatchState::Receipt)), batch_files::lease_until.eq(unleased)))
                    .execute(conn)?,
            };
            if changed == 0 {
                return Ok(None);
            }
            let entry = AuditEntry::new(actor, how.audit_action(), format!("batchfil {id}"), Some(origin.to_string()));
            super::audit::record(conn, &entry)?;
            Ok(file.first(conn).optional()?)
        })
    }

    /// Takes over a file whose owner's lease ran out; false when another process was first.
    pub fn take_over_batch_file(&self, file: &BatchFile, owner: &str, lease: Duration) -> Result<bool, StorageError> {
        self.write(|conn| take_over(conn, file, owner, lease))
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
                .set((batch_files::state.eq(Stored(BatchState::Done)), batch_files::receipt_file.eq(receipt_file)))
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
pub fn renew(conn: &mut AnyConnection, lease: &Lease, at: Option<i32>) -> Result<BatchFile, StorageError> {
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

/// Records what the file's delivery is (its item count, LeveranceId and sender), inside the caller's
/// transaction, and renews the lease; returns the file as it stands (a resumed file has its delivery and progress).
pub fn record_batch_start(
    conn: &mut AnyConnection,
    lease: &Lease,
    record: &DeliveryRecord,
    items_total: usize,
) -> Result<BatchFile, StorageError> {
    let file = renew(conn, lease, None)?;
    diesel::update(batch_files::table.find(lease.batch_id))
        .set((
            batch_files::items_total.eq(items_total as i32),
            batch_files::leverance_id.eq(record.delivery_id.map(|id| id.to_string())),
            batch_files::afsender_system.eq(record.sender.map(|id| id.to_string())),
        ))
        .execute(conn)?;
    Ok(file)
}

/// The file's delivery row, once it is written.
pub fn set_batch_delivery(conn: &mut AnyConnection, batch_id: i32, delivery_key: i32) -> Result<(), StorageError> {
    diesel::update(batch_files::table.find(batch_id)).set(batch_files::delivery_id.eq(delivery_key)).execute(conn)?;
    Ok(())
}

/// Writes the receipts of the items from position `first` (0-based) on, and moves the file's progress and
/// counts on; inside the caller's transaction, after `renew` checked the position.
pub fn insert_batch_receipts(conn: &mut AnyConnection, batch_id: i32, first: i32, receipts: &[Receipt]) -> Result<(), StorageError> {
    let rows: Vec<_> = receipts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                batch_receipts::batch_id.eq(batch_id),
                batch_receipts::position.eq(first + i as i32),
                batch_receipts::status.eq(Stored(r.status)),
                batch_receipts::receipt_json.eq(to_json(r)),
            )
        })
        .collect();
    // In slices: SQLite allows a limited number of parameters in one statement.
    for rows in rows.chunks(500) {
        execute_native(conn, diesel::insert_into(batch_receipts::table).values(rows))?;
    }
    let accepted = receipts.iter().filter(|r| r.status == Status::Accepteret).count() as i32;
    diesel::update(batch_files::table.find(batch_id))
        .set((
            batch_files::items_done.eq(first + receipts.len() as i32),
            batch_files::accepted_count.eq(batch_files::accepted_count + accepted),
            batch_files::rejected_count.eq(batch_files::rejected_count + (receipts.len() as i32 - accepted)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The first `limit` rejected receipts of a file, in file order.
pub fn first_rejections(conn: &mut AnyConnection, batch_id: i32, limit: usize) -> Result<Vec<Receipt>, StorageError> {
    let listed: Vec<String> = batch_receipts::table
        .filter(batch_receipts::batch_id.eq(batch_id))
        .filter(batch_receipts::status.eq(Stored(Status::Afvist)))
        .order(batch_receipts::position)
        .select(batch_receipts::receipt_json)
        .limit(limit as i64)
        .load(conn)?;
    listed.iter().map(|j| serde_json::from_str(j)).collect::<Result<Vec<Receipt>, _>>().map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// Every item of the file is decided: its receipt file is to be written next. Returns the file as it now stands.
pub fn mark_batch_decided(conn: &mut AnyConnection, batch_id: i32, at: chrono::DateTime<Utc>) -> Result<BatchFile, StorageError> {
    diesel::update(batch_files::table.find(batch_id))
        .set((batch_files::state.eq(Stored(BatchState::Receipt)), batch_files::finished_at.eq(at.naive_utc())))
        .execute(conn)?;
    Ok(batch_files::table.find(batch_id).first(conn)?)
}
