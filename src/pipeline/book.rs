//! The book stage: decided items written with their receipts, one transaction per straks call and per chunk of
//! a batch file. Storage looks up the facts and writes; `domain::idempotency` decides from the facts (a delivery or
//! item seen before, a related claim); this module puts the two together inside the transaction, so that
//! parallel sends of the same content book it once.

use chrono::{DateTime, Duration, Utc};
use diesel::Connection;

use crate::domain::alert::{AlertPayload, AlertTarget};
use crate::domain::delivery::{Booking, DeliveryRecord, ItemPlan};
use crate::domain::idempotency::{judge_delivery, judge_item, DeliveryStanding, ItemDecision};
use crate::domain::receipt::{Receipt, ReceiptSet, Stamp};
use crate::domain::rejection::Finding;
use crate::storage::batch::{self as stored_batch, BatchFile, Lease};
use crate::storage::booking as store;
use crate::storage::{AnyConnection, Db, StorageError};

/// Who hears of a delivery's rejections, and how long the outbox waits to gather more of them into one mail.
pub type Alert<'a> = Option<(&'a AlertTarget, Duration)>;

/// Where a delivery's items go: its row, or nowhere because its LeveranceId was used for other content.
#[derive(Debug, Clone)]
pub enum Target {
    Delivery(i32),
    Conflict(Finding),
}

/// How a delivery stands when it is to be written.
enum Opened {
    /// Its row, new or written before (a repeat; `answer` is what it got then).
    Row {
        key: i32,
        answer: Option<String>,
    },
    Conflict(Finding),
}

/// Writes a straks delivery and returns its receipts; a delivery seen before returns what it got then. When
/// something is rejected and `alert` names recipients, the alert goes into the outbox in the same transaction.
/// Alone in its transaction: the straks path books through the writer's groups (`commit_group`), and comes here
/// only when a group could not be committed.
pub fn commit_delivery(db: &Db, record: &DeliveryRecord, plans: &[ItemPlan], alert: Alert) -> Result<ReceiptSet, StorageError> {
    // One write transaction (see `Db::write`): the idempotency facts read below and the writes that depend on
    // them cannot interleave with another delivery's.
    db.write(|conn| write_delivery(conn, record, plans, alert))
}

/// One delivery waiting in the writer's queue.
pub struct Queued {
    pub record: DeliveryRecord,
    pub plans: Vec<ItemPlan>,
    pub alert: Option<(AlertTarget, Duration)>,
}

impl Queued {
    fn alert(&self) -> Alert<'_> {
        self.alert.as_ref().map(|(target, window)| (target, *window))
    }
}

/// Writes several straks deliveries in one transaction, one commit and one fsync: the answer of each, in order.
/// Each delivery sees the ones before it in the group, so two copies of one finansbilag book it once.
///
/// A delivery that fails never takes the others with it: the group is first written straight through, and if
/// any of it fails, that is rolled back and the group written again with a savepoint around each delivery, so
/// that the one that fails is rolled back alone. Savepoints are not used the first time because they cost (in
/// SQLite a sub-journal written for every page; on PostgreSQL two round trips a delivery), and a failure is
/// rare. If the group cannot be committed at all, each delivery is tried again in a transaction of its own.
pub fn commit_group(db: &Db, group: &[Queued]) -> Vec<Result<ReceiptSet, StorageError>> {
    if let [one] = group {
        return vec![commit_delivery(db, &one.record, &one.plans, one.alert())];
    }
    let straight = db.write(|conn| group.iter().map(|q| write_delivery(conn, &q.record, &q.plans, q.alert()).map(Ok)).collect());
    if let Ok(answers) = straight {
        return answers;
    }
    let mut answers = Vec::with_capacity(group.len());
    let committed = db.write(|conn| {
        answers.clear();
        for queued in group {
            answers.push(write_under_savepoint(conn, queued));
        }
        Ok(())
    });
    match committed {
        Ok(()) => answers,
        Err(error) => {
            tracing::warn!(%error, deliveries = group.len(), "a group of deliveries could not be committed; each is written alone");
            group.iter().map(|q| commit_delivery(db, &q.record, &q.plans, q.alert())).collect()
        }
    }
}

