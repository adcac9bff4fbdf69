//! The ERP's own import tables in the adapter's database (a target profile's table targets): their columns as
//! the database declares them, and rows written into them inside the booking transaction.
//!
//! Table and column names come from a profile that was checked to hold plain identifiers (`domain::target`)
//! and are written into SQL quoted, as the database spells them; every value is a bound parameter.

use std::collections::HashMap;
use std::sync::Arc;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Date, Integer, Nullable, Numeric, Text};

use super::schema::{target_columns, target_files, target_outbox};
use super::{AnyConnection, Db, StorageError};
use crate::domain::target::{Column, ColumnType, TableColumns, TargetTable, Value};

#[derive(QueryableByName)]
struct PgColumn {
    #[diesel(sql_type = Text)]
    table_schema: String,
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Nullable<Integer>)]
    max_length: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    precision: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    scale: Option<i32>,
    #[diesel(sql_type = Bool)]
    not_null: bool,
    #[diesel(sql_type = Bool)]
    has_default: bool,
}

#[derive(QueryableByName)]
struct SqliteColumn {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    declared: String,
    #[diesel(sql_type = Bool)]
    not_null: bool,
    #[diesel(sql_type = Bool)]
    has_default: bool,
}

/// The adapter's own tables (and the databases' catalogues): no profile writes to them.
pub const OWN_TABLES: &[&str] = &[
    "admin_sessions",
    "alert_outbox",
    "audit_log",
    "batch_files",
    "batch_receipts",
    "deliveries",
    "erp_claim_parties",
    "erp_claims",
    "erp_debtor_data",
    "erp_debtors",
    "erp_journal",
    "erp_journal_lines",
    "installation_identity",
    "login_attempts",
    "mapping_versions",
    "receipt_errors",
    "receipt_transfers",
    "receipts",
    "sortiment_fordringstyper",
    "sortiment_konteringer",
    "sortiment_senders",
    "sortiment_versions",
    "target_columns",
    "target_files",
    "target_outbox",
    "__diesel_schema_migrations",
    "sqlite_master",
    "sqlite_schema",
    "sqlite_sequence",
];

/// `"name"`, for SQL; names are plain identifiers (checked when the profile was read).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The number in a declared type's parentheses, as in VARCHAR(20).
fn declared_length(declared: &str) -> Option<u32> {
    let inside = declared.split_once('(')?.1.split([')', ',']).next()?;
    inside.trim().parse().ok()
}

/// A SQLite column's declared type, read the way SQLite reads it (its type affinity), with a length where one is
/// declared: SQLite does not enforce it, but the ERP that declared it expects it kept.
fn sqlite_type(declared: &str) -> ColumnType {
    let upper = declared.to_ascii_uppercase();
    if upper.contains("INT") {
        if upper.starts_with("SMALLINT") {
            ColumnType::Integer(i16::MIN.into(), i16::MAX.into())
        } else {
            ColumnType::Integer(i64::MIN, i64::MAX)
        }
    } else if upper.contains("CHAR") || upper.contains("CLOB") || upper.contains("TEXT") || upper.trim().is_empty() {
        ColumnType::Text(declared_length(&upper))
    } else if upper.starts_with("DATETIME") || upper.starts_with("TIMESTAMP") {
        ColumnType::Timestamp
    } else if upper.starts_with("DATE") {
        ColumnType::Date
    } else {
        // NUMERIC, DECIMAL, REAL, BLOB: SQLite keeps a decimal there as a floating-point number.
        ColumnType::Other(format!("{declared} (SQLite)"))
    }
}

fn pg_type(column: &PgColumn) -> ColumnType {
    let length = column.max_length.map(|n| n as u32);
    match column.data_type.as_str() {
        "character varying" | "character" | "text" => ColumnType::Text(length),
        "smallint" => ColumnType::Integer(i16::MIN.into(), i16::MAX.into()),
        "integer" => ColumnType::Integer(i32::MIN.into(), i32::MAX.into()),
        "bigint" => ColumnType::Integer(i64::MIN, i64::MAX),
        "numeric" => ColumnType::Numeric(column.precision.map(|n| n as u32), column.scale.map(|n| n as u32)),
        "date" => ColumnType::Date,
        "timestamp without time zone" | "timestamp with time zone" => ColumnType::Timestamp,
        other => ColumnType::Other(other.to_string()),
    }
}

