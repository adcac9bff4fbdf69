//! The one write of a delivery: its record, every receipt, and the import rows of what was accepted, in one
//! transaction. Idempotency is decided here, inside that transaction, so that parallel sends of the same
//! content book it once.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::amount::DbAmount;
use super::schema::{
    alert_outbox, deliveries, erp_claim_parties, erp_claims, erp_debtor_data, erp_debtors, erp_journal, erp_journal_lines, receipt_errors,
    receipts,
};
use super::{execute_native, AnyConnection, Db, StorageError};
use crate::alerts::{AlertPayload, AlertTarget};
use crate::domain::finans::{Finansbilag, Located};
use crate::domain::fordring::Fordring;
use crate::domain::mapping::{Mapped, MappedClaimType};
use crate::domain::receipt::{timestamp, Receipt, ReceiptSet, Status, NIL_UUID};
use crate::domain::rejection::{Finding, Loc, Rejection};
use crate::domain::sortiment::Integration;

/// What is known about a delivery before it is written.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub delivery_id: Option<Uuid>,
    /// Where LeveranceId is in the delivery, for a DUBLET_AFVIGENDE on it.
    pub delivery_id_loc: Loc,
    pub integration: Integration,
    pub transport: &'static str,
    pub sender: Option<Uuid>,
    pub authority: Option<String>,
    pub transaction_uuid: Option<String>,
    pub user_system_uuid: Option<String>,
    pub request_hash: String,
    pub sortiment_version: Option<i64>,
    pub mapping_version: Option<String>,
    /// The sender's name in the sortiment, for alerts.
    pub sender_name: Option<String>,
    /// When it arrived, for the processing time in the metrics.
    pub arrived: std::time::Instant,
}

impl DeliveryRecord {
    /// Takes LeveranceId and AfsenderSystem from the delivery's root (or SOAP body) as far as they can be read:
    /// before the schema check, so that even a wholly rejected delivery names itself in its receipt.
    pub fn name_from(&mut self, body: &crate::xml::tree::Element, root_path: &str) {
        let delivery_id = body.child("LeveranceId");
        self.delivery_id = delivery_id.and_then(|e| Uuid::parse_str(e.text()).ok());
        self.sender = body.child("AfsenderSystem").and_then(|e| Uuid::parse_str(e.text()).ok());
        self.delivery_id_loc = delivery_id.map(|e| e.loc(format!("{root_path}/LeveranceId"))).unwrap_or_default();
    }

    /// What is known before the delivery has been read.
    pub fn new(integration: Integration, transport: &'static str, request_hash: String) -> Self {
        DeliveryRecord {
            delivery_id: None,
            delivery_id_loc: Loc::default(),
            integration,
            transport,
            sender: None,
            authority: None,
            transaction_uuid: None,
            user_system_uuid: None,
            request_hash,
            sortiment_version: None,
            mapping_version: None,
            sender_name: None,
            arrived: std::time::Instant::now(),
        }
    }
}

/// The decision for one finansbilag (or fordring), made before the transaction.
#[derive(Debug)]
pub struct ItemPlan {
    pub reference: String,
    /// Where the reference (BilagId) is, for a DUBLET_AFVIGENDE on it.
    pub reference_loc: Loc,
    pub content_hash: String,
    /// A claim's RelateretFordringId: it must name a claim accepted before it, which only the booking
    /// transaction can tell.
    pub related: Option<Located<String>>,
    pub outcome: ItemOutcome,
}

#[derive(Debug)]
pub enum ItemOutcome {
    /// Boxed: a booking holds the whole item, a rejection only its findings.
    Accept(Box<Booking>),
    Reject(Vec<Finding>),
}

// Always boxed (in ItemOutcome), so the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Booking {
    Finans(FinansBooking),
    Claim(ClaimBooking),
}

/// An accepted finansbilag and, per postering in order, its mapping.
#[derive(Debug)]
pub struct FinansBooking {
    pub bilag: Finansbilag,
    pub mapped: Vec<Mapped>,
    pub mapping_version: String,
}

