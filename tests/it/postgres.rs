//! PostgreSQL in production: several adapter processes on one database, PostgreSQL going away and coming back,
//! and the two backends' migrations kept in step. Run by .ci/run's PostgreSQL pass (`--include-ignored` with
//! TEST_POSTGRES_URL set); the PostgreSQL-restart test starts a cluster of its own.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::cluster::Cluster;
use crate::common::delivery::{Bilag, Delivery};
use crate::common::serve::ServeProcess;
use crate::common::*;
use diesel::prelude::*;
use diesel::sql_types::Text;

fn postgres_server() -> String {
    std::env::var("TEST_POSTGRES_URL").expect("TEST_POSTGRES_URL names a PostgreSQL server (.ci/run starts one)")
}

#[test]
#[ignore = "needs PostgreSQL: .ci/run's PostgreSQL pass"]
fn two_processes_on_one_database_book_each_finansbilag_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    assert!(db.starts_with("postgres://"), "TEST_POSTGRES_URL must be set");
    let (one, two) = (ServeProcess::start(&db, &[]), ServeProcess::start(&db, &[]));
    // Thirty finansbilag, each sent to both processes at once, twice over: in the same delivery and in a delivery
    // of its own per process.
    let deliveries: Vec<Delivery> = (0..30).map(|n| Delivery::one(&format!("TWO-PROC-{n}"))).collect();
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for d in &deliveries {
            for server in [&one, &two] {
                let same = d.soap11();
                let own = Delivery::new(d.bilag.clone()).soap11();
                handles.push(s.spawn(move || server.post(same.as_bytes())));
                handles.push(s.spawn(move || server.post(own.as_bytes())));
            }
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(parse_receipts(body).receipts[0].status, fkoeko_adapter::domain::receipt::Status::Accepteret, "{body}");
    }
    assert_eq!(count_in(&db, "SELECT count(*) AS n FROM erp_journal"), 30);
    assert_eq!(count_in(&db, "SELECT count(DISTINCT bilag_id) AS n FROM erp_journal"), 30);
    assert_eq!(count_in(&db, "SELECT count(*) AS n FROM erp_journal_lines"), 60);
    assert_eq!(count_in(&db, "SELECT count(*) AS n FROM receipts"), 30);
    // Each delivery sent to both processes is recorded once; the others once each.
    assert_eq!(count_in(&db, "SELECT count(*) AS n FROM deliveries"), 30 + 60);
}

#[test]
#[ignore = "needs PostgreSQL: .ci/run's PostgreSQL pass"]
fn postgres_going_away_and_coming_back() {
    let cluster = Cluster::start();
    let server = ServeProcess::start(&cluster.url(), &[("FKOEKO_DATABASE__BUSY_TIMEOUT_MS", "2000")]);
    let load = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let mut results = Vec::new();
            let started = Instant::now();
            let mut n = 0;
            // Calls for a while: before, during and after PostgreSQL is away.
            while started.elapsed() < Duration::from_secs(12) {
                let delivery = Delivery::new(vec![Bilag::balanced(&format!("PG-DOWN-{n}"), "12.00")]);
                let (status, body) = server.post(delivery.soap11().as_bytes());
                results.push((delivery, status, body));
                n += 1;
            }
            results
        });
        std::thread::sleep(Duration::from_secs(3));
        cluster.pg_ctl("stop");
        std::thread::sleep(Duration::from_secs(3));
        cluster.pg_ctl("start");
        load.join().unwrap()
    });
    let (mut accepted, mut faults) = (Vec::new(), Vec::new());
    for (delivery, status, body) in &load {
        match status {
            200 => {
                let receipt = &parse_receipts(body).receipts[0];
                assert_eq!(receipt.status, fkoeko_adapter::domain::receipt::Status::Accepteret, "{body}");
                accepted.push(delivery);
            }
            500 => {
                assert!(body.contains("<soap:Fault>"), "{body}");
                faults.push(delivery);
            }
            other => panic!("a call got neither a receipt nor a SOAP Fault: {other} {body}"),
        }
    }
    assert!(!faults.is_empty(), "PostgreSQL was away during the load, so some calls were answered with a fault");
    assert!(accepted.len() > faults.len(), "calls succeeded before and after");
    let url = cluster.url();
    let journal = |bilag: &str| count_in(&url, &format!("SELECT count(*) AS n FROM erp_journal WHERE bilag_id = '{bilag}'"));
    for delivery in &accepted {
        assert_eq!(journal(&delivery.bilag[0].id), 1, "an accepted finansbilag is in the import tables once");
    }
    // A call answered with a fault is sent again, as a sender would: now it is accepted, and booked once.
    for delivery in &faults {
        let (status, body) = server.post(delivery.soap11().as_bytes());
        assert_eq!(status, 200, "{body}");
        assert_eq!(journal(&delivery.bilag[0].id), 1);
    }
    assert_eq!(count_in(&url, "SELECT count(*) AS n FROM erp_journal"), load.len() as i64);
    // No half-written deliveries: every delivery row has its receipts.
    assert_eq!(
        count_in(&url, "SELECT count(*) AS n FROM deliveries d WHERE NOT EXISTS (SELECT 1 FROM receipts r WHERE r.delivery_id = d.id)"),
        0
    );
}

