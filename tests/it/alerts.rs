//! Rejection alerts by email, against a real SMTP server (aiosmtpd) started by the test.

use std::time::{Duration, Instant};

use crate::common::delivery::{new_id, Bilag, Delivery};
use crate::common::smtp::{free_port, SmtpSink};
use crate::common::*;
use fkoeko_adapter::config::Config;

const OWNER: &str = "ky@kommune.example.dk";
const FINANCE: &str = "oekonomi@kommune.example.dk";

fn alerts_to(port: u16, window_secs: u64) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.alerts.enabled = true;
        c.alerts.smtp.port = port;
        c.alerts.smtp.host = "127.0.0.1".into();
        c.alerts.from = "fkoeko@kommune.example.dk".into();
        c.alerts.copy_to = vec![FINANCE.into()];
        c.alerts.group_window_secs = window_secs;
        c.alerts.poll_interval_ms = 100;
        c.alerts.backoff_initial_secs = 1;
        c.alerts.backoff_max_secs = 1;
        c.alerts.max_attempts = 1000;
        c.alerts.smtp.timeout_secs = 5;
    }
}

fn rejected(bilag_id: &str) -> Delivery {
    let mut d = Delivery::one(bilag_id);
    d.bilag[0].postings[0].party = Some(("CPR", "3102901234".into()));
    d
}

