//! Retention in the database: one bounded batch of one kind of data per transaction, so that a purge never holds
//! a long lock over deliveries being booked. What is purged, and how, is decided in `domain::retention`.

use chrono::NaiveDateTime;
use diesel::dsl::{exists, not, sql};
use diesel::prelude::*;
use diesel::sql_types::Bool;

use super::schema::{
    alert_outbox, audit_log, batch_files, batch_receipts, deliveries, erp_claim_parties, erp_claims, erp_debtor_data, erp_journal,
    erp_journal_lines, receipt_errors, receipts, target_files, target_outbox,
};
use super::text::Stored;
use super::{AnyConnection, Db, StorageError};
use crate::domain::retention::{pseudonymise_receipts, DataKind, PURGED_TEXT};
use crate::domain::sortiment::Integration;

/// What the ERP sets on an import row it has taken.
const PICKED_UP: &str = "HENTET";

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub rows: u64,
    /// A table gave a full batch: there may be more.
    pub more: bool,
}

impl Batch {
    fn of(rows: usize, taken: &[usize], batch: i64) -> Self {
        Batch { rows: rows as u64, more: taken.iter().any(|n| *n as i64 >= batch) }
    }
}

/// A batch file whose archive is past its period: the files to delete before it is marked.
#[derive(Debug, Clone)]
pub struct ArchivedFile {
    pub id: i32,
    pub integration: Integration,
    pub stored_name: String,
    pub file_name: String,
    pub file_key: String,
}

/// Picked up by the ERP, and both made and picked up before `before` (a row picked up without a time: made).
macro_rules! picked_up_before {
    ($table:ident, $before:expr) => {
        $table::status
            .eq(PICKED_UP)
            .and($table::created_at.lt($before))
            .and($table::picked_up_at.is_null().or($table::picked_up_at.lt($before)))
    };
}

/// Debtor data picked up before `before` that no kept fordring's hæfter names.
macro_rules! debtor_data_past {
    ($before:expr) => {
        picked_up_before!(erp_debtor_data, $before)
            .and(not(exists(erp_claim_parties::table.filter(erp_claim_parties::debtor_data_id.eq(erp_debtor_data::id)))))
    };
}

/// Target rows done before `before`: copied to the ERP's database, or in a file written.
macro_rules! target_rows_past {
    ($before:expr) => {
        target_outbox::forwarded_at.lt($before).or(target_outbox::file_id.eq_any(
            target_files::table
                .filter(target_files::state.eq("written"))
                .filter(target_files::written_at.lt($before))
                .select(target_files::id.nullable()),
        ))
    };
}

/// Rejected receipts processed before `before`, not yet pseudonymised. Written out, so that the planner sees the
/// partial index's condition.
macro_rules! rejected_receipts_past {
    ($before:expr) => {
        receipts::processed_at.lt($before).and(sql::<Bool>("receipts.purged_at IS NULL AND receipts.status <> 'Accepteret'"))
    };
}

macro_rules! deliveries_past {
    ($before:expr) => {
        deliveries::received_at.lt($before).and(deliveries::purged_at.is_null())
    };
}

/// Alerts sent (or given up) before `before`: what they said is in the receipts.
macro_rules! alerts_past {
    ($before:expr) => {
        alert_outbox::created_at.lt($before).and(alert_outbox::status.eq_any(["sent", "failed"]))
    };
}

/// Done batch files received before `before` whose archive is still on disk.
macro_rules! archives_past {
    ($before:expr) => {
        batch_files::state.eq("done").and(batch_files::received_at.lt($before)).and(batch_files::archive_purged_at.is_null())
    };
}

