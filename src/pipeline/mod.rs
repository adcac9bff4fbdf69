//! The one pipeline every delivery goes through, whatever its transport:
//! receive → validate (XML, schema, rules) → check sortiment → map → book → receipt.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{NaiveDate, Utc};
use sha2::{Digest, Sha256};
use tracing::{field, info, info_span, warn};

use crate::config::Config;
use crate::domain::alert::AlertTarget;
pub use crate::domain::delivery::Transport;
use crate::domain::delivery::{Booking, ClaimBooking, DeliveryRecord, FinansBooking, ItemOutcome, ItemPlan};
use crate::domain::finans::{Kontering, Located};
use crate::domain::fordring::check_fordring;
use crate::domain::mapping::{Mapped, MappingSet};
use crate::domain::receipt::ReceiptSet;
use crate::domain::rejection::{cap_findings, cut, Finding, Loc, Rejection, MAX_VALUE_CHARS};
use crate::domain::rules::{check_finansbilag, RuleSettings};
use crate::domain::sortiment::{CallerCertificate, Integration, Sender, Sortiment};
use crate::domain::target::ItemInfo;
use crate::domain::values::{Cvr, Valuta};
use crate::storage::{Db, StorageError};
use crate::wire::{self, sf1590a, sf1590b, WireSpec};
use crate::xml::schema::SchemaError;
use crate::xml::soap::{CallContext, SoapVersion};
use crate::xml::stream::{self, Framing, ItemSpan, ScanError, SpanLog, StreamLimits};
use crate::xml::tree::{self, Element, XmlLimits};

use intake::{OpenError, Source};

mod book;
mod intake;
mod mappings;
mod masse;
mod writer;
pub use mappings::{bind_targets, check_new_files, in_force, MappingChange};
pub use masse::{FileOrigin, MasseFile, Progress, RoutedFrom};

/// Failures the sender cannot fix: answered with a SOAP Fault ("try again later"), nothing handed over.
#[derive(Debug, thiserror::Error)]
pub enum TechnicalError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("no sortiment has been loaded")]
    NoSortiment,
    #[error("no mapping version is stored")]
    NoMappings,
    #[error("the stored mapping version does not pass this program's checks: {0}")]
    MappingsInvalid(String),
    #[error("reading a batch file: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    WriterStopped(#[from] writer::WriterStopped),
}

/// What a file holds, for `fkoeko validate`: a SOAP envelope is a straks call, any other root a masse file;
/// the first element in one of the delivery namespaces tells the integration (SF1590_A when none does).
pub fn detect(bytes: &[u8]) -> (Transport, Integration) {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let mut reader = quick_xml::NsReader::from_reader(bytes);
    let mut transport = None;
    loop {
        match reader.read_resolved_event() {
            Ok((ns, Event::Start(e) | Event::Empty(e))) => {
                let transport =
                    *transport.get_or_insert(if e.local_name().as_ref() == b"Envelope" { Transport::Straks } else { Transport::Masse });
                if let ResolveResult::Bound(ns) = ns {
                    for integration in [Integration::Sf1590A, Integration::Sf1590B] {
                        if ns.as_ref() == WireSpec::of(integration).namespace.as_bytes() {
                            return (transport, integration);
                        }
                    }
                }
            }
            Ok((_, Event::Eof)) | Err(_) => return (transport.unwrap_or(Transport::Masse), Integration::Sf1590A),
            Ok(_) => {}
        }
    }
}

/// Installation settings the pipeline applies, checked once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub authority: Cvr,
    pub rules: RuleSettings,
    pub limits: XmlLimits,
    pub max_finansbilag_straks: usize,
    pub max_fordringer_straks: usize,
    pub max_postings: usize,
    /// The largest one finansbilag or fordring in a batch file may be, in bytes.
    pub max_item_bytes: u64,
    /// Threads that read and check the items of a batch file.
    pub batch_workers: usize,
    pub schema_dir: PathBuf,
    /// The mapping folder: changes there are taken into use, and it is kept in step with the version in force.
    pub mapping_dir: PathBuf,
    /// What the mapping folder is made from when it does not exist at the first start.
    pub mapping_examples: PathBuf,
    pub alerts: AlertSettings,
    /// How long the sortiment and mapping versions in force are used before the database is asked again.
    pub versions_refresh: std::time::Duration,
    /// Threads writing straks deliveries (0: one on SQLite, four on PostgreSQL).
    pub writers: usize,
    /// Where a target profile's file and database targets may write, by the names the profile uses.
    pub targets: crate::config::TargetsConfig,
}

/// Who hears of rejections, beyond the owners named in the sortiment.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub enabled: bool,
    pub copy_to: Vec<String>,
    pub group_window: chrono::Duration,
}

impl Settings {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let authority = Cvr::parse(&config.installation.myndighed)
            .map_err(|e| anyhow::anyhow!("installation.myndighed '{}': {e}", config.installation.myndighed))?;
        let currencies = config
            .installation
            .currencies
            .iter()
            .map(|c| Valuta::parse(c).map_err(|e| anyhow::anyhow!("installation.currencies: {e}")))
            .collect::<anyhow::Result<_>>()?;
        let open_periods = config
            .installation
            .open_periods
            .iter()
            .map(|p| {
                NaiveDate::parse_from_str(&format!("{p}-01"), "%Y-%m-%d")
                    .map(|d| (chrono::Datelike::year(&d), chrono::Datelike::month(&d)))
                    .map_err(|_| anyhow::anyhow!("installation.open_periods: '{p}' is not YYYY-MM"))
            })
            .collect::<anyhow::Result<_>>()?;
        let limits = &config.limits;
        Ok(Settings {
            authority,
            rules: RuleSettings { open_periods, currencies },
            limits: XmlLimits {
                max_depth: limits.max_depth,
                max_elements: limits.max_elements,
                max_attributes: limits.max_attributes,
                max_name_len: limits.max_name_length,
                max_text_len: limits.max_text_length,
            },
            max_finansbilag_straks: limits.max_finansbilag_straks,
            max_fordringer_straks: limits.max_fordringer_straks,
            max_postings: limits.max_posteringer_per_bilag,
            max_item_bytes: limits.max_body_bytes as u64,
            batch_workers: match config.batch.workers {
                0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
                n => n,
            },
            schema_dir: config.paths.schemas.clone(),
            mapping_dir: config.paths.mappings.clone(),
            mapping_examples: config.paths.mapping_examples.clone(),
            alerts: AlertSettings {
                enabled: config.alerts.enabled,
                copy_to: config.alerts.copy_to.clone(),
                group_window: chrono::Duration::seconds(config.alerts.group_window_secs as i64),
            },
            versions_refresh: std::time::Duration::from_millis(config.database.versions_refresh_ms),
            writers: config.database.writers,
            targets: config.targets.clone(),
        })
    }

    fn max_items_straks(&self, integration: Integration) -> usize {
        match integration {
            Integration::Sf1590A => self.max_finansbilag_straks,
            Integration::Sf1590B => self.max_fordringer_straks,
        }
    }
}

