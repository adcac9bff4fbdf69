//! The task in `fkoeko serve` that sends the alert outbox by SMTP.

use std::time::Duration;

use chrono::Utc;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};

use super::mail::render;
use crate::config::{AlertsConfig, SmtpSecurity};
use crate::storage::alerts::ClaimedGroup;
use crate::storage::Db;
use crate::task::Periodic;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth another try later: the server is down, or answered with a temporary (4xx) error.
    #[error("{0}")]
    Retry(String),
    /// No use trying again: a bad address, or a permanent (5xx) answer.
    #[error("{0}")]
    GiveUp(String),
}

pub struct AlertSender {
    db: Db,
    config: AlertsConfig,
    transport: SmtpTransport,
    /// Names this process in the outbox while it holds a claim.
    instance: String,
}

impl AlertSender {
    pub fn new(db: Db, config: AlertsConfig) -> anyhow::Result<Self> {
        let smtp = &config.smtp;
        let builder = match smtp.security {
            SmtpSecurity::None => SmtpTransport::builder_dangerous(&smtp.host),
            SmtpSecurity::Starttls => SmtpTransport::starttls_relay(&smtp.host)?,
            SmtpSecurity::Tls => SmtpTransport::relay(&smtp.host)?,
        };
        let mut builder = builder.port(smtp.port).timeout(Some(Duration::from_secs(smtp.timeout_secs)));
        if !smtp.username.is_empty() {
            builder = builder.credentials(Credentials::new(smtp.username.clone(), smtp.password.clone()));
        }
        let transport = builder.build();
        let instance = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4());
        Ok(AlertSender { db, config, transport, instance })
    }

    /// Sends what is due; returns how many mails went out.
    pub fn run_once(&self) -> anyhow::Result<usize> {
        let now = Utc::now();
        let lease = chrono::Duration::seconds(2 * self.config.smtp.timeout_secs as i64 + 60);
        let groups = self.db.claim_due_alerts(now, &self.instance, lease)?;
        let mut sent = 0;
        for group in groups {
            let message_id = format!("<fkoeko-alert-{}@{}>", group.ids[0], self.config.from.split('@').nth(1).unwrap_or("localhost"));
            match self.send(&group, &message_id) {
                Ok(()) => {
                    self.db.alerts_sent(&group.ids, &message_id, Utc::now())?;
                    tracing::info!(alerts = group.ids.len(), to = ?group.to, "alert sent");
                    sent += 1;
                }
                Err(e) => self.failed(&group, &e)?,
            }
        }
        Ok(sent)
    }

    fn failed(&self, group: &ClaimedGroup, error: &SendError) -> anyhow::Result<()> {
        let attempts = group.attempts + 1;
        let give_up = matches!(error, SendError::GiveUp(_)) || attempts >= self.config.max_attempts as i32;
        if give_up {
            tracing::error!(alerts = ?group.ids, attempts, error = %error, "rejection alert given up; see `fkoeko alerts list --status failed`");
            self.db.alerts_failed(&group.ids, attempts, &error.to_string(), None)?;
        } else {
            let backoff = self.config.backoff_initial_secs.saturating_mul(1 << (attempts - 1).min(20)).min(self.config.backoff_max_secs);
            let retry_at = Utc::now() + chrono::Duration::seconds(backoff as i64);
            tracing::warn!(alerts = ?group.ids, attempts, error = %error, retry_in_secs = backoff, "rejection alert not sent; will try again");
            self.db.alerts_failed(&group.ids, attempts, &error.to_string(), Some(retry_at))?;
        }
        Ok(())
    }

    fn send(&self, group: &ClaimedGroup, message_id: &str) -> Result<(), SendError> {
        let address = |raw: &str| raw.parse::<Mailbox>().map_err(|e| SendError::GiveUp(format!("'{raw}': {e}")));
        let rendered = render(&group.payloads);
        let mut builder =
            Message::builder().from(address(&self.config.from)?).subject(rendered.subject).message_id(Some(message_id.to_string()));
        for to in &group.to {
            builder = builder.to(address(to)?);
        }
        for cc in &group.cc {
            builder = if group.to.is_empty() { builder.to(address(cc)?) } else { builder.cc(address(cc)?) };
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(rendered.text, rendered.html))
            .map_err(|e| SendError::GiveUp(e.to_string()))?;
        self.transport.send(&message).map(drop).map_err(|e| {
            if e.is_permanent() {
                SendError::GiveUp(e.to_string())
            } else {
                SendError::Retry(e.to_string())
            }
        })
    }
}

/// The sender task: one round of due alerts every `poll`.
pub fn spawn(sender: AlertSender, poll: Duration) -> Periodic {
    Periodic::spawn("alert-sender", poll, move || {
        if let Err(e) = sender.run_once() {
            tracing::error!(error = %e, "alert outbox not readable; trying again");
        }
    })
}
