//! Start-up: the application state every listener, background task and command shares, built once from the
//! configuration and checked before the first delivery arrives; the listeners and background tasks of the service.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::alerts::sender::{self, AlertSender};
use crate::batch::Receiver;
use crate::config::Config;
use crate::domain::sortiment::{parse_sortiment_file, Integration};
use crate::pipeline::{Pipeline, Settings};
use crate::storage::sortiment::Loaded;
use crate::storage::Db;
use crate::task::Periodic;
use crate::wire::WireSpec;
use crate::xml::schema;

/// What the service is made of, built once (`App::build`): the configuration it was started with, the database,
/// and the pipeline (its settings, metrics, and the sortiment and mapping versions in force). The HTTP face, the
/// web page, the batch receiver and the alert sender are each given this, and take what they need from it.
pub struct App {
    pub config: Config,
    pub db: Db,
    pub pipeline: Arc<Pipeline>,
    /// The file writer's last error and count, shown on the page and in /readyz and /metrics.
    pub target_files: Arc<std::sync::Mutex<crate::target_files::WriterStatus>>,
    /// Each forwarder's last error and count of rows copied, by database name.
    pub forwarders: crate::target_forward::ForwarderStatus,
}

impl App {
    /// Everything a delivery needs, checked before the first one arrives: settings, database (migrated, with a
    /// sortiment), mappings and schemas.
    pub fn build(config: &Config) -> anyhow::Result<Arc<App>> {
        let settings = Settings::from_config(config)?;
        let db = open_db(config)?;
        if db.current_sortiment_version()?.is_none() {
            let loaded = load_sortiment(&db, &config.paths.sortiment, false)
                .with_context(|| format!("loading the initial sortiment from {}", config.paths.sortiment.display()))?;
            tracing::info!(?loaded, file = %config.paths.sortiment.display(), "no sortiment in the database; loaded the configured file");
        }
        record_user_changes(&db, config)?;
        check_schemas(&config.paths.schemas)?;
        let pipeline = Pipeline::new(settings, db.clone());
        pipeline.sync_mapping_folder(true)?;
        let mappings = pipeline.mappings()?;
        tracing::info!(version = %mappings.version, "mappings loaded");
        Ok(Arc::new(App {
            config: config.clone(),
            db,
            pipeline: Arc::new(pipeline),
            target_files: Arc::default(),
            forwarders: Arc::default(),
        }))
    }
}

/// The users of the web page live in the configuration: a start that finds them changed records it.
fn record_user_changes(db: &Db, config: &Config) -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    let users: Vec<crate::domain::audit::SeenUser> = config
        .admin
        .users
        .iter()
        .map(|u| crate::domain::audit::SeenUser {
            name: u.name.clone(),
            role: u.role,
            password_digest: hex::encode(Sha256::digest(u.password_hash.as_bytes())),
        })
        .collect();
    if let Some(change) = db.record_user_changes(&users, &command_user(), "konfigurationen")? {
        tracing::info!(change, "the users of the web page changed in the configuration");
    }
    Ok(())
}

/// A pipeline for dry runs that touches no database and no folder: the sortiment file and mapping folder the
/// configuration names, read as they are (`fkoeko validate`, the fuzz target). Nothing is written anywhere.
pub fn offline_pipeline(config: &Config) -> anyhow::Result<Pipeline> {
    let settings = Settings::from_config(config)?;
    let file = &config.paths.sortiment;
    let content = crate::files::read_text(file)?;
    let senders = parse_sortiment_file(&file.display().to_string(), &content)?;
    let dir = config.paths.mapping_files();
    let mappings = crate::domain::mapping::MappingSet::load_dir(dir).map_err(|errors| {
        anyhow::anyhow!("the mapping files in {} do not pass:\n{}", dir.display(), crate::terminal::mapping_errors(&errors))
    })?;
    check_schemas(&config.paths.schemas)?;
    // Never read or written in a dry run; in memory, so that nothing is left behind.
    let db = Db::open(":memory:", 1, Duration::from_secs(1))?;
    Ok(Pipeline::offline(settings, db, crate::domain::sortiment::Sortiment::new(0, senders), mappings))
}

