//! File targets: the example profile in docs/examples/profiles/file writes a CSV and a fixed-width file per
//! delivery into a folder the ERP imports from; complete files only, each written once, across a kill -9.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fkoeko_adapter::config::Config;
use fkoeko_adapter::domain::receipt::Status;
use fkoeko_adapter::domain::target::PROFILE_FILE;
use fkoeko_adapter::target_files::FileWriter;

use crate::common::delivery::{one_line, today, Bilag, Delivery, Posting};
use crate::common::serve::ServeProcess;
use crate::common::*;

const EXAMPLE: &str = "docs/examples/profiles/file";

fn mappings_with_file_profile() -> PathBuf {
    let dir = copy_of_mappings();
    std::fs::copy(repo(EXAMPLE).join(PROFILE_FILE), dir.join(PROFILE_FILE)).unwrap();
    dir
}

fn with_file_profile(folder: &Path) -> impl FnOnce(&mut Config) + '_ {
    move |config: &mut Config| {
        config.paths.mappings = mappings_with_file_profile();
        config.targets.folders.insert("erp".into(), folder.to_path_buf());
        config.targets.interval_ms = 50;
    }
}

/// The files in a folder by name, once none is hidden (being written) and `count` are there.
fn files_in(folder: &Path, count: usize) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names: Vec<String> =
            std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        if names.len() == count && names.iter().all(|n| !n.starts_with('.')) {
            return names.into_iter().map(|n| (n.clone(), std::fs::read_to_string(folder.join(&n)).unwrap())).collect();
        }
        let hidden: Vec<&String> = names.iter().filter(|n| n.starts_with('.')).collect();
        assert!(
            Instant::now() < deadline,
            "expected {count} files in {}, found {} (of them being written: {hidden:?})",
            folder.display(),
            names.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_delivery_gets_its_csv_and_fixed_width_files_with_exact_amounts() {
    let folder = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(with_file_profile(folder.path()));
    let mut rejected = Bilag::balanced("FIL-2", "10.00");
    rejected.postings[1].amount = "9.99".into();
    let postings = vec![Posting::debit(1, "0.01"), Posting::debit(2, "9999999999999.98"), Posting::credit(3, "9999999999999.99")];
    let delivery = Delivery::new(vec![Bilag { id: "FIL-1".into(), date: today(), postings }, rejected]);
    let set = app.send(&delivery.soap11());
    let statuses: Vec<Status> = set.receipts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Status::Accepteret, Status::Afvist]);
    let batch = app.count("SELECT CAST(MAX(id) AS BIGINT) AS n FROM deliveries");
    let journal = app.count("SELECT CAST(MAX(id) AS BIGINT) AS n FROM erp_journal");

    let files = files_in(folder.path(), 2);
    let csv = &files[&format!("bilag-{batch:010}.csv")];
    let today = today();
    let dato = format!("{}-{}-{}", &today[8..10], &today[5..7], &today[..4]);
    assert_eq!(csv, &format!("BATCH;BILAGSNR;DATO;POSTERINGER;REFERENCE\n{batch};FIL-1;{dato};3;erp_journal:{journal}\n"));

    let fixed = &files[&format!("linjer-{batch:010}.txt")];
    let lines: Vec<&str> = fixed.lines().collect();
    assert_eq!(lines.len(), 3, "{fixed}");
    // Widths 10, 5, 12, 18, 8, 40: every line exactly 93 characters, numbers to the right, text to the left.
    assert!(lines.iter().all(|l| l.chars().count() == 93), "{fixed}");
    let amounts: Vec<&str> = lines.iter().map(|l| l[27..45].trim_start()).collect();
    assert_eq!(amounts, vec!["1", "999999999999998", "-999999999999999"]);
    assert_eq!(&lines[0][..10], format!("{journal:>10}"));
    assert_eq!(&lines[0][10..15], "    1");
    assert_eq!(lines[0][53..].trim_end(), "KONTANTHJÆLP");
    // The amounts in øre are the received ones, to the øre, as the adapter's own table has them.
    let own: Vec<String> = app
        .rows("SELECT json_array(amount) AS row FROM erp_journal_lines ORDER BY line_no", 1)
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(own, vec!["0.01", "9999999999999.98", "9999999999999.99"]);

    // Sent again: the first receipts, and no file more.
    assert_eq!(app.send(&delivery.soap11()).receipts, set.receipts);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(files_in(folder.path(), 2).len(), 2);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM target_files WHERE state = 'written'"), 2);
}

