//! The writer of straks deliveries. Reading, validation, rules and mapping run in parallel on the reader
//! threads; what they decided comes here, into one queue, and a writer thread writes it in groups: all the
//! deliveries waiting when a group starts, in one transaction with one commit (one fsync). Each caller is
//! answered once its group is durable. On SQLite one thread writes; on PostgreSQL a few (`database.writers`),
//! each with groups of its own, so that one delivery's round trips to the server do not hold up the next.
//!
//! Why: with every caller committing for itself, SQLite's callers race for its one write lock and the losers
//! sleep in the busy handler, and every delivery pays an fsync of its own. No delivery waits on purpose for
//! others to join it: a group is whatever arrived while the one before it was written, so a lone call is written
//! at once. On PostgreSQL the writer threads, and the writers of other instances, are kept apart by the
//! database's unique constraints, as two instances always were (`book::commit_group`).

use std::time::Instant;

use tokio::sync::oneshot;

use super::book::{self, Queued};
use crate::domain::receipt::ReceiptSet;
use crate::metrics::GroupMetrics;
use crate::storage::{Backend, Db, StorageError};

/// The most deliveries one group holds, and the most items (finansbilag and claims) beyond its first delivery:
/// a group of many large deliveries would keep the small ones behind it waiting for one long transaction.
const MAX_GROUP_DELIVERIES: usize = 256;
const MAX_GROUP_ITEMS: usize = 2_000;

pub(crate) struct Writer {
    queue: crossbeam_channel::Sender<(Queued, oneshot::Sender<Result<ReceiptSet, StorageError>>)>,
    metrics: GroupMetrics,
}

/// The writer's thread is gone (it panicked, or the program is stopping): nothing was written.
#[derive(Debug, thiserror::Error)]
#[error("the delivery writer has stopped; nothing was written")]
pub struct WriterStopped;

/// A delivery handed to the writer; its answer comes when its group is committed.
pub(crate) struct Pending(oneshot::Receiver<Result<ReceiptSet, StorageError>>);

impl Pending {
    pub async fn answer(self) -> Result<Result<ReceiptSet, StorageError>, WriterStopped> {
        self.0.await.map_err(|_| WriterStopped)
    }

    /// Waits on this thread: for callers that are not async (the CLI, tests). Never on an async runtime's own
    /// threads.
    pub fn wait(self) -> Result<Result<ReceiptSet, StorageError>, WriterStopped> {
        self.0.blocking_recv().map_err(|_| WriterStopped)
    }
}

impl Writer {
    /// Starts the writer's threads (`threads`, or with 0 one on SQLite and four on PostgreSQL; never more than the
    /// connections in the pool); they end when the writer is dropped and the queue has been written.
    pub fn start(db: Db, threads: usize, metrics: GroupMetrics) -> Self {
        let (queue, jobs) = crossbeam_channel::unbounded::<(Queued, oneshot::Sender<_>)>();
        let writer = Writer { queue, metrics: metrics.clone() };
        let threads = match db.backend {
            // One writer at a time is all SQLite has: a second thread would only wait for the lock.
            Backend::Sqlite => 1,
            Backend::Postgres if threads == 0 => 4,
            Backend::Postgres => threads,
        };
        for n in 0..threads.min(db.pool_size() as usize).max(1) {
            let (db, jobs, metrics) = (db.clone(), jobs.clone(), metrics.clone());
            std::thread::Builder::new()
                .name(format!("delivery-writer-{n}"))
                .spawn(move || write_groups(&db, &jobs, &metrics))
                .expect("a writer thread starts");
        }
        writer
    }

    /// Queues a delivery to be written.
    pub fn submit(&self, queued: Queued) -> Result<Pending, WriterStopped> {
        let (answer, answered) = oneshot::channel();
        self.metrics.waiting.inc();
        self.queue.send((queued, answer)).map_err(|_| {
            self.metrics.waiting.dec();
            WriterStopped
        })?;
        Ok(Pending(answered))
    }
}

type Job = (Queued, oneshot::Sender<Result<ReceiptSet, StorageError>>);

/// One writer thread: takes what waits in the queue, writes it as one group, answers, and again.
fn write_groups(db: &Db, jobs: &crossbeam_channel::Receiver<Job>, metrics: &GroupMetrics) {
    while let Ok(first) = jobs.recv() {
        let mut items = 0;
        let mut group = vec![first];
        while group.len() < MAX_GROUP_DELIVERIES && items < MAX_GROUP_ITEMS {
            match jobs.try_recv() {
                Ok(next) => {
                    items += next.0.plans.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        metrics.waiting.sub(group.len() as i64);
        let (queued, answers): (Vec<Queued>, Vec<_>) = group.into_iter().unzip();
        let started = Instant::now();
        // A panic is logged by the hook; the group's callers hear that nothing was written (their answer
        // channels close) and the writer goes on with the next group.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| book::commit_group(db, &queued))) {
            Ok(results) => {
                metrics.observe(queued.len(), started.elapsed());
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(result);
                }
            }
            Err(_) => tracing::error!(deliveries = queued.len(), "a delivery writer failed on a group; none of it was answered as written"),
        }
    }
}
