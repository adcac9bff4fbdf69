//! The masse transport: drop folders. Files arrive in an inbox (an SFTP upload area), are taken when complete,
//! claimed by a rename into `processing/` and a row in the database, run through the pipeline, answered with
//! a receipt file in `outbox/`, and moved to `archive/`.
//!
//! Every step can be interrupted. A file's row says how far it came; a file whose process stopped is taken over
//! once its lease runs out, resumed after its last committed chunk, and its receipt file written (again, to
//! the same name and content) before it is marked done.

pub mod expected;
pub mod metadata;
mod send_back;

pub use send_back::receipt_copies;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use chrono::Utc;
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use crate::config::{BatchConfig, BatchConvention};
use crate::domain::delivery::{DeliveryRecord, Transport};
use crate::domain::receipt::{ReceiptSet, Stamp};
use crate::domain::rejection::{Finding, Rejection};
use crate::domain::sortiment::Integration;
use crate::files::{move_if_there, sync_dir, write_atomically};
use crate::pipeline::{FileOrigin, MasseFile, Pipeline, Progress, RoutedFrom};
use crate::startup::App;
use crate::storage::batch::{BatchFile, BatchState, Claimed, Lease, NewBatchFile};
use crate::storage::Db;
use crate::task::Periodic;
use metadata::Metadata;

/// The folders of one integration.
#[derive(Debug, Clone)]
pub struct Folders {
    pub inbox: PathBuf,
    pub processing: PathBuf,
    pub archive: PathBuf,
    pub outbox: PathBuf,
}

impl Folders {
    pub fn of(dir: &Path, integration: Integration) -> Self {
        let base = dir.join(integration.as_str().to_lowercase().replace('_', ""));
        Folders {
            inbox: base.join("inbox"),
            processing: base.join("processing"),
            archive: base.join("archive"),
            outbox: base.join("outbox"),
        }
    }

    fn create(&self) -> std::io::Result<()> {
        for dir in [&self.inbox, &self.processing, &self.archive, &self.outbox] {
            fs::create_dir_all(dir)?;
        }
        Ok(())
    }
}

/// What became of one file.
#[derive(Debug, Clone)]
pub struct Handled {
    pub file_name: String,
    pub receipt_file: PathBuf,
    pub accepted: i32,
    pub rejected: i32,
    /// The file was processed before: nothing was booked, its receipt file was written again.
    pub repeated: bool,
}

/// What one round over the drop folders did.
#[derive(Debug, Default)]
pub struct Round {
    pub handled: Vec<Handled>,
    /// Files that could not be handled this round, and why.
    pub failed: Vec<(String, String)>,
}

impl Round {
    fn record(&mut self, file: &str, outcome: anyhow::Result<Option<Handled>>) {
        match outcome {
            Ok(handled) => self.handled.extend(handled),
            Err(e) => {
                let why = format!("{e:#}");
                error!(file, error = %why, "batch file failed; it is tried again when its lease has run out");
                self.failed.push((file.to_string(), why));
            }
        }
    }
}

/// Reports progress of the file being processed: its name and how far it is.
pub type ProgressFn<'a> = dyn Fn(&str, Progress) + Sync + 'a;

pub struct Receiver {
    db: Db,
    pipeline: Arc<Pipeline>,
    config: BatchConfig,
    /// This installation's SFTP users (or its municipality's CVR), its municipality and its IT system: to whom
    /// a file must be addressed for it to be taken.
    sftp_users: Vec<String>,
    authority: String,
    it_system: Option<uuid::Uuid>,
    /// Who is mailed when a receipt file is given up.
    alerts: crate::config::AlertsConfig,
    owner: String,
    /// Files already warned about (incomplete or unreadable metadata), so each is logged once.
    warned: Mutex<HashSet<String>>,
    /// Files in an inbox refused for their metadata, with the sizes and times of the metadata and the file then.
    refused: Mutex<HashMap<PathBuf, RefusedStamp>>,
    /// Files seen in processing/ without their metadata or a row, and when first.
    orphans: Mutex<HashMap<String, std::time::Instant>>,
    /// Content hash and size of files in processing/, which do not change there: a file that waits for
    /// another with the same key is not read again at every round.
    hashes: Mutex<HashMap<String, (String, u64)>>,
}

