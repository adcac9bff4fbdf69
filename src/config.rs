//! Configuration: defaults, then a TOML file, then FKOEKO_* environment variables (FKOEKO_SERVER__LISTEN sets
//! server.listen). Every key is documented in config.example.toml.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub installation: InstallationConfig,
    pub paths: PathsConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub alerts: AlertsConfig,
    pub tls: TlsConfig,
    pub batch: BatchConfig,
    pub admin: AdminConfig,
    #[serde(default)]
    pub targets: TargetsConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// How long each kind of data is kept, in days; a kind left out is kept for ever. See `domain::retention`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub import_rows_days: Option<crate::domain::retention::Days>,
    pub debtor_data_days: Option<crate::domain::retention::Days>,
    pub receipts_days: Option<crate::domain::retention::Days>,
    pub delivery_records_days: Option<crate::domain::retention::Days>,
    pub batch_archive_days: Option<crate::domain::retention::Days>,
    pub audit_days: Option<crate::domain::retention::Days>,
    /// How often `fkoeko serve` purges, in hours; 0: only `fkoeko purge` does.
    #[serde(default = "retention_interval_hours")]
    pub interval_hours: u64,
    /// Rows a transaction: a purge never holds a long lock over deliveries being booked.
    #[serde(default = "retention_batch_rows")]
    pub batch_rows: std::num::NonZeroU32,
}

fn retention_interval_hours() -> u64 {
    24
}

fn retention_batch_rows() -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(1000).expect("not 0")
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            import_rows_days: None,
            debtor_data_days: None,
            receipts_days: None,
            delivery_records_days: None,
            batch_archive_days: None,
            audit_days: None,
            interval_hours: retention_interval_hours(),
            batch_rows: retention_batch_rows(),
        }
    }
}

impl RetentionConfig {
    pub fn periods(&self) -> crate::domain::retention::Retention {
        crate::domain::retention::Retention {
            import_rows_days: self.import_rows_days,
            debtor_data_days: self.debtor_data_days,
            receipts_days: self.receipts_days,
            delivery_records_days: self.delivery_records_days,
            batch_archive_days: self.batch_archive_days,
            audit_days: self.audit_days,
        }
    }
}

/// Where a target profile's file targets may write: the folders are the installation's, named in the profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsConfig {
    /// A name the profile uses (`file = { folder = "erp", ... }`) and the folder it stands for.
    #[serde(default)]
    pub folders: std::collections::BTreeMap<String, PathBuf>,
    /// A name the profile uses (`database = "erp"`) and the PostgreSQL URL of the ERP's database it stands for.
    #[serde(default)]
    pub databases: std::collections::BTreeMap<String, String>,
    /// How often the file writer looks for rows to write.
    #[serde(default = "target_interval_ms")]
    pub interval_ms: u64,
    /// How often the target tables' columns are read again (an ERP that widens or drops a column), in seconds.
    #[serde(default = "target_columns_refresh_secs")]
    pub columns_refresh_secs: u64,
    /// Rows waiting longer than this make /readyz say "degraded".
    #[serde(default = "target_behind_secs")]
    pub behind_secs: u64,
}

fn target_interval_ms() -> u64 {
    1000
}

fn target_columns_refresh_secs() -> u64 {
    60
}

fn target_behind_secs() -> u64 {
    300
}

impl Default for TargetsConfig {
    fn default() -> Self {
        TargetsConfig {
            folders: Default::default(),
            databases: Default::default(),
            interval_ms: target_interval_ms(),
            columns_refresh_secs: target_columns_refresh_secs(),
            behind_secs: target_behind_secs(),
        }
    }
}

/// The administrative listener: the web page for finance staff, health and metrics for operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub enabled: bool,
    pub listen: String,
    /// Plain HTTP on an address other than loopback only when this says so (a proxy in front terminates TLS).
    pub allow_plain_http: bool,
    /// Serve the page over HTTPS with [tls]'s certificate and key (no client certificate is asked for).
    pub tls: bool,
    /// How long a login lasts.
    pub session_hours: u64,
    /// Who may log in. No user by default: nobody can log in until one is configured.
    pub users: Vec<AdminUser>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUser {
    pub name: String,
    /// An Argon2 hash in PHC form, from `fkoeko admin hash-password`.
    pub password_hash: String,
    /// What the user may do on the page: "read" (look), "mapping" (also edit and roll back the mapping files),
    /// "operator" (also the audit trail). Required: nobody gets more than was written here.
    pub role: crate::domain::audit::Role,
}

