//! The book stage: decided items written with their receipts, one transaction per group of straks calls (see
//! `pipeline::writer`) and per chunk of a batch file. Storage looks up the facts and writes; `domain::idempotency` decides from the facts (a delivery or
//! item seen before, a related claim); this module puts the two together inside the transaction, so that
//! parallel sends of the same content book it once.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use diesel::Connection;
use uuid::Uuid;

use crate::domain::alert::{AlertPayload, AlertTarget};
use crate::domain::delivery::{Booking, ClaimBooking, DeliveryRecord, ItemPlan};
use crate::domain::idempotency::{judge_delivery, judge_item, DeliveryStanding, EarlierDelivery, EarlierItem, ItemDecision};
use crate::domain::receipt::{Receipt, ReceiptSet, Stamp};
use crate::domain::rejection::Finding;
use crate::domain::sortiment::Integration;
use crate::domain::target::{DatabaseRow, FileLine, Sink};
use crate::storage::batch::{self as stored_batch, BatchFile, Lease};
use crate::storage::booking::{self as store, Keyed};
use crate::storage::targets::{insert_outbox, insert_target_rows, OutboxRow, TargetInsert};
use crate::storage::{AnyConnection, Db, StorageError};

/// How often a delivery (or a batch file's item) is decided again after another writer booked some of the same
/// items first. Each time it sees what the other committed, so it loses again only to yet another writer of the
/// same items: under heavy overlap (many writers, the same few BilagIds) five was seen to run out.
const LOST_RACE_TRIES: u32 = 10;

/// Who hears of a delivery's rejections, and how long the outbox waits to gather more of them into one mail.
pub type Alert<'a> = Option<(&'a AlertTarget, Duration)>;

/// Where a delivery's items go: its row, or nowhere because its LeveranceId was used for other content.
#[derive(Debug, Clone)]
pub enum Target {
    Delivery(i32),
    Conflict(Finding),
}

/// Writes a straks delivery alone in its transaction and returns its receipts; a delivery seen before returns
/// what it got then. When something is rejected and `alert` names recipients, the alert goes into the outbox in
/// the same transaction.
fn commit_delivery(db: &Db, queued: &Queued) -> Result<ReceiptSet, StorageError> {
    // One write transaction (see `Db::write`): the idempotency facts read inside it and the writes that depend
    // on them cannot interleave with another delivery's.
    db.write(|conn| Ok(write_deliveries(conn, std::slice::from_ref(queued))?.remove(0)))
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
/// Each delivery is decided as if the ones before it in the group were written already, so two copies of one
/// finansbilag book it once.
///
/// A delivery that fails never takes the others with it: the group is first written as a whole, and if any of
/// it fails, that is rolled back and the group written again delivery by delivery, each under a savepoint, so
/// that the one that fails is rolled back alone. If the group cannot be committed at all, each delivery is tried
/// again in a transaction of its own.
pub fn commit_group(db: &Db, group: &[Queued]) -> Vec<Result<ReceiptSet, StorageError>> {
    if let [one] = group {
        return vec![commit_delivery(db, one)];
    }
    match db.write(|conn| write_deliveries(conn, group)) {
        Ok(answers) => return answers.into_iter().map(Ok).collect(),
        Err(error) => tracing::debug!(%error, deliveries = group.len(), "a group failed as a whole; writing it a delivery at a time"),
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
            group.iter().map(|q| commit_delivery(db, q)).collect()
        }
    }
}

/// One delivery of a group, under its own savepoint.
fn write_under_savepoint(conn: &mut AnyConnection, queued: &Queued) -> Result<ReceiptSet, StorageError> {
    under_savepoint(conn, |conn| write_deliveries(conn, std::slice::from_ref(queued))).map(|mut sets| sets.remove(0))
}

/// `work` inside the open transaction, under a savepoint of its own (diesel makes a nested transaction one): when
/// it fails, only what it wrote is rolled back. On PostgreSQL another instance or writer may write the same rows
/// first; then it is rolled back and run again, and decides from what the other committed.
fn under_savepoint<T>(
    conn: &mut AnyConnection,
    mut work: impl FnMut(&mut AnyConnection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match conn.transaction(&mut work) {
            Err(error) if error.lost_race() && tries < LOST_RACE_TRIES => {
                tracing::debug!(tries, "another writer wrote the same rows first; deciding again");
            }
            outcome => return outcome,
        }
    }
}

