//! The `fkoeko` binary as an operator runs it.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::claims::{Claim, ClaimDelivery};
use crate::common::delivery::{Bilag, Delivery};
use crate::common::*;
use fkoeko_adapter::storage::Backend;

/// The binary, on a database of the test's own (SQLite, or PostgreSQL in .ci/run's second pass).
fn fkoeko(db_url: &str) -> Command {
    let mut command = fkoeko_command(db_url);
    command.env("RUST_LOG", "trace");
    command
}

#[test]
fn validate_prints_the_receipt_and_books_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    let good = dir.path().join("good.xml");
    std::fs::write(&good, Delivery::one("CLI-1").soap11()).unwrap();
    // Only the receipt, and nothing written anywhere: no database, no log.
    let out = fkoeko(&db).arg("validate").arg(&good).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("<Status>Accepteret</Status>"), "{stdout}");
    assert_valid_receipt(stdout.trim());
    assert!(stderr.is_empty(), "logs only with -v: {stderr}");
    let tables = "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'";
    match db.starts_with("postgres") {
        true => assert_eq!(count_in(&db, tables), 0, "validate wrote to the database"),
        false => assert!(!std::path::Path::new(&db).exists(), "validate left a database file behind"),
    }
    let out = fkoeko(&db).args(["validate", "-v"]).arg(&good).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // CPR numbers never appear in full, not even in trace logs.
    assert!(!stdout.contains("0101901234") && !stderr.contains("0101901234"), "{stderr}");
    assert!(stderr.contains("leverance_id="), "the delivery span carries its id: {stderr}");

    // A claim (SF1590_B) is recognised by its namespace.
    let claim = dir.path().join("claim.xml");
    std::fs::write(&claim, ClaimDelivery::one(Claim::repayment("CLI-F-1")).soap11()).unwrap();
    let out = fkoeko(&db).arg("validate").arg(&claim).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("<Reference>CLI-F-1</Reference><Status>Accepteret</Status>"), "{stdout}");

    let mut unbalanced = Bilag::balanced("CLI-2", "10.00");
    unbalanced.postings[1].amount = "9.00".into();
    let bad = dir.path().join("bad.xml");
    // A masse file: the same children under FinansbilagLeverance.
    std::fs::write(&bad, Delivery::new(vec![unbalanced]).body().replace("ModtagFinansbilag", "FinansbilagLeverance")).unwrap();
    let out = fkoeko(&db).arg("validate").arg(&bad).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("<Kode>REGEL_BALANCE</Kode>"), "{stdout}");
}

#[test]
fn sortiment_load_reports_file_and_line_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[afsender]]\nsystem = \"6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01\"\nnavn = \"KY\"\nmyndighed = \"29189847\"\ngyldig_fra = \"2024-01-01\"\nintegrationer = [\"SF1590_A\"]\n",
    )
    .unwrap();
    let out = fkoeko(&db).args(["sortiment", "load"]).arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains(&format!("{}:4:13: myndighed: CVR-nummeret består ikke modulus 11-kontrollen", bad.display())), "{stderr}");
    assert!(stderr.contains(&format!("{}:1:1: afsender", bad.display())), "{stderr}");
    // A wrong type says what was expected, where.
    let typed = dir.path().join("typed.toml");
    let content = std::fs::read_to_string(repo("tests/fixtures/sortiment.toml")).unwrap();
    let at = content.find("funktion = ").expect("a kontering pattern in the fixture");
    let line = content[..at].matches('\n').count() + 1;
    let end = at + content[at..].find('\n').unwrap();
    std::fs::write(&typed, format!("{}funktion = 55772{}", &content[..at], &content[end..])).unwrap();
    let out = fkoeko(&db).args(["sortiment", "load"]).arg(&typed).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("{}:{line}:", typed.display())) && stderr.contains("en tekst i anførselstegn eller en liste"),
        "{stderr}"
    );
    assert!(!stderr.contains("untagged"), "{stderr}");

    let first = repo("tests/fixtures/sortiment.toml");
    let out = fkoeko(&db).args(["sortiment", "load"]).arg(&first).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("loaded as sortiment version 1"));
    let out = fkoeko(&db).args(["sortiment", "load"]).arg(&first).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing changed"));
    let second = dir.path().join("second.toml");
    let changed = std::fs::read_to_string(&first).unwrap().replace("KY (test)", "KY (omdøbt)");
    std::fs::write(&second, changed).unwrap();
    let out = fkoeko(&db).args(["sortiment", "load"]).arg(&second).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("loaded as sortiment version 2"));
    assert_eq!(count_in(&db, "SELECT count(*) AS n FROM sortiment_versions"), 2);
    assert_eq!(count_in(&db, "SELECT count(*) AS n FROM sortiment_senders WHERE name = 'KY (test)' AND version_id = 1"), 1);
    assert_eq!(count_in(&db, "SELECT count(*) AS n FROM sortiment_senders WHERE name = 'KY (omdøbt)' AND version_id = 2"), 1);
}