/// Batch files (masse) from drop folders. Per integration, under `dir`: `sf1590a/` and `sf1590b/`, each with
/// `inbox/` (where files arrive, e.g. an SFTP upload area), `processing/`, `archive/` and `outbox/` (receipt
/// files).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Watch the inboxes while `fkoeko serve` runs. `fkoeko batch run-once` works either way.
    pub enabled: bool,
    pub dir: PathBuf,
    /// When a file is complete: "metadata" (Serviceplatformen: its `<name>.metadata` has arrived and the
    /// size agrees) or "plain" (not a temporary name, and unchanged for `quiet_secs`).
    pub convention: BatchConvention,
    pub quiet_secs: u64,
    /// Names that are still being written, in a plain folder (besides names starting with a dot).
    pub temporary_suffixes: Vec<String>,
    /// This installation's SFTP user(s) on Serviceplatformen: a file is for it when its metadata's Recipients
    /// holds one of them (or dynamic routing names its municipality). Empty: the municipality's CVR.
    #[serde(alias = "recipients")]
    pub sftp_users: Vec<String>,
    pub poll_interval_ms: u64,
    /// How long a process owns a file without booking a chunk of it before another may take it over.
    pub lease_secs: u64,
    /// Threads that read and check items; 0: one per CPU.
    pub workers: usize,
    /// Receipt files sent back through Serviceplatformen (convention "metadata"): tries before one is failed,
    /// the wait before the next try (doubling up to the most), and how long the platform has to answer a try
    /// with its .sftpreceipt before the silence counts as an error.
    pub receipt_max_attempts: u32,
    pub receipt_backoff_initial_secs: u64,
    pub receipt_backoff_max_secs: u64,
    pub receipt_answer_secs: u64,
    /// Files senders deliver every day, alerted when one has not arrived by its time.
    #[serde(default)]
    pub expected: Vec<crate::domain::alert::ExpectedFile>,
    /// How often the expected files are looked for, in seconds.
    #[serde(default = "expected_check_secs")]
    pub expected_check_secs: u64,
}

fn expected_check_secs() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BatchConvention {
    Metadata,
    Plain,
}

/// HTTPS with rustls, and mutual TLS when client CAs are given.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub enabled: bool,
    /// PEM: the server's certificate chain and its private key. Read again when changed.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM files of the CAs whose client certificates are let in; empty: no client certificate asked for.
    pub client_ca: Vec<PathBuf>,
    /// Client certificates let in, by "sha256:<hex>" fingerprint or subject; empty: any from the CAs.
    pub allowed_clients: Vec<String>,
}

/// Rejection alerts by email.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Write alerts to the outbox and send them. Off: no alerts at all.
    pub enabled: bool,
    pub from: String,
    /// Copy of every rejection alert (the municipality's finance team).
    pub copy_to: Vec<String>,
    /// The operators, told when something needs a person: a receipt file Serviceplatformen did not deliver
    /// after the last try. Empty: the log, /metrics and /readyz only.
    #[serde(default)]
    pub operators: Vec<String>,
    /// Rejections of one sender within this many seconds go out as one mail.
    pub group_window_secs: u64,
    /// Tries before an alert is given up as failed.
    pub max_attempts: u32,
    pub backoff_initial_secs: u64,
    pub backoff_max_secs: u64,
    /// How often the sender task looks for due alerts.
    pub poll_interval_ms: u64,
    pub smtp: SmtpConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Login, when the server wants one; the password is best given as FKOEKO_ALERTS__SMTP__PASSWORD.
    pub username: String,
    pub password: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP: only for a relay on the same host or in tests.
    None,
    /// Plain connection upgraded with STARTTLS (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub workers: usize,
    /// Plain HTTP on an address other than loopback only when this says so.
    pub allow_plain_http: bool,
    /// Calls processed at once; more are answered 503 with Retry-After.
    pub max_concurrent_requests: usize,
    /// Open connections per worker.
    pub max_connections: usize,
    /// Time to receive a request's head, and then its whole body.
    pub request_head_timeout_secs: u64,
    pub request_body_timeout_secs: u64,
    /// The slowest a body may arrive, on average, once `body_grace_secs` have passed (408 below it), and no pause
    /// longer than five times `body_grace_secs`: a sender that trickles or stalls its body cannot hold a call slot
    /// or its part of the memory budget for long.
    pub min_body_bytes_per_sec: u64,
    pub body_grace_secs: u64,
    /// Request bodies held in memory at once, in bytes, across all calls: a call that would go over it is
    /// answered 503 with Retry-After before its body is read. A call reserves its declared Content-Length, or
    /// `limits.max_body_bytes` when it declares none.
    pub max_body_bytes_in_flight: u64,
    /// Deliveries read and decided at once (0: one per CPU). Calls beyond it wait with their bodies received,
    /// so the memory that reading takes is bounded by this, not by the number of calls.
    pub max_processing: usize,
    /// The address senders reach the service on, as the WSDL names it (e.g. "https://fkoeko.kommune.dk" behind a
    /// proxy). Not set: the request's Host header, when it is a plain host name or address.
    #[serde(default)]
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub pool_size: u32,
    pub busy_timeout_ms: u64,
    /// How long the sortiment and mapping versions in force are used before the database is asked again; a
    /// change made by another instance (or `fkoeko sortiment load`) is in use within this time.
    #[serde(default = "versions_refresh_ms")]
    pub versions_refresh_ms: u64,
    /// Threads that write straks deliveries, each in groups of its own. SQLite has one writer at a time whatever
    /// this says; on PostgreSQL several keep the round trips of one delivery from holding up the next. 0: one
    /// on SQLite, four on PostgreSQL.
    #[serde(default)]
    pub writers: usize,
}

