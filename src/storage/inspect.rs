//! Read-only queries for people: deliveries and their rejections, what was booked where and by which mapping.
//! The web page and the `fkoeko deliveries` command both go through these.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use rust_decimal::Decimal;

use super::amount::DbAmount;
use super::schema::{
    batch_files, deliveries, erp_claim_parties, erp_claims, erp_debtor_data, erp_journal, erp_journal_lines, receipt_errors, receipts,
};
use super::{Db, StorageError};
use crate::domain::receipt::{Receipt, ReceiptSet, Status};

/// Which deliveries to list; every field left empty matches all.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// A LeveranceId, or a BilagId or FordringId of one of its items.
    pub text: Option<String>,
    /// AfsenderSystem (UUID).
    pub sender: Option<String>,
    /// "SF1590_A" or "SF1590_B".
    pub integration: Option<String>,
    /// Only deliveries with an error of this receipt code.
    pub code: Option<String>,
    /// Received on or after this day, and on or before `to` (UTC days).
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// Only deliveries with at least one rejected item.
    pub only_rejected: bool,
    /// Only deliveries older than this row id: the next page of a list, newest first.
    pub before: Option<i32>,
}

/// One delivery in a list.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deliveries)]
pub struct DeliverySummary {
    pub id: i32,
    pub leverance_id: Option<String>,
    pub integration: String,
    pub transport: String,
    #[diesel(column_name = afsender_system)]
    pub sender: Option<String>,
    pub received_at: NaiveDateTime,
    pub mapping_version: Option<String>,
    #[diesel(column_name = accepted_count)]
    pub accepted: i32,
    #[diesel(column_name = rejected_count)]
    pub rejected: i32,
}

/// Serviceplatformen's context of a straks call, as stored with its delivery.
#[derive(Debug, Clone, Default, Queryable)]
pub struct CallContextValues {
    pub transaction_uuid: Option<String>,
    pub user_system_uuid: Option<String>,
    pub municipality_cvr: Option<String>,
    pub call_identifier: Option<String>,
    pub accounting_info: Option<String>,
}

impl CallContextValues {
    pub fn is_empty(&self) -> bool {
        [&self.transaction_uuid, &self.user_system_uuid, &self.municipality_cvr, &self.call_identifier, &self.accounting_info]
            .iter()
            .all(|v| v.is_none())
    }
}

/// A journal line as booked: where it went, and the rule that sent it there.
#[derive(Debug, Clone, Queryable)]
pub struct BookedLine {
    pub line_no: i32,
    pub posting_id: i64,
    pub account: String,
    pub dimensions: String,
    #[diesel(deserialize_as = DbAmount)]
    pub amount: Decimal,
    pub debit_credit: String,
    pub funktion: String,
    pub dranst: String,
    pub art: String,
    pub rule: String,
}

/// What an accepted item became in the ERP's import tables.
#[derive(Debug, Clone)]
pub enum Booked {
    Journal {
        journal_id: i32,
        mapping_version: String,
        status: String,
        lines: Vec<BookedLine>,
    },
    Claim {
        claim_id: i32,
        claim_type: String,
        account: Option<String>,
        principal: Decimal,
        rules: String,
        mapping_version: String,
        status: String,
        parties: Vec<BookedParty>,
    },
}

/// A hæfter of an accepted claim, as the ERP reads it. A CPR number only masked: this is for showing.
#[derive(Debug, Clone)]
pub struct BookedParty {
    pub role: String,
    pub identifier_type: String,
    pub identifier: String,
    pub name: String,
    /// The ERP's debtor number when it knew the party; else the ERP creates the debtor.
    pub erp_debtor_number: Option<String>,
}

/// One item's receipt and, when accepted, its booking.
#[derive(Debug, Clone)]
pub struct ItemDetail {
    pub receipt: Receipt,
    pub booked: Option<Booked>,
}

