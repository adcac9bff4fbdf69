//! Test harness: the real server on a random port with a temporary SQLite database, real SOAP envelopes,
//! and every receipt checked with xmllint against schemas/ (an independent validator).
// Helpers are shared by the test modules; not every module uses every one.

pub mod claims;
pub mod cluster;
pub mod delivery;
pub mod masse;
pub mod serve;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::Command;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use fkoeko_adapter::config::Config;
use fkoeko_adapter::domain::receipt::ReceiptSet;
use fkoeko_adapter::startup::{spawn, RunningServer};
use fkoeko_adapter::storage::{AnyConnection, Backend};

pub const KY: &str = "6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01";
pub const EXPIRED_SENDER: &str = "0b5e2f44-8c1d-4a7e-b3f6-9d2c7a1e5f02";
pub const DEBTOR_ONLY_SENDER: &str = "3c9d7b21-5e4f-4a8b-9c1d-2e3f4a5b6c03";
pub const QUIET_SENDER: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c04";
pub const OUR_CVR: &str = "29189846";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The configuration every test server starts from: a random loopback port, the repo's schemas and mappings,
/// the test sortiment, and alerts off (they are tested on their own, against a real SMTP server).
pub fn test_config(db_url: &str) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.server.workers = 2;
    config.database.url = db_url.to_string();
    config.paths.schemas = repo("schemas");
    // A copy per test: the service writes the version in force back to its mapping folder.
    config.paths.mappings = copy_of_mappings();
    config.paths.mappings_poll_interval_ms = 0;
    config.admin.listen = "127.0.0.1:0".into();
    config.admin.users = vec![fkoeko_adapter::config::AdminUser {
        name: ADMIN_USER.into(),
        password_hash: admin_password_hash(),
        role: fkoeko_adapter::domain::audit::Role::Operator,
    }];
    config.paths.sortiment = repo("tests/fixtures/sortiment.toml");
    config.alerts.enabled = false;
    // Tests of batch files turn it on, with folders of their own.
    config.batch.enabled = false;
    config.batch.dir = std::env::temp_dir().join(format!("fkoeko-batch-{}", uuid::Uuid::new_v4().simple()));
    config
}

/// The web page's test user.
pub const ADMIN_USER: &str = "økonomi";
pub const ADMIN_PASSWORD: &str = "en lang og hemmelig sætning";

/// Hashed once per test process: Argon2 is slow on purpose.
pub fn admin_password_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| fkoeko_adapter::web::hash_password(ADMIN_PASSWORD).unwrap()).clone()
}

/// The `fkoeko` binary as an operator runs it, on a database of the test's own: the test sortiment, its own copy
/// of the mappings, alerts off, the web page on a free port. Callers add or override settings by environment.
pub fn fkoeko_command(db_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fkoeko"));
    command
        .current_dir(repo(""))
        .env_remove("FKOEKO_CONFIG")
        .env("FKOEKO_DATABASE__URL", db_url)
        .env("FKOEKO_PATHS__SORTIMENT", repo("tests/fixtures/sortiment.toml"))
        .env("FKOEKO_PATHS__MAPPINGS", copy_of_mappings())
        .env("FKOEKO_ALERTS__ENABLED", "false")
        .env("FKOEKO_ADMIN__LISTEN", "127.0.0.1:0");
    command
}

/// The repository's mapping files, copied to a folder of the test's own.
pub fn copy_of_mappings() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fkoeko-mappings-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(repo("mappings")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Where the tests keep their databases: SQLite files, or, when TEST_POSTGRES_URL names a server
/// (`postgres://user@host:port`, as .ci/run sets it for its second pass), a fresh PostgreSQL database per test.
pub fn new_database_url(dir: &Path) -> String {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(server) if !server.is_empty() => {
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            let mut admin = diesel::pg::PgConnection::establish(&format!("{server}/postgres")).expect("the test PostgreSQL server answers");
            admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            format!("{server}/{name}")
        }
        _ => dir.join("fkoeko.db").display().to_string(),
    }
}

/// A connection of the test's own to a test database, waiting (as the service does) for another writer.
pub fn connect(url: &str) -> AnyConnection {
    match Backend::of(url) {
        Backend::Postgres => AnyConnection::Postgresql(diesel::pg::PgConnection::establish(url).unwrap()),
        Backend::Sqlite => {
            let mut conn = diesel::sqlite::SqliteConnection::establish(url).unwrap();
            conn.batch_execute("PRAGMA busy_timeout = 10000").unwrap();
            AnyConnection::Sqlite(conn)
        }
    }
}

pub fn count_in(url: &str, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql).get_result::<Count>(&mut connect(url)).unwrap().n
}

/// A child process killed however the test ends, so that a failed assertion leaves no process behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Holds the database's write lock, as another process could, until dropped.
pub struct WriteLock(AnyConnection);

impl WriteLock {
    pub fn take(url: &str) -> Self {
        let mut conn = connect(url);
        match &mut conn {
            AnyConnection::Sqlite(c) => c.batch_execute("BEGIN EXCLUSIVE").unwrap(),
            AnyConnection::Postgresql(c) => c.batch_execute("BEGIN; LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE").unwrap(),
        }
        WriteLock(conn)
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.0.batch_execute("ROLLBACK");
    }
}

pub struct TestApp {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub db_url: String,
    pub config: Config,
}

