//! Target profiles: accepted records written into the ERP's own import tables in the booking transaction, by
//! the example profile in docs/examples/profiles/table, on SQLite and PostgreSQL (the second pass of .ci/run).

use std::path::PathBuf;

use diesel::connection::SimpleConnection;
use fkoeko_adapter::config::Config;
use fkoeko_adapter::domain::receipt::Status;
use fkoeko_adapter::domain::target::PROFILE_FILE;
use fkoeko_adapter::pipeline::MappingChange;
use fkoeko_adapter::storage::mappings::MappingSource;
use fkoeko_adapter::storage::Backend;

use crate::common::claims::{Claim, ClaimDelivery};
use crate::common::delivery::{Bilag, Delivery, Posting};
use crate::common::masse::Batch;
use crate::common::{connect, copy_of_mappings, errors_of, fkoeko_command, repo, TestApp, ADMIN_USER};

const EXAMPLE: &str = "docs/examples/profiles/table";

/// The example's import tables in the test's database, and a mapping folder with its profile.
pub(crate) fn with_example_profile(config: &mut Config) {
    let tables = std::fs::read_to_string(repo(EXAMPLE).join("tables.sql")).unwrap();
    connect(&config.database.url).batch_execute(&tables).unwrap();
    config.paths.mappings = mappings_with_profile();
}

fn mappings_with_profile() -> PathBuf {
    let dir = copy_of_mappings();
    for name in [PROFILE_FILE, "afdelinger.csv"] {
        std::fs::copy(repo(EXAMPLE).join(name), dir.join(name)).unwrap();
    }
    dir
}

/// A finansbilag whose amounts are at the edges: one øre, one decimal written, and the largest amount a
/// postering may have.
fn edge_amounts(id: &str) -> Bilag {
    let mut postings = vec![
        Posting::debit(1, "0.01"),
        Posting::debit(2, "1250.5"),
        Posting::debit(3, "9999999999999.99"),
        Posting::credit(4, "9999999999999.99"),
        Posting::credit(5, "1250.51"),
    ];
    postings[1].party = Some(("CVR", "29189846".into()));
    Bilag { id: id.into(), date: crate::common::delivery::today(), postings }
}

