//! A batch file survives its process being killed: `fkoeko batch run-once` is killed with SIGKILL in the middle
//! of a large file, run again, and every finansbilag is booked exactly once, with exactly one receipt file.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::delivery::{Bilag, Delivery};
use crate::common::masse::{read_receipt_file, Batch};
use crate::common::KillOnDrop;
use fkoeko_adapter::domain::receipt::Status;

const BILAG: usize = 20_000;

fn run_once(batch: &Batch) -> Command {
    let mut command = crate::common::fkoeko_command(&batch.db_url);
    command
        .args(["batch", "run-once"])
        .env("FKOEKO_BATCH__DIR", &batch.config.batch.dir)
        .env("FKOEKO_BATCH__CONVENTION", "plain")
        .env("FKOEKO_BATCH__QUIET_SECS", "0")
        .env("FKOEKO_BATCH__LEASE_SECS", "2")
        .env("FKOEKO_BATCH__WORKERS", "2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Kills the run (SIGKILL) once it has committed a chunk, before it ends; returns the items done then.
fn kill_after_a_chunk(batch: &Batch, child: &mut KillOnDrop) -> i64 {
    let done = || batch.count("SELECT CAST(COALESCE(MAX(items_done), 0) AS BIGINT) AS n FROM batch_files");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if done() > 0 {
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            return done();
        }
        assert!(child.0.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(Instant::now() < deadline, "no chunk was committed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_batch_file_killed_midway_is_resumed_and_booked_exactly_once() {
    let batch = Batch::plain();
    let bilag = (0..BILAG).map(|b| Bilag::balanced(&format!("K-{b}"), "42.00")).collect();
    let text = Delivery::new(bilag).masse();
    batch.drop_file("payout.xml", text.as_bytes());

    // Killed once some chunks are committed and before the end.
    let mut child = KillOnDrop(run_once(&batch).spawn().unwrap());
    let done_at_kill = kill_after_a_chunk(&batch, &mut child);
    assert!(done_at_kill > 0 && done_at_kill < BILAG as i64, "killed at {done_at_kill} of {BILAG}");
    let outbox = batch.folders().outbox;
    assert!(Batch::names_in(&outbox).iter().all(|n| n.starts_with('.')), "no receipt file before the file is done");
    // What was committed before the kill is booked, and nothing more.
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), done_at_kill);

    // A new process takes the file over once the dead one's lease has run out, and finishes it.
    std::thread::sleep(Duration::from_secs(3));
    let out = run_once(&batch).output().unwrap();
    assert!(out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&format!("payout.xml: {BILAG} accepted, 0 rejected")), "{report}");

    assert_eq!(Batch::names_in(&outbox), vec!["payout.kvittering.xml"]);
    let (_, set) = read_receipt_file(&outbox.join("payout.kvittering.xml"));
    assert_eq!(set.receipts.len(), BILAG);
    assert!(set.receipts.iter().all(|r| r.status == Status::Accepteret));
    assert!(set.receipts.iter().enumerate().all(|(i, r)| r.reference == format!("K-{i}")), "receipts in file order");
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), BILAG as i64);
    assert_eq!(batch.count("SELECT COUNT(DISTINCT bilag_id) AS n FROM erp_journal"), BILAG as i64);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal_lines"), 2 * BILAG as i64);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM receipts"), BILAG as i64);
    assert!(Batch::names_in(&batch.folders().processing).is_empty());
    assert_eq!(Batch::names_in(&batch.folders().archive).len(), 1);

    // And run again: nothing left to do.
    let out = run_once(&batch).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

#[test]
fn a_file_whose_process_died_is_taken_over_at_once_when_an_operator_says_so() {
    const BILAG: usize = 5_000;
    let batch = Batch::plain();
    let text = Delivery::new((0..BILAG).map(|b| Bilag::balanced(&format!("T-{b}"), "7.00")).collect()).masse();
    batch.drop_file("hængt.xml", text.as_bytes());
    // An hour's lease: without the operator, the file would wait that long after its process died.
    let run = || {
        let mut command = run_once(&batch);
        command.env("FKOEKO_BATCH__LEASE_SECS", "3600");
        command
    };
    let mut child = KillOnDrop(run().spawn().unwrap());
    kill_after_a_chunk(&batch, &mut child);
    let out = run().output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "the lease holds: nothing taken");
    let id = batch.count("SELECT CAST(MAX(id) AS BIGINT) AS n FROM batch_files");

    let take_over = crate::common::fkoeko_command(&batch.db_url).args(["batch", "take-over", &id.to_string()]).output().unwrap();
    assert!(take_over.status.success(), "{}", String::from_utf8_lossy(&take_over.stderr));
    let out = run().output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&format!("hængt.xml: {BILAG} accepted, 0 rejected")), "{report}");
    assert_eq!(batch.count("SELECT COUNT(DISTINCT bilag_id) AS n FROM erp_journal"), BILAG as i64);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), BILAG as i64);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'batch_taken_over'"), 1);
    // A file that is done cannot be taken over.
    let again = crate::common::fkoeko_command(&batch.db_url).args(["batch", "take-over", &id.to_string()]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
}

/// Instances on one database whose folders are not the same (a straks-only instance keeps `batch.enabled` and a
/// `batch.dir` of its own): a file whose process died is left to an instance that has it. Taken over by one that
/// could not read it, it was failed there and held from the others for a lease at a time, round after round.
#[test]
fn a_file_whose_process_died_is_taken_over_only_by_an_instance_that_has_it() {
    const BILAG: usize = 5_000;
    let batch = Batch::plain();
    let text = Delivery::new((0..BILAG).map(|b| Bilag::balanced(&format!("D-{b}"), "5.00")).collect()).masse();
    batch.drop_file("delt.xml", text.as_bytes());
    let mut child = KillOnDrop(run_once(&batch).spawn().unwrap());
    kill_after_a_chunk(&batch, &mut child);
    let owner = batch.string("SELECT claimed_by AS s FROM batch_files");
    std::thread::sleep(Duration::from_secs(3)); // its lease (2 s) runs out

    let elsewhere = tempfile::tempdir().unwrap();
    let out = run_once(&batch).env("FKOEKO_BATCH__DIR", elsewhere.path()).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "nothing taken where the file is not");
    assert_eq!(batch.string("SELECT claimed_by AS s FROM batch_files"), owner, "its lease is left as it was");

    // The instance that has the file takes it over at once, and finishes it.
    let out = run_once(&batch).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&format!("delt.xml: {BILAG} accepted, 0 rejected")), "{report}");
    assert_eq!(batch.count("SELECT COUNT(DISTINCT bilag_id) AS n FROM erp_journal"), BILAG as i64);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), BILAG as i64);
}