/// The result of one delivery: its receipts, and the SOAP version to answer in.
pub struct Processed {
    pub receipts: ReceiptSet,
    pub soap_version: Option<SoapVersion>,
    /// The call's RequestHeader TransactionUUID, to send back in the answer's SOAP header.
    pub echo_transaction: Option<String>,
}

pub struct Pipeline {
    pub settings: Settings,
    pub db: Db,
    pub metrics: crate::metrics::Metrics,
    /// The mapping version in use, by its id in the database.
    mappings: Mutex<Option<Held<MappingSet>>>,
    mapping_folder: Mutex<mappings::FolderState>,
    sortiment: Mutex<Option<Held<Sortiment>>>,
    /// A sortiment and mapping read from files, used instead of the database's versions in force: a dry run that
    /// reads and writes no database (`fkoeko validate`, the fuzz target).
    fixed: Option<(Arc<Sortiment>, Arc<MappingSet>)>,
    /// The one writer of straks deliveries, started with the first one.
    writer: std::sync::OnceLock<writer::Writer>,
    /// When the target profile was last bound to its tables again, and what is wrong if it no longer fits.
    targets_checked: Mutex<(Option<Instant>, Option<String>)>,
}

/// A version in force held in memory: its id in the database, and when the database last said it is the one in
/// force. Within `settings.versions_refresh` of that, it is used without asking: two queries fewer per delivery.
/// A change made by this process is seen at once (`forget_versions`); one made by another within that time.
struct Held<T> {
    id: i64,
    value: Arc<T>,
    /// `None`: ask at the next call.
    checked: Option<Instant>,
}

impl<T> Held<T> {
    fn new(id: i64, value: Arc<T>) -> Self {
        Held { id, value, checked: Some(Instant::now()) }
    }

    /// The value, when it was said to be in force recently enough.
    fn fresh(&self, refresh: std::time::Duration) -> Option<Arc<T>> {
        self.checked.filter(|at| at.elapsed() < refresh).map(|_| self.value.clone())
    }
}

/// Whether a delivery is written, or only checked (`fkoeko validate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Book,
    DryRun,
}

impl Pipeline {
    /// A pipeline on a database; the mapping folder is brought in step by `sync_mapping_folder`.
    pub fn new(settings: Settings, db: Db) -> Self {
        Pipeline {
            settings,
            db,
            metrics: Default::default(),
            mappings: Mutex::new(None),
            mapping_folder: Mutex::default(),
            sortiment: Mutex::new(None),
            fixed: None,
            writer: std::sync::OnceLock::new(),
            targets_checked: Mutex::default(),
        }
    }

    /// A pipeline that decides by a sortiment and mapping given here, never the database's: for dry runs only
    /// (`db` is then never read or written; an in-memory database will do).
    pub fn offline(settings: Settings, db: Db, sortiment: Sortiment, mappings: MappingSet) -> Self {
        Pipeline { fixed: Some((Arc::new(sortiment), Arc::new(mappings))), ..Pipeline::new(settings, db) }
    }

    /// The sortiment in force, re-read when another process (or `fkoeko sortiment load`) stored a new version.
    pub fn sortiment(&self) -> Result<Arc<Sortiment>, TechnicalError> {
        if let Some((sortiment, _)) = &self.fixed {
            return Ok(sortiment.clone());
        }
        if let Some(held) = self.sortiment.lock().expect("sortiment lock").as_ref().and_then(|h| h.fresh(self.settings.versions_refresh)) {
            return Ok(held);
        }
        let version = self.db.current_sortiment_version()?.ok_or(TechnicalError::NoSortiment)?;
        let mut cached = self.sortiment.lock().expect("sortiment lock");
        if let Some(current) = cached.as_mut().filter(|h| h.id == version) {
            current.checked = Some(Instant::now());
            return Ok(current.value.clone());
        }
        let loaded = Arc::new(self.db.load_sortiment(version)?);
        *cached = Some(Held::new(version, loaded.clone()));
        Ok(loaded)
    }

    /// Makes the next call ask the database for the versions in force: this process has just changed one.
    pub(crate) fn forget_versions(&self) {
        for checked in [
            self.sortiment.lock().expect("sortiment lock").as_mut().map(|h| &mut h.checked),
            self.mappings.lock().expect("mapping lock").as_mut().map(|h| &mut h.checked),
        ]
        .into_iter()
        .flatten()
        {
            *checked = None;
        }
    }

