//! Database targets: the example table profile pointed at a PostgreSQL database the ERP owns (a cluster of the
//! test's own). Every accepted finansbilag and fordring is copied there once, in order, across a kill -9 of the
//! adapter and a restart of the ERP's database, on either backend of the adapter.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use fkoeko_adapter::domain::receipt::Status;
use fkoeko_adapter::domain::target::PROFILE_FILE;
use fkoeko_adapter::storage::Backend;

use crate::common::claims::{Claim, ClaimDelivery};
use crate::common::cluster::Cluster;
use crate::common::delivery::{one_line, Delivery};
use crate::common::serve::ServeProcess;
use crate::common::*;

const EXAMPLE: &str = "docs/examples/profiles/table";

/// The example table profile, its targets in the ERP's database "erp"; and that database's tables, with a
/// sequence of their own that shows the order rows arrived in.
fn erp_database_profile(erp: &Cluster) -> std::path::PathBuf {
    let tables = std::fs::read_to_string(repo(EXAMPLE).join("tables.sql")).unwrap();
    let mut conn = connect(&erp.url());
    conn.batch_execute(&tables).unwrap();
    conn.batch_execute(
        "ALTER TABLE erp_import_bilag ADD COLUMN arrived BIGSERIAL; ALTER TABLE erp_import_linje ADD COLUMN arrived BIGSERIAL",
    )
    .unwrap();
    let dir = copy_of_mappings();
    let profile = std::fs::read_to_string(repo(EXAMPLE).join(PROFILE_FILE)).unwrap();
    std::fs::write(dir.join(PROFILE_FILE), profile.replace("table = \"erp_import_", "database = \"erp\"\ntable = \"erp_import_")).unwrap();
    std::fs::copy(repo(EXAMPLE).join("afdelinger.csv"), dir.join("afdelinger.csv")).unwrap();
    dir
}

fn rows(url: &str, sql: &str) -> Vec<(String, i64)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::RunQueryDsl::load::<Row>(diesel::sql_query(sql), &mut connect(url)).unwrap().into_iter().map(|r| (r.name, r.n)).collect()
}