/// The columns of each of `tables` (as a profile names them, `table` or `schema.table`) that exists.
pub fn table_columns(conn: &mut AnyConnection, tables: &[&str]) -> Result<HashMap<String, TableColumns>, StorageError> {
    let mut found = HashMap::new();
    for &table in tables {
        let (schema, name) = match table.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, table),
        };
        let columns = match conn {
            AnyConnection::Postgresql(pg) => {
                // An unquoted name is folded to lower case by PostgreSQL; the ERP's table may be either.
                let rows: Vec<PgColumn> = diesel::sql_query(
                    "SELECT table_schema::text AS table_schema, table_name::text AS table_name, column_name::text AS column_name, \
                     data_type::text AS data_type, character_maximum_length::int4 AS max_length, \
                     numeric_precision::int4 AS precision, numeric_scale::int4 AS scale, is_nullable = 'NO' AS not_null, \
                     (column_default IS NOT NULL OR is_identity = 'YES') AS has_default \
                     FROM information_schema.columns \
                     WHERE table_schema = COALESCE($1, current_schema()) AND table_name IN ($2, lower($2)) \
                     ORDER BY table_name = $2 DESC, ordinal_position",
                )
                .bind::<Nullable<Text>, _>(schema)
                .bind::<Text, _>(name)
                .load(pg)?;
                let Some(first) = rows.first() else { continue };
                let (schema, name) = (first.table_schema.clone(), first.table_name.clone());
                let columns = rows
                    .iter()
                    .filter(|c| c.table_name == name)
                    .map(|c| Column {
                        name: c.column_name.clone(),
                        ty: pg_type(c),
                        not_null: c.not_null,
                        has_default: c.has_default,
                        single_line: false,
                    })
                    .collect();
                TableColumns { name: format!("{}.{}", quoted(&schema), quoted(&name)), columns }
            }
            AnyConnection::Sqlite(sqlite) => {
                let rows: Result<Vec<SqliteColumn>, _> = diesel::sql_query(
                    "SELECT name, type AS declared, \"notnull\" != 0 AS not_null, \
                     (dflt_value IS NOT NULL OR (pk = 1 AND upper(type) = 'INTEGER')) AS has_default \
                     FROM pragma_table_info(?, ?) ORDER BY cid",
                )
                .bind::<Text, _>(name)
                .bind::<Text, _>(schema.unwrap_or("main"))
                .load(sqlite);
                let rows = match rows {
                    Ok(rows) => rows,
                    // A schema SQLite does not know (no attached database of that name): no such table.
                    Err(_) if schema.is_some() => continue,
                    Err(e) => return Err(e.into()),
                };
                if rows.is_empty() {
                    continue;
                }
                let columns = rows
                    .into_iter()
                    .map(|c| Column {
                        ty: sqlite_type(&c.declared),
                        name: c.name,
                        not_null: c.not_null,
                        has_default: c.has_default,
                        single_line: false,
                    })
                    .collect();
                let name = match schema {
                    Some(schema) => format!("{}.{}", quoted(schema), quoted(name)),
                    None => quoted(name),
                };
                TableColumns { name, columns }
            }
        };
        found.insert(table.to_string(), columns);
    }
    Ok(found)
}

impl Db {
    /// The columns of the target tables that exist (see `table_columns`).
    pub fn target_columns(&self, tables: &[&str]) -> Result<HashMap<String, TableColumns>, StorageError> {
        table_columns(&mut *self.conn()?, tables)
    }
}

/// One row for a target table, its keys filled in.
pub struct TargetInsert<'a> {
    pub table: &'a Arc<TargetTable>,
    pub values: Vec<Value>,
}

/// The INSERT of one row: a placeholder per value, NULL written out (its type is the column's, which a bound
/// NULL of some other type would not be on PostgreSQL).
fn insert_sql(table: &TargetTable, values: &[Value], postgres: bool) -> String {
    let columns: Vec<String> = table.columns.iter().map(|c| quoted(c)).collect();
    let mut n = 0;
    let placeholders: Vec<String> = values
        .iter()
        .map(|value| match value {
            Value::Null => "NULL".to_string(),
            _ if postgres => {
                n += 1;
                format!("${n}")
            }
            _ => "?".to_string(),
        })
        .collect();
    format!("INSERT INTO {} ({}) VALUES ({})", table.name, columns.join(", "), placeholders.join(", "))
}