    /// How this installation reads deliveries of an integration.
    pub(crate) fn reading(&self, integration: Integration) -> intake::Reading<'_> {
        let spec = WireSpec::of(integration);
        intake::Reading {
            spec,
            schema: self.settings.schema_dir.join(spec.schema),
            xml: &self.settings.limits,
            stream: StreamLimits {
                xml: self.settings.limits.clone(),
                max_prefix_bytes: MAX_PREFIX_BYTES,
                max_item_bytes: self.settings.max_item_bytes,
            },
        }
    }

    /// Processes one delivery held in memory: a straks call's SOAP body, or (for `fkoeko validate`) a batch
    /// file. Business errors become receipts; only technical failures are errors. Read item by item by the same
    /// intake as a batch file on disk (`intake`), decided by the same steps, and written in one transaction.
    /// Waits on this thread for the writer; the HTTP face uses `decide` and `book` instead.
    pub fn process(
        &self,
        bytes: &[u8],
        integration: Integration,
        transport: Transport,
        caller: Option<&CallerCertificate>,
        mode: Mode,
    ) -> Result<Processed, TechnicalError> {
        let decided = self.decide(bytes, integration, transport, caller)?;
        match mode {
            Mode::Book => self.book_waiting(decided),
            Mode::DryRun => Ok(self.preview(decided)),
        }
    }

    /// Reads and decides a delivery held in memory, booking nothing yet: the part of `process` that runs in
    /// parallel, before the delivery joins the writer's queue (`book`).
    pub fn decide(
        &self,
        bytes: &[u8],
        integration: Integration,
        transport: Transport,
        caller: Option<&CallerCertificate>,
    ) -> Result<Decided, TechnicalError> {
        let span = info_span!(
            "delivery",
            integration = integration.as_str(),
            transport = transport.as_str(),
            leverance_id = field::Empty,
            afsender = field::Empty
        );
        let entered = span.enter();
        let mut record = DeliveryRecord::new(integration, transport, String::new());
        let mut soap_version = None;
        let (plans, sortiment) = match self.decide_in_memory(bytes, caller, &mut record, &mut soap_version) {
            Ok((plans, sortiment)) => (plans, Some(sortiment)),
            Err(Whole::Rejected(finding)) => {
                // A delivery answered as a whole is known by the digest of its bytes; one read, by its content.
                record.request_hash = hex::encode(Sha256::digest(bytes));
                (vec![ItemPlan::whole_delivery(vec![finding])], None)
            }
            Err(Whole::Technical(e)) => return Err(e),
        };
        if let Some(id) = record.delivery_id {
            span.record("leverance_id", field::display(id));
        }
        if let Some(sender) = record.sender {
            span.record("afsender", field::display(sender));
        }
        drop(entered);
        Ok(Decided { record, plans, soap_version, sortiment, span })
    }

    /// Books a decided delivery through the writer, and answers when its group is durable.
    pub async fn book(&self, decided: Decided) -> Result<Processed, TechnicalError> {
        let (pending, after) = self.queue(decided)?;
        let written = pending.answer().await;
        self.conclude(after, written)
    }

    /// `book`, waiting on this thread (not an async runtime's).
    fn book_waiting(&self, decided: Decided) -> Result<Processed, TechnicalError> {
        let (pending, after) = self.queue(decided)?;
        self.conclude(after, pending.wait())
    }

    /// A delivery held in memory, read item by item by the same intake as a batch file on disk and decided by the
    /// same steps; or why it is answered as a whole.
    fn decide_in_memory(
        &self,
        bytes: &[u8],
        caller: Option<&CallerCertificate>,
        record: &mut DeliveryRecord,
        soap_version: &mut Option<SoapVersion>,
    ) -> Result<(Vec<ItemPlan>, Arc<Sortiment>), Whole> {
        let (integration, transport) = (record.integration, record.transport);
        let text = tree::decode_utf8(bytes).map_err(Whole::Rejected)?;
        let source: &[u8] = text.as_bytes();
        let framing = match transport {
            Transport::Straks => Framing::Soap,
            Transport::Masse => Framing::Document,
        };
        let reading = self.reading(integration);
        let opened = intake::open(source, framing, &reading)?;
        *soap_version = opened.frame.outline.soap;
        let context = &opened.context;
        record.transaction_uuid = context.transaction.clone();
        record.user_system_uuid = context.user_system.first().map(|(v, _)| v.clone());
        record.context_authority = context.municipality_cvr.first().map(|(v, _)| v.clone());
        record.call_identifier = context.call_identifier.clone();
        record.accounting_info = context.accounting_info.clone();
        record.echo_transaction = context.echo_transaction.clone();
        let mut findings = opened.findings.clone();
        let max_items = self.settings.max_items_straks(integration);
        if transport == Transport::Straks && opened.frame.outline.items > max_items {
            let spec = WireSpec::of(integration);
            let rejection =
                Rejection::TooLarge(format!("{} {} i ét kald; højst {max_items} er tilladt", opened.frame.outline.items, spec.item));
            let finding = Finding::new(rejection, &opened.root.loc(opened.root_path()));
            // Far over the limit, the call is answered as a whole, without reading its items: a receipt for each
            // of a million tiny items would make the answer many times the size of the call.
            if opened.frame.outline.items > FAR_OVER * max_items {
                name_delivery(record, &opened);
                return Err(Whole::Rejected(finding));
            }
            findings.push(finding);
        }
        let arrival = Arrival { context: &opened.context, caller, origin: None };
        let decided = self.decide_delivery(&opened, findings, &arrival, integration, record)?;
        let root_path = opened.root_path();
        let context = decided.item_context(record.delivery_id, &root_path);
        let mut digest = Sha256::new();
        opened.start_digest(&mut digest);
        let mut plans = Vec::with_capacity(opened.frame.outline.items);
        let items =
            Items { source, framing, reading: &reading, integration, frame: &opened.frame, findings: &decided.findings, context: &context };
        self.decide_items(&items, ReadBy::Scan(&mut digest), &mut plans)?;
        Element::feed_close(&mut digest);
        record.request_hash = hex::encode(digest.finalize());
        if plans.is_empty() {
            plans = vec![ItemPlan::without_items(decided.findings.clone(), reading.spec.item, &root_path)];
        }
        Ok((plans, decided.sortiment))
    }

    /// The delivery-level decision, the same for both transports: the delivery names itself in the record,
    /// its municipality, Serviceplatformen's context and its sender are checked against the sortiment, and the
    /// mapping version it will be mapped by is taken.
    fn decide_delivery(
        &self,
        opened: &intake::Opened,
        mut findings: Vec<Finding>,
        arrival: &Arrival,
        integration: Integration,
        record: &mut DeliveryRecord,
    ) -> Result<DeliveryDecision, TechnicalError> {
        name_delivery(record, opened);
        // A delivery whose fields break the schema is rejected for that alone: its header is not read further.
        let header = if findings.is_empty() { wire::read_header(&opened.root, &mut findings) } else { None };
        let sortiment = self.sortiment()?;
        record.sortiment_version = Some(sortiment.version);
        let today = Utc::now().date_naive();
        let sender = match &header {
            Some(header) => self.check_delivery(header, arrival, &sortiment, integration, today, &mut findings).map(|s| s.system),
            None => None,
        };
        if let (Some(origin), Some(header)) = (arrival.origin, &header) {
            self.check_origin(origin, header, &sortiment, sender.is_some(), &mut findings);
        }
        record.authority = header.as_ref().map(|h| h.authority.value.clone());
        let mappings = self.mappings()?;
        record.mapping_version = Some(mappings.version.clone());
        Ok(DeliveryDecision { sortiment, sender, today, mappings, findings })
    }

    /// Decides the delivery's items in delivery order and hands each to `sink`: the one loop both transports
    /// use. A straks call's items are scanned for again and read one after the other, each fed into the digest;
    /// a batch file's are read by one thread, by the spans its first scan logged, and decided by
    /// `settings.batch_workers`, and handed over in order. Returns how many items the delivery holds.
    fn decide_items<S: Source + ?Sized>(&self, items: &Items<'_, S>, by: ReadBy<'_>, sink: &mut dyn Sink) -> Result<usize, TechnicalError> {
        let (log, skip, valid) = match by {
            ReadBy::Scan(digest) => return self.decide_scanned(items, digest, sink),
            ReadBy::Spans { log, skip, valid } => (log, skip, valid),
        };
        let workers = self.settings.batch_workers.max(1);
        let (item_tx, item_rx) = crossbeam_channel::bounded::<(ItemSpan, Vec<u8>)>(workers * 4);
        let (plan_tx, plan_rx) = crossbeam_channel::bounded::<Result<(usize, ItemPlan, usize), TechnicalError>>(workers * 4);
        std::thread::scope(|scope| -> Result<usize, TechnicalError> {
            let reader = scope.spawn(move || -> Result<usize, TechnicalError> {
                for span in log.spans_after(skip) {
                    let span = span?;
                    let bytes = items.source.range(span.start, span.end)?.into_owned();
                    // The workers are gone when the sink stopped: then stop reading.
                    if item_tx.send((span, bytes)).is_err() {
                        return Ok(0);
                    }
                }
                Ok(log.len())
            });
            for _ in 0..workers {
                let (item_rx, plan_tx) = (item_rx.clone(), plan_tx.clone());
                scope.spawn(move || {
                    for (span, bytes) in item_rx {
                        let planned = self.plan_framed_item(items, &span, &bytes, None, valid.contains(span.index));
                        let planned = planned.map(|(plan, postings)| (span.index, plan, postings));
                        let failed = planned.is_err();
                        if plan_tx.send(planned).is_err() || failed {
                            break;
                        }
                    }
                });
            }
            drop((item_rx, plan_tx));
            // Plans come back out of order; they are handed over in delivery order (a BilagId repeated in the
            // delivery, a claim naming one before it).
            let mut waiting: BTreeMap<usize, (ItemPlan, usize)> = BTreeMap::new();
            let mut next = skip + 1;
            let handed = (|| -> Result<(), TechnicalError> {
                for planned in &plan_rx {
                    let (index, plan, postings) = planned?;
                    waiting.insert(index, (plan, postings));
                    while let Some((plan, postings)) = waiting.remove(&next) {
                        sink.add(plan, postings)?;
                        next += 1;
                    }
                }
                Ok(())
            })();
            // Stop the reader and the workers if the sink failed, then report the first failure.
            drop(plan_rx);
            let read = reader.join().expect("the reader thread does not panic");
            handed?;
            let total = read?;
            if next - 1 != total {
                return Err(std::io::Error::other(format!(
                    "{} of {total} items were decided; the file changed while it was read",
                    next - 1
                ))
                .into());
            }
            Ok(total)
        })
    }

    /// A straks call's items, scanned for again in the bytes held in memory and decided one after the other,
    /// each fed into `digest` in order.
    fn decide_scanned<S: Source + ?Sized>(
        &self,
        items: &Items<'_, S>,
        digest: &mut Sha256,
        sink: &mut dyn Sink,
    ) -> Result<usize, TechnicalError> {
        let (spec, limits) = (items.reading.spec, &items.reading.stream);
        let mut count = 0;
        let scanned = stream::scan(items.source.reader()?, items.framing, spec.namespace, spec.item, limits, |span, _| {
            count = span.index;
            let bytes = items.source.range(span.start, span.end)?;
            let (plan, postings) = self.plan_framed_item(items, &span, &bytes, Some(&mut *digest), false)?;
            sink.add(plan, postings)
        });
        match scanned {
            Ok(_) => Ok(count),
            Err(ScanError::Stopped(e)) => Err(e),
            Err(ScanError::Io(e)) => Err(e.into()),
            // The first scan accepted the delivery: it changed under us.
            Err(ScanError::Rejected(f)) => {
                Err(std::io::Error::other(format!("the delivery read differently the second time: {}", f.rejection)).into())
            }
        }
    }

    /// One item, the same for both transports: read as a one-item document, checked, mapped and planned. Feeds
    /// the item into `digest` when given; `valid`: libxml2 found it valid ahead (see `intake::read_item`).
    /// Returns the plan and the item's number of postings (for chunk sizes).
    fn plan_framed_item<S: ?Sized>(
        &self,
        items: &Items<'_, S>,
        span: &ItemSpan,
        bytes: &[u8],
        digest: Option<&mut Sha256>,
        valid: bool,
    ) -> Result<(ItemPlan, usize), TechnicalError> {
        let Items { integration, frame, findings: delivery_findings, context, reading, .. } = *items;
        let spec = reading.spec;
        let index = span.index;
        let read = match intake::read_item(frame, span, bytes, reading, valid)? {
            Ok(read) => read,
            Err(finding) => {
                let mut findings = delivery_findings.to_vec();
                findings.push(finding);
                let loc = Loc { path: frame.item_path(index), line: Some(span.line), col: Some(span.col) };
                let plan = ItemPlan {
                    reference: format!("{}[{index}]", spec.item),
                    reference_loc: loc,
                    content_hash: String::new(),
                    related: None,
                    outcome: ItemOutcome::Reject(findings),
                };
                return Ok((plan, 0));
            }
        };
        let item = read.item;
        if let Some(digest) = digest {
            item.feed(digest);
        }
        let mut own = read.findings;
        let postings = item.children_named("Postering").count();
        let item_ref = ItemRef::of(spec, &item, index, context.root_path);
        own.extend(self.too_many_postings(&item, frame.item_path(index)));
        Ok((self.plan_item(integration, &item, index, item_ref, delivery_findings, own, context), postings.max(1)))
    }

    /// A finansbilag over the configured number of postings; at `path`.
    fn too_many_postings(&self, item: &Element, path: String) -> Option<Finding> {
        let postings = item.children_named("Postering").count();
        (postings > self.settings.max_postings).then(|| {
            let rejection =
                Rejection::TooLarge(format!("{postings} posteringer i ét finansbilag; højst {} er tilladt", self.settings.max_postings));
            Finding::new(rejection, &item.loc(path))
        })
    }

    /// The decision on one item, before it is booked: rejected with the delivery's findings and its own
    /// (schema) findings if there are any, else checked, mapped and planned for booking.
    #[allow(clippy::too_many_arguments)]
    fn plan_item(
        &self,
        integration: Integration,
        item: &Element,
        index: usize,
        item_ref: ItemRef,
        delivery_findings: &[Finding],
        own: Vec<Finding>,
        context: &ItemContext,
    ) -> ItemPlan {
        let spec = WireSpec::of(integration);
        let mut findings = delivery_findings.to_vec();
        let (outcome, related) = if !own.is_empty() {
            findings.extend(own);
            (ItemOutcome::Reject(findings), None)
        } else {
            let path = crate::wire::nth_path(context.root_path, spec.item, index);
            match integration {
                Integration::Sf1590A => (self.evaluate_finansbilag(item, index, path, context, findings), None),
                Integration::Sf1590B => self.evaluate_fordring(item, index, path, context, findings),
            }
        };
        let outcome = match outcome {
            ItemOutcome::Reject(mut findings) => {
                cap_findings(&mut findings, 0);
                ItemOutcome::Reject(findings)
            }
            accepted => accepted,
        };
        ItemPlan { reference: item_ref.reference, reference_loc: item_ref.loc, content_hash: item_ref.content_hash, related, outcome }
    }

    fn evaluate_finansbilag(
        &self,
        item: &Element,
        index: usize,
        path: String,
        context: &ItemContext,
        mut findings: Vec<Finding>,
    ) -> ItemOutcome {
        let Some(bilag) = sf1590a::read_finansbilag(item, index, path, &mut findings) else {
            return ItemOutcome::Reject(findings);
        };
        findings.extend(check_finansbilag(&bilag, &self.settings.rules, context.today));
        let mut mapped = Vec::with_capacity(bilag.postings.len());
        for posting in &bilag.postings {
            if let Some(m) = context.map_kontering(&posting.kontering, &mut findings) {
                mapped.push(m);
            }
        }
        if findings.is_empty() {
            // The rows for the ERP's own import tables, rendered while the positions are known: a value that does
            // not fit its column is named at its posting.
            let rows = match &context.mappings.targets {
                Some(targets) if targets.takes(true) => match targets.finans_rows(&bilag, &mapped, &context.item_info()) {
                    Ok(rows) => rows,
                    Err(findings) => return ItemOutcome::Reject(findings),
                },
                _ => Vec::new(),
            };
            let mut bilag = bilag;
            bilag.forget_positions();
            ItemOutcome::Accept(Box::new(Booking::Finans(FinansBooking {
                bilag,
                mapped,
                mapping_version: context.mappings.version.clone(),
                rows,
            })))
        } else {
            ItemOutcome::Reject(findings)
        }
    }

    /// A claim, and the main claim it names, which can only be looked up when it is booked.
    fn evaluate_fordring(
        &self,
        item: &Element,
        index: usize,
        path: String,
        context: &ItemContext,
        mut findings: Vec<Finding>,
    ) -> (ItemOutcome, Option<Located<String>>) {
        // Read from the element, so that it is checked even when the rest of the claim could not be built.
        let related = item
            .child("RelateretFordringId")
            .map(|r| Located { value: r.text().to_string(), loc: r.loc(format!("{path}/RelateretFordringId")) });
        // As sent: a hæfter's invalid CPR or CVR number (reported where it was read) does not keep the claim's
        // other rules from running.
        let Some(sent) = sf1590b::read_fordring(item, index, path, &mut findings) else {
            return (ItemOutcome::Reject(findings), related);
        };
        let claim_type = &sent.claim_type;
        let mut outside_sortiment = false;
        let type_rule = context.sender.and_then(|sender| {
            let rule = sender.claim_type(&claim_type.value);
            if rule.is_none() {
                outside_sortiment = true;
                findings.push(
                    Finding::new(Rejection::ClaimTypeOutsideSortiment(claim_type.value.clone()), &claim_type.loc)
                        .with_value(claim_type.value.clone()),
                );
            }
            rule
        });
        findings.extend(check_fordring(&sent, type_rule, &self.settings.rules.currencies));
        // A fordringstype the sender may not send is not looked for in the mapping files as well.
        let mapped_type = if outside_sortiment { None } else { context.mappings.map_claim_type(&claim_type.value) };
        if mapped_type.is_none() && !outside_sortiment {
            findings.push(
                Finding::new(Rejection::NoClaimTypeMapping(claim_type.value.clone()), &claim_type.loc).with_value(claim_type.value.clone()),
            );
        }
        let account = match &sent.kontering {
            Some(kontering) => context.map_kontering(kontering, &mut findings),
            None => mapped_type
                .as_ref()
                .and_then(|t| t.account.clone().map(|account| Mapped { account, dimensions: Vec::new(), rule: t.rule.clone() })),
        };
        match (mapped_type, findings.is_empty()) {
            (Some(claim_type), true) => {
                let fordring = sent.into_valid().expect("a claim with no findings has only valid hæftere");
                let rows = match &context.mappings.targets {
                    Some(targets) if targets.takes(false) => {
                        match targets.claim_rows(&fordring, &claim_type, account.as_ref(), &context.item_info()) {
                            Ok(rows) => rows,
                            Err(findings) => return (ItemOutcome::Reject(findings), related),
                        }
                    }
                    _ => Vec::new(),
                };
                let booking = ClaimBooking { fordring, claim_type, account, mapping_version: context.mappings.version.clone(), rows };
                (ItemOutcome::Accept(Box::new(Booking::Claim(booking))), related)
            }
            _ => (ItemOutcome::Reject(findings), related),
        }
    }

    /// Rejects a delivery that could not even be read in full (over the size limit); `book` records that.
    pub fn reject_unread(&self, rejection: Rejection, integration: Integration, transport: Transport) -> Decided {
        Decided::as_whole(DeliveryRecord::new(integration, transport, String::new()), Finding::nowhere(rejection))
    }

    /// Rejects a delivery as a whole, before any of it could be read (a batch file under a SendersFileId used
    /// for other content), with one receipt: written, counted and alerted like any other.
    pub fn reject_as_whole(&self, record: DeliveryRecord, finding: Finding) -> Result<Processed, TechnicalError> {
        self.book_waiting(Decided::as_whole(record, finding))
    }

    /// The delivery-level checks: municipality, Serviceplatformen's context, and the sender's sortiment.
    fn check_delivery<'s>(
        &self,
        header: &crate::domain::finans::DeliveryHeader,
        arrival: &Arrival,
        sortiment: &'s Sortiment,
        integration: Integration,
        today: NaiveDate,
        findings: &mut Vec<Finding>,
    ) -> Option<&'s Sender> {
        let ours = self.settings.authority.as_str();
        if header.authority.value != ours {
            findings.push(
                Finding::new(Rejection::WrongAuthority(header.authority.value.clone(), ours.into()), &header.authority.loc)
                    .with_value(header.authority.value.clone()),
            );
        }
        let (context, caller) = (arrival.context, arrival.caller);
        findings.extend(context.findings.iter().cloned());
        for (cvr, loc) in &context.municipality_cvr {
            if cvr != ours {
                let shown = cut(cvr, MAX_VALUE_CHARS);
                findings.push(Finding::new(Rejection::WrongAuthority(shown.clone(), ours.into()), loc).with_value(shown));
            }
        }
        for (system, loc) in &context.user_system {
            // The platform writes a UUID in its hyphenated form; other spellings of the same UUID are not it.
            let same = system.len() == 36 && uuid::Uuid::parse_str(system).is_ok_and(|s| s == header.sender.value);
            if !same {
                let shown = cut(system, MAX_VALUE_CHARS);
                findings.push(Finding::new(Rejection::SenderContextMismatch(shown.clone()), loc).with_value(shown));
            }
        }
        match sortiment.admit(&header.sender.value, integration, today) {
            Ok(sender) => {
                // A sender that connects directly may be pinned to its certificates; a call without one of
                // them (or without TLS at all) is not from that sender.
                if !sender.certificates.is_empty() && !caller.is_some_and(|c| c.is_in(&sender.certificates)) {
                    let shown = caller.map_or("intet certifikat".to_string(), |c| format!("{}, {}", c.subject, c.fingerprint));
                    tracing::warn!(caller = %shown, "client certificate not pinned for this sender; rejected");
                    findings.push(
                        Finding::new(Rejection::CertificateNotForSender(shown), &header.sender.loc)
                            .with_value(header.sender.value.to_string()),
                    );
                }
                Some(sender)
            }
            Err(rejection) => {
                findings.push(Finding::new(rejection, &header.sender.loc).with_value(header.sender.value.to_string()));
                None
            }
        }
    }

    /// A batch file's AfsenderSystem against what Serviceplatformen says of who sent it: the SFTP user must be
    /// one the sortiment gives that sender (or, in a hand-fed folder, the AfsenderSystem itself), and dynamic
    /// routing must name the same IT system and this installation's municipality.
    fn check_origin(
        &self,
        origin: &FileOrigin,
        header: &crate::domain::finans::DeliveryHeader,
        sortiment: &Sortiment,
        known_sender: bool,
        findings: &mut Vec<Finding>,
    ) {
        let system = header.sender.value;
        let user = &origin.sftp_user;
        let named_by_user =
            uuid::Uuid::parse_str(user).ok() == Some(system) || sortiment.get(&system).is_some_and(|s| s.sftp_users.contains(user));
        // An AfsenderSystem the sortiment does not know is rejected for that already.
        if known_sender && !named_by_user {
            let rejection = Rejection::SftpUserNotForSender { user: cut(user, MAX_VALUE_CHARS), system };
            findings.push(Finding::new(rejection, &header.sender.loc).with_value(system.to_string()));
        }
        if let Some(routed) = &origin.routed {
            if routed.it_system != system {
                let rejection = Rejection::RoutedSenderMismatch { routed: routed.it_system, system };
                findings.push(Finding::new(rejection, &header.sender.loc).with_value(system.to_string()));
            }
            let ours = self.settings.authority.as_str();
            if routed.authority != ours {
                let rejection = Rejection::RoutedAuthorityMismatch(routed.authority.clone(), ours.into());
                findings.push(Finding::new(rejection, &header.authority.loc).with_value(routed.authority.clone()));
            }
        }
    }

    /// The AfsenderSystem a batch file's origin points at, before its content is read: the one dynamic routing
    /// names, the one whose sortiment lists the SFTP user, or the SFTP user itself when it is a UUID.
    pub fn sender_of(&self, origin: &FileOrigin) -> Option<uuid::Uuid> {
        if let Some(routed) = &origin.routed {
            return Some(routed.it_system);
        }
        let by_user = self.sortiment().ok().and_then(|s| s.senders().find(|s| s.sftp_users.contains(&origin.sftp_user)).map(|s| s.system));
        by_user.or_else(|| uuid::Uuid::parse_str(&origin.sftp_user).ok())
    }

    /// Who is told when this sender's delivery is rejected: its owners (unless the sortiment turned its alerts
    /// off) and the configured copy. `None`: nobody.
    fn alert_target(&self, sender: Option<&Sender>, system: Option<uuid::Uuid>) -> Option<AlertTarget> {
        let alerts = &self.settings.alerts;
        if !alerts.enabled || sender.is_some_and(|s| !s.alerts) {
            return None;
        }
        let to = sender.map(|s| s.owners.clone()).unwrap_or_default();
        if to.is_empty() && alerts.copy_to.is_empty() {
            return None;
        }
        let group_key = format!("{}|{}|{}", system.map_or("ukendt".into(), |s| s.to_string()), to.join(","), alerts.copy_to.join(","));
        Some(AlertTarget { group_key, to, cc: alerts.copy_to.clone() })
    }

    /// Hands a decided delivery to the writer. Who hears of its rejections is decided here, up front: even an
    /// accepted plan can still be rejected inside the transaction (a related claim that is not there), and its
    /// alert must be written in that same transaction.
    fn queue(&self, decided: Decided) -> Result<(writer::Pending, After), TechnicalError> {
        let Decided { mut record, plans, soap_version, sortiment, span } = decided;
        let sortiment = match sortiment {
            Some(sortiment) => sortiment,
            None => self.sortiment()?,
        };
        let sender = record.sender.and_then(|s| sortiment.get(&s));
        record.sender_name = sender.map(|s| s.name.clone());
        let alert = self.alert_target(sender, record.sender).map(|t| (t, self.settings.alerts.group_window));
        let after = After {
            integration: record.integration,
            transport: record.transport,
            arrived: record.arrived,
            echo_transaction: record.echo_transaction.clone(),
            soap_version,
            span,
        };
        let writer = self.writer.get_or_init(|| writer::Writer::start(self.db.clone(), self.settings.writers, self.metrics.groups.clone()));
        let pending = writer.submit(book::Queued { record, plans, alert }).map_err(TechnicalError::from)?;
        Ok((pending, after))
    }

    /// The answer of a delivery the writer has written: counted and logged.
    fn conclude(
        &self,
        after: After,
        written: Result<Result<ReceiptSet, StorageError>, writer::WriterStopped>,
    ) -> Result<Processed, TechnicalError> {
        let _entered = after.span.enter();
        let receipts = written??;
        self.metrics.errors(after.integration, &receipts.receipts);
        self.metrics.delivery(after.integration, after.transport, receipts.accepted(), receipts.rejected(), after.arrived.elapsed());
        log_outcome(&receipts);
        Ok(Processed { receipts, soap_version: after.soap_version, echo_transaction: after.echo_transaction })
    }

    /// What a dry run would answer, writing nothing.
    fn preview(&self, decided: Decided) -> Processed {
        let _entered = decided.span.enter();
        let receipts = decided.record.preview(decided.plans);
        log_outcome(&receipts);
        Processed { receipts, soap_version: decided.soap_version, echo_transaction: decided.record.echo_transaction }
    }
}

