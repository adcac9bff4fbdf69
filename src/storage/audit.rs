//! The audit trail in the database: written with the change it records where there is one, read by the page
//! and `fkoeko audit list`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::audit_log;
use super::{AnyConnection, Db, StorageError};
use crate::domain::audit::{user_changes, AuditAction, AuditEntry, Role, SeenUser};

/// Records an entry in the caller's transaction.
pub fn record(conn: &mut AnyConnection, entry: &AuditEntry) -> Result<(), StorageError> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(chrono::Utc::now().naive_utc()),
            audit_log::actor.eq(&entry.actor),
            audit_log::action.eq(entry.action.as_str()),
            audit_log::detail.eq(&entry.detail),
            audit_log::origin.eq(&entry.origin),
        ))
        .execute(conn)?;
    Ok(())
}

/// An entry as recorded.
#[derive(Debug, Clone, Queryable)]
pub struct AuditRow {
    pub id: i32,
    pub at: NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub origin: Option<String>,
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub from: Option<chrono::NaiveDate>,
    pub to: Option<chrono::NaiveDate>,
}

impl Db {
    /// Records an entry on its own (an action with no change in the database to go with it: a login).
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StorageError> {
        self.write(|conn| record(conn, entry))
    }

    /// Entries matching the filter, newest first, at most `limit`.
    pub fn audit_list(&self, filter: &AuditFilter, limit: i64) -> Result<Vec<AuditRow>, StorageError> {
        let mut query = audit_log::table.into_boxed();
        if let Some(actor) = filter.actor.as_deref().filter(|a| !a.is_empty()) {
            query = query.filter(audit_log::actor.eq(actor.to_string()));
        }
        if let Some(action) = filter.action.as_deref().filter(|a| !a.is_empty()) {
            query = query.filter(audit_log::action.eq(action.to_string()));
        }
        if let Some(from) = filter.from {
            query = query.filter(audit_log::at.ge(from.and_hms_opt(0, 0, 0).expect("midnight")));
        }
        if let Some(to) = filter.to {
            query = query.filter(audit_log::at.lt((to + chrono::Duration::days(1)).and_hms_opt(0, 0, 0).expect("midnight")));
        }
        Ok(query.order(audit_log::id.desc()).limit(limit).load(&mut *self.conn()?)?)
    }
}

impl Db {
    /// Compares the users of the web page with those the last start saw; records what changed in the audit trail
    /// (as done by `actor` from `origin`) and keeps the new set, in one transaction. Several instances started
    /// with the same users record the change once.
    pub fn record_user_changes(&self, users: &[SeenUser], actor: &str, origin: &str) -> Result<Option<String>, StorageError> {
        use super::schema::admin_users_seen;
        self.write(|conn| {
            let rows: Vec<(String, String, String)> = admin_users_seen::table
                .select((admin_users_seen::name, admin_users_seen::role, admin_users_seen::password_digest))
                .order(admin_users_seen::name)
                .load(conn)?;
            let mut before = Vec::with_capacity(rows.len());
            for (name, role, password_digest) in rows {
                let role = Role::parse(&role).ok_or_else(|| StorageError::Corrupt(format!("admin_users_seen: role '{role}' of {name}")))?;
                before.push(SeenUser { name, role, password_digest });
            }
            let Some(change) = user_changes(&before, users) else { return Ok(None) };
            diesel::delete(admin_users_seen::table).execute(conn)?;
            for user in users {
                diesel::insert_into(admin_users_seen::table)
                    .values((
                        admin_users_seen::name.eq(&user.name),
                        admin_users_seen::role.eq(user.role.as_str()),
                        admin_users_seen::password_digest.eq(&user.password_digest),
                    ))
                    .execute(conn)?;
            }
            record(conn, &AuditEntry::new(actor, AuditAction::UsersChanged, change.clone(), Some(origin.to_string())))?;
            Ok(Some(change))
        })
    }
}