/// `validate --database` decides by what is in force in the database, which it opens only to read.
#[test]
fn validate_by_the_database_reads_it_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    // A database as the service leaves it: migrated, the test sortiment and the mappings in force.
    drop(fkoeko_adapter::startup::App::build(&test_config(&db)).unwrap());
    // Each file's name and a digest of its content: no file is changed, and none is added (no -wal or -shm
    // left behind: the database no process has open is read as immutable).
    let files_of = || -> Vec<(String, String)> {
        use sha2::Digest;
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let digest = hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap_or_default()));
                (p.file_name().unwrap().to_string_lossy().into_owned(), digest)
            })
            .collect();
        files.sort();
        files
    };
    let before = files_of();
    let deliveries = || if db.starts_with("postgres") { count_in(&db, "SELECT count(*) AS n FROM deliveries") } else { 0 };
    let delivery = dir.path().join("d.xml");
    std::fs::write(&delivery, Delivery::one("CLI-DB-1").soap11()).unwrap();
    let out = fkoeko(&db).args(["validate", "--database"]).arg(&delivery).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("<Status>Accepteret</Status>"), "{stdout}");
    std::fs::remove_file(&delivery).unwrap();
    assert_eq!(files_of(), before, "the database's files are as they were");
    assert_eq!(deliveries(), 0);
    // A database that is not there is an error, not a new, empty one.
    let missing = dir.path().join("mangler.db").display().to_string();
    if !db.starts_with("postgres") {
        let out = fkoeko(&missing)
            .args(["validate", "--database"])
            .arg(repo("fuzz/seeds/parse_delivery/finansbilag-soap11.xml"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!std::path::Path::new(&missing).exists());
    }
}

/// A sortiment without a sender, and mapping files without a rule, would reject everything: they are refused
/// unless the operator says so, and the version in force stays.
#[test]
fn an_empty_sortiment_or_rules_file_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    let out = fkoeko(&db).args(["sortiment", "load"]).arg(repo("tests/fixtures/sortiment.toml")).output().unwrap();
    assert!(out.status.success());
    let empty = dir.path().join("tom.toml");
    std::fs::write(&empty, "# intet her endnu\n").unwrap();
    let out = fkoeko(&db).args(["sortiment", "load"]).arg(&empty).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has no [[afsender]]") && stderr.contains("AFSENDER_UKENDT"), "{stderr}");
    assert_eq!(count_in(&db, "SELECT count(*) AS n FROM sortiment_versions"), 1, "the version in force stays");
    let out = fkoeko(&db).args(["sortiment", "load", "--allow-empty"]).arg(&empty).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(count_in(&db, "SELECT count(*) AS n FROM sortiment_versions"), 2);

    // konti.csv with its header and nothing else.
    let folder = copy_of_mappings();
    let konti = folder.join("konti.csv");
    let header = std::fs::read_to_string(&konti).unwrap().lines().find(|l| !l.starts_with('#')).unwrap().to_string();
    std::fs::write(&konti, format!("{header}\n")).unwrap();
    let out = fkoeko(&db).args(["mappings", "check"]).arg(&folder).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("konti.csv:1: filen har ingen regler"), "{stdout}");
    let out = fkoeko(&db).args(["mappings", "check", "--allow-empty"]).arg(&folder).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// `mappings check` warns of rows that can never win and of what the sortiment allows that nothing maps.