fn log_outcome(receipts: &ReceiptSet) {
    let codes: Vec<&str> = receipts.receipts.iter().flat_map(|r| r.errors.iter().map(|e| e.code.as_str())).collect();
    if receipts.rejected() > 0 {
        warn!(accepted = receipts.accepted(), rejected = receipts.rejected(), codes = ?codes, "delivery processed with rejections");
    } else {
        info!(accepted = receipts.accepted(), "delivery processed");
    }
}

/// A delivery read and decided, its booking still to come.
pub struct Decided {
    record: DeliveryRecord,
    plans: Vec<ItemPlan>,
    soap_version: Option<SoapVersion>,
    /// The sortiment it was checked against; none when it was rejected before that point.
    sortiment: Option<Arc<Sortiment>>,
    /// The delivery's log span, entered again when it is answered.
    span: tracing::Span,
}

/// What a delivery's items would put into the ERP's own import tables and files (the page's "Prøv"): nothing is
/// written.
#[derive(Debug)]
pub struct TargetPreview {
    pub reference: String,
    /// The receipt's error texts, when it would be rejected.
    pub errors: Vec<String>,
    /// Per row: the target as the profile names it, its columns, and the values.
    pub rows: Vec<(String, Vec<String>, Vec<crate::domain::target::Shown>)>,
}

