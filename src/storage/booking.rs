//! The writes of a delivery: its record, every receipt, and the import rows of what was accepted, and the facts
//! the idempotency decisions (`domain::idempotency`) are made from. The pipeline (`pipeline::book`) calls these
//! inside one transaction; nothing here decides.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::query_builder::QueryFragment;
use uuid::Uuid;

use super::amount::DbAmount;
use super::date::DbDate;
use super::fixed::{in_list, EarlierDeliveries, ReceiptAccepted, TakeKeys};
use super::schema::{
    alert_outbox, deliveries, erp_claim_parties, erp_claims, erp_debtor_data, erp_debtors, erp_journal, erp_journal_lines, receipt_errors,
    receipts,
};
use super::text::Stored;
use super::{AnyConnection, StorageError};
use crate::domain::alert::{Alert, AlertTarget};
use crate::domain::delivery::{ClaimBooking, DeliveryRecord, FinansBooking, Transport};
use crate::domain::idempotency::{EarlierDelivery, EarlierItem};
use crate::domain::receipt::{Receipt, Status};
use crate::domain::sortiment::Integration;

/// `insert_all` of rows of type `$row` into a table (defined below): the one statement for both backends,
/// spelled once.
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $row:ident, $rows:expr) => {
        $crate::storage::booking::insert_all(
            $conn,
            $rows,
            |conn, rows| $crate::storage::execute_native(conn, diesel::insert_into($table).values(rows)),
            |conn, row| $crate::storage::execute_native(conn, diesel::insert_into($table).values(row)),
            |conn, rows: &[$row<'_>; $crate::storage::booking::SQLITE_ROWS]| {
                let statement = $crate::storage::booking::SqliteRows::<_, _, $row<'static>>::new::<$row<'_>>($table, rows);
                diesel::RunQueryDsl::execute(statement, conn)
            },
        )
    };
}
pub(super) use insert_rows;

pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("receipts serialize")
}

/// The delivery written before under LeveranceId `id`, with its key.
pub fn earlier_delivery(conn: &mut AnyConnection, id: Uuid) -> Result<Option<(i32, EarlierDelivery)>, StorageError> {
    Ok(earlier_deliveries(conn, &[id])?.into_iter().next().map(|(_, key, earlier)| (key, earlier)))
}

/// The deliveries written before under any of these LeveranceIds: each with its LeveranceId and key. One query.
pub fn earlier_deliveries(conn: &mut AnyConnection, ids: &[Uuid]) -> Result<Vec<(Uuid, i32, EarlierDelivery)>, StorageError> {
    let mut found = Vec::new();
    if ids.is_empty() {
        return Ok(found);
    }
    let rows: Vec<(Option<String>, i32, String, String)> = EarlierDeliveries::of(ids).load(conn)?;
    for (id, key, request_hash, response) in rows {
        let id =
            id.and_then(|id| Uuid::parse_str(&id).ok()).ok_or_else(|| StorageError::Corrupt(format!("delivery {key}: LeveranceId")))?;
        found.push((id, key, EarlierDelivery { request_hash, response }));
    }
    Ok(found)
}

/// The receipts accepted before from `sender` in `integration` under any of these references (BilagId,
/// FordringId): each with its reference. One query of a fixed shape, on the index that keeps an item accepted once.
pub fn accepted_items(
    conn: &mut AnyConnection,
    integration: Integration,
    sender: Uuid,
    references: &[&str],
) -> Result<Vec<(String, EarlierItem)>, StorageError> {
    if references.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, String, String)> = receipts::table
        .filter(receipts::integration.eq(Stored(integration)))
        .filter(receipts::afsender_system.eq(sender.to_string()))
        .filter(in_list(receipts::reference, references))
        .filter(ReceiptAccepted)
        .select((receipts::reference, receipts::content_hash, receipts::receipt_json))
        .load(conn)?;
    let found = rows.into_iter().map(|(reference, content_hash, receipt)| (reference, EarlierItem { content_hash, receipt })).collect();
    Ok(found)
}

