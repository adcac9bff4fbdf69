//! The file writer: a target profile's file targets, written from the outbox the booking transaction filled,
//! into folders the ERP imports from.
//!
//! Exactly once across crashes: a file is first recorded in the database with its rows (`writing`), then written
//! under a hidden temporary name and synced, recorded as `renaming`, renamed into place and the folder synced,
//! then recorded as `written`. After a crash, a file left `writing` is written again from its rows (the ERP
//! never saw it: it had no name yet); one left `renaming` is renamed if its temporary file is still there, and
//! is otherwise in place already (perhaps taken by the ERP): it is never written twice.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::domain::target::FileLine;
use crate::files::sync_dir;
use crate::storage::targets::{FileRows, TargetFileRow, WaitingRow};
use crate::storage::Db;
use crate::task::Periodic;

/// Waiting rows looked at in one round at most, to find the files they make; the rest wait for the next round.
/// A file of one delivery takes all of that delivery's rows, however many (see `reserve_target_file`).
const ROUND_ROWS: i64 = 10_000;
/// Rows read at a time while a file is written: memory stays bounded whatever the file's size.
const PAGE_ROWS: i64 = 2_000;
/// A file recorded longer ago than this and still not written was left by a writer that stopped (a crash, or
/// another instance that went away): this one finishes it.
const STALE: Duration = Duration::from_secs(60);

/// The outcome of the last round, for the page and /readyz: of the file writer, or of a forwarder (which
/// counts rows copied where the file writer counts files).
#[derive(Debug, Clone, Default)]
pub struct WriterStatus {
    pub last_error: Option<(chrono::DateTime<chrono::Utc>, String)>,
    pub files_written: u64,
}

pub struct FileWriter {
    db: Db,
    folders: BTreeMap<String, PathBuf>,
    pub status: Arc<Mutex<WriterStatus>>,
    /// Files this writer recorded and could not finish yet (the folder was away, the disk full): tried again
    /// every round, not only once they are stale.
    unfinished: std::collections::BTreeSet<i32>,
}

/// `file:<folder>/<name>`: the folder's name and the file name's stem.
fn target_parts(target: &str) -> Option<(&str, &str)> {
    target.strip_prefix("file:")?.split_once('/')
}

impl FileWriter {
    pub fn new(db: Db, folders: BTreeMap<String, PathBuf>, status: Arc<Mutex<WriterStatus>>) -> Self {
        FileWriter { db, folders, status, unfinished: Default::default() }
    }

    /// Writes what waits, and finishes what a stopped writer left (all of it at start: no writer of this
    /// process can be at work then). Returns how many files were written.
    pub fn round(&mut self, at_start: bool) -> anyhow::Result<usize> {
        let mut written = 0;
        let now = chrono::Utc::now().naive_utc();
        for file in self.db.unfinished_target_files()? {
            let stale = now - file.created_at > chrono::Duration::from_std(STALE).expect("a short duration");
            let mine = self.unfinished.contains(&file.id);
            if at_start || stale || mine {
                if !mine {
                    tracing::warn!(
                        file = file.name,
                        target = file.target,
                        state = file.state,
                        "finishing a target file a stopped writer left"
                    );
                }
                self.finish(&file)?;
                written += 1;
            }
        }
        let waiting = self.db.waiting_target_rows(ROUND_ROWS)?;
        for (target, name, rows) in files_of(&waiting)? {
            let Some(id) = self.db.reserve_target_file(&target, &name, rows)? else {
                tracing::debug!(target, name, "another writer took these rows first");
                continue;
            };
            let file = TargetFileRow { id, target, name, state: "writing".into(), created_at: now };
            self.unfinished.insert(id);
            self.finish(&file)?;
            written += 1;
        }
        Ok(written)
    }

    fn folder(&self, target: &str) -> anyhow::Result<(&Path, String)> {
        let (folder, _) = target_parts(target).with_context(|| format!("'{target}' names no folder"))?;
        let path = self.folders.get(folder).with_context(|| {
            format!("rows for {target} wait: the folder '{folder}' is not under [targets.folders] in the configuration (any more)")
        })?;
        Ok((path, folder.to_string()))
    }

    /// Takes a recorded file from where it stands to written.
    fn finish(&mut self, file: &TargetFileRow) -> anyhow::Result<()> {
        let (dir, _) = self.folder(&file.target)?;
        let dir = dir.to_path_buf();
        let path = dir.join(&file.name);
        let temporary = dir.join(format!(".{}.tmp", file.name));
        if file.state == "writing" {
            self.write_synced(file.id, &temporary).with_context(|| format!("writing {}", temporary.display()))?;
            self.db.set_target_file_state(file.id, "renaming")?;
        }
        // Renaming: when the temporary file is gone, it was put in place before a crash.
        if temporary.exists() {
            put_in_place(&temporary, &path)?;
            sync_dir(&dir).with_context(|| format!("syncing {}", dir.display()))?;
        } else if file.state == "writing" {
            anyhow::bail!("{} vanished before it was put in place", temporary.display());
        }
        self.db.set_target_file_state(file.id, "written")?;
        self.unfinished.remove(&file.id);
        tracing::info!(file = %path.display(), target = file.target, "target file written");
        self.status.lock().expect("status lock").files_written += 1;
        Ok(())
    }