fn columns(url: &str, sql: &str) -> BTreeSet<String> {
    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = Text)]
        name: String,
    }
    diesel::sql_query(sql).load::<Column>(&mut connect(url)).unwrap().into_iter().map(|c| c.name).collect()
}

#[test]
#[ignore = "needs PostgreSQL: .ci/run's PostgreSQL pass"]
fn both_backends_have_the_same_tables_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("parity.db").display().to_string();
    let postgres = format!("{}/parity_{}", postgres_server(), uuid::Uuid::new_v4().simple());
    {
        use diesel::connection::SimpleConnection;
        let name = postgres.rsplit('/').next().unwrap();
        diesel::pg::PgConnection::establish(&format!("{}/postgres", postgres_server()))
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
    }
    for url in [&sqlite, &postgres] {
        fkoeko_adapter::storage::Db::open(url, 1, Duration::from_secs(1)).unwrap();
    }
    let on_sqlite = columns(
        &sqlite,
        "SELECT m.name || '.' || p.name AS name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '__diesel%'",
    );
    let on_postgres = columns(
        &postgres,
        "SELECT table_name || '.' || column_name AS name FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT LIKE '__diesel%'",
    );
    assert!(on_sqlite.len() > 100);
    assert_eq!(on_sqlite, on_postgres);
}

