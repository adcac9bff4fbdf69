//! The masse path of the pipeline: a batch file, streamed. The same steps as a straks call, item by item:
//! the file is scanned once for well-formedness (a broken file is rejected whole, before anything is booked) and
//! for where its items are, its delivery fields and sender are checked, and then each item is read by its byte
//! range as that scan logged it, schema-checked
//! as a one-item document with the file's own delivery fields, checked, mapped and booked in chunks. While the
//! scan runs, a second thread schema-checks the items it has found (see `scan_checking_ahead`).
//!
//! Memory: the scan holds one XML event, the workers one item each, and the writer one chunk of plans; none
//! of it grows with the file (the spans are in a temporary file; the items found valid ahead are a byte each).

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::book::{self, Target};
use super::intake::{self, Frame, OpenError, Reading, Source, ValidAhead};
use super::{Arrival, Items, Pipeline, ReadBy, Sink, TechnicalError, Transport};
use crate::domain::delivery::{DeliveryRecord, ItemPlan};
use crate::domain::sortiment::{Integration, Sortiment};
use crate::storage::batch::{BatchFile, Lease};
use crate::xml::soap::CallContext;
use crate::xml::stream::{Framing, ItemSpan, SpanLogWriter};

/// A claimed batch file, ready to be processed.
pub struct MasseFile<'a> {
    pub path: &'a Path,
    /// The name it arrived under, for logs.
    pub name: &'a str,
    pub integration: Integration,
    pub content_hash: &'a str,
    /// Who Serviceplatformen says sent the file (its .metadata): checked against the file's AfsenderSystem.
    pub origin: Option<FileOrigin>,
    pub lease: Lease,
}

/// Who the platform says sent a batch file: the SFTP user, and with dynamic routing the IT system and the
/// authority it sent for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOrigin {
    pub sftp_user: String,
    pub routed: Option<RoutedFrom>,
}

/// `SenderIt-system` and `SenderAuthority` of a dynamically routed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedFrom {
    pub it_system: uuid::Uuid,
    pub authority: String,
}

/// How far a file has come.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub items_done: usize,
    pub items_total: usize,
}

/// Items per transaction at most, and postings: a chunk is also committed when this many are pending. Two
/// chunks are in memory at a time (one committed while the next is gathered): a planned finansbilag holds its
/// whole domain value, and with 500 a chunk the benchmark file's peak came within 2 MB of its 100 MB budget
/// (250: 83 MB, for about 3 % more time).
const CHUNK_ITEMS: usize = 250;
const CHUNK_POSTINGS: usize = 2_500;
/// A chunk is committed at least this often, which renews the lease and reports progress.
const CHUNK_INTERVAL: Duration = Duration::from_secs(2);
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Gathers planned items in file order into chunks and hands each full chunk to the committer thread, which
/// books it while the next one is gathered: the reader and workers are not held up by the transaction.
struct Booker {
    committer: crossbeam_channel::Sender<Vec<ItemPlan>>,
    chunk: Vec<ItemPlan>,
    chunk_postings: usize,
    last_handed: Instant,
}

impl Sink for Booker {
    /// The next item in file order; the chunk is handed over when it is full or has waited long enough.
    fn add(&mut self, plan: ItemPlan, postings: usize) -> Result<(), TechnicalError> {
        self.chunk.push(plan);
        self.chunk_postings += postings;
        if self.chunk.len() >= CHUNK_ITEMS || self.chunk_postings >= CHUNK_POSTINGS || self.last_handed.elapsed() >= CHUNK_INTERVAL {
            self.hand_over()?;
        }
        Ok(())
    }
}

impl Booker {
    fn hand_over(&mut self) -> Result<(), TechnicalError> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.chunk_postings = 0;
        self.last_handed = Instant::now();
        // The committer is gone only when a commit failed; its error is reported when it is joined.
        self.committer.send(std::mem::take(&mut self.chunk)).map_err(|_| std::io::Error::other("the chunk committer stopped").into())
    }
}

/// Commits the chunks handed to it, in order, a transaction each, and reports how far the file has come.
struct Committer<'a> {
    pipeline: &'a Pipeline,
    file: &'a MasseFile<'a>,
    record: &'a DeliveryRecord,
    target: &'a Target,
    progress: &'a (dyn Fn(Progress) + Sync),
    total: usize,
    /// Items booked by an earlier run of this file.
    resumed_at: usize,
    /// Items booked in all, by earlier runs and this one.
    committed: usize,
    started: Instant,
    last_log: Instant,
}

