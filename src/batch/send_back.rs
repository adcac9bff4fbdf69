//! Receipt files back through Serviceplatformen, the way a sender sends: the receipt file in the outgoing folder,
//! then its `.trigger` addressed to the original sender. The platform answers with `<name>.sftpreceipt` in the
//! incoming folder: `SUCCESS` marks the receipt file delivered; an error, or no answer in time, sends it again
//! after a back-off, until the last try fails it for the operator.
//!
//! Each step is recorded before it is done (`storage::transfers`), so a process that stops anywhere leaves a row
//! that the next round carries on: a try whose files were never written counts as unanswered and is made again.

use std::fs;

use anyhow::Context;
use chrono::Utc;
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use super::metadata::{self, Describe, Metadata, SendTo};
use super::{Folders, Receiver};
use crate::domain::alert::{Alert, AlertTarget, UndeliveredReceiptFile};
use crate::domain::sortiment::Integration;
use crate::files::{move_if_there, write_atomically};
use crate::storage::text::Stored;
use crate::storage::transfers::{Answered, NewReceiptTransfer, ReceiptTransfer};

const TRIGGER: &str = ".trigger";
pub(super) const TECHNICAL_RECEIPT: &str = ".sftpreceipt";
/// How long a receipt file waits for another of the same name to be picked up before it looks again.
const FOLLOW_AFTER_SECS: i64 = 10;

/// Where a receipt file is written, and where it is handed over.
pub(super) struct ReceiptPlace {
    /// Written here: the outbox itself, or the kept copy a receipt file is sent from.
    pub write: std::path::PathBuf,
    pub outbox: std::path::PathBuf,
    /// Its SendersFileId, when it goes back through the platform.
    pub id: Option<String>,
}

impl Receiver {
    /// Whether receipt files go back through the platform: only where files come from it.
    fn sends_back(&self) -> bool {
        self.config.convention == crate::config::BatchConvention::Metadata
    }

    /// Where a file's receipt file is written. Straight into the outbox; or, when it goes back through the
    /// platform, to the copy in the archive it is sent from, so that the outbox only ever holds what is handed to
    /// the platform, one receipt file of a name at a time.
    pub(super) fn receipt_place(&self, folders: &Folders, file_name: &str, input: Option<&Metadata>, input_key: &str) -> ReceiptPlace {
        let name = super::receipt_name(file_name);
        let outbox = folders.outbox.join(&name);
        match input.filter(|_| self.sends_back()) {
            Some(_) => {
                let id = receipt_id(input_key);
                ReceiptPlace { write: folders.archive.join(format!("{id}.kvittering.xml")), outbox, id: Some(id) }
            }
            None => ReceiptPlace { write: outbox.clone(), outbox, id: None },
        }
    }

    /// Records the receipt file just written to `place` for sending to whoever sent `input` (described by its
    /// metadata), and sends it.
    pub(super) fn send_back(
        &self,
        integration: Integration,
        folders: &Folders,
        place: &ReceiptPlace,
        input: Option<&Metadata>,
        batch_id: Option<i32>,
    ) -> anyhow::Result<()> {
        let (Some(input), Some(senders_file_id)) = (input.filter(|_| self.sends_back()), &place.id) else { return Ok(()) };
        let receipt_name = place.outbox.file_name().and_then(|n| n.to_str()).context("a receipt file without a name")?.to_string();
        let size = fs::metadata(&place.write)?.len();
        let to = match (&input.routing, self.it_system) {
            // Answered the way it came: by dynamic routing to the sending IT system, when this installation has an
            // IT system of its own to send from.
            (Some(routing), Some(_)) => SendTo::Routed { it_system: routing.sender_it_system, authority: routing.sender_authority.clone() },
            _ => SendTo::User(input.sender.clone()),
        };
        let trigger = metadata::render(&Describe {
            file_transfer_uuid: None,
            file_name: &receipt_name,
            size,
            sender: &self.sftp_users[0],
            senders_file_id: Some(senders_file_id),
            to: &to,
            from_it_system: self.it_system,
            from_authority: &self.authority,
        });
        let transfer = self.db.receipt_to_send(&NewReceiptTransfer {
            integration: Stored(integration),
            receipt_name,
            batch_id,
            senders_file_id: senders_file_id.clone(),
            kept_as: place.write.display().to_string(),
            trigger_document: trigger,
        })?;
        self.send(folders, &transfer)
    }

