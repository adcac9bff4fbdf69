//! Wiring: from a configuration to a running pipeline, and the commands of the `fkoeko` binary.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::alerts::sender::{self, AlertSender};
use crate::batch::Receiver;
use crate::task::Periodic;
use crate::config::Config;
use crate::domain::sortiment::{parse_sortiment_file, Integration};
use crate::wire::WireSpec;
use crate::pipeline::{Mode, Pipeline, Settings, Transport};
use crate::storage::sortiment::Loaded;
use crate::storage::Db;
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
            crate::http::check_transport(&config)?;
            let pipeline = build(&config)?;
            let alerts = start_alerts(&pipeline, &config)?;
            let batch = start_batch(&pipeline, &config)?;
            let listener = TcpListener::bind(&config.server.listen).with_context(|| format!("binding {}", config.server.listen))?;
            tracing::info!(address = %listener.local_addr()?, "serving SF1590_A at /sf1590a and SF1590_B at /sf1590b");
            actix_web::rt::System::new().block_on(crate::http::server(pipeline, listener, &config)?)?;
            if let Some(alerts) = alerts {
                alerts.stop();
            }
            if let Some(batch) = batch {
                batch.stop();
            }
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
            println!("{:>6}  {:<8}  {:>6}  {:<19}  {:<19}  {:<36}  recipients / last error", "id", "status", "tries", "created", "next try / sent", "sender");
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
    Db::open(&db.url, db.pool_size, Duration::from_millis(db.busy_timeout_ms))
        .with_context(|| format!("opening the database {}", db.url))
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

/// The alert sender task, when alerts are on.
fn start_alerts(pipeline: &Pipeline, config: &Config) -> anyhow::Result<Option<Periodic>> {
    if !config.alerts.enabled {
        return Ok(None);
    }
    let sender = AlertSender::new(pipeline.db.clone(), config.alerts.clone()).context("setting up SMTP for alerts")?;
    Ok(Some(sender::spawn(sender, Duration::from_millis(config.alerts.poll_interval_ms))))
}

/// The drop-folder receiver, when batch files are on.
fn start_batch(pipeline: &Arc<Pipeline>, config: &Config) -> anyhow::Result<Option<Periodic>> {
    if !config.batch.enabled {
        return Ok(None);
    }
    let receiver = Receiver::new(pipeline.clone(), config)?;
    tracing::info!(dir = %config.batch.dir.display(), convention = ?config.batch.convention, "watching the batch inboxes");
    Ok(Some(receiver.spawn()))
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
    pub pipeline: Arc<Pipeline>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    alerts: Option<Periodic>,
    batch: Option<Periodic>,
}

impl RunningServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn stop(mut self) {
        if let Some(alerts) = self.alerts.take() {
            alerts.stop();
        }
        if let Some(batch) = self.batch.take() {
            batch.stop();
        }
        actix_web::rt::System::new().block_on(self.handle.stop(true));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the service on the configured address (port 0 picks a free one).
pub fn spawn(config: &Config) -> anyhow::Result<RunningServer> {
    crate::http::check_transport(config)?;
    let pipeline = build(config)?;
    let listener = TcpListener::bind(&config.server.listen)?;
    let addr = listener.local_addr()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let (server_pipeline, server_config) = (pipeline.clone(), config.clone());
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            match crate::http::server(server_pipeline, listener, &server_config) {
                Ok(server) => {
                    let _ = tx.send(Ok(server.handle()));
                    let _ = server.await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
    });
    let handle = rx.recv().context("server thread ended")??;
    let alerts = start_alerts(&pipeline, config)?;
    let batch = start_batch(&pipeline, config)?;
    Ok(RunningServer { addr, pipeline, handle, thread: Some(thread), alerts, batch })
}