/// The tables whose keys are taken before their rows are written, so that a receipt can name its import row
/// (ErpReference) as it is inserted, and a delivery's receipts their delivery, without a second statement.
#[derive(Debug, Clone, Copy)]
pub enum Keyed {
    Deliveries,
    Journal,
    Claims,
}

impl Keyed {
    /// In the order `take_keys` counts and returns them.
    pub const ALL: [Keyed; 3] = [Keyed::Deliveries, Keyed::Journal, Keyed::Claims];

    pub fn name(self) -> &'static str {
        match self {
            Keyed::Deliveries => "deliveries",
            Keyed::Journal => "erp_journal",
            Keyed::Claims => "erp_claims",
        }
    }
}

/// New keys for each of the keyed tables (`counts` in the order of `Keyed::ALL`), in one query of a fixed shape.
/// PostgreSQL: from the tables' sequences, which no other transaction will hand out again. SQLite: after the
/// highest key each table ever gave (AUTOINCREMENT's own record); the write transaction holds SQLite's one write
/// lock, so nobody else takes keys until it ends, and inserting them moves that record on.
pub fn take_keys(conn: &mut AnyConnection, counts: [usize; 3]) -> Result<[Vec<i32>; 3], StorageError> {
    let mut keys: [Vec<i32>; 3] = Default::default();
    if counts.iter().all(|&n| n == 0) {
        return Ok(keys);
    }
    let rows: Vec<(i32, i32)> = TakeKeys { counts: counts.map(|n| n as i32) }.load(conn)?;
    let postgres = matches!(conn, AnyConnection::Postgresql(_));
    for (table, key) in rows {
        let table = usize::try_from(table).ok().filter(|&t| t < 3).ok_or_else(|| StorageError::Corrupt(format!("key of table {table}")))?;
        if postgres {
            keys[table].push(key);
        } else {
            keys[table] = (1..=counts[table] as i32).map(|k| key + k).collect();
        }
    }
    Ok(keys)
}

/// A delivery's row as it is first written, its outcome still open.
#[derive(Insertable)]
#[diesel(table_name = deliveries, treat_none_as_default_value = false)]
struct NewDelivery<'a> {
    id: i32,
    leverance_id: Option<String>,
    integration: Stored<Integration>,
    transport: Stored<Transport>,
    afsender_system: Option<String>,
    myndighed: Option<&'a str>,
    transaction_uuid: Option<&'a str>,
    user_system_uuid: Option<&'a str>,
    context_municipality_cvr: Option<&'a str>,
    callers_service_call_identifier: Option<&'a str>,
    accounting_info: Option<&'a str>,
    request_hash: &'a str,
    received_at: NaiveDateTime,
    sortiment_version_id: Option<i32>,
    mapping_version: Option<&'a str>,
    accepted_count: i32,
    rejected_count: i32,
    response_json: &'a str,
}

/// Writes a delivery's row, its outcome still open (a batch file's, recorded as its chunks are written);
/// returns its key.
pub fn insert_delivery(conn: &mut AnyConnection, record: &DeliveryRecord, at: DateTime<Utc>) -> Result<i32, StorageError> {
    let [deliveries, _, _] = take_keys(conn, [1, 0, 0])?;
    let key = deliveries[0];
    insert_deliveries(conn, &[DeliveryRow { key, record, at, accepted: 0, rejected: 0, response: String::new() }])?;
    Ok(key)
}

/// A delivery's row with its outcome: its key taken before (`take_keys`), its counts and the answer a re-sent
/// delivery gets again.
pub struct DeliveryRow<'a> {
    pub key: i32,
    pub record: &'a DeliveryRecord,
    pub at: DateTime<Utc>,
    pub accepted: usize,
    pub rejected: usize,
    pub response: String,
}