/// Straks deliveries' writes, inside a transaction the caller opened: for each its row, its items and its
/// alert; or, for a delivery seen before, what it got then. What the decisions depend on is read for all of
/// them at once, the keys of new rows taken at once, and the rows written a table at a time: a few statements
/// for the whole group, whatever its size.
fn write_deliveries(conn: &mut AnyConnection, group: &[Queued]) -> Result<Vec<ReceiptSet>, StorageError> {
    let at = Utc::now();
    let parts: Vec<(&DeliveryRecord, &[ItemPlan])> = group.iter().map(|q| (&q.record, q.plans.as_slice())).collect();
    let mut known = Known::read(conn, &parts, true)?;
    let mut keys = Keys::take(conn, group.len(), &parts)?;
    let mut writes = Writes::default();
    let mut answers = Vec::with_capacity(group.len());
    for queued in group {
        let (record, plans, alert) = (&queued.record, &queued.plans, queued.alert());
        let earlier = record.delivery_id.and_then(|id| known.deliveries.get(&id).cloned());
        let set = match judge_delivery(record, earlier) {
            DeliveryStanding::Repeat { response } => serde_json::from_str(&response).map_err(|e| StorageError::Corrupt(e.to_string()))?,
            DeliveryStanding::Conflict(finding) => {
                tracing::warn!("LeveranceId already used for other content; nothing written");
                let set = record.receipt_set(at, record.reject_all(plans.iter().map(|p| p.reference.clone()), &[finding], at));
                writes.alert(record, &set, (0, set.rejected()), alert, at);
                set
            }
            DeliveryStanding::New => {
                let key = keys.next(Keyed::Deliveries)?;
                let set = record.receipt_set(at, decide_items(&mut known, &mut keys, &mut writes, record, key, plans, at)?);
                let response = store::to_json(&set);
                if let Some(id) = record.delivery_id {
                    known.deliveries.insert(id, EarlierDelivery { request_hash: record.request_hash.clone(), response: response.clone() });
                }
                let (accepted, rejected) = (set.accepted(), set.rejected());
                writes.deliveries.push(store::DeliveryRow { key, record, at, accepted, rejected, response });
                writes.alert(record, &set, (accepted, rejected), alert, at);
                set
            }
        };
        answers.push(set);
    }
    writes.write(conn)?;
    Ok(answers)
}

/// What the transaction holds that the decisions depend on, read once for a group of deliveries (or a chunk of
/// a batch file) and kept up to date as each of them is decided: the deliveries by LeveranceId, and the items
/// accepted from each sender by reference (their own and the claims they name as related).
#[derive(Default)]
struct Known {
    deliveries: HashMap<Uuid, EarlierDelivery>,
    items: HashMap<(Integration, Uuid, String), EarlierItem>,
}

impl Known {
    fn read(conn: &mut AnyConnection, parts: &[(&DeliveryRecord, &[ItemPlan])], with_deliveries: bool) -> Result<Self, StorageError> {
        let mut known = Known::default();
        if with_deliveries {
            let ids: Vec<Uuid> = parts.iter().filter_map(|(record, _)| record.delivery_id).collect();
            known.deliveries = store::earlier_deliveries(conn, &ids)?.into_iter().map(|(id, _, earlier)| (id, earlier)).collect();
        }
        // One query per sender and integration: a group seldom holds more than a few.
        let mut references: HashMap<(Integration, Uuid), Vec<&str>> = HashMap::new();
        for (record, plans) in parts {
            // Without a sender (its AfsenderSystem unreadable, so rejected already) nothing can have been
            // accepted from it before.
            let Some(sender) = record.sender else { continue };
            let wanted = references.entry((record.integration, sender)).or_default();
            for plan in *plans {
                wanted.push(&plan.reference);
                wanted.extend(plan.related.as_ref().map(|r| r.value.as_str()));
            }
        }
        for ((integration, sender), mut wanted) in references {
            wanted.sort_unstable();
            wanted.dedup();
            for (reference, earlier) in store::accepted_items(conn, integration, sender, &wanted)? {
                known.items.insert((integration, sender, reference), earlier);
            }
        }
        Ok(known)
    }
}