#[test]
fn a_value_wider_than_its_fixed_width_column_rejects_the_finansbilag_and_writes_nothing_of_it() {
    let folder = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(with_file_profile(folder.path()));
    let mut wide = Bilag::balanced("WIDE-1", "10.00");
    wide.postings[0].text = "T".repeat(41);
    let set = app.send(&Delivery::new(vec![wide, Bilag::balanced("OK-2", "10.00")]).soap11());
    assert_eq!(set.receipts[0].status, Status::Afvist);
    assert_eq!(set.receipts[0].errors[0].code.as_str(), "MAPNING_MANGLER");
    assert!(set.receipts[0].errors[0].text.contains("erp/linjer.TEKST") && set.receipts[0].errors[0].text.contains("41 tegn"));
    let files = files_in(folder.path(), 2);
    let csv = files.iter().find(|(name, _)| name.ends_with(".csv")).unwrap().1;
    assert!(csv.contains(";OK-2;") && !csv.contains("WIDE-1"), "{csv}");
    assert_eq!(files.values().map(|c| c.lines().count()).sum::<usize>(), 2 + 2, "a header and OK-2, and OK-2's two lines");
}

#[test]
fn a_file_left_mid_write_by_a_crash_is_finished_once() {
    let folder = tempfile::tempdir().unwrap();
    // The writer does not run in the service here: the test plays the crash at each step itself.
    let app = TestApp::start_with(with_file_profile(folder.path()));
    for n in 0..3 {
        app.send(&Delivery::one(&format!("CRASH-{n}")).soap11());
    }
    let before = files_in(folder.path(), 6);
    // The service renames a file into place and then records it as written: on a busy machine the test could
    // look between the two and see a file left mid-write. Its writer is done when all six are recorded.
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.count("SELECT COUNT(*) AS n FROM target_files WHERE state = 'written'") < 6 {
        assert!(Instant::now() < deadline, "the service did not record its six files as written");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A writer of the test's own plays the next start after a crash at each step (the service's own writer
    // finishes only files left longer than a minute).
    let db = app.server.as_ref().unwrap().app.db.clone();
    let folders: BTreeMap<String, PathBuf> = [("erp".to_string(), folder.path().to_path_buf())].into();
    let mut writer = FileWriter::new(db, folders, Default::default());
    // With everything written, a round at start writes nothing again.
    assert_eq!(writer.round(true).unwrap(), 0);
    assert_eq!(files_in_now(folder.path()), before);

    // A file recorded as renaming whose rename happened (the temporary file is gone): left as it is, never
    // written again, even when the ERP has taken it away already.
    let name = before.keys().next().unwrap().clone();
    std::fs::remove_file(folder.path().join(&name)).unwrap();
    app.execute(&format!("UPDATE target_files SET state = 'renaming' WHERE name = '{name}'"));
    writer.round(true).unwrap();
    assert!(!folder.path().join(&name).exists(), "taken by the ERP: not written again");
    assert_eq!(app.count(&format!("SELECT COUNT(*) AS n FROM target_files WHERE name = '{name}' AND state = 'written'")), 1);

    // One recorded as renaming with its temporary file still there: renamed into place.
    let second = before.keys().nth(1).unwrap().clone();
    std::fs::rename(folder.path().join(&second), folder.path().join(format!(".{second}.tmp"))).unwrap();
    app.execute(&format!("UPDATE target_files SET state = 'renaming' WHERE name = '{second}'"));
    writer.round(true).unwrap();
    assert_eq!(std::fs::read_to_string(folder.path().join(&second)).unwrap(), before[&second]);
    assert!(!folder.path().join(format!(".{second}.tmp")).exists());

    // One recorded as writing (it never got its name): written again from its rows, whole.
    let third = before.keys().nth(2).unwrap().clone();
    std::fs::remove_file(folder.path().join(&third)).unwrap();
    std::fs::write(folder.path().join(format!(".{third}.tmp")), "half a li").unwrap();
    app.execute(&format!("UPDATE target_files SET state = 'writing' WHERE name = '{third}'"));
    writer.round(true).unwrap();
    assert_eq!(std::fs::read_to_string(folder.path().join(&third)).unwrap(), before[&third]);
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM target_files WHERE state <> 'written'"), 0);
}

fn files_in_now(folder: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .map(|n| (n.clone(), std::fs::read_to_string(folder.join(&n)).unwrap()))
        .collect()
}

#[test]
fn files_are_complete_and_written_once_across_a_kill_9() {
    const CALLS: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let db_url = new_database_url(dir.path());
    let folder = tempfile::tempdir().unwrap();
    let mappings = mappings_with_file_profile();
    let calls: Vec<String> = (0..CALLS).map(|n| one_line(&Delivery::one(&format!("K9-{n}")).soap11())).collect();

    let env = [
        ("FKOEKO_PATHS__MAPPINGS", mappings.to_str().unwrap()),
        ("FKOEKO_TARGETS__FOLDERS__ERP", folder.path().to_str().unwrap()),
        ("FKOEKO_TARGETS__INTERVAL_MS", "20"),
    ];
    let server = ServeProcess::start(&db_url, &env);
    let next = AtomicUsize::new(0);
    let sent = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= CALLS || server.post(calls[n].as_bytes()).0 == 0 {
                    return;
                }
                sent.fetch_add(1, Ordering::SeqCst);
            });
        }
        // Killed while calls come and files are written.
        while sent.load(Ordering::SeqCst) < CALLS / 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        server.kill_9();
    });
    drop(server);

    // A new process takes the rest of the calls and finishes what was left.
    let server = ServeProcess::start(&db_url, &env);
    for call in &calls {
        assert_eq!(server.post(call.as_bytes()).0, 200);
    }
    let deliveries = count_in(&db_url, "SELECT COUNT(*) AS n FROM deliveries");
    let expected_files = 2 * deliveries as usize;
    let files = files_in(folder.path(), expected_files);
    // Every finansbilag once in the CSV files and with both lines in the fixed-width ones; no line cut short.
    let mut bilag = BTreeSet::new();
    let mut journal_lines = 0;
    for (name, content) in &files {
        assert!(content.ends_with('\n'), "{name} is complete");
        if name.ends_with(".csv") {
            let mut lines = content.lines();
            assert_eq!(lines.next(), Some("BATCH;BILAGSNR;DATO;POSTERINGER;REFERENCE"), "{name}");
            for line in lines {
                let id = line.split(';').nth(1).unwrap().to_string();
                assert!(bilag.insert(id.clone()), "{id} is in two files");
            }
        } else {
            for line in content.lines() {
                assert_eq!(line.chars().count(), 93, "{name}: {line}");
                journal_lines += 1;
            }
        }
    }
    let booked = count_in(&db_url, "SELECT COUNT(*) AS n FROM erp_journal");
    assert_eq!(bilag.len() as i64, booked);
    assert_eq!(bilag.len(), CALLS, "each finansbilag booked once and written once");
    assert_eq!(journal_lines, 2 * CALLS);
    assert_eq!(count_in(&db_url, "SELECT COUNT(*) AS n FROM target_outbox WHERE file_id IS NULL"), 0);
}