impl Pipeline {
    /// Decides a delivery as if it had arrived as a straks call, without booking it or looking at earlier
    /// deliveries, and shows each item's target rows.
    pub fn preview_targets(&self, bytes: &[u8], integration: Integration) -> Result<Vec<TargetPreview>, TechnicalError> {
        let wrapped = in_envelope(bytes);
        let decided = self.decide(wrapped.as_deref().unwrap_or(bytes), integration, Transport::Straks, None)?;
        Ok(decided
            .plans
            .iter()
            .map(|plan| {
                let (errors, rows) = match &plan.outcome {
                    ItemOutcome::Reject(findings) => (
                        findings.iter().map(|f| crate::domain::values::mask_cpr_in_text(&f.rejection.to_string()).into_owned()).collect(),
                        &[][..],
                    ),
                    ItemOutcome::Accept(booking) => match booking.as_ref() {
                        Booking::Finans(f) => (Vec::new(), f.rows.as_slice()),
                        Booking::Claim(c) => (Vec::new(), c.rows.as_slice()),
                    },
                };
                let rows = rows.iter().map(|row| (row.sink.name(), row.sink.columns().to_vec(), row.shown_values())).collect();
                TargetPreview { reference: plan.reference.clone(), errors, rows }
            })
            .collect())
    }
}