fn versions_refresh_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallationConfig {
    /// CVR of the municipality this installation serves.
    pub myndighed: String,
    /// This installation's own IT-system UUID on Serviceplatformen: a dynamically routed file whose
    /// RecipientIt-system is another is not for it.
    #[serde(default)]
    pub it_system: Option<uuid::Uuid>,
    pub currencies: Vec<String>,
    /// "YYYY-MM"; empty means this and last month.
    pub open_periods: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    pub schemas: PathBuf,
    /// The live mapping folder: the service writes the version in force here.
    pub mappings: PathBuf,
    /// The example mapping files the live folder is made from at the first start, when it does not exist yet
    /// (they are tracked in the repository; the service never writes them).
    pub mapping_examples: PathBuf,
    /// Loaded at start when the database holds no sortiment yet.
    pub sortiment: PathBuf,
    /// How often the mapping folder is looked at for changes made in the files; 0: only at start.
    pub mappings_poll_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_attributes: usize,
    pub max_name_length: usize,
    pub max_text_length: usize,
    pub max_finansbilag_straks: usize,
    pub max_fordringer_straks: usize,
    pub max_posteringer_per_bilag: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                listen: "127.0.0.1:8080".into(),
                workers: 4,
                allow_plain_http: false,
                max_concurrent_requests: 64,
                max_connections: 1024,
                request_head_timeout_secs: 5,
                request_body_timeout_secs: 60,
                min_body_bytes_per_sec: 16 * 1024,
                body_grace_secs: 2,
                max_body_bytes_in_flight: 128 * 1024 * 1024,
                max_processing: 0,
                public_url: None,
            },
            database: DatabaseConfig {
                url: "data/fkoeko.db".into(),
                pool_size: 8,
                busy_timeout_ms: 5000,
                versions_refresh_ms: 1000,
                writers: 0,
            },
            installation: InstallationConfig {
                myndighed: "29189846".into(),
                it_system: None,
                currencies: vec!["DKK".into()],
                open_periods: Vec::new(),
            },
            paths: PathsConfig {
                schemas: "schemas".into(),
                mappings: "data/mappings".into(),
                mapping_examples: "mappings".into(),
                sortiment: "sortiment/example.toml".into(),
                mappings_poll_interval_ms: 2000,
            },
            limits: LimitsConfig {
                max_body_bytes: 20 * 1024 * 1024,
                max_depth: 32,
                max_elements: 2_000_000,
                max_attributes: 16,
                max_name_length: 200,
                max_text_length: 10_000,
                max_finansbilag_straks: 100,
                max_fordringer_straks: 100,
                max_posteringer_per_bilag: 10_000,
            },
            log: LogConfig { format: LogFormat::Text, filter: "info".into() },
            tls: TlsConfig::default(),
            batch: BatchConfig {
                enabled: true,
                dir: "data/batch".into(),
                convention: BatchConvention::Metadata,
                quiet_secs: 30,
                temporary_suffixes: vec![".tmp".into(), ".part".into(), ".filepart".into()],
                sftp_users: Vec::new(),
                poll_interval_ms: 2000,
                lease_secs: 120,
                workers: 0,
                receipt_max_attempts: 5,
                receipt_backoff_initial_secs: 60,
                receipt_backoff_max_secs: 3600,
                receipt_answer_secs: 3600,
                expected: Vec::new(),
                expected_check_secs: expected_check_secs(),
            },
            admin: AdminConfig {
                enabled: true,
                listen: "127.0.0.1:8081".into(),
                allow_plain_http: false,
                tls: false,
                session_hours: 8,
                users: Vec::new(),
            },
            alerts: AlertsConfig {
                enabled: true,
                from: "fkoeko@localhost".into(),
                copy_to: Vec::new(),
                operators: Vec::new(),
                group_window_secs: 300,
                max_attempts: 10,
                backoff_initial_secs: 30,
                backoff_max_secs: 3600,
                poll_interval_ms: 2000,
                smtp: SmtpConfig {
                    host: "localhost".into(),
                    port: 25,
                    security: SmtpSecurity::None,
                    username: String::new(),
                    password: String::new(),
                    timeout_secs: 30,
                },
            },
            targets: TargetsConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