impl Db {
    /// Purges one batch (at most `batch` rows of each table it takes from) of `kind` older than `before`, in one
    /// transaction. The batch archive's files are the caller's (`archived_files_to_purge`, `mark_archives_purged`).
    pub fn purge_batch(&self, kind: DataKind, before: NaiveDateTime, batch: i64, now: NaiveDateTime) -> Result<Batch, StorageError> {
        self.write(|conn| match kind {
            DataKind::ImportRows => purge_import_rows(conn, before, batch),
            DataKind::DebtorData => {
                let ids: Vec<i32> =
                    erp_debtor_data::table.filter(debtor_data_past!(before)).select(erp_debtor_data::id).limit(batch).load(conn)?;
                let rows = diesel::delete(erp_debtor_data::table.filter(erp_debtor_data::id.eq_any(&ids))).execute(conn)?;
                Ok(Batch::of(rows, &[ids.len()], batch))
            }
            DataKind::Receipts => pseudonymise_rejected_receipts(conn, before, batch, now),
            DataKind::DeliveryRecords => pseudonymise_deliveries(conn, before, batch, now),
            DataKind::BatchArchive => Ok(Batch { rows: 0, more: false }),
            DataKind::AuditTrail => {
                let ids: Vec<i32> = audit_log::table.filter(audit_log::at.lt(before)).select(audit_log::id).limit(batch).load(conn)?;
                let rows = diesel::delete(audit_log::table.filter(audit_log::id.eq_any(&ids))).execute(conn)?;
                Ok(Batch::of(rows, &[ids.len()], batch))
            }
        })
    }

    /// How many rows (files, for the batch archive) of `kind` a purge would take now: a dry run.
    pub fn count_purgeable(&self, kind: DataKind, before: NaiveDateTime) -> Result<u64, StorageError> {
        let mut conn = self.conn()?;
        let conn = &mut *conn;
        let count: i64 = match kind {
            DataKind::ImportRows => {
                erp_journal::table.filter(picked_up_before!(erp_journal, before)).count().get_result::<i64>(conn)?
                    + erp_claims::table.filter(picked_up_before!(erp_claims, before)).count().get_result::<i64>(conn)?
                    + target_outbox::table.filter(target_rows_past!(before)).count().get_result::<i64>(conn)?
            }
            DataKind::DebtorData => erp_debtor_data::table.filter(debtor_data_past!(before)).count().get_result(conn)?,
            DataKind::Receipts => receipts::table.filter(rejected_receipts_past!(before)).count().get_result(conn)?,
            DataKind::DeliveryRecords => {
                deliveries::table.filter(deliveries_past!(before)).count().get_result::<i64>(conn)?
                    + alert_outbox::table.filter(alerts_past!(before)).count().get_result::<i64>(conn)?
            }
            DataKind::BatchArchive => batch_files::table.filter(archives_past!(before)).count().get_result(conn)?,
            DataKind::AuditTrail => audit_log::table.filter(audit_log::at.lt(before)).count().get_result(conn)?,
        };
        Ok(count as u64)
    }

    /// Done batch files whose archive is past its period and still on disk, at most `batch`.
    pub fn archived_files_to_purge(&self, before: NaiveDateTime, batch: i64) -> Result<Vec<ArchivedFile>, StorageError> {
        let rows: Vec<(i32, Stored<Integration>, String, String, String)> = batch_files::table
            .filter(archives_past!(before))
            .select((batch_files::id, batch_files::integration, batch_files::stored_name, batch_files::file_name, batch_files::file_key))
            .order(batch_files::id)
            .limit(batch)
            .load(&mut *self.conn()?)?;
        Ok(rows
            .into_iter()
            .map(|(id, integration, stored_name, file_name, file_key)| ArchivedFile {
                id,
                integration: integration.0,
                stored_name,
                file_name,
                file_key,
            })
            .collect())
    }

    /// Marks batch files' archives deleted (the caller has deleted the files) and pseudonymises the rejected
    /// entries their receipt files were written from.
    pub fn mark_archives_purged(&self, ids: &[i32], now: NaiveDateTime) -> Result<u64, StorageError> {
        self.write(|conn| {
            let entries: Vec<(i32, i32, String)> = batch_receipts::table
                .filter(batch_receipts::batch_id.eq_any(ids))
                .filter(sql::<Bool>("batch_receipts.status <> 'Accepteret'"))
                .select((batch_receipts::batch_id, batch_receipts::position, batch_receipts::receipt_json))
                .load(conn)?;
            for (batch, position, json) in entries {
                if let Some(json) = pseudonymise_receipts(&json) {
                    diesel::update(batch_receipts::table.find((batch, position)))
                        .set(batch_receipts::receipt_json.eq(json))
                        .execute(conn)?;
                }
            }
            Ok(diesel::update(batch_files::table.filter(batch_files::id.eq_any(ids)))
                .set(batch_files::archive_purged_at.eq(now))
                .execute(conn)? as u64)
        })
    }
}

