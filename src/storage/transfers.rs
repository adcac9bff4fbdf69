//! Receipt files sent back through Serviceplatformen: one row per receipt file, its state, its tries and the
//! last error. Every change of state is a conditional update on the state (and tries) it was read in, so that of
//! several instances exactly one sends a file or takes the platform's answer to it.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::receipt_transfers;
use super::text::{Stored, TransferState};
use super::{Db, StorageError};
use crate::domain::alert::{Alert, AlertTarget};
use crate::domain::sortiment::Integration;

#[derive(Debug, Clone, Queryable)]
pub struct ReceiptTransfer {
    pub id: i32,
    #[diesel(deserialize_as = Stored<Integration>)]
    pub integration: Integration,
    pub receipt_name: String,
    pub batch_id: Option<i32>,
    pub senders_file_id: String,
    /// The copy in the archive it is sent again from.
    pub kept_as: String,
    pub trigger_document: String,
    #[diesel(deserialize_as = Stored<TransferState>)]
    pub state: TransferState,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A receipt file to send.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = receipt_transfers)]
pub struct NewReceiptTransfer {
    pub integration: Stored<Integration>,
    pub receipt_name: String,
    pub batch_id: Option<i32>,
    pub senders_file_id: String,
    pub kept_as: String,
    pub trigger_document: String,
}

/// What the platform's answer (or its silence) made of a sent receipt file.
#[derive(Debug, Clone)]
pub enum Answered {
    Delivered,
    /// Not delivered: tried again at this time.
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
    /// Not delivered, and no tries left.
    Failed {
        error: String,
    },
}

impl Db {
    /// Records a receipt file to be sent now. A receipt file recorded before under the same name and id (a file
    /// dropped again) is sent again, its tries counted from nought.
    pub fn receipt_to_send(&self, new: &NewReceiptTransfer) -> Result<ReceiptTransfer, StorageError> {
        self.write(|conn| {
            let now = Utc::now().naive_utc();
            let same = receipt_transfers::table
                .filter(receipt_transfers::integration.eq(new.integration))
                .filter(receipt_transfers::receipt_name.eq(&new.receipt_name))
                .filter(receipt_transfers::senders_file_id.eq(&new.senders_file_id));
            let earlier: Option<i32> = same.select(receipt_transfers::id).first(conn).optional()?;
            let id = match earlier {
                Some(id) => {
                    diesel::update(receipt_transfers::table.find(id))
                        .set((
                            receipt_transfers::kept_as.eq(&new.kept_as),
                            receipt_transfers::state.eq(Stored(TransferState::Written)),
                            receipt_transfers::attempts.eq(0),
                            receipt_transfers::next_attempt_at.eq(now),
                            receipt_transfers::last_error.eq(None::<String>),
                            receipt_transfers::updated_at.eq(now),
                        ))
                        .execute(conn)?;
                    id
                }
                None => diesel::insert_into(receipt_transfers::table)
                    .values((
                        new.clone(),
                        receipt_transfers::state.eq(Stored(TransferState::Written)),
                        receipt_transfers::attempts.eq(0),
                        receipt_transfers::next_attempt_at.eq(now),
                        receipt_transfers::created_at.eq(now),
                        receipt_transfers::updated_at.eq(now),
                    ))
                    .returning(receipt_transfers::id)
                    .get_result(conn)?,
            };
            Ok(receipt_transfers::table.find(id).first(conn)?)
        })
    }

    /// Receipt files whose time has come: to be sent (again), or sent and not answered in time.
    pub fn due_receipt_transfers(&self, integration: Integration) -> Result<Vec<ReceiptTransfer>, StorageError> {
        let mut conn = self.conn()?;
        Ok(receipt_transfers::table
            .filter(receipt_transfers::integration.eq(Stored(integration)))
            .filter(receipt_transfers::state.eq_any([Stored(TransferState::Written), Stored(TransferState::Sent)]))
            .filter(receipt_transfers::next_attempt_at.le(Utc::now().naive_utc()))
            .order(receipt_transfers::id)
            .load(&mut conn)?)
    }

    /// Takes a receipt file for sending: one more try, answered by `answer_by` or counted as an error. False when
    /// another instance took it first.
    pub fn take_receipt_transfer(&self, transfer: &ReceiptTransfer, answer_by: DateTime<Utc>) -> Result<bool, StorageError> {
        self.write(|conn| {
            let taken = diesel::update(receipt_transfers::table.find(transfer.id))
                .filter(receipt_transfers::state.eq(Stored(TransferState::Written)))
                .filter(receipt_transfers::attempts.eq(transfer.attempts))
                .set((
                    receipt_transfers::state.eq(Stored(TransferState::Sent)),
                    receipt_transfers::attempts.eq(transfer.attempts + 1),
                    receipt_transfers::next_attempt_at.eq(answer_by.naive_utc()),
                    receipt_transfers::updated_at.eq(Utc::now().naive_utc()),
                ))
                .execute(conn)?;
            Ok(taken == 1)
        })
    }