#[test]
fn mappings_check_warns_of_dead_rows_and_what_the_sortiment_allows_unmapped() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    let folder = copy_of_mappings();
    let konti = folder.join("konti.csv");
    let content = std::fs::read_to_string(&konti).unwrap();
    // After "5.57.*;*;1;*;5.2" (an account, not a lookup): this row can never win.
    std::fs::write(&konti, format!("{content}5.57.72;*;1;*;5.2;*;*;*;11111111;\n")).unwrap();
    let dead_line = content.matches('\n').count() + 1;
    let earlier_line = content.lines().position(|l| l.starts_with("5.57.*;*;1;*;5.2;")).unwrap() + 1;
    let sortiment = dir.path().join("sortiment.toml");
    let fixture = std::fs::read_to_string(repo("tests/fixtures/sortiment.toml")).unwrap();
    std::fs::write(&sortiment, fixture.replacen("funktion = \"9.*\"", "funktion = \"0.22.*\"", 1)).unwrap();
    let out = fkoeko(&db).env("FKOEKO_PATHS__SORTIMENT", &sortiment).args(["mappings", "check"]).arg(&folder).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "warnings do not fail the check: {stdout}");
    assert!(stdout.contains(&format!("advarsel: konti.csv:{dead_line}: rækken bruges aldrig: række {earlier_line} passer")), "{stdout}");
    assert!(stdout.contains("funktion 0.22.*") && stdout.contains("ingen regel i konti.csv kan mappe det"), "{stdout}");
    assert!(stdout.contains("fordringstype UMAPPET"), "{stdout}");
    // The examples as shipped: no dead row. Of the fixture's konteringer, the two that kontantydelser.csv (a
    // lookup table) has no row for, and no later rule maps, are named; a lookup does not count as mapping
    // everything its rule matches.
    let out = fkoeko(&db).args(["mappings", "check"]).arg(repo("mappings")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("bruges aldrig"), "{stdout}");
    let unmapped: Vec<&str> = stdout.lines().filter(|l| l.contains("kan mappe det")).collect();
    assert_eq!(unmapped.len(), 2, "{stdout}");
    assert!(
        unmapped[0].contains("funktion 5.57.72, dranst 1, art 7.2") && unmapped[1].contains("funktion 5.57.72, dranst 2, art 5.2"),
        "{stdout}"
    );
}

/// A configuration error names the file, line and column, and the key, and says what was expected in words.
#[test]
fn a_configuration_error_names_file_line_column_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    let config = dir.path().join("fkoeko.toml");
    std::fs::write(&config, "[log]\nformat = \"text\"\n\n[server]\nworkers = \"fire\"\n").unwrap();
    let out = fkoeko(&db).arg("--config").arg(&config).args(["mappings", "check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:5:11: server.workers: the text \"fire\" is not allowed here; expected a whole number, 0 or more",
            config.display()
        )),
        "{stderr}"
    );
    for (text, said) in [
        ("[server]\nworkerz = 2\n", "server.workerz: unknown key `workerz`; the keys here are: listen, workers,"),
        ("[batch]\nconvention = \"sftp\"\n", "batch.convention: unknown value \"sftp\"; allowed: metadata, plain"),
        ("[admin]\ntls = \"ja\"\n", "admin.tls: the text \"ja\" is not allowed here; expected true or false (without quotes)"),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = fkoeko(&db).arg("--config").arg(&config).args(["mappings", "check"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(said), "{stderr}");
    }
}

/// `fkoeko serve` as a process, configured by a file and an environment variable that overrides it.
#[test]
fn serve_takes_a_config_file_and_environment_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("fkoeko.toml");
    let mut file = std::fs::File::create(&config).unwrap();
    writeln!(file, "[server]\nlisten = \"127.0.0.1:1\"\n[log]\nformat = \"json\"").unwrap();
    let mut child = fkoeko(&db)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("FKOEKO_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{base}/sf1590a?wsdl")).call().is_err() {
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = ureq::post(&format!("{base}/sf1590a"))
        .set("Content-Type", "text/xml")
        .send_string(&Delivery::one("SERVE-1").soap11())
        .unwrap()
        .into_string()
        .unwrap();
    assert!(answer.contains("<Status>Accepteret</Status>"), "{answer}");
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(logs.lines().any(|l| l.starts_with('{') && l.contains("\"leverance_id\"")), "JSON logs with the delivery span: {logs}");
    assert!(!logs.contains("0101901234"));
    assert_eq!(count_in(&db, "SELECT count(*) AS n FROM erp_journal"), 1);
}