#[test]
fn a_batch_file_larger_than_a_round_gets_one_whole_file_per_target() {
    // 6,000 finansbilag: 18,000 rows for the files, more than the writer looks at in one round and many pages
    // of rows to write; each file is still one, whole, written once the batch file is decided.
    const BILAG: usize = 6_000;
    let folder = tempfile::tempdir().unwrap();
    let batch = crate::common::masse::Batch::with(|c| {
        c.batch.convention = fkoeko_adapter::config::BatchConvention::Plain;
        with_file_profile(folder.path())(c);
    });
    let writer_status = Default::default();
    let folders: BTreeMap<String, PathBuf> = [("erp".to_string(), folder.path().to_path_buf())].into();
    let mut writer = FileWriter::new(batch.app.db.clone(), folders, writer_status);
    let delivery = Delivery::new((0..BILAG).map(|n| Bilag::balanced(&format!("STOR-{n}"), "1.00")).collect());
    batch.drop_file("stor.xml", delivery.masse().as_bytes());
    let handled = batch.run_once();
    assert_eq!((handled[0].accepted, handled[0].rejected), (BILAG as i32, 0));
    // Rounds until nothing waits.
    while writer.round(false).unwrap() > 0 {}
    let files = files_in_now(folder.path());
    assert_eq!(files.len(), 2, "{:?}", files.keys().collect::<Vec<_>>());
    let csv = files.iter().find(|(n, _)| n.ends_with(".csv")).unwrap().1;
    let fixed = files.iter().find(|(n, _)| n.ends_with(".txt")).unwrap().1;
    assert_eq!(csv.lines().count(), 1 + BILAG);
    assert_eq!(fixed.lines().count(), 2 * BILAG);
    let ids: BTreeSet<&str> = csv.lines().skip(1).map(|l| l.split(';').nth(1).unwrap()).collect();
    assert_eq!(ids.len(), BILAG, "each finansbilag once");
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM target_outbox WHERE file_id IS NULL"), 0);
}