/// Binds each value of a row by its type and runs the statement.
macro_rules! bind_and_run {
    ($conn:expr, $backend:ty, $sql:expr, $values:expr, |$q:ident, $d:ident| $decimal:expr) => {{
        let mut query = diesel::sql_query($sql).into_boxed::<$backend>();
        for value in $values {
            query = match value {
                Value::Null => query,
                Value::Text(text) => query.bind::<Text, _>(text.clone()),
                Value::Integer(n) => query.bind::<BigInt, _>(*n),
                Value::Decimal($d) => {
                    let $q = query;
                    $decimal
                }
                Value::Date(date) => query.bind::<Date, _>(*date),
                Value::Key(key) => {
                    return Err(StorageError::Corrupt(format!("a target row was written before its key ({key:?}) was known")))
                }
            };
        }
        query.execute($conn)?;
    }};
}

/// Writes target rows, in the caller's (the booking) transaction.
pub fn insert_target_rows(conn: &mut AnyConnection, rows: &[TargetInsert]) -> Result<(), StorageError> {
    for row in rows {
        match conn {
            AnyConnection::Postgresql(pg) => {
                let sql = insert_sql(row.table, &row.values, true);
                bind_and_run!(pg, diesel::pg::Pg, sql, &row.values, |q, d| q.bind::<Numeric, _>(*d))
            }
            AnyConnection::Sqlite(sqlite) => {
                let sql = insert_sql(row.table, &row.values, false);
                // Never reached for a decimal: a profile is refused that would write one into anything but text on
                // SQLite (`Column::accepts`), where it is rendered as text already.
                bind_and_run!(sqlite, diesel::sqlite::Sqlite, sql, &row.values, |q, d| q.bind::<Text, _>(d.to_string()))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_declared_types_are_read_with_their_lengths() {
        assert_eq!(sqlite_type("VARCHAR(20)"), ColumnType::Text(Some(20)));
        assert_eq!(sqlite_type("text"), ColumnType::Text(None));
        assert_eq!(sqlite_type("INTEGER"), ColumnType::Integer(i64::MIN, i64::MAX));
        assert_eq!(sqlite_type("SMALLINT"), ColumnType::Integer(-32768, 32767));
        assert_eq!(sqlite_type("DATE"), ColumnType::Date);
        assert_eq!(sqlite_type("DATETIME"), ColumnType::Timestamp);
        assert!(matches!(sqlite_type("NUMERIC(12,2)"), ColumnType::Other(_)));
    }
}

/// A row for a file target, kept in the outbox until its file is written.
pub struct OutboxRow<'a> {
    pub target: &'a str,
    pub delivery_key: i32,
    pub payload: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = target_outbox)]
struct NewOutboxRow<'a> {
    target: &'a str,
    delivery_id: i32,
    payload: &'a str,
    created_at: chrono::NaiveDateTime,
}

/// Writes file targets' rows into the outbox, in the caller's (the booking) transaction.
pub fn insert_outbox(conn: &mut AnyConnection, rows: &[OutboxRow]) -> Result<(), StorageError> {
    if rows.is_empty() {
        return Ok(());
    }
    let new: Vec<NewOutboxRow> = rows
        .iter()
        .map(|r| NewOutboxRow { target: r.target, delivery_id: r.delivery_key, payload: &r.payload, created_at: r.at.naive_utc() })
        .collect();
    super::booking::insert_rows!(conn, target_outbox::table, NewOutboxRow, &new)
}

/// Which waiting rows of a target a file takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRows {
    /// Every row of this delivery (its key).
    Delivery(i32),
    /// The rows numbered from the first to the last, both in.
    Range(i32, i32),
}

/// A row waiting for its file.
#[derive(Debug, Clone, Queryable)]
pub struct WaitingRow {
    pub id: i32,
    pub target: String,
    pub delivery_key: i32,
    pub payload: String,
}

/// A file recorded for writing, and how far it came.
#[derive(Debug, Clone, Queryable)]
pub struct TargetFileRow {
    pub id: i32,
    pub target: String,
    pub name: String,
    pub state: String,
    pub created_at: chrono::NaiveDateTime,
}

/// What waits in the outbox: how many rows, and since when.
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    /// Rows set aside because the ERP's database refused them, and the first one's error.
    pub parked: i64,
    pub parked_error: Option<String>,
    pub rows: i64,
    pub oldest: Option<chrono::NaiveDateTime>,
    pub files_unfinished: i64,
}