impl TestApp {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_url = new_database_url(dir.path());
        Self::start_on(dir, db_url, adjust)
    }

    /// A second instance on the same database, as a second adapter process would be.
    pub fn start_beside(other: &TestApp, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(tempfile::tempdir().unwrap(), other.db_url.clone(), adjust)
    }

    /// On a database the test provides.
    pub fn start_on_url(db_url: String, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(tempfile::tempdir().unwrap(), db_url, adjust)
    }

    fn start_on(dir: tempfile::TempDir, db_url: String, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(&db_url);
        adjust(&mut config);
        let server = spawn(&config).expect("server starts");
        TestApp { server: Some(server), dir, db_url, config }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.as_ref().unwrap().url(path)
    }

    pub fn mapping_version(&self) -> String {
        self.server.as_ref().unwrap().app.pipeline.mappings().unwrap().version.clone()
    }

    /// POSTs a SOAP 1.1 call; returns status and body. Every receipt answer is validated with xmllint.
    pub fn post(&self, body: &str) -> (u16, String) {
        self.post_as(body, "text/xml; charset=utf-8")
    }

    pub fn post_as(&self, body: &str, content_type: &str) -> (u16, String) {
        self.post_bytes(body.as_bytes(), content_type)
    }

    pub fn post_bytes(&self, body: &[u8], content_type: &str) -> (u16, String) {
        self.post_to("/sf1590a", body, content_type)
    }

    /// POSTs to an endpoint; every receipt answer is validated with xmllint.
    pub fn post_to(&self, path: &str, body: &[u8], content_type: &str) -> (u16, String) {
        let response = ureq::post(&self.url(path)).set("Content-Type", content_type).send_bytes(body);
        let (status, text) = match response {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("request failed: {e}"),
        };
        if status == 200 {
            assert_valid_receipt(&receipt_xml(&text));
        }
        (status, text)
    }

    /// POSTs and reads the receipts, asserting an HTTP 200 answer.
    pub fn send(&self, body: &str) -> ReceiptSet {
        let (status, text) = self.post(body);
        assert_eq!(status, 200, "{text}");
        parse_receipts(&text)
    }

    /// POSTs an SF1590_B call and reads the receipts, asserting an HTTP 200 answer.
    pub fn send_claims(&self, body: &str) -> ReceiptSet {
        let (status, text) = self.post_to("/sf1590b", body.as_bytes(), "text/xml; charset=utf-8");
        assert_eq!(status, 200, "{text}");
        parse_receipts(&text)
    }

    pub fn execute(&self, sql: &str) {
        use diesel::connection::SimpleConnection;
        self.db().batch_execute(sql).unwrap();
    }

    pub fn db(&self) -> AnyConnection {
        connect(&self.db_url)
    }

    pub fn count(&self, sql: &str) -> i64 {
        count_in(&self.db_url, sql)
    }

    /// Holds the write lock of the app's database until dropped.
    pub fn lock_writes(&self) -> WriteLock {
        WriteLock::take(&self.db_url)
    }

    /// Rows of text (NULL as None), for asserting what landed in a table.
    pub fn rows(&self, sql: &str, columns: usize) -> Vec<Vec<Option<String>>> {
        // Each row is selected as one JSON array (SQLite's json_array; PostgreSQL's json_build_array, as text),
        // so one row type serves every query.
        let sql = match Backend::of(&self.db_url) {
            Backend::Sqlite => sql.to_string(),
            Backend::Postgres => sql.replace("json_array(", "json_build_array(").replace(") AS row", ")::text AS row"),
        };
        let sql = sql.as_str();
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Nullable<Text>)]
            row: Option<String>,
        }
        let rows: Vec<Row> = diesel::sql_query(sql).load(&mut self.db()).unwrap();
        rows.into_iter()
            .map(|r| {
                let values: Vec<serde_json::Value> = serde_json::from_str(&r.row.unwrap()).unwrap();
                assert_eq!(values.len(), columns);
                values
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    })
                    .collect()
            })
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

/// The KvitteringLeverance element out of a SOAP answer: it declares its own namespace, so it stands alone.
pub fn receipt_xml(soap: &str) -> String {
    let start = soap.find("<KvitteringLeverance").expect("answer holds a KvitteringLeverance");
    let end = soap.find("</KvitteringLeverance>").expect("closed") + "</KvitteringLeverance>".len();
    soap[start..end].to_string()
}

pub fn parse_receipts(soap: &str) -> ReceiptSet {
    quick_xml::de::from_str(&receipt_xml(soap)).expect("receipt parses")
}

/// xmllint (Debian's libxml2-utils) checks the receipt against schemas/kvittering.xsd.
pub fn assert_valid_receipt(xml: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), xml).unwrap();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(repo("schemas/kvittering.xsd"))
        .arg(file.path())
        .output()
        .expect("xmllint is installed (apt-get install libxml2-utils)");
    assert!(out.status.success(), "receipt does not validate: {}\n{xml}", String::from_utf8_lossy(&out.stderr));
}

/// (code, path) of every error of the receipt for `reference`.
pub fn errors_of(set: &ReceiptSet, reference: &str) -> Vec<(String, Option<String>)> {
    let receipt = set.receipts.iter().find(|r| r.reference == reference).unwrap_or_else(|| panic!("no receipt for {reference}: {set:?}"));
    receipt.errors.iter().map(|e| (e.code.as_str().to_string(), e.path.clone())).collect()
}