fn new_delivery<'a>(row: &'a DeliveryRow<'a>) -> NewDelivery<'a> {
    let record = row.record;
    NewDelivery {
        id: row.key,
        leverance_id: record.delivery_id.map(|id| id.to_string()),
        integration: Stored(record.integration),
        transport: Stored(record.transport),
        afsender_system: record.sender.map(|s| s.to_string()),
        myndighed: record.authority.as_deref(),
        transaction_uuid: record.transaction_uuid.as_deref(),
        user_system_uuid: record.user_system_uuid.as_deref(),
        context_municipality_cvr: record.context_authority.as_deref(),
        callers_service_call_identifier: record.call_identifier.as_deref(),
        accounting_info: record.accounting_info.as_deref(),
        request_hash: &record.request_hash,
        received_at: row.at.naive_utc(),
        sortiment_version_id: record.sortiment_version.map(|v| v as i32),
        mapping_version: record.mapping_version.as_deref(),
        accepted_count: row.accepted as i32,
        rejected_count: row.rejected as i32,
        response_json: &row.response,
    }
}

/// Writes deliveries' rows, each with its key and outcome.
pub fn insert_deliveries(conn: &mut AnyConnection, rows: &[DeliveryRow]) -> Result<(), StorageError> {
    let rows: Vec<NewDelivery> = rows.iter().map(new_delivery).collect();
    insert_rows!(conn, deliveries::table, NewDelivery, &rows)
}

/// Records the outcome of a delivery on its row: the counts, and the answer a re-sent delivery gets again.
pub fn close_delivery(conn: &mut AnyConnection, key: i32, accepted: usize, rejected: usize, response: &str) -> Result<(), StorageError> {
    diesel::update(deliveries::table.find(key))
        .set((
            deliveries::accepted_count.eq(accepted as i32),
            deliveries::rejected_count.eq(rejected as i32),
            deliveries::response_json.eq(response),
        ))
        .execute(conn)?;
    Ok(())
}

/// Puts an alert into the outbox, to be sent from `due` on (rejections that come close together go out in one
/// mail).
pub fn enqueue_alert(
    conn: &mut AnyConnection,
    target: &AlertTarget,
    payload: &Alert,
    sender: Option<Uuid>,
    due: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<(), StorageError> {
    let row = NewAlert {
        group_key: &target.group_key,
        afsender_system: sender.map(|s| s.to_string()),
        recipients: serde_json::json!({"to": target.to, "cc": target.cc}).to_string(),
        payload: to_json(payload),
        created_at: at.naive_utc(),
        next_attempt_at: due.naive_utc(),
    };
    diesel::insert_into(alert_outbox::table).values(&row).execute(conn)?;
    Ok(())
}

/// An alert as it goes into the outbox; its sending state starts at the table's defaults.
#[derive(Insertable)]
#[diesel(table_name = alert_outbox, treat_none_as_default_value = false)]
struct NewAlert<'a> {
    group_key: &'a str,
    afsender_system: Option<String>,
    recipients: String,
    payload: String,
    created_at: NaiveDateTime,
    next_attempt_at: NaiveDateTime,
}

/// An item's receipt as it is written: with its delivery, and the digest of the item's content that a copy sent
/// again is known by.
pub struct ReceiptRow<'a> {
    pub delivery_key: i32,
    pub record: &'a DeliveryRecord,
    pub content_hash: &'a str,
    pub receipt: Receipt,
    pub at: DateTime<Utc>,
}

/// Writes items' receipts and their errors.
pub fn insert_receipts(conn: &mut AnyConnection, rows: &[ReceiptRow]) -> Result<(), StorageError> {
    let ids = receipt_ids(rows);
    insert_rows!(conn, receipts::table, NewReceipt, &new_receipts(rows, &ids))?;
    insert_rows!(conn, receipt_errors::table, NewReceiptError, &new_receipt_errors(rows, &ids))
}