fn purge_import_rows(conn: &mut AnyConnection, before: NaiveDateTime, batch: i64) -> Result<Batch, StorageError> {
    let journals: Vec<i32> = erp_journal::table
        .filter(picked_up_before!(erp_journal, before))
        .select(erp_journal::id)
        .order(erp_journal::id)
        .limit(batch)
        .load(conn)?;
    diesel::delete(erp_journal_lines::table.filter(erp_journal_lines::journal_id.eq_any(&journals))).execute(conn)?;
    let mut purged = diesel::delete(erp_journal::table.filter(erp_journal::id.eq_any(&journals))).execute(conn)?;
    let claims: Vec<i32> = erp_claims::table
        .filter(picked_up_before!(erp_claims, before))
        .select(erp_claims::id)
        .order(erp_claims::id)
        .limit(batch)
        .load(conn)?;
    // A kept claim that names a purged one as its main claim keeps the main claim's FordringId, not its row.
    diesel::update(erp_claims::table.filter(erp_claims::related_claim_id.eq_any(&claims)))
        .set(erp_claims::related_claim_id.eq(None::<i32>))
        .execute(conn)?;
    diesel::delete(erp_claim_parties::table.filter(erp_claim_parties::claim_id.eq_any(&claims))).execute(conn)?;
    purged += diesel::delete(erp_claims::table.filter(erp_claims::id.eq_any(&claims))).execute(conn)?;
    // Target rows: their file records stay (a name is never given twice), their payloads go.
    let rows: Vec<i32> = target_outbox::table
        .filter(target_rows_past!(before))
        .select(target_outbox::id)
        .order(target_outbox::id)
        .limit(batch)
        .load(conn)?;
    purged += diesel::delete(target_outbox::table.filter(target_outbox::id.eq_any(&rows))).execute(conn)?;
    Ok(Batch::of(purged, &[journals.len(), claims.len(), rows.len()], batch))
}

fn pseudonymise_rejected_receipts(
    conn: &mut AnyConnection,
    before: NaiveDateTime,
    batch: i64,
    now: NaiveDateTime,
) -> Result<Batch, StorageError> {
    let rows: Vec<(String, String)> = receipts::table
        .filter(rejected_receipts_past!(before))
        .select((receipts::kvittering_id, receipts::receipt_json))
        .limit(batch)
        .load(conn)?;
    // Each marked in one statement; only a receipt with something to remove is written again.
    let ids: Vec<&String> = rows.iter().map(|(id, _)| id).collect();
    diesel::update(receipts::table.filter(receipts::kvittering_id.eq_any(&ids))).set(receipts::purged_at.eq(now)).execute(conn)?;
    for (id, json) in &rows {
        if let Some(json) = pseudonymise_receipts(json) {
            diesel::update(receipts::table.find(id)).set(receipts::receipt_json.eq(json)).execute(conn)?;
        }
    }
    diesel::update(receipt_errors::table.filter(receipt_errors::kvittering_id.eq_any(&ids)))
        .set((receipt_errors::text.eq(PURGED_TEXT), receipt_errors::value.eq(None::<String>)))
        .execute(conn)?;
    Ok(Batch::of(rows.len(), &[rows.len()], batch))
}

fn pseudonymise_deliveries(conn: &mut AnyConnection, before: NaiveDateTime, batch: i64, now: NaiveDateTime) -> Result<Batch, StorageError> {
    let rows: Vec<(i32, String)> =
        deliveries::table.filter(deliveries_past!(before)).select((deliveries::id, deliveries::response_json)).limit(batch).load(conn)?;
    let ids: Vec<i32> = rows.iter().map(|(id, _)| *id).collect();
    diesel::update(deliveries::table.filter(deliveries::id.eq_any(&ids))).set(deliveries::purged_at.eq(now)).execute(conn)?;
    for (id, json) in &rows {
        if let Some(json) = pseudonymise_receipts(json) {
            diesel::update(deliveries::table.find(id)).set(deliveries::response_json.eq(json)).execute(conn)?;
        }
    }
    let alerts: Vec<i32> = alert_outbox::table.filter(alerts_past!(before)).select(alert_outbox::id).limit(batch).load(conn)?;
    diesel::delete(alert_outbox::table.filter(alert_outbox::id.eq_any(&alerts))).execute(conn)?;
    Ok(Batch::of(rows.len() + alerts.len(), &[rows.len(), alerts.len()], batch))
}
