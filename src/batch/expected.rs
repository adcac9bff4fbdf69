//! Expected batch files (`[[batch.expected]]`): a file a sender delivers every day that has not arrived by its
//! time is alerted once that day, to the sender's owners and the operators, and logged.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Local, NaiveDateTime, TimeZone};
use tracing::warn;

use crate::domain::alert::{Alert, AlertTarget, ExpectedFile, MissingFile};
use crate::domain::sortiment::Sender;
use crate::startup::App;
use crate::task::Periodic;

pub struct ExpectedFiles {
    app: Arc<App>,
}

impl ExpectedFiles {
    pub fn new(app: Arc<App>) -> Self {
        ExpectedFiles { app }
    }

    /// Looks at each expected file at local time `now`; returns those found missing and recorded now.
    pub fn check(&self, now: NaiveDateTime) -> anyhow::Result<Vec<MissingFile>> {
        let mut missing = Vec::new();
        for expected in &self.app.config.batch.expected {
            let Some(day) = expected.due(now) else { continue };
            // The day began at local midnight; files are recorded in UTC.
            let midnight = day.and_hms_opt(0, 0, 0).expect("midnight");
            let since = Local.from_local_datetime(&midnight).earliest().map_or(midnight, |t| t.naive_utc());
            if self.app.db.batch_file_since(expected.sender, expected.integration, since)? {
                continue;
            }
            // The sortiment in force names the sender and its owners.
            let sortiment = self.app.pipeline.sortiment().ok();
            let sender = sortiment.as_deref().and_then(|s| s.get(&expected.sender));
            let file = MissingFile {
                sender: expected.sender.to_string(),
                sender_name: sender.map(|s| s.name.clone()),
                integration: expected.integration.as_str().to_string(),
                day: day.to_string(),
                expected_by: expected.by.to_string(),
            };
            let target = self.target(expected, sender);
            let alert = Alert::ExpectedFileMissing(file.clone());
            if self.app.db.record_missing_file(expected.sender, expected.integration, day, target.as_ref().map(|t| (t, &alert)))? {
                warn!(
                    sender = %expected.sender,
                    integration = expected.integration.as_str(),
                    by = %expected.by,
                    alerted = ?target.as_ref().map(|t| [t.to.clone(), t.cc.clone()].concat()),
                    "no batch file has arrived today by its expected time"
                );
                missing.push(file);
            }
        }
        Ok(missing)
    }

    /// The sender's owners (unless the sortiment turned its alerts off) and the operators; none when alerts are
    /// off or nobody is named.
    fn target(&self, expected: &ExpectedFile, sender: Option<&Sender>) -> Option<AlertTarget> {
        let alerts = &self.app.config.alerts;
        if !alerts.enabled {
            return None;
        }
        let owners = sender.filter(|s| s.alerts).map(|s| s.owners.clone()).unwrap_or_default();
        let (to, cc) = if owners.is_empty() { (alerts.operators.clone(), Vec::new()) } else { (owners, alerts.operators.clone()) };
        (!to.is_empty()).then(|| AlertTarget {
            group_key: format!("missing|{}|{}|{}", expected.sender, expected.integration.as_str(), to.join(",")),
            to,
            cc,
        })
    }

    pub fn spawn(self, interval: Duration) -> Periodic {
        Periodic::spawn("expected-files", interval, move || {
            if let Err(error) = self.check(Local::now().naive_local()) {
                tracing::error!(error = format!("{error:#}"), "looking for expected batch files failed; tried again at the next round");
            }
        })
    }
}
