//! The masse path of the pipeline: a batch file, streamed. The same steps as a straks call, item by item:
//! the file is scanned once for well-formedness (a broken file is rejected whole, before anything is booked),
//! its delivery fields and sender are checked, and then each item is read by its byte range, schema-checked
//! as a one-item document with the file's own delivery fields, checked, mapped and booked in chunks.
//!
//! Memory: the scan holds one XML event, the workers one item each, and the writer one chunk of plans; none
//! of it grows with the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::{info, warn};

use super::{place_schema_issues, reject_items, wrong_root, Arrival, ItemContext, ItemRef, Pipeline, TechnicalError, Transport};
use crate::domain::rejection::{Finding, Loc, Rejection};
use crate::domain::sortiment::{Integration, Sortiment};
use crate::storage::batch::{BatchFile, Lease, Target};
use crate::storage::booking::{DeliveryRecord, ItemOutcome, ItemPlan};
use crate::wire::{self, WireSpec};
use crate::xml::schema;
use crate::xml::soap::CallContext;
use crate::xml::stream::{self, ItemSpan, Outline, ScanError, StreamLimits};
use crate::xml::tree::{self, Element};

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

/// The file's own part of every one-item document: what precedes the first item, and the root's end tag.
struct Frame {
    prefix: String,
    close: String,
    outline: Outline,
}

impl Frame {
    /// The file's delivery fields with one item, as a document of its own.
    fn with_item(&self, item: &str) -> String {
        let mut text = String::with_capacity(self.prefix.len() + item.len() + self.close.len());
        text.push_str(&self.prefix);
        text.push_str(item);
        text.push_str(&self.close);
        text
    }

    /// Moves a position in a one-item document to where it is in the file: positions in the item are shifted
    /// from where the item is in the document to where it is in the file.
    fn shift(&self, span: &ItemSpan, line: u32, col: u32) -> (u32, u32) {
        let (p_line, p_col) = (self.outline.prefix_end_line, self.outline.prefix_end_col);
        if line > p_line {
            (line - p_line + span.line, col)
        } else if line == p_line && col >= p_col {
            (span.line, col - p_col + span.col)
        } else {
            (line, col)
        }
    }

    fn shift_loc(&self, span: &ItemSpan, loc: &mut Loc, index: usize, item: &str) {
        if let Some(line) = loc.line {
            let (l, c) = self.shift(span, line, loc.col.unwrap_or(1));
            loc.line = Some(l);
            loc.col = loc.col.map(|_| c);
        }
        let first = format!("/{}/{item}[1]", self.outline.root_local);
        if let Some(rest) = loc.path.strip_prefix(&first) {
            loc.path = format!("/{}/{item}[{index}]{rest}", self.outline.root_local);
        }
    }