/// Keys of new rows, taken before they are written: as many as the group could need.
struct Keys {
    deliveries: std::vec::IntoIter<i32>,
    journal: std::vec::IntoIter<i32>,
    claims: std::vec::IntoIter<i32>,
}

impl Keys {
    fn take(conn: &mut AnyConnection, deliveries: usize, parts: &[(&DeliveryRecord, &[ItemPlan])]) -> Result<Self, StorageError> {
        let plans = || parts.iter().flat_map(|(_, plans)| plans.iter());
        let journals = plans().filter(|p| matches!(p.booking(), Some(Booking::Finans(_)))).count();
        let claims = plans().filter(|p| matches!(p.booking(), Some(Booking::Claim(_)))).count();
        let [deliveries, journal, claims] = store::take_keys(conn, [deliveries, journals, claims])?;
        Ok(Keys { deliveries: deliveries.into_iter(), journal: journal.into_iter(), claims: claims.into_iter() })
    }

    fn next(&mut self, table: Keyed) -> Result<i32, StorageError> {
        let taken = match table {
            Keyed::Deliveries => &mut self.deliveries,
            Keyed::Journal => &mut self.journal,
            Keyed::Claims => &mut self.claims,
        };
        taken.next().ok_or_else(|| StorageError::Corrupt(format!("more rows of {} than keys taken", table.name())))
    }
}

/// The rows decided, written a table at a time once every delivery of the group is decided.
#[derive(Default)]
struct Writes<'a> {
    deliveries: Vec<store::DeliveryRow<'a>>,
    receipts: Vec<store::ReceiptRow<'a>>,
    journals: Vec<store::JournalRow<'a>>,
    claims: Vec<ClaimRow<'a>>,
    /// Rows for the ERP's own import tables (a target profile), in the same transaction as the rest.
    targets: Vec<TargetInsert<'a>>,
    /// Rows for files and the ERP's own database (a target profile), into the outbox in the same transaction.
    outbox: Vec<OutboxRow<'a>>,
    alerts: Vec<AlertRow<'a>>,
}

/// An accepted claim to write, under its key.
struct ClaimRow<'a> {
    key: i32,
    kvittering_id: Uuid,
    delivery_key: i32,
    sender: String,
    claim: &'a ClaimBooking,
    at: DateTime<Utc>,
}

/// An alert about a delivery's rejections, to go into the outbox.
struct AlertRow<'a> {
    record: &'a DeliveryRecord,
    set: ReceiptSet,
    counts: (usize, usize),
    alert: Alert<'a>,
    at: DateTime<Utc>,
}

impl<'a> Writes<'a> {
    /// The alert about the rejections in `set`; none when nothing was rejected or nobody is to be told.
    fn alert(&mut self, record: &'a DeliveryRecord, set: &ReceiptSet, counts: (usize, usize), alert: Alert<'a>, at: DateTime<Utc>) {
        if alert.is_some() && set.rejected() > 0 {
            self.alerts.push(AlertRow { record, set: set.clone(), counts, alert, at });
        }
    }

    /// In the order the tables refer to each other: deliveries, receipts, then import rows. Within a table the
    /// rows go in the order of their unique keys: two writers (or instances) on PostgreSQL that write some of the
    /// same keys then wait for each other in the same order, and never each for the other (a deadlock, broken
    /// only after a second). Claims keep the delivery's order: a claim names its related claim's row, and any
    /// two writers with the same claim have already met at its receipt.
    fn write(mut self, conn: &mut AnyConnection) -> Result<(), StorageError> {
        self.deliveries.sort_by_key(|d| d.record.delivery_id);
        fn unique<'r>(r: &'r store::ReceiptRow<'_>) -> (&'r str, &'static str, Option<Uuid>) {
            (&r.receipt.reference, r.record.integration.as_str(), r.record.sender)
        }
        self.receipts.sort_by(|a, b| unique(a).cmp(&unique(b)));
        self.journals.sort_by(|a, b| (&a.sender, &a.booking.bilag.bilag_id).cmp(&(&b.sender, &b.booking.bilag.bilag_id)));
        store::insert_booked(conn, &self.deliveries, &self.receipts, &self.journals)?;
        for c in &self.claims {
            store::book_claim(conn, c.key, c.kvittering_id, c.delivery_key, &c.sender, c.claim, c.at)?;
        }
        insert_target_rows(conn, &self.targets)?;
        insert_outbox(conn, &self.outbox)?;
        for a in &self.alerts {
            enqueue_alert(conn, a.record, &a.set, a.counts, a.alert, a.at)?;
        }
        Ok(())
    }
}