fn receipt_ids(rows: &[ReceiptRow]) -> Vec<String> {
    rows.iter().map(|r| r.receipt.id.to_string()).collect()
}

fn new_receipts<'a>(rows: &'a [ReceiptRow], ids: &'a [String]) -> Vec<NewReceipt<'a>> {
    rows.iter()
        .zip(ids)
        .map(|(row, id)| NewReceipt {
            kvittering_id: id,
            delivery_id: row.delivery_key,
            integration: Stored(row.record.integration),
            afsender_system: row.record.sender.map(|s| s.to_string()),
            reference: &row.receipt.reference,
            status: Stored(row.receipt.status),
            content_hash: row.content_hash,
            processed_at: row.at.naive_utc(),
            erp_reference: row.receipt.erp_reference.as_deref(),
            receipt_json: to_json(&row.receipt),
        })
        .collect()
}

fn new_receipt_errors<'a>(rows: &'a [ReceiptRow], ids: &'a [String]) -> Vec<NewReceiptError<'a>> {
    rows.iter()
        .zip(ids)
        .flat_map(|(row, id)| {
            row.receipt.errors.iter().enumerate().map(move |(position, error)| NewReceiptError {
                kvittering_id: id,
                position: position as i32,
                code: error.code.as_str(),
                text: &error.text,
                path: error.path.as_deref(),
                line: error.line.map(|l| l as i32),
                col: error.col.map(|c| c as i32),
                value: error.value.as_deref(),
            })
        })
        .collect()
}

/// A group's deliveries, receipts (with their errors) and finansbilag (with their lines). On PostgreSQL, when the
/// rows are few enough for one statement's parameters, as one statement (each table's insert a `WITH` clause of
/// it): one round trip instead of one a table. The foreign keys between them are checked at the statement's end,
/// when all of it is in. Otherwise (SQLite, where a statement costs no round trip; or many rows) a table at a
/// time, in the order the tables refer to each other.
pub fn insert_booked(
    conn: &mut AnyConnection,
    deliveries: &[DeliveryRow],
    receipts: &[ReceiptRow],
    journals: &[JournalRow],
) -> Result<(), StorageError> {
    let delivery_rows: Vec<NewDelivery> = deliveries.iter().map(new_delivery).collect();
    let ids = receipt_ids(receipts);
    let (receipt_rows, error_rows) = (new_receipts(receipts, &ids), new_receipt_errors(receipts, &ids));
    let journal_ids = journal_ids(journals);
    let (journal_rows, line_rows) = (new_journals(journals, &journal_ids), new_journal_lines(journals));
    let rows = delivery_rows.len() + receipt_rows.len() + error_rows.len() + journal_rows.len();
    match conn {
        // At most about 25 parameters a row: well within PostgreSQL's 65,535 a statement.
        AnyConnection::Postgresql(pg) if rows <= 1_000 && line_rows.len() <= 1_500 => {
            let mut inserts: Vec<Box<dyn QueryFragment<diesel::pg::Pg> + '_>> = Vec::new();
            if !delivery_rows.is_empty() {
                inserts.push(Box::new(diesel::insert_into(deliveries::table).values(&delivery_rows)));
            }
            if !receipt_rows.is_empty() {
                inserts.push(Box::new(diesel::insert_into(receipts::table).values(&receipt_rows)));
            }
            if !error_rows.is_empty() {
                inserts.push(Box::new(diesel::insert_into(receipt_errors::table).values(&error_rows)));
            }
            if !journal_rows.is_empty() {
                inserts.push(Box::new(diesel::insert_into(erp_journal::table).values(&journal_rows)));
            }
            if !line_rows.is_empty() {
                inserts.push(Box::new(diesel::insert_into(erp_journal_lines::table).values(&line_rows)));
            }
            if !inserts.is_empty() {
                AllInOne(inserts).execute(pg)?;
            }
            Ok(())
        }
        _ => {
            insert_rows!(conn, deliveries::table, NewDelivery, &delivery_rows)?;
            insert_rows!(conn, receipts::table, NewReceipt, &receipt_rows)?;
            insert_rows!(conn, receipt_errors::table, NewReceiptError, &error_rows)?;
            insert_rows!(conn, erp_journal::table, NewJournal, &journal_rows)?;
            insert_rows!(conn, erp_journal_lines::table, NewJournalLine, &line_rows)
        }
    }
}

