//! The web page end to end, in Debian's headless Chromium driven by Playwright (tests/browser/e2e.mjs): log in,
//! find a rejected delivery and read its errors, edit a mapping rule with an error and see it refused, fix it
//! and see a new delivery mapped by the new rule, roll it back. The screenshots go to docs/screenshots when
//! FKOEKO_SCREENSHOTS names that folder (how the README's pictures are made), else to a temporary folder.

use std::process::Command;

use crate::common::delivery::{Bilag, Delivery};
use crate::common::{repo, TestApp, ADMIN_PASSWORD, ADMIN_USER};

/// A bilag whose payout (5.57.72, dranst 2, art 5.2) is in KY's sortiment but mapped by no rule.
fn unmapped_refund(bilag_id: &str) -> Delivery {
    let mut bilag = Bilag::balanced(bilag_id, "812.25");
    bilag.postings[0].dranst = "2".into();
    Delivery::new(vec![bilag])
}

#[test]
fn finance_staff_find_a_rejection_fix_the_mapping_and_roll_it_back() {
    let browser_dir = repo("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "Playwright is not installed: run `npm ci` in tests/browser (bash .ci/run does)"
    );
    let app = TestApp::start();
    let server = app.server.as_ref().unwrap();
    let rejected = unmapped_refund("REFUSION-1");
    let receipts = app.send(&rejected.soap11());
    assert_eq!(crate::common::errors_of(&receipts, "REFUSION-1").first().map(|e| e.0.as_str()), Some("MAPNING_MANGLER"));
    // Two rejections for other reasons, which the filter on the error code must leave out.
    let mut unbalanced = Bilag::balanced("UBALANCE-1", "100.00");
    unbalanced.postings[1].amount = "99.50".into();
    app.send(&Delivery::new(vec![unbalanced]).soap11());
    let mut expired = Delivery::one("UDLOEBET-1");
    expired.sender = crate::common::EXPIRED_SENDER.into();
    app.send(&expired.soap11());
    let version_before = app.mapping_version();

    let next = unmapped_refund("REFUSION-2");
    let next_file = app.dir.path().join("next.xml");
    std::fs::write(&next_file, next.soap11()).unwrap();
    let shots = std::env::var("FKOEKO_SCREENSHOTS").map_or_else(|_| app.dir.path().join("screenshots"), |dir| repo(&dir));

    let run = Command::new("node")
        .arg("e2e.mjs")
        .current_dir(&browser_dir)
        .env("ADMIN", server.admin_url(""))
        .env("SERVICE", server.url(""))
        .env("USER", ADMIN_USER)
        .env("PASSWORD", ADMIN_PASSWORD)
        .env("REJECTED", &rejected.delivery_id)
        .env("NEXT_DELIVERY", &next_file)
        .env("NEXT_BILAG", "REFUSION-2")
        .env("SHOTS", &shots)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the browser run failed (screenshot of the moment in {}):\n{stdout}\n{stderr}", shots.display());

    // What the browser did, as the database has it.
    let saved: i64 = stdout.lines().find_map(|l| l.strip_prefix("saved ")).expect("a saved version").trim().parse().unwrap();
    let rows = app.rows(
        "SELECT json_array(l.erp_account, l.mapping_rule, j.mapping_version) AS row FROM erp_journal_lines l JOIN erp_journal j ON j.id = l.journal_id \
         WHERE j.bilag_id = 'REFUSION-2' AND l.line_no = 1",
        3,
    );
    let saved_version = app.rows(&format!("SELECT json_array(version) AS row FROM mapping_versions WHERE id = {saved}"), 1)[0][0].clone();
    assert_eq!(rows[0][0].as_deref(), Some("55772252"), "booked on the new rule's account");
    assert_eq!(rows[0][2], saved_version, "booked with the saved version");
    assert_ne!(saved_version.as_deref(), Some(version_before.as_str()));
    let history = app.rows("SELECT json_array(author, source, comment) AS row FROM mapping_versions ORDER BY id", 3);
    assert_eq!(history.len(), 3, "the files at start, the saved change, the rollback: {history:?}");
    assert_eq!(history[1], vec![Some(ADMIN_USER.into()), Some("side".into()), Some("Refusion med dranst 2 manglede".into())]);
    assert_eq!(history[2][1].as_deref(), Some("tilbagerulning"));
    assert_eq!(app.mapping_version(), version_before, "after the rollback the first version is in force again");
    // The mapping folder follows the version in force.
    let on_disk = std::fs::read_to_string(app.config.paths.mappings.join("konti.csv")).unwrap();
    assert_eq!(on_disk, std::fs::read_to_string(repo("mappings/konti.csv")).unwrap());
}

#[test]
fn finance_staff_try_a_delivery_against_the_erps_import_tables() {
    let browser_dir = repo("tests/browser");
    assert!(browser_dir.join("node_modules/playwright-core").is_dir(), "Playwright is not installed: run `npm ci` in tests/browser");
    let app = TestApp::start_with(crate::targets::with_example_profile);
    let server = app.server.as_ref().unwrap();
    let mut too_long = Bilag::balanced("PROEV-2", "1250.50");
    too_long.postings[0].text = "z".repeat(80);
    let delivery = Delivery::new(vec![Bilag::balanced("PROEV-1", "1250.50"), too_long]);
    let file = app.dir.path().join("proev.xml");
    std::fs::write(&file, crate::common::delivery::one_line(&delivery.soap11())).unwrap();
    let shots = std::env::var("FKOEKO_SCREENSHOTS").map_or_else(|_| app.dir.path().join("screenshots"), |dir| repo(&dir));
    let run = Command::new("node")
        .arg("targets.mjs")
        .current_dir(&browser_dir)
        .env("ADMIN", server.admin_url(""))
        .env("USER", ADMIN_USER)
        .env("PASSWORD", ADMIN_PASSWORD)
        .env("DELIVERY", &file)
        .env("SHOTS", &shots)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "the browser run failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    // Two rows for PROEV-1's finansbilag and lines (one bilag row, two line rows); nothing booked.
    assert_eq!(stdout.trim(), "tables 3");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_journal"), 0);
}