    /// One try: the receipt file (again, from its kept copy, when the platform took the last one) and then its
    /// trigger, which tells the platform the file is complete.
    fn send(&self, folders: &Folders, transfer: &ReceiptTransfer) -> anyhow::Result<()> {
        let trigger = folders.outbox.join(format!("{}{TRIGGER}", transfer.receipt_name));
        // Another receipt file of the same name (from another file of that name) still waits for the platform to
        // pick it up: this one follows it, rather than take its place.
        if let Ok(waiting) = fs::read(&trigger) {
            if metadata::parse(&waiting).ok().and_then(|m| m.senders_file_id).as_deref() != Some(transfer.senders_file_id.as_str()) {
                self.db.postpone_receipt_transfer(transfer, Utc::now() + chrono::Duration::seconds(FOLLOW_AFTER_SECS))?;
                return Ok(());
            }
        }
        let answer_by = Utc::now() + chrono::Duration::seconds(self.config.receipt_answer_secs as i64);
        if !self.db.take_receipt_transfer(transfer, answer_by)? {
            return Ok(());
        }
        let target = folders.outbox.join(&transfer.receipt_name);
        // Copied a buffer at a time: a receipt file of a large batch file is large.
        let mut kept = fs::File::open(&transfer.kept_as).with_context(|| format!("reading {}", transfer.kept_as))?;
        write_atomically(&target, |out| std::io::copy(&mut kept, out).map(drop))
            .with_context(|| format!("writing {}", target.display()))?;
        write_atomically(&trigger, |out| std::io::Write::write_all(out, transfer.trigger_document.as_bytes()))
            .with_context(|| format!("writing {}", trigger.display()))?;
        info!(receipt = %transfer.receipt_name, id = %transfer.senders_file_id, attempt = transfer.attempts + 1, "receipt file sent back through Serviceplatformen");
        Ok(())
    }

    /// The platform's answers among the inbox's `names`, then the receipt files whose time has come: sent again
    /// after an error, or unanswered for too long.
    pub(super) fn carry_on_sending(&self, integration: Integration, folders: &Folders, names: &[String]) -> anyhow::Result<()> {
        if !self.sends_back() {
            return Ok(());
        }
        for name in names {
            if let Some(receipt_name) = name.strip_suffix(TECHNICAL_RECEIPT) {
                self.read_answer(integration, folders, name, receipt_name)?;
            }
        }
        for transfer in self.db.due_receipt_transfers(integration)? {
            match transfer.state {
                crate::storage::text::TransferState::Sent => {
                    let silence = format!("no .sftpreceipt from Serviceplatformen within {} s", self.config.receipt_answer_secs);
                    self.answered(&transfer, Err(vec![silence]))?;
                }
                _ => self.send(folders, &transfer)?,
            }
        }
        Ok(())
    }

    /// Reads one `.sftpreceipt` and moves it to the archive once its answer is recorded.
    fn read_answer(&self, integration: Integration, folders: &Folders, name: &str, receipt_name: &str) -> anyhow::Result<()> {
        let path = folders.inbox.join(name);
        // Bounded as a metadata document is: an answer is as small.
        if fs::metadata(&path).is_ok_and(|m| m.len() > super::MAX_METADATA_BYTES) {
            self.warn_once(name, &format!("it is larger than {} bytes: no TechnicalReceipt is", super::MAX_METADATA_BYTES));
            return Ok(());
        }
        let Ok(bytes) = fs::read(&path) else { return Ok(()) };
        let answer = match metadata::parse_technical_receipt(&bytes) {
            Ok(answer) => answer,
            Err(e) => {
                self.warn_once(name, &format!("it is not a TechnicalReceipt that can be read: {e}"));
                return Ok(());
            }
        };
        let Some(transfer) = self.db.sent_receipt_transfer(integration, receipt_name, answer.senders_file_id.as_deref())? else {
            // Moved out of the way, so that it cannot be taken for the answer to a later try of the same file.
            let id = answer.senders_file_id.as_deref().unwrap_or("-");
            self.warn_once(
                name,
                &format!("no receipt file sent under this name and SendersFileId {id} waits for an answer; archived as unmatched"),
            );
            let unmatched = folders.archive.join(format!("unmatched-{}{TECHNICAL_RECEIPT}", uuid::Uuid::new_v4().simple()));
            return move_if_there(&path, &unmatched).map(drop).with_context(|| format!("archiving {}", path.display()));
        };
        let outcome = if answer.delivered() {
            Ok(())
        } else {
            Err(match answer.outcome {
                Ok(message) => vec![format!("the platform answered '{message}', not SUCCESS")],
                Err(errors) => errors,
            })
        };
        self.answered(&transfer, outcome)?;
        let kept = folders.archive.join(format!("{}-{}{TECHNICAL_RECEIPT}", transfer.senders_file_id, transfer.attempts));
        move_if_there(&path, &kept).map(drop).with_context(|| format!("archiving {}", path.display()))
    }