/// An accepted claim, its ERP claim type and (when there is one) its revenue account.
#[derive(Debug)]
pub struct ClaimBooking {
    pub fordring: Fordring,
    pub claim_type: MappedClaimType,
    pub account: Option<Mapped>,
    pub mapping_version: String,
}

/// A rejection of every item that is not written anywhere: the delivery could not be taken in at all.
pub fn reject_unrecorded(record: &DeliveryRecord, references: &[String], findings: &[Finding], at: DateTime<Utc>) -> ReceiptSet {
    let delivery_id = record.delivery_id.map_or(NIL_UUID.to_string(), |id| id.to_string());
    let sender = record.sender.map_or(NIL_UUID.to_string(), |id| id.to_string());
    let receipts = references.iter().map(|r| Receipt::rejected(&delivery_id, r, &timestamp(at), findings)).collect();
    ReceiptSet::new(delivery_id, sender, timestamp(at), receipts)
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("receipts serialize")
}

impl Db {
    /// Writes a delivery and returns its receipts; a delivery seen before returns what it got then. When
    /// something is rejected and `alert` names recipients, the alert goes into the outbox in the same
    /// transaction.
    pub fn commit_delivery(
        &self,
        record: &DeliveryRecord,
        plans: Vec<ItemPlan>,
        alert: Option<(&AlertTarget, chrono::Duration)>,
    ) -> Result<ReceiptSet, StorageError> {
        // One write transaction (see `Db::write`): the idempotency checks below and the writes that depend on
        // them cannot interleave with another delivery's.
        self.write(|conn| {
            let at = Utc::now();
            let delivery_key = match open_delivery(conn, record, at)? {
                Opened::Seen { response, .. } => {
                    return serde_json::from_str(&response).map_err(|e| StorageError::Corrupt(e.to_string()));
                }
                Opened::Conflict(finding) => {
                    let references: Vec<String> = plans.iter().map(|p| p.reference.clone()).collect();
                    let set = reject_unrecorded(record, &references, &[finding], at);
                    enqueue_alert(conn, record, &set, (0, set.rejected()), alert, at)?;
                    return Ok(set);
                }
                Opened::New(key) => key,
            };
            let answers = decide_items(conn, record, delivery_key, &plans, at)?;
            let sender_text = record.sender.map_or_else(|| NIL_UUID.to_string(), |s| s.to_string());
            let set = ReceiptSet::new(delivery_text(record), sender_text, timestamp(at), answers);
            close_delivery(conn, delivery_key, set.accepted(), set.rejected(), &to_json(&set))?;
            enqueue_alert(conn, record, &set, (set.accepted(), set.rejected()), alert, at)?;
            Ok(set)
        })
    }
}

/// How a delivery's LeveranceId stands when it is to be written.
pub(super) enum Opened {
    /// Not seen before: its row is written, with this key.
    New(i32),
    /// The same content was delivered under this LeveranceId before; `response` is what it got then.
    Seen { key: i32, response: String },
    /// The LeveranceId was used for other content: the delivery is rejected and nothing is written for it.
    Conflict(Finding),
}

fn delivery_text(record: &DeliveryRecord) -> String {
    record.delivery_id.map_or_else(|| NIL_UUID.to_string(), |id| id.to_string())
}

