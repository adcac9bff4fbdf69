//! The commands of the `fkoeko` binary, a function each; what they share is built by `startup`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::batch::Receiver;
use crate::config::Config;
use crate::domain::mapping::{KonteringInput, MappingErrors, MappingSet};
use crate::domain::target::PROFILE_FILE;
use crate::startup::{check_transports, load_sortiment, open_db, App, Background, Listeners};
use crate::storage::batch::Reprocess;
use crate::storage::inspect::DeliveryFilter;
use crate::storage::sortiment::Loaded;
use crate::storage::text::Named as _;

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
    /// Check a delivery offline (schema, rules, sortiment, mapping) and print the receipt it would get. Reads the
    /// configured sortiment file and mapping folder; writes nothing anywhere. Logs only with -v.
    /// Exit code 0: every finansbilag would be accepted; 2: something would be rejected.
    Validate {
        file: PathBuf,
        /// Log to standard error as the service would.
        #[arg(short, long)]
        verbose: bool,
        /// Decide by the sortiment and mapping in force in the configured database (opened read-only) instead of
        /// the files.
        #[arg(long)]
        database: bool,
    },
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
    /// The target profile (erp-profil.toml in the mapping folder): the ERP's own import tables.
    Targets {
        #[command(subcommand)]
        command: TargetsCommand,
    },
    /// A consistent copy of the SQLite database, made while the service runs (PostgreSQL: use pg_dump).
    Backup {
        /// The copy's file; it must not exist yet.
        to: PathBuf,
    },
    /// Delete or pseudonymise what is past its retention period ([retention]), as `fkoeko serve` does daily.
    /// Prints what each period took; recorded in the audit trail.
    Purge {
        /// Print what would be purged and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The audit trail: logins, mapping and sortiment changes, purges, refusals.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
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
    Check {
        dir: Option<PathBuf>,
        /// Let a rules file without a single rule pass (every delivery would be rejected with MAPNING_MANGLER).
        #[arg(long)]
        allow_empty: bool,
    },
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

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Entries, newest first, as the page Revision shows them; tab-separated.
    List {
        /// Only this user (or actor: mappings/, a command's user).
        #[arg(long)]
        actor: Option<String>,
        /// Only this action: login, login_failed, login_locked, logout, mapping_saved, mapping_rolled_back,
        /// mapping_files_changed, sortiment_loaded, refused.
        #[arg(long)]
        action: Option<String>,
        /// On or after this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// On or before this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum TargetsCommand {
    /// Check the target profile in a folder (default: paths.mappings) against the target tables' real columns
    /// in the configured database: that every table and column exists, can hold what the profile writes into
    /// it (type, length), and that no NOT NULL column is left unfilled.
    /// Exit code 0: it fits; 1: errors, each at its line; 2: the folder has no profile.
    Check { dir: Option<PathBuf> },
    /// Rows for the ERP's database that it refused (set aside, tried every 5 minutes): try them at once, e.g.
    /// after the ERP's table was fixed. Prints how many.
    Retry,
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
    /// Take a file that is not done over at once: its process failed or hangs. Ends its owner's lease; the next
    /// round of any receiver (the service, or `batch run-once`) carries on from its last committed chunk.
    TakeOver {
        /// The file's id (`fkoeko batch list`).
        id: i32,
    },
    /// Write a done file's receipt file again (and send it back again through Serviceplatformen), from the
    /// stored receipts, at the next round of any receiver: the sender lost it, or it was never delivered.
    WriteReceipt {
        /// The file's id (`fkoeko batch list`).
        id: i32,
    },
    /// The latest batch files: how far each came, and whether its receipt file reached the sender.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Write FILE.metadata beside FILE, as Serviceplatformen's SFTP service writes it (a FileMetadata with a new
    /// FileTransferUUID), for a folder fed by hand and for tests. The file must be complete: its size is read.
    Metadata {
        file: PathBuf,
        /// The SFTP user that sends the file (`sftp_brugere` in the sortiment), or the AfsenderSystem's UUID.
        #[arg(long)]
        sender: String,
        /// The sender's own id of the file; left out, the file is known by its FileTransferUUID.
        #[arg(long)]
        senders_file_id: Option<String>,
        /// The recipient's SFTP user; default: this installation's first (batch.sftp_users).
        #[arg(long, conflicts_with = "routed")]
        to: Option<String>,
        /// Route dynamically (ROUTING_V1_0_0) to this installation's municipality and IT system, from this
        /// sending IT system (SenderIt-system).
        #[arg(long, value_name = "SENDER_IT_SYSTEM")]
        routed: Option<uuid::Uuid>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SortimentCommand {
    /// Load a sortiment file as the new version in force (the earlier versions are kept).
    Load {
        file: PathBuf,
        /// Load a sortiment without a single sender (every delivery would be rejected with AFSENDER_UKENDT).
        #[arg(long)]
        allow_empty: bool,
    },
}

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let config = Config::load(cli.config.as_deref()).context("reading the configuration")?;
    // A dry run prints its receipt and nothing else, unless asked to.
    if !matches!(cli.command, Command::Validate { verbose: false, .. }) {
        crate::telemetry::init(&config.log);
    }
    match cli.command {
        Command::Serve => serve(&config),
        Command::Batch { command: BatchCommand::RunOnce } => batch_run_once(&config),
        Command::Batch { command: BatchCommand::List { limit } } => batch_list(&config, limit),
        Command::Batch { command: BatchCommand::WriteReceipt { id } } => reprocess(&config, id, Reprocess::WriteReceipt),
        Command::Batch { command: BatchCommand::TakeOver { id } } => reprocess(&config, id, Reprocess::TakeOver),
        Command::Batch { command: BatchCommand::Metadata { file, sender, senders_file_id, to, routed } } => {
            batch_metadata(&config, &file, &sender, senders_file_id.as_deref(), to, routed)
        }
        Command::Alerts { command: AlertsCommand::List { status } } => list_alerts(&config, status),
        Command::Deliveries { command } => deliveries(&config, command),
        Command::Mappings { command: MappingsCommand::Check { dir, allow_empty } } => check_mappings(&config, dir, allow_empty),
        Command::Mappings { command: MappingsCommand::Try { kontering, fordringstype, dir } } => {
            try_mapping(&config, *kontering, fordringstype, dir)
        }
        Command::Targets { command: TargetsCommand::Check { dir } } => check_targets(&config, dir),
        Command::Targets { command: TargetsCommand::Retry } => {
            let rows = open_db(&config)?.retry_parked_rows()?;
            println!("{rows} row(s) set aside are tried again at the forwarder's next round");
            Ok(0)
        }
        Command::Backup { to } => backup(&config, &to),
        Command::Purge { dry_run } => purge(&config, dry_run),
        Command::Audit { command: AuditCommand::List { actor, action, from, to, limit } } => {
            list_audit(&config, crate::storage::audit::AuditFilter { actor, action, from, to }, limit)
        }
        Command::Admin { command: AdminCommand::HashPassword } => hash_password(),
        Command::Validate { file, database, .. } => validate(&config, file, database),
        Command::Sortiment { command: SortimentCommand::Load { file, allow_empty } } => load_sortiment_file(&config, file, allow_empty),
    }
}

/// `fkoeko batch take-over` and `fkoeko batch write-receipt`.
fn reprocess(config: &Config, id: i32, how: Reprocess) -> anyhow::Result<i32> {
    match open_db(config)?.reprocess_batch_file(id, how, &crate::startup::command_user(), "kommandolinjen")? {
        Some(file) => {
            match how {
                Reprocess::TakeOver => println!("{}: released from {}; the next round takes it over", file.file_name, file.claimed_by),
                Reprocess::WriteReceipt => println!("{}: its receipt file is written again at the next round", file.file_name),
            }
            Ok(0)
        }
        None => {
            let which = if how == Reprocess::TakeOver { "that is not done" } else { "that is done" };
            eprintln!("no batch file {id} {which} (fkoeko batch list)");
            Ok(1)
        }
    }
}

/// `fkoeko batch list`.
fn batch_list(config: &Config, limit: i64) -> anyhow::Result<i32> {
    let db = open_db(config)?;
    let files = db.recent_batch_files(limit)?;
    println!(
        "{:>6}  {:<19}  {:<8}  {:<10}  {:>8}  {:>8}  {:<28}  file",
        "id", "received", "integr.", "state", "accepted", "rejected", "receipt file"
    );
    for file in &files {
        let transfer = db.receipt_transfers_of(file.id)?.into_iter().next();
        let sent = match &transfer {
            Some(t) => format!("{} ({} tr{})", t.state.name(), t.attempts, if t.attempts == 1 { "y" } else { "ies" }),
            None if file.receipt_file.is_some() => "in the outbox".to_string(),
            None => "-".to_string(),
        };
        println!(
            "{:>6}  {:<19}  {:<8}  {:<10}  {:>8}  {:>8}  {:<28}  {}{}",
            file.id,
            file.received_at.format("%Y-%m-%d %H:%M:%S"),
            file.integration.as_str(),
            file.state.name(),
            file.accepted_count,
            file.rejected_count,
            sent,
            file.file_name,
            transfer.and_then(|t| t.last_error).map_or(String::new(), |e| format!("  ({e})")),
        );
    }
    println!("{} file(s)", files.len());
    Ok(0)
}

/// `fkoeko batch metadata`: the `.metadata` the platform would have written beside FILE.
fn batch_metadata(
    config: &Config,
    file: &std::path::Path,
    sender: &str,
    senders_file_id: Option<&str>,
    to: Option<String>,
    routed: Option<uuid::Uuid>,
) -> anyhow::Result<i32> {
    use crate::batch::metadata::{self, Describe, SendTo};
    let size = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?.len();
    let name = file.file_name().and_then(|n| n.to_str()).context("the file has no name")?;
    let authority = config.installation.myndighed.clone();
    let to = match (routed, to) {
        (Some(_), _) => SendTo::Routed {
            it_system: config.installation.it_system.context("--routed needs installation.it_system in the configuration")?,
            authority: authority.clone(),
        },
        (None, Some(user)) => SendTo::User(user),
        (None, None) => SendTo::User(config.batch.sftp_users.first().cloned().unwrap_or_else(|| authority.clone())),
    };
    let transfer = uuid::Uuid::new_v4().to_string();
    let document = metadata::render(&Describe {
        file_transfer_uuid: Some(&transfer),
        file_name: name,
        size,
        sender,
        senders_file_id,
        to: &to,
        from_it_system: routed,
        from_authority: &authority,
    });
    let target = file.with_file_name(format!("{name}.metadata"));
    crate::files::write_atomically(&target, |out| std::io::Write::write_all(out, document.as_bytes()))
        .with_context(|| format!("writing {}", target.display()))?;
    println!("{}", target.display());
    Ok(0)
}

/// `fkoeko batch run-once`: every complete file in the inboxes, with a progress bar on a terminal.
fn batch_run_once(config: &Config) -> anyhow::Result<i32> {
    let receiver = Receiver::new(App::build(config)?)?;
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

/// `fkoeko alerts list`.
fn list_alerts(config: &Config, status: Option<String>) -> anyhow::Result<i32> {
    let db = open_db(config)?;
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

/// `fkoeko deliveries list|show`.
fn deliveries(config: &Config, command: DeliveriesCommand) -> anyhow::Result<i32> {
    let db = open_db(config)?;
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

/// The files of a mapping folder checked as the service checks them before using them: a target profile
/// among them against the configured database's tables.
fn checked_folder(config: &Config, dir: &Path, allow_empty: bool) -> anyhow::Result<Result<MappingSet, MappingErrors>> {
    let files = match crate::domain::mapping::read_dir(dir) {
        Ok(files) => files,
        Err(error) => return Ok(Err(error.into())),
    };
    if !files.contains_key(PROFILE_FILE) {
        return Ok(MappingSet::check_new(&files, allow_empty));
    }
    Ok(crate::pipeline::check_new_files(&open_db(config)?, &files, allow_empty, &config.targets)?)
}

/// `fkoeko backup`.
fn backup(config: &Config, to: &Path) -> anyhow::Result<i32> {
    anyhow::ensure!(!to.exists(), "{} exists already: name a new file", to.display());
    let db = open_db(config)?;
    db.backup_to(to).with_context(|| format!("copying the database to {}", to.display()))?;
    println!("{}: a consistent copy of {}", to.display(), config.database.url);
    Ok(0)
}

/// `fkoeko purge`.
fn purge(config: &Config, dry_run: bool) -> anyhow::Result<i32> {
    // A dry run changes nothing: not even a database that is not there yet is made.
    let db = if dry_run { crate::startup::open_db_read_only(config)? } else { open_db(config)? };
    let purger = crate::retention::Purger::new(db, config);
    let outcomes = if dry_run { purger.dry_run()? } else { purger.run(&crate::startup::command_user(), "kommandolinjen")? };
    if outcomes.is_empty() {
        println!("no retention period is set ([retention] in the configuration): nothing is purged");
    }
    for outcome in outcomes {
        let rule = &outcome.rule;
        if dry_run {
            let before = rule.before.format("%Y-%m-%d %H:%M");
            println!(
                "{}: {} row(s) would be purged — {}, older than {before} UTC: {}",
                rule.kind.key(),
                outcome.rows,
                rule.kind.label(),
                rule.kind.action()
            );
        } else {
            println!("{}: {} row(s) were purged — {}", rule.kind.key(), outcome.rows, outcome.describe());
        }
    }
    Ok(0)
}

/// `fkoeko audit list`.
fn list_audit(config: &Config, filter: crate::storage::audit::AuditFilter, limit: i64) -> anyhow::Result<i32> {
    if let Some(action) = filter.action.as_deref() {
        anyhow::ensure!(
            crate::domain::audit::AuditAction::parse(action).is_some(),
            "unknown action '{action}' (see fkoeko audit list --help)"
        );
    }
    let rows = open_db(config)?.audit_list(&filter, limit)?;
    println!("time (UTC)\tactor\taction\tdetail\torigin");
    for row in rows {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            row.at.format("%Y-%m-%d %H:%M:%S"),
            row.actor,
            row.action,
            row.detail,
            row.origin.unwrap_or_default()
        );
    }
    Ok(0)
}

/// `fkoeko targets check`.
fn check_targets(config: &Config, dir: Option<PathBuf>) -> anyhow::Result<i32> {
    let dir = dir.unwrap_or_else(|| config.paths.mapping_files().to_path_buf());
    if !dir.join(PROFILE_FILE).exists() {
        println!("{}: no {PROFILE_FILE}; accepted records go to the adapter's own import tables only", dir.display());
        return Ok(2);
    }
    match checked_folder(config, &dir, true)? {
        Ok(set) => {
            let places = set.profile.as_ref().map(|p| p.destinations().join(", ")).unwrap_or_default();
            println!("{}: {PROFILE_FILE} fits where it writes: {places}", dir.display());
            Ok(0)
        }
        Err(errors) => {
            print!("{}", crate::terminal::mapping_errors(&errors));
            Ok(1)
        }
    }
}

/// `fkoeko mappings check`.
fn check_mappings(config: &Config, dir: Option<PathBuf>, allow_empty: bool) -> anyhow::Result<i32> {
    let dir = dir.unwrap_or_else(|| config.paths.mapping_files().to_path_buf());
    match checked_folder(config, &dir, allow_empty)? {
        Ok(set) => {
            println!("{}: the mapping files pass (version {})", dir.display(), set.version);
            // Rows that never win, and what the configured sortiment allows that nothing maps: warnings only.
            let file = &config.paths.sortiment;
            let sortiment = std::fs::read_to_string(file)
                .ok()
                .and_then(|content| crate::domain::sortiment::parse_sortiment_file(&file.display().to_string(), &content).ok())
                .map(|senders| crate::domain::sortiment::Sortiment::new(0, senders));
            if sortiment.is_none() {
                println!("(the sortiment {} could not be read: what it allows is not checked against the rules)", file.display());
            }
            for warning in set.warnings(sortiment.as_ref()) {
                println!("advarsel: {warning}");
            }
            Ok(0)
        }
        Err(errors) => {
            print!("{}", crate::terminal::mapping_errors(&errors));
            Ok(1)
        }
    }
}

/// `fkoeko mappings try`: which rule maps a kontering or fordringstype, in force or in a folder.
fn try_mapping(config: &Config, kontering: KonteringArgs, fordringstype: Option<String>, dir: Option<PathBuf>) -> anyhow::Result<i32> {
    let load = |dir: &Path| MappingSet::load_dir(dir).map_err(|errors| print!("{}", crate::terminal::mapping_errors(&errors)));
    let set = match &dir {
        Some(dir) => load(dir),
        None => match crate::pipeline::in_force(&open_db(config)?, &config.targets) {
            Ok((_, set)) => Ok(set),
            // Nothing has run on this database yet: the configured files are what would be taken into use.
            Err(crate::pipeline::TechnicalError::NoMappings) => load(config.paths.mapping_files()),
            Err(e) => return Err(e.into()),
        },
    };
    let Ok(set) = set else { return Ok(1) };
    let kontering = fordringstype.is_none().then(|| KonteringInput::from(kontering));
    let (text, mapped) = crate::terminal::tried(&set, kontering.as_ref(), fordringstype.as_deref());
    print!("{text}");
    Ok(if mapped { 0 } else { 2 })
}

/// `fkoeko admin hash-password`: an Argon2id hash of a password read from standard input.
fn hash_password() -> anyhow::Result<i32> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(password.chars().count() >= 12, "use a password of at least 12 characters");
    println!("{}", crate::web::hash_password(password)?);
    Ok(0)
}

/// `fkoeko validate`: the receipt a delivery would get, from a dry run of the production pipeline.
fn validate(config: &Config, file: PathBuf, database: bool) -> anyhow::Result<i32> {
    let pipeline = match database {
        true => crate::startup::offline_pipeline_from_database(config)?,
        false => crate::startup::offline_pipeline(config)?,
    };
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    if !database && config.paths.mapping_files().join(PROFILE_FILE).exists() {
        // Offline there are no tables to fit the values to: a value too long for the ERP's column passes here.
        eprintln!("note: the target profile ({PROFILE_FILE}) is fitted to its tables only with --database; without it, values are not checked against the ERP's columns");
    }
    let processed = crate::pipeline::dry_run(&pipeline, &bytes)?;
    println!("{}", processed.receipts.to_xml());
    Ok(if processed.receipts.rejected() == 0 { 0 } else { 2 })
}

/// `fkoeko sortiment load`.
fn load_sortiment_file(config: &Config, file: PathBuf, allow_empty: bool) -> anyhow::Result<i32> {
    let db = open_db(config)?;
    match load_sortiment(&db, &file, allow_empty)? {
        Loaded::NewVersion(v) => println!("{}: loaded as sortiment version {v}", file.display()),
        Loaded::Unchanged(v) => println!("{}: same as sortiment version {v} in force; nothing changed", file.display()),
    }
    Ok(0)
}

/// Runs the service until it is stopped: the listeners, then the background tasks.
fn serve(config: &Config) -> anyhow::Result<i32> {
    check_transports(config)?;
    let app = App::build(config)?;
    let listeners = Listeners::bind(config)?;
    let background = Background::start(&app)?;
    actix_web::rt::System::new().block_on(async move {
        let servers = listeners.serve(app)?;
        futures_util::future::try_join_all(servers).await?;
        anyhow::Ok(())
    })?;
    background.stop();
    Ok(0)
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