/// What the sleeps before a count used to prove, read off the outbox instead: one more round of the sender (the
/// same `run_once` its background task runs) finds nothing due, so nothing more will be sent.
fn nothing_left_to_send(app: &TestApp) {
    let state = &app.server.as_ref().unwrap().app;
    let sender = fkoeko_adapter::alerts::sender::AlertSender::new(state.db.clone(), state.config.alerts.clone()).unwrap();
    assert_eq!(sender.run_once().unwrap(), 0, "a round of the sender found more to send");
    assert_eq!(app.count("SELECT count(*) AS n FROM alert_outbox WHERE status <> 'sent'"), 0, "alerts not sent");
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn one_rejection_gives_one_mail_to_the_owner_and_the_copy() {
    let sink = SmtpSink::start();
    let app = TestApp::start_with(alerts_to(sink.port, 0));
    let delivery = rejected("ALERT-1");
    app.send(&delivery.soap11());
    let mails = sink.wait_for(1, Duration::from_secs(20));
    let mail = &mails[0];
    let mut rcpt: Vec<&str> = mail["rcpt_tos"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    rcpt.sort();
    assert_eq!(rcpt, [OWNER, FINANCE]);
    assert_eq!(mail["to"], OWNER);
    assert_eq!(mail["cc"], FINANCE);
    assert_eq!(mail["subject"], format!("Afvist: 1 finansbilag fra KY (test) ({KY})"));
    for part in ["text", "html"] {
        let body = mail[part].as_str().unwrap();
        for needle in [
            delivery.delivery_id.as_str(),
            "ALERT-1",
            "REGEL_CPR",
            "CPR-nummeret er ugyldigt",
            "/ModtagFinansbilag/Finansbilag[1]/Postering[1]/Part/CPR",
            "310290-XXXX",
            "send de afviste igen",
        ] {
            assert!(body.contains(needle), "{part} lacks {needle}:\n{body}");
        }
        assert!(!body.contains("3102901234"), "a full CPR number in the mail");
    }
    // The server has the mail before the sender records it as sent.
    wait_until(Duration::from_secs(20), "the alert recorded as sent", || {
        app.count("SELECT count(*) AS n FROM alert_outbox WHERE status = 'sent'") == 1
    });
    assert_eq!(app.count("SELECT count(*) AS n FROM alert_outbox WHERE status = 'sent' AND attempts = 1"), 1);
    nothing_left_to_send(&app);
    assert_eq!(sink.mails().len(), 1, "sent once");
}

#[test]
fn accepted_deliveries_and_quiet_senders_send_nothing() {
    let sink = SmtpSink::start();
    let app = TestApp::start_with(alerts_to(sink.port, 0));
    app.send(&Delivery::one("OK-1").soap11());
    let quiet = Delivery { sender: QUIET_SENDER.into(), ..rejected("QUIET-1") };
    assert_eq!(app.send(&quiet.soap11()).receipts[0].status, fkoeko_adapter::domain::receipt::Status::Afvist);
    // The alert would have been written in the delivery's own transaction: there is none.
    assert_eq!(app.count("SELECT count(*) AS n FROM alert_outbox"), 0);
    nothing_left_to_send(&app);
    assert!(sink.mails().is_empty());
}

#[test]
fn rejections_within_the_window_go_out_as_one_mail() {
    let sink = SmtpSink::start();
    let app = TestApp::start_with(alerts_to(sink.port, 5));
    let mut ids = Vec::new();
    for n in 0..10 {
        // Ten deliveries of ten rejected finansbilag each: a hundred rejections, one mail.
        let bilag = (0..10)
            .map(|i| {
                let mut b = Bilag::balanced(&format!("GRP-{n}-{i}"), "10.00");
                b.postings[1].amount = "9.00".into();
                b
            })
            .collect();
        let delivery = Delivery::new(bilag);
        ids.push(delivery.delivery_id.clone());
        app.send(&delivery.soap11());
    }
    let mails = sink.wait_for(1, Duration::from_secs(30));
    wait_until(Duration::from_secs(10), "the group marked sent", || {
        app.count("SELECT count(*) AS n FROM alert_outbox WHERE status = 'sent'") == 10
    });
    nothing_left_to_send(&app);
    assert_eq!(sink.mails().len(), 1, "one mail for the window");
    let text = mails[0]["text"].as_str().unwrap();
    assert!(mails[0]["subject"].as_str().unwrap().starts_with("Afvist: 100 finansbilag"), "{}", mails[0]["subject"]);
    for id in &ids {
        assert_eq!(text.matches(id.as_str()).count(), 1, "{id} listed once");
    }
    assert_eq!(text.matches("REGEL_BALANCE").count(), 100);
}

#[test]
fn smtp_down_then_back_every_alert_arrives_exactly_once() {
    let port = free_port();
    let app = TestApp::start_with(alerts_to(port, 0));
    let mut ids = Vec::new();
    for n in 0..6 {
        // An unknown sender too: its alert goes to the finance copy only.
        let mut delivery = rejected(&format!("DOWN-{n}"));
        if n % 3 == 0 {
            delivery.sender = new_id();
        }
        ids.push(delivery.delivery_id.clone());
        app.send(&delivery.soap11());
    }
    // Nobody answers on the port: the outbox keeps the alerts and counts the tries.
    wait_until(Duration::from_secs(20), "failed tries", || {
        app.count("SELECT count(*) AS n FROM alert_outbox WHERE status = 'pending' AND attempts >= 1") == 6
    });
    let errors = app.rows("SELECT json_array(last_error) AS row FROM alert_outbox LIMIT 1", 1);
    assert!(errors[0][0].as_deref().is_some_and(|e| !e.is_empty()));

    let sink = SmtpSink::start_on(port, tempfile::tempdir().unwrap());
    wait_until(Duration::from_secs(30), "all alerts sent", || {
        app.count("SELECT count(*) AS n FROM alert_outbox WHERE status = 'sent'") == 6
    });
    nothing_left_to_send(&app);
    let mails = sink.mails();
    let all: String = mails.iter().map(|m| m["text"].as_str().unwrap()).collect();
    for id in &ids {
        assert_eq!(all.matches(id.as_str()).count(), 1, "{id} arrived exactly once");
    }
    let to_finance_only = mails.iter().filter(|m| m["to"] == FINANCE && m["cc"] == "").count();
    // Two different unknown senders (n = 0 and 3): two groups, each to the copy address alone.
    assert_eq!(to_finance_only, 2, "the unknown senders' alerts go to the copy address alone");
}

#[test]
fn an_alert_is_given_up_after_the_configured_tries_and_shows_as_failed() {
    let port = free_port();
    let app = TestApp::start_with(|c| {
        alerts_to(port, 0)(c);
        c.alerts.max_attempts = 2;
    });
    app.send(&rejected("GIVE-UP").soap11());
    wait_until(Duration::from_secs(20), "the alert to fail", || {
        app.count("SELECT count(*) AS n FROM alert_outbox WHERE status = 'failed' AND attempts = 2") == 1
    });
    let out = fkoeko_command(&app.db_url).args(["alerts", "list", "--status", "failed"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("failed") && stdout.contains(OWNER) && stdout.contains("1 alert(s)"), "{stdout}");
}

#[test]
fn two_processes_on_one_database_send_each_alert_once() {
    let sink = SmtpSink::start();
    let first = TestApp::start_with(alerts_to(sink.port, 0));
    let second = TestApp::start_beside(&first, alerts_to(sink.port, 0));
    let mut ids = Vec::new();
    for n in 0..20 {
        let delivery = rejected(&format!("TWO-{n}"));
        ids.push(delivery.delivery_id.clone());
        let app = if n % 2 == 0 { &first } else { &second };
        app.send(&delivery.soap11());
    }
    wait_until(Duration::from_secs(30), "all alerts sent", || {
        first.count("SELECT count(*) AS n FROM alert_outbox WHERE status = 'sent'") == 20
    });
    nothing_left_to_send(&first);
    nothing_left_to_send(&second);
    let all: String = sink.mails().iter().map(|m| m["text"].as_str().unwrap().to_string()).collect();
    for id in &ids {
        assert_eq!(all.matches(id.as_str()).count(), 1, "{id} arrived exactly once");
    }
}

#[test]
fn no_alert_without_its_rejection() {
    let sink = SmtpSink::start();
    let app = TestApp::start_with(|c| {
        alerts_to(sink.port, 0)(c);
        c.database.busy_timeout_ms = 200;
    });
    let delivery = rejected("ROLLBACK-1");
    let blocker = app.lock_writes();
    let (status, _) = app.post(&delivery.soap11());
    assert_eq!(status, 500);
    drop(blocker);
    // The rejection was never written, so neither was its alert.
    assert_eq!(app.count("SELECT count(*) AS n FROM alert_outbox"), 0);
    app.send(&delivery.soap11());
    let mails = sink.wait_for(1, Duration::from_secs(20));
    wait_until(Duration::from_secs(10), "the alert marked sent", || {
        app.count("SELECT count(*) AS n FROM alert_outbox WHERE status = 'sent'") == 1
    });
    nothing_left_to_send(&app);
    assert_eq!(sink.mails().len(), 1);
    assert!(mails[0]["text"].as_str().unwrap().contains(&delivery.delivery_id));
}

const OPERATORS: &str = "drift@kommune.example.dk";

fn expected(integration: fkoeko_adapter::domain::sortiment::Integration) -> fkoeko_adapter::domain::alert::ExpectedFile {
    // Due from midnight every day: whenever the test runs, today's file is due.
    fkoeko_adapter::domain::alert::ExpectedFile {
        sender: KY.parse().unwrap(),
        integration,
        by: fkoeko_adapter::domain::alert::ClockTime(chrono::NaiveTime::MIN),
        weekends: true,
    }
}

#[test]
fn an_expected_daily_file_that_has_not_arrived_is_alerted_once_and_one_that_arrived_is_not() {
    use fkoeko_adapter::domain::sortiment::Integration;
    let sink = SmtpSink::start();
    let batch = crate::common::masse::Batch::with(|c| {
        c.batch.convention = fkoeko_adapter::config::BatchConvention::Plain;
        alerts_to(sink.port, 0)(c);
        c.alerts.operators = vec![OPERATORS.into()];
        c.batch.expected = vec![expected(Integration::Sf1590A), expected(Integration::Sf1590B)];
    });
    // Today's SF1590_B file arrives; the SF1590_A file does not.
    let claims = crate::common::claims::ClaimDelivery::one(crate::common::claims::Claim::repayment("EXP-F-1"));
    batch.drop_file_for(Integration::Sf1590B, "fordringer.xml", claims.masse().as_bytes());
    assert_eq!(batch.run_once().len(), 1);

    let watcher = fkoeko_adapter::batch::expected::ExpectedFiles::new(batch.app.clone());
    let now = chrono::Local::now().naive_local();
    let missing = watcher.check(now).unwrap();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!((missing[0].integration.as_str(), missing[0].sender.as_str()), ("SF1590_A", KY));
    assert!(watcher.check(now).unwrap().is_empty(), "alerted once a day");
    // A second process sharing the database does not alert it again.
    assert!(fkoeko_adapter::batch::expected::ExpectedFiles::new(batch.app.clone()).check(now).unwrap().is_empty());

    let sender = fkoeko_adapter::alerts::sender::AlertSender::new(batch.app.db.clone(), batch.config.alerts.clone()).unwrap();
    sender.run_once().unwrap();
    let mails = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0]["to"], OWNER);
    assert_eq!(mails[0]["cc"], OPERATORS);
    let today = now.date().to_string();
    assert_eq!(mails[0]["subject"], format!("Forventet fil ikke modtaget: SF1590_A fra KY (test) ({KY}) den {today} kl. 00:00"));
    assert!(mails[0]["text"].as_str().unwrap().contains("Batchfiler"), "{}", mails[0]["text"]);
}

#[test]
fn the_service_looks_for_expected_files_on_its_own() {
    let sink = SmtpSink::start();
    let app = TestApp::start_with(|c| {
        alerts_to(sink.port, 0)(c);
        c.batch.expected = vec![expected(fkoeko_adapter::domain::sortiment::Integration::Sf1590A)];
        c.batch.expected_check_secs = 1;
    });
    let mails = sink.wait_for(1, Duration::from_secs(20));
    assert!(mails[0]["subject"].as_str().unwrap().starts_with("Forventet fil ikke modtaget: SF1590_A"), "{mails:?}");
    assert_eq!(app.count("SELECT COUNT(*) AS n FROM expected_file_alerts"), 1);
}