/// Checks the delivery's LeveranceId against earlier deliveries, and writes its row when it is new.
pub(super) fn open_delivery(conn: &mut AnyConnection, record: &DeliveryRecord, at: DateTime<Utc>) -> Result<Opened, StorageError> {
    let delivery_text = record.delivery_id.map(|id| id.to_string());
    if let Some(id) = &delivery_text {
        let earlier: Option<(i32, String, String)> = deliveries::table
            .filter(deliveries::leverance_id.eq(id))
            .select((deliveries::id, deliveries::request_hash, deliveries::response_json))
            .first(conn)
            .optional()?;
        if let Some((key, hash, response)) = earlier {
            if hash == record.request_hash {
                return Ok(Opened::Seen { key, response });
            }
            tracing::warn!("LeveranceId already used for other content; nothing written");
            let finding =
                Finding::new(Rejection::DuplicateDifferent(format!("LeveranceId {id}")), &record.delivery_id_loc).with_value(id.clone());
            return Ok(Opened::Conflict(finding));
        }
    }
    let key = diesel::insert_into(deliveries::table)
        .values((
            deliveries::leverance_id.eq(&delivery_text),
            deliveries::integration.eq(record.integration.as_str()),
            deliveries::transport.eq(record.transport),
            deliveries::afsender_system.eq(record.sender.map(|s| s.to_string())),
            deliveries::myndighed.eq(&record.authority),
            deliveries::transaction_uuid.eq(&record.transaction_uuid),
            deliveries::user_system_uuid.eq(&record.user_system_uuid),
            deliveries::request_hash.eq(&record.request_hash),
            deliveries::received_at.eq(at.naive_utc()),
            deliveries::sortiment_version_id.eq(record.sortiment_version.map(|v| v as i32)),
            deliveries::mapping_version.eq(&record.mapping_version),
            deliveries::accepted_count.eq(0),
            deliveries::rejected_count.eq(0),
            deliveries::response_json.eq(""),
        ))
        .returning(deliveries::id)
        .get_result(conn)?;
    Ok(Opened::New(key))
}

/// Records the outcome of a delivery on its row: the counts, and the answer a re-sent delivery gets again.
pub(super) fn close_delivery(
    conn: &mut AnyConnection,
    key: i32,
    accepted: usize,
    rejected: usize,
    response: &str,
) -> Result<(), StorageError> {
    diesel::update(deliveries::table.find(key))
        .set((
            deliveries::accepted_count.eq(accepted as i32),
            deliveries::rejected_count.eq(rejected as i32),
            deliveries::response_json.eq(response),
        ))
        .execute(conn)?;
    Ok(())
}

/// Decides each item inside the delivery's transaction and writes its receipt, and the import rows of what
/// is accepted. An item accepted before (same sender and BilagId/FordringId) with the same content gets its
/// first receipt again and books nothing.
pub(super) fn decide_items(
    conn: &mut AnyConnection,
    record: &DeliveryRecord,
    delivery_key: i32,
    plans: &[ItemPlan],
    at: DateTime<Utc>,
) -> Result<Vec<Receipt>, StorageError> {
    let delivery_id = delivery_text(record);
    let sender = record.sender.map(|s| s.to_string());
    let mut answers = Vec::with_capacity(plans.len());
    for plan in plans {
        let earlier = match &sender {
            Some(sender) => accepted_receipt(conn, record.integration.as_str(), sender, &plan.reference)?,
            None => None,
        };
        let receipt = match earlier {
            Some((hash, first)) if hash == plan.content_hash => {
                // The same content again: the first receipt, unchanged; nothing is booked.
                serde_json::from_str(&first).map_err(|e| StorageError::Corrupt(e.to_string()))?
            }
            earlier => {
                let mut findings = Vec::new();
                if earlier.is_some() {
                    findings.push(
                        Finding::new(Rejection::DuplicateDifferent(plan.reference.clone()), &plan.reference_loc)
                            .with_value(plan.reference.clone()),
                    );
                }
                if let ItemOutcome::Reject(own) = &plan.outcome {
                    findings.extend(own.iter().cloned());
                }
                // A related claim must already be accepted: earlier, or before it in this transaction.
                if let (None, Some(related), Some(sender)) = (&earlier, &plan.related, &sender) {
                    if accepted_receipt(conn, record.integration.as_str(), sender, &related.value)?.is_none() {
                        findings.push(
                            Finding::new(Rejection::RelatedUnknown(related.value.clone()), &related.loc).with_value(related.value.clone()),
                        );
                    }
                }
                match (&plan.outcome, findings.is_empty()) {
                    (ItemOutcome::Accept(booking), true) => {
                        let mut receipt = Receipt::accepted(&delivery_id, &plan.reference, &timestamp(at));
                        // The receipt row comes first (the journal refers to it); its ErpReference is set
                        // once the journal id is known.
                        insert_receipt(conn, record, delivery_key, &plan.content_hash, &receipt, at)?;
                        let sender = sender.as_deref().unwrap_or_default();
                        receipt.erp_reference = Some(match booking.as_ref() {
                            Booking::Finans(finans) => {
                                format!("erp_journal:{}", book(conn, &receipt.id, delivery_key, sender, finans, at)?)
                            }
                            Booking::Claim(claim) => {
                                format!("erp_claims:{}", book_claim(conn, &receipt.id, delivery_key, sender, claim, at)?)
                            }
                        });
                        diesel::update(receipts::table.find(&receipt.id))
                            .set((receipts::erp_reference.eq(&receipt.erp_reference), receipts::receipt_json.eq(to_json(&receipt))))
                            .execute(conn)?;
                        receipt
                    }
                    _ => {
                        let receipt = Receipt::rejected(&delivery_id, &plan.reference, &timestamp(at), &findings);
                        insert_receipt(conn, record, delivery_key, &plan.content_hash, &receipt, at)?;
                        receipt
                    }
                }
            }
        };
        answers.push(receipt);
    }
    Ok(answers)
}