    /// Runs a round now, then every `interval`.
    pub fn spawn(mut self, interval: Duration) -> Periodic {
        let mut first = true;
        Periodic::spawn("target-files", interval, move || {
            let outcome = self.round(first);
            first = false;
            let mut status = self.status.lock().expect("status lock");
            match outcome {
                Ok(_) => status.last_error = None,
                Err(e) => {
                    let text = format!("{e:#}");
                    tracing::error!(error = text, "target files: a round failed; trying again");
                    status.last_error = Some((chrono::Utc::now(), text));
                }
            }
        })
    }
}

/// Puts a written file in place under its name, never over another file of that name (one the ERP has not
/// imported yet, left by a database restored from a backup or another installation): a hard link fails if the
/// name is taken. The same content there is this file, linked before a crash. Where the folder has no hard links
/// (some network shares) the name is checked and the file renamed.
fn put_in_place(temporary: &Path, path: &Path) -> anyhow::Result<()> {
    let taken = || {
        anyhow::anyhow!(
            "{} exists already and is not this file: it is left as it is, and this file waits in {}",
            path.display(),
            temporary.display()
        )
    };
    match std::fs::hard_link(temporary, path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::read(path)? != std::fs::read(temporary)? {
                return Err(taken());
            }
        }
        Err(_) if !path.exists() => {
            std::fs::rename(temporary, path).with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))?;
            return Ok(());
        }
        Err(_) => return Err(taken()),
    }
    std::fs::remove_file(temporary).with_context(|| format!("removing {}", temporary.display()))?;
    Ok(())
}

/// The files the waiting rows make, in the order of their first row: per target, per delivery or all together
/// (as each row says), and apart when the header differs (a profile changed in between).
fn files_of(waiting: &[WaitingRow]) -> anyhow::Result<Vec<(String, String, FileRows)>> {
    /// The target, the delivery (0: all together), and the header.
    type Shared = (String, i32, Option<String>);
    /// The file's first row, its last, its name, and whether it is a delivery's.
    type File = (i32, i32, String, bool);
    let mut groups: BTreeMap<Shared, File> = BTreeMap::new();
    // A round's file of "all together" rows ends where another header begins: the rest go in the next round.
    let mut closed: std::collections::HashSet<String> = std::collections::HashSet::new();
    for row in waiting {
        let line = FileLine::from_json(&row.payload).with_context(|| format!("target row {} cannot be read", row.id))?;
        let (_, stem) = target_parts(&row.target).with_context(|| format!("'{}' names no file", row.target))?;
        let per_delivery = line.per == "delivery";
        if !per_delivery && closed.contains(&row.target) {
            continue;
        }
        let key = (row.target.clone(), if per_delivery { row.delivery_key } else { 0 }, line.header.clone());
        if !per_delivery
            && groups.keys().any(|(target, delivery, header)| *target == row.target && *delivery == 0 && *header != line.header)
        {
            closed.insert(row.target.clone());
            continue;
        }
        let group = groups.entry(key).or_insert_with(|| {
            let number = if per_delivery { row.delivery_key } else { row.id };
            (row.id, row.id, format!("{stem}-{number:010}.{}", line.extension), per_delivery)
        });
        group.1 = row.id;
    }
    let mut files: Vec<(i32, String, String, FileRows)> = groups
        .into_iter()
        .map(|((target, delivery, _), (first, last, name, per_delivery))| {
            let rows = if per_delivery { FileRows::Delivery(delivery) } else { FileRows::Range(first, last) };
            (first, target, name, rows)
        })
        .collect();
    files.sort_by_key(|f| f.0);
    Ok(files.into_iter().map(|(_, target, name, rows)| (target, name, rows)).collect())
}

impl FileWriter {
    /// A file's rows, each a line (after the header, when there is one), written a page at a time and synced.
    fn write_synced(&self, file_id: i32, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut out = std::io::BufWriter::new(&file);
        let mut after = 0;
        loop {
            let page = self.db.target_file_rows(file_id, after, PAGE_ROWS)?;
            for (id, row) in &page {
                let line = FileLine::from_json(row)?;
                if after == 0 {
                    if let Some(header) = &line.header {
                        out.write_all(header.as_bytes())?;
                        out.write_all(b"\n")?;
                    }
                }
                out.write_all(line.line.as_bytes())?;
                out.write_all(b"\n")?;
                after = *id;
            }
            if page.len() < PAGE_ROWS as usize {
                break;
            }
        }
        out.flush()?;
        drop(out);
        file.sync_all()?;
        Ok(())
    }
}