/// As `offline_pipeline`, but deciding by the sortiment and mapping in force in the configured database, which
/// is opened read-only (`fkoeko validate --database`): what a delivery would get from the running service.
pub fn offline_pipeline_from_database(config: &Config) -> anyhow::Result<Pipeline> {
    let settings = Settings::from_config(config)?;
    let stored = open_db_read_only(config)?;
    let version = stored.current_sortiment_version()?.context("no sortiment has been loaded into the database")?;
    let sortiment = stored.load_sortiment(version)?;
    let (_, mappings) = crate::pipeline::in_force(&stored, &config.targets)?;
    check_schemas(&config.paths.schemas)?;
    let db = Db::open(":memory:", 1, Duration::from_secs(1))?;
    Ok(Pipeline::offline(settings, db, sortiment, mappings))
}

/// Both integrations' schemas compile: checked at start, by dry runs, and by `/readyz`.
pub fn check_schemas(dir: &Path) -> Result<(), schema::SchemaError> {
    [Integration::Sf1590A, Integration::Sf1590B].iter().try_for_each(|i| schema::check_schema(&dir.join(WireSpec::of(*i).schema)))
}

/// Who acts at the command line (or started the service), for the audit trail: the process's own user (as the
/// system has it, not as an environment variable says), and the user who ran sudo when it is root.
pub fn command_user() -> String {
    let uid = process_uid();
    let name = uid.and_then(user_name).or_else(|| uid.map(|u| format!("uid {u}"))).unwrap_or_else(|| "?".into());
    match std::env::var("SUDO_USER") {
        Ok(sudo) if uid == Some(0) && !sudo.is_empty() => format!("{sudo} som {name} (fkoeko)"),
        _ => format!("{name} (fkoeko)"),
    }
}

/// The process's user id, from the owner of its /proc entry (std has no getuid).
fn process_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// A user id's name in /etc/passwd.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// Root running a command on a SQLite database (or the folder for one) that belongs to another user, the
/// service's: a file root made or changed there (the database, its journal) would keep the service from writing
/// it, so it is refused with the way to run it as that user.
fn refuse_root_on_others_database(url: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = crate::storage::Backend::sqlite_path(url).filter(|p| *p != ":memory:").map(Path::new) else { return Ok(()) };
    if process_uid() != Some(0) {
        return Ok(());
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let owner = std::fs::metadata(path).or_else(|_| std::fs::metadata(&folder)).map(|m| m.uid());
    match owner {
        Ok(owner) if owner != 0 => {
            let name = user_name(owner).unwrap_or_else(|| owner.to_string());
            anyhow::bail!(
                "{} belongs to the user {name}, and this command runs as root: a database file root makes or changes \
                 there would keep the service from writing it. Run it as that user: runuser -u {name} -- fkoeko …",
                if path.exists() { path.display() } else { folder.display() }
            )
        }
        _ => Ok(()),
    }
}

pub fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = &config.database;
    refuse_root_on_others_database(&db.url)?;
    Db::open(&db.url, db.pool_size, Duration::from_millis(db.busy_timeout_ms)).with_context(|| format!("opening the database {}", db.url))
}

/// The configured database, to read only: dry runs (`fkoeko validate --database`, `fkoeko purge --dry-run`)
/// neither make nor change it.
pub fn open_db_read_only(config: &Config) -> anyhow::Result<Db> {
    let url = &config.database.url;
    Db::open_read_only(url, Duration::from_millis(config.database.busy_timeout_ms))
        .with_context(|| format!("opening the database {url} to read"))
}

/// Parses and stores a sortiment file; errors name file and line.
/// A sortiment without a single sender is refused unless `allow_empty`: after it, every delivery would be
/// rejected with AFSENDER_UKENDT.
pub fn load_sortiment(db: &Db, file: &Path, allow_empty: bool) -> anyhow::Result<Loaded> {
    let content = crate::files::read_text(file)?;
    let senders = parse_sortiment_file(&file.display().to_string(), &content)?;
    anyhow::ensure!(
        allow_empty || !senders.is_empty(),
        "{}: the sortiment has no [[afsender]]: every delivery would be rejected with AFSENDER_UKENDT. Nothing was \
         loaded; the version in force stays (load it with --allow-empty if that is what is meant)",
        file.display()
    );
    Ok(db.save_sortiment(&file.display().to_string(), &content, &senders, &command_user())?)
}

pub fn check_transports(config: &Config) -> anyhow::Result<()> {
    crate::http::check_transport(config)?;
    if config.admin.enabled {
        crate::web::check_transport(config)?;
    }
    Ok(())
}

/// The service's listeners, bound before anything is served so that a taken port stops the start.
pub(crate) struct Listeners {
    main: TcpListener,
    admin: Option<TcpListener>,
}