/// Opens a batch file's delivery (or finds it again when the file is resumed) and records its item count.
/// Returns where its items go and how many were booked by an earlier run.
pub fn start_batch(db: &Db, lease: &Lease, record: &DeliveryRecord, items_total: usize) -> Result<(Target, i32), StorageError> {
    db.write(|conn| {
        let file = stored_batch::record_batch_start(conn, lease, record, items_total)?;
        if let Some(key) = file.delivery_id {
            return Ok((Target::Delivery(key), file.items_done));
        }
        let target = open(conn, record, Utc::now())?;
        if let Target::Delivery(key) = target {
            stored_batch::set_batch_delivery(conn, lease.batch_id, key)?;
        }
        Ok((target, file.items_done))
    })
}

/// Decides and books a batch file's items from position `first` (0-based) on, in one transaction with their
/// receipts and the file's progress (in several, each with its own, after a lost race). Fails with `LeaseLost`
/// if this process no longer owns the file or another one moved it on; what was committed before stays, with
/// the progress that says so.
pub fn commit_batch_chunk(
    db: &Db,
    lease: &Lease,
    record: &DeliveryRecord,
    target: &Target,
    first: i32,
    plans: &[ItemPlan],
) -> Result<Vec<Receipt>, StorageError> {
    // The chunk is written as a whole, in one transaction with the file's progress. Should another writer (a
    // straks call, another instance) book some of its items first, it is halved and each half committed on its
    // own, down to single items, which are decided again from what the winner wrote: written again as a whole
    // it would lose again while calls keep coming, and written again item by item in one transaction it held
    // the keys it had written for seconds, while a straks call waiting on one of them ran out of its lock
    // timeout and was answered with a fault.
    let single = plans.len() == 1;
    let written = db.write_tries(if single { LOST_RACE_TRIES } else { 1 }, |conn| {
        let at = Utc::now();
        stored_batch::renew(conn, lease, Some(first))?;
        let receipts = match target {
            Target::Delivery(key) => write_items(conn, record, *key, plans, at)?,
            Target::Conflict(finding) => record.reject_all(plans.iter().map(|p| p.reference.clone()), std::slice::from_ref(finding), at),
        };
        stored_batch::insert_batch_receipts(conn, lease.batch_id, first, &receipts)?;
        Ok(receipts)
    });
    match written {
        Err(error) if error.lost_race() && !single => {
            tracing::debug!(items = plans.len(), "another writer booked some of a chunk's items first; committing it in halves");
            let (front, back) = plans.split_at(plans.len() / 2);
            let mut receipts = commit_batch_chunk(db, lease, record, target, first, front)?;
            receipts.extend(commit_batch_chunk(db, lease, record, target, first + front.len() as i32, back)?);
            Ok(receipts)
        }
        written => written,
    }
}