#[test]
fn every_accepted_item_is_copied_once_in_order_across_a_kill_9_and_a_restart_of_the_erps_database() {
    const BILAG: usize = 120;
    const CLAIMS: usize = 20;
    let erp = Cluster::start();
    let mappings = erp_database_profile(&erp);
    let dir = tempfile::tempdir().unwrap();
    let db_url = new_database_url(dir.path());
    let erp_url = erp.url();
    let env = [
        ("FKOEKO_PATHS__MAPPINGS", mappings.to_str().unwrap()),
        ("FKOEKO_TARGETS__DATABASES__ERP", erp_url.as_str()),
        ("FKOEKO_TARGETS__INTERVAL_MS", "20"),
    ];
    let calls: Vec<(&str, String)> = (0..BILAG)
        .map(|n| ("/sf1590a", one_line(&Delivery::one(&format!("FWD-{n}")).soap11())))
        .chain((0..CLAIMS).map(|n| ("/sf1590b", ClaimDelivery::one(Claim::repayment(&format!("FWD-F-{n}"))).soap11())))
        .collect();

    // Sends the calls from `first` on from four clients, until they are all sent or the server is gone;
    // `during` runs beside them with the count sent so far.
    let send = |server: &ServeProcess, first: usize, during: &(dyn Fn(&AtomicUsize) + Sync)| {
        let next = AtomicUsize::new(first);
        let sent = AtomicUsize::new(first);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= calls.len() {
                        return;
                    }
                    let (status, body) = server.post_to(calls[n].0, calls[n].1.as_bytes());
                    if status == 0 {
                        return;
                    }
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(parse_receipts(&body).receipts[0].status, Status::Accepteret, "{body}");
                    sent.fetch_add(1, Ordering::SeqCst);
                });
            }
            during(&sent);
        });
        sent.load(Ordering::SeqCst)
    };
    let wait_for = |sent: &AtomicUsize, count: usize| {
        while sent.load(Ordering::SeqCst) < count {
            std::thread::sleep(Duration::from_millis(2));
        }
    };

    // Killed while it books and copies.
    let server = ServeProcess::start(&db_url, &env);
    let third = calls.len() / 3;
    let reached = send(&server, 0, &|sent| {
        wait_for(sent, third);
        server.kill_9();
    });
    drop(server);

    // A new process; the ERP's database goes away while calls come, and they are accepted all the same.
    let server = ServeProcess::start(&db_url, &env);
    send(&server, reached, &|sent| {
        wait_for(sent, reached + (calls.len() - reached) / 3);
        erp.pg_ctl("stop");
        wait_for(sent, reached + 2 * (calls.len() - reached) / 3);
        erp.pg_ctl("start");
    });
    // Every call sent again gets its first receipt (none is booked twice); what waits is copied.
    for (path, call) in &calls {
        let (status, body) = server.post_to(path, call.as_bytes());
        assert_eq!(status, 200, "{body}");
        assert_eq!(parse_receipts(&body).receipts[0].status, Status::Accepteret, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while count_in(&db_url, "SELECT COUNT(*) AS n FROM target_outbox WHERE forwarded_at IS NULL") > 0 {
        assert!(Instant::now() < deadline, "the outbox was not emptied");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Once each, in the ERP's tables.
    let bilag = rows(&erp_url, "SELECT bilagsnr AS name, COUNT(*) AS n FROM erp_import_bilag GROUP BY bilagsnr");
    assert_eq!(bilag.len(), BILAG);
    assert!(bilag.iter().all(|(_, n)| *n == 1), "a finansbilag copied twice: {bilag:?}");
    let claims = rows(&erp_url, "SELECT fordringsnr AS name, COUNT(*) AS n FROM erp_import_fordring GROUP BY fordringsnr");
    assert_eq!(claims.len(), CLAIMS);
    assert!(claims.iter().all(|(_, n)| *n == 1), "a fordring copied twice: {claims:?}");
    assert_eq!(count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_linje"), 2 * BILAG as i64);
    assert_eq!(count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_debitor"), CLAIMS as i64);
    // The same rows as the adapter's own tables, to the øre.
    assert_eq!(count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_linje WHERE beloeb_oere = 125050"), 2 * BILAG as i64);

    // In order: a finansbilag's lines in line order; and, with the adapter on SQLite (one writer, so outbox order
    // is commit order), every row in outbox order.
    let lines = rows(&erp_url, "SELECT CAST(bilag_ref AS TEXT) AS name, CAST(linje AS BIGINT) AS n FROM erp_import_linje ORDER BY arrived");
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for (bilag, line) in &lines {
        let before = last.insert(bilag.clone(), *line).unwrap_or(0);
        assert!(*line > before, "lines of {bilag} out of order: {lines:?}");
    }
    let forwarded = rows(&erp_url, "SELECT target AS name, outbox_id AS n FROM fkoeko_forwarded ORDER BY seq");
    assert_eq!(forwarded.len() as i64, count_in(&db_url, "SELECT COUNT(*) AS n FROM target_outbox"));
    if Backend::of(&db_url) == Backend::Sqlite {
        assert!(forwarded.windows(2).all(|w| w[0].1 < w[1].1), "copied out of outbox order");
    }

    // The crash the kill may or may not have hit, made certain: rows the ERP's database holds, but not marked
    // copied here (the adapter stopped between the two commits). They are taken again, and not copied again.
    let before = count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_linje");
    connect(&db_url).batch_execute("UPDATE target_outbox SET forwarded_at = NULL WHERE id <= 40").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_in(&db_url, "SELECT COUNT(*) AS n FROM target_outbox WHERE forwarded_at IS NULL") > 0 {
        assert!(Instant::now() < deadline, "the unmarked rows were not taken again");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_linje"), before);
    assert_eq!(count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_bilag"), BILAG as i64);
}

#[test]
fn two_installations_sharing_the_erps_database_each_get_their_rows_copied() {
    // Two adapters with databases of their own: their outbox numbers are the same (1, 2, …), and the ERP's record
    // tells them apart by each installation's identity.
    let erp = Cluster::start();
    let mappings = erp_database_profile(&erp);
    let erp_url = erp.url();
    let start = |bilag: &str| {
        let mappings = mappings.clone();
        let app = TestApp::start_with(|c| {
            c.paths.mappings = mappings;
            c.targets.databases.insert("erp".into(), erp_url.clone());
            c.targets.interval_ms = 20;
        });
        assert_eq!(app.send(&Delivery::one(bilag).soap11()).receipts[0].status, Status::Accepteret);
        app
    };
    let (one, two) = (start("SHARED-1"), start("SHARED-2"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_bilag") < 2 {
        assert!(Instant::now() < deadline, "both installations' rows are copied");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count_in(&erp_url, "SELECT COUNT(DISTINCT source) AS n FROM fkoeko_forwarded"), 2);
    assert_eq!(count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_linje"), 4);
    drop((one, two));
}

#[test]
fn a_row_the_erps_database_refuses_is_set_aside_and_the_rows_after_it_go_on() {
    let erp = Cluster::start();
    let mappings = erp_database_profile(&erp);
    let erp_url = erp.url();
    let app = TestApp::start_with(|c| {
        c.paths.mappings = mappings;
        c.targets.databases.insert("erp".into(), erp_url.clone());
        c.targets.interval_ms = 20;
    });
    // The ERP narrows a column after the profile was taken into use: a longer text is accepted here (the
    // profile was checked against the wider column) and refused there.
    connect(&erp_url).batch_execute("ALTER TABLE erp_import_linje ALTER COLUMN tekst TYPE VARCHAR(5)").unwrap();
    let mut long = crate::common::delivery::Bilag::balanced("LANG-1", "3.00");
    long.postings[0].text = "en lang tekst".into();
    let mut short = crate::common::delivery::Bilag::balanced("KORT-1", "3.00");
    short.postings[0].text = "kort".into();
    short.postings[1].text = "kort".into();
    assert_eq!(app.send(&Delivery::new(vec![long]).soap11()).receipts[0].status, Status::Accepteret);
    assert_eq!(app.send(&Delivery::new(vec![short]).soap11()).receipts[0].status, Status::Accepteret);

    // KORT-1, after it in the outbox, arrives; LANG-1's refused line is set aside, and said so on /readyz.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_bilag WHERE bilagsnr = 'KORT-1'") == 0 {
        assert!(Instant::now() < deadline, "the rows after the refused one go on");
        std::thread::sleep(Duration::from_millis(50));
    }
    let readyz = ureq::get(&app.server.as_ref().unwrap().admin_url("/readyz")).call().unwrap().into_string().unwrap();
    assert!(readyz.contains("sat til side") && readyz.contains("fkoeko targets retry"), "{readyz}");
    assert!(count_in(&app.db_url, "SELECT COUNT(*) AS n FROM target_outbox WHERE last_error IS NOT NULL") >= 1);

    // The ERP widens it again; `fkoeko targets retry` sends what was set aside at once, and it arrives once.
    connect(&erp_url).batch_execute("ALTER TABLE erp_import_linje ALTER COLUMN tekst TYPE VARCHAR(60)").unwrap();
    let out = fkoeko_command(&app.db_url).args(["targets", "retry"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_in(&app.db_url, "SELECT COUNT(*) AS n FROM target_outbox WHERE forwarded_at IS NULL") > 0 {
        assert!(Instant::now() < deadline, "what was set aside arrives after the retry");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_linje WHERE tekst = 'en lang tekst'"), 1);
    assert_eq!(count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_bilag"), 2);
    assert_eq!(count_in(&erp_url, "SELECT COUNT(*) AS n FROM erp_import_linje"), 4);
}

#[test]
fn a_column_the_erp_widens_takes_longer_values_without_a_restart() {
    let erp = Cluster::start();
    let mappings = erp_database_profile(&erp);
    let erp_url = erp.url();
    connect(&erp_url).batch_execute("ALTER TABLE erp_import_linje ALTER COLUMN tekst TYPE VARCHAR(5)").unwrap();
    let app = TestApp::start_with(|c| {
        c.paths.mappings = mappings;
        c.targets.databases.insert("erp".into(), erp_url.clone());
        c.targets.interval_ms = 20;
        c.paths.mappings_poll_interval_ms = 50;
        c.targets.columns_refresh_secs = 0;
    });
    let long = |id: &str| {
        let mut bilag = crate::common::delivery::Bilag::balanced(id, "2.00");
        bilag.postings[0].text = "en lang tekst".into();
        Delivery::new(vec![bilag])
    };
    let set = app.send(&long("BRED-1").soap11());
    assert_eq!(set.receipts[0].status, Status::Afvist, "held to the column as it was read");
    assert!(set.receipts[0].errors[0].text.contains("højst 5"), "{:?}", set.receipts[0].errors);
    connect(&erp_url).batch_execute("ALTER TABLE erp_import_linje ALTER COLUMN tekst TYPE VARCHAR(60)").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 2;
    loop {
        let set = app.send(&long(&format!("BRED-{n}")).soap11());
        if set.receipts[0].status == Status::Accepteret {
            break;
        }
        assert!(Instant::now() < deadline, "the wider column is read again without a restart");
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}