    /// The operators' alert for a receipt file given up, when they are to be mailed.
    fn operators_alert(&self, transfer: &ReceiptTransfer, error: &str) -> Option<(AlertTarget, Alert)> {
        if !self.alerts.enabled || self.alerts.operators.is_empty() {
            return None;
        }
        let recipient = match metadata::parse(transfer.trigger_document.as_bytes()) {
            Ok(trigger) => match trigger.routing {
                Some(routing) => format!(
                    "{} (myndighed {})",
                    routing.recipient_it_system.map_or_else(String::new, |s| s.to_string()),
                    routing.recipient_authority
                ),
                None => trigger.recipients.join(", "),
            },
            Err(_) => "?".to_string(),
        };
        let target = AlertTarget { group_key: "operators".into(), to: self.alerts.operators.clone(), cc: Vec::new() };
        let alert = Alert::ReceiptFileUndelivered(UndeliveredReceiptFile {
            integration: transfer.integration.as_str().to_string(),
            receipt_name: transfer.receipt_name.clone(),
            senders_file_id: transfer.senders_file_id.clone(),
            recipient,
            attempts: transfer.attempts,
            last_error: error.to_string(),
            failed_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        Some((target, alert))
    }

    /// Records what became of a try: delivered, to be tried again after a back-off, or failed.
    fn answered(&self, transfer: &ReceiptTransfer, outcome: Result<(), Vec<String>>) -> anyhow::Result<()> {
        let answer = match outcome {
            Ok(()) => Answered::Delivered,
            Err(errors) if transfer.attempts as u32 >= self.config.receipt_max_attempts => Answered::Failed { error: errors.join("; ") },
            Err(errors) => {
                let doubled = self.config.receipt_backoff_initial_secs.saturating_mul(1 << (transfer.attempts.clamp(1, 20) - 1));
                let wait = doubled.min(self.config.receipt_backoff_max_secs);
                Answered::Retry { error: errors.join("; "), at: Utc::now() + chrono::Duration::seconds(wait as i64) }
            }
        };
        let alert = match &answer {
            Answered::Failed { error } => self.operators_alert(transfer, error),
            _ => None,
        };
        if !self.db.receipt_transfer_answered(transfer, &answer, alert.as_ref().map(|(t, a)| (t, a)))? {
            return Ok(());
        }
        let (receipt, attempt) = (&transfer.receipt_name, transfer.attempts);
        match &answer {
            Answered::Delivered => info!(receipt = %receipt, attempt, "receipt file delivered by Serviceplatformen"),
            Answered::Retry { error, at } => {
                warn!(receipt = %receipt, attempt, error = %error, next = %at, "receipt file not delivered; it is sent again")
            }
            Answered::Failed { error } => error!(
                receipt = %receipt,
                attempts = attempt,
                error = %error,
                "receipt file not delivered after the last try: the sender has no receipt; see `fkoeko batch list`"
            ),
        }
        Ok(())
    }
}

/// The receipt file's own id toward the platform: the same on every try and every repeat.
fn receipt_id(input_key: &str) -> String {
    format!("kvittering-{}", &hex::encode(Sha256::digest(input_key.as_bytes()))[..40])
}

/// Where copies of a batch file's receipt file may lie, in either convention: the outbox (until the sender or
/// the platform takes it) and the archive (the copy sent back through the platform). For the purge.
pub fn receipt_copies(folders: &Folders, file_name: &str, file_key: &str) -> [std::path::PathBuf; 2] {
    [folders.outbox.join(super::receipt_name(file_name)), folders.archive.join(format!("{}.kvittering.xml", receipt_id(file_key)))]
}