/// PostgreSQL statements run as one: all but the last as `WITH` clauses of the last.
struct AllInOne<'a>(Vec<Box<dyn QueryFragment<diesel::pg::Pg> + 'a>>);

impl QueryFragment<diesel::pg::Pg> for AllInOne<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        // Its shape changes with which tables have rows and how many; the parts are not cached either.
        out.unsafe_to_cache_prepared();
        let Some((last, first)) = self.0.split_last() else { return Ok(()) };
        for (n, part) in first.iter().enumerate() {
            out.push_sql(if n == 0 { "WITH " } else { ", " });
            out.push_sql(&format!("written_{n} AS ("));
            part.walk_ast(out.reborrow())?;
            out.push_sql(")");
        }
        if !first.is_empty() {
            out.push_sql(" ");
        }
        last.walk_ast(out.reborrow())
    }
}

impl diesel::query_builder::QueryId for AllInOne<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl RunQueryDsl<diesel::pg::PgConnection> for AllInOne<'_> {}

/// Inserts rows. On SQLite, `SQLITE_ROWS` rows a statement (`sqlite_many`), and the rest one a statement: both
/// shapes are prepared once and kept, where a statement of any other count of rows would be prepared again. SQLite
/// runs in this process, so a statement costs no round trip, but each costs diesel a cache lookup and SQLite a
/// run of its own: a batch file's lines in statements of one were a third of the committer thread's time. On
/// PostgreSQL each statement is a round trip to the server; the rows go in slices within its limit of parameters
/// to a statement.
///
/// Both run on the backend's own connection (`execute_native`): through the multi-backend connection diesel
/// renders a statement's SQL twice and walks its values five times at every run, cached or not, and on SQLite
/// that was a quarter of the writer thread's time.
pub(crate) fn insert_all<R>(
    conn: &mut AnyConnection,
    rows: &[R],
    many: impl Fn(&mut AnyConnection, &[R]) -> QueryResult<usize>,
    one: impl Fn(&mut AnyConnection, &R) -> QueryResult<usize>,
    sqlite_many: impl Fn(&mut SqliteConnection, &[R; SQLITE_ROWS]) -> QueryResult<usize>,
) -> Result<(), StorageError> {
    let rest = match conn {
        AnyConnection::Sqlite(sqlite) => {
            let (full, rest) = rows.as_chunks::<SQLITE_ROWS>();
            for rows in full {
                sqlite_many(sqlite, rows)?;
            }
            rest
        }
        AnyConnection::Postgresql(_) => {
            for rows in rows.chunks(500) {
                many(conn, rows)?;
            }
            &[]
        }
    };
    for row in rest {
        one(conn, row)?;
    }
    Ok(())
}

/// Rows a statement when SQLite inserts many (at most 22 columns a row: far within its limit of parameters).
pub(crate) const SQLITE_ROWS: usize = 32;

/// `INSERT INTO table (columns) VALUES (…), (…)` of `SQLITE_ROWS` rows, which diesel prepares once and keeps
/// under `Key`, the row type's `'static` form. Diesel's own insert of many rows is kept only for row types
/// without a lifetime (its key is the row type), and ours borrow what they write; a row type has one set of
/// columns, so one key is one SQL text.
pub(crate) struct SqliteRows<V, Tab: diesel::QuerySource, Key> {
    into: Tab::FromClause,
    values: Vec<diesel::query_builder::ValuesClause<V, Tab>>,
    key: std::marker::PhantomData<fn() -> Key>,
}

