//! Sortiment versions in the database.

use chrono::Utc;
use diesel::prelude::*;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::schema::{sortiment_fordringstyper, sortiment_konteringer, sortiment_senders, sortiment_versions};
use super::{Db, StorageError};
use crate::domain::sortiment::{ClaimTypeRule, Integration, KonteringPattern, Sender, Sortiment};
use crate::domain::values::Cvr;

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain values serialize")
}

fn from_json<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, StorageError> {
    serde_json::from_str(raw).map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// What a load did.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    NewVersion(i64),
    Unchanged(i64),
}

impl Db {
    /// Stores a parsed sortiment as a new version, unless it is the same as the one in force.
    /// `actor`: who loaded it, for the audit trail (the command line's user, or the service at its first start).
    pub fn save_sortiment(&self, source: &str, content: &str, senders: &[Sender], actor: &str) -> Result<Loaded, StorageError> {
        let hash = hex::encode(Sha256::digest(content.as_bytes()));
        self.write(|conn| {
            let current: Option<(i32, String)> = sortiment_versions::table
                .select((sortiment_versions::id, sortiment_versions::content_hash))
                .order(sortiment_versions::id.desc())
                .first(conn)
                .optional()?;
            if let Some((id, current_hash)) = current {
                if current_hash == hash {
                    return Ok(Loaded::Unchanged(id.into()));
                }
            }
            let version: i32 = diesel::insert_into(sortiment_versions::table)
                .values((
                    sortiment_versions::loaded_at.eq(Utc::now().naive_utc()),
                    sortiment_versions::source.eq(source),
                    sortiment_versions::content_hash.eq(&hash),
                    sortiment_versions::content.eq(content),
                ))
                .returning(sortiment_versions::id)
                .get_result(conn)?;
            let detail = format!("version {version} fra {source}: {} afsendere", senders.len());
            let entry = crate::domain::audit::AuditEntry::new(actor, crate::domain::audit::AuditAction::SortimentLoaded, detail, None);
            super::audit::record(conn, &entry)?;
            for sender in senders {
                let integrations: Vec<&str> = sender.integrations.iter().map(|i| i.as_str()).collect();
                let sender_id: i32 = diesel::insert_into(sortiment_senders::table)
                    .values((
                        sortiment_senders::version_id.eq(version),
                        sortiment_senders::system_uuid.eq(sender.system.to_string()),
                        sortiment_senders::name.eq(&sender.name),
                        sortiment_senders::authority_cvr.eq(sender.authority.as_str()),
                        sortiment_senders::owners.eq(json(&sender.owners)),
                        sortiment_senders::valid_from.eq(sender.valid_from),
                        sortiment_senders::valid_to.eq(sender.valid_to),
                        sortiment_senders::integrations.eq(json(&integrations)),
                        sortiment_senders::certificates.eq(json(&sender.certificates)),
                        sortiment_senders::alerts.eq(sender.alerts),
                        sortiment_senders::sftp_users.eq(json(&sender.sftp_users)),
                    ))
                    .returning(sortiment_senders::id)
                    .get_result(conn)?;
                for pattern in &sender.konteringer {
                    diesel::insert_into(sortiment_konteringer::table)
                        .values((
                            sortiment_konteringer::sender_id.eq(sender_id),
                            sortiment_konteringer::funktion.eq(json(&pattern.funktion)),
                            sortiment_konteringer::dranst.eq(json(&pattern.dranst)),
                            sortiment_konteringer::art.eq(json(&pattern.art)),
                        ))
                        .execute(conn)?;
                }
                for claim_type in &sender.claim_types {
                    diesel::insert_into(sortiment_fordringstyper::table)
                        .values((
                            sortiment_fordringstyper::sender_id.eq(sender_id),
                            sortiment_fordringstyper::code.eq(&claim_type.code),
                            sortiment_fordringstyper::required.eq(json(&claim_type.required)),
                        ))
                        .execute(conn)?;
                }
            }
            Ok(Loaded::NewVersion(version.into()))
        })
    }

    /// The id of the sortiment version in force, if any was loaded.
    pub fn current_sortiment_version(&self) -> Result<Option<i64>, StorageError> {
        let mut conn = self.conn()?;
        let id: Option<i32> = sortiment_versions::table.select(diesel::dsl::max(sortiment_versions::id)).first(&mut conn)?;
        Ok(id.map(i64::from))
    }

    /// One stored version of the sortiment, as the pipeline uses it.
    pub fn load_sortiment(&self, version: i64) -> Result<Sortiment, StorageError> {
        type SenderRow = (i32, String, String, String, String, chrono::NaiveDate, Option<chrono::NaiveDate>, String, String, bool, String);
        let mut conn = self.conn()?;
        let rows: Vec<SenderRow> = sortiment_senders::table
            .filter(sortiment_senders::version_id.eq(version as i32))
            .select((
                sortiment_senders::id,
                sortiment_senders::system_uuid,
                sortiment_senders::name,
                sortiment_senders::authority_cvr,
                sortiment_senders::owners,
                sortiment_senders::valid_from,
                sortiment_senders::valid_to,
                sortiment_senders::integrations,
                sortiment_senders::certificates,
                sortiment_senders::alerts,
                sortiment_senders::sftp_users,
            ))
            .load(&mut conn)?;
        let mut senders = Vec::with_capacity(rows.len());
        for (id, system, name, authority, owners, valid_from, valid_to, integrations, certificates, alerts, sftp_users) in rows {
            let patterns: Vec<(String, String, String)> = sortiment_konteringer::table
                .filter(sortiment_konteringer::sender_id.eq(id))
                .order(sortiment_konteringer::id)
                .select((sortiment_konteringer::funktion, sortiment_konteringer::dranst, sortiment_konteringer::art))
                .load(&mut conn)?;
            let claim_types: Vec<(String, String)> = sortiment_fordringstyper::table
                .filter(sortiment_fordringstyper::sender_id.eq(id))
                .order(sortiment_fordringstyper::id)
                .select((sortiment_fordringstyper::code, sortiment_fordringstyper::required))
                .load(&mut conn)?;
            let integrations: Vec<String> = from_json(&integrations)?;
            senders.push(Sender {
                system: Uuid::parse_str(&system).map_err(|e| StorageError::Corrupt(e.to_string()))?,
                name,
                authority: Cvr::parse(&authority).map_err(|e| StorageError::Corrupt(e.to_string()))?,
                owners: from_json(&owners)?,
                valid_from,
                valid_to,
                integrations: integrations.iter().filter_map(|i| Integration::parse(i)).collect(),
                certificates: from_json(&certificates)?,
                sftp_users: from_json(&sftp_users)?,
                konteringer: patterns
                    .into_iter()
                    .map(|(funktion, dranst, art)| {
                        Ok(KonteringPattern { funktion: from_json(&funktion)?, dranst: from_json(&dranst)?, art: from_json(&art)? })
                    })
                    .collect::<Result<_, StorageError>>()?,
                claim_types: claim_types
                    .into_iter()
                    .map(|(code, required)| Ok(ClaimTypeRule { code, required: from_json(&required)? }))
                    .collect::<Result<_, StorageError>>()?,
                alerts,
            });
        }
        Ok(Sortiment::new(version, senders))
    }
}