    /// Puts off a receipt file to be sent until `at`, unless another instance took it meanwhile.
    pub fn postpone_receipt_transfer(&self, transfer: &ReceiptTransfer, at: DateTime<Utc>) -> Result<(), StorageError> {
        self.write(|conn| {
            diesel::update(receipt_transfers::table.find(transfer.id))
                .filter(receipt_transfers::state.eq(Stored(TransferState::Written)))
                .filter(receipt_transfers::attempts.eq(transfer.attempts))
                .set((receipt_transfers::next_attempt_at.eq(at.naive_utc()), receipt_transfers::updated_at.eq(Utc::now().naive_utc())))
                .execute(conn)?;
            Ok(())
        })
    }

    /// The sent receipt file the platform answers: by the answer's SendersFileId when it gives one (an id that
    /// names no sent receipt file names none), else by the name of `<receipt name>.sftpreceipt`.
    pub fn sent_receipt_transfer(
        &self,
        integration: Integration,
        receipt_name: &str,
        senders_file_id: Option<&str>,
    ) -> Result<Option<ReceiptTransfer>, StorageError> {
        let mut conn = self.conn()?;
        let sent = receipt_transfers::table
            .filter(receipt_transfers::integration.eq(Stored(integration)))
            .filter(receipt_transfers::state.eq(Stored(TransferState::Sent)))
            .order(receipt_transfers::id.desc());
        Ok(match senders_file_id {
            Some(id) => sent.filter(receipt_transfers::senders_file_id.eq(id)).first(&mut conn).optional()?,
            None => sent.filter(receipt_transfers::receipt_name.eq(receipt_name)).first(&mut conn).optional()?,
        })
    }

    /// Records the platform's answer to a try (or its silence), and the operators' alert with it when there is
    /// one. False when the try was answered already.
    pub fn receipt_transfer_answered(
        &self,
        transfer: &ReceiptTransfer,
        answer: &Answered,
        alert: Option<(&AlertTarget, &Alert)>,
    ) -> Result<bool, StorageError> {
        let (state, next, error) = match answer {
            // An earlier try's error stays beside "delivered": why it took more than one.
            Answered::Delivered => (TransferState::Delivered, transfer.next_attempt_at, transfer.last_error.as_deref()),
            Answered::Retry { error, at } => (TransferState::Written, at.naive_utc(), Some(error.as_str())),
            Answered::Failed { error } => (TransferState::Failed, transfer.next_attempt_at, Some(error.as_str())),
        };
        self.write(|conn| {
            let changed = diesel::update(receipt_transfers::table.find(transfer.id))
                .filter(receipt_transfers::state.eq(Stored(TransferState::Sent)))
                .filter(receipt_transfers::attempts.eq(transfer.attempts))
                .set((
                    receipt_transfers::state.eq(Stored(state)),
                    receipt_transfers::next_attempt_at.eq(next),
                    receipt_transfers::last_error.eq(error),
                    receipt_transfers::updated_at.eq(Utc::now().naive_utc()),
                ))
                .execute(conn)?;
            if let (1, Some((target, alert))) = (changed, alert) {
                let now = Utc::now();
                super::booking::enqueue_alert(conn, target, alert, None, now, now)?;
            }
            Ok(changed == 1)
        })
    }

    /// The receipt files of a batch file, newest first.
    pub fn receipt_transfers_of(&self, batch_id: i32) -> Result<Vec<ReceiptTransfer>, StorageError> {
        let mut conn = self.conn()?;
        Ok(receipt_transfers::table.filter(receipt_transfers::batch_id.eq(batch_id)).order(receipt_transfers::id.desc()).load(&mut conn)?)
    }

    /// Receipt files by state, for the metrics and the readiness check.
    pub fn receipt_transfer_counts(&self) -> Result<Vec<(TransferState, i64)>, StorageError> {
        let mut conn = self.conn()?;
        let rows: Vec<(Stored<TransferState>, i64)> = receipt_transfers::table
            .group_by(receipt_transfers::state)
            .select((receipt_transfers::state, diesel::dsl::count_star()))
            .load(&mut conn)?;
        Ok(rows.into_iter().map(|(state, n)| (state.0, n)).collect())
    }
}