#[test]
fn deliveries_list_and_show_what_the_page_shows() {
    let app = TestApp::start();
    let mut unmapped = Bilag::balanced("CLI-REJ", "40.00");
    unmapped.postings[0].dranst = "2".into();
    let rejected = Delivery::new(vec![unmapped]);
    app.send(&rejected.soap11());
    let accepted = Delivery::one("CLI-OK");
    app.send(&accepted.soap11());

    let out = fkoeko(&app.db_url).args(["deliveries", "list", "--rejected", "--code", "MAPNING_MANGLER"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(&rejected.delivery_id) && !stdout.contains(&accepted.delivery_id), "{stdout}");
    assert!(stdout.contains("1 delivery"), "{stdout}");
    let row = stdout.lines().find(|l| l.contains(&rejected.delivery_id)).unwrap();
    assert!(row.ends_with("MAPNING_MANGLER"), "the codes it got: {row}");

    let out = fkoeko(&app.db_url).args(["deliveries", "list", "-q", "CLI-OK"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&accepted.delivery_id) && !stdout.contains(&rejected.delivery_id), "{stdout}");

    let out = fkoeko(&app.db_url).args(["deliveries", "show", &rejected.delivery_id]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("CLI-REJ: Afvist"), "{stdout}");
    assert!(stdout.contains("MAPNING_MANGLER at /ModtagFinansbilag/Finansbilag[1]/Postering[1]/Kontering line "), "{stdout}");

    let out = fkoeko(&app.db_url).args(["deliveries", "show", &accepted.delivery_id]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("mapping {}", app.mapping_version())), "{stdout}");
    assert!(stdout.contains("-> account 55772152") && stdout.contains("by konti.csv:12 → kontantydelser.csv:3"), "{stdout}");

    let out = fkoeko(&app.db_url).args(["deliveries", "show", "00000000-0000-0000-0000-000000000001"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn mappings_check_lists_every_error_and_try_names_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    let broken = copy_of_mappings();
    let konti = broken.join("konti.csv");
    let content = std::fs::read_to_string(&konti).unwrap();
    std::fs::write(&konti, format!("{content}5.57.72;*;2\n*;*;*;*;*;*;*;*;opslag:mangler.csv;\n")).unwrap();

    let out = fkoeko(&db).args(["mappings", "check"]).arg(&broken).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("konti.csv:16: rækken har 3 kolonner, men overskriften har 10"), "{stdout}");
    assert!(stdout.contains("konti.csv:17: opslagstabellen 'mangler.csv' findes ikke"), "{stdout}");
    assert!(stdout.contains("2 error(s)"), "{stdout}");
    let out = fkoeko(&db).args(["mappings", "check"]).arg(repo("mappings")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // A file saved in Latin-1 (as a spreadsheet might): the line where it stops being UTF-8.
    let latin1 = copy_of_mappings();
    let konti = std::fs::read_to_string(latin1.join("konti.csv")).unwrap();
    let mut bytes = konti.clone().into_bytes();
    bytes.extend(b"5.57.72;*;1;*;5.2;*;*;*;55772152;afdeling=Sundhed og \xe6ldre\n");
    std::fs::write(latin1.join("konti.csv"), bytes).unwrap();
    let out = fkoeko(&db).args(["mappings", "check"]).arg(&latin1).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = konti.matches('\n').count() + 1;
    assert!(stdout.contains(&format!("konti.csv:{line}: filen er ikke UTF-8")), "{stdout}");

    // On a database nothing has run on yet: the configured folder. (With a version stored, that version.)
    let out = fkoeko(&db).args(["mappings", "try", "--funktion", "5.57.72", "--dranst", "1", "--art", "5.2"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("konti.csv:12 → kontantydelser.csv:3 -> account 55772152"), "{stdout}");
    let out = fkoeko(&db).args(["mappings", "try", "--funktion", "5.57.72", "--dranst", "2", "--art", "5.2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no rule maps this kontering"));
    let out = fkoeko(&db).args(["mappings", "try", "--funktion", "5.5772", "--dranst", "1", "--art", "5.2"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the kontering is not valid: funktion:"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = fkoeko(&db).args(["mappings", "try", "--fordringstype", "RENTE-KH"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("-> claim type DEB-RENTE, account 72990000"), "{stdout}");

    // With a version stored, the version in force: here one saved on the page, not the files on disk.
    let app = TestApp::start();
    let mut files = fkoeko_adapter::domain::mapping::read_dir(&app.config.paths.mappings).unwrap();
    files.get_mut("konti.csv").unwrap().push_str("5.57.72;*;2;*;5.2;*;*;*;55772252;\n");
    let pipeline = &app.server.as_ref().unwrap().app.pipeline;
    pipeline.change_mappings(&files, "økonomi", fkoeko_adapter::storage::mappings::MappingSource::Page, "ny regel", None, false).unwrap();
    let out = fkoeko(&app.db_url).args(["mappings", "try", "--funktion", "5.57.72", "--dranst", "2", "--art", "5.2"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("konti.csv:16 -> account 55772252"), "{stdout}");
}

#[test]
fn the_first_start_makes_the_mapping_folder_from_the_examples_and_leaves_them_as_shipped() {
    let examples = repo("mappings");
    let shipped: Vec<(std::ffi::OsString, Vec<u8>)> = {
        let mut files: Vec<_> =
            std::fs::read_dir(&examples).unwrap().map(|e| e.unwrap()).map(|e| (e.file_name(), std::fs::read(e.path()).unwrap())).collect();
        files.sort();
        files
    };
    let live = tempfile::tempdir().unwrap();
    let folder = live.path().join("data").join("mappings");
    let app = TestApp::start_with(|c| {
        c.paths.mappings = folder.clone();
        c.paths.mapping_examples = examples.clone();
    });
    // The live folder is made, with the examples' files.
    for (name, content) in &shipped {
        assert_eq!(&std::fs::read(folder.join(name)).unwrap(), content, "{name:?}");
    }
    let set = app.send(&crate::common::delivery::Delivery::one(&format!("SEED-{}", crate::common::delivery::new_id())).soap11());
    assert_eq!(set.receipts[0].status.as_str(), "Accepteret");
    drop(app);
    // The examples are as they were shipped: nothing added, nothing changed.
    let mut after: Vec<_> =
        std::fs::read_dir(&examples).unwrap().map(|e| e.unwrap()).map(|e| (e.file_name(), std::fs::read(e.path()).unwrap())).collect();
    after.sort();
    assert_eq!(after, shipped);
    // Out of the box the live folder is under data/, which git ignores.
    assert_eq!(fkoeko_adapter::config::Config::default().paths.mappings, std::path::PathBuf::from("data/mappings"));
}

/// `fkoeko batch metadata` writes the `.metadata` the platform would have written, which the contract's XSD
/// allows and the receiver reads back as that file from that sender.
#[test]
fn batch_metadata_writes_what_the_platform_would_have() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    let file = dir.path().join("bilag.xml");
    std::fs::write(&file, Delivery::one("META-CLI").masse()).unwrap();
    let out = fkoeko(&db)
        .args(["batch", "metadata", "--sender", "ky-sftp", "--senders-file-id", "KY-77"])
        .arg(&file)
        .env("FKOEKO_BATCH__SFTP_USERS", "[\"erp-sftp\"]")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = dir.path().join("bilag.xml.metadata");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), written.display().to_string());
    let xsd = Command::new("xmllint").arg("--noout").arg("--schema").arg(repo("schemas/sftp-metadata.xsd")).arg(&written).output().unwrap();
    assert!(xsd.status.success(), "{}", String::from_utf8_lossy(&xsd.stderr));
    let metadata = fkoeko_adapter::batch::metadata::parse(&std::fs::read(&written).unwrap()).unwrap();
    assert_eq!(metadata.file_name, "bilag.xml");
    assert_eq!(metadata.size_in_bytes, std::fs::metadata(&file).unwrap().len());
    assert_eq!((metadata.sender.as_str(), metadata.senders_file_id.as_deref()), ("ky-sftp", Some("KY-77")));
    assert_eq!(metadata.recipients, vec!["erp-sftp"]);
    assert!(metadata.file_transfer_uuid.is_some());

    // Routed dynamically: needs this installation's IT system.
    let out = fkoeko(&db).args(["batch", "metadata", "--sender", "ky-sftp", "--routed", KY]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("installation.it_system"));
}

/// A configuration or sortiment file saved in another encoding than UTF-8 is refused with the line and column
/// of its first byte that is not UTF-8.
#[test]
fn a_file_that_is_not_utf8_names_where() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    let config = dir.path().join("fkoeko.toml");
    // "Kommune Ø" in Latin-1 on line 2.
    std::fs::write(&config, b"[server]\n# Kommune \xd8st\nworkers = 2\n").unwrap();
    let out = fkoeko(&db).arg("--config").arg(&config).args(["mappings", "check"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{}:2:11: the file is not UTF-8 text (byte 0xD8)", config.display())), "{stderr}");
    let sortiment = dir.path().join("sortiment.toml");
    let fixture = std::fs::read_to_string(repo("tests/fixtures/sortiment.toml")).unwrap();
    let mut latin1 = fixture.replacen("navn = \"KY (test)\"", "navn = \"KY \u{1}\"", 1).into_bytes();
    let at = latin1.iter().position(|b| *b == 1).unwrap();
    latin1[at] = 0xE6; // "æ" in Latin-1
    std::fs::write(&sortiment, &latin1).unwrap();
    let out = fkoeko(&db).args(["sortiment", "load"]).arg(&sortiment).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = fixture.lines().position(|l| l.starts_with("navn = \"KY (test)\"")).unwrap() + 1;
    assert!(stderr.contains(&format!("{}:{line}:12: the file is not UTF-8 text (byte 0xE6)", sortiment.display())), "{stderr}");
}

#[test]
fn a_backup_made_while_deliveries_are_booked_is_consistent() {
    let app = TestApp::start();
    let target = app.dir.path().join("backup.db");
    let sending = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0;
            while sending.load(std::sync::atomic::Ordering::SeqCst) {
                app.send(&Delivery::one(&format!("BACKUP-{n}")).soap11());
                n += 1;
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        let out = fkoeko_command(&app.db_url).arg("backup").arg(&target).output().unwrap();
        sending.store(false, std::sync::atomic::Ordering::SeqCst);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match Backend::of(&app.db_url) {
            Backend::Sqlite => assert!(out.status.success(), "{stderr}"),
            Backend::Postgres => {
                assert!(!out.status.success() && stderr.contains("pg_dump"), "{stderr}");
            }
        }
    });
    if Backend::of(&app.db_url) == Backend::Postgres {
        return;
    }
    // The copy is the database as of one moment: whole, and every finansbilag in it with both its lines.
    let copy = target.display().to_string();
    assert!(count_in(&copy, "SELECT COUNT(*) AS n FROM erp_journal") > 0);
    assert_eq!(
        count_in(&copy, "SELECT COUNT(*) AS n FROM erp_journal_lines"),
        2 * count_in(&copy, "SELECT COUNT(*) AS n FROM erp_journal")
    );
    assert_eq!(
        count_in(&copy, "SELECT COUNT(*) AS n FROM receipts WHERE status = 'Accepteret'"),
        count_in(&copy, "SELECT COUNT(*) AS n FROM erp_journal")
    );
    #[derive(diesel::QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::Text)]
        integrity_check: String,
    }
    let check: Check = diesel::RunQueryDsl::get_result(diesel::sql_query("PRAGMA integrity_check"), &mut connect(&copy)).unwrap();
    assert_eq!(check.integrity_check, "ok");
    // A second backup to the same name is refused, not overwritten.
    let again = fkoeko_command(&app.db_url).arg("backup").arg(&target).output().unwrap();
    assert!(!again.status.success());
}

#[test]
fn livez_answers_and_metrics_name_the_build() {
    let app = TestApp::start();
    let admin = |path: &str| app.server.as_ref().unwrap().admin_url(path);
    assert_eq!(ureq::get(&admin("/livez")).call().unwrap().into_string().unwrap(), "ok\n");
    let metrics = ureq::get(&admin("/metrics")).call().unwrap().into_string().unwrap();
    let line = format!("fkoeko_build_info{{arch=\"{}\",version=\"{}\"}} 1", std::env::consts::ARCH, env!("CARGO_PKG_VERSION"));
    assert!(metrics.contains(&line), "{metrics}");
}
