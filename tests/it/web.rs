//! The administrative listener over HTTP: login, health, readiness and metrics; and mapping changes, from the
//! page's code path and from the files, taken into use without a restart.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::delivery::{Bilag, Delivery};
use crate::common::*;
use fkoeko_adapter::domain::mapping::{read_dir, RULES_FILE};
use fkoeko_adapter::pipeline::MappingChange;
use fkoeko_adapter::storage::mappings::MappingSource;

/// An HTTP client that shows redirects instead of following them.
pub(crate) fn client() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

pub(crate) fn get(url: &str, cookie: Option<&str>) -> (u16, String, Option<String>) {
    let mut request = client().get(url);
    if let Some(cookie) = cookie {
        request = request.set("Cookie", cookie);
    }
    answer(request.call())
}

pub(crate) fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, String, Option<String>) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let (status, location) = (response.status(), response.header("Location").map(str::to_string));
    let cookie = response.header("Set-Cookie").map(str::to_string);
    let body = response.into_string().unwrap();
    (status, body, location.or(cookie))
}

/// Logs in; returns the Cookie header for the session.
pub(crate) fn log_in(app: &TestApp) -> String {
    let response = client()
        .post(&app.server.as_ref().unwrap().admin_url("/login"))
        .send_form(&[("user", ADMIN_USER), ("password", ADMIN_PASSWORD), ("next", "/leverancer")])
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.header("Location"), Some("/leverancer"));
    let cookie = response.header("Set-Cookie").expect("a session cookie").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    cookie.split(';').next().unwrap().to_string()
}

/// A bilag whose payout (5.57.72, dranst 2, art 5.2) is in KY's sortiment but mapped by no rule.
fn unmapped(bilag_id: &str) -> Delivery {
    let mut bilag = Bilag::balanced(bilag_id, "40.00");
    bilag.postings[0].dranst = "2".into();
    Delivery::new(vec![bilag])
}

const NEW_RULE: &str = "5.57.72;*;2;*;5.2;*;*;*;55772252;afdeling=SOC\n";

#[test]
fn the_page_needs_a_login_and_a_session_ends_at_logout() {
    let app = TestApp::start();
    let admin = |path: &str| app.server.as_ref().unwrap().admin_url(path);
    let (status, _, location) = get(&admin("/afvisninger?kode=MAPNING_MANGLER"), None);
    assert_eq!((status, location.as_deref()), (303, Some("/login?next=%2Fafvisninger%3Fkode%3DMAPNING_MANGLER")));
    for path in ["/leverancer/1", "/mapninger", "/mapninger/ret", "/mapninger/historik", "/sortiment"] {
        assert_eq!(get(&admin(path), None).0, 303, "{path} without a login");
    }
    // A wrong password, or a name nobody has, gets the form again and no session.
    for (user, password) in [(ADMIN_USER, "forkert"), ("ingen", ADMIN_PASSWORD)] {
        let (status, body, cookie) = answer(client().post(&admin("/login")).send_form(&[("user", user), ("password", password)]));
        assert_eq!(status, 200);
        assert!(body.contains("Forkert brugernavn eller adgangskode."), "{body}");
        assert!(cookie.is_none(), "no session for a failed login");
    }
    // A login may only send one on to a page of this site.
    let response = client()
        .post(&admin("/login"))
        .send_form(&[("user", ADMIN_USER), ("password", ADMIN_PASSWORD), ("next", "//evil.example/")])
        .unwrap();
    assert_eq!(response.header("Location"), Some("/"));

    let cookie = log_in(&app);
    let (status, body, _) = get(&admin("/afvisninger"), Some(&cookie));
    assert_eq!(status, 200);
    assert!(body.contains(&format!("Logget ind som <strong>{ADMIN_USER}</strong>")), "{body}");
    // A form posted from another site is refused, even with the cookie.
    let (status, _, _) = answer(client().post(&admin("/logout")).set("Cookie", &cookie).set("Origin", "http://evil.example").call());
    assert_eq!(status, 403);
    assert_eq!(get(&admin("/sortiment"), Some(&cookie)).0, 200);

    let (status, _, _) = answer(client().post(&admin("/logout")).set("Cookie", &cookie).call());
    assert_eq!(status, 303);
    assert_eq!(get(&admin("/sortiment"), Some(&cookie)).0, 303, "the session ended");
    // Only the session of the login sent on to "/" above is left.
    assert_eq!(app.count("SELECT count(*) AS n FROM admin_sessions"), 1);

    // Ten wrong passwords for a name, and that name cannot log in for a while, even with the right one.
    for _ in 0..10 {
        answer(client().post(&admin("/login")).send_form(&[("user", ADMIN_USER), ("password", "gæt")]));
    }
    let (status, body, cookie) = answer(client().post(&admin("/login")).send_form(&[("user", ADMIN_USER), ("password", ADMIN_PASSWORD)]));
    assert_eq!(status, 200);
    assert!(body.contains("For mange forkerte forsøg"), "{body}");
    assert!(cookie.is_none());
}

