//! Straks calls survive the server being killed: `fkoeko serve` is killed with SIGKILL while eight clients send
//! (on one line, indented and one tag a line), its writer in the middle of its groups. Every call answered
//! Accepteret before the kill is in the database; nothing is half-written; and once every call is sent again to
//! a new process, every finansbilag is booked exactly once and each call answered before gets the very receipt
//! it got then.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::delivery::{indented, one_line, Delivery};
use crate::common::*;
use fkoeko_adapter::domain::receipt::Status;

const CALLS: usize = 240;

/// The server, killed however the test ends, and its address.
struct Server(KillOnDrop, String);

impl Server {
    fn start(db_url: &str) -> Self {
        let port = free_port();
        let child = fkoeko_command(db_url)
            .arg("serve")
            .env("FKOEKO_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Held from here, so that it is killed also when it does not come up.
        let server = Server(KillOnDrop(child), format!("http://127.0.0.1:{port}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(&format!("{}/sf1590a?wsdl", server.1)).call().is_err() {
            assert!(Instant::now() < deadline, "the server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The answer's body when it is HTTP 200; `None` when the call failed (the server was gone).
    fn post(&self, body: &str) -> Option<String> {
        let answer = ureq::post(&format!("{}/sf1590a", self.1)).set("Content-Type", "text/xml; charset=utf-8").send_string(body);
        answer.ok().map(|r| r.into_string().unwrap())
    }
}

#[test]
fn a_straks_server_killed_midway_loses_no_answered_call_and_books_each_finansbilag_once() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = new_database_url(dir.path());
    // Every fifth call carries the finansbilag of the call before it again, under a new LeveranceId: copies that
    // the writer meets in one group, or across the kill.
    let mut calls: Vec<Delivery> = Vec::new();
    for n in 0..CALLS {
        let bilag = if n % 5 == 4 { format!("KILL-{}", n - 1) } else { format!("KILL-{n}") };
        calls.push(Delivery::one(&bilag));
    }
    // In the layouts senders use: on one line (most clients), indented, and one tag a line; a copy of a
    // finansbilag mostly comes in another layout than the first, and is the same finansbilag.
    let bodies: Vec<String> = calls
        .iter()
        .enumerate()
        .map(|(n, call)| match n % 3 {
            0 => one_line(&call.soap11()),
            1 => indented(&call.soap11()),
            _ => call.soap11(),
        })
        .collect();
    let distinct_bilag = CALLS - CALLS / 5;

    let server = Server::start(&db_url);
    let answered = AtomicUsize::new(0);
    let answers: Mutex<Vec<Option<String>>> = Mutex::new(vec![None; CALLS]);
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= CALLS {
                    break;
                }
                if let Some(text) = server.post(&bodies[n]) {
                    answers.lock().unwrap()[n] = Some(text);
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        // SIGKILL once a good part is answered, while the clients are still sending.
        let deadline = Instant::now() + Duration::from_secs(120);
        while answered.load(Ordering::SeqCst) < CALLS / 4 {
            assert!(Instant::now() < deadline, "the calls were not answered");
            std::thread::sleep(Duration::from_millis(2));
        }
        kill_9(&server);
    });
    let answers = answers.into_inner().unwrap();
    let before: Vec<(usize, String)> = answers.iter().enumerate().filter_map(|(n, a)| a.clone().map(|a| (n, a))).collect();
    assert!(before.len() >= CALLS / 4 && before.len() < CALLS, "killed after {} of {CALLS} answers", before.len());

    // Every call answered Accepteret is written, with its import rows.
    for (n, text) in &before {
        let receipt = &parse_receipts(text).receipts[0];
        assert_eq!(receipt.status, Status::Accepteret, "{text}");
        let bilag = &receipt.reference;
        assert_eq!(count_in(&db_url, &format!("SELECT count(*) AS n FROM erp_journal WHERE bilag_id = '{bilag}'")), 1, "call {n}");
        assert_eq!(
            count_in(&db_url, &format!("SELECT count(*) AS n FROM deliveries WHERE leverance_id = '{}'", calls[*n].delivery_id)),
            1,
            "call {n}"
        );
    }
    // Nothing is half-written: every delivery row has its answer, every accepted receipt its journal and lines.
    assert_eq!(count_in(&db_url, "SELECT count(*) AS n FROM deliveries WHERE response_json = ''"), 0);
    assert_eq!(
        count_in(
            &db_url,
            "SELECT count(*) AS n FROM receipts r WHERE NOT EXISTS (SELECT 1 FROM erp_journal j WHERE j.kvittering_id = r.kvittering_id)"
        ),
        0
    );
    let journals = count_in(&db_url, "SELECT count(*) AS n FROM erp_journal");
    assert_eq!(count_in(&db_url, "SELECT count(*) AS n FROM erp_journal_lines"), 2 * journals);

    // Every call again, to a new process: each accepted, each finansbilag booked once, each call answered before
    // answered the same.
    let server = Server::start(&db_url);
    for (n, body) in bodies.iter().enumerate() {
        let text = server.post(body).unwrap_or_else(|| panic!("call {n} after the restart"));
        let again = &parse_receipts(&text).receipts[0];
        assert_eq!(again.status, Status::Accepteret, "{text}");
        if let Some(first) = &answers[n] {
            assert_eq!(*again, parse_receipts(first).receipts[0], "call {n}");
        }
    }
    assert_eq!(count_in(&db_url, "SELECT count(*) AS n FROM erp_journal") as usize, distinct_bilag);
    assert_eq!(count_in(&db_url, "SELECT count(*) AS n FROM erp_journal_lines") as usize, 2 * distinct_bilag);
    assert_eq!(count_in(&db_url, "SELECT count(*) AS n FROM deliveries") as usize, CALLS);
}

/// SIGKILL, as `kill -9` would.
fn kill_9(server: &Server) {
    let status = std::process::Command::new("kill").args(["-9", &server.0 .0.id().to_string()]).status().unwrap();
    assert!(status.success());
}