impl Committer<'_> {
    fn run(mut self, chunks: crossbeam_channel::Receiver<Vec<ItemPlan>>) -> Result<(), TechnicalError> {
        for chunk in chunks {
            self.commit(&chunk)?;
        }
        Ok(())
    }

    fn commit(&mut self, chunk: &[ItemPlan]) -> Result<(), TechnicalError> {
        let receipts =
            book::commit_batch_chunk(&self.pipeline.db, &self.file.lease, self.record, self.target, self.committed as i32, chunk)?;
        self.pipeline.metrics.errors(self.record.integration, &receipts);
        self.committed += chunk.len();
        (self.progress)(Progress { items_done: self.committed, items_total: self.total });
        if self.last_log.elapsed() >= LOG_INTERVAL {
            let rate = (self.committed - self.resumed_at) as f64 / self.started.elapsed().as_secs_f64();
            info!(done = self.committed, total = self.total, per_second = format!("{rate:.0}"), "batch file in progress");
            self.last_log = Instant::now();
        }
        Ok(())
    }
}

/// Items the scan may hand the check-ahead thread before it is taken up: the scan never waits for it.
const CHECK_AHEAD_QUEUE: usize = 16;

/// What the check-ahead thread is handed while the scan runs.
enum Ahead {
    /// The frame of the one-item documents, once the scan has reached the first item.
    Frame(Frame),
    Item(ItemSpan),
}

/// Scans the file (`intake::open_logging`, logging each item's span) while a second thread schema-checks the
/// items the scan has found, on the core the one-threaded scan leaves idle: the items libxml2 finds valid are
/// not checked again when they are decided, which is most of the libxml2 work of a file taken off the time
/// after the scan. The scan never waits for it: an item it has no room for is checked when it is decided. Its
/// work is lost only when the file is rejected as a whole.
fn scan_checking_ahead(handle: &File, reading: &Reading, log: &mut SpanLogWriter) -> (Result<intake::Opened, OpenError>, ValidAhead) {
    let (ahead, behind) = crossbeam_channel::bounded::<Ahead>(CHECK_AHEAD_QUEUE);
    std::thread::scope(|scope| {
        let checker = scope.spawn(move || {
            let mut valid = ValidAhead::default();
            let mut frame = None;
            for next in behind {
                match next {
                    Ahead::Frame(made) => frame = Some(made),
                    Ahead::Item(span) => {
                        let Some(frame) = frame.as_ref() else { continue };
                        match handle.range(span.start, span.end) {
                            Ok(bytes) if intake::check_ahead(frame, &bytes, reading) => valid.insert(span.index),
                            Ok(_) => {}
                            // The workers read it again and report what is wrong.
                            Err(_) => break,
                        }
                    }
                }
            }
            valid
        });
        let opened = intake::open_logging(handle, Framing::Document, reading, |span, outline| {
            log.push(&span)?;
            if span.index == 1 {
                // Without a frame no item is checked ahead; the items are checked when decided, as ever.
                if let Ok(frame) = Frame::read(handle, outline.clone(), Framing::Document, reading.spec) {
                    let _ = ahead.send(Ahead::Frame(frame));
                }
            }
            // Full: the checker is behind, and this item is checked when it is decided.
            let _ = ahead.try_send(Ahead::Item(span));
            Ok(())
        });
        drop(ahead);
        let valid = checker.join().expect("the check-ahead thread does not panic");
        (opened, valid)
    })
}