#[test]
fn accepted_finansbilag_land_in_the_erps_tables_with_amounts_exact_in_every_format() {
    let app = TestApp::start_with(with_example_profile);
    let delivery = Delivery::new(vec![edge_amounts("T-1"), Bilag::balanced("T-2", "10.00")]);
    let set = app.send(&delivery.soap11());
    assert!(set.receipts.iter().all(|r| r.status == Status::Accepteret), "{set:?}");

    // Each line checked against the postering as received and as the adapter's own table has it.
    let lines = app.rows(
        "SELECT json_array(l.beloeb_oere, l.beloeb_signeret, l.beloeb_tekst, l.dk, j.amount, j.debit_credit, l.konto, j.erp_account, \
         l.afdeling_nr, l.cpr_cvr, l.sag, l.linje) AS row \
         FROM erp_import_linje l JOIN erp_journal_lines j ON j.journal_id = l.bilag_ref AND j.line_no = l.linje \
         JOIN erp_journal b ON b.id = l.bilag_ref WHERE b.bilag_id = 'T-1' ORDER BY l.linje",
        12,
    );
    let received = [("0.01", "D"), ("1250.5", "D"), ("9999999999999.99", "D"), ("9999999999999.99", "K"), ("1250.51", "K")];
    assert_eq!(lines.len(), received.len(), "{lines:?}");
    for (line, (amount, side)) in lines.iter().zip(received) {
        let exact: rust_decimal::Decimal = amount.parse().unwrap();
        let oere = (exact * rust_decimal::Decimal::ONE_HUNDRED).normalize().to_string();
        let two = format!("{:.2}", exact);
        let signed = if side == "K" { format!("-{two}") } else { two.clone() };
        assert_eq!(line[0].as_deref(), Some(oere.as_str()), "øre: {line:?}");
        assert_eq!(line[1].as_deref(), Some(signed.as_str()), "signed: {line:?}");
        assert_eq!(line[2].as_deref(), Some(two.replace('.', ",").as_str()), "text: {line:?}");
        assert_eq!(line[3].as_deref(), Some(side));
        // The adapter's own line holds the same amount.
        let own: rust_decimal::Decimal = line[4].as_deref().unwrap().parse().unwrap();
        assert_eq!(own, exact);
        assert_eq!(line[3], line[5]);
        assert_eq!(line[6], line[7], "the ERP account is the mapped one");
    }
    // The lookup table: the cash-benefit lines' dimension afdeling=SOC is department 410; the balance account has none.
    assert_eq!(lines[0][8].as_deref(), Some("410"));
    assert_eq!(lines[3][8], None);
    assert_eq!(lines[0][9].as_deref(), Some("0101901234"), "the payee's CPR, for the ERP only");
    assert_eq!(lines[1][9].as_deref(), Some("29189846"));
    assert_eq!(lines[2][10].as_deref(), Some("T-1/3"));

    // The finansbilag's own row: its batch number is its delivery's, its reference the receipt's.
    let bilag = app.rows(
        "SELECT json_array(b.batch_nr, d.id, b.erp_ref, b.loebenr, b.bilagsnr, b.kilde, b.leverance, b.status, b.afsender) AS row \
         FROM erp_import_bilag b JOIN deliveries d ON d.leverance_id = b.leverance ORDER BY b.loebenr",
        9,
    );
    assert_eq!(bilag.len(), 2, "{bilag:?}");
    assert_eq!(bilag[0][0], bilag[0][1], "batch number: the delivery's");
    assert_eq!(bilag[0][2], set.receipts[0].erp_reference, "ErpReference as in the receipt");
    assert_eq!(bilag[1][2], set.receipts[1].erp_reference);
    assert_eq!((bilag[0][3].as_deref(), bilag[0][4].as_deref()), (Some("1"), Some("T-1")));
    assert_eq!((bilag[1][3].as_deref(), bilag[1][4].as_deref()), (Some("2"), Some("T-2")));
    assert_eq!(bilag[0][5].as_deref(), Some("FKOEKO"));
    assert_eq!(bilag[0][6].as_deref(), Some(delivery.delivery_id.as_str()));
    assert_eq!(bilag[0][7].as_deref(), Some("NY"), "a column the profile leaves out keeps its default");
    assert_eq!(bilag[0][8].as_deref(), Some(crate::common::KY));

    // Sent again: the first receipts, and not a row more.
    let again = app.send(&delivery.soap11());
    assert_eq!(again.receipts, set.receipts);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_import_bilag"), 2);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_import_linje"), 7);
}

#[test]
fn a_rejected_item_and_a_value_that_does_not_fit_leave_no_row_and_the_rest_is_booked() {
    let app = TestApp::start_with(with_example_profile);
    let mut unbalanced = Bilag::balanced("R-1", "100.00");
    unbalanced.postings[1].amount = "99.99".into();
    let mut long_text = Bilag::balanced("R-2", "100.00");
    long_text.postings[1].text = "x".repeat(61);
    let delivery = Delivery::new(vec![unbalanced, long_text, Bilag::balanced("R-3", "100.00")]);
    let set = app.send(&delivery.soap11());
    let statuses: Vec<Status> = set.receipts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Status::Afvist, Status::Afvist, Status::Accepteret]);

    // The too-long text is named with its column and its postering; nothing was cut.
    let errors = errors_of(&set, "R-2");
    assert_eq!(errors, vec![("MAPNING_MANGLER".to_string(), Some("/ModtagFinansbilag/Finansbilag[2]/Postering[2]".to_string()))]);
    let text = &set.receipts[1].errors[0].text;
    assert!(text.contains("erp_import_linje.tekst") && text.contains("61 tegn") && text.contains("højst 60"), "{text}");

    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_import_bilag"), 1);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_import_bilag WHERE bilagsnr = 'R-3'"), 1);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_import_linje"), 2);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_journal"), 1);
}

