//! How long each kind of data is kept, and what "purged" means for each: deleted where nothing needs the row
//! any more, pseudonymised where the row must stay (a receipt's content hash keeps a re-sent BilagId or
//! FordringId answered as before). The municipality, as data controller, sets the periods; storage carries out
//! what is decided here.

use chrono::{Duration, NaiveDateTime};
use serde::{Deserialize, Serialize};

/// A retention period: a whole number of days from 1 (0 would purge what is being answered or picked up right
/// now) to 36,500 (a hundred years; more overflows the calendar and is in truth "for ever": leave the key out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Days(u32);

impl Days {
    pub const MAX: u32 = 36_500;

    pub fn new(days: u32) -> Option<Self> {
        (1..=Self::MAX).contains(&days).then_some(Days(days))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Serialize for Days {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let days = i64::deserialize(deserializer)?;
        u32::try_from(days).ok().and_then(Days::new).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{days} is not a period: give a whole number of days from 1 to {} (leave the key out to keep the data)",
                Days::MAX
            ))
        })
    }
}

/// A kind of data with a period of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataKind {
    /// Rows of the import tables (finansbilag and their lines, fordringer and their hæftere) the ERP has picked
    /// up (`status = 'HENTET'`), and target rows written to their file or copied to the ERP's database: deleted.
    ImportRows,
    /// Debtor master data (name, address, CPR/CVR) the ERP has picked up that no kept fordring names: deleted.
    DebtorData,
    /// Rejected items' receipts and errors: the error texts and offending values are removed (codes, places and
    /// the receipt itself stay). Accepted receipts hold no personal data and stay: their content hash answers a
    /// re-send.
    Receipts,
    /// A delivery's record: the answer kept for a re-send under its LeveranceId is pseudonymised as the receipts
    /// are; alerts sent about it are deleted.
    DeliveryRecords,
    /// The archived batch files (and their metadata) on disk, and their receipt files' rejected entries.
    BatchArchive,
    /// Audit trail entries.
    AuditTrail,
}

impl DataKind {
    pub const ALL: [DataKind; 6] = [
        DataKind::ImportRows,
        DataKind::DebtorData,
        DataKind::Receipts,
        DataKind::DeliveryRecords,
        DataKind::BatchArchive,
        DataKind::AuditTrail,
    ];

    /// The configuration key of its period (in `[retention]`).
    pub fn key(self) -> &'static str {
        match self {
            DataKind::ImportRows => "import_rows_days",
            DataKind::DebtorData => "debtor_data_days",
            DataKind::Receipts => "receipts_days",
            DataKind::DeliveryRecords => "delivery_records_days",
            DataKind::BatchArchive => "batch_archive_days",
            DataKind::AuditTrail => "audit_days",
        }
    }

    /// In Danish, for the page and the audit trail.
    pub fn label(self) -> &'static str {
        match self {
            DataKind::ImportRows => "importrækker hentet af ERP",
            DataKind::DebtorData => "debitorstamdata hentet af ERP",
            DataKind::Receipts => "afviste kvitteringers fejltekster og værdier",
            DataKind::DeliveryRecords => "leverancers gemte svar og sendte advarsler",
            DataKind::BatchArchive => "arkiverede batchfiler",
            DataKind::AuditTrail => "revisionsspor",
        }
    }

    /// What is done to what is past its period.
    pub fn action(self) -> &'static str {
        match self {
            DataKind::ImportRows | DataKind::DebtorData | DataKind::AuditTrail => "slettet",
            DataKind::Receipts | DataKind::DeliveryRecords => "pseudonymiseret (svar og indholdshash bevaret)",
            DataKind::BatchArchive => "filer slettet fra arkivet",
        }
    }
}

/// The periods in force; a kind without one is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub import_rows_days: Option<Days>,
    pub debtor_data_days: Option<Days>,
    pub receipts_days: Option<Days>,
    pub delivery_records_days: Option<Days>,
    pub batch_archive_days: Option<Days>,
    pub audit_days: Option<Days>,
}

impl Retention {
    pub fn days(&self, kind: DataKind) -> Option<Days> {
        match kind {
            DataKind::ImportRows => self.import_rows_days,
            DataKind::DebtorData => self.debtor_data_days,
            DataKind::Receipts => self.receipts_days,
            DataKind::DeliveryRecords => self.delivery_records_days,
            DataKind::BatchArchive => self.batch_archive_days,
            DataKind::AuditTrail => self.audit_days,
        }
    }