impl Receiver {
    pub fn new(app: Arc<App>) -> anyhow::Result<Self> {
        let config = &app.config;
        let batch = config.batch.clone();
        for integration in [Integration::Sf1590A, Integration::Sf1590B] {
            let folders = Folders::of(&batch.dir, integration);
            folders.create().with_context(|| format!("creating the batch folders under {}", batch.dir.display()))?;
        }
        let sftp_users = if batch.sftp_users.is_empty() { vec![config.installation.myndighed.clone()] } else { batch.sftp_users.clone() };
        let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let owner = format!("{}:{}:{}", host.trim(), std::process::id(), &uuid::Uuid::new_v4().to_string()[..8]);
        Ok(Receiver {
            db: app.db.clone(),
            pipeline: app.pipeline.clone(),
            config: batch,
            sftp_users,
            authority: config.installation.myndighed.clone(),
            it_system: config.installation.it_system,
            alerts: config.alerts.clone(),
            owner,
            warned: Mutex::default(),
            refused: Mutex::default(),
            orphans: Mutex::default(),
            hashes: Mutex::default(),
        })
    }

    fn lease(&self, batch_id: i32) -> Lease {
        Lease { batch_id, owner: self.owner.clone(), duration: self.lease_duration() }
    }

    fn lease_duration(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.config.lease_secs as i64)
    }

    /// One round over every integration: files whose process stopped, files left in `processing/`, then every
    /// complete file in the inboxes. A file that fails (the database, the disk) is reported and left where it
    /// is, to be taken over once its lease runs out; the other files are still handled.
    pub fn run_once(&self, progress: &ProgressFn<'_>) -> anyhow::Result<Round> {
        let mut round = Round::default();
        for integration in [Integration::Sf1590A, Integration::Sf1590B] {
            let folders = Folders::of(&self.config.dir, integration);
            for file in self.db.abandoned_batch_files(integration)? {
                // Only an instance whose folders hold the file can carry it on. One with folders of its own
                // (another `batch.dir`, the share not mounted) would take the lease, fail to read the file, and
                // keep it from the instance that has it for a lease at a time, round after round.
                if !holds(&folders, &file) {
                    let here = folders.processing.display();
                    self.warn_once(
                        &file.file_name,
                        &format!("its process stopped, and it is not in {here}: left for an instance that has it"),
                    );
                    continue;
                }
                if self.db.take_over_batch_file(&file, &self.owner, self.lease_duration())? {
                    let name = file.file_name.clone();
                    let carried = self.db.batch_file(file.id).map_err(anyhow::Error::from).and_then(|file| {
                        self.carry_on(integration, &folders, file.context("the row was just updated")?, progress).map(Some)
                    });
                    round.record(&name, carried);
                }
            }
            for stored in list(&folders.processing)? {
                if stored.ends_with(".metadata") {
                    continue;
                }
                // A file in processing/ without a row of its own: its process stopped before it claimed the row,
                // or it waits for a file with the same key. A file with a row is done, in hand, or taken over
                // above once its lease has run out.
                if self.db.batch_file_by_stored_name(&stored)?.is_some() {
                    continue;
                }
                // Its taker moves its .metadata in right after it: until then it is not claimed by its content
                // alone, which would pass over who sent it. Only one whose taker stopped between the two stays so.
                if self.config.convention == BatchConvention::Metadata && !folders.processing.join(format!("{stored}.metadata")).exists() {
                    let first_seen =
                        *self.orphans.lock().expect("orphans lock").entry(stored.clone()).or_insert_with(std::time::Instant::now);
                    if first_seen.elapsed() < ORPHAN_GRACE {
                        continue;
                    }
                }
                self.orphans.lock().expect("orphans lock").remove(&stored);
                round.record(original_name(&stored), self.handle_stored(integration, &folders, &stored, progress));
            }
            let names = list(&folders.inbox)?;
            let present: HashSet<PathBuf> = names.iter().map(|n| folders.inbox.join(n)).collect();
            self.refused.lock().expect("refused lock").retain(|path, _| !path.starts_with(&folders.inbox) || present.contains(path));
            for name in &names {
                let handled = self.take(integration, &folders, name).and_then(|taken| match taken {
                    Some(stored) => self.handle_stored(integration, &folders, &stored, progress),
                    None => Ok(None),
                });
                round.record(name, handled);
            }
            if let Err(e) = self.carry_on_sending(integration, &folders, &names) {
                let why = format!("{e:#}");
                error!(integration = integration.as_str(), error = %why, "sending receipt files back failed; tried again next round");
                round.failed.push((format!("{} receipt files", integration.as_str()), why));
            }
        }
        Ok(round)
    }

    /// Moves a complete file (and its metadata) from the inbox to `processing/`; `None` when it is not complete
    /// or another process took it first. The rename is the claim on the file system.
    fn take(&self, integration: Integration, folders: &Folders, name: &str) -> anyhow::Result<Option<String>> {
        if name.starts_with('.')
            || self.config.temporary_suffixes.iter().any(|s| name.ends_with(s.as_str()))
            || name.ends_with(".metadata")
            || name.ends_with(send_back::TECHNICAL_RECEIPT)
        {
            return Ok(None);
        }
        // The names made from it (in processing/, the receipt file, its .trigger and .sftpreceipt) must fit in the
        // 255 bytes a file name may have.
        if name.len() > MAX_NAME_BYTES {
            self.warn_once(name, &format!("its name is {} bytes long; at most {MAX_NAME_BYTES} are taken", name.len()));
            return Ok(None);
        }
        let path = folders.inbox.join(name);
        let Ok(info) = fs::metadata(&path) else { return Ok(None) };
        if !info.is_file() {
            return Ok(None);
        }
        let with_metadata = match self.config.convention {
            BatchConvention::Metadata => {
                let meta_path = folders.inbox.join(format!("{name}.metadata"));
                let Ok(meta_info) = fs::metadata(&meta_path) else { return Ok(None) };
                // A file refused for its metadata is not read again until the metadata or the file changes.
                let stamp = (meta_info.len(), meta_info.modified().ok(), info.len(), info.modified().ok());
                if self.refused.lock().expect("refused lock").get(&path) == Some(&stamp) {
                    return Ok(None);
                }
                let refuse = |why: String| {
                    self.warn_once(name, &why);
                    self.refused.lock().expect("refused lock").insert(path.clone(), stamp);
                    Ok(None)
                };
                if meta_info.len() > MAX_METADATA_BYTES {
                    return refuse(format!(
                        "its .metadata is {} bytes; a metadata document is at most {MAX_METADATA_BYTES}",
                        meta_info.len()
                    ));
                }
                let Ok(bytes) = fs::read(&meta_path) else { return Ok(None) };
                let settled = age(&meta_path) > Duration::from_secs(self.config.quiet_secs);
                match metadata::parse(&bytes) {
                    Ok(m) if m.file_name != name => return refuse(format!("its .metadata names another file, {}", m.file_name)),
                    // Still being uploaded (or the metadata is wrong): wait.
                    Ok(m) if m.size_in_bytes != info.len() => {
                        if settled {
                            return refuse(format!("its .metadata says {} bytes, the file has {}", m.size_in_bytes, info.len()));
                        }
                        return Ok(None);
                    }
                    Ok(m) => match m.addressed_to(&self.addressee()) {
                        Ok(()) => true,
                        // Not ours: left where it is for whoever it is for, and said once.
                        Err(why) => return refuse(format!("it is not addressed to this installation: {why}")),
                    },
                    // The metadata may still be being written.
                    Err(e) if settled => return refuse(format!("its .metadata cannot be read: {e}")),
                    Err(_) => return Ok(None),
                }
            }
            BatchConvention::Plain => {
                if age(&path) < Duration::from_secs(self.config.quiet_secs) {
                    return Ok(None);
                }
                false
            }
        };
        let stored = format!("{}-{}", Utc::now().format("%Y%m%dT%H%M%S%.6f"), name);
        match fs::rename(&path, folders.processing.join(&stored)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("moving {} to processing", path.display())),
        }
        if with_metadata {
            fs::rename(folders.inbox.join(format!("{name}.metadata")), folders.processing.join(format!("{stored}.metadata")))
                .with_context(|| format!("moving {name}.metadata to processing"))?;
        }
        sync_dir(&folders.processing).with_context(|| format!("syncing {}", folders.processing.display()))?;
        info!(file = name, integration = integration.as_str(), "batch file taken from the inbox");
        Ok(Some(stored))
    }

    /// A file in `processing/`: claimed in the database, then processed, or answered from before.
    fn handle_stored(
        &self,
        integration: Integration,
        folders: &Folders,
        stored: &str,
        progress: &ProgressFn<'_>,
    ) -> anyhow::Result<Option<Handled>> {
        let path = folders.processing.join(stored);
        let name = original_name(stored).to_string();
        let known = self.hashes.lock().expect("hashes lock").get(stored).cloned();
        let (content_hash, size) = match known {
            Some(known) => known,
            None => {
                let hashed = hash_file(&path)?;
                self.hashes.lock().expect("hashes lock").insert(stored.to_string(), hashed.clone());
                hashed
            }
        };
        let meta_path = folders.processing.join(format!("{stored}.metadata"));
        let (meta, meta_text) = match fs::read(&meta_path) {
            Ok(bytes) => (metadata::parse(&bytes).ok(), Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(_) => (None, None),
        };
        let file_key = meta.as_ref().and_then(Metadata::file_key).unwrap_or_else(|| format!("sha256:{content_hash}"));
        let new = NewBatchFile {
            file_key,
            integration,
            file_name: name.clone(),
            stored_name: stored.to_string(),
            content_hash: content_hash.clone(),
            size_bytes: size as i64,
            metadata: meta_text,
        };
        match self.db.claim_batch_file(&new, &self.owner, self.lease_duration())? {
            Claimed::Busy => Ok(None),
            Claimed::Mine(file) => self.carry_on(integration, folders, file, progress).map(Some),
            Claimed::Done(earlier) => {
                let repeated = earlier.content_hash == content_hash;
                let input_key = if repeated { earlier.file_key.clone() } else { format!("file:{content_hash}") };
                let place = self.receipt_place(folders, &name, meta.as_ref(), &input_key);
                if repeated {
                    info!(file = %name, first = %earlier.file_name, "batch file was processed before; nothing booked, its receipt file is written again");
                    write_receipt_file(&self.db, &earlier, &place.write)?;
                    self.send_back(integration, folders, &place, meta.as_ref(), Some(earlier.id))?;
                } else {
                    warn!(file = %name, key = %earlier.file_key, "another file was delivered before under the same id; rejected");
                    let id = match meta.as_ref().map(|m| (&m.senders_file_id, &m.file_transfer_uuid)) {
                        Some((Some(id), _)) => format!("SendersFileId {id}"),
                        Some((None, Some(transfer))) => format!("FileTransferUUID {transfer}"),
                        _ => "samme id".to_string(),
                    };
                    let finding = Finding::nowhere(Rejection::DuplicateDifferent(format!("{id} (fil {})", earlier.file_name)));
                    // Recorded, counted and alerted like any other rejected delivery.
                    let mut record = DeliveryRecord::new(integration, Transport::Masse, format!("file:{content_hash}"));
                    record.sender = meta.as_ref().and_then(|m| self.pipeline.sender_of(&origin_of(m)));
                    let set = self.pipeline.reject_as_whole(record, finding)?.receipts;
                    write_atomically(&place.write, |out| set.write_document(out, std::iter::empty()))
                        .with_context(|| format!("writing {}", place.write.display()))?;
                    self.send_back(integration, folders, &place, meta.as_ref(), None)?;
                }
                self.archive(folders, stored)?;
                // A repeat is answered with the first file's receipts; other content with one rejection.
                let (accepted, rejected) = if repeated { (earlier.accepted_count, earlier.rejected_count) } else { (0, 1) };
                Ok(Some(Handled { file_name: name, receipt_file: place.outbox, accepted, rejected, repeated }))
            }
        }
    }

    /// Takes a claimed file from wherever it stopped to done.
    fn carry_on(
        &self,
        integration: Integration,
        folders: &Folders,
        mut file: BatchFile,
        progress: &ProgressFn<'_>,
    ) -> anyhow::Result<Handled> {
        let lease = self.lease(file.id);
        let meta = file.metadata.as_deref().and_then(|m| metadata::parse(m.as_bytes()).ok());
        let place = self.receipt_place(folders, &file.file_name, meta.as_ref(), &file.file_key);
        if file.state == BatchState::Processing {
            let path = folders.processing.join(&file.stored_name);
            let masse = MasseFile {
                path: &path,
                name: &file.file_name,
                integration,
                content_hash: &file.content_hash,
                origin: meta.as_ref().map(origin_of),
                lease: lease.clone(),
            };
            let name = file.file_name.clone();
            file = self.pipeline.process_file(&masse, &|p| progress(&name, p))?;
        }
        if file.state == BatchState::Receipt {
            write_receipt_file(&self.db, &file, &place.write)?;
            self.send_back(integration, folders, &place, meta.as_ref(), Some(file.id))?;
            self.archive(folders, &file.stored_name)?;
            self.db.mark_batch_done(&lease, &place.outbox.display().to_string())?;
            info!(file = %file.file_name, receipt = %place.outbox.display(), accepted = file.accepted_count, rejected = file.rejected_count, "receipt file written");
        }
        Ok(Handled {
            file_name: file.file_name,
            receipt_file: place.outbox,
            accepted: file.accepted_count,
            rejected: file.rejected_count,
            repeated: false,
        })
    }

    /// Moves a processed file (and its metadata) to the archive; already there is fine (a resumed run).
    fn archive(&self, folders: &Folders, stored: &str) -> anyhow::Result<()> {
        self.hashes.lock().expect("hashes lock").remove(stored);
        for name in archived_names(stored) {
            move_if_there(&folders.processing.join(&name), &folders.archive.join(&name)).with_context(|| format!("archiving {name}"))?;
        }
        sync_dir(&folders.archive).with_context(|| format!("syncing {}", folders.archive.display()))?;
        Ok(())
    }

    fn addressee(&self) -> metadata::Addressee<'_> {
        metadata::Addressee { sftp_users: &self.sftp_users, authority: &self.authority, it_system: self.it_system }
    }

    fn warn_once(&self, name: &str, why: &str) {
        if self.warned.lock().expect("warned lock").insert(format!("{name}|{why}")) {
            warn!(file = name, "batch file not taken: {why}");
        }
    }

    /// Watches the inboxes in a thread until stopped.
    /// Watches the inboxes: a round every poll interval. `stop` ends it after the file in hand (which, if the
    /// process is killed instead, is resumed by the next).
    pub fn spawn(self) -> Periodic {
        let interval = Duration::from_millis(self.config.poll_interval_ms);
        Periodic::spawn("batch", interval, move || {
            // Failed files are logged as they fail, and tried again when their lease has run out.
            if let Err(e) = self.run_once(&|_, _| {}) {
                error!(error = format!("{e:#}"), "batch files: a round failed; trying again");
            }
        })
    }
}

