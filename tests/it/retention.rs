//! Retention: a purge with rows on both sides of each period. What is past its period and done with is deleted
//! or pseudonymised; what is not (recent, or not yet picked up by the ERP) stays; a finansbilag sent again after
//! its content was purged is answered as before; every purge is in the audit trail.

use std::time::{Duration, Instant};

use fkoeko_adapter::domain::receipt::Status;
use fkoeko_adapter::domain::retention::PURGED_TEXT;
use fkoeko_adapter::retention::Purger;

use crate::common::claims::{Claim, ClaimDelivery, Party};
use crate::common::delivery::{Bilag, Delivery};
use crate::common::masse::Batch;
use crate::common::*;

/// Far enough back to be past a 30-day period.
const LONG_AGO: &str = "2025-01-02 03:04:05";

fn days(n: u32) -> Option<fkoeko_adapter::domain::retention::Days> {
    fkoeko_adapter::domain::retention::Days::new(n)
}

/// The `fkoeko` command with 30-day periods for the database's data, one row a transaction (so that every
/// purge goes through several batches).
fn purge_command(app: &TestApp, args: &[&str]) -> String {
    let output = fkoeko_command(&app.db_url)
        .env("FKOEKO_RETENTION__IMPORT_ROWS_DAYS", "30")
        .env("FKOEKO_RETENTION__DEBTOR_DATA_DAYS", "30")
        .env("FKOEKO_RETENTION__RECEIPTS_DAYS", "30")
        .env("FKOEKO_RETENTION__DELIVERY_RECORDS_DAYS", "30")
        .env("FKOEKO_RETENTION__BATCH_ROWS", "1")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// Accepted and rejected finansbilag and fordringer; those named `OLD-*`/`F-OLD` made long ago, picked up by the
/// ERP long ago where it says so.
fn deliveries_on_both_sides(app: &TestApp) -> (Delivery, Delivery) {
    let old = Delivery::one("OLD-1");
    assert_eq!(app.send(&old.soap11()).receipts[0].status, Status::Accepteret);
    assert_eq!(app.send(&Delivery::one("OLD-NOT-PICKED").soap11()).receipts[0].status, Status::Accepteret);
    assert_eq!(app.send(&Delivery::one("NEW-1").soap11()).receipts[0].status, Status::Accepteret);
    let mut rejected = Delivery::one("OLD-REJ");
    rejected.bilag[0].postings[0].party = Some(("CPR", "3102901234".into()));
    let answer = app.send(&rejected.soap11());
    assert_eq!(answer.receipts[0].status, Status::Afvist);
    assert_eq!(answer.receipts[0].errors[0].code.as_str(), "REGEL_CPR");
    assert!(answer.receipts[0].errors[0].value.as_deref().unwrap().starts_with("310290"), "{answer:?}");

    let old_claim = ClaimDelivery::one(Claim::repayment("F-OLD"));
    assert_eq!(app.send_claims(&old_claim.soap11()).receipts[0].status, Status::Accepteret);
    let new_claim = ClaimDelivery::one(Claim {
        parties: vec![Party::person("JuridiskAnsvarlig", "0202851234", "Karen Hansen")],
        ..Claim::repayment("F-NEW")
    });
    assert_eq!(app.send_claims(&new_claim.soap11()).receipts[0].status, Status::Accepteret);

    app.execute(&format!(
        "UPDATE erp_journal SET status = 'HENTET', created_at = '{LONG_AGO}', picked_up_at = '{LONG_AGO}' WHERE bilag_id = 'OLD-1';
         UPDATE erp_journal SET created_at = '{LONG_AGO}' WHERE bilag_id = 'OLD-NOT-PICKED';
         UPDATE erp_journal SET status = 'HENTET', picked_up_at = created_at WHERE bilag_id = 'NEW-1';
         UPDATE erp_claims SET status = 'HENTET', created_at = '{LONG_AGO}', picked_up_at = '{LONG_AGO}' WHERE fordring_id = 'F-OLD';
         UPDATE erp_claims SET status = 'HENTET', picked_up_at = created_at WHERE fordring_id = 'F-NEW';
         UPDATE erp_debtor_data SET status = 'HENTET', created_at = '{LONG_AGO}', picked_up_at = '{LONG_AGO}' WHERE identifier = '0101901234';
         UPDATE erp_debtor_data SET status = 'HENTET', picked_up_at = created_at WHERE identifier = '0202851234';
         UPDATE receipts SET processed_at = '{LONG_AGO}' WHERE reference IN ('OLD-1', 'OLD-NOT-PICKED', 'OLD-REJ', 'F-OLD');
         UPDATE deliveries SET received_at = '{LONG_AGO}' WHERE id IN (SELECT delivery_id FROM receipts WHERE reference IN ('OLD-1', 'OLD-NOT-PICKED', 'OLD-REJ', 'F-OLD'));"
    ));
    (old, rejected)
}

#[test]
fn a_purge_takes_only_what_is_past_its_period_and_a_finansbilag_sent_again_is_answered_as_before() {
    let app = TestApp::start();
    let (old, rejected) = deliveries_on_both_sides(&app);
    let first_receipt = app.rows("SELECT json_array(kvittering_id) AS row FROM receipts WHERE reference = 'OLD-1'", 1)[0][0].clone();
    let journals = |bilag: &str| app.count(&format!("SELECT COUNT(*) AS n FROM erp_journal WHERE bilag_id = '{bilag}'"));

    // A dry run says what it would take and takes nothing.
    let dry = purge_command(&app, &["purge", "--dry-run"]);
    assert!(dry.contains("import_rows_days: 2 row(s) would be purged"), "{dry}");
    assert!(dry.contains("debtor_data_days: 0 row(s)"), "the debtor is named by F-OLD until it is purged: {dry}");
    assert!(dry.contains("receipts_days: 1 row(s)"), "{dry}");
    assert_eq!(journals("OLD-1"), 1);

    let done = purge_command(&app, &["purge"]);
    assert!(done.contains("import_rows_days: 2 row(s) were purged"), "{done}");
    // Import rows: the old picked-up finansbilag (with its lines) and fordring go; the old one the ERP has not
    // picked up and the recent ones stay.
    assert_eq!((journals("OLD-1"), journals("OLD-NOT-PICKED"), journals("NEW-1")), (0, 1, 1));
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_journal_lines WHERE journal_id NOT IN (SELECT id FROM erp_journal)"), 0);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_journal_lines"), 4, "the two kept finansbilag's lines");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_claims WHERE fordring_id = 'F-OLD'"), 0);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_claims WHERE fordring_id = 'F-NEW'"), 1);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_claim_parties WHERE claim_id NOT IN (SELECT id FROM erp_claims)"), 0);
    // Debtor data: the old debtor (no longer named by a kept fordring) goes, the recent one stays.
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_debtor_data WHERE identifier = '0101901234'"), 0);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_debtor_data WHERE identifier = '0202851234'"), 1);
    // Receipts: every accepted receipt stays, with its content hash; the old rejection keeps its code and place
    // but loses its text and value, in the receipt, its errors and the delivery's kept answer alike.
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM receipts WHERE status = 'Accepteret'"), 5);
    let error = app.rows("SELECT json_array(code, text, value, path) AS row FROM receipt_errors", 4);
    assert_eq!(error.len(), 1);
    assert_eq!(error[0][0].as_deref(), Some("REGEL_CPR"));
    assert_eq!(error[0][1].as_deref(), Some(PURGED_TEXT));
    assert_eq!(error[0][2], None);
    assert!(error[0][3].as_deref().unwrap().starts_with("/ModtagFinansbilag/Finansbilag[1]/"), "{error:?}");
    for (what, sql) in [
        ("receipt", "SELECT COUNT(*) AS n FROM receipts WHERE receipt_json LIKE '%310290%'"),
        ("kept answer", "SELECT COUNT(*) AS n FROM deliveries WHERE response_json LIKE '%310290%'"),
    ] {
        assert_eq!(app.count(sql), 0, "the CPR number is gone from the {what}");
    }
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM deliveries WHERE response_json LIKE '%REGEL_CPR%'"), 1);

    // The purge is in the audit trail: what, how many, by which rule; `fkoeko audit list` prints it.
    let trail = app.rows("SELECT json_array(actor, detail, origin) AS row FROM audit_log WHERE action = 'purged' ORDER BY id", 3);
    let details: Vec<&str> = trail.iter().map(|row| row[1].as_deref().unwrap()).collect();
    assert_eq!(trail.len(), 4, "import rows, debtor data, receipts and delivery records: {details:?}");
    assert!(
        details[0].starts_with("importrækker hentet af ERP: 2 slettet") && details[0].contains("retention.import_rows_days = 30"),
        "{details:?}"
    );
    assert!(details.iter().any(|d| d.starts_with("debitorstamdata hentet af ERP: 1 slettet")), "{details:?}");
    assert!(trail.iter().all(|row| row[2].as_deref() == Some("kommandolinjen")));
    let listed = purge_command(&app, &["audit", "list", "--action", "purged"]);
    assert_eq!(listed.lines().filter(|l| l.contains("\tpurged\t")).count(), 4, "{listed}");

    // A second purge finds nothing more, and records nothing.
    let again = purge_command(&app, &["purge"]);
    assert!(again.contains("import_rows_days: 0 row(s) were purged"), "{again}");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'purged'"), 4);

    // Sent again after its content is gone: the same finansbilag under a new LeveranceId gets its first receipt
    // and books nothing; other content under its BilagId is DUBLET_AFVIGENDE.
    let resent = app.send(&Delivery { delivery_id: crate::common::delivery::new_id(), ..old.clone() }.soap11());
    assert_eq!(resent.receipts[0].status, Status::Accepteret);
    assert_eq!(Some(resent.receipts[0].id.to_string()), first_receipt);
    assert_eq!(journals("OLD-1"), 0, "nothing is booked again");
    let changed = app.send(&Delivery::new(vec![Bilag::balanced("OLD-1", "99.00")]).soap11());
    assert_eq!(changed.receipts[0].status, Status::Afvist);
    assert_eq!(changed.receipts[0].errors[0].code.as_str(), "DUBLET_AFVIGENDE");
    // The rejected delivery sent again under its LeveranceId: its first answer, pseudonymised.
    let repeat = app.send(&rejected.soap11());
    assert_eq!(repeat.receipts[0].status, Status::Afvist);
    assert_eq!(repeat.receipts[0].errors[0].code.as_str(), "REGEL_CPR");
    assert_eq!(repeat.receipts[0].errors[0].text, PURGED_TEXT);
    assert_eq!(repeat.receipts[0].errors[0].value, None);
}

