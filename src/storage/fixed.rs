//! Query parts whose SQL has one shape whatever the number of values, so that a statement using them is
//! prepared once per connection and taken from diesel's statement cache afterwards (and, on PostgreSQL, kept as
//! a prepared statement the server parses and plans once).
//!
//! Why: diesel marks a statement with a list of binds (`eq_any` on SQLite: `IN (?, ?, …)`) or with raw SQL
//! (`sql`, `sql_query`) as not to be cached, so the writer's reads were compiled again for every group of
//! deliveries: on SQLite about a tenth of the writer thread's time went to SQLite's parser.

use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Bool, Integer, Text};
use diesel::{QueryResult, RunQueryDsl};

use super::booking::Keyed;
use super::MultiBackend;

/// `column IN (values)`, the values bound as one JSON array of strings: SQLite reads it with `json_each`,
/// PostgreSQL makes an array of it once and compares with `= ANY` (which its planner serves from the column's
/// index).
#[derive(Debug, Clone, QueryId)]
pub struct InJsonList<C> {
    column: C,
    values: String,
}

/// `column` is one of `values`, in one fixed statement shape.
pub fn in_list<C, S: AsRef<str>>(column: C, values: &[S]) -> InJsonList<C> {
    InJsonList { column, values: json_array(values.iter().map(AsRef::as_ref)) }
}

/// The one bound value of a list: a JSON array of strings.
fn json_array<'a>(values: impl Iterator<Item = &'a str>) -> String {
    serde_json::to_string(&values.collect::<Vec<&str>>()).expect("strings serialize")
}

/// SQLite's side of a list: `IN (SELECT value FROM json_each(?))`.
fn push_sqlite_list<'b>(out: &mut AstPass<'_, 'b, MultiBackend>, values: &'b String) -> QueryResult<()> {
    out.push_sql(" IN (SELECT value FROM json_each(");
    out.push_bind_param::<Text, String>(values)?;
    out.push_sql("))");
    Ok(())
}

impl<C: Expression> Expression for InJsonList<C> {
    type SqlType = Bool;
}

impl<C: ValidGrouping<()>> ValidGrouping<()> for InJsonList<C> {
    type IsAggregate = C::IsAggregate;
}

impl<C: AppearsOnTable<QS>, QS> AppearsOnTable<QS> for InJsonList<C> where Self: Expression {}

impl<C: SelectableExpression<QS>, QS> SelectableExpression<QS> for InJsonList<C> where Self: AppearsOnTable<QS> {}

impl<C: QueryFragment<MultiBackend>> QueryFragment<MultiBackend> for InJsonList<C> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        self.column.walk_ast(out.reborrow())?;
        if !matches!(out.backend(), MultiBackend::Postgresql(_)) {
            return push_sqlite_list(&mut out, &self.values);
        }
        out.push_sql(" = ANY(ARRAY(SELECT json_array_elements_text(CAST(");
        out.push_bind_param::<Text, String>(&self.values)?;
        out.push_sql(" AS json))))");
        Ok(())
    }
}

/// The deliveries written before under any of these LeveranceIds, as
/// (LeveranceId, key, request hash, response). On PostgreSQL an index probe for each LeveranceId, whatever the
/// planner knows of the table: as `leverance_id = ANY(…)` its plan, made once for the prepared statement while the
/// table was new and small, read every row of it for as long as the connection lived (seen as a fresh database's
/// first minutes, until autovacuum's first ANALYZE, spent reading the whole table for every group).
#[derive(Debug, Clone, QueryId)]
pub struct EarlierDeliveries {
    ids: String,
}

impl EarlierDeliveries {
    pub fn of(ids: &[uuid::Uuid]) -> Self {
        let ids: Vec<String> = ids.iter().map(uuid::Uuid::to_string).collect();
        EarlierDeliveries { ids: json_array(ids.iter().map(String::as_str)) }
    }
}

impl Query for EarlierDeliveries {
    type SqlType = (diesel::sql_types::Nullable<Text>, Integer, Text, Text);
}

impl<Conn> RunQueryDsl<Conn> for EarlierDeliveries {}

impl QueryFragment<MultiBackend> for EarlierDeliveries {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        const COLUMNS: &str = "leverance_id, id, request_hash, response_json";
        if matches!(out.backend(), MultiBackend::Postgresql(_)) {
            // OFFSET 0 keeps the subquery a subquery: a probe of the unique index for each LeveranceId.
            out.push_sql(&format!("SELECT d.{} FROM json_array_elements_text(CAST(", COLUMNS.replace(", ", ", d.")));
            out.push_bind_param::<Text, String>(&self.ids)?;
            out.push_sql(&format!(
                " AS json)) AS wanted(id) CROSS JOIN LATERAL (SELECT {COLUMNS} FROM deliveries WHERE leverance_id = wanted.id OFFSET 0) AS d"
            ));
        } else {
            out.push_sql(&format!("SELECT {COLUMNS} FROM deliveries WHERE leverance_id"));
            push_sqlite_list(&mut out, &self.ids)?;
        }
        Ok(())
    }
}