/// Who a file's metadata says sent it.
fn origin_of(m: &Metadata) -> FileOrigin {
    let routed = m.routing.as_ref().map(|r| RoutedFrom { it_system: r.sender_it_system, authority: r.sender_authority.clone() });
    FileOrigin { sftp_user: m.sender.clone(), routed }
}

/// A metadata document's size and time, and its file's, when it was refused.
type RefusedStamp = (u64, Option<SystemTime>, u64, Option<SystemTime>);

/// How long a file in processing/ waits for the metadata its taker moves in after it.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// The largest metadata document read: one with thousands of recipients is far smaller.
const MAX_METADATA_BYTES: u64 = 4 * 1024 * 1024;

/// The longest name of a file that is taken from an inbox.
pub const MAX_NAME_BYTES: usize = 200;

/// The receipt file's name: the input's, with `.kvittering.xml` for its `.xml`.
pub fn receipt_name(file_name: &str) -> String {
    format!("{}.kvittering.xml", file_name.strip_suffix(".xml").unwrap_or(file_name))
}

/// What archiving a file moves (and a purge of the archive deletes): the file and its metadata.
pub fn archived_names(stored: &str) -> [String; 2] {
    [stored.to_string(), format!("{stored}.metadata")]
}

/// Whether these folders hold a file whose process stopped: in `processing/`, or, once every item is decided, in
/// `archive/` (a process may stop between archiving the input and recording that it is done).
fn holds(folders: &Folders, file: &BatchFile) -> bool {
    folders.processing.join(&file.stored_name).exists()
        || (file.state == BatchState::Receipt && folders.archive.join(&file.stored_name).exists())
}