#[test]
fn the_service_purges_on_its_own_and_records_it() {
    let app = TestApp::start();
    deliveries_on_both_sides(&app);
    // A second instance on the same database with periods set purges at its start, then daily.
    let purging = TestApp::start_beside(&app, |c| {
        c.retention.import_rows_days = days(30);
        c.retention.interval_hours = 24;
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'purged'") == 0 {
        assert!(Instant::now() < deadline, "the service purged nothing within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let trail = app.rows("SELECT json_array(actor, origin) AS row FROM audit_log WHERE action = 'purged'", 2);
    assert_eq!(trail, vec![vec![Some("fkoeko serve".to_string()), Some("daglig sletning".to_string())]]);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_journal WHERE bilag_id IN ('OLD-1', 'OLD-NOT-PICKED', 'NEW-1')"), 2);
    drop(purging);
}

#[test]
fn an_archived_batch_file_past_its_period_is_deleted_and_its_receipt_file_entries_pseudonymised() {
    let batch = Batch::with(|c| {
        c.batch.convention = fkoeko_adapter::config::BatchConvention::Plain;
        c.retention.batch_archive_days = days(30);
    });
    let mut rejected = Bilag::balanced("A-2", "10.00");
    rejected.postings[0].party = Some(("CPR", "3102901234".into()));
    batch.drop_file("gammel.xml", Delivery::new(vec![Bilag::balanced("A-1", "1.00"), rejected]).masse().as_bytes());
    assert_eq!(batch.run_once().len(), 1);
    batch.drop_file("ny.xml", Delivery::one("A-3").masse().as_bytes());
    assert_eq!(batch.run_once().len(), 1);
    let archive = batch.folders().archive;
    let stored = |name: &str| batch.string(&format!("SELECT stored_name AS s FROM batch_files WHERE file_name = '{name}'"));
    let (old, new) = (stored("gammel.xml"), stored("ny.xml"));
    assert!(archive.join(&old).exists() && archive.join(&new).exists());
    let mut conn = connect(&batch.db_url);
    diesel::RunQueryDsl::execute(
        diesel::sql_query(format!("UPDATE batch_files SET received_at = '{LONG_AGO}' WHERE file_name = 'gammel.xml'")),
        &mut conn,
    )
    .unwrap();

    // Its receipt file, still in the outbox (a plain folder: nobody took it), as old as the file.
    let outbox = batch.folders().outbox;
    let (old_receipt, new_receipt) = (outbox.join("gammel.kvittering.xml"), outbox.join("ny.kvittering.xml"));
    assert!(std::fs::read_to_string(&old_receipt).unwrap().contains("REGEL_CPR"));
    let touched = std::process::Command::new("touch").args(["-d", LONG_AGO]).arg(&old_receipt).status().unwrap();
    assert!(touched.success());

    let purger = Purger::new(batch.app.db.clone(), &batch.config);
    assert_eq!(purger.dry_run().unwrap()[0].rows, 1);
    let outcome = purger.run("en driftsansvarlig", "en test").unwrap();
    assert_eq!(outcome[0].rows, 1);
    assert!(!archive.join(&old).exists(), "the old archived file is deleted");
    assert!(archive.join(&new).exists(), "the recent one stays");
    assert!(!old_receipt.exists(), "the old receipt file left in the outbox is deleted");
    assert!(new_receipt.exists(), "the recent one stays");
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM batch_files WHERE archive_purged_at IS NOT NULL"), 1);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM batch_receipts WHERE receipt_json LIKE '%310290%'"), 0);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM batch_receipts WHERE receipt_json LIKE '%REGEL_CPR%'"), 1);
    assert_eq!(
        batch.string("SELECT detail AS s FROM audit_log WHERE action = 'purged'"),
        format!(
            "arkiverede batchfiler: 1 filer slettet fra arkivet (ældre end {}, retention.batch_archive_days = 30)",
            outcome[0].rule.before.format("%Y-%m-%d %H:%M")
        )
    );
    // Once done, a run takes nothing more.
    assert_eq!(purger.run("en driftsansvarlig", "en test").unwrap()[0].rows, 0);
}

#[test]
fn a_cpr_number_the_schema_refuses_is_masked_in_the_receipts_text_as_in_its_value() {
    let app = TestApp::start();
    let mut delivery = Delivery::one("CPR-TEKST");
    delivery.bilag[0].postings[0].party = Some(("CPR", "010190-1234".into()));
    let (status, answer) = app.post(&delivery.soap11());
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.contains("010190-1234") && !answer.contains("0101901234"), "{answer}");
    let set = parse_receipts(&answer);
    let error = &set.receipts[0].errors[0];
    assert_eq!(error.code.as_str(), "FORMAT_XSD");
    assert!(error.text.contains("010190-XXXX"), "the text still says which value: {}", error.text);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM receipt_errors WHERE text LIKE '%1234%' OR value LIKE '%1234%'"), 0);
}

