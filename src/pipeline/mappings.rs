//! The mapping in force, and how it changes without a restart.
//!
//! The database holds every version; the newest is in force for every instance on it. A delivery takes the
//! version in force once, at its start, and is mapped by that version alone. The folder under mappings/ is a
//! second way in: a change there is checked and stored as a new version, and the folder is rewritten whenever
//! the version in force moves on elsewhere (the page, a rollback, another instance). Files that fail the check
//! never replace a working version.

use std::fs;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{Held, Pipeline, TechnicalError};
use crate::domain::mapping::{self, MappingErrors, MappingFiles, MappingSet};
use crate::domain::target::Places;
use crate::files::{sync_dir, write_atomically};
use crate::storage::mappings::{MappingSource, NewMapping, Saved, StoredMapping};
use crate::task::Periodic;

/// The outcome of a change asked for on the page (or by a rollback).
#[derive(Debug)]
pub enum MappingChange {
    /// Stored as the version with this id, and in force now.
    Saved(i64),
    /// The files are the version in force already.
    Unchanged(i64),
    /// Refused: the files do not pass the check; the version in force stays.
    Invalid(MappingErrors),
    /// Refused: the edit began from another version than this one, which is in force.
    Moved(i64),
}

/// The folder's state as last read or written by this process.
#[derive(Default)]
pub(super) struct FolderState {
    /// Hash of the files as last seen; a different hash is a change made in the folder.
    seen: Option<String>,
    /// The stored version the folder was last in step with. When the version in force moves past it, the folder
    /// is rewritten; while it has not, a failed edit in the folder is left alone for its author to finish.
    synced: Option<String>,
}

/// The stored version in force, and its rules: what the page and `fkoeko mappings try` show and try.
/// `places`: the folders and databases a profile's targets may name (`[targets]`).
pub fn in_force(db: &crate::storage::Db, places: &crate::config::TargetsConfig) -> Result<(StoredMapping, MappingSet), TechnicalError> {
    let (id, _) = db.current_mapping()?.ok_or(TechnicalError::NoMappings)?;
    let stored = db.mapping_version(id)?.ok_or(TechnicalError::NoMappings)?;
    let mut set = MappingSet::check(&stored.files).map_err(|errors| TechnicalError::MappingsInvalid(errors.to_string()))?;
    // The profile fitted the tables when it was stored; a table changed since (by the ERP) stops it here, not at
    // the first delivery's write.
    bind_targets(db, &mut set, places)?.map_err(|errors| TechnicalError::MappingsInvalid(errors.to_string()))?;
    Ok((stored, set))
}

/// Binds the set's target profile, when it has one, to the target tables' real columns: in the adapter's
/// database, and in the ERP's databases (read there, or as last read when one cannot be reached). The inner
/// error: the profile does not fit the tables, at its lines.
pub fn bind_targets(
    db: &crate::storage::Db,
    set: &mut MappingSet,
    places: &crate::config::TargetsConfig,
) -> Result<Result<(), MappingErrors>, TechnicalError> {
    let Some(profile) = set.profile.clone() else { return Ok(Ok(())) };
    let tables = db.target_columns(&profile.tables())?;
    let mut remote = std::collections::HashMap::new();
    let mut unreachable = std::collections::HashMap::new();
    for (database, table) in profile.database_tables() {
        let Some(url) = places.databases.get(database) else { continue };
        let id = crate::domain::target::database_target_id(database, table);
        match crate::storage::targets::remote_columns(url, table) {
            Ok(found) => {
                if let Some(columns) = &found {
                    // Written only when they changed: this runs on every re-read and every view of the page.
                    if db.kept_target_columns(&id)?.as_ref() != Some(columns) {
                        db.keep_target_columns(&id, columns)?;
                    }
                    remote.insert(id, columns.clone());
                }
            }
            Err(error) => match db.kept_target_columns(&id)? {
                Some(columns) => {
                    tracing::warn!(database, table, %error, "the ERP's database cannot be reached; its columns as last read are used");
                    remote.insert(id, columns);
                }
                None => {
                    unreachable.insert(database.to_string(), error.to_string());
                }
            },
        }
    }
    let folders: Vec<String> = places.folders.keys().cloned().collect();
    let databases: Vec<String> = places.databases.keys().cloned().collect();
    let places = Places {
        reserved: crate::storage::targets::OWN_TABLES,
        tables: &tables,
        remote: &remote,
        folders: &folders,
        databases: &databases,
        unreachable: &unreachable,
    };
    Ok(match profile.bind(&places) {
        Ok(targets) => {
            set.targets = Some(Arc::new(targets));
            Ok(())
        }
        Err(errors) => Err(MappingErrors(errors)),
    })
}