/// One delivery of a group, under its own savepoint. On PostgreSQL another instance may write the same rows
/// first; the savepoint is rolled back and the delivery decided again, and then sees them.
fn write_under_savepoint(conn: &mut AnyConnection, queued: &Queued) -> Result<ReceiptSet, StorageError> {
    let mut tries = 0;
    loop {
        tries += 1;
        // Inside the group's transaction diesel makes this a SAVEPOINT, rolled back to when it fails.
        match conn.transaction(|conn| write_delivery(conn, &queued.record, &queued.plans, queued.alert())) {
            Err(error) if error.lost_race() && tries < 5 => {
                tracing::debug!(tries, "another process wrote the same rows first; deciding the delivery again");
            }
            outcome => return outcome,
        }
    }
}

/// A straks delivery's writes, inside a transaction the caller opened: its row, its items and its alert; or,
/// for a delivery seen before, what it got then.
fn write_delivery(conn: &mut AnyConnection, record: &DeliveryRecord, plans: &[ItemPlan], alert: Alert) -> Result<ReceiptSet, StorageError> {
    let at = Utc::now();
    let key = match open(conn, record, at)? {
        Opened::Row { answer: Some(answer), .. } => {
            return serde_json::from_str(&answer).map_err(|e| StorageError::Corrupt(e.to_string()));
        }
        Opened::Conflict(finding) => {
            let set = record.receipt_set(at, record.reject_all(plans.iter().map(|p| p.reference.clone()), &[finding], at));
            enqueue_alert(conn, record, &set, (0, set.rejected()), alert, at)?;
            return Ok(set);
        }
        Opened::Row { key, answer: None } => key,
    };
    let set = record.receipt_set(at, decide_items(conn, record, key, plans, at)?);
    store::close_delivery(conn, key, set.accepted(), set.rejected(), &store::to_json(&set))?;
    enqueue_alert(conn, record, &set, (set.accepted(), set.rejected()), alert, at)?;
    Ok(set)
}

/// Opens a batch file's delivery (or finds it again when the file is resumed) and records its item count.
/// Returns where its items go and how many were booked by an earlier run.
pub fn start_batch(db: &Db, lease: &Lease, record: &DeliveryRecord, items_total: usize) -> Result<(Target, i32), StorageError> {
    db.write(|conn| {
        let file = stored_batch::record_batch_start(conn, lease, record, items_total)?;
        if let Some(key) = file.delivery_id {
            return Ok((Target::Delivery(key), file.items_done));
        }
        let target = match open(conn, record, Utc::now())? {
            Opened::Row { key, .. } => {
                stored_batch::set_batch_delivery(conn, lease.batch_id, key)?;
                Target::Delivery(key)
            }
            Opened::Conflict(finding) => Target::Conflict(finding),
        };
        Ok((target, file.items_done))
    })
}

/// Decides and books a batch file's items from position `first` (0-based) on, in one transaction with their
/// receipts and the file's progress. Fails with `LeaseLost`, writing nothing, if this process no longer owns
/// the file or another one moved it on.
pub fn commit_batch_chunk(
    db: &Db,
    lease: &Lease,
    record: &DeliveryRecord,
    target: &Target,
    first: i32,
    plans: &[ItemPlan],
) -> Result<Vec<Receipt>, StorageError> {
    db.write(|conn| {
        let at = Utc::now();
        stored_batch::renew(conn, lease, Some(first))?;
        let receipts = match target {
            Target::Delivery(key) => decide_items(conn, record, *key, plans, at)?,
            Target::Conflict(finding) => record.reject_all(plans.iter().map(|p| p.reference.clone()), std::slice::from_ref(finding), at),
        };
        stored_batch::insert_batch_receipts(conn, lease.batch_id, first, &receipts)?;
        Ok(receipts)
    })
}

/// Every item of a batch file is decided: records the delivery's outcome and its alert (listing the first
/// `listed` rejections), and the time the receipt file states. Returns the file as it now stands.
pub fn finish_batch(
    db: &Db,
    lease: &Lease,
    record: &DeliveryRecord,
    target: &Target,
    alert: Alert,
    listed: usize,
) -> Result<BatchFile, StorageError> {
    db.write(|conn| {
        let file = stored_batch::renew(conn, lease, None)?;
        let at = Utc::now();
        let (accepted, rejected) = (file.accepted_count as usize, file.rejected_count as usize);
        let summary = record.receipt_set(at, stored_batch::first_rejections(conn, lease.batch_id, listed)?);
        if let Target::Delivery(key) = target {
            // The receipts themselves are in batch_receipts; the delivery keeps the counts.
            store::close_delivery(conn, *key, accepted, rejected, &store::to_json(&record.receipt_set(at, Vec::new())))?;
        }
        enqueue_alert(conn, record, &summary, (accepted, rejected), alert, at)?;
        stored_batch::mark_batch_decided(conn, lease.batch_id, at)
    })
}