impl Pipeline {
    /// Processes a claimed batch file to the end (or from where an earlier, stopped process left it): every
    /// item decided and booked, the delivery's outcome and alert recorded. The receipt file is then written
    /// from the stored receipts by the caller.
    pub fn process_file(&self, file: &MasseFile, progress: &(dyn Fn(Progress) + Sync)) -> Result<BatchFile, TechnicalError> {
        let span = tracing::info_span!("batch_file", file = file.name, integration = file.integration.as_str());
        let _entered = span.enter();
        let mut record = DeliveryRecord::new(file.integration, Transport::Masse, format!("file:{}", file.content_hash));
        let handle = File::open(file.path)?;
        let reading = self.reading(file.integration);
        // The item spans go to a log beside the file, so the items are read by their spans instead of a second
        // scan; the scan itself must reach the end first, since a file broken anywhere is rejected whole.
        let folder = file.path.parent().unwrap_or(Path::new("."));
        let mut log = SpanLogWriter::create_in(folder)?;
        let (opened, valid) = scan_checking_ahead(&handle, &reading, &mut log);
        let opened = match opened {
            Ok(opened) => opened,
            Err(OpenError::Rejected(finding)) => {
                warn!(error = %finding.rejection, "batch file rejected as a whole");
                return self.reject_whole(file, record, vec![ItemPlan::whole_delivery(vec![finding])]);
            }
            Err(OpenError::Technical(e)) => return Err(e),
        };
        let spans = log.finish()?;
        info!(items = opened.frame.outline.items, valid_ahead = valid.count(), "batch file is well-formed; processing its items");
        let findings = opened.findings.clone();
        let context = CallContext::default();
        let arrival = Arrival { context: &context, caller: None, origin: file.origin.as_ref() };
        let decided = self.decide_delivery(&opened, findings, &arrival, file.integration, &mut record)?;
        if opened.frame.outline.items == 0 {
            // Nothing to reject item by item: the file gets one rejection of its own, with its errors.
            warn!(errors = decided.findings.len(), "no item found in the batch file; rejected as a whole");
            let plan = ItemPlan::without_items(decided.findings, reading.spec.item, &opened.root_path());
            return self.reject_whole(file, record, vec![plan]);
        }
        if !decided.findings.is_empty() {
            warn!(errors = decided.findings.len(), "the file's delivery fields or sender are rejected; every item is rejected with them");
        }

        let (target, done) = book::start_batch(&self.db, &file.lease, &record, opened.frame.outline.items)?;
        let root_path = opened.root_path();
        let context = decided.item_context(record.delivery_id, &root_path);
        let done = done as usize;
        if done > 0 {
            info!(done, total = opened.frame.outline.items, "resuming a batch file after the last committed chunk");
        }
        let items = Items {
            source: &handle,
            framing: Framing::Document,
            reading: &reading,
            integration: file.integration,
            frame: &opened.frame,
            findings: &decided.findings,
            context: &context,
        };
        let total = opened.frame.outline.items;
        let now = Instant::now();
        let committer = Committer {
            pipeline: self,
            file,
            record: &record,
            target: &target,
            progress,
            total,
            resumed_at: done,
            committed: done,
            started: now,
            last_log: now,
        };
        // A rendezvous: a chunk is handed over only when the committer is free, so that at most two are in
        // memory (one being committed, one being gathered).
        let (chunks, taken) = crossbeam_channel::bounded::<Vec<ItemPlan>>(0);
        std::thread::scope(|scope| -> Result<(), TechnicalError> {
            let committing = scope.spawn(move || committer.run(taken));
            let mut booker = Booker { committer: chunks, chunk: Vec::new(), chunk_postings: 0, last_handed: now };
            let decided = self
                .decide_items(&items, ReadBy::Spans { log: &spans, skip: done, valid: &valid }, &mut booker)
                .and_then(|_| booker.hand_over());
            drop(booker);
            let committed = committing.join().expect("the committer does not panic");
            // A failed commit (a lost lease) is the cause when both failed.
            committed.and(decided)
        })?;

        let finished = self.finish_file(file, &mut record, &target, &decided.sortiment)?;
        if finished.rejected_count > 0 {
            warn!(accepted = finished.accepted_count, rejected = finished.rejected_count, "batch file processed with rejections");
        } else {
            info!(accepted = finished.accepted_count, "batch file processed");
        }
        Ok(finished)
    }

    /// A file rejected as a whole before any item could be read: one receipt for the file.
    fn reject_whole(&self, file: &MasseFile, mut record: DeliveryRecord, plans: Vec<ItemPlan>) -> Result<BatchFile, TechnicalError> {
        let (target, done) = book::start_batch(&self.db, &file.lease, &record, plans.len())?;
        if done == 0 {
            book::commit_batch_chunk(&self.db, &file.lease, &record, &target, 0, &plans)?;
        }
        self.finish_file(file, &mut record, &target, &*self.sortiment()?)
    }

    /// Records the file's outcome and its alert: who hears of its rejections (see `alert_target`; the sender is
    /// named in the record for the mail).
    fn finish_file(
        &self,
        file: &MasseFile,
        record: &mut DeliveryRecord,
        target: &Target,
        sortiment: &Sortiment,
    ) -> Result<BatchFile, TechnicalError> {
        let sender = record.sender.and_then(|s| sortiment.get(&s));
        record.sender_name = sender.map(|s| s.name.clone());
        let alert = self.alert_target(sender, record.sender);
        let alert = alert.as_ref().map(|t| (t, self.settings.alerts.group_window));
        let finished = book::finish_batch(&self.db, &file.lease, record, target, alert, crate::alerts::mail::MAX_LISTED)?;
        let (accepted, rejected) = (finished.accepted_count as usize, finished.rejected_count as usize);
        self.metrics.delivery(file.integration, record.transport, accepted, rejected, record.arrived.elapsed());
        Ok(finished)
    }
}