/// Files that are to become the version in force: checked on their own (`MappingSet::check_new`), and their
/// target profile against the tables it names.
pub fn check_new_files(
    db: &crate::storage::Db,
    files: &MappingFiles,
    allow_empty: bool,
    places: &crate::config::TargetsConfig,
) -> Result<Result<MappingSet, MappingErrors>, TechnicalError> {
    Ok(match MappingSet::check_new(files, allow_empty) {
        Ok(mut set) => bind_targets(db, &mut set, places)?.map(|()| set),
        Err(errors) => Err(errors),
    })
}

impl Pipeline {
    /// The mapping in force, re-read when a newer version has been stored (by this or another instance).
    pub fn mappings(&self) -> Result<Arc<MappingSet>, TechnicalError> {
        if let Some((_, mappings)) = &self.fixed {
            return Ok(mappings.clone());
        }
        if let Some(held) = self.mappings.lock().expect("mapping lock").as_ref().and_then(|h| h.fresh(self.settings.versions_refresh)) {
            return Ok(held);
        }
        let (id, _) = self.db.current_mapping()?.ok_or(TechnicalError::NoMappings)?;
        let mut cached = self.mappings.lock().expect("mapping lock");
        if let Some(current) = cached.as_mut().filter(|h| h.id == id) {
            current.checked = Some(std::time::Instant::now());
            return Ok(current.value.clone());
        }
        match in_force(&self.db, &self.settings.targets) {
            Ok((stored, set)) => {
                let set = Arc::new(set);
                tracing::info!(id = stored.id, version = %set.version, "mapping version in force");
                *cached = Some(Held::new(stored.id, set.clone()));
                Ok(set)
            }
            // Every stored version was checked before it was stored; only a program with stricter checks than
            // the one that stored it gets here. It keeps mapping by the version it had.
            Err(TechnicalError::MappingsInvalid(errors)) => {
                tracing::error!(id, errors, "stored mapping version does not pass this program's checks; kept the one in use");
                cached.as_ref().map(|h| h.value.clone()).ok_or(TechnicalError::MappingsInvalid(errors))
            }
            Err(e) => Err(e),
        }
    }

    /// Checks files and, when they pass, stores them as the version in force and writes them to the folder.
    /// `begun_on`: the version an edit started from, when the change must not replace any other.
    pub fn change_mappings(
        &self,
        files: &MappingFiles,
        author: &str,
        source: MappingSource,
        comment: &str,
        begun_on: Option<i64>,
        allow_empty: bool,
    ) -> Result<MappingChange, TechnicalError> {
        self.change_mappings_from(files, author, None, source, comment, begun_on, allow_empty)
    }

    /// As `change_mappings`, saying where the change came from for the audit trail (the page's client address).
    #[allow(clippy::too_many_arguments)]
    pub fn change_mappings_from(
        &self,
        files: &MappingFiles,
        author: &str,
        origin: Option<&str>,
        source: MappingSource,
        comment: &str,
        begun_on: Option<i64>,
        allow_empty: bool,
    ) -> Result<MappingChange, TechnicalError> {
        let version = match check_new_files(&self.db, files, allow_empty, &self.settings.targets)? {
            Ok(set) => set.version,
            Err(errors) => return Ok(MappingChange::Invalid(errors)),
        };
        let mut folder = self.mapping_folder.lock().expect("mapping folder lock");
        let saved = self.db.save_mapping(&NewMapping { version: &version, files, author, origin, source, comment, begun_on })?;
        self.forget_versions();
        tracing::info!(?saved, %version, author, source = source.as_str(), "mapping change");
        let change = match saved {
            Saved::Moved(current) => return Ok(MappingChange::Moved(current)),
            Saved::New(id) => MappingChange::Saved(id),
            Saved::Unchanged(id) => MappingChange::Unchanged(id),
        };
        self.write_folder(&mut folder, files, &version)?;
        Ok(change)
    }