/// The delivery element alone (ModtagFinansbilag or ModtagFordring, with or without an XML declaration), put in
/// a SOAP 1.1 envelope as a straks call; `None` when it is in one already, or is not XML that starts so.
fn in_envelope(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?.trim_start_matches('\u{feff}').trim_start();
    let body = match text.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>")?.1.trim_start(),
        None => text,
    };
    let name: String = body.strip_prefix('<')?.chars().take_while(|c| !c.is_whitespace() && !matches!(c, '>' | '/')).collect();
    if name.ends_with("Envelope") || !(name.ends_with("ModtagFinansbilag") || name.ends_with("ModtagFordring")) {
        return None;
    }
    let envelope =
        format!("<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>{body}</soap:Body></soap:Envelope>");
    Some(envelope.into_bytes())
}

impl Decided {
    /// A delivery answered with one receipt for the whole of it.
    fn as_whole(record: DeliveryRecord, finding: Finding) -> Self {
        let plans = vec![ItemPlan::whole_delivery(vec![finding])];
        Decided { record, plans, soap_version: None, sortiment: None, span: tracing::Span::current() }
    }
}

/// What a delivery's answer needs once the writer has taken its record.
struct After {
    integration: Integration,
    transport: Transport,
    arrived: Instant,
    echo_transaction: Option<String>,
    soap_version: Option<SoapVersion>,
    span: tracing::Span,
}