#[derive(Debug, Clone)]
pub struct DeliveryDetail {
    pub summary: DeliverySummary,
    /// The batch file it came in, when it came as one.
    pub file_name: Option<String>,
    /// Serviceplatformen's context as the call carried it.
    pub context: CallContextValues,
    /// Its receipt file's way back through Serviceplatformen, when it went that way.
    pub receipt_transfer: Option<super::transfers::ReceiptTransfer>,
    /// The first `MAX_ITEMS` items.
    pub items: Vec<ItemDetail>,
    /// How many items the delivery has in all.
    pub items_total: usize,
}

/// The most items one delivery's view shows: a batch file can hold a hundred thousand.
pub const MAX_ITEMS: usize = 1000;

fn corrupt(e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(e.to_string())
}

/// What all instances share, read at scrape time for the metrics.
pub struct SharedFigures {
    pub batch_files_in_progress: i64,
    /// Alerts by outbox status (pending, sending, sent, failed).
    pub alert_outbox: Vec<(String, i64)>,
    /// Receipt files sent back through Serviceplatformen, by state (written, sent, delivered, failed).
    pub receipt_files: Vec<(super::text::TransferState, i64)>,
    /// Rows waiting for a file target's file.
    pub target_backlog: Option<super::targets::Backlog>,
}

