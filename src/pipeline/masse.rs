//! The masse path of the pipeline: a batch file, streamed. The same steps as a straks call, item by item:
//! the file is scanned once for well-formedness (a broken file is rejected whole, before anything is booked),
//! its delivery fields and sender are checked, and then each item is read by its byte range, schema-checked
//! as a one-item document with the file's own delivery fields, checked, mapped and booked in chunks.
//!
//! Memory: the scan holds one XML event, the workers one item each, and the writer one chunk of plans; none
//! of it grows with the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::intake::{self, Frame, OpenError, Source};
use super::{reject_items, Arrival, ItemContext, Pipeline, TechnicalError, Transport};
use crate::domain::rejection::Finding;
use crate::domain::sortiment::{Integration, Sortiment};
use crate::storage::batch::{BatchFile, Lease, Target};
use crate::storage::booking::{DeliveryRecord, ItemPlan};
use crate::wire::WireSpec;
use crate::xml::soap::CallContext;
use crate::xml::stream::{self, Framing, ItemSpan, ScanError};

/// A claimed batch file, ready to be processed.
pub struct MasseFile<'a> {
    pub path: &'a Path,
    /// The name it arrived under, for logs.
    pub name: &'a str,
    pub integration: Integration,
    pub content_hash: &'a str,
    /// The sender named by the file's .metadata (Serviceplatformen), which must be the file's AfsenderSystem.
    pub metadata_sender: Option<String>,
    /// Findings about the file from its transport (e.g. this installation not among its recipients).
    pub delivery_findings: Vec<Finding>,
    pub lease: Lease,
}

/// How far a file has come.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub items_done: usize,
    pub items_total: usize,
}

/// Items per transaction at most, and postings: a chunk is also committed when this many are pending.
const CHUNK_ITEMS: usize = 1000;
const CHUNK_POSTINGS: usize = 20_000;
/// A chunk is committed at least this often, which renews the lease and reports progress.
const CHUNK_INTERVAL: Duration = Duration::from_secs(2);
const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Books planned items in file order, a chunk per transaction, and reports how far it has come.
struct Booker<'a> {
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
    chunk: Vec<ItemPlan>,
    chunk_postings: usize,
    started: Instant,
    last_commit: Instant,
    last_log: Instant,
}

impl<'a> Booker<'a> {
    fn new(
        pipeline: &'a Pipeline,
        file: &'a MasseFile<'a>,
        record: &'a DeliveryRecord,
        target: &'a Target,
        progress: &'a (dyn Fn(Progress) + Sync),
        done: usize,
        total: usize,
    ) -> Self {
        let now = Instant::now();
        Booker {
            pipeline,
            file,
            record,
            target,
            progress,
            total,
            resumed_at: done,
            committed: done,
            chunk: Vec::new(),
            chunk_postings: 0,
            started: now,
            last_commit: now,
            last_log: now,
        }
    }

    /// The next item in file order; the chunk is committed when it is full or has waited long enough.
    fn add(&mut self, plan: ItemPlan, postings: usize) -> Result<(), TechnicalError> {
        self.chunk.push(plan);
        self.chunk_postings += postings;
        if self.chunk.len() >= CHUNK_ITEMS || self.chunk_postings >= CHUNK_POSTINGS || self.last_commit.elapsed() >= CHUNK_INTERVAL {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), TechnicalError> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let receipts =
            self.pipeline.db.commit_batch_chunk(&self.file.lease, self.record, self.target, self.committed as i32, &self.chunk)?;
        self.pipeline.metrics.errors(self.record.integration, &receipts);
        self.committed += self.chunk.len();
        self.chunk.clear();
        self.chunk_postings = 0;
        self.last_commit = Instant::now();
        (self.progress)(Progress { items_done: self.committed, items_total: self.total });
        if self.last_log.elapsed() >= LOG_INTERVAL {
            let rate = (self.committed - self.resumed_at) as f64 / self.started.elapsed().as_secs_f64();
            info!(done = self.committed, total = self.total, per_second = format!("{rate:.0}"), "batch file in progress");
            self.last_log = Instant::now();
        }
        Ok(())
    }
}