/// A straks call with more than this many times the items allowed gets one receipt for the whole call; up to it,
/// each item gets its own (so a sender can match each of them by its id).
const FAR_OVER: usize = 10;

/// The largest the part of a delivery before its first item may be: its own fields, and in a straks call the
/// SOAP envelope's start and header.
const MAX_PREFIX_BYTES: u64 = 64 * 1024;

/// What came with a delivery beside its body: Serviceplatformen's context, the client certificate, and who a
/// batch file's .metadata says sent it.
struct Arrival<'a> {
    context: &'a CallContext,
    caller: Option<&'a CallerCertificate>,
    origin: Option<&'a FileOrigin>,
}

/// Where decided items go, one at a time in delivery order: a straks call's plans for its one transaction, a
/// batch file's chunks.
pub(crate) trait Sink {
    fn add(&mut self, plan: ItemPlan, postings: usize) -> Result<(), TechnicalError>;
}

/// A straks call's items: all of them, written in one transaction when the last is decided.
impl Sink for Vec<ItemPlan> {
    fn add(&mut self, plan: ItemPlan, _postings: usize) -> Result<(), TechnicalError> {
        self.push(plan);
        Ok(())
    }
}

/// How a delivery's items are read for deciding, after the scan that opened it.
enum ReadBy<'a> {
    /// A straks call: scanned for again in memory, each item fed into the delivery's digest in order.
    Scan(&'a mut Sha256),
    /// A batch file: read by the spans its first scan logged, from the item after the first `skip` (committed
    /// by an earlier run) on; those in `valid` are not schema-checked again.
    Spans { log: &'a SpanLog, skip: usize, valid: &'a intake::ValidAhead },
}

/// The items of one opened delivery, and what each is decided with.
struct Items<'a, S: ?Sized> {
    source: &'a S,
    framing: Framing,
    /// How this installation reads the integration's deliveries: taken once per delivery, not per item.
    reading: &'a intake::Reading<'a>,
    integration: Integration,
    frame: &'a intake::Frame,
    /// What rejects every item (the delivery's fields, its sender, ...).
    findings: &'a [Finding],
    context: &'a ItemContext<'a>,
}

/// The delivery-level decision every item is decided with.
struct DeliveryDecision {
    sortiment: Arc<Sortiment>,
    /// The sender, when the sortiment admits it.
    sender: Option<uuid::Uuid>,
    today: NaiveDate,
    mappings: Arc<MappingSet>,
    /// What rejects every item: the delivery's fields, its municipality, context or sender.
    findings: Vec<Finding>,
}

impl DeliveryDecision {
    /// What each item of the delivery is checked, mapped and rendered against.
    fn item_context<'a>(&'a self, delivery_id: Option<uuid::Uuid>, root_path: &'a str) -> ItemContext<'a> {
        ItemContext { sender: self.sender(), delivery_id, today: self.today, mappings: &self.mappings, root_path }
    }

    fn sender(&self) -> Option<&Sender> {
        self.sender.and_then(|s| self.sortiment.get(&s))
    }
}

