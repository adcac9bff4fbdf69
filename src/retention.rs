//! The purge: each kind of data past its period (`[retention]`), a bounded batch per transaction, the batch
//! archive's files deleted from disk, and one audit entry per kind that purged anything. Run daily by
//! `fkoeko serve` and on request by `fkoeko purge` and the page Opbevaring.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::batch::Folders;
use crate::config::{Config, RetentionConfig};
use crate::domain::audit::{AuditAction, AuditEntry};
use crate::domain::retention::{DataKind, Rule};
use crate::storage::Db;
use crate::task::Periodic;

/// What one rule did (or, in a dry run, would do).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub rule: Rule,
    pub rows: u64,
}

impl Outcome {
    pub fn describe(&self) -> String {
        self.rule.describe(self.rows)
    }
}

pub struct Purger {
    db: Db,
    config: RetentionConfig,
    batch_dir: PathBuf,
}

impl Purger {
    /// By the configuration's periods, over its batch folders.
    pub fn new(db: Db, config: &Config) -> Self {
        Purger { db, config: config.retention.clone(), batch_dir: config.batch.dir.clone() }
    }

    /// What a purge now would take, changing nothing.
    pub fn dry_run(&self) -> anyhow::Result<Vec<Outcome>> {
        let now = chrono::Utc::now().naive_utc();
        self.config
            .periods()
            .cutoffs(now)
            .into_iter()
            .map(|rule| Ok(Outcome { rule, rows: self.db.count_purgeable(rule.kind, rule.before)? }))
            .collect()
    }

    /// Purges what is past its period; each kind that purged anything is recorded in the audit trail as done by
    /// `actor` from `origin`.
    pub fn run(&self, actor: &str, origin: &str) -> anyhow::Result<Vec<Outcome>> {
        let now = chrono::Utc::now().naive_utc();
        let batch = i64::from(self.config.batch_rows.get());
        let mut outcomes = Vec::new();
        for rule in self.config.periods().cutoffs(now) {
            let rows = if rule.kind == DataKind::BatchArchive {
                self.purge_archive(rule, batch, now)?
            } else {
                let mut rows = 0;
                loop {
                    let done = self.db.purge_batch(rule.kind, rule.before, batch, now).with_context(|| rule.kind.label())?;
                    rows += done.rows;
                    if !done.more {
                        break rows;
                    }
                }
            };
            let outcome = Outcome { rule, rows };
            if rows > 0 {
                tracing::info!(kind = rule.kind.key(), rows, "purged: {}", outcome.describe());
                self.db.audit(&AuditEntry::new(actor, AuditAction::Purged, outcome.describe(), Some(origin.to_string())))?;
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Deletes the archived files a batch at a time, then marks them; a file already gone is fine (a run that
    /// stopped between the two).
    fn purge_archive(&self, rule: Rule, batch: i64, now: chrono::NaiveDateTime) -> anyhow::Result<u64> {
        let mut purged = 0;
        loop {
            let files = self.db.archived_files_to_purge(rule.before, batch)?;
            for file in &files {
                let folders = Folders::of(&self.batch_dir, file.integration);
                for name in crate::batch::archived_names(&file.stored_name) {
                    remove(&folders.archive.join(name), None)?;
                }
                // Its receipt file, left in the outbox or kept in the archive: only a copy older than the period, not
                // a later file's of the same name.
                for copy in crate::batch::receipt_copies(&folders, &file.file_name, &file.file_key) {
                    remove(&copy, Some(rule.before))?;
                }
            }
            let ids: Vec<i32> = files.iter().map(|f| f.id).collect();
            purged += self.db.mark_archives_purged(&ids, now)?;
            if (files.len() as i64) < batch {
                return Ok(purged);
            }
        }
    }

    /// Purges every `interval` while `fkoeko serve` runs (several instances on one database may each do it: a
    /// row is purged once, and counted by the one that did it).
    pub fn spawn(self, interval: Duration) -> Periodic {
        Periodic::spawn("retention", interval, move || {
            if let Err(error) = self.run("fkoeko serve", "daglig sletning") {
                tracing::error!(
                    error = format!("{error:#}"),
                    "the purge of data past its retention period failed; it is tried again at the next round"
                );
            }
        })
    }
}

/// Deletes a file (only if last changed before `older_than`, when given); one already gone is fine (a run that
/// stopped between deleting and marking).
fn remove(path: &Path, older_than: Option<chrono::NaiveDateTime>) -> anyhow::Result<()> {
    if let Some(before) = older_than {
        let changed = match std::fs::metadata(path).and_then(|m| m.modified()) {
            Ok(changed) => chrono::DateTime::<chrono::Utc>::from(changed).naive_utc(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if changed >= before {
            return Ok(());
        }
    }
    crate::files::remove_if_there(path).map(drop).with_context(|| format!("deleting {}", path.display()))
}