    /// Each kind with a period and the time before which its data is purged.
    pub fn cutoffs(&self, now: NaiveDateTime) -> Vec<Rule> {
        DataKind::ALL
            .into_iter()
            .filter_map(|kind| {
                self.days(kind).map(|days| Rule { kind, days: days.get(), before: now - Duration::days(i64::from(days.get())) })
            })
            .collect()
    }
}

/// One period applied at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub kind: DataKind,
    pub days: u32,
    /// Data older than this is purged.
    pub before: NaiveDateTime,
}

impl Rule {
    /// How the audit trail and the command line say what was done.
    pub fn describe(&self, rows: u64) -> String {
        format!(
            "{}: {rows} {} (ældre end {}, retention.{} = {})",
            self.kind.label(),
            self.kind.action(),
            self.before.format("%Y-%m-%d %H:%M"),
            self.kind.key(),
            self.days
        )
    }
}

/// What a pseudonymised error says instead of its text.
pub const PURGED_TEXT: &str = "Fejlteksten er slettet efter opbevaringsperioden.";

/// A stored receipt or receipt set (JSON) with every error's text replaced and offending value removed; codes,
/// places and everything else unchanged. `None` when it has no error with anything to remove (nothing to write).
pub fn pseudonymise_receipts(json: &str) -> Option<String> {
    fn walk(value: &mut serde_json::Value) -> bool {
        let mut changed = false;
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(errors)) = map.get_mut("Fejl") {
                    for error in errors.iter_mut().filter_map(|e| e.as_object_mut()) {
                        changed |= error.remove("Vaerdi").is_some();
                        if error.get("Tekst").and_then(|t| t.as_str()) != Some(PURGED_TEXT) {
                            error.insert("Tekst".into(), PURGED_TEXT.into());
                            changed = true;
                        }
                    }
                }
                for (_, child) in map.iter_mut().filter(|(key, _)| key.as_str() != "Fejl") {
                    changed |= walk(child);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    changed |= walk(item);
                }
            }
            _ => {}
        }
        changed
    }
    let mut value: serde_json::Value = serde_json::from_str(json).ok()?;
    walk(&mut value).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_errors_text_and_value_go_and_its_code_and_place_stay() {
        let set = r#"{"LeveranceId":"x","Kvittering":[{"Reference":"B-1","Status":"Afvist","Fejl":[{"Kode":"REGEL_CPR","Tekst":"CPR-nummeret er ugyldigt: 010190-xxxx","Sti":"/a/b","Linje":3,"Vaerdi":"Jens Hansen"}]},{"Reference":"B-2","Status":"Accepteret","Fejl":[]}]}"#;
        let out = pseudonymise_receipts(set).expect("changed");
        assert!(!out.contains("Jens") && !out.contains("010190"), "{out}");
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        let error = &value["Kvittering"][0]["Fejl"][0];
        assert_eq!(error["Kode"], "REGEL_CPR");
        assert_eq!(error["Sti"], "/a/b");
        assert_eq!(error["Linje"], 3);
        assert_eq!(error["Tekst"], PURGED_TEXT);
        assert_eq!(value["Kvittering"][1]["Reference"], "B-2");
        // Once done, there is nothing more to do; an accepted receipt has nothing to remove.
        assert_eq!(pseudonymise_receipts(&out), None);
        assert_eq!(pseudonymise_receipts(r#"{"Reference":"B-2","Status":"Accepteret","Fejl":[]}"#), None);
    }

    #[test]
    fn a_period_is_a_day_to_a_hundred_years() {
        for (toml, ok) in [("d = 1", true), ("d = 36500", true), ("d = 0", false), ("d = -3", false), ("d = 4294967295", false)] {
            let parsed = toml::from_str::<std::collections::BTreeMap<String, Days>>(toml);
            assert_eq!(parsed.is_ok(), ok, "{toml}");
            if let Err(e) = parsed {
                assert!(e.to_string().contains("whole number of days from 1 to 36500"), "{e}");
            }
        }
    }

    #[test]
    fn each_period_gives_its_cutoff() {
        let retention = Retention { receipts_days: Days::new(30), audit_days: Days::new(365), ..Retention::default() };
        let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap().and_hms_opt(12, 0, 0).unwrap();
        let rules = retention.cutoffs(now);
        assert_eq!(rules.iter().map(|r| r.kind).collect::<Vec<_>>(), [DataKind::Receipts, DataKind::AuditTrail]);
        assert_eq!(rules[1].before.date(), chrono::NaiveDate::from_ymd_opt(2025, 11, 26).unwrap());
    }
}