    /// Brings back an earlier version, as a new version (the history only grows).
    pub fn roll_back_mappings(&self, to: i64, author: &str) -> Result<Option<MappingChange>, TechnicalError> {
        self.roll_back_mappings_from(to, author, None)
    }

    /// As `roll_back_mappings`, saying where it came from for the audit trail.
    pub fn roll_back_mappings_from(&self, to: i64, author: &str, origin: Option<&str>) -> Result<Option<MappingChange>, TechnicalError> {
        let Some(old) = self.db.mapping_version(to)? else { return Ok(None) };
        let comment = format!("tilbage til version {to}");
        // The version was in force once: bringing it back is the operator's explicit choice.
        self.change_mappings_from(&old.files, author, origin, MappingSource::Rollback, &comment, None, true).map(Some)
    }

    /// Brings the folder and the database in step. A change in the folder that passes the check is stored as
    /// the version in force; one that does not is logged and left (and moved aside when the folder is next
    /// rewritten). When the version in force has moved on elsewhere, the folder is rewritten with it.
    ///
    /// At start, files that match an earlier version are an out-of-date copy (this instance was down while the
    /// mapping changed) and are rewritten; with no version stored yet, the files must pass the check.
    pub fn sync_mapping_folder(&self, at_start: bool) -> anyhow::Result<()> {
        let dir = &self.settings.mapping_dir;
        let mut folder = self.mapping_folder.lock().expect("mapping folder lock");
        let current = self.db.current_mapping()?;
        if at_start && current.is_none() && !dir.exists() {
            seed(dir, &self.settings.mapping_examples)?;
        }
        let files = match mapping::read_dir(dir) {
            Ok(files) => Some(files),
            Err(e) if current.is_some() => {
                tracing::warn!(error = %e, dir = %dir.display(), "mapping folder not readable; it is written again from the version in force");
                None
            }
            Err(e) => return Err(e).with_context(|| format!("reading the mappings in {}", dir.display())),
        };
        let hash = files.as_ref().map(mapping::version_of);
        let changed_here = hash.is_some() && hash != folder.seen;
        if let (true, Some(files), Some(hash)) = (changed_here, &files, &hash) {
            folder.seen = Some(hash.clone());
            let stale = at_start && current.as_ref().is_some_and(|(_, v)| v != hash) && self.db.mapping_version_known(hash)?;
            // Nobody is asked in the folder: files without rules are refused there (the page and the command can
            // be told to allow them).
            match check_new_files(&self.db, files, false, &self.settings.targets)? {
                Err(errors) => {
                    let Some((_, in_force)) = &current else {
                        return Err(errors).with_context(|| format!("loading the mappings in {}", dir.display()));
                    };
                    tracing::error!(dir = %dir.display(), errors = %errors, "mapping files changed but do not pass the check; the version in force stays");
                    folder.synced.get_or_insert_with(|| in_force.clone());
                    return Ok(());
                }
                Ok(_) if stale => {
                    tracing::warn!(dir = %dir.display(), "mapping folder holds an earlier version; written again from the version in force")
                }
                Ok(_) => {
                    let comment = match current {
                        None => format!("første version, indlæst fra {}", dir.display()),
                        Some(_) => format!("ændret i {}", dir.display()),
                    };
                    let origin = dir.display().to_string();
                    let new = NewMapping {
                        version: hash,
                        files,
                        author: "mappings/",
                        origin: Some(&origin),
                        source: MappingSource::Files,
                        comment: &comment,
                        begun_on: None,
                    };
                    let saved = self.db.save_mapping(&new)?;
                    self.forget_versions();
                    tracing::info!(?saved, version = %hash, "mapping files taken into use");
                    folder.synced = Some(hash.clone());
                    return Ok(());
                }
            }
        }
        let Some((id, version)) = current else { return Ok(()) };
        if hash.as_ref() == Some(&version) {
            folder.synced = Some(version);
        } else if folder.synced.as_ref() != Some(&version) {
            let stored = self.db.mapping_version(id)?.ok_or(TechnicalError::NoMappings)?;
            self.write_folder(&mut folder, &stored.files, &version)?;
        }
        Ok(())
    }