#[test]
fn both_backends_have_the_same_migrations() {
    let names = |backend: &str| -> BTreeSet<String> {
        std::fs::read_dir(repo(&format!("migrations/{backend}")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names("sqlite"), names("postgres"));
}

#[test]
#[ignore = "needs PostgreSQL: .ci/run's PostgreSQL pass"]
fn a_target_table_in_another_schema_takes_exact_numerics_and_dates() {
    use fkoeko_adapter::domain::receipt::Status;
    use fkoeko_adapter::domain::target::PROFILE_FILE;
    assert!(postgres_server().starts_with("postgres://"));
    // The ERP's own schema, its names written in upper case (folded by PostgreSQL, as the ERP's DDL would be).
    let profile = "[[target]]\nrecord = \"postering\"\ntable = \"erp.GL_LINE\"\n[target.columns]\n\
                   LINE_REF = \"journal_id\"\nAMOUNT = \"amount\"\nSIGNED = \"signed(amount)\"\nPOSTED = \"posting_date\"\n";
    let app = TestApp::start_with(|config| {
        use diesel::connection::SimpleConnection;
        connect(&config.database.url)
            .batch_execute(
                "CREATE SCHEMA erp; CREATE TABLE erp.GL_LINE (LINE_REF INTEGER NOT NULL, AMOUNT NUMERIC(15,2) NOT NULL, \
                 SIGNED NUMERIC(15,2) NOT NULL, POSTED DATE NOT NULL, IMPORTED BOOLEAN NOT NULL DEFAULT FALSE)",
            )
            .unwrap();
        let dir = copy_of_mappings();
        std::fs::write(dir.join(PROFILE_FILE), profile).unwrap();
        config.paths.mappings = dir;
    });
    let mut bilag = Bilag::balanced("PG-SCHEMA-1", "1250.5");
    bilag.postings[0].date = "2026-11-02".into();
    let set = app.send(&Delivery::new(vec![bilag]).soap11());
    assert_eq!(set.receipts[0].status, Status::Accepteret, "{set:?}");
    let rows = app.rows("SELECT json_array(amount::text, signed::text, posted, imported) AS row FROM erp.gl_line ORDER BY signed DESC", 4);
    assert_eq!(
        rows,
        vec![
            vec![Some("1250.50".into()), Some("1250.50".into()), Some("2026-11-02".into()), Some("false".into())],
            vec![Some("1250.50".into()), Some("-1250.50".into()), Some(crate::common::delivery::today()), Some("false".into())],
        ]
    );
    // A numeric column with fewer decimals than an amount has: the amount is never rounded into it; the item is
    // rejected with MAPNING_MANGLER naming the column.
    let pipeline = &app.server.as_ref().unwrap().app.pipeline;
    app.execute("CREATE TABLE erp.gl_whole (amount NUMERIC(15,0))");
    let mut files = fkoeko_adapter::domain::mapping::read_dir(&app.config.paths.mappings).unwrap();
    files.insert(
        PROFILE_FILE.into(),
        "[[target]]\nrecord = \"postering\"\ntable = \"erp.gl_whole\"\ncolumns = { amount = \"amount\" }\n".into(),
    );
    let changed = pipeline.change_mappings(&files, ADMIN_USER, fkoeko_adapter::storage::mappings::MappingSource::Page, "", None, false);
    assert!(matches!(changed, Ok(fkoeko_adapter::pipeline::MappingChange::Saved(_))), "{changed:?}");
    let set = app.send(&Delivery::one("PG-SCHEMA-2").soap11());
    assert_eq!(set.receipts[0].status, Status::Afvist);
    assert_eq!(set.receipts[0].errors[0].code.as_str(), "MAPNING_MANGLER");
    assert!(set.receipts[0].errors[0].text.contains("erp.gl_whole.amount"), "{:?}", set.receipts[0].errors);
}

/// The writer's two reads, as they are prepared, probe their indexes even under the plan PostgreSQL keeps for a
/// prepared statement (the generic one) on a new, empty, never analysed database: the state every installation
/// starts in and the one such a plan is made in. A plan that reads every row then stays for the connection's life.
#[test]
#[ignore = "needs PostgreSQL: .ci/run's PostgreSQL pass"]
fn the_writers_reads_probe_their_indexes_on_a_new_database() {
    use diesel::connection::{Connection, InstrumentationEvent, SimpleConnection};
    use std::sync::{Arc, Mutex};

    #[derive(QueryableByName)]
    struct Step {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        step: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let url = new_database_url(dir.path());
    assert!(url.starts_with("postgres://"), "TEST_POSTGRES_URL must be set");
    let db = fkoeko_adapter::storage::Db::open(&url, 1, Duration::from_secs(5)).unwrap();
    let mut conn = db.conn().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::CacheQuery { sql, .. } = event {
            log.lock().unwrap().push(sql.to_string());
        }
    });
    let sender = uuid::Uuid::new_v4();
    fkoeko_adapter::storage::booking::earlier_deliveries(&mut conn, &[uuid::Uuid::new_v4()]).unwrap();
    fkoeko_adapter::storage::booking::accepted_items(&mut conn, fkoeko_adapter::domain::sortiment::Integration::Sf1590A, sender, &["B-1"])
        .unwrap();
    let statements = seen.lock().unwrap().clone();
    assert_eq!(statements.len(), 2, "{statements:?}");
    conn.batch_execute("SET plan_cache_mode = force_generic_plan").unwrap();
    let mut plan = |name: &str, sql: &str, args: &str| -> String {
        conn.batch_execute(&format!("PREPARE {name} AS {sql}")).unwrap();
        let steps: Vec<Step> = diesel::sql_query(format!("EXPLAIN EXECUTE {name}({args})")).load(&mut *conn).unwrap();
        steps.into_iter().map(|s| s.step).collect::<Vec<_>>().join("\n")
    };
    let deliveries = plan("deliveries_read", &statements[0], "'[\"x\", \"y\"]'");
    assert!(deliveries.contains("Index Scan using deliveries_leverance_id_key"), "{deliveries}");
    assert!(!deliveries.contains("Seq Scan on deliveries"), "{deliveries}");
    let receipts = plan("receipts_read", &statements[1], &format!("'SF1590_A', '{sender}', '[\"B-1\"]'"));
    assert!(receipts.contains("receipts_accepted_by_reference"), "{receipts}");
    assert!(!receipts.contains("Seq Scan on receipts"), "{receipts}");
}

/// Keys for a group's new rows come from one statement whose plan PostgreSQL keeps: planned again at every call
/// (as it was, with `generate_series`), the planning cost more than the keys.
#[test]
#[ignore = "needs PostgreSQL: .ci/run's PostgreSQL pass"]
fn keys_are_taken_by_a_statement_planned_once() {
    #[derive(QueryableByName)]
    struct Plans {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        generic_plans: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        custom_plans: i64,
    }
    let dir = tempfile::tempdir().unwrap();
    let url = new_database_url(dir.path());
    assert!(url.starts_with("postgres://"), "TEST_POSTGRES_URL must be set");
    let db = fkoeko_adapter::storage::Db::open(&url, 1, Duration::from_secs(5)).unwrap();
    let mut conn = db.conn().unwrap();
    use fkoeko_adapter::storage::booking::take_keys;
    assert_eq!(take_keys(&mut conn, [2, 1, 0]).unwrap(), [vec![1, 2], vec![1], vec![]]);
    assert_eq!(take_keys(&mut conn, [0, 0, 3]).unwrap(), [vec![], vec![], vec![1, 2, 3]]);
    for n in 1..=10 {
        let keys = take_keys(&mut conn, [n, 2 * n, 0]).unwrap();
        assert_eq!((keys[0].len(), keys[1].len(), keys[2].len()), (n, 2 * n, 0));
    }
    // 2, then 1 + 2 + … + 10 = 55 deliveries' keys taken: the next is 58, none given twice or skipped.
    assert_eq!(take_keys(&mut conn, [1, 0, 0]).unwrap()[0], vec![58]);
    let plans: Plans = diesel::sql_query(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%nextval(''deliveries_id_seq'')%'",
    )
    .get_result(&mut *conn)
    .unwrap();
    assert!(plans.generic_plans >= 6, "planned {} times for 13 calls, kept {} times", plans.custom_plans, plans.generic_plans);
}