#[test]
fn a_folder_that_goes_away_holds_files_back_visibly_and_a_foreign_file_is_never_overwritten() {
    let base = tempfile::tempdir().unwrap();
    let folder = base.path().join("erp");
    std::fs::create_dir(&folder).unwrap();
    let app = TestApp::start_with(with_file_profile(&folder));
    let readyz = || ureq::get(&app.server.as_ref().unwrap().admin_url("/readyz")).call().unwrap().into_string().unwrap();

    // The folder goes away: the delivery is accepted; its files wait, counted, and the writer says why.
    let away = base.path().join("erp-away");
    std::fs::rename(&folder, &away).unwrap();
    assert_eq!(app.send(&Delivery::one("AWAY-1").soap11()).receipts[0].status, Status::Accepteret);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !readyz().contains("importfilerne kan ikke skrives") {
        assert!(Instant::now() < deadline, "{}", readyz());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(app.count("SELECT COUNT(*) AS n FROM target_outbox") > 0);
    let backlog = app.server.as_ref().unwrap().app.db.target_backlog().unwrap();
    assert_eq!(backlog.rows, 3, "the bilag row and its two lines wait: {backlog:?}");

    // Back: written by the running service, without a restart, and the warning is gone.
    std::fs::rename(&away, &folder).unwrap();
    let files = files_in(&folder, 2);
    assert!(files.values().any(|c| c.contains(";AWAY-1;")));
    let deadline = Instant::now() + Duration::from_secs(20);
    while readyz().contains("importfilerne") {
        assert!(Instant::now() < deadline, "{}", readyz());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(app.server.as_ref().unwrap().app.db.target_backlog().unwrap().rows, 0);

    // A file of the name the next delivery's would get is there already (the ERP's, not imported yet): it is
    // left as it is, and the delivery's file waits, said on /readyz, until the name is free.
    let next_batch = app.count("SELECT CAST(MAX(id) AS BIGINT) AS n FROM deliveries") + 1;
    let foreign = folder.join(format!("bilag-{next_batch:010}.csv"));
    std::fs::write(&foreign, "ERP'ENS EGEN FIL\n").unwrap();
    assert_eq!(app.send(&Delivery::one("TAKEN-1").soap11()).receipts[0].status, Status::Accepteret);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !readyz().contains("exists already and is not this file") {
        assert!(Instant::now() < deadline, "{}", readyz());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "ERP'ENS EGEN FIL\n");
    std::fs::remove_file(&foreign).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !foreign.exists() || !std::fs::read_to_string(&foreign).unwrap().contains(";TAKEN-1;") {
        assert!(Instant::now() < deadline, "the waiting file is written once the name is free");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_line_break_in_a_fixed_width_value_rejects_the_finansbilag() {
    let folder = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(with_file_profile(folder.path()));
    let mut broken = Bilag::balanced("BRUD-1", "10.00");
    broken.postings[0].text = "to&#10;linjer".into();
    let set = app.send(&Delivery::new(vec![broken]).soap11());
    assert_eq!(set.receipts[0].status, Status::Afvist);
    let text = &set.receipts[0].errors[0].text;
    assert!(text.contains("erp/linjer.TEKST") && text.contains("linjeskift"), "{text}");
}