impl Listeners {
    pub(crate) fn bind(config: &Config) -> anyhow::Result<Self> {
        let bind = |address: &str| TcpListener::bind(address).with_context(|| format!("binding {address}"));
        let main = bind(&config.server.listen)?;
        let admin = if config.admin.enabled { Some(bind(&config.admin.listen)?) } else { None };
        Ok(Listeners { main, admin })
    }

    /// Starts serving, inside an actix system.
    pub(crate) fn serve(self, app: Arc<App>) -> anyhow::Result<Vec<actix_web::dev::Server>> {
        tracing::info!(address = %self.main.local_addr()?, "serving SF1590_A at /sf1590a and SF1590_B at /sf1590b");
        let mut servers = vec![crate::http::server(app.pipeline.clone(), self.main, &app.config)?];
        if let Some(admin) = self.admin {
            tracing::info!(address = %admin.local_addr()?, "serving the web page, /healthz, /readyz and /metrics");
            servers.push(crate::web::server(app, admin)?);
        }
        Ok(servers)
    }
}

/// The tasks beside the listeners: the alert sender, the batch folder watcher and the mapping folder watcher,
/// each when the configuration turns it on.
pub(crate) struct Background(Vec<Periodic>);

impl Background {
    pub(crate) fn start(app: &Arc<App>) -> anyhow::Result<Self> {
        let config = &app.config;
        let mut tasks = Vec::new();
        if config.alerts.enabled {
            let sender = AlertSender::new(app.db.clone(), config.alerts.clone()).context("setting up SMTP for alerts")?;
            tasks.push(sender::spawn(sender, Duration::from_millis(config.alerts.poll_interval_ms)));
        }
        if config.batch.enabled {
            let receiver = Receiver::new(app.clone())?;
            tracing::info!(dir = %config.batch.dir.display(), convention = ?config.batch.convention, "watching the batch inboxes");
            tasks.push(receiver.spawn());
        }
        if !config.targets.folders.is_empty() {
            let writer = crate::target_files::FileWriter::new(app.db.clone(), config.targets.folders.clone(), app.target_files.clone());
            tracing::info!(folders = ?config.targets.folders, "writing target files");
            tasks.push(writer.spawn(Duration::from_millis(config.targets.interval_ms)));
        }
        let identity = if config.targets.databases.is_empty() { String::new() } else { app.db.installation_identity()? };
        for (database, url) in &config.targets.databases {
            let forwarder = crate::target_forward::Forwarder::new(app.db.clone(), database, url, &identity, app.forwarders.clone());
            tracing::info!(database, "forwarding rows to the ERP's database");
            tasks.push(forwarder.spawn(Duration::from_millis(config.targets.interval_ms)));
        }
        if !config.batch.expected.is_empty() {
            let expected = crate::batch::expected::ExpectedFiles::new(app.clone());
            tasks.push(expected.spawn(Duration::from_secs(config.batch.expected_check_secs.max(1))));
        }
        if config.retention.interval_hours > 0 && !config.retention.periods().cutoffs(chrono::Utc::now().naive_utc()).is_empty() {
            let purger = crate::retention::Purger::new(app.db.clone(), config);
            tasks.push(purger.spawn(Duration::from_secs(config.retention.interval_hours * 3600)));
        }
        if config.paths.mappings_poll_interval_ms > 0 {
            tasks.push(app.pipeline.watch_mapping_folder(Duration::from_millis(config.paths.mappings_poll_interval_ms)));
        }
        Ok(Background(tasks))
    }

    pub(crate) fn stop(self) {
        for task in self.0 {
            task.stop();
        }
    }
}

/// A server running in its own thread, for tests and embedding. Dropping it does not stop it; call `stop`.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The administrative listener (web page, health, metrics), when it is on.
    pub admin_addr: Option<SocketAddr>,
    admin_tls: bool,
    pub app: Arc<App>,
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
    let app = App::build(config)?;
    let listeners = Listeners::bind(config)?;
    let addr = listeners.main.local_addr()?;
    let admin_addr = listeners.admin.as_ref().map(|l| l.local_addr()).transpose()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let server_app = app.clone();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            match listeners.serve(server_app) {
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
    let background = Some(Background::start(&app)?);
    Ok(RunningServer { addr, admin_addr, admin_tls: config.admin.tls, app, handles, thread: Some(thread), background })
}