/// `receipts.status = 'Accepteret'`, written out rather than bound: a planner uses the partial index
/// `receipts_accepted_by_reference` only when it can see that the query asks for what the index holds, and a
/// bound value it cannot see (PostgreSQL's generic plan for a prepared statement, SQLite always) leaves a scan of
/// every receipt.
#[derive(Debug, Clone, Copy, QueryId)]
pub struct ReceiptAccepted;

impl Expression for ReceiptAccepted {
    type SqlType = Bool;
}

impl ValidGrouping<()> for ReceiptAccepted {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

impl AppearsOnTable<super::schema::receipts::table> for ReceiptAccepted {}

impl SelectableExpression<super::schema::receipts::table> for ReceiptAccepted {}

impl QueryFragment<MultiBackend> for ReceiptAccepted {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        out.push_sql("receipts.status = 'Accepteret'");
        Ok(())
    }
}

/// Keys for new rows of the three tables whose keys are taken before their rows are written (`Keyed`), in one
/// statement: rows of (table, key), the table as its place in `Keyed::ALL`. PostgreSQL takes them from the
/// tables' sequences; SQLite returns each table's highest key given so far, once, and the caller counts on from it
/// (inside the write transaction no one else writes).
#[derive(Debug, Clone, Copy, QueryId)]
pub struct TakeKeys {
    pub counts: [i32; 3],
}

impl Query for TakeKeys {
    type SqlType = (Integer, Integer);
}

impl<Conn> RunQueryDsl<Conn> for TakeKeys {}

impl QueryFragment<MultiBackend> for TakeKeys {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        let postgres = matches!(out.backend(), MultiBackend::Postgresql(_));
        for (n, table) in Keyed::ALL.iter().map(|t| t.name()).enumerate() {
            if n > 0 {
                out.push_sql(" UNION ALL ");
            }
            if postgres {
                // The sequence of each SERIAL key by its name, found once as the statement is read: looked up
                // with pg_get_serial_sequence it was a catalog search for every key. The rows come from an array
                // of the count's length, not generate_series: PostgreSQL guesses ten elements for an array it cannot
                // see and a thousand rows for a series, so with a series it planned the statement again at every
                // call (the kept plan looked dearer than a fresh one), and the planning cost more than the keys.
                out.push_sql(&format!("SELECT {n}, CAST(nextval('{table}_id_seq') AS INTEGER) FROM unnest(array_fill(0, ARRAY["));
                out.push_bind_param::<Integer, i32>(&self.counts[n])?;
                out.push_sql("]))");
            } else {
                // The highest key given so far; a table never written to has no row in sqlite_sequence (and no rows).
                out.push_sql(&format!(
                    "SELECT {n}, CAST(MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), \
                     COALESCE((SELECT MAX(id) FROM {table}), 0)) AS INTEGER)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use diesel::connection::{Connection, InstrumentationEvent};
    use diesel::prelude::*;

    use super::in_list;
    use crate::storage::booking::take_keys;
    use crate::storage::schema::admin_users_seen::dsl::*;
    use crate::storage::{AnyConnection, Db};

    /// The SQL of every statement the connection prepares (and caches) from now on.
    fn prepared(conn: &mut AnyConnection) -> Arc<Mutex<Vec<String>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                log.lock().unwrap().push(sql.to_string());
            }
        });
        seen
    }