impl<V, Tab: diesel::QuerySource, Key> SqliteRows<V, Tab, Key> {
    /// Exactly `SQLITE_ROWS` rows, by type: the SQL kept under `Key` has that many rows of placeholders.
    pub(crate) fn new<'a, R>(table: Tab, rows: &'a [R; SQLITE_ROWS]) -> Self
    where
        &'a R: Insertable<Tab, Values = diesel::query_builder::ValuesClause<V, Tab>>,
    {
        SqliteRows { into: table.from_clause(), values: rows.iter().map(Insertable::values).collect(), key: std::marker::PhantomData }
    }
}

impl<V, Tab, Key> QueryFragment<diesel::sqlite::Sqlite> for SqliteRows<V, Tab, Key>
where
    Tab: diesel::Table,
    Tab::FromClause: QueryFragment<diesel::sqlite::Sqlite>,
    diesel::query_builder::ValuesClause<V, Tab>: QueryFragment<diesel::sqlite::Sqlite>,
    V: QueryFragment<diesel::sqlite::Sqlite>,
{
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        self.into.walk_ast(out.reborrow())?;
        out.push_sql(" ");
        let mut values = self.values.iter();
        // The first row names the columns: `(columns) VALUES (…)`; each after it adds `, (…)`.
        if let Some(first) = values.next() {
            first.walk_ast(out.reborrow())?;
        }
        for row in values {
            out.push_sql(", (");
            row.values.walk_ast(out.reborrow())?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl<V, Tab: diesel::QuerySource, Key: 'static> diesel::query_builder::QueryId for SqliteRows<V, Tab, Key> {
    type QueryId = SqliteRowsOf<Key>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// `SqliteRows`' key in diesel's statement cache.
pub(crate) struct SqliteRowsOf<Key>(std::marker::PhantomData<Key>);

impl<V, Tab: diesel::QuerySource, Key> RunQueryDsl<SqliteConnection> for SqliteRows<V, Tab, Key> {}

#[derive(Insertable)]
#[diesel(table_name = receipts, treat_none_as_default_value = false)]
struct NewReceipt<'a> {
    kvittering_id: &'a str,
    delivery_id: i32,
    integration: Stored<Integration>,
    afsender_system: Option<String>,
    reference: &'a str,
    status: Stored<Status>,
    content_hash: &'a str,
    processed_at: NaiveDateTime,
    erp_reference: Option<&'a str>,
    receipt_json: String,
}

#[derive(Insertable)]
#[diesel(table_name = receipt_errors, treat_none_as_default_value = false)]
struct NewReceiptError<'a> {
    kvittering_id: &'a str,
    position: i32,
    code: &'static str,
    text: &'a str,
    path: Option<&'a str>,
    line: Option<i32>,
    col: Option<i32>,
    value: Option<&'a str>,
}

/// One accepted finansbilag's import rows to write: its journal key (`take_keys`) and receipt.
pub struct JournalRow<'a> {
    pub key: i32,
    pub kvittering_id: Uuid,
    pub delivery_key: i32,
    pub sender: String,
    pub booking: &'a FinansBooking,
    pub at: DateTime<Utc>,
}

/// Writes the import rows of accepted finansbilag: a journal row each, and a line for each postering.
pub fn insert_journals(conn: &mut AnyConnection, rows: &[JournalRow]) -> Result<(), StorageError> {
    let ids = journal_ids(rows);
    insert_rows!(conn, erp_journal::table, NewJournal, &new_journals(rows, &ids))?;
    insert_rows!(conn, erp_journal_lines::table, NewJournalLine, &new_journal_lines(rows))
}

fn journal_ids(rows: &[JournalRow]) -> Vec<String> {
    rows.iter().map(|r| r.kvittering_id.to_string()).collect()
}

