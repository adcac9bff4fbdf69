//! Mapping versions in the database: the one in force is the newest row, so every instance on the database
//! follows a change made on any of them.

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::mapping_versions;
use super::{Db, StorageError};
use crate::domain::audit::{AuditAction, AuditEntry};
use crate::domain::mapping::MappingFiles;

/// Where a mapping version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingSource {
    /// The files under mappings/ (at start, or changed while running).
    Files,
    /// Saved on the web page.
    Page,
    /// An earlier version brought back.
    Rollback,
}

impl MappingSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MappingSource::Files => "filer",
            MappingSource::Page => "side",
            MappingSource::Rollback => "tilbagerulning",
        }
    }
}

/// One stored version, with its files.
#[derive(Debug, Clone)]
pub struct StoredMapping {
    pub id: i64,
    pub version: String,
    pub files: MappingFiles,
    pub author: String,
    pub source: String,
    pub comment: String,
    pub created_at: NaiveDateTime,
}

/// A new version to store.
pub struct NewMapping<'a> {
    pub version: &'a str,
    pub files: &'a MappingFiles,
    pub author: &'a str,
    /// Where the change came from (the page's client address, the folder), for the audit trail.
    pub origin: Option<&'a str>,
    pub source: MappingSource,
    pub comment: &'a str,
    /// The version an edit began from: when another has been stored since, nothing is stored.
    pub begun_on: Option<i64>,
}

/// What storing a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    New(i64),
    /// The files are the version in force already; nothing was stored.
    Unchanged(i64),
    /// The edit began from an earlier version than this one, which is in force; nothing was stored.
    Moved(i64),
}

type Row = (i32, String, String, String, String, String, NaiveDateTime);

fn stored((id, version, files, author, source, comment, created_at): Row) -> Result<StoredMapping, StorageError> {
    let files = serde_json::from_str(&files).map_err(|e| StorageError::Corrupt(format!("mapping version {id}: {e}")))?;
    Ok(StoredMapping { id: id.into(), version, files, author, source, comment, created_at })
}

impl Db {
    /// The id and version hash of the mapping in force; a cheap query, asked once per delivery.
    pub fn current_mapping(&self) -> Result<Option<(i64, String)>, StorageError> {
        let row: Option<(i32, String)> = mapping_versions::table
            .select((mapping_versions::id, mapping_versions::version))
            .order(mapping_versions::id.desc())
            .first(&mut self.conn()?)
            .optional()?;
        Ok(row.map(|(id, version)| (id.into(), version)))
    }

    pub fn mapping_version(&self, id: i64) -> Result<Option<StoredMapping>, StorageError> {
        let row: Option<Row> = mapping_versions::table
            .select(mapping_versions::all_columns)
            .filter(mapping_versions::id.eq(id as i32))
            .first(&mut self.conn()?)
            .optional()?;
        row.map(stored).transpose()
    }

    /// Whether files with this hash have ever been in force.
    pub fn mapping_version_known(&self, version: &str) -> Result<bool, StorageError> {
        let found: Option<i32> = mapping_versions::table
            .select(mapping_versions::id)
            .filter(mapping_versions::version.eq(version))
            .first(&mut self.conn()?)
            .optional()?;
        Ok(found.is_some())
    }

    /// Every version, newest first.
    pub fn mapping_history(&self, limit: i64) -> Result<Vec<StoredMapping>, StorageError> {
        let rows: Vec<Row> = mapping_versions::table
            .select(mapping_versions::all_columns)
            .order(mapping_versions::id.desc())
            .limit(limit)
            .load(&mut self.conn()?)?;
        rows.into_iter().map(stored).collect()
    }

    /// Stores checked files as the version in force, unless they are that version already, or the edit began
    /// from a version that is no longer in force. Runs in a write transaction, so two saves at once (on one
    /// instance or two) each see the other's row: the later of two edits begun from the same version is refused.
    pub fn save_mapping(&self, new: &NewMapping) -> Result<Saved, StorageError> {
        let files = serde_json::to_string(new.files).expect("file names and contents serialize");
        self.write(|conn| {
            let current: Option<(i32, String)> = mapping_versions::table
                .select((mapping_versions::id, mapping_versions::version))
                .order(mapping_versions::id.desc())
                .first(conn)
                .optional()?;
            if let Some((id, version)) = &current {
                if new.begun_on.is_some_and(|begun| begun != i64::from(*id)) {
                    return Ok(Saved::Moved((*id).into()));
                }
                if version == new.version {
                    return Ok(Saved::Unchanged((*id).into()));
                }
            }
            let id: i32 = diesel::insert_into(mapping_versions::table)
                .values((
                    mapping_versions::version.eq(new.version),
                    mapping_versions::files.eq(&files),
                    mapping_versions::author.eq(new.author),
                    mapping_versions::source.eq(new.source.as_str()),
                    mapping_versions::comment.eq(new.comment),
                    mapping_versions::created_at.eq(Utc::now().naive_utc()),
                ))
                .returning(mapping_versions::id)
                .get_result(conn)?;
            let action = match new.source {
                MappingSource::Files => AuditAction::MappingFilesChanged,
                MappingSource::Page => AuditAction::MappingSaved,
                MappingSource::Rollback => AuditAction::MappingRolledBack,
            };
            let detail = format!("version {id} ({}): {}", new.version, new.comment);
            super::audit::record(conn, &AuditEntry::new(new.author, action, detail, new.origin.map(str::to_string)))?;
            Ok(Saved::New(id.into()))
        })
    }
}