    #[test]
    fn a_list_of_any_length_is_one_statement_prepared_once_and_matches_exactly_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db").display().to_string(), 1, Duration::from_secs(5)).unwrap();
        let mut conn = db.conn().unwrap();
        let odd = ["qu\"ote", "back\\slash", "æøå 'x'", "a,b", "[]"];
        let names: Vec<String> = (0..1_200).map(|n| format!("user {n}")).chain(odd.map(String::from)).collect();
        for n in &names {
            diesel::insert_into(admin_users_seen)
                .values((name.eq(n), role.eq("read"), password_digest.eq("d")))
                .execute(&mut *conn)
                .unwrap();
        }
        let seen = prepared(&mut conn);
        let mut find = |wanted: &[&str]| -> Vec<String> {
            admin_users_seen.filter(in_list(name, wanted)).select(name).order(name).load(&mut *conn).unwrap()
        };
        assert_eq!(find(&[]), Vec::<String>::new());
        let mut expected: Vec<String> = odd.map(String::from).to_vec();
        expected.sort();
        assert_eq!(
            find(&[odd.as_slice(), &["nobody", "user"]].concat()),
            expected,
            "quotes, backslashes, commas and brackets are values, not syntax"
        );
        // More than SQLite allows as separate parameters in one statement (the old lists went in slices of 500).
        let many: Vec<&str> = names[..1_100].iter().map(String::as_str).collect();
        assert_eq!(find(&many).len(), 1_100);
        assert_eq!(find(&["user 7"]), ["user 7"]);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "one statement, prepared once, for lists of 0, 7, 1,100 and 1 values: {seen:?}");
        assert!(seen[0].contains("json_each"), "{seen:?}");
    }

    #[test]
    fn keys_of_the_three_tables_come_from_one_statement_prepared_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db").display().to_string(), 1, Duration::from_secs(5)).unwrap();
        let mut conn = db.conn().unwrap();
        let seen = prepared(&mut conn);
        assert_eq!(take_keys(&mut conn, [2, 1, 0]).unwrap(), [vec![1, 2], vec![1], vec![]]);
        assert_eq!(take_keys(&mut conn, [0, 0, 3]).unwrap(), [vec![], vec![], vec![1, 2, 3]]);
        assert_eq!(take_keys(&mut conn, [0, 0, 0]).unwrap(), [Vec::<i32>::new(), vec![], vec![]], "nothing asked, nothing read");
        assert_eq!(seen.lock().unwrap().len(), 1, "{:?}", seen.lock().unwrap());
    }

    /// The writer's inserts are one-row statements on SQLite, prepared once and run again for every row, with
    /// some values missing (NULL) or not: what a row leaves out must not change the statement.
    #[test]
    fn rows_are_inserted_by_a_statement_prepared_once() {
        use crate::domain::delivery::{DeliveryRecord, Transport};
        use crate::domain::sortiment::Integration;
        use crate::storage::booking::{insert_booked, DeliveryRow};

        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db").display().to_string(), 1, Duration::from_secs(5)).unwrap();
        let mut conn = db.conn().unwrap();
        let seen = prepared(&mut conn);
        let bare = DeliveryRecord::new(Integration::Sf1590A, Transport::Straks, "h".into());
        let mut named = DeliveryRecord::new(Integration::Sf1590A, Transport::Straks, "h".into());
        named.delivery_id = Some(uuid::Uuid::new_v4());
        named.authority = Some("29189846".into());
        let row = |key, record| DeliveryRow { key, record, at: chrono::Utc::now(), accepted: 0, rejected: 0, response: "{}".into() };
        insert_booked(&mut conn, &[row(1, &bare), row(2, &named)], &[], &[]).unwrap();
        insert_booked(&mut conn, &[row(3, &bare)], &[], &[]).unwrap();
        let rows: i64 = crate::storage::schema::deliveries::table.count().get_result(&mut *conn).unwrap();
        assert_eq!(rows, 3);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.iter().filter(|sql| sql.contains("INSERT")).count(), 1, "{seen:?}");
    }

    /// The writer's two reads, as they are prepared, each searched through its index, not by reading every row:
    /// a list bound as one value must not cost the planner its index.
    #[test]
    fn the_writers_reads_use_their_indexes() {
        use crate::domain::sortiment::Integration;
        use crate::storage::booking::{accepted_items, earlier_deliveries};

        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db").display().to_string(), 1, Duration::from_secs(5)).unwrap();
        let mut conn = db.conn().unwrap();
        let seen = prepared(&mut conn);
        earlier_deliveries(&mut conn, &[uuid::Uuid::new_v4()]).unwrap();
        accepted_items(&mut conn, Integration::Sf1590A, uuid::Uuid::new_v4(), &["B-1"]).unwrap();
        let statements = seen.lock().unwrap().clone();
        assert_eq!(statements.len(), 2, "{statements:?}");
        #[derive(diesel::QueryableByName)]
        struct Step {
            #[diesel(sql_type = diesel::sql_types::Text)]
            detail: String,
        }
        let mut plan = |sql: &str| -> String {
            let steps: Vec<Step> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}")).load(&mut *conn).unwrap();
            steps.into_iter().map(|s| s.detail).collect::<Vec<_>>().join("; ")
        };
        let deliveries = plan(&statements[0]);
        assert!(deliveries.contains("SEARCH deliveries USING") && deliveries.contains("(leverance_id=?)"), "{deliveries}");
        let receipts = plan(&statements[1]);
        assert!(receipts.contains("SEARCH receipts USING INDEX receipts_accepted_by_reference"), "{receipts}");
        assert!(!deliveries.contains("SCAN deliveries") && !receipts.contains("SCAN receipts"), "{deliveries}\n{receipts}");
    }
}
