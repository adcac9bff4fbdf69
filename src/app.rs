//! Wiring: from a configuration to a running pipeline, and the commands of the `fkoeko` binary.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::alerts::sender::{self, AlertSender};
use crate::batch::Receiver;
use crate::config::Config;
use crate::domain::mapping::{KonteringInput, MappingSet};
use crate::domain::sortiment::{parse_sortiment_file, Integration};
use crate::pipeline::{Mode, Pipeline, Settings, Transport};
use crate::storage::inspect::DeliveryFilter;
use crate::storage::sortiment::Loaded;
use crate::storage::Db;
use crate::task::Periodic;
use crate::wire::WireSpec;
use crate::xml::schema;

#[derive(Parser, Debug)]
#[command(name = "fkoeko", version, about = "Receiving end of FK-ØKO (SF1590_A, SF1590_B) for an ERP system")]
pub struct Cli {
    /// Configuration file (TOML); without it ./fkoeko.toml is read if present. FKOEKO_* variables override.
    #[arg(long, global = true, env = "FKOEKO_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP service.
    Serve,
    /// Check a delivery offline (schema, rules, sortiment, mapping) and print the receipt it would get.
    /// Exit code 0: every finansbilag would be accepted; 2: something would be rejected.
    Validate { file: PathBuf },
    /// Manage the sortiment.
    Sortiment {
        #[command(subcommand)]
        command: SortimentCommand,
    },
    /// Batch files (masse) in the drop folders.
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
    /// Rejection alerts in the outbox.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Received deliveries: what was rejected and why, what was booked where.
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// The mapping files: check them, try a kontering or fordringstype.
    Mappings {
        #[command(subcommand)]
        command: MappingsCommand,
    },
    /// The web page's users.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeliveriesCommand {
    /// Deliveries, newest first, as the web page lists them.
    List {
        /// A LeveranceId, or a BilagId or FordringId of one of its items.
        #[arg(long, short)]
        query: Option<String>,
        /// AfsenderSystem (UUID).
        #[arg(long)]
        sender: Option<String>,
        /// SF1590_A or SF1590_B.
        #[arg(long)]
        integration: Option<String>,
        /// Only deliveries with an error of this receipt code.
        #[arg(long)]
        code: Option<String>,
        /// Received on or after this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Received on or before this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// Only deliveries with something rejected.
        #[arg(long)]
        rejected: bool,
        /// Only deliveries older than this id (the next page of a list).
        #[arg(long)]
        before: Option<i32>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One delivery, by its id or LeveranceId: every receipt with every error, and what was booked.
    Show { key: String },
}

#[derive(Subcommand, Debug)]
pub enum MappingsCommand {
    /// Check the mapping files in a folder (default: paths.mappings, or the examples before the first start), as
    /// the service would before using them.
    /// Exit code 0: they pass; 1: errors, each with its file and line.
    Check { dir: Option<PathBuf> },
    /// Which rule maps a kontering (or a fordringstype), and to what. Uses the version in force, or --dir.
    Try {
        #[command(flatten)]
        kontering: Box<KonteringArgs>,
        /// Try a fordringstype (SF1590_B) instead of a kontering.
        #[arg(long, conflicts_with_all = ["funktion", "dranst", "art"])]
        fordringstype: Option<String>,
        /// Try the files in this folder instead of the version in force.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// The fields of a kontering, for `mappings try`.
#[derive(clap::Args, Debug)]
pub struct KonteringArgs {
    #[arg(long, default_value = "")]
    funktion: String,
    #[arg(long, default_value = "")]
    gruppering: String,
    #[arg(long, default_value = "")]
    dranst: String,
    #[arg(long, default_value = "")]
    ejerforhold: String,
    #[arg(long, default_value = "")]
    art: String,
    #[arg(long, default_value = "")]
    omkostningssted: String,
    #[arg(long, default_value = "")]
    pspelement: String,
    /// NAME=VALUE, separated by commas.
    #[arg(long, default_value = "")]
    dimensions: String,
}

impl From<KonteringArgs> for KonteringInput {
    fn from(a: KonteringArgs) -> Self {
        KonteringInput {
            funktion: a.funktion,
            gruppering: a.gruppering,
            dranst: a.dranst,
            ejerforhold: a.ejerforhold,
            art: a.art,
            omkostningssted: a.omkostningssted,
            psp_element: a.pspelement,
            dimensions: a.dimensions,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Read a password from standard input and print its Argon2 hash, for admin.users in the configuration.
    HashPassword,
}

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// Show pending, sent and failed alerts.
    List {
        /// Only alerts with this status: pending, sending, sent or failed.
        #[arg(long)]
        status: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum BatchCommand {
    /// Process every complete file in the inboxes (and any a stopped process left), then exit.
    RunOnce,
}

#[derive(Subcommand, Debug)]
pub enum SortimentCommand {
    /// Load a sortiment file as the new version in force (the earlier versions are kept).
    Load { file: PathBuf },
}

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let config = Config::load(cli.config.as_deref()).context("reading the configuration")?;
    crate::telemetry::init(&config.log);
    match cli.command {
        Command::Serve => {
            check_transports(&config)?;
            let pipeline = build(&config)?;
            let listeners = Listeners::bind(&config)?;
            let background = Background::start(&pipeline, &config)?;
            actix_web::rt::System::new().block_on(async move {
                let servers = listeners.serve(pipeline, &config)?;
                futures_util::future::try_join_all(servers).await?;
                anyhow::Ok(())
            })?;
            background.stop();
            Ok(0)
        }
        Command::Batch { command: BatchCommand::RunOnce } => {
            let pipeline = build(&config)?;
            let receiver = Receiver::new(pipeline, &config)?;
            let bar = progress_bar();
            let round = receiver.run_once(&|name, p| {
                if let Some(bar) = &bar {
                    bar.set_length(p.items_total as u64);
                    bar.set_position(p.items_done as u64);
                    bar.set_message(name.to_string());
                }
            });
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let round = round?;
            for h in &round.handled {
                let note = if h.repeated { " (processed before: nothing booked, receipt written again)" } else { "" };
                println!("{}: {} accepted, {} rejected -> {}{note}", h.file_name, h.accepted, h.rejected, h.receipt_file.display());
            }
            for (file, why) in &round.failed {
                eprintln!("{file}: failed: {why}");
            }
            Ok(if round.failed.is_empty() { 0 } else { 1 })
        }
        Command::Alerts { command: AlertsCommand::List { status } } => {
            let db = open_db(&config)?;
            let rows = db.list_alerts(status.as_deref())?;
            println!(
                "{:>6}  {:<8}  {:>6}  {:<19}  {:<19}  {:<36}  recipients / last error",
                "id", "status", "tries", "created", "next try / sent", "sender"
            );
            for row in &rows {
                let when = row.sent_at.unwrap_or(row.next_attempt_at);
                println!(
                    "{:>6}  {:<8}  {:>6}  {:<19}  {:<19}  {:<36}  {}{}",
                    row.id,
                    row.status,
                    row.attempts,
                    row.created_at.format("%Y-%m-%d %H:%M:%S"),
                    when.format("%Y-%m-%d %H:%M:%S"),
                    row.afsender_system.as_deref().unwrap_or("-"),
                    row.recipients,
                    row.last_error.as_deref().map_or(String::new(), |e| format!("  ({e})")),
                );
            }
            println!("{} alert(s)", rows.len());
            Ok(0)
        }
        Command::Deliveries { command } => {
            let db = open_db(&config)?;
            match command {
                DeliveriesCommand::List { query, sender, integration, code, from, to, rejected, before, limit } => {
                    let filter = DeliveryFilter { text: query, sender, integration, code, from, to, only_rejected: rejected, before };
                    let rows = db.find_deliveries(&filter, limit)?;
                    let codes_of = db.error_codes_of(&rows.iter().map(|r| r.id).collect::<Vec<_>>())?;
                    print!("{}", crate::terminal::delivery_list(&rows, &codes_of));
                    Ok(0)
                }
                DeliveriesCommand::Show { key } => match db.delivery_detail(&key)? {
                    Some(detail) => {
                        print!("{}", crate::terminal::delivery(&detail));
                        Ok(0)
                    }
                    None => {
                        eprintln!("no delivery with id or LeveranceId {key}");
                        Ok(1)
                    }
                },
            }
        }
        Command::Mappings { command: MappingsCommand::Check { dir } } => {
            let dir = dir.unwrap_or_else(|| config.paths.mapping_files().to_path_buf());
            match MappingSet::load_dir(&dir) {
                Ok(set) => {
                    println!("{}: the mapping files pass (version {})", dir.display(), set.version);
                    Ok(0)
                }
                Err(errors) => {
                    print!("{}", crate::terminal::mapping_errors(&errors));
                    Ok(1)
                }
            }
        }
        Command::Mappings { command: MappingsCommand::Try { kontering, fordringstype, dir } } => {
            let load = |dir: &Path| MappingSet::load_dir(dir).map_err(|errors| print!("{}", crate::terminal::mapping_errors(&errors)));
            let set = match &dir {
                Some(dir) => load(dir),
                None => match crate::pipeline::in_force(&open_db(&config)?) {
                    Ok((_, set)) => Ok(set),
                    // Nothing has run on this database yet: the configured files are what would be taken into use.
                    Err(crate::pipeline::TechnicalError::NoMappings) => load(config.paths.mapping_files()),
                    Err(e) => return Err(e.into()),
                },
            };
            let Ok(set) = set else { return Ok(1) };
            let kontering = fordringstype.is_none().then(|| KonteringInput::from(*kontering));
            let (text, mapped) = crate::terminal::tried(&set, kontering.as_ref(), fordringstype.as_deref());
            print!("{text}");
            Ok(if mapped { 0 } else { 2 })
        }
        Command::Admin { command: AdminCommand::HashPassword } => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(password.chars().count() >= 12, "use a password of at least 12 characters");
            println!("{}", crate::web::hash_password(password)?);
            Ok(0)
        }
        Command::Validate { file } => {
            let pipeline = build(&config)?;
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let (transport, integration) = Transport::detect(&bytes);
            let processed = pipeline.process(&bytes, integration, transport, None, Mode::DryRun)?;
            println!("{}", processed.receipts.to_xml());
            Ok(if processed.receipts.rejected() == 0 { 0 } else { 2 })
        }
        Command::Sortiment { command: SortimentCommand::Load { file } } => {
            let db = open_db(&config)?;
            match load_sortiment(&db, &file)? {
                Loaded::NewVersion(v) => println!("{}: loaded as sortiment version {v}", file.display()),
                Loaded::Unchanged(v) => println!("{}: same as sortiment version {v} in force; nothing changed", file.display()),
            }
            Ok(0)
        }
    }
}

fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = &config.database;
    Db::open(&db.url, db.pool_size, Duration::from_millis(db.busy_timeout_ms)).with_context(|| format!("opening the database {}", db.url))
}

/// Parses and stores a sortiment file; errors name file and line.
pub fn load_sortiment(db: &Db, file: &Path) -> anyhow::Result<Loaded> {
    let content = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let senders = parse_sortiment_file(&file.display().to_string(), &content)?;
    Ok(db.save_sortiment(&file.display().to_string(), &content, &senders)?)
}

/// Everything a delivery needs, checked before the first one arrives: settings, database (migrated, with a
/// sortiment), mappings and schemas.
pub fn build(config: &Config) -> anyhow::Result<Arc<Pipeline>> {
    let settings = Settings::from_config(config)?;
    let db = open_db(config)?;
    if db.current_sortiment_version()?.is_none() {
        let loaded = load_sortiment(&db, &config.paths.sortiment)
            .with_context(|| format!("loading the initial sortiment from {}", config.paths.sortiment.display()))?;
        tracing::info!(?loaded, file = %config.paths.sortiment.display(), "no sortiment in the database; loaded the configured file");
    }
    for integration in [Integration::Sf1590A, Integration::Sf1590B] {
        schema::check_schema(&config.paths.schemas.join(WireSpec::of(integration).schema))?;
    }
    let pipeline = Pipeline::new(settings, db);
    pipeline.sync_mapping_folder(true)?;
    let mappings = pipeline.mappings()?;
    tracing::info!(version = %mappings.version, "mappings loaded");
    Ok(Arc::new(pipeline))
}

fn check_transports(config: &Config) -> anyhow::Result<()> {
    crate::http::check_transport(config)?;
    if config.admin.enabled {
        crate::web::check_transport(config)?;
    }
    Ok(())
}

/// The service's listeners, bound before anything is served so that a taken port stops the start.
struct Listeners {
    main: TcpListener,
    admin: Option<TcpListener>,
}

impl Listeners {
    fn bind(config: &Config) -> anyhow::Result<Self> {
        let bind = |address: &str| TcpListener::bind(address).with_context(|| format!("binding {address}"));
        let main = bind(&config.server.listen)?;
        let admin = if config.admin.enabled { Some(bind(&config.admin.listen)?) } else { None };
        Ok(Listeners { main, admin })
    }

    /// Starts serving, inside an actix system.
    fn serve(self, pipeline: Arc<Pipeline>, config: &Config) -> anyhow::Result<Vec<actix_web::dev::Server>> {
        tracing::info!(address = %self.main.local_addr()?, "serving SF1590_A at /sf1590a and SF1590_B at /sf1590b");
        let mut servers = vec![crate::http::server(pipeline.clone(), self.main, config)?];
        if let Some(admin) = self.admin {
            tracing::info!(address = %admin.local_addr()?, "serving the web page, /healthz, /readyz and /metrics");
            servers.push(crate::web::server(pipeline, admin, config)?);
        }
        Ok(servers)
    }
}

/// The tasks beside the listeners: the alert sender, the batch folder watcher and the mapping folder watcher,
/// each when the configuration turns it on.
struct Background(Vec<Periodic>);

impl Background {
    fn start(pipeline: &Arc<Pipeline>, config: &Config) -> anyhow::Result<Self> {
        let mut tasks = Vec::new();
        if config.alerts.enabled {
            let sender = AlertSender::new(pipeline.db.clone(), config.alerts.clone()).context("setting up SMTP for alerts")?;
            tasks.push(sender::spawn(sender, Duration::from_millis(config.alerts.poll_interval_ms)));
        }
        if config.batch.enabled {
            let receiver = Receiver::new(pipeline.clone(), config)?;
            tracing::info!(dir = %config.batch.dir.display(), convention = ?config.batch.convention, "watching the batch inboxes");
            tasks.push(receiver.spawn());
        }
        if config.paths.mappings_poll_interval_ms > 0 {
            tasks.push(pipeline.watch_mapping_folder(Duration::from_millis(config.paths.mappings_poll_interval_ms)));
        }
        Ok(Background(tasks))
    }

    fn stop(self) {
        for task in self.0 {
            task.stop();
        }
    }
}

/// A progress bar on a terminal; none when the output goes to a file or a pipe.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} items, {per_sec}, {eta} left")
        .expect("a valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    Some(bar)
}

/// A server running in its own thread, for tests and embedding. Dropping it does not stop it; call `stop`.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The administrative listener (web page, health, metrics), when it is on.
    pub admin_addr: Option<SocketAddr>,
    admin_tls: bool,
    pub pipeline: Arc<Pipeline>,
    handles: Vec<actix_web::dev::ServerHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
    background: Option<Background>,
}

impl RunningServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// A URL on the administrative listener.
    pub fn admin_url(&self, path: &str) -> String {
        let scheme = if self.admin_tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.admin_addr.expect("the admin listener is on"))
    }

    pub fn stop(mut self) {
        if let Some(background) = self.background.take() {
            background.stop();
        }
        actix_web::rt::System::new().block_on(async {
            for handle in &self.handles {
                handle.stop(true).await;
            }
        });
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the service on the configured addresses (port 0 picks a free one).
pub fn spawn(config: &Config) -> anyhow::Result<RunningServer> {
    check_transports(config)?;
    let pipeline = build(config)?;
    let listeners = Listeners::bind(config)?;
    let addr = listeners.main.local_addr()?;
    let admin_addr = listeners.admin.as_ref().map(|l| l.local_addr()).transpose()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let (server_pipeline, server_config) = (pipeline.clone(), config.clone());
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            match listeners.serve(server_pipeline, &server_config) {
                Ok(servers) => {
                    let _ = tx.send(Ok(servers.iter().map(|s| s.handle()).collect::<Vec<_>>()));
                    let _ = futures_util::future::join_all(servers).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
    });
    let handles = rx.recv().context("server thread ended")??;
    let background = Some(Background::start(&pipeline, config)?);
    Ok(RunningServer { addr, admin_addr, admin_tls: config.admin.tls, pipeline, handles, thread: Some(thread), background })
}