#[test]
fn a_dry_run_makes_no_database_and_root_is_refused_a_database_that_is_the_services() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ingen.db");
    let out =
        fkoeko_command(missing.to_str().unwrap()).env("FKOEKO_RETENTION__AUDIT_DAYS", "30").args(["purge", "--dry-run"]).output().unwrap();
    assert!(!out.status.success());
    assert!(!missing.exists(), "a dry run made the database");

    // A folder of the service's user (here: nobody), and a command run as root on a database in it.
    let is_root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if !is_root {
        return;
    }
    let service = dir.path().join("service");
    std::fs::create_dir(&service).unwrap();
    std::os::unix::fs::chown(&service, Some(65534), Some(65534)).unwrap();
    let db = service.join("fkoeko.db");
    let out = fkoeko_command(db.to_str().unwrap()).args(["purge"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("this command runs as root") && stderr.contains("runuser -u "), "{stderr}");
    assert!(!db.exists(), "nothing made as root");
}

#[test]
fn a_purge_running_while_senders_deliver_many_at_once_loses_nothing_and_books_nothing_twice() {
    use crate::common::delivery::{indented, one_line};
    let app = TestApp::start();
    // 120 finansbilag from long ago, picked up by the ERP: past the period.
    let old: Vec<Delivery> = (0..120).map(|n| Delivery::one(&format!("GAMMEL-{n}"))).collect();
    for delivery in &old {
        assert_eq!(app.send(&one_line(&delivery.soap11())).receipts[0].status, Status::Accepteret);
    }
    app.execute(&format!(
        "UPDATE erp_journal SET status = 'HENTET', created_at = '{LONG_AGO}', picked_up_at = '{LONG_AGO}';
         UPDATE receipts SET processed_at = '{LONG_AGO}'; UPDATE deliveries SET received_at = '{LONG_AGO}';"
    ));
    let mut config = app.config.clone();
    config.retention.import_rows_days = days(30);
    config.retention.receipts_days = days(30);
    config.retention.delivery_records_days = days(30);
    // A few rows a transaction: many purge transactions between the deliveries' own.
    config.retention.batch_rows = std::num::NonZeroU32::new(7).unwrap();
    let purger = Purger::new(app.server.as_ref().unwrap().app.db.clone(), &config);

    // Eight senders at once, on one line and indented, each sending new finansbilag and re-sending old ones,
    // while the purge runs again and again.
    let answers: Vec<(String, Status, String)> = std::thread::scope(|s| {
        let purging = s.spawn(|| (0..5).map(|_| purger.run("test", "samtidig").unwrap().iter().map(|o| o.rows).sum::<u64>()).sum::<u64>());
        let senders: Vec<_> = (0..8)
            .map(|sender| {
                let (app, old) = (&app, &old);
                s.spawn(move || {
                    let mut answers = Vec::new();
                    for n in 0..25 {
                        let (reference, delivery) = if n % 5 == 4 {
                            let resent = &old[sender * 5 + n / 5];
                            (resent.bilag[0].id.clone(), Delivery { delivery_id: crate::common::delivery::new_id(), ..resent.clone() })
                        } else {
                            let id = format!("NY-{sender}-{n}");
                            (id.clone(), Delivery::one(&id))
                        };
                        let body = if n % 2 == 0 { one_line(&delivery.soap11()) } else { indented(&delivery.soap11()) };
                        let set = app.send(&body);
                        answers.push((reference, set.receipts[0].status, set.receipts[0].id.to_string()));
                    }
                    answers
                })
            })
            .collect();
        let answers = senders.into_iter().flat_map(|t| t.join().unwrap()).collect();
        assert!(purging.join().unwrap() >= 120, "the old finansbilag were purged");
        answers
    });
    assert_eq!(answers.len(), 200);
    assert!(answers.iter().all(|(_, status, _)| *status == Status::Accepteret), "{answers:?}");
    // Every new finansbilag is booked once with its lines; every old one re-sent got its first receipt and nothing.
    let first =
        |reference: &str| app.rows(&format!("SELECT json_array(kvittering_id) AS row FROM receipts WHERE reference = '{reference}'"), 1);
    for (reference, _, receipt) in &answers {
        assert_eq!(first(reference), vec![vec![Some(receipt.clone())]], "{reference}: one receipt, the one answered");
    }
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_journal WHERE bilag_id LIKE 'NY-%'"), 160);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_journal WHERE bilag_id LIKE 'GAMMEL-%'"), 0);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_journal_lines"), 320);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM receipts WHERE status = 'Accepteret'"), 280);
}