impl Pipeline {
    /// Processes a claimed batch file to the end (or from where an earlier, stopped process left it): every
    /// item decided and booked, the delivery's outcome and alert recorded. The receipt file is then written
    /// from the stored receipts by the caller.
    pub fn process_file(&self, file: &MasseFile, progress: &(dyn Fn(Progress) + Sync)) -> Result<BatchFile, TechnicalError> {
        let span = tracing::info_span!("batch_file", file = file.name, integration = file.integration.as_str());
        let _entered = span.enter();
        let mut record = DeliveryRecord::new(file.integration, Transport::Masse.as_str(), format!("file:{}", file.content_hash));
        let handle = File::open(file.path)?;
        let reading = self.reading(file.integration);
        let opened = match intake::open(&handle, Framing::Document, &reading) {
            Ok(opened) => opened,
            Err(OpenError::Rejected(finding)) => {
                warn!(error = %finding.rejection, "batch file rejected as a whole");
                return self.reject_whole(file, record, reject_items(&[], &[finding], Vec::new()));
            }
            Err(OpenError::Technical(e)) => return Err(e),
        };
        info!(items = opened.frame.outline.items, "batch file is well-formed; processing its items");
        let mut findings = opened.findings.clone();
        findings.extend(file.delivery_findings.iter().cloned());
        let context = CallContext::default();
        let arrival = Arrival { context: &context, caller: None, metadata_sender: file.metadata_sender.clone() };
        let decided = self.decide_delivery(&opened, findings, &arrival, file.integration, &mut record)?;
        if !decided.findings.is_empty() {
            warn!(errors = decided.findings.len(), "the file's delivery fields or sender are rejected; every item is rejected with them");
        }

        let (target, done) = self.db.start_batch(&file.lease, &record, opened.frame.outline.items)?;
        let root_path = opened.root_path();
        let context = ItemContext { sender: decided.sender(), today: decided.today, mappings: &decided.mappings, root_path: &root_path };
        let done = done as usize;
        if done > 0 {
            info!(done, total = opened.frame.outline.items, "resuming a batch file after the last committed chunk");
        }
        self.stream_items(file, &opened.frame, &handle, &record, &target, &decided.findings, &context, done, progress)?;

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
        let (target, done) = self.db.start_batch(&file.lease, &record, plans.len())?;
        if done == 0 {
            self.db.commit_batch_chunk(&file.lease, &record, &target, 0, &plans)?;
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
        let finished = self.db.finish_batch(&file.lease, record, target, alert.as_ref().map(|t| (t, self.settings.alerts.group_window)))?;
        let (accepted, rejected) = (finished.accepted_count as usize, finished.rejected_count as usize);
        self.metrics.delivery(file.integration, record.transport, accepted, rejected, record.arrived.elapsed());
        Ok(finished)
    }

    /// The second pass: items are read in order by one thread, planned in parallel by workers, and booked in
    /// file order by this thread, a chunk per transaction. Items up to `done` were booked by an earlier run.
    #[allow(clippy::too_many_arguments)]
    fn stream_items(
        &self,
        file: &MasseFile,
        frame: &Frame,
        handle: &File,
        record: &DeliveryRecord,
        target: &Target,
        delivery_findings: &[Finding],
        context: &ItemContext,
        done: usize,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<(), TechnicalError> {
        let spec = WireSpec::of(file.integration);
        let workers = self.settings.batch_workers.max(1);
        let (item_tx, item_rx) = crossbeam_channel::bounded::<(ItemSpan, Vec<u8>)>(workers * 4);
        let (plan_tx, plan_rx) = crossbeam_channel::bounded::<Result<(usize, ItemPlan, usize), TechnicalError>>(workers * 4);
        let total = frame.outline.items;
        std::thread::scope(|scope| -> Result<(), TechnicalError> {
            let limits = self.reading(file.integration).stream;
            let reader = scope.spawn(move || -> Result<(), TechnicalError> {
                let sent = stream::scan(handle.reader()?, Framing::Document, spec.namespace, spec.item, &limits, |span| {
                    if span.index <= done {
                        return Ok(());
                    }
                    let bytes = stream::read_range(handle, span.start, span.end).map_err(Some)?;
                    // The workers are gone when the booking stopped: then stop reading.
                    item_tx.send((span, bytes)).map_err(|_| None)
                });
                match sent {
                    Ok(_) | Err(ScanError::Stopped(None)) => Ok(()),
                    Err(ScanError::Stopped(Some(e))) | Err(ScanError::Io(e)) => Err(e.into()),
                    // The first scan accepted the file: it changed under us.
                    Err(ScanError::Rejected(f)) => {
                        Err(std::io::Error::other(format!("the file changed while it was processed: {}", f.rejection)).into())
                    }
                }
            });
            for _ in 0..workers {
                let (item_rx, plan_tx) = (item_rx.clone(), plan_tx.clone());
                scope.spawn(move || {
                    for (span, bytes) in item_rx {
                        let planned = self.plan_framed_item(file.integration, frame, &span, &bytes, delivery_findings, context, None);
                        let planned = planned.map(|(plan, postings)| (span.index, plan, postings));
                        let failed = planned.is_err();
                        if plan_tx.send(planned).is_err() || failed {
                            break;
                        }
                    }
                });
            }
            drop((item_rx, plan_tx));

            // Plans come back out of order; they are booked in file order (a BilagId repeated in the file, a
            // claim naming one before it).
            let mut waiting: BTreeMap<usize, (ItemPlan, usize)> = BTreeMap::new();
            let mut next = done + 1;
            let mut booker = Booker::new(self, file, record, target, progress, done, total);
            let booked = (|| -> Result<(), TechnicalError> {
                for planned in &plan_rx {
                    let (index, plan, postings) = planned?;
                    waiting.insert(index, (plan, postings));
                    while let Some((plan, postings)) = waiting.remove(&next) {
                        booker.add(plan, postings)?;
                        next += 1;
                    }
                }
                booker.commit()
            })();
            // Stop the reader and the workers if booking failed, then report the first failure.
            drop(plan_rx);
            let read = reader.join().expect("the reader thread does not panic");
            booked?;
            read?;
            if booker.committed != total {
                let committed = booker.committed;
                return Err(std::io::Error::other(format!(
                    "{committed} of {total} items were processed; the file changed while it was processed"
                ))
                .into());
            }
            Ok(())
        })
    }
}