/// Puts an alert for the rejected receipts of `set` into the outbox; nothing when all were accepted.
/// `counts` (accepted, rejected) are the whole delivery's: a batch file's alert lists only its first
/// rejections.
pub(super) fn enqueue_alert(
    conn: &mut AnyConnection,
    record: &DeliveryRecord,
    set: &ReceiptSet,
    counts: (usize, usize),
    alert: Option<(&AlertTarget, chrono::Duration)>,
    at: DateTime<Utc>,
) -> Result<(), StorageError> {
    let Some((target, window)) = alert else { return Ok(()) };
    let rejected: Vec<Receipt> = set.receipts.iter().filter(|r| r.status == Status::Afvist).cloned().collect();
    if rejected.is_empty() {
        return Ok(());
    }
    let payload = AlertPayload {
        sender: record.sender.map(|s| s.to_string()),
        sender_name: record.sender_name.clone(),
        integration: record.integration.as_str().to_string(),
        transport: record.transport.to_string(),
        delivery_id: set.delivery_id.clone(),
        received_at: set.processed_at.clone(),
        accepted: counts.0,
        rejected_total: Some(counts.1),
        rejected,
    };
    diesel::insert_into(alert_outbox::table)
        .values((
            alert_outbox::group_key.eq(&target.group_key),
            alert_outbox::afsender_system.eq(record.sender.map(|s| s.to_string())),
            alert_outbox::recipients.eq(serde_json::json!({"to": target.to, "cc": target.cc}).to_string()),
            alert_outbox::payload.eq(to_json(&payload)),
            alert_outbox::created_at.eq(at.naive_utc()),
            alert_outbox::next_attempt_at.eq((at + window).naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// The accepted receipt of (integration, sender, BilagId/FordringId), if there is one: its content hash and
/// the receipt as JSON.
fn accepted_receipt(
    conn: &mut AnyConnection,
    integration: &str,
    sender: &str,
    reference: &str,
) -> Result<Option<(String, String)>, StorageError> {
    Ok(receipts::table
        .filter(receipts::integration.eq(integration))
        .filter(receipts::afsender_system.eq(sender))
        .filter(receipts::reference.eq(reference))
        .filter(receipts::status.eq(Status::Accepteret.as_str()))
        .select((receipts::content_hash, receipts::receipt_json))
        .first(conn)
        .optional()?)
}

fn insert_receipt(
    conn: &mut AnyConnection,
    record: &DeliveryRecord,
    delivery_key: i32,
    content_hash: &str,
    receipt: &Receipt,
    at: DateTime<Utc>,
) -> Result<(), StorageError> {
    diesel::insert_into(receipts::table)
        .values((
            receipts::kvittering_id.eq(&receipt.id),
            receipts::delivery_id.eq(delivery_key),
            receipts::integration.eq(record.integration.as_str()),
            receipts::afsender_system.eq(record.sender.map(|s| s.to_string())),
            receipts::reference.eq(&receipt.reference),
            receipts::status.eq(receipt.status.as_str()),
            receipts::content_hash.eq(content_hash),
            receipts::processed_at.eq(at.naive_utc()),
            receipts::erp_reference.eq(&receipt.erp_reference),
            receipts::receipt_json.eq(to_json(receipt)),
        ))
        .execute(conn)?;
    for (position, error) in receipt.errors.iter().enumerate() {
        diesel::insert_into(receipt_errors::table)
            .values((
                receipt_errors::kvittering_id.eq(&receipt.id),
                receipt_errors::position.eq(position as i32),
                receipt_errors::code.eq(error.code.as_str()),
                receipt_errors::text.eq(&error.text),
                receipt_errors::path.eq(&error.path),
                receipt_errors::line.eq(error.line.map(|l| l as i32)),
                receipt_errors::col.eq(error.col.map(|c| c as i32)),
                receipt_errors::value.eq(&error.value),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Writes the import rows of one accepted finansbilag; returns the journal id.
fn book(
    conn: &mut AnyConnection,
    kvittering_id: &str,
    delivery_key: i32,
    sender: &str,
    booking: &FinansBooking,
    at: DateTime<Utc>,
) -> Result<i32, StorageError> {
    let bilag = &booking.bilag;
    let journal: i32 = diesel::insert_into(erp_journal::table)
        .values((
            erp_journal::kvittering_id.eq(kvittering_id),
            erp_journal::delivery_id.eq(delivery_key),
            erp_journal::afsender_system.eq(sender),
            erp_journal::bilag_id.eq(&bilag.bilag_id),
            erp_journal::bilagsdato.eq(bilag.date),
            erp_journal::bilagstekst.eq(&bilag.text),
            erp_journal::mapping_version.eq(&booking.mapping_version),
            erp_journal::created_at.eq(at.naive_utc()),
        ))
        .returning(erp_journal::id)
        .get_result(conn)?;
    let lines: Vec<_> = bilag
        .postings
        .iter()
        .zip(&booking.mapped)
        .enumerate()
        .map(|(n, (posting, mapped))| {
            let k = &posting.kontering.value;
            let dimensions: serde_json::Map<String, serde_json::Value> =
                mapped.dimensions.iter().map(|(name, value)| (name.clone(), value.clone().into())).collect();
            let party = posting.party.as_ref().map(|p| &p.value);
            (
                erp_journal_lines::journal_id.eq(journal),
                erp_journal_lines::line_no.eq(n as i32 + 1),
                erp_journal_lines::posting_id.eq(posting.id.value as i64),
                erp_journal_lines::erp_account.eq(&mapped.account),
                erp_journal_lines::erp_dimensions.eq(serde_json::Value::Object(dimensions).to_string()),
                erp_journal_lines::amount.eq(DbAmount(posting.amount.value())),
                erp_journal_lines::debit_credit.eq(posting.side.code()),
                erp_journal_lines::currency.eq(posting.currency.value.as_str()),
                erp_journal_lines::posting_date.eq(posting.date.value),
                erp_journal_lines::posting_text.eq(&posting.text),
                erp_journal_lines::party_type.eq(party.map(|p| p.kind())),
                erp_journal_lines::party_id.eq(party.map(|p| p.expose())),
                erp_journal_lines::case_reference.eq(&posting.case_reference),
                erp_journal_lines::src_funktion.eq(k.funktion.as_str()),
                erp_journal_lines::src_gruppering.eq(k.gruppering.as_ref().map(|g| g.as_str())),
                erp_journal_lines::src_dranst.eq(k.dranst.as_str()),
                erp_journal_lines::src_ejerforhold.eq(k.ejerforhold.as_ref().map(|e| e.as_str())),
                erp_journal_lines::src_art.eq(k.art.as_str()),
                erp_journal_lines::src_omkostningssted.eq(&k.omkostningssted),
                erp_journal_lines::src_pspelement.eq(&k.psp_element),
                erp_journal_lines::src_dimensions.eq(serde_json::to_string(&k.dimensions).expect("strings serialize")),
                erp_journal_lines::mapping_rule.eq(&mapped.rule),
            )
        })
        .collect();
    // Several lines per statement (a bilag may hold thousands: in slices, within SQLite's parameter limit).
    for lines in lines.chunks(500) {
        execute_native(conn, diesel::insert_into(erp_journal_lines::table).values(lines))?;
    }
    Ok(journal)
}

/// Writes the import rows of one accepted claim, its parties and their master data; returns the claim id.
fn book_claim(
    conn: &mut AnyConnection,
    kvittering_id: &str,
    delivery_key: i32,
    sender: &str,
    booking: &ClaimBooking,
    at: DateTime<Utc>,
) -> Result<i32, StorageError> {
    let f = &booking.fordring;
    let related_claim: Option<i32> = match &f.related {
        Some(related) => erp_claims::table
            .filter(erp_claims::afsender_system.eq(sender))
            .filter(erp_claims::fordring_id.eq(&related.value))
            .select(erp_claims::id)
            .first(conn)
            .optional()?,
        None => None,
    };
    let dimensions: serde_json::Map<String, serde_json::Value> =
        booking.account.iter().flat_map(|m| m.dimensions.iter()).map(|(name, value)| (name.clone(), value.clone().into())).collect();
    let mut rules = vec![booking.claim_type.rule.clone()];
    rules.extend(booking.account.as_ref().map(|m| m.rule.clone()).filter(|r| *r != booking.claim_type.rule));
    let kontering = f.kontering.as_ref().map(|k| {
        let k = &k.value;
        serde_json::json!({
            "Funktion": k.funktion.as_str(), "Gruppering": k.gruppering.as_ref().map(|g| g.as_str()),
            "Dranst": k.dranst.as_str(), "Ejerforhold": k.ejerforhold.as_ref().map(|e| e.as_str()),
            "Art": k.art.as_str(), "Omkostningssted": k.omkostningssted, "PSPElement": k.psp_element,
            "Dimension": k.dimensions,
        })
        .to_string()
    });
    let claim: i32 = diesel::insert_into(erp_claims::table)
        .values((
            erp_claims::kvittering_id.eq(kvittering_id),
            erp_claims::delivery_id.eq(delivery_key),
            erp_claims::afsender_system.eq(sender),
            erp_claims::fordring_id.eq(&f.fordring_id),
            erp_claims::src_fordringstype.eq(&f.claim_type.value),
            erp_claims::erp_claim_type.eq(&booking.claim_type.claim_type),
            erp_claims::principal.eq(DbAmount(f.principal.value())),
            erp_claims::currency.eq(f.currency.value.as_str()),
            erp_claims::description.eq(&f.description),
            erp_claims::period_from.eq(f.period_from.as_ref().map(|d| d.value)),
            erp_claims::period_to.eq(f.period_to.as_ref().map(|d| d.value)),
            erp_claims::established.eq(f.established.value),
            erp_claims::due.eq(f.due.value),
            erp_claims::last_timely_payment.eq(f.last_timely_payment.value),
            erp_claims::limitation.eq(f.limitation.as_ref().map(|d| d.value)),
            erp_claims::related_fordring_id.eq(f.related.as_ref().map(|r| &r.value)),
            erp_claims::related_claim_id.eq(related_claim),
            erp_claims::erp_account.eq(booking.account.as_ref().map(|m| &m.account)),
            erp_claims::erp_dimensions.eq(serde_json::Value::Object(dimensions).to_string()),
            erp_claims::src_kontering.eq(kontering),
            erp_claims::mapping_rules.eq(rules.join("; ")),
            erp_claims::mapping_version.eq(&booking.mapping_version),
            erp_claims::created_at.eq(at.naive_utc()),
        ))
        .returning(erp_claims::id)
        .get_result(conn)?;
    for (position, haefter) in f.parties.iter().enumerate() {
        let party = &haefter.party.value;
        let (kind, identifier) = (party.kind(), party.expose());
        let known: Option<String> =
            erp_debtors::table.find((kind, identifier)).select(erp_debtors::erp_debtor_number).first(conn).optional()?;
        let data = debtor_data(conn, kind, identifier, known.as_deref(), haefter, at)?;
        diesel::insert_into(erp_claim_parties::table)
            .values((
                erp_claim_parties::claim_id.eq(claim),
                erp_claim_parties::position.eq(position as i32 + 1),
                erp_claim_parties::role.eq(haefter.role.as_str()),
                erp_claim_parties::debtor_data_id.eq(data),
                erp_claim_parties::erp_debtor_number.eq(&known),
            ))
            .execute(conn)?;
    }
    Ok(claim)
}

/// The master-data row for a party as received: the existing one when nothing changed, else a new one, so
/// that a CPR number is stored once per version of the party's name and address.
fn debtor_data(
    conn: &mut AnyConnection,
    kind: &str,
    identifier: &str,
    known: Option<&str>,
    haefter: &crate::domain::fordring::Haefter,
    at: DateTime<Utc>,
) -> Result<i32, StorageError> {
    type Row = (
        i32,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let a = haefter.address.as_ref();
    let wanted = (
        known.map(str::to_string),
        haefter.name.clone(),
        a.map(|a| a.street.clone()),
        a.map(|a| a.house_number.clone()),
        a.and_then(|a| a.floor.clone()),
        a.and_then(|a| a.door.clone()),
        a.map(|a| a.postcode.clone()),
        a.map(|a| a.city.clone()),
        a.map(|a| a.country.clone()),
    );
    let rows: Vec<Row> = erp_debtor_data::table
        .filter(erp_debtor_data::identifier_type.eq(kind))
        .filter(erp_debtor_data::identifier.eq(identifier))
        .select((
            erp_debtor_data::id,
            erp_debtor_data::erp_debtor_number,
            erp_debtor_data::name,
            erp_debtor_data::street,
            erp_debtor_data::house_number,
            erp_debtor_data::floor,
            erp_debtor_data::door,
            erp_debtor_data::postcode,
            erp_debtor_data::city,
            erp_debtor_data::country,
        ))
        .load(conn)?;
    if let Some(row) = rows.iter().find(|r| {
        (r.1.clone(), r.2.clone(), r.3.clone(), r.4.clone(), r.5.clone(), r.6.clone(), r.7.clone(), r.8.clone(), r.9.clone()) == wanted
    }) {
        return Ok(row.0);
    }
    Ok(diesel::insert_into(erp_debtor_data::table)
        .values((
            erp_debtor_data::identifier_type.eq(kind),
            erp_debtor_data::identifier.eq(identifier),
            erp_debtor_data::erp_debtor_number.eq(wanted.0),
            erp_debtor_data::name.eq(wanted.1),
            erp_debtor_data::street.eq(wanted.2),
            erp_debtor_data::house_number.eq(wanted.3),
            erp_debtor_data::floor.eq(wanted.4),
            erp_debtor_data::door.eq(wanted.5),
            erp_debtor_data::postcode.eq(wanted.6),
            erp_debtor_data::city.eq(wanted.7),
            erp_debtor_data::country.eq(wanted.8),
            erp_debtor_data::created_at.eq(at.naive_utc()),
        ))
        .returning(erp_debtor_data::id)
        .get_result(conn)?)
}

/// The receipts a delivery would get, without writing anything or looking at earlier deliveries
/// (`fkoeko validate`).
pub fn preview(record: &DeliveryRecord, plans: Vec<ItemPlan>) -> ReceiptSet {
    let at = Utc::now();
    let delivery_id = record.delivery_id.map_or(NIL_UUID.to_string(), |id| id.to_string());
    let sender = record.sender.map_or(NIL_UUID.to_string(), |id| id.to_string());
    let receipts = plans
        .into_iter()
        .map(|plan| match plan.outcome {
            ItemOutcome::Reject(findings) => Receipt::rejected(&delivery_id, &plan.reference, &timestamp(at), &findings),
            ItemOutcome::Accept(_) => Receipt::accepted(&delivery_id, &plan.reference, &timestamp(at)),
        })
        .collect();
    ReceiptSet::new(delivery_id, sender, timestamp(at), receipts)
}