    /// Writes a version to the folder, each file atomically. Files in the folder that are no stored version
    /// (an edit that failed the check) are first moved aside into a hidden folder, not lost.
    fn write_folder(&self, folder: &mut FolderState, files: &MappingFiles, version: &str) -> Result<(), TechnicalError> {
        let dir = &self.settings.mapping_dir;
        fs::create_dir_all(dir)?;
        let present = mapping::read_dir(dir).unwrap_or_default();
        let present_version = mapping::version_of(&present);
        if !present.is_empty() && !self.db.mapping_version_known(&present_version)? {
            let aside = dir.join(format!(".ikke-i-brug-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f")));
            fs::create_dir_all(&aside)?;
            for name in present.keys() {
                fs::copy(dir.join(name), aside.join(name))?;
            }
            tracing::warn!(aside = %aside.display(), "mapping files that were never in force were moved aside before the folder was written");
        }
        for (name, content) in files {
            write_atomically(&dir.join(name), |out| out.write_all(content.as_bytes()))?;
        }
        for name in present.keys().filter(|n| !files.contains_key(*n)) {
            fs::remove_file(dir.join(name))?;
        }
        sync_dir(dir)?;
        folder.seen = Some(version.to_string());
        folder.synced = Some(version.to_string());
        Ok(())
    }

    /// Watches the mapping folder for changes made in the files, and the target tables for changes the ERP
    /// makes to them.
    pub fn watch_mapping_folder(self: &Arc<Self>, interval: Duration) -> Periodic {
        let pipeline = self.clone();
        Periodic::spawn("mapping-watch", interval, move || {
            if let Err(e) = pipeline.sync_mapping_folder(false) {
                tracing::error!(error = format!("{e:#}"), "mapping folder: a round failed; trying again");
            }
            pipeline.refresh_targets();
        })
    }

    /// Binds the profile in force to its tables again, at most every `targets.columns_refresh_secs`: a column the
    /// ERP widened takes longer values from then on; one it dropped or narrowed so that the profile no longer
    /// fits is said by `target_problem` (and so by /readyz), while the version in use stays. Off the deliveries'
    /// path: this task reads the tables, the ERP's database too.
    pub fn refresh_targets(&self) {
        let every = Duration::from_secs(self.settings.targets.columns_refresh_secs);
        {
            let mut checked = self.targets_checked.lock().expect("targets lock");
            if checked.0.is_some_and(|at| at.elapsed() < every) {
                return;
            }
            checked.0 = Some(std::time::Instant::now());
        }
        let held = self.mappings.lock().expect("mapping lock").as_ref().map(|h| (h.id, h.value.clone()));
        let Some((id, in_use)) = held else { return };
        if in_use.profile.is_none() {
            self.targets_checked.lock().expect("targets lock").1 = None;
            return;
        }
        let mut fresh = (*in_use).clone();
        fresh.targets = None;
        let problem = match bind_targets(&self.db, &mut fresh, &self.settings.targets) {
            Ok(Ok(())) => {
                let mut held = self.mappings.lock().expect("mapping lock");
                if let Some(current) = held.as_mut().filter(|h| h.id == id) {
                    current.value = Arc::new(fresh);
                }
                None
            }
            Ok(Err(errors)) => Some(errors.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(problem) = &problem {
            tracing::error!(problem, "the target profile in force no longer fits its tables; the version in use stays");
        }
        self.targets_checked.lock().expect("targets lock").1 = problem;
    }

    /// Why the target profile in force no longer fits its tables, as last seen.
    pub fn target_problem(&self) -> Option<String> {
        self.targets_checked.lock().expect("targets lock").1.clone()
    }
}

/// Makes the live mapping folder from the examples, at the first start: the service writes to its folder, and
/// the examples stay as they were shipped.
fn seed(dir: &std::path::Path, examples: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("making the mapping folder {}", dir.display()))?;
    let entries = std::fs::read_dir(examples).with_context(|| format!("reading the example mappings in {}", examples.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_file() && path.file_name().is_some_and(|n| mapping::is_mapping_file_name(&n.to_string_lossy())) {
            let name = path.file_name().expect("a file has a name");
            std::fs::copy(&path, dir.join(name)).with_context(|| format!("copying {} into {}", path.display(), dir.display()))?;
        }
    }
    tracing::info!(dir = %dir.display(), from = %examples.display(), "mapping folder made from the examples");
    Ok(())
}
