//! The audit trail: what people did, recorded for a municipality's auditor. What counts as an action, and who
//! may do what (roles).

use serde::{Deserialize, Serialize};

/// An action the trail records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Login,
    LoginFailed,
    /// A login refused because the name had too many failed tries.
    LoginLocked,
    Logout,
    /// Mapping files saved on the page.
    MappingSaved,
    MappingRolledBack,
    /// Mapping files changed in the mapping folder and taken into use.
    MappingFilesChanged,
    SortimentLoaded,
    /// A batch file released from its owner's lease by an operator, to be taken over at once.
    BatchTakenOver,
    /// A done batch file's receipt file written (and sent back) again on an operator's request.
    ReceiptRewritten,
    /// Data past its retention period deleted or pseudonymised (one entry per kind of data and run).
    Purged,
    /// Users of the web page added, removed, or given another role or password in the configuration.
    UsersChanged,
    /// Something a user's role does not allow, asked for and refused.
    Refused,
}

impl AuditAction {
    pub const ALL: [AuditAction; 13] = [
        AuditAction::Login,
        AuditAction::LoginFailed,
        AuditAction::LoginLocked,
        AuditAction::Logout,
        AuditAction::MappingSaved,
        AuditAction::MappingRolledBack,
        AuditAction::MappingFilesChanged,
        AuditAction::SortimentLoaded,
        AuditAction::BatchTakenOver,
        AuditAction::ReceiptRewritten,
        AuditAction::Purged,
        AuditAction::UsersChanged,
        AuditAction::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Login => "login",
            AuditAction::LoginFailed => "login_failed",
            AuditAction::LoginLocked => "login_locked",
            AuditAction::Logout => "logout",
            AuditAction::MappingSaved => "mapping_saved",
            AuditAction::MappingRolledBack => "mapping_rolled_back",
            AuditAction::MappingFilesChanged => "mapping_files_changed",
            AuditAction::SortimentLoaded => "sortiment_loaded",
            AuditAction::BatchTakenOver => "batch_taken_over",
            AuditAction::ReceiptRewritten => "receipt_rewritten",
            AuditAction::Purged => "purged",
            AuditAction::UsersChanged => "users_changed",
            AuditAction::Refused => "refused",
        }
    }

    /// In Danish, for the page.
    pub fn label(self) -> &'static str {
        match self {
            AuditAction::Login => "logget ind",
            AuditAction::LoginFailed => "forkert adgangskode eller bruger",
            AuditAction::LoginLocked => "login spærret (for mange forsøg)",
            AuditAction::Logout => "logget ud",
            AuditAction::MappingSaved => "mapninger gemt",
            AuditAction::MappingRolledBack => "mapninger rullet tilbage",
            AuditAction::MappingFilesChanged => "mapningsfiler ændret i mappen",
            AuditAction::SortimentLoaded => "sortiment indlæst",
            AuditAction::BatchTakenOver => "batchfil taget over",
            AuditAction::ReceiptRewritten => "kvitteringsfil skrevet igen",
            AuditAction::Purged => "slettet efter opbevaringsperiode",
            AuditAction::UsersChanged => "brugere ændret i konfigurationen",
            AuditAction::Refused => "afvist: rollen må ikke",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// One entry of the trail, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// A user of the web page, or what acted for nobody ("mappings/", "fkoeko sortiment load").
    pub actor: String,
    pub action: AuditAction,
    pub detail: String,
    /// Where from: the web page's client address, or how (the mapping folder, the command line).
    pub origin: Option<String>,
}

impl AuditEntry {
    pub fn new(actor: impl Into<String>, action: AuditAction, detail: impl Into<String>, origin: Option<String>) -> Self {
        AuditEntry { actor: actor.into(), action, detail: detail.into(), origin }
    }
}

/// What a user of the web page may do. Each role may do what the one before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Finance staff who look: rejections, deliveries, mappings, sortiment, "prøv".
    Read,
    /// Also edits and rolls back the mapping files (and the target profile among them).
    Mapping,
    /// Also the operator's pages and actions: the audit trail, taking a batch file over, purging.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Mapping => "mapping",
            Role::Operator => "operator",
        }
    }

    /// In Danish, for the page.
    pub fn label(self) -> &'static str {
        match self {
            Role::Read => "læser",
            Role::Mapping => "mapningsredaktør",
            Role::Operator => "driftsansvarlig",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Role::Read, Role::Mapping, Role::Operator].into_iter().find(|r| r.as_str() == text)
    }

    pub fn may(self, needed: Role) -> bool {
        self >= needed
    }
}

/// A user of the web page as a start sees it: the password only as a digest of its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenUser {
    pub name: String,
    pub role: Role,
    pub password_digest: String,
}

/// What changed in the users between the last start and this one, in words for the audit trail; `None`: nothing.
pub fn user_changes(before: &[SeenUser], now: &[SeenUser]) -> Option<String> {
    let find = |users: &[SeenUser], name: &str| users.iter().find(|u| u.name == name).cloned();
    let mut parts = Vec::new();
    let added: Vec<String> =
        now.iter().filter(|u| find(before, &u.name).is_none()).map(|u| format!("{} ({})", u.name, u.role.label())).collect();
    let removed: Vec<String> = before.iter().filter(|u| find(now, &u.name).is_none()).map(|u| u.name.clone()).collect();
    let mut roles = Vec::new();
    let mut passwords = Vec::new();
    for user in now {
        if let Some(old) = find(before, &user.name) {
            if old.role != user.role {
                roles.push(format!("{}: {} → {}", user.name, old.role.label(), user.role.label()));
            }
            if old.password_digest != user.password_digest {
                passwords.push(user.name.clone());
            }
        }
    }
    for (what, names) in [("tilføjet", added), ("fjernet", removed), ("rolle ændret", roles), ("ny adgangskode", passwords)] {
        if !names.is_empty() {
            parts.push(format!("{what}: {}", names.join(", ")));
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_users_is_said_in_words_and_no_change_is_nothing() {
        let user = |name: &str, role, digest: &str| SeenUser { name: name.into(), role, password_digest: digest.into() };
        let before = [user("jens", Role::Read, "a"), user("karen", Role::Operator, "b"), user("ole", Role::Read, "c")];
        let now = [user("jens", Role::Mapping, "a"), user("ole", Role::Read, "d"), user("mette", Role::Operator, "e")];
        assert_eq!(
            user_changes(&before, &now).unwrap(),
            "tilføjet: mette (driftsansvarlig); fjernet: karen; rolle ændret: jens: læser → mapningsredaktør; ny adgangskode: ole"
        );
        assert_eq!(user_changes(&now, &now), None);
    }

    #[test]
    fn each_role_may_what_the_one_before_may() {
        assert!(Role::Operator.may(Role::Mapping) && Role::Operator.may(Role::Read));
        assert!(Role::Mapping.may(Role::Read) && !Role::Mapping.may(Role::Operator));
        assert!(!Role::Read.may(Role::Mapping));
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
    }
}
