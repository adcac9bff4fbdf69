//! The forwarder: a target profile's tables in databases the ERP owns, copied from the outbox the booking
//! transaction filled. One forwarder per database, in order of the outbox, with retry and back-off while that
//! database is away; exactly once through the record it keeps there (`storage::targets::forward_rows`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::domain::target::DatabaseRow;
use crate::storage::targets::{connect_remote, forward_rows};
use crate::storage::{AnyConnection, Db};
use crate::target_files::WriterStatus;
use crate::task::Periodic;

/// Rows copied in one transaction at most.
const BATCH: i64 = 500;
/// How long a row the ERP's database refused waits before it is tried again.
const PARKED_RETRY: Duration = Duration::from_secs(300);

/// Whether the connection still answers: a refusal from a database that answers is about the rows.
fn alive(connection: &mut AnyConnection) -> bool {
    use diesel::connection::SimpleConnection;
    connection.batch_execute("SELECT 1").is_ok()
}

/// Sets a row aside that the ERP's database refused on its own; it is tried again after `PARKED_RETRY`, or at
/// once after `fkoeko targets retry`.
fn park(db: &Db, database: &str, id: i32, error: &str) -> anyhow::Result<()> {
    tracing::error!(database, row = id, error, "the ERP's database refused a row; it is set aside and tried again later");
    let retry = chrono::Utc::now().naive_utc() + chrono::Duration::from_std(PARKED_RETRY).expect("a short duration");
    Ok(db.park_forward_row(id, error, retry)?)
}

/// The longest wait between tries while the ERP's database is away.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Each forwarder's status, by database name.
pub type ForwarderStatus = Arc<Mutex<BTreeMap<String, WriterStatus>>>;

pub struct Forwarder {
    db: Db,
    database: String,
    url: String,
    /// This installation (`Db::installation_identity`), in the ERP database's record: installations sharing one
    /// ERP database, whose outbox numbers overlap, are told apart.
    source: String,
    connection: Option<AnyConnection>,
    failures: u32,
    next_try: Instant,
    status: ForwarderStatus,
}

impl Forwarder {
    pub fn new(db: Db, database: &str, url: &str, source: &str, status: ForwarderStatus) -> Self {
        Forwarder {
            db,
            database: database.into(),
            url: url.into(),
            source: source.into(),
            connection: None,
            failures: 0,
            next_try: Instant::now(),
            status,
        }
    }

    /// Copies what waits, a batch at a time, until nothing does. Returns how many rows were copied.
    pub fn round(&mut self) -> anyhow::Result<usize> {
        let mut copied = 0;
        loop {
            let waiting = self.db.rows_to_forward(&self.database, BATCH)?;
            if waiting.is_empty() {
                return Ok(copied);
            }
            let mut rows = Vec::with_capacity(waiting.len());
            for row in &waiting {
                let parsed =
                    DatabaseRow::from_json(&row.payload).map_err(anyhow::Error::msg).with_context(|| format!("outbox row {}", row.id))?;
                rows.push((row.id, row.target.clone(), parsed));
            }
            if self.connection.is_none() {
                self.connection =
                    Some(connect_remote(&self.url).with_context(|| format!("connecting to the ERP's database '{}'", self.database))?);
            }
            let connection = self.connection.as_mut().expect("connected");
            let held = match forward_rows(connection, &self.source, &rows) {
                Ok(held) => held,
                // The database is there but refused the batch: row by row, to set aside the rows it refuses on
                // their own (a value its table no longer takes), so that they do not hold up every row after them.
                Err(e) if rows.len() > 1 && alive(connection) => {
                    tracing::warn!(database = self.database, error = %e, "a batch was refused; copying it row by row");
                    let mut held = Vec::new();
                    for row in &rows {
                        match forward_rows(connection, &self.source, std::slice::from_ref(row)) {
                            Ok(one) => held.extend(one),
                            Err(e) if alive(connection) => park(&self.db, &self.database, row.0, &e.to_string())?,
                            Err(e) => {
                                self.db.mark_forwarded(&held)?;
                                self.connection = None;
                                return Err(e).with_context(|| format!("copying into the ERP's database '{}'", self.database));
                            }
                        }
                    }
                    held
                }
                Err(e) if alive(connection) => {
                    park(&self.db, &self.database, rows[0].0, &e.to_string())?;
                    Vec::new()
                }
                Err(e) => {
                    // A broken connection is made again at the next try.
                    self.connection = None;
                    return Err(e).with_context(|| format!("copying into the ERP's database '{}'", self.database));
                }
            };
            self.db.mark_forwarded(&held)?;
            copied += held.len();
            if waiting.len() < BATCH as usize {
                return Ok(copied);
            }
        }
    }

    /// A round when it is time for one: after a failure, the next try waits 1, 2, 4 … seconds, at most a minute.
    fn tick(&mut self) {
        if Instant::now() < self.next_try {
            return;
        }
        let outcome = self.round();
        let mut status = self.status.lock().expect("status lock");
        let entry = status.entry(self.database.clone()).or_default();
        match outcome {
            Ok(copied) => {
                self.failures = 0;
                entry.last_error = None;
                entry.files_written += copied as u64;
            }
            Err(e) => {
                self.failures += 1;
                let wait = Duration::from_secs(1 << self.failures.min(6)).min(MAX_BACKOFF);
                self.next_try = Instant::now() + wait;
                let text = format!("{e:#}");
                tracing::warn!(
                    database = self.database,
                    error = text,
                    retry_in_secs = wait.as_secs(),
                    "forwarding to the ERP's database failed"
                );
                entry.last_error = Some((chrono::Utc::now(), text));
            }
        }
    }

    pub fn spawn(mut self, interval: Duration) -> Periodic {
        Periodic::spawn(&format!("forward-{}", self.database), interval, move || self.tick())
    }
}