impl Config {
    /// Defaults, then `file` (if given, it must exist; else ./fkoeko.toml if present), then the environment.
    /// Errors name the file, line and column (or the environment variable) and the key, one per line.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        // TOML's reader says only "not valid UTF-8"; this says where.
        match file {
            Some(path) if path.exists() => drop(crate::files::read_text(path)?),
            None if Path::new("fkoeko.toml").exists() => drop(crate::files::read_text(Path::new("fkoeko.toml"))?),
            _ => {}
        }
        Self::figment(file).map_err(|e| anyhow::anyhow!("{}", describe(e)))
    }

    fn figment(file: Option<&Path>) -> Result<Self, figment::Error> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.is_file() {
                    return Err(figment::Error::from(format!("configuration file {} not found", path.display())));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("fkoeko.toml")),
        }
        figment.merge(Env::prefixed("FKOEKO_").ignore(&["CONFIG"]).split("__")).extract()
    }
}

/// Each error of a configuration on a line of its own: where (file:line:column of the value, or the
/// environment variable), which key, and what is wrong.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let place = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(figment::Source::File(path)) => {
                    let at = std::fs::read_to_string(path).ok().and_then(|text| locate(&text, &e.path));
                    match at {
                        Some((line, col)) => format!("{}:{line}:{col}", path.display()),
                        None => path.display().to_string(),
                    }
                }
                Some(other) => other.to_string(),
                None if e.metadata.as_ref().is_some_and(|m| m.name.contains("environment")) => {
                    format!("environment variable FKOEKO_{}", e.path.iter().map(|p| p.to_uppercase()).collect::<Vec<_>>().join("__"))
                }
                None => "the configuration".to_string(),
            };
            let key = if key.is_empty() { String::new() } else { format!("{key}: ") };
            format!("{place}: {key}{}", in_words(&e.kind))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What is wrong, in words an operator reads without knowing Rust's type names.
fn in_words(kind: &figment::error::Kind) -> String {
    use figment::error::{Actual, Kind};
    let expected = |what: &str| -> String {
        match what {
            "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number, 0 or more".into(),
            "isize" | "i64" | "i32" | "i16" | "i8" => "a whole number".into(),
            "f64" | "f32" => "a number".into(),
            "a boolean" => "true or false (without quotes)".into(),
            "a sequence" => "a list, e.g. [\"a\", \"b\"]".into(),
            "a string" => "a text in quotes".into(),
            other => other.into(),
        }
    };
    let found = |actual: &Actual| -> String {
        match actual {
            Actual::Str(v) => format!("the text {v:?}"),
            Actual::Signed(v) => format!("{v}"),
            Actual::Unsigned(v) => format!("{v}"),
            Actual::Float(v) => format!("{v}"),
            Actual::Bool(v) => format!("{v}"),
            Actual::Seq => "a list".into(),
            Actual::Map => "a table".into(),
            other => other.to_string(),
        }
    };
    match kind {
        Kind::InvalidType(actual, what) | Kind::InvalidValue(actual, what) => {
            format!("{} is not allowed here; expected {}", found(actual), expected(what))
        }
        Kind::UnknownField(field, known) => format!("unknown key `{field}`; the keys here are: {}", known.join(", ")),
        Kind::UnknownVariant(value, known) => format!("unknown value {value:?}; allowed: {}", known.join(", ")),
        Kind::MissingField(field) => format!("`{field}` is missing"),
        other => other.to_string(),
    }
}

/// The line and column (from 1) of the value at `path` in a TOML text, or of the deepest table on the way to it.
fn locate(text: &str, path: &[String]) -> Option<(usize, usize)> {
    let document = toml::de::DeTable::parse(text).ok()?;
    let mut table = document.get_ref();
    let mut start = None;
    for key in path {
        let Some((_, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == key.as_str()) else { break };
        start = Some(value.span().start);
        match value.get_ref() {
            toml::de::DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    Some(crate::domain::line_and_column(text, start?))
}

impl PathsConfig {
    /// The mapping files a command reads when it is given no folder: the live folder, or before the first start
    /// has made it, the examples it will be made from.
    pub fn mapping_files(&self) -> &std::path::Path {
        if self.mappings.is_dir() {
            &self.mappings
        } else {
            &self.mapping_examples
        }
    }
}