fn new_journals<'a>(rows: &'a [JournalRow], ids: &'a [String]) -> Vec<NewJournal<'a>> {
    rows.iter()
        .zip(ids)
        .map(|(row, id)| NewJournal {
            id: row.key,
            kvittering_id: id,
            delivery_id: row.delivery_key,
            afsender_system: &row.sender,
            bilag_id: &row.booking.bilag.bilag_id,
            bilagsdato: DbDate(row.booking.bilag.date),
            bilagstekst: row.booking.bilag.text.as_deref(),
            mapping_version: &row.booking.mapping_version,
            created_at: row.at.naive_utc(),
        })
        .collect()
}

fn new_journal_lines<'a>(rows: &'a [JournalRow]) -> Vec<NewJournalLine<'a>> {
    rows.iter().flat_map(|row| journal_lines(row.key, row.booking)).collect()
}

/// Dimensions as a JSON object: sorted by name, the last of a name kept (as a `serde_json::Map` of them is), written
/// without copying each name and value into one first.
fn dimensions_json(dimensions: &[(String, String)]) -> String {
    let object: std::collections::BTreeMap<&str, &str> = dimensions.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    to_json(&object)
}

/// A finansbilag's postings as journal lines: the ERP account and dimensions each maps to, and its kontering.
fn journal_lines(journal: i32, booking: &FinansBooking) -> impl Iterator<Item = NewJournalLine<'_>> {
    booking.bilag.postings.iter().zip(&booking.mapped).enumerate().map(move |(n, (posting, mapped))| {
        let k = &posting.kontering.value;
        let party = posting.party.as_ref().map(|p| &p.value);
        NewJournalLine {
            journal_id: journal,
            line_no: n as i32 + 1,
            posting_id: posting.id.value as i64,
            erp_account: &mapped.account,
            erp_dimensions: dimensions_json(&mapped.dimensions),
            amount: DbAmount(posting.amount.value()),
            debit_credit: posting.side.code(),
            currency: posting.currency.value.as_str(),
            posting_date: DbDate(posting.date.value),
            posting_text: &posting.text,
            party_type: party.map(|p| p.kind()),
            party_id: party.map(|p| p.expose()),
            case_reference: posting.case_reference.as_deref(),
            src_funktion: k.funktion.as_str(),
            src_gruppering: k.gruppering.as_ref().map(|g| g.as_str()),
            src_dranst: k.dranst.as_str(),
            src_ejerforhold: k.ejerforhold.as_ref().map(|e| e.as_str()),
            src_art: k.art.as_str(),
            src_omkostningssted: k.omkostningssted.as_deref(),
            src_pspelement: k.psp_element.as_deref(),
            src_dimensions: serde_json::to_string(&k.dimensions).expect("strings serialize"),
            mapping_rule: &mapped.rule,
        }
    })
}

/// A finansbilag's row in the ERP's journal import table.
#[derive(Insertable)]
#[diesel(table_name = erp_journal, treat_none_as_default_value = false)]
struct NewJournal<'a> {
    id: i32,
    kvittering_id: &'a str,
    delivery_id: i32,
    afsender_system: &'a str,
    bilag_id: &'a str,
    bilagsdato: DbDate,
    bilagstekst: Option<&'a str>,
    mapping_version: &'a str,
    created_at: NaiveDateTime,
}

/// A postering's row in the ERP's journal line import table: the ERP account and dimensions it maps to, and
/// the kontering it came with.
#[derive(Insertable)]
#[diesel(table_name = erp_journal_lines, treat_none_as_default_value = false)]
struct NewJournalLine<'a> {
    journal_id: i32,
    line_no: i32,
    posting_id: i64,
    erp_account: &'a str,
    erp_dimensions: String,
    amount: DbAmount,
    debit_credit: &'static str,
    currency: &'a str,
    posting_date: DbDate,
    posting_text: &'a str,
    party_type: Option<&'static str>,
    party_id: Option<&'a str>,
    case_reference: Option<&'a str>,
    src_funktion: &'a str,
    src_gruppering: Option<&'a str>,
    src_dranst: &'a str,
    src_ejerforhold: Option<&'a str>,
    src_art: &'a str,
    src_omkostningssted: Option<&'a str>,
    src_pspelement: Option<&'a str>,
    src_dimensions: String,
    mapping_rule: &'a str,
}