/// The delivery's row: found again (a repeat), written (new), or none (a conflict).
fn open(conn: &mut AnyConnection, record: &DeliveryRecord, at: DateTime<Utc>) -> Result<Opened, StorageError> {
    let earlier = match record.delivery_id {
        Some(id) => store::earlier_delivery(conn, id)?,
        None => None,
    };
    let (key, earlier) = earlier.map_or((None, None), |(key, earlier)| (Some(key), Some(earlier)));
    Ok(match judge_delivery(record, earlier) {
        DeliveryStanding::Repeat { response } => Opened::Row { key: key.expect("a repeat has a row"), answer: Some(response) },
        DeliveryStanding::Conflict(finding) => {
            tracing::warn!("LeveranceId already used for other content; nothing written");
            Opened::Conflict(finding)
        }
        DeliveryStanding::New => Opened::Row { key: store::insert_delivery(conn, record, at)?, answer: None },
    })
}

/// Decides each item inside the transaction from what was written before, and writes its receipt and, when it
/// is accepted, its import rows.
fn decide_items(
    conn: &mut AnyConnection,
    record: &DeliveryRecord,
    delivery_key: i32,
    plans: &[ItemPlan],
    at: DateTime<Utc>,
) -> Result<Vec<Receipt>, StorageError> {
    let (delivery_id, stamp) = (record.delivery_id.unwrap_or_default(), Stamp(at));
    let sender_text = record.sender.map(|s| s.to_string()).unwrap_or_default();
    let mut answers = Vec::with_capacity(plans.len());
    for plan in plans {
        // Without a sender (its AfsenderSystem unreadable, so rejected already) nothing can have been accepted
        // from it before, and its related claim cannot be looked for.
        let decision = match record.sender {
            Some(sender) => {
                let earlier = store::accepted_item(conn, record.integration, sender, &plan.reference)?;
                judge_item(plan, earlier, |related| {
                    Ok::<_, StorageError>(store::accepted_item(conn, record.integration, sender, related)?.is_some())
                })?
            }
            None => judge_item(plan, None, |_| Ok::<_, StorageError>(true))?,
        };
        let receipt = match decision {
            ItemDecision::Repeat { receipt } => serde_json::from_str(&receipt).map_err(|e| StorageError::Corrupt(e.to_string()))?,
            ItemDecision::Reject(findings) => {
                let receipt = Receipt::rejected(delivery_id, &plan.reference, stamp, &findings);
                store::insert_receipt(conn, record, delivery_key, &plan.content_hash, &receipt, at)?;
                receipt
            }
            ItemDecision::Book(booking) => {
                let mut receipt = Receipt::accepted(delivery_id, &plan.reference, stamp);
                // The receipt row comes first (the import rows refer to it); its ErpReference is set once they
                // are written.
                store::insert_receipt(conn, record, delivery_key, &plan.content_hash, &receipt, at)?;
                receipt.erp_reference = Some(match booking {
                    Booking::Finans(finans) => {
                        format!("erp_journal:{}", store::book_finans(conn, receipt.id, delivery_key, &sender_text, finans, at)?)
                    }
                    Booking::Claim(claim) => {
                        format!("erp_claims:{}", store::book_claim(conn, receipt.id, delivery_key, &sender_text, claim, at)?)
                    }
                });
                store::set_erp_reference(conn, &receipt)?;
                receipt
            }
        };
        answers.push(receipt);
    }
    Ok(answers)
}

/// Puts the alert about the rejections in `set` into the outbox, in the delivery's transaction; nothing when
/// nothing was rejected or nobody is to be told.
fn enqueue_alert(
    conn: &mut AnyConnection,
    record: &DeliveryRecord,
    set: &ReceiptSet,
    counts: (usize, usize),
    alert: Alert,
    at: DateTime<Utc>,
) -> Result<(), StorageError> {
    let (Some((target, window)), Some(payload)) = (alert, AlertPayload::of(record, set, counts)) else { return Ok(()) };
    store::enqueue_alert(conn, target, &crate::domain::alert::Alert::Rejection(payload), record.sender, at + window, at)
}