impl Db {
    /// Deliveries matching the filter, newest first, at most `limit`.
    pub fn find_deliveries(&self, filter: &DeliveryFilter, limit: i64) -> Result<Vec<DeliverySummary>, StorageError> {
        let mut query = deliveries::table.select(DeliverySummary::as_select()).into_boxed();
        if let Some(text) = filter.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            let by_item = receipts::table.filter(receipts::reference.eq(text.to_string())).select(receipts::delivery_id);
            query = query.filter(deliveries::leverance_id.eq(text.to_string()).or(deliveries::id.eq_any(by_item)));
        }
        if let Some(sender) = &filter.sender {
            query = query.filter(deliveries::afsender_system.eq(sender.clone()));
        }
        if let Some(integration) = &filter.integration {
            query = query.filter(deliveries::integration.eq(integration.clone()));
        }
        if let Some(code) = &filter.code {
            let with_code = receipts::table
                .inner_join(receipt_errors::table)
                .filter(receipt_errors::code.eq(code.clone()))
                .select(receipts::delivery_id);
            query = query.filter(deliveries::id.eq_any(with_code));
        }
        if let Some(from) = filter.from {
            query = query.filter(deliveries::received_at.ge(from.and_hms_opt(0, 0, 0).expect("midnight")));
        }
        if let Some(to) = filter.to.and_then(|d| d.succ_opt()) {
            query = query.filter(deliveries::received_at.lt(to.and_hms_opt(0, 0, 0).expect("midnight")));
        }
        if filter.only_rejected {
            query = query.filter(deliveries::rejected_count.gt(0));
        }
        if let Some(before) = filter.before {
            query = query.filter(deliveries::id.lt(before));
        }
        Ok(query.order(deliveries::id.desc()).limit(limit).load(&mut self.conn()?)?)
    }

    /// One delivery, by its row id or its LeveranceId: the receipts it was answered with, in the order of its
    /// items (at most `MAX_ITEMS`), and what each accepted one was booked as. The answer, not the receipt rows
    /// of this delivery: an item accepted in an earlier delivery is answered with that earlier receipt.
    pub fn delivery_detail(&self, key: &str) -> Result<Option<DeliveryDetail>, StorageError> {
        let found = {
            let mut conn = self.conn()?;
            let query = deliveries::table.select((DeliverySummary::as_select(), deliveries::response_json)).into_boxed();
            let query = match key.parse::<i32>() {
                Ok(id) => query.filter(deliveries::id.eq(id)),
                Err(_) => query.filter(deliveries::leverance_id.eq(key.to_string())),
            };
            match query.first::<(DeliverySummary, String)>(&mut conn).optional()? {
                None => return Ok(None),
                Some((summary, response)) => {
                    let file: Option<(i32, String, Option<i32>)> = batch_files::table
                        .filter(batch_files::delivery_id.eq(summary.id))
                        .select((batch_files::id, batch_files::file_name, batch_files::items_total))
                        .first(&mut conn)
                        .optional()?;
                    (summary, response, file)
                }
            }
        };
        let (summary, response, file) = found;
        let context: CallContextValues = deliveries::table
            .find(summary.id)
            .select((
                deliveries::transaction_uuid,
                deliveries::user_system_uuid,
                deliveries::context_municipality_cvr,
                deliveries::callers_service_call_identifier,
                deliveries::accounting_info,
            ))
            .first(&mut self.conn()?)?;
        let receipt_transfer = match &file {
            Some((batch_id, ..)) => self.receipt_transfers_of(*batch_id)?.into_iter().next(),
            None => None,
        };
        let (answer, items_total, file_name) = match file {
            // A batch file's receipts are kept per position; its delivery row holds no answer of its own.
            Some((batch_id, name, total)) => {
                let page: Vec<Receipt> = self.batch_receipts_page(batch_id, -1, MAX_ITEMS as i64)?.into_iter().map(|(_, r)| r).collect();
                let total = total.map_or(page.len(), |t| t as usize);
                (page, total, Some(name))
            }
            None => {
                // Empty while the delivery's transaction has not ended.
                let set: Option<ReceiptSet> =
                    (!response.is_empty()).then(|| serde_json::from_str(&response)).transpose().map_err(corrupt)?;
                let mut receipts = set.map(|s| s.receipts).unwrap_or_default();
                let total = receipts.len();
                receipts.truncate(MAX_ITEMS);
                (receipts, total, None)
            }
        };
        let mut conn = self.conn()?;
        let mut items = Vec::with_capacity(answer.len());
        for receipt in answer {
            let booked = if receipt.status == Status::Accepteret { booked(&mut conn, &receipt.id.to_string())? } else { None };
            items.push(ItemDetail { receipt, booked });
        }
        Ok(Some(DeliveryDetail { summary, file_name, context, receipt_transfer, items, items_total }))
    }

    /// Batch files not yet done, and alerts by outbox status, for the metrics.
    pub fn shared_figures(&self) -> Result<SharedFigures, StorageError> {
        use super::schema::alert_outbox;
        let mut conn = self.conn()?;
        let batch_files_in_progress: i64 = batch_files::table
            .filter(batch_files::state.ne(super::text::Stored(super::text::BatchState::Done)))
            .count()
            .get_result(&mut conn)?;
        let alert_outbox: Vec<(String, i64)> =
            alert_outbox::table.group_by(alert_outbox::status).select((alert_outbox::status, diesel::dsl::count_star())).load(&mut conn)?;
        drop(conn);
        let receipt_files = self.receipt_transfer_counts()?;
        let target_backlog = Some(self.target_backlog()?);
        Ok(SharedFigures { batch_files_in_progress, alert_outbox, receipt_files, target_backlog })
    }

    /// A consistent copy of a SQLite database into a new file, while writers go on (SQLite's VACUUM INTO: one
    /// read transaction, so the copy is the database as of one moment, and compact). PostgreSQL has pg_dump.
    pub fn backup_to(&self, to: &std::path::Path) -> Result<(), StorageError> {
        let mut conn = self.conn()?;
        match &mut *conn {
            super::AnyConnection::Sqlite(sqlite) => {
                diesel::sql_query("VACUUM INTO ?").bind::<diesel::sql_types::Text, _>(to.display().to_string()).execute(sqlite)?;
                Ok(())
            }
            super::AnyConnection::Postgresql(_) => {
                Err(StorageError::Connect("the database is PostgreSQL: make its backup with pg_dump (or the server's own backups)".into()))
            }
        }
    }

    /// Whether the database answers, for the readiness check.
    pub fn ping(&self) -> Result<(), StorageError> {
        diesel::sql_query("SELECT 1").execute(&mut self.conn()?)?;
        Ok(())
    }

    /// The distinct error codes of each of these deliveries, for a list to show what went wrong at a glance.
    pub fn error_codes_of(&self, delivery_ids: &[i32]) -> Result<std::collections::HashMap<i32, Vec<String>>, StorageError> {
        let rows: Vec<(i32, String)> = receipts::table
            .inner_join(receipt_errors::table)
            .filter(receipts::delivery_id.eq_any(delivery_ids))
            .select((receipts::delivery_id, receipt_errors::code))
            .distinct()
            .order((receipts::delivery_id, receipt_errors::code))
            .load(&mut self.conn()?)?;
        let mut codes: std::collections::HashMap<i32, Vec<String>> = std::collections::HashMap::new();
        for (id, code) in rows {
            codes.entry(id).or_default().push(code);
        }
        Ok(codes)
    }

    /// The receipt codes that occur in stored errors, for the filter's choices.
    pub fn error_codes_seen(&self) -> Result<Vec<String>, StorageError> {
        Ok(receipt_errors::table.select(receipt_errors::code).distinct().order(receipt_errors::code).load(&mut self.conn()?)?)
    }
}