/// Writes the import rows of one accepted claim under its key (`take_keys`): the claim, its parties and their
/// master data. Claims are written one at a time, in delivery order: a claim names its related claim's row, and
/// a party's master data is written once per version of it.
pub fn book_claim(
    conn: &mut AnyConnection,
    key: i32,
    kvittering_id: Uuid,
    delivery_key: i32,
    sender: &str,
    booking: &ClaimBooking,
    at: DateTime<Utc>,
) -> Result<(), StorageError> {
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
    let claim = NewClaim {
        id: key,
        kvittering_id: kvittering_id.to_string(),
        delivery_id: delivery_key,
        afsender_system: sender,
        fordring_id: &f.fordring_id,
        src_fordringstype: &f.claim_type.value,
        erp_claim_type: &booking.claim_type.claim_type,
        principal: DbAmount(f.principal.value()),
        currency: f.currency.value.as_str(),
        description: &f.description,
        period_from: f.period_from.as_ref().map(|d| d.value),
        period_to: f.period_to.as_ref().map(|d| d.value),
        established: f.established.value,
        due: f.due.value,
        last_timely_payment: f.last_timely_payment.value,
        limitation: f.limitation.as_ref().map(|d| d.value),
        related_fordring_id: f.related.as_ref().map(|r| r.value.as_str()),
        related_claim_id: related_claim,
        erp_account: booking.account.as_ref().map(|m| m.account.as_str()),
        erp_dimensions: serde_json::Value::Object(dimensions).to_string(),
        src_kontering: kontering,
        mapping_rules: rules.join("; "),
        mapping_version: &booking.mapping_version,
        created_at: at.naive_utc(),
    };
    diesel::insert_into(erp_claims::table).values(&claim).execute(conn)?;
    let claim = key;
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
    Ok(())
}

/// A claim's row in the ERP's claim import table.
#[derive(Insertable)]
#[diesel(table_name = erp_claims, treat_none_as_default_value = false)]
struct NewClaim<'a> {
    id: i32,
    kvittering_id: String,
    delivery_id: i32,
    afsender_system: &'a str,
    fordring_id: &'a str,
    src_fordringstype: &'a str,
    erp_claim_type: &'a str,
    principal: DbAmount,
    currency: &'a str,
    description: &'a str,
    period_from: Option<NaiveDate>,
    period_to: Option<NaiveDate>,
    established: NaiveDate,
    due: NaiveDate,
    last_timely_payment: NaiveDate,
    limitation: Option<NaiveDate>,
    related_fordring_id: Option<&'a str>,
    related_claim_id: Option<i32>,
    erp_account: Option<&'a str>,
    erp_dimensions: String,
    src_kontering: Option<String>,
    mapping_rules: String,
    mapping_version: &'a str,
    created_at: NaiveDateTime,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_are_the_json_object_of_them() {
        let cases: [&[(&str, &str)]; 4] = [
            &[],
            &[("Sag", "S-1")],
            &[("Zeta", "1"), ("Alfa", "æ\"ø\\\n\u{1}"), ("Sag", "først"), ("Sag", "sidst")],
            &[("", ""), ("b", "\u{7f}"), ("a", "</x>")],
        ];
        for case in cases {
            let dimensions: Vec<(String, String)> = case.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            let map: serde_json::Map<String, serde_json::Value> = dimensions.iter().map(|(n, v)| (n.clone(), v.clone().into())).collect();
            assert_eq!(dimensions_json(&dimensions), serde_json::Value::Object(map).to_string(), "{case:?}");
        }
    }
}