impl Db {
    /// Rows whose delivery is complete (a batch file's once all of it is decided) and that are in no file yet,
    /// oldest first; at most `limit`.
    pub fn waiting_target_rows(&self, limit: i64) -> Result<Vec<WaitingRow>, StorageError> {
        use super::schema::batch_files;
        let unfinished = batch_files::table
            .filter(batch_files::delivery_id.eq(target_outbox::delivery_id.nullable()))
            .filter(batch_files::finished_at.is_null());
        Ok(target_outbox::table
            .filter(target_outbox::target.like("file:%"))
            .filter(target_outbox::file_id.is_null())
            .filter(diesel::dsl::not(diesel::dsl::exists(unfinished)))
            .order(target_outbox::id)
            .limit(limit)
            .select((target_outbox::id, target_outbox::target, target_outbox::delivery_id, target_outbox::payload))
            .load(&mut *self.conn()?)?)
    }

    /// Records a file and marks its rows as its own, in one transaction: every row of the target for one
    /// delivery, or within a range of rows. `None` when another writer (an instance on the same database) took the
    /// rows, or the name, first: nothing is recorded then. One statement marks them however many there are (a
    /// batch file's million lines), so the file writer never holds their ids.
    pub fn reserve_target_file(&self, target: &str, name: &str, rows: FileRows) -> Result<Option<i32>, StorageError> {
        let outcome = self.write(|conn| {
            let id: i32 = diesel::insert_into(target_files::table)
                .values((
                    target_files::target.eq(target),
                    target_files::name.eq(name),
                    target_files::state.eq("writing"),
                    target_files::row_count.eq(0),
                    target_files::created_at.eq(chrono::Utc::now().naive_utc()),
                ))
                .returning(target_files::id)
                .get_result(conn)?;
            let waiting = target_outbox::table.filter(target_outbox::target.eq(target)).filter(target_outbox::file_id.is_null());
            let marked = match rows {
                FileRows::Delivery(delivery) => diesel::update(waiting.filter(target_outbox::delivery_id.eq(delivery)))
                    .set(target_outbox::file_id.eq(id))
                    .execute(conn)?,
                FileRows::Range(first, last) => diesel::update(waiting.filter(target_outbox::id.between(first, last)))
                    .set(target_outbox::file_id.eq(id))
                    .execute(conn)?,
            };
            if marked == 0 {
                // Rolled back: another writer has them.
                return Err(StorageError::Query(diesel::result::Error::RollbackTransaction));
            }
            diesel::update(target_files::table.find(id)).set(target_files::row_count.eq(marked as i32)).execute(conn)?;
            Ok(id)
        });
        match outcome {
            Ok(id) => Ok(Some(id)),
            Err(StorageError::Query(diesel::result::Error::RollbackTransaction)) => Ok(None),
            Err(e) if e.lost_race() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Files recorded but not yet written (after a crash, or by a writer that stopped).
    pub fn unfinished_target_files(&self) -> Result<Vec<TargetFileRow>, StorageError> {
        Ok(target_files::table
            .filter(target_files::state.ne("written"))
            .order(target_files::id)
            .select((target_files::id, target_files::target, target_files::name, target_files::state, target_files::created_at))
            .load(&mut *self.conn()?)?)
    }

    /// The rows of a file in order, a page at a time: the ones after row `after`, at most `limit`.
    pub fn target_file_rows(&self, file: i32, after: i32, limit: i64) -> Result<Vec<(i32, String)>, StorageError> {
        Ok(target_outbox::table
            .filter(target_outbox::file_id.eq(file))
            .filter(target_outbox::id.gt(after))
            .order(target_outbox::id)
            .limit(limit)
            .select((target_outbox::id, target_outbox::payload))
            .load(&mut *self.conn()?)?)
    }

    pub fn set_target_file_state(&self, file: i32, state: &str) -> Result<(), StorageError> {
        let written_at = (state == "written").then(|| chrono::Utc::now().naive_utc());
        self.write(|conn| {
            diesel::update(target_files::table.find(file))
                .set((target_files::state.eq(state), target_files::written_at.eq(written_at)))
                .execute(conn)?;
            Ok(())
        })
    }

    /// What waits in the outbox.
    pub fn target_backlog(&self) -> Result<Backlog, StorageError> {
        let conn = &mut *self.conn()?;
        // In no file yet, or in a file not yet written (its folder away): either way not with the ERP.
        let unwritten = target_files::table.filter(target_files::state.ne("written")).select(target_files::id);
        let (rows, oldest): (i64, Option<chrono::NaiveDateTime>) = target_outbox::table
            .filter(target_outbox::file_id.is_null().or(target_outbox::file_id.eq_any(unwritten.nullable())))
            .filter(target_outbox::forwarded_at.is_null())
            .select((diesel::dsl::count_star(), diesel::dsl::min(target_outbox::created_at)))
            .first(conn)?;
        let files_unfinished = target_files::table.filter(target_files::state.ne("written")).count().get_result(conn)?;
        let parked_rows =
            target_outbox::table.filter(target_outbox::forwarded_at.is_null()).filter(target_outbox::last_error.is_not_null());
        let parked = parked_rows.count().get_result(conn)?;
        let parked_error = parked_rows
            .order(target_outbox::id)
            .select((target_outbox::id, target_outbox::last_error))
            .first::<(i32, Option<String>)>(conn)
            .optional()?;
        let parked_error = parked_error.map(|(id, error)| format!("række {id}: {}", error.unwrap_or_default()));
        Ok(Backlog { rows, oldest, files_unfinished, parked, parked_error })
    }
}

/// A connection to a database the ERP owns (PostgreSQL), with a bounded wait for a server that is away.
pub fn connect_remote(url: &str) -> Result<AnyConnection, StorageError> {
    let url = if url.contains("connect_timeout") {
        url.to_string()
    } else {
        format!("{url}{}connect_timeout=5", if url.contains('?') { '&' } else { '?' })
    };
    diesel::pg::PgConnection::establish(&url).map(AnyConnection::Postgresql).map_err(|e| StorageError::Connect(e.to_string()))
}

/// The columns of `table` in a database the ERP owns; `None` when it has no such table.
pub fn remote_columns(url: &str, table: &str) -> Result<Option<TableColumns>, StorageError> {
    let mut conn = connect_remote(url)?;
    Ok(table_columns(&mut conn, &[table])?.remove(table))
}

impl Db {
    /// Keeps the columns of a database target's table as just read, for when that database is away.
    pub fn keep_target_columns(&self, target: &str, columns: &TableColumns) -> Result<(), StorageError> {
        let json = serde_json::to_string(columns).expect("columns serialize");
        let now = chrono::Utc::now().naive_utc();
        self.write(|conn| {
            diesel::delete(target_columns::table.find(target)).execute(conn)?;
            diesel::insert_into(target_columns::table)
                .values((target_columns::target.eq(target), target_columns::column_types.eq(&json), target_columns::read_at.eq(now)))
                .execute(conn)?;
            Ok(())
        })
    }

    /// The columns as last read.
    pub fn kept_target_columns(&self, target: &str) -> Result<Option<TableColumns>, StorageError> {
        let json: Option<String> =
            target_columns::table.find(target).select(target_columns::column_types).first(&mut *self.conn()?).optional()?;
        json.map(|j| serde_json::from_str::<TableColumns>(&j).map_err(|e| StorageError::Corrupt(format!("kept columns of {target}: {e}"))))
            .transpose()
    }

    /// This installation's identity (its database's), made at the first call: a forwarder's name for it in the
    /// ERP's database.
    pub fn installation_identity(&self) -> Result<String, StorageError> {
        use super::schema::installation_identity;
        let fresh = uuid::Uuid::new_v4().to_string();
        self.write(|conn| {
            let found: Option<String> = installation_identity::table.select(installation_identity::id).first(conn).optional()?;
            if let Some(id) = found {
                return Ok(id);
            }
            diesel::insert_into(installation_identity::table).values(installation_identity::id.eq(&fresh)).execute(conn)?;
            Ok(fresh.clone())
        })
    }

    /// Rows for one database's targets (`database:<name>/…`) not yet copied, oldest first.
    pub fn rows_to_forward(&self, database: &str, limit: i64) -> Result<Vec<WaitingRow>, StorageError> {
        Ok(target_outbox::table
            .filter(target_outbox::target.like(format!("database:{database}/%")))
            .filter(target_outbox::file_id.is_null())
            .filter(target_outbox::forwarded_at.is_null())
            .filter(target_outbox::retry_at.is_null().or(target_outbox::retry_at.le(chrono::Utc::now().naive_utc())))
            .order(target_outbox::id)
            .limit(limit)
            .select((target_outbox::id, target_outbox::target, target_outbox::delivery_id, target_outbox::payload))
            .load(&mut *self.conn()?)?)
    }

    /// Sets a row aside that the ERP's database refused on its own (a value its table no longer takes): tried
    /// again at `retry`, while the rows after it go on.
    pub fn park_forward_row(&self, id: i32, error: &str, retry: chrono::NaiveDateTime) -> Result<(), StorageError> {
        self.write(|conn| {
            diesel::update(target_outbox::table.find(id))
                .set((target_outbox::last_error.eq(error), target_outbox::retry_at.eq(retry)))
                .execute(conn)?;
            Ok(())
        })
    }

    /// Rows set aside, to be tried at once (`fkoeko targets retry`, after the ERP's table is fixed). Returns how
    /// many.
    pub fn retry_parked_rows(&self) -> Result<usize, StorageError> {
        self.write(|conn| {
            Ok(diesel::update(
                target_outbox::table.filter(target_outbox::forwarded_at.is_null()).filter(target_outbox::retry_at.is_not_null()),
            )
            .set(target_outbox::retry_at.eq(chrono::Utc::now().naive_utc()))
            .execute(conn)?)
        })
    }

    /// Marks rows as copied (the ERP's database holds them, and its record of them, already).
    pub fn mark_forwarded(&self, ids: &[i32]) -> Result<(), StorageError> {
        let now = chrono::Utc::now().naive_utc();
        self.write(|conn| {
            for ids in ids.chunks(500) {
                diesel::update(target_outbox::table.filter(target_outbox::id.eq_any(ids)))
                    .set((
                        target_outbox::forwarded_at.eq(now),
                        target_outbox::last_error.eq(None::<String>),
                        target_outbox::retry_at.eq(None::<chrono::NaiveDateTime>),
                    ))
                    .execute(conn)?;
            }
            Ok(())
        })
    }
}

/// In the ERP's database: which outbox rows it holds, written in the same transaction as the rows themselves, so
/// that a row is copied once whatever stops when. The table is the forwarder's own; the ERP's tables need no
/// column of ours.
const FORWARDED_TABLE: &str = "CREATE TABLE IF NOT EXISTS fkoeko_forwarded (\
     outbox_id BIGINT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL, seq BIGSERIAL, \
     forwarded_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (source, outbox_id))";

/// Copies rows into the ERP's database in one transaction there, with the record of each; rows it holds already
/// (copied before a crash) are skipped. `source` tells adapter installations sharing one ERP database apart.
/// Returns the ids it holds now.
pub fn forward_rows(
    remote: &mut AnyConnection,
    source: &str,
    rows: &[(i32, String, crate::domain::target::DatabaseRow)],
) -> Result<Vec<i32>, StorageError> {
    use diesel::connection::SimpleConnection;
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = BigInt)]
        outbox_id: i64,
    }
    remote.batch_execute(FORWARDED_TABLE)?;
    remote.transaction(|conn| {
        let first = rows.iter().map(|(id, _, _)| i64::from(*id)).min().unwrap_or_default();
        let last = rows.iter().map(|(id, _, _)| i64::from(*id)).max().unwrap_or_default();
        let held: std::collections::HashSet<i64> =
            diesel::sql_query("SELECT outbox_id FROM fkoeko_forwarded WHERE source = $1 AND outbox_id BETWEEN $2 AND $3")
                .bind::<Text, _>(source)
                .bind::<BigInt, _>(first)
                .bind::<BigInt, _>(last)
                .load::<Held>(conn)?
                .into_iter()
                .map(|h| h.outbox_id)
                .collect();
        for (id, target, row) in rows.iter().filter(|(id, _, _)| !held.contains(&i64::from(*id))) {
            let values = row.values().map_err(StorageError::Corrupt)?;
            let table = TargetTable { name: row.table.clone(), shown: target.clone(), columns: row.columns.clone() };
            let table = Arc::new(table);
            insert_target_rows(conn, &[TargetInsert { table: &table, values }])?;
            diesel::sql_query("INSERT INTO fkoeko_forwarded (outbox_id, source, target) VALUES ($1, $2, $3)")
                .bind::<BigInt, _>(i64::from(*id))
                .bind::<Text, _>(source)
                .bind::<Text, _>(target)
                .execute(conn)?;
        }
        Ok(rows.iter().map(|(id, _, _)| *id).collect())
    })
}