    fn shift_element(&self, span: &ItemSpan, element: &mut Element) {
        let (line, col) = self.shift(span, element.line, element.col);
        (element.line, element.col) = (line, col);
        for child in &mut element.children {
            self.shift_element(span, child);
        }
    }
}

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
            pipeline, file, record, target, progress, total,
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
        let receipts = self.pipeline.db.commit_batch_chunk(&self.file.lease, self.record, self.target, self.committed as i32, &self.chunk)?;
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
    fn stream_limits(&self) -> StreamLimits {
        StreamLimits { xml: self.settings.limits.clone(), max_prefix_bytes: 64 * 1024, max_item_bytes: self.settings.max_item_bytes }
    }

    /// Processes a claimed batch file to the end (or from where an earlier, stopped process left it): every
    /// item decided and booked, the delivery's outcome and alert recorded. The receipt file is then written
    /// from the stored receipts by the caller.
    pub fn process_file(&self, file: &MasseFile, progress: &(dyn Fn(Progress) + Sync)) -> Result<BatchFile, TechnicalError> {
        let spec = WireSpec::of(file.integration);
        let span = tracing::info_span!("batch_file", file = file.name, integration = file.integration.as_str());
        let _entered = span.enter();
        let mut record = DeliveryRecord::new(file.integration, Transport::Masse.as_str(), format!("file:{}", file.content_hash));
        let handle = File::open(file.path)?;
        let limits = self.stream_limits();
        let outline = match stream::scan::<_, ()>(BufReader::with_capacity(256 * 1024, &handle), spec.namespace, spec.item, &limits, |_| Ok(())) {
            Ok(outline) => outline,
            Err(ScanError::Rejected(finding)) => {
                warn!(error = %finding.rejection, "batch file rejected as a whole");
                return self.reject_whole(file, record, reject_items(&[], &[finding], Vec::new()));
            }
            Err(ScanError::Io(e)) => return Err(e.into()),
            Err(ScanError::Stopped(())) => unreachable!("the first scan does not stop"),
        };
        let prefix = String::from_utf8(stream::read_range(&handle, 0, outline.prefix_end)?).map_err(|e| std::io::Error::other(e.to_string()))?;
        let frame = Frame { prefix, close: format!("</{}>", outline.root_qname), outline };
        info!(items = frame.outline.items, "batch file is well-formed; processing its items");

        // The delivery's own fields, checked once, as a straks call's are: in a document with the first item (the
        // schema wants at least one), whose own errors are found again when that item is processed.
        let first_item = match frame.outline.first_item {
            Some(span) => String::from_utf8(stream::read_range(&handle, span.start, span.end)?).map_err(|e| std::io::Error::other(e.to_string()))?,
            None => String::new(),
        };
        let header_doc = frame.with_item(&first_item);
        let root = match tree::read_document(&header_doc, &self.settings.limits) {
            Ok(root) => root,
            Err(finding) => return self.reject_whole(file, record, reject_items(&[], &[finding], Vec::new())),
        };
        let root_path = format!("/{}", root.name);
        record.name_from(&root, &root_path);
        let mut delivery_findings = Vec::new();
        if let Some(finding) = wrong_root(spec, &root, spec.masse_root, &root_path) {
            delivery_findings.push(finding);
        } else {
            let issues = schema::validate(&self.settings.schema_dir.join(spec.schema), &header_doc, false)?;
            delivery_findings.extend(place_schema_issues(spec, &root, &issues, 1).0);
        }
        let header = if delivery_findings.is_empty() { wire::read_header(&root, &mut delivery_findings) } else { None };
        delivery_findings.extend(file.delivery_findings.iter().cloned());
        let sortiment = self.sortiment()?;
        record.sortiment_version = Some(sortiment.version);
        let today = Utc::now().date_naive();
        let context = CallContext::default();
        let sender = header.as_ref().and_then(|header| {
            let arrival = Arrival { context: &context, caller: None };
            self.check_delivery(header, &arrival, &sortiment, file.integration, today, &mut delivery_findings)
        });
        if let (Some(named), Some(header)) = (&file.metadata_sender, &header) {
            if uuid::Uuid::parse_str(named).ok() != Some(header.sender.value) {
                delivery_findings.push(
                    Finding::new(Rejection::SenderContextMismatch(named.clone()), &header.sender.loc).with_value(named.clone()),
                );
            }
        }
        record.authority = header.as_ref().map(|h| h.authority.value.clone());
        let mappings = self.mappings()?;
        record.mapping_version = Some(mappings.version.clone());
        if !delivery_findings.is_empty() {
            warn!(errors = delivery_findings.len(), "the file's delivery fields or sender are rejected; every item is rejected with them");
        }

        let (target, done) = self.db.start_batch(&file.lease, &record, frame.outline.items)?;
        let context = ItemContext { sender, today, mappings: &mappings, root_path: &root_path };
        let done = done as usize;
        if done > 0 {
            info!(done, total = frame.outline.items, "resuming a batch file after the last committed chunk");
        }
        self.stream_items(file, &frame, &handle, &record, &target, &delivery_findings, &context, done, progress)?;

        let finished = self.finish_file(file, &mut record, &target, &sortiment)?;
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
    fn finish_file(&self, file: &MasseFile, record: &mut DeliveryRecord, target: &Target, sortiment: &Sortiment) -> Result<BatchFile, TechnicalError> {
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
        let (plan_tx, plan_rx) = crossbeam_channel::bounded::<(usize, ItemPlan, usize)>(workers * 4);
        let total = frame.outline.items;
        std::thread::scope(|scope| -> Result<(), TechnicalError> {
            let limits = self.stream_limits();
            let reader = scope.spawn(move || -> Result<(), TechnicalError> {
                // From the start again: the first scan left the file's position at its end.
                let mut handle_at_start = handle;
                std::io::Seek::rewind(&mut handle_at_start)?;
                let source = BufReader::with_capacity(256 * 1024, handle_at_start);
                let sent = stream::scan(source, spec.namespace, spec.item, &limits, |span| {
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
                    Err(ScanError::Rejected(f)) => Err(std::io::Error::other(format!("the file changed while it was processed: {}", f.rejection)).into()),
                }
            });
            for _ in 0..workers {
                let (item_rx, plan_tx) = (item_rx.clone(), plan_tx.clone());
                scope.spawn(move || {
                    for (span, bytes) in item_rx {
                        let (plan, postings) = self.plan_masse_item(file.integration, frame, &span, &bytes, delivery_findings, context);
                        if plan_tx.send((span.index, plan, postings)).is_err() {
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
                for (index, plan, postings) in &plan_rx {
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
                return Err(std::io::Error::other(format!("{committed} of {total} items were processed; the file changed while it was processed")).into());
            }
            Ok(())
        })
    }

    /// One item as a one-item document: read, schema-checked and planned, with positions and paths as they are
    /// in the file. Returns the plan and the item's number of postings (for chunk sizes).
    fn plan_masse_item(
        &self,
        integration: Integration,
        frame: &Frame,
        span: &ItemSpan,
        bytes: &[u8],
        delivery_findings: &[Finding],
        context: &ItemContext,
    ) -> (ItemPlan, usize) {
        let spec = WireSpec::of(integration);
        let index = span.index;
        let unread = |mut finding: Finding| {
            if let Some(loc) = finding.loc.as_mut() {
                frame.shift_loc(span, loc, index, spec.item);
            }
            let mut findings = delivery_findings.to_vec();
            findings.push(finding);
            let loc = Loc { path: format!("{}/{}[{index}]", context.root_path, spec.item), line: Some(span.line), col: Some(span.col) };
            let plan = ItemPlan {
                reference: format!("{}[{index}]", spec.item),
                reference_loc: loc,
                content_hash: String::new(),
                related: None,
                outcome: ItemOutcome::Reject(findings),
            };
            (plan, 0)
        };
        let item_text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => return unread(Finding::nowhere(Rejection::Encoding(e.to_string()))),
        };
        let document = frame.with_item(item_text);
        let root = match tree::read_document(&document, &self.settings.limits) {
            Ok(root) => root,
            Err(finding) => return unread(finding),
        };
        let issues = match schema::validate(&self.settings.schema_dir.join(spec.schema), &document, false) {
            Ok(issues) => issues,
            Err(e) => return unread(Finding::nowhere(Rejection::NotWellFormed(e.to_string()))),
        };
        let (header_issues, mut per_item) = place_schema_issues(spec, &root, &issues, 1);
        let mut own = per_item.pop().unwrap_or_default();
        // The delivery's fields were checked once for the file; what is left here is about the item.
        // (Unplaced issues about the item itself are on its lines.)
        if delivery_findings.is_empty() {
            let item_first_line = frame.outline.prefix_end_line;
            own.extend(header_issues.into_iter().filter(|f| f.loc.as_ref().and_then(|l| l.line).is_some_and(|l| l >= item_first_line)));
        }
        for finding in &mut own {
            if let Some(loc) = finding.loc.as_mut() {
                frame.shift_loc(span, loc, index, spec.item);
            }
        }
        let Some(mut item) = root.children.into_iter().find(|c| c.name == spec.item) else {
            return unread(Finding::nowhere(Rejection::Schema(format!("{} nr. {index} kunne ikke læses", spec.item))));
        };
        frame.shift_element(span, &mut item);
        let postings = item.children_named("Postering").count();
        let item_ref = ItemRef::of(spec, &item, index, context.root_path);
        own.extend(self.too_many_postings(&item, format!("{}/{}[{index}]", context.root_path, spec.item)));
        (self.plan_item(integration, &item, index, item_ref, delivery_findings, own, context), postings.max(1))
    }
}