/// The name a file arrived under, from its name in processing/ ("<time>-<name>").
fn original_name(stored: &str) -> &str {
    stored.split_once('-').map_or(stored, |(_, name)| name)
}

/// Names in a folder, sorted (files arrive in name order from most senders).
fn list(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

fn age(path: &Path) -> Duration {
    fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default()
}

fn hash_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Writes the receipt file of a file whose items are all decided, from the stored receipts, a page at a time.
/// Its time stamp is the file's finish time, so writing it again gives the same file.
fn write_receipt_file(db: &Db, file: &BatchFile, target: &Path) -> anyhow::Result<()> {
    let processed = file.finished_at.map_or_else(Utc::now, |t| t.and_utc());
    // Stored from the parsed delivery: what is there is a UUID; what could not be read is the nil UUID.
    let id = |stored: &Option<String>| stored.as_deref().and_then(|s| uuid::Uuid::parse_str(s).ok()).unwrap_or_default();
    let head = ReceiptSet::new(id(&file.leverance_id), id(&file.afsender_system), Stamp(processed), Vec::new());
    let mut page = Vec::new().into_iter();
    let mut after = -1;
    let stored = std::iter::from_fn(|| loop {
        if let Some((position, receipt)) = page.next() {
            after = position;
            return Some(Ok(receipt));
        }
        match db.batch_receipts_page(file.id, after, 5000) {
            Ok(next) if next.is_empty() => return None,
            Ok(next) => page = next.into_iter(),
            Err(e) => return Some(Err(std::io::Error::other(e))),
        }
    });
    write_atomically(target, |out| head.write_document(out, stored)).with_context(|| format!("writing {}", target.display()))
}