/// What every item of one delivery is checked against.
struct ItemContext<'a> {
    /// The path of the delivery's root element, e.g. "/ModtagFinansbilag".
    root_path: &'a str,
    sender: Option<&'a Sender>,
    /// The delivery's LeveranceId, for the target rows that name it.
    delivery_id: Option<uuid::Uuid>,
    today: NaiveDate,
    mappings: &'a MappingSet,
}

impl ItemContext<'_> {
    /// What every target row of an item of this delivery may name.
    fn item_info(&self) -> ItemInfo<'_> {
        ItemInfo {
            sender: self.sender.map(|s| s.system.to_string()).unwrap_or_default(),
            delivery_id: self.delivery_id,
            mapping_version: &self.mappings.version,
        }
    }

    /// A kontering inside the sender's sortiment and mapped to an ERP account; else findings saying why not.
    fn map_kontering(&self, kontering: &Located<Kontering>, findings: &mut Vec<Finding>) -> Option<Mapped> {
        let k = &kontering.value;
        let describe = || (k.funktion.to_string(), k.dranst.to_string(), k.art.to_string());
        if let Some(sender) = self.sender {
            if !sender.allows_kontering(k) {
                let (funktion, dranst, art) = describe();
                findings.push(Finding::new(Rejection::KonteringOutsideSortiment { funktion, dranst, art }, &kontering.loc));
                // Outside the sortiment, it is not looked for in the mapping files as well (receipts.md).
                return None;
            }
        }
        let mapped = self.mappings.map(k);
        if mapped.is_none() {
            let (funktion, dranst, art) = describe();
            findings.push(Finding::new(Rejection::NoMapping { funktion, dranst, art }, &kontering.loc));
        }
        mapped
    }
}

/// How an item is named in its receipt and recognised when sent again.
struct ItemRef {
    reference: String,
    loc: Loc,
    content_hash: String,
}

impl ItemRef {
    /// The `index`-th item (1-based) under the root at `root_path`.
    fn of(spec: &WireSpec, item: &Element, index: usize, root_path: &str) -> Self {
        let path = format!("{root_path}/{}[{index}]/{}", spec.item, spec.reference);
        let loc = item.child(spec.reference).map_or_else(|| item.loc(path.clone()), |b| b.loc(path.clone()));
        ItemRef { reference: spec.reference_of(item, index), loc, content_hash: item.content_hash() }
    }
}

/// Why a delivery is answered as a whole, without its items: it is rejected as such, or it could not be taken in.
enum Whole {
    Rejected(Finding),
    Technical(TechnicalError),
}

impl From<OpenError> for Whole {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Rejected(finding) => Whole::Rejected(finding),
            OpenError::Technical(e) => Whole::Technical(e),
        }
    }
}

impl From<TechnicalError> for Whole {
    fn from(e: TechnicalError) -> Self {
        Whole::Technical(e)
    }
}

/// Takes LeveranceId and AfsenderSystem from the delivery's root (or SOAP body) as far as they can be read:
/// before the schema check, so that even a wholly rejected delivery names itself in its receipt.
fn name_delivery(record: &mut DeliveryRecord, opened: &intake::Opened) {
    let root = &opened.root;
    let delivery_id = root.child("LeveranceId");
    record.delivery_id = delivery_id.and_then(|e| uuid::Uuid::parse_str(e.text()).ok());
    record.sender = root.child("AfsenderSystem").and_then(|e| uuid::Uuid::parse_str(e.text()).ok());
    record.delivery_id_loc = delivery_id.map(|e| e.loc(format!("{}/LeveranceId", opened.root_path()))).unwrap_or_default();
}

/// A dry run of any delivery, straks call or batch file (told apart by `detect`): the production intake and
/// decisions, with the receipts previewed instead of written. What `fkoeko validate` and the fuzz target (fuzz/)
/// run.
pub fn dry_run(pipeline: &Pipeline, bytes: &[u8]) -> Result<Processed, TechnicalError> {
    let (transport, integration) = detect(bytes);
    pipeline.process(bytes, integration, transport, None, Mode::DryRun)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_told_by_its_root_and_the_first_delivery_namespace() {
        let soap = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><h xmlns="x"/></s:Header><s:Body><ModtagFordring xmlns="urn:fkoeko:sf1590b:v1"/></s:Body></s:Envelope>"#;
        assert_eq!(detect(soap.as_bytes()), (Transport::Straks, Integration::Sf1590B));
        let masse = r#"<?xml version="1.0"?><!-- a comment --><FinansbilagLeverance xmlns="urn:fkoeko:sf1590a:v1"/>"#;
        assert_eq!(detect(masse.as_bytes()), (Transport::Masse, Integration::Sf1590A));
        // Not XML, or no delivery namespace: a batch file of SF1590_A, which the intake then rejects with its reason.
        assert_eq!(detect(b"\xff\xfe junk"), (Transport::Masse, Integration::Sf1590A));
        assert_eq!(detect(br#"<Envelope><x xmlns="other"/></Envelope>"#), (Transport::Straks, Integration::Sf1590A));
    }

    #[test]
    fn a_delivery_names_itself_from_its_root_before_anything_is_checked() {
        let reading = intake::Reading {
            spec: WireSpec::of(Integration::Sf1590A),
            schema: std::path::PathBuf::from("schemas/sf1590a.xsd"),
            xml: &XmlLimits::default(),
            stream: StreamLimits { xml: XmlLimits::default(), max_prefix_bytes: MAX_PREFIX_BYTES, max_item_bytes: 1 << 20 },
        };
        let id = "6a1c2f3e-1111-4222-8333-944455556666";
        let doc = format!(
            "<FinansbilagLeverance xmlns=\"urn:fkoeko:sf1590a:v1\">\n  <LeveranceId>{id}</LeveranceId>\n  <AfsenderSystem>ikke-en-uuid</AfsenderSystem>\n</FinansbilagLeverance>"
        );
        let opened = match intake::open(doc.as_bytes(), Framing::Document, &reading) {
            Ok(opened) => opened,
            Err(_) => panic!("the document opens"),
        };
        let mut record = DeliveryRecord::new(Integration::Sf1590A, Transport::Masse, String::new());
        name_delivery(&mut record, &opened);
        assert_eq!(record.delivery_id.map(|u| u.to_string()).as_deref(), Some(id));
        assert_eq!(record.sender, None, "an AfsenderSystem that is not a UUID names nobody");
        assert_eq!(record.delivery_id_loc.path, "/FinansbilagLeverance/LeveranceId");
        assert_eq!((record.delivery_id_loc.line, record.delivery_id_loc.col), (Some(2), Some(3)));
    }
}