/// The journal or claim an accepted receipt became.
fn booked(conn: &mut super::AnyConnection, kvittering_id: &str) -> Result<Option<Booked>, StorageError> {
    let journal: Option<(i32, String, String)> = erp_journal::table
        .filter(erp_journal::kvittering_id.eq(kvittering_id))
        .select((erp_journal::id, erp_journal::mapping_version, erp_journal::status))
        .first(conn)
        .optional()?;
    if let Some((journal_id, mapping_version, status)) = journal {
        let lines: Vec<BookedLine> = erp_journal_lines::table
            .filter(erp_journal_lines::journal_id.eq(journal_id))
            .order(erp_journal_lines::line_no)
            .select((
                erp_journal_lines::line_no,
                erp_journal_lines::posting_id,
                erp_journal_lines::erp_account,
                erp_journal_lines::erp_dimensions,
                erp_journal_lines::amount,
                erp_journal_lines::debit_credit,
                erp_journal_lines::src_funktion,
                erp_journal_lines::src_dranst,
                erp_journal_lines::src_art,
                erp_journal_lines::mapping_rule,
            ))
            .load(conn)?;
        return Ok(Some(Booked::Journal { journal_id, mapping_version, status, lines }));
    }
    type ClaimRow = (i32, String, Option<String>, DbAmount, String, String, String);
    let claim: Option<ClaimRow> = erp_claims::table
        .filter(erp_claims::kvittering_id.eq(kvittering_id))
        .select((
            erp_claims::id,
            erp_claims::erp_claim_type,
            erp_claims::erp_account,
            erp_claims::principal,
            erp_claims::mapping_rules,
            erp_claims::mapping_version,
            erp_claims::status,
        ))
        .first(conn)
        .optional()?;
    let Some((claim_id, claim_type, account, principal, rules, mapping_version, status)) = claim else { return Ok(None) };
    let parties: Vec<(String, String, String, String, Option<String>)> = erp_claim_parties::table
        .inner_join(erp_debtor_data::table)
        .filter(erp_claim_parties::claim_id.eq(claim_id))
        .order(erp_claim_parties::position)
        .select((
            erp_claim_parties::role,
            erp_debtor_data::identifier_type,
            erp_debtor_data::identifier,
            erp_debtor_data::name,
            erp_claim_parties::erp_debtor_number,
        ))
        .load(conn)?;
    let parties = parties
        .into_iter()
        .map(|(role, identifier_type, identifier, name, erp_debtor_number)| {
            let identifier = if identifier_type == "CPR" { crate::domain::values::mask_cpr(&identifier) } else { identifier };
            BookedParty { role, identifier_type, identifier, name, erp_debtor_number }
        })
        .collect();
    Ok(Some(Booked::Claim { claim_id, claim_type, account, principal: principal.0, rules, mapping_version, status, parties }))
}