#[test]
fn a_write_the_erps_table_refuses_rolls_back_the_whole_delivery() {
    let app = TestApp::start_with(with_example_profile);
    // The ERP's table refuses a row (a trigger of its own): the booking transaction fails, so the delivery is
    // answered with a fault and nothing of it stays, in the ERP's tables or the adapter's.
    match Backend::of(&app.db_url) {
        Backend::Sqlite => app.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON erp_import_linje WHEN NEW.sag LIKE 'NEJ%' \
             BEGIN SELECT RAISE(ABORT, 'the ERP refuses'); END;",
        ),
        Backend::Postgres => app.execute(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF NEW.sag LIKE 'NEJ%' THEN RAISE EXCEPTION 'the ERP refuses'; \
             END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse BEFORE INSERT ON erp_import_linje FOR EACH ROW EXECUTE FUNCTION refuse();",
        ),
    }
    let delivery = Delivery::new(vec![Bilag::balanced("OK-1", "5.00"), Bilag::balanced("NEJ-1", "5.00")]);
    let (status, body) = app.post(&delivery.soap11());
    assert_eq!(status, 500, "{body}");
    for table in ["erp_import_bilag", "erp_import_linje", "erp_journal", "erp_journal_lines", "receipts", "deliveries"] {
        assert_eq!(app.count(&format!("SELECT COUNT(*) AS n FROM {table}")), 0, "{table}");
    }
    // Once the ERP lets it through, the same call books it whole.
    app.execute(match Backend::of(&app.db_url) {
        Backend::Sqlite => "DROP TRIGGER refuse",
        Backend::Postgres => "DROP TRIGGER refuse ON erp_import_linje",
    });
    let set = app.send(&delivery.soap11());
    assert!(set.receipts.iter().all(|r| r.status == Status::Accepteret), "{set:?}");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_import_linje"), 4);
}

#[test]
fn claims_and_their_haeftere_land_in_the_erps_tables() {
    let app = TestApp::start_with(with_example_profile);
    let set = app.send_claims(&ClaimDelivery::new(vec![Claim::repayment("F-1"), Claim::interest("F-2", "F-1")]).soap11());
    assert!(set.receipts.iter().all(|r| r.status == Status::Accepteret), "{set:?}");
    let claims = app.rows(
        "SELECT json_array(f.fordringsnr, f.fordringstype, f.hovedstol_oere, f.hovedstol_tekst, c.principal, f.forfald, f.periode, \
         f.konto, f.fordring_ref, c.id) AS row FROM erp_import_fordring f JOIN erp_claims c ON c.id = f.fordring_ref ORDER BY f.fordringsnr",
        10,
    );
    assert_eq!(claims.len(), 2, "{claims:?}");
    assert_eq!(claims[0][..4], [Some("F-1".into()), Some("DEB-KH-TILBAGEBETALING".into()), Some("425000".into()), Some("4250,00".into())]);
    assert_eq!(claims[0][4].as_deref().unwrap().parse::<rust_decimal::Decimal>().unwrap(), "4250.00".parse().unwrap());
    assert_eq!(claims[0][5].as_deref(), Some("2026-10-01"));
    assert_eq!(claims[0][6].as_deref(), Some("01-08-2026 - 31-08-2026"));
    assert_eq!(claims[0][7].as_deref(), Some("55772900"));
    assert_eq!(claims[1][2].as_deref(), Some("3750"));
    let debtors =
        app.rows("SELECT json_array(nr, rolle, id_type, id_nr, navn, land) AS row FROM erp_import_debitor ORDER BY fordring_ref, nr", 6);
    assert_eq!(debtors.len(), 2);
    assert_eq!(
        debtors[0],
        vec![
            Some("1".into()),
            Some("JuridiskAnsvarlig".into()),
            Some("CPR".into()),
            Some("0101901234".into()),
            Some("Jens Jensen".into()),
            Some("DK".into())
        ]
    );
}