/// Items of a batch file's delivery (`key`), decided from what the transaction holds and written.
fn write_items(
    conn: &mut AnyConnection,
    record: &DeliveryRecord,
    key: i32,
    plans: &[ItemPlan],
    at: DateTime<Utc>,
) -> Result<Vec<Receipt>, StorageError> {
    let parts = [(record, plans)];
    let mut known = Known::read(conn, &parts, false)?;
    let mut keys = Keys::take(conn, 0, &parts)?;
    let mut writes = Writes::default();
    let receipts = decide_items(&mut known, &mut keys, &mut writes, record, key, plans, at)?;
    writes.write(conn)?;
    Ok(receipts)
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

/// A batch file's delivery row: found again (the same file sent again), written (new), or none (its
/// LeveranceId was used for other content).
fn open(conn: &mut AnyConnection, record: &DeliveryRecord, at: DateTime<Utc>) -> Result<Target, StorageError> {
    let earlier = match record.delivery_id {
        Some(id) => store::earlier_delivery(conn, id)?,
        None => None,
    };
    let (key, earlier) = earlier.map_or((None, None), |(key, earlier)| (Some(key), Some(earlier)));
    Ok(match judge_delivery(record, earlier) {
        DeliveryStanding::Repeat { .. } => Target::Delivery(key.expect("a repeat has a row")),
        DeliveryStanding::Conflict(finding) => {
            tracing::warn!("LeveranceId already used for other content; nothing written");
            Target::Conflict(finding)
        }
        DeliveryStanding::New => Target::Delivery(store::insert_delivery(conn, record, at)?),
    })
}

/// Decides each item of a delivery from what the transaction holds and what was decided before it, and adds its
/// receipt and, when it is accepted, its import rows to what is to be written.
fn decide_items<'a>(
    known: &mut Known,
    keys: &mut Keys,
    writes: &mut Writes<'a>,
    record: &'a DeliveryRecord,
    delivery_key: i32,
    plans: &'a [ItemPlan],
    at: DateTime<Utc>,
) -> Result<Vec<Receipt>, StorageError> {
    let (delivery_id, stamp, integration) = (record.delivery_id.unwrap_or_default(), Stamp(at), record.integration);
    let sender_text = record.sender.map(|s| s.to_string()).unwrap_or_default();
    let mut answers = Vec::with_capacity(plans.len());
    for plan in plans {
        let decision = match record.sender {
            Some(sender) => {
                let earlier = known.items.get(&(integration, sender, plan.reference.clone())).cloned();
                // A related claim must already be accepted: earlier, or before it in this group.
                judge_item(plan, earlier, |related| {
                    Ok::<_, StorageError>(known.items.contains_key(&(integration, sender, related.to_string())))
                })?
            }
            None => judge_item(plan, None, |_| Ok::<_, StorageError>(true))?,
        };
        let receipt = match decision {
            ItemDecision::Repeat { receipt } => {
                // Its first receipt, unchanged; nothing is written.
                answers.push(serde_json::from_str(&receipt).map_err(|e| StorageError::Corrupt(e.to_string()))?);
                continue;
            }
            ItemDecision::Reject(findings) => Receipt::rejected(delivery_id, &plan.reference, stamp, &findings),
            ItemDecision::Book(booking) => {
                let mut receipt = Receipt::accepted(delivery_id, &plan.reference, stamp);
                let (key, rows) = match booking {
                    Booking::Finans(finans) => (keys.next(Keyed::Journal)?, &finans.rows),
                    Booking::Claim(claim) => (keys.next(Keyed::Claims)?, &claim.rows),
                };
                receipt.erp_reference = Some(match booking {
                    Booking::Finans(finans) => {
                        let sender = sender_text.clone();
                        writes.journals.push(store::JournalRow {
                            key,
                            kvittering_id: receipt.id,
                            delivery_key,
                            sender,
                            booking: finans,
                            at,
                        });
                        format!("erp_journal:{key}")
                    }
                    Booking::Claim(claim) => {
                        let sender = sender_text.clone();
                        writes.claims.push(ClaimRow { key, kvittering_id: receipt.id, delivery_key, sender, claim, at });
                        format!("erp_claims:{key}")
                    }
                });
                let reference = receipt.erp_reference.as_deref().unwrap_or_default();
                for row in rows {
                    let values = row.with_keys(key, reference, delivery_key);
                    match &row.sink {
                        Sink::Table(table) => writes.targets.push(TargetInsert { table, values }),
                        Sink::Database(target) => {
                            let payload = DatabaseRow::of(target, values).to_json();
                            writes.outbox.push(OutboxRow { target: &target.id, delivery_key, payload, at });
                        }
                        Sink::File(file) => {
                            let payload = FileLine::of(file, values).to_json();
                            writes.outbox.push(OutboxRow { target: &file.id, delivery_key, payload, at });
                        }
                    }
                }
                if let Some(sender) = record.sender {
                    let earlier = EarlierItem { content_hash: plan.content_hash.clone(), receipt: store::to_json(&receipt) };
                    known.items.insert((integration, sender, plan.reference.clone()), earlier);
                }
                receipt
            }
        };
        writes.receipts.push(store::ReceiptRow { delivery_key, record, content_hash: &plan.content_hash, receipt: receipt.clone(), at });
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