#[test]
fn rejections_and_deliveries_are_found_by_filter_and_by_id() {
    let app = TestApp::start();
    let admin = |path: &str| app.server.as_ref().unwrap().admin_url(path);
    let rejected = unmapped("FIND-REJ");
    app.send(&rejected.soap11());
    let accepted = Delivery::one("FIND-OK");
    app.send(&accepted.soap11());
    let cookie = log_in(&app);

    let (_, body, _) = get(&admin("/afvisninger?kode=MAPNING_MANGLER&integration=SF1590_A"), Some(&cookie));
    assert!(body.contains(&rejected.delivery_id) && !body.contains(&accepted.delivery_id), "{body}");
    assert!(body.contains("<td><code>MAPNING_MANGLER</code> </td>"), "the codes column: {body}");
    let (_, body, _) = get(&admin("/afvisninger?kode=REGEL_BALANCE"), Some(&cookie));
    assert!(!body.contains(&rejected.delivery_id), "another code: {body}");
    let (_, body, _) = get(&admin(&format!("/afvisninger?afsender={EXPIRED_SENDER}")), Some(&cookie));
    assert!(!body.contains(&rejected.delivery_id), "another sender: {body}");
    let (_, body, _) = get(&admin("/afvisninger?fra=2000-01-01&til=2000-12-31"), Some(&cookie));
    assert!(!body.contains(&rejected.delivery_id), "another period: {body}");

    // By BilagId and by LeveranceId; the delivery shows what was booked where, by which rule and version.
    let (_, body, _) = get(&admin("/leverancer?q=FIND-OK"), Some(&cookie));
    assert!(body.contains(&accepted.delivery_id) && !body.contains(&rejected.delivery_id), "{body}");
    let (status, body, _) = get(&admin(&format!("/leverancer/{}", accepted.delivery_id)), Some(&cookie));
    assert_eq!(status, 200);
    assert!(body.contains("55772152") && body.contains("konti.csv:12 → kontantydelser.csv:3"), "{body}");
    assert!(body.contains(&app.mapping_version()), "{body}");
    let (_, body, _) = get(&admin(&format!("/leverancer/{}", rejected.delivery_id)), Some(&cookie));
    assert!(body.contains("MAPNING_MANGLER") && body.contains("/ModtagFinansbilag/Finansbilag[1]/Postering[1]/Kontering"), "{body}");
    assert!(body.contains("Ingen mapning fører konteringen"), "the Danish text: {body}");
    assert!(!body.contains("0101901234"), "no CPR number in full on the page");
    assert_eq!(get(&admin("/leverancer/999999"), Some(&cookie)).0, 404);

    // A delivery's items in its own order, with an item accepted before shown as booked then.
    let mixed = Delivery::new(vec![Bilag::balanced("FIND-Z", "5.00"), Bilag::balanced("FIND-OK", "1250.50")]);
    app.send(&mixed.soap11());
    let (_, body, _) = get(&admin(&format!("/leverancer/{}", mixed.delivery_id)), Some(&cookie));
    let (z, ok) = (body.find("FIND-Z – ").expect("FIND-Z shown"), body.find("FIND-OK – ").expect("FIND-OK shown"));
    assert!(z < ok, "in the delivery's order: {body}");
    assert_eq!(body.matches("Bogført i <code>erp_journal</code>").count(), 2, "both booked, one of them earlier: {body}");
    let (_, first, _) = get(&admin(&format!("/leverancer/{}", accepted.delivery_id)), Some(&cookie));
    let journal_of = |page: &str| page.split("som id ").nth(1).map(|rest| rest.split(' ').next().unwrap().to_string());
    assert_eq!(journal_of(&body[ok..]), journal_of(&first), "the earlier booking, not a second one");

    // Page by page, newest first: one, and then the one before it.
    let (_, body, _) = get(&admin("/leverancer?antal=1"), Some(&cookie));
    assert!(body.contains(&mixed.delivery_id) && !body.contains(&accepted.delivery_id), "{body}");
    let next =
        body.split(r#"<a id="older" href=""#).nth(1).expect("a link to older deliveries").split('"').next().unwrap().replace("&amp;", "&");
    let (_, body, _) = get(&admin(&next), Some(&cookie));
    assert!(body.contains(&accepted.delivery_id) && !body.contains(&mixed.delivery_id), "{next}: {body}");

    // A claim: by its FordringId; its type, account and hæftere, the CPR number masked.
    let claim = crate::common::claims::ClaimDelivery::one(crate::common::claims::Claim::repayment("FIND-F-1"));
    app.send_claims(&claim.soap11());
    let (_, body, _) = get(&admin("/leverancer?q=FIND-F-1"), Some(&cookie));
    assert!(body.contains(&claim.delivery_id), "{body}");
    let (_, body, _) = get(&admin(&format!("/leverancer/{}", claim.delivery_id)), Some(&cookie));
    assert!(body.contains("DEB-KH-TILBAGEBETALING") && body.contains("55772900"), "{body}");
    assert!(body.contains("JuridiskAnsvarlig") && body.contains("Jens Jensen") && body.contains("010190-XXXX"), "{body}");
    assert!(!body.contains("0101901234"), "no CPR number in full on the page");
}

/// The value of one series in Prometheus's text format; 0 when it is not there yet.
/// The tries are counted in the database before any password is checked: a hundred wrong ones at once get at
/// most ten checks, and the name is locked after them, the right password too. The return address stays on the
/// site whatever it says.
#[test]
fn logins_sent_at_once_get_ten_checks_and_the_name_is_locked() {
    let app = TestApp::start();
    let admin = |path: &str| app.server.as_ref().unwrap().admin_url(path);
    for next in ["/\\evil.example/", "/\t/evil.example/", "/\r\nSet-Cookie: x=y", "//evil.example/", "https://evil.example/"] {
        let response = client().post(&admin("/login")).send_form(&[("user", ADMIN_USER), ("password", ADMIN_PASSWORD), ("next", next)]);
        let (status, _, location) = answer(response);
        assert_eq!((status, location.as_deref()), (303, Some("/")), "{next:?}");
    }
    let login = admin("/login");
    std::thread::scope(|scope| {
        for n in 0..100 {
            let login = login.clone();
            scope.spawn(move || {
                let (status, _, _) = answer(client().post(&login).send_form(&[("user", ADMIN_USER), ("password", &format!("gæt {n}"))]));
                assert!(status == 200 || status == 503, "{status}");
            });
        }
    });
    let (_, metrics, _) = get(&admin("/metrics"), None);
    let checked = metric(&metrics, "fkoeko_web_logins_total{outcome=\"checked\"}");
    // The five logins above, and at most ten of the hundred.
    assert!(checked <= 15.0, "{checked} password checks:\n{metrics}");
    assert!(metric(&metrics, "fkoeko_web_logins_total{outcome=\"locked\"}") >= 90.0, "{metrics}");
    let (status, body, cookie) = answer(client().post(&login).send_form(&[("user", ADMIN_USER), ("password", ADMIN_PASSWORD)]));
    assert_eq!(status, 200);
    assert!(body.contains("For mange forkerte forsøg") && cookie.is_none(), "the name is locked, the right password too");
    assert_eq!(app.count("SELECT CAST(attempts AS BIGINT) AS n FROM login_attempts"), 101);
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

#[test]
fn metrics_change_as_deliveries_are_processed() {
    let smtp_port = free_port();
    let app = TestApp::start_with(|c| {
        // Alerts into the outbox, to a mail server that is not there, after a long window: they stay pending.
        c.alerts.enabled = true;
        c.alerts.copy_to = vec!["oekonomi@kommune.example.dk".into()];
        c.alerts.group_window_secs = 3600;
        c.alerts.smtp.port = smtp_port;
    });
    let url = app.server.as_ref().unwrap().admin_url("/metrics");
    let scrape = || ureq::get(&url).call().unwrap().into_string().unwrap();
    let before = scrape();
    let accepted = r#"fkoeko_deliveries_total{integration="SF1590_A",result="accepteret",transport="straks"}"#;
    let rejected = r#"fkoeko_deliveries_total{integration="SF1590_A",result="afvist",transport="straks"}"#;
    let code = r#"fkoeko_rejection_errors_total{code="MAPNING_MANGLER",integration="SF1590_A"}"#;
    let timed = r#"fkoeko_delivery_seconds_count{integration="SF1590_A",transport="straks"}"#;
    let pending = r#"fkoeko_alert_outbox{status="pending"}"#;
    assert_eq!((metric(&before, accepted), metric(&before, rejected), metric(&before, pending)), (0.0, 0.0, 0.0), "{before}");
    assert!(before.contains("fkoeko_batch_files_in_progress 0"), "{before}");

    app.send(&Delivery::one("M-1").soap11());
    app.send(&Delivery::one("M-2").soap11());
    app.send(&unmapped("M-3").soap11());
    let after = scrape();
    assert_eq!(metric(&after, accepted), 2.0, "{after}");
    assert_eq!(metric(&after, rejected), 1.0, "{after}");
    assert_eq!(metric(&after, code), 1.0, "{after}");
    assert_eq!(metric(&after, timed), 3.0, "{after}");
    assert_eq!(metric(&after, r#"fkoeko_items_total{integration="SF1590_A",status="Afvist",transport="straks"}"#), 1.0);
    assert_eq!(metric(&after, pending), 1.0, "the rejection's alert waits in the outbox: {after}");
    assert_eq!(ureq::get(&app.server.as_ref().unwrap().admin_url("/healthz")).call().unwrap().status(), 200);
}

/// A PostgreSQL server of the test's own, in a temporary folder, that the test can stop and start. It listens
/// on a Unix socket in that folder only: no TCP port another test could take while it is stopped.
struct OwnPostgres {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl OwnPostgres {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (bash .ci/run installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .max()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let server = OwnPostgres { bin, data, dir };
        if is_root() {
            // PostgreSQL refuses to run as root; it runs as the postgres user, which must reach its folder.
            assert!(Command::new("chown").args(["-R", "postgres"]).arg(server.dir.path()).status().unwrap().success());
        }
        server.run("initdb", &["-D", server.data.to_str().unwrap(), "-A", "trust", "-U", "fkoeko"]);
        server.pg_ctl("start");
        server
    }

    fn url(&self) -> String {
        format!("postgresql:///postgres?host={}&user=fkoeko", self.dir.path().display())
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!("-k {} -c listen_addresses=''", self.dir.path().display());
        let log = self.dir.path().join("log");
        self.run("pg_ctl", &["-D", self.data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "-m", "fast", "-o", &options, action]);
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command.args(args).current_dir(self.dir.path()).output().unwrap();
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        assert!(out.status.success(), "{program} {args:?}: {}\nserver log:\n{log}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join("pg_ctl")).args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"]).output();
        if is_root() {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
                .output();
        }
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn wait_for_status(url: &str, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body, _) = get(url, None);
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "{url} stayed {status}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn readiness_follows_the_database() {
    let postgres = OwnPostgres::start();
    let app = TestApp::start_on_url(postgres.url(), |c| c.database.busy_timeout_ms = 1000);
    let (readyz, healthz) = (app.server.as_ref().unwrap().admin_url("/readyz"), app.server.as_ref().unwrap().admin_url("/healthz"));
    let body = wait_for_status(&readyz, 200);
    let checks: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(checks["ready"], true);
    assert_eq!(checks["checks"]["database"], "ok");
    assert_eq!(checks["checks"]["schemas"], "ok");
    assert_eq!(checks["checks"]["mappings"], format!("version {}", app.mapping_version()));

    postgres.pg_ctl("stop");
    let body = wait_for_status(&readyz, 503);
    let checks: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(checks["ready"], false);
    assert!(checks["checks"]["database"].as_str().unwrap().starts_with("fejl: "), "{body}");
    assert_eq!(get(&healthz, None).0, 200, "alive all the same");
    // A delivery now gets a SOAP Fault (try again later), not a receipt.
    assert_eq!(app.post(&Delivery::one("DOWN-1").soap11()).0, 500);

    let metrics = get(&app.server.as_ref().unwrap().admin_url("/metrics"), None).1;
    assert!(metrics.contains("fkoeko_batch_files_in_progress -1"), "shared figures unknown, not made up: {metrics}");

    postgres.pg_ctl("start");
    wait_for_status(&readyz, 200);
    assert!(app.send(&Delivery::one("UP-AGAIN").soap11()).receipts[0].errors.is_empty());
}

fn change_rules(dir: &Path, change: impl FnOnce(String) -> String) {
    let path = dir.join(RULES_FILE);
    let content = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, change(content)).unwrap();
}

/// An instance whose batch inbox cannot be read still answers /readyz with 200, as "degraded" and why, so that a
/// load balancer keeps it and an operator sees the reason.
#[test]
fn readiness_is_degraded_with_the_reason_when_an_inbox_cannot_be_read() {
    let app = TestApp::start_with(|c| c.batch.enabled = true);
    let readyz = app.server.as_ref().unwrap().admin_url("/readyz");
    let (status, body, _) = get(&readyz, None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let inbox = fkoeko_adapter::batch::Folders::of(&app.config.batch.dir, fkoeko_adapter::domain::sortiment::Integration::Sf1590A).inbox;
    std::fs::remove_dir_all(&inbox).unwrap();
    std::fs::write(&inbox, "ikke en mappe").unwrap();
    let (status, body, _) = get(&readyz, None);
    assert_eq!(status, 200, "degraded, not down: {body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    let warning = body["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains(&inbox.display().to_string()) && warning.contains("kan ikke læses"), "{body}");
    std::fs::remove_file(&inbox).unwrap();
    std::fs::create_dir(&inbox).unwrap();
    // The other folders a file passes through count as much.
    let outbox = fkoeko_adapter::batch::Folders::of(&app.config.batch.dir, fkoeko_adapter::domain::sortiment::Integration::Sf1590B).outbox;
    std::fs::remove_dir_all(&outbox).unwrap();
    let (_, body, _) = get(&readyz, None);
    assert!(body.contains("udbakken") && body.contains(&outbox.display().to_string()), "{body}");
}

/// fordringstyper.csv without rows, taken into use on purpose, leaves every claim rejected: /readyz says so.
#[test]
fn readiness_is_degraded_when_no_claim_type_can_be_mapped() {
    let app = TestApp::start();
    let server = app.server.as_ref().unwrap();
    let mut files = fkoeko_adapter::domain::mapping::read_dir(&app.config.paths.mappings).unwrap();
    let header = files["fordringstyper.csv"].lines().find(|l| !l.starts_with('#')).unwrap().to_string();
    files.insert("fordringstyper.csv".into(), format!("{header}\n"));
    let changed = server.app.pipeline.change_mappings(&files, ADMIN_USER, MappingSource::Page, "tom", None, true).unwrap();
    assert!(matches!(changed, MappingChange::Saved(_)), "{changed:?}");
    let (status, body, _) = get(&server.admin_url("/readyz"), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"degraded\"") && body.contains("fordringstyper.csv"), "{body}");
}

/// An emptied or truncated konti.csv in the live folder is not taken into use: everything after it would be
/// MAPNING_MANGLER. The page takes one only when asked to.
#[test]
fn a_rules_file_without_rules_is_not_taken_into_use_unless_confirmed_on_the_page() {
    let app = TestApp::start();
    let server = app.server.as_ref().unwrap();
    let before = app.mapping_version();
    let konti = app.config.paths.mappings.join("konti.csv");
    let header = std::fs::read_to_string(&konti).unwrap().lines().find(|l| !l.starts_with('#')).unwrap().to_string();
    std::fs::write(&konti, format!("{header}\n")).unwrap();
    server.app.pipeline.sync_mapping_folder(false).unwrap();
    assert_eq!(app.mapping_version(), before, "the version in force stays");
    assert_eq!(app.send(&Delivery::one("EFTER-TOM").soap11()).receipts[0].status, fkoeko_adapter::domain::receipt::Status::Accepteret);

    let mut files = fkoeko_adapter::domain::mapping::read_dir(&app.config.paths.mappings).unwrap();
    files.insert("konti.csv".into(), format!("{header}\n"));
    let pipeline = &server.app.pipeline;
    let refused = pipeline.change_mappings(&files, ADMIN_USER, MappingSource::Page, "tom", None, false).unwrap();
    assert!(matches!(refused, MappingChange::Invalid(ref e) if e.to_string().contains("ingen regler")), "{refused:?}");
    assert_eq!(app.mapping_version(), before);
    let allowed = pipeline.change_mappings(&files, ADMIN_USER, MappingSource::Page, "tom, med vilje", None, true).unwrap();
    assert!(matches!(allowed, MappingChange::Saved(_)), "{allowed:?}");
    assert_ne!(app.mapping_version(), before);
}

#[test]
fn a_change_in_the_files_is_taken_into_use_without_a_restart_and_an_invalid_one_is_not() {
    let app = TestApp::start_with(|c| c.paths.mappings_poll_interval_ms = 100);
    let server = app.server.as_ref().unwrap();
    let dir = app.config.paths.mappings.clone();
    let first = app.mapping_version();
    let rejected = app.send(&unmapped("FILE-1").soap11());
    assert_eq!(errors_of(&rejected, "FILE-1")[0].0, "MAPNING_MANGLER");

    // An invalid change: logged and left; the version in force stays, and deliveries go on with it.
    change_rules(&dir, |c| format!("{c}5.57.72;*;2;*;5.2;*;*;*;;\n"));
    server.app.pipeline.sync_mapping_folder(false).unwrap();
    server.app.pipeline.sync_mapping_folder(false).unwrap();
    assert_eq!(app.mapping_version(), first);
    let left = std::fs::read_to_string(dir.join(RULES_FILE)).unwrap();
    assert!(left.ends_with("5.57.72;*;2;*;5.2;*;*;*;;\n"), "a failed edit is left for its author to finish: {left}");
    assert!(app.send(&Delivery::one("FILE-2").soap11()).receipts[0].errors.is_empty());
    assert_eq!(app.count("SELECT count(*) AS n FROM mapping_versions"), 1);

    // Fixed in the file: the watcher takes it into use, and the next delivery is mapped by it.
    change_rules(&dir, |c| c.replace("5.57.72;*;2;*;5.2;*;*;*;;\n", NEW_RULE));
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.mapping_version() == first {
        assert!(Instant::now() < deadline, "the changed file was not taken into use");
        std::thread::sleep(Duration::from_millis(100));
    }
    let accepted = app.send(&unmapped("FILE-3").soap11());
    assert!(accepted.receipts[0].errors.is_empty(), "{:?}", accepted.receipts[0].errors);
    let booked = app.rows(
        "SELECT json_array(l.erp_account, l.mapping_rule, j.mapping_version) AS row FROM erp_journal_lines l \
         JOIN erp_journal j ON j.id = l.journal_id WHERE j.bilag_id = 'FILE-3' AND l.line_no = 1",
        3,
    );
    assert_eq!(booked[0], vec![Some("55772252".into()), Some("konti.csv:16".into()), Some(app.mapping_version())]);
    let history = app.rows("SELECT json_array(author, source) AS row FROM mapping_versions ORDER BY id", 2);
    assert_eq!(history[1], vec![Some("mappings/".into()), Some("filer".into())]);

    // A failed edit in the folder, and then a change made elsewhere (here: a rollback): the folder is written
    // with the version in force, and the failed edit is moved aside, not lost.
    change_rules(&dir, |c| format!("{c}ødelagt række\n"));
    server.app.pipeline.sync_mapping_folder(false).unwrap();
    server.app.pipeline.roll_back_mappings(1, ADMIN_USER).unwrap();
    server.app.pipeline.sync_mapping_folder(false).unwrap();
    assert_eq!(app.mapping_version(), first);
    assert_eq!(std::fs::read_to_string(dir.join(RULES_FILE)).unwrap(), std::fs::read_to_string(repo("mappings/konti.csv")).unwrap());
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ikke-i-brug-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(std::fs::read_to_string(aside[0].path().join(RULES_FILE)).unwrap().ends_with("ødelagt række\n"));
}

#[test]
fn every_instance_on_the_database_follows_a_change_and_an_out_of_date_folder_is_rewritten() {
    let first = TestApp::start();
    // Each instance holds the versions in force for a while; this one asks again after 200 ms.
    let second = TestApp::start_beside(&first, |c| c.database.versions_refresh_ms = 200);
    let (a, b) = (first.server.as_ref().unwrap(), second.server.as_ref().unwrap());
    let before = first.mapping_version();
    assert!(!second.send(&unmapped("BESIDE-0").soap11()).receipts[0].errors.is_empty(), "not mapped before the change");
    let mut files = read_dir(&first.config.paths.mappings).unwrap();
    files.get_mut(RULES_FILE).unwrap().push_str(NEW_RULE);
    let change = a.app.pipeline.change_mappings(&files, ADMIN_USER, MappingSource::Page, "ny regel", None, false).unwrap();
    assert!(matches!(change, MappingChange::Saved(_)), "{change:?}");

    // The instance that made the change maps by it at once.
    let receipts = first.send(&unmapped("BESIDE-A").soap11());
    assert!(receipts.receipts[0].errors.is_empty(), "{:?}", receipts.receipts[0].errors);
    // The other maps by the new version within its refresh time, without being told.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        let receipts = second.send(&unmapped(&format!("BESIDE-{n}")).soap11());
        if receipts.receipts[0].errors.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the other instance never followed: {:?}", receipts.receipts[0].errors);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(second.mapping_version(), first.mapping_version());
    assert_ne!(second.mapping_version(), before);
    // And its folder is written with it at its next look.
    b.app.pipeline.sync_mapping_folder(false).unwrap();
    assert_eq!(read_dir(&second.config.paths.mappings).unwrap(), files);

    // A third instance starts with the repository's files, an earlier version: they are rewritten, not taken.
    let third = TestApp::start_beside(&first, |_| {});
    assert_eq!(third.mapping_version(), first.mapping_version());
    assert_eq!(read_dir(&third.config.paths.mappings).unwrap(), files);
    assert_eq!(first.count("SELECT count(*) AS n FROM mapping_versions"), 2);
}

/// Posts the edit form as the page would: every file, the version it began from, a comment, perhaps a new file.
fn post_edit(
    app: &TestApp,
    cookie: &str,
    base: i64,
    files: &[(String, String)],
    new_file: Option<(&str, &str)>,
) -> (u16, String, Option<String>) {
    let mut form: Vec<(String, String)> = vec![("base".into(), base.to_string()), ("comment".into(), "via siden".into())];
    form.extend(files.iter().map(|(name, content)| (format!("fil:{name}"), content.replace('\n', "\r\n"))));
    if let Some((name, content)) = new_file {
        form.push(("ny_fil_navn".into(), name.into()));
        form.push(("ny_fil_indhold".into(), content.into()));
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let url = app.server.as_ref().unwrap().admin_url("/mapninger/ret");
    answer(client().post(&url).set("Cookie", cookie).send_form(&pairs))
}

#[test]
fn the_edit_form_adds_a_lookup_table_refuses_removing_one_in_use_and_a_stale_edit() {
    let app = TestApp::start();
    let cookie = log_in(&app);
    let files: Vec<(String, String)> = read_dir(&app.config.paths.mappings).unwrap().into_iter().collect();
    let with_rule: Vec<(String, String)> = files
        .iter()
        .map(|(name, content)| {
            let content =
                if name == RULES_FILE { format!("{content}5.57.72;*;2;*;5.2;*;*;*;opslag:refusion.csv;\n") } else { content.clone() };
            (name.clone(), content)
        })
        .collect();
    let table = "funktion;dranst;art;erp_konto;erp_dimensioner\n5.57.72;2;5.2;55772299;ordning=refusion\n";

    // The rule names a table that is not there yet: refused, with the error at the rule's row.
    let (status, body, _) = post_edit(&app, &cookie, 1, &with_rule, None);
    assert_eq!(status, 422);
    assert!(body.contains("konti.csv</code>, linje 16: opslagstabellen 'refusion.csv' findes ikke"), "{body}");
    assert!(body.contains(r#"<tr class="error" data-line="16">"#), "the row is marked: {body}");

    // With the new table: saved, and in force for the next delivery.
    let (status, _, location) = post_edit(&app, &cookie, 1, &with_rule, Some(("refusion.csv", table)));
    assert_eq!((status, location.as_deref()), (303, Some("/mapninger?gemt=2")));
    // The mapping page warns of what the sortiment allows that nothing maps (the test sortiment's UMAPPET).
    let (_, page, _) = get(&app.server.as_ref().unwrap().admin_url("/mapninger"), Some(&cookie));
    assert!(page.contains("mapping-warnings") && page.contains("fordringstype UMAPPET"), "{page}");
    let receipts = app.send(&unmapped("EDIT-1").soap11());
    assert!(receipts.receipts[0].errors.is_empty(), "{:?}", receipts.receipts[0].errors);
    assert_eq!(std::fs::read_to_string(app.config.paths.mappings.join("refusion.csv")).unwrap(), table, "written to the folder");

    // Emptying the table removes it: refused while the rule still names it.
    let mut emptied = with_rule.clone();
    emptied.push(("refusion.csv".into(), "   ".into()));
    let (status, body, _) = post_edit(&app, &cookie, 2, &emptied, None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("findes ikke"), "{body}");

    // An edit begun on version 1, now that 2 is in force: refused, not merged.
    let (status, body, _) = post_edit(&app, &cookie, 1, &files, None);
    assert_eq!(status, 409);
    assert!(body.contains("nogen har gemt version 2"), "{body}");
    assert_eq!(app.count("SELECT count(*) AS n FROM mapping_versions"), 2);

    // Two edits begun from version 2 and saved one after the other (as two people could): the first is stored,
    // the second is refused inside the same transaction that would store it.
    let pipeline = &app.server.as_ref().unwrap().app.pipeline;
    let mut one = read_dir(&app.config.paths.mappings).unwrap();
    one.get_mut(RULES_FILE).unwrap().push_str("# den ene\n");
    let mut other = read_dir(&app.config.paths.mappings).unwrap();
    other.get_mut(RULES_FILE).unwrap().push_str("# den anden\n");
    let first = pipeline.change_mappings(&one, "a", MappingSource::Page, "den ene", Some(2), false).unwrap();
    let second = pipeline.change_mappings(&other, "b", MappingSource::Page, "den anden", Some(2), false).unwrap();
    assert!(matches!(first, MappingChange::Saved(3)), "{first:?}");
    assert!(matches!(second, MappingChange::Moved(3)), "{second:?}");
    assert_eq!(read_dir(&app.config.paths.mappings).unwrap(), one, "the folder holds the version in force");
}