#[test]
fn a_batch_file_writes_its_rows_in_each_chunks_transaction() {
    let batch = Batch::with(|c| {
        c.batch.convention = fkoeko_adapter::config::BatchConvention::Plain;
        with_example_profile(c);
    });
    let delivery = Delivery::new((1..=30).map(|n| Bilag::balanced(&format!("B-{n}"), "12.34")).collect());
    batch.drop_file("bilag.xml", delivery.masse().as_bytes());
    let handled = batch.run_once();
    assert_eq!((handled[0].accepted, handled[0].rejected), (30, 0));
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_import_bilag"), 30);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_import_linje WHERE beloeb_oere = 1234"), 60);
    // One batch number for the whole file: its delivery's.
    assert_eq!(batch.count("SELECT COUNT(DISTINCT batch_nr) AS n FROM erp_import_linje"), 1);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_import_bilag b JOIN deliveries d ON d.id = b.batch_nr"), 30);
}

#[test]
fn a_profile_that_does_not_fit_is_refused_at_its_line_and_the_version_in_force_stays() {
    let app = TestApp::start_with(with_example_profile);
    let before = app.mapping_version();
    let pipeline = &app.server.as_ref().unwrap().app.pipeline;
    let mut files = fkoeko_adapter::domain::mapping::read_dir(&app.config.paths.mappings).unwrap();
    let profile = files[PROFILE_FILE].clone();
    let line_of = |profile: &str, needle: &str| profile.lines().position(|l| l.starts_with(needle)).unwrap() as u64 + 1;

    // A field that does not exist, a column the table lacks, and a column too short for what always goes in it.
    let broken = profile
        .replace("bilagsnr = \"bilag_id\"", "bilagsnr = \"bilagsnummer\"")
        .replace("kilde = \"'FKOEKO'\"", "kilde = \"'FKOEKO'\"\nfindes_ikke = \"bilag_id\"")
        .replace("dk = \"debit_credit\"", "dk = \"date(posting_date, '%Y%m%d')\"");
    files.insert(PROFILE_FILE.into(), broken.clone());
    let refused = pipeline.change_mappings(&files, ADMIN_USER, MappingSource::Page, "forkert profil", None, false).unwrap();
    let MappingChange::Invalid(errors) = refused else { panic!("{refused:?}") };
    let found: Vec<(u64, String)> = errors.0.iter().map(|e| (e.place().1, e.message())).collect();
    // The unknown field is found on reading; the table's columns only once that passes.
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, line_of(&broken, "bilagsnr"));
    assert!(found[0].1.contains("ukendt felt 'bilagsnummer'"), "{found:?}");
    assert_eq!(app.mapping_version(), before);

    let broken = broken.replace("bilagsnr = \"bilagsnummer\"", "bilagsnr = \"bilag_id\"");
    files.insert(PROFILE_FILE.into(), broken.clone());
    let refused = pipeline.change_mappings(&files, ADMIN_USER, MappingSource::Page, "forkert profil", None, false).unwrap();
    let MappingChange::Invalid(errors) = refused else { panic!("{refused:?}") };
    let found: Vec<(u64, String)> = errors.0.iter().map(|e| (e.place().1, e.message())).collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, line_of(&broken, "findes_ikke"));
    assert!(found[0].1.contains("ingen kolonne findes_ikke"), "{found:?}");
    assert_eq!(found[1].0, line_of(&broken, "dk ="));
    assert!(found[1].1.contains("altid mindst 8 tegn") && found[1].1.contains("højst 1"), "{found:?}");
    assert_eq!(app.mapping_version(), before);

    // Still in force: a delivery is booked into the tables as before.
    let set = app.send(&Delivery::one("STILL-1").soap11());
    assert_eq!(set.receipts[0].status, Status::Accepteret);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_import_bilag WHERE bilagsnr = 'STILL-1'"), 1);

    // `fkoeko targets check` names the same errors at the same lines, in a folder holding the broken profile.
    let dir = mappings_with_profile();
    std::fs::write(dir.join(PROFILE_FILE), &broken).unwrap();
    let out = fkoeko_command(&app.db_url).args(["targets", "check"]).arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("{PROFILE_FILE}:{}", line_of(&broken, "findes_ikke"))), "{stdout}");
    assert!(stdout.contains(&format!("{PROFILE_FILE}:{}", line_of(&broken, "dk ="))), "{stdout}");
    let out = fkoeko_command(&app.db_url).args(["targets", "check"]).arg(mappings_with_profile()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_profile_naming_a_table_that_does_not_exist_keeps_the_service_from_starting_on_it() {
    // At the first start the folder's files must pass; a profile whose tables are missing does not.
    let dir = tempfile::tempdir().unwrap();
    let db_url = crate::common::new_database_url(dir.path());
    let mut config = crate::common::test_config(&db_url);
    config.paths.mappings = mappings_with_profile();
    let error = fkoeko_adapter::startup::spawn(&config).err().expect("refused");
    let text = format!("{error:#}");
    assert!(text.contains(PROFILE_FILE) && text.contains("erp_import_bilag findes ikke"), "{text}");
}

#[test]
fn the_page_shows_the_rows_a_delivery_would_give_and_books_nothing() {
    use crate::web::{answer, client, get, log_in};
    let app = TestApp::start_with(with_example_profile);
    let admin = |path: &str| app.server.as_ref().unwrap().admin_url(path);
    let cookie = log_in(&app);
    let (status, page, _) = get(&admin("/importtabeller"), Some(&cookie));
    assert_eq!(status, 200);
    assert!(page.contains("target-backlog") && page.contains(PROFILE_FILE), "{page}");

    let mut too_long = Bilag::balanced("PAGE-2", "7.25");
    too_long.postings[0].text = "y".repeat(70);
    let call = Delivery::new(vec![Bilag::balanced("PAGE-1", "7.25"), too_long]).soap11();
    let (status, page, _) = answer(
        client().post(&admin("/importtabeller")).set("Cookie", &cookie).send_form(&[("integration", "SF1590_A"), ("leverance", &call)]),
    );
    assert_eq!(status, 200, "{page}");
    // PAGE-1's rows, with its amounts as the ERP gets them and its keys still to come; PAGE-2's error.
    assert!(page.contains("erp_import_linje") && page.contains("beloeb_oere") && page.contains("<td>725</td>"), "{page}");
    assert!(page.contains("<td>7,25</td>") && page.contains("<td>-7.25</td>") && page.contains("«ved bogføring»"), "{page}");
    assert!(page.contains("erp_import_linje.tekst") && page.contains("70 tegn"), "{page}");
    for table in ["erp_import_bilag", "erp_import_linje", "erp_journal", "deliveries"] {
        assert_eq!(app.count(&format!("SELECT COUNT(*) AS n FROM {table}")), 0, "{table}: a try books nothing");
    }

    // The delivery element alone, with its XML declaration, as the page says it may be pasted.
    let bare = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}", Delivery::one("PAGE-3").body());
    let (status, page, _) = answer(
        client().post(&admin("/importtabeller")).set("Cookie", &cookie).send_form(&[("integration", "SF1590_A"), ("leverance", &bare)]),
    );
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("PAGE-3") && page.contains("accepteres") && page.contains("<td>125050</td>"), "{page}");
}

#[test]
fn a_column_the_erp_drops_is_said_by_readyz_and_one_it_adds_back_clears_it() {
    let app = TestApp::start_with(|c| {
        with_example_profile(c);
        c.paths.mappings_poll_interval_ms = 50;
        c.targets.columns_refresh_secs = 0;
    });
    let readyz = || ureq::get(&app.server.as_ref().unwrap().admin_url("/readyz")).call().unwrap().into_string().unwrap();
    let wait = |present: bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while readyz().contains("passer ikke længere") != present {
            assert!(std::time::Instant::now() < deadline, "{}", readyz());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait(false);
    app.execute("ALTER TABLE erp_import_linje DROP COLUMN sag");
    wait(true);
    assert!(readyz().contains("erp_import_linje har ingen kolonne sag"), "{}", readyz());
    app.execute("ALTER TABLE erp_import_linje ADD COLUMN sag VARCHAR(60)");
    wait(false);
    assert_eq!(app.send(&Delivery::one("TILBAGE-1").soap11()).receipts[0].status, Status::Accepteret);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM erp_import_linje WHERE sag = 'TILBAGE-1/1'"), 1);
}
