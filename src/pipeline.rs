//! The one pipeline every delivery goes through, whatever its transport:
//! receive → validate (XML, schema, rules) → check sortiment → map → book → receipt.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{NaiveDate, Utc};
use sha2::{Digest, Sha256};
use tracing::{field, info, info_span, warn};

use crate::config::Config;
use crate::domain::mapping::MappingSet;
use crate::domain::receipt::ReceiptSet;
use crate::domain::rejection::{Finding, Loc, Rejection};
use crate::domain::rules::{check_finansbilag, RuleSettings};
use crate::domain::sortiment::{Integration, Sender, Sortiment};
use crate::domain::values::{Cvr, Valuta};
use crate::storage::booking::{preview, Booking, DeliveryRecord, ItemOutcome, ItemPlan};
use crate::storage::{Db, StorageError};
use crate::wire::sf1590a;
use crate::xml::schema::{self, SchemaError};
use crate::xml::soap::{self, CallContext, SoapVersion};
use crate::xml::tree::{self, Element, XmlLimits};

/// Failures the sender cannot fix: answered with a SOAP Fault ("try again later"), nothing handed over.
#[derive(Debug, thiserror::Error)]
pub enum TechnicalError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("no sortiment has been loaded")]
    NoSortiment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A synchronous SOAP call: the delivery is the SOAP body.
    Straks,
    /// A batch file: the delivery is the document's root.
    Masse,
}

impl Transport {
    /// A SOAP envelope is a straks call; any other root is a masse file.
    pub fn detect(bytes: &[u8]) -> Self {
        let mut reader = quick_xml::Reader::from_reader(bytes);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)) => {
                    return if e.local_name().as_ref() == b"Envelope" { Transport::Straks } else { Transport::Masse };
                }
                Ok(quick_xml::events::Event::Eof) | Err(_) => return Transport::Masse,
                Ok(_) => {}
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Straks => "straks",
            Transport::Masse => "masse",
        }
    }
}

/// Installation settings the pipeline applies, checked once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub authority: Cvr,
    pub rules: RuleSettings,
    pub limits: XmlLimits,
    pub max_items_straks: usize,
    pub max_postings: usize,
    pub schema_dir: PathBuf,
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
            max_items_straks: limits.max_finansbilag_straks,
            max_postings: limits.max_posteringer_per_bilag,
            schema_dir: config.paths.schemas.clone(),
        })
    }

    fn schema_for(&self, integration: Integration) -> PathBuf {
        match integration {
            Integration::Sf1590A => self.schema_dir.join("sf1590a.xsd"),
            Integration::Sf1590B => self.schema_dir.join("sf1590b.xsd"),
        }
    }
}

/// The result of one delivery: its receipts, and the SOAP version to answer in.
pub struct Processed {
    pub receipts: ReceiptSet,
    pub soap_version: Option<SoapVersion>,
}

pub struct Pipeline {
    pub settings: Settings,
    pub db: Db,
    mappings: RwLock<Arc<MappingSet>>,
    sortiment: Mutex<Option<Arc<Sortiment>>>,
}

/// Whether a delivery is written, or only checked (`fkoeko validate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Book,
    DryRun,
}

impl Pipeline {
    pub fn new(settings: Settings, db: Db, mappings: MappingSet) -> Self {
        Pipeline { settings, db, mappings: RwLock::new(Arc::new(mappings)), sortiment: Mutex::new(None) }
    }

    pub fn mappings(&self) -> Arc<MappingSet> {
        self.mappings.read().expect("mapping lock").clone()
    }

    /// The sortiment in force, re-read when another process (or `fkoeko sortiment load`) stored a new version.
    fn sortiment(&self) -> Result<Arc<Sortiment>, TechnicalError> {
        let version = self.db.current_sortiment_version()?.ok_or(TechnicalError::NoSortiment)?;
        let mut cached = self.sortiment.lock().expect("sortiment lock");
        if let Some(current) = cached.as_ref().filter(|s| s.version == version) {
            return Ok(current.clone());
        }
        let loaded = Arc::new(self.db.load_sortiment(version)?);
        *cached = Some(loaded.clone());
        Ok(loaded)
    }

    /// Processes one SF1590_A delivery. Business errors become receipts; only technical failures are errors.
    pub fn process(&self, bytes: &[u8], transport: Transport, mode: Mode) -> Result<Processed, TechnicalError> {
        let integration = Integration::Sf1590A;
        let span = info_span!("delivery", integration = integration.as_str(), transport = transport.as_str(),
            leverance_id = field::Empty, afsender = field::Empty);
        let _entered = span.enter();
        let mut record = DeliveryRecord::new(integration, transport.as_str(), hex::encode(Sha256::digest(bytes)));

        let text = match tree::decode_utf8(bytes) {
            Ok(text) => text,
            Err(finding) => return self.finish(&record, reject_items(&[], &[finding], Vec::new()), None, mode),
        };
        let document = match tree::read_document(text, &self.settings.limits) {
            Ok(root) => root,
            Err(finding) => return self.finish(&record, reject_items(&[], &[finding], Vec::new()), None, mode),
        };
        let (body, context, version) = match transport {
            Transport::Straks => match soap::open(&document) {
                Ok(envelope) => (envelope.body, envelope.context, Some(envelope.version)),
                Err(finding) => return self.finish(&record, reject_items(&[], &[finding], Vec::new()), None, mode),
            },
            Transport::Masse => (&document, CallContext::default(), None),
        };
        record.request_hash = body.content_hash();
        record.transaction_uuid = context.transaction.clone();
        record.user_system_uuid = context.user_system.as_ref().map(|(v, _)| v.clone());
        let root_path = format!("/{}", body.name);
        let items: Vec<&Element> = body.children_named(sf1590a::ITEM).collect();
        let references: Vec<ItemRef> = items
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let path = format!("{root_path}/{}[{}]/BilagId", sf1590a::ITEM, i + 1);
                let loc = e.child("BilagId").map_or_else(|| e.loc(path.clone()), |b| b.loc(path.clone()));
                ItemRef { reference: sf1590a::reference(e, i + 1), loc, content_hash: e.content_hash() }
            })
            .collect();
        // Best effort before the schema check, so even a wholly rejected delivery names itself in its receipt.
        record.delivery_id = body.child("LeveranceId").and_then(|e| uuid::Uuid::parse_str(e.text()).ok());
        record.sender = body.child("AfsenderSystem").and_then(|e| uuid::Uuid::parse_str(e.text()).ok());
        record.delivery_id_loc = body.child("LeveranceId").map(|e| e.loc(format!("{root_path}/LeveranceId"))).unwrap_or_default();
        if let Some(id) = record.delivery_id {
            span.record("leverance_id", field::display(id));
        }
        if let Some(sender) = record.sender {
            span.record("afsender", field::display(sender));
        }

        // Layer 1: shape and size.
        let expected_root = match transport {
            Transport::Straks => sf1590a::STRAKS_ROOT,
            Transport::Masse => sf1590a::MASSE_ROOT,
        };
        if body.name != expected_root || body.ns.as_deref() != Some(sf1590a::NAMESPACE) {
            let finding = Finding::new(
                Rejection::Schema(format!("forventede {{{}}}{expected_root}, fandt {}", sf1590a::NAMESPACE, body.name)),
                &body.loc(root_path.clone()),
            );
            return self.finish(&record, reject_items(&references, &[finding], Vec::new()), version, mode);
        }
        if transport == Transport::Straks && items.len() > self.settings.max_items_straks {
            let finding = Finding::new(
                Rejection::TooLarge(format!("{} finansbilag i ét kald; højst {} er tilladt", items.len(), self.settings.max_items_straks)),
                &body.loc(root_path.clone()),
            );
            return self.finish(&record, reject_items(&references, &[finding], Vec::new()), version, mode);
        }
        for (i, item) in items.iter().enumerate() {
            let postings = item.children_named("Postering").count();
            if postings > self.settings.max_postings {
                let finding = Finding::new(
                    Rejection::TooLarge(format!("{postings} posteringer i ét finansbilag; højst {} er tilladt", self.settings.max_postings)),
                    &item.loc(format!("{root_path}/{}[{}]", sf1590a::ITEM, i + 1)),
                );
                return self.finish(&record, reject_items(&references, &[finding], Vec::new()), version, mode);
            }
        }
        let issues = schema::validate(&self.settings.schema_for(integration), text, transport == Transport::Straks)?;
        let (delivery_findings, mut item_findings) = place_schema_issues(body, &issues, items.len());
        if !delivery_findings.is_empty() {
            let plans = reject_items(&references, &delivery_findings, item_findings);
            return self.finish(&record, plans, version, mode);
        }

        // Layer 2 and 3: the delivery's own fields, its sender, then each finansbilag.
        let mut delivery_findings = Vec::new();
        let header = sf1590a::read_header(body, &mut delivery_findings);
        let sortiment = self.sortiment()?;
        record.sortiment_version = Some(sortiment.version);
        let today = Utc::now().date_naive();
        let sender = match &header {
            Some(header) => self.check_delivery(header, &context, &sortiment, integration, today, &mut delivery_findings),
            None => None,
        };
        record.authority = header.as_ref().map(|h| h.authority.value.clone());
        let mappings = self.mappings();
        record.mapping_version = Some(mappings.version.clone());

        let mut plans = Vec::with_capacity(items.len());
        for (i, (item, item_ref)) in items.iter().zip(references).enumerate() {
            let mut findings = delivery_findings.clone();
            let own = std::mem::take(&mut item_findings[i]);
            let outcome = if !own.is_empty() {
                findings.extend(own);
                ItemOutcome::Reject(findings)
            } else {
                let path = format!("{root_path}/{}[{}]", sf1590a::ITEM, i + 1);
                match sf1590a::read_finansbilag(item, i + 1, path, &mut findings) {
                    None => ItemOutcome::Reject(findings),
                    Some(bilag) => {
                        findings.extend(check_finansbilag(&bilag, &self.settings.rules, today));
                        let mut mapped = Vec::with_capacity(bilag.postings.len());
                        for posting in &bilag.postings {
                            let kontering = &posting.kontering;
                            let describe = || (kontering.value.funktion.to_string(), kontering.value.dranst.to_string(), kontering.value.art.to_string());
                            if let Some(sender) = sender {
                                if !sender.allows_kontering(&kontering.value) {
                                    let (funktion, dranst, art) = describe();
                                    findings.push(Finding::new(Rejection::KonteringOutsideSortiment { funktion, dranst, art }, &kontering.loc));
                                }
                            }
                            match mappings.map(&kontering.value) {
                                Some(m) => mapped.push(m),
                                None => {
                                    let (funktion, dranst, art) = describe();
                                    findings.push(Finding::new(Rejection::NoMapping { funktion, dranst, art }, &kontering.loc));
                                }
                            }
                        }
                        if findings.is_empty() {
                            ItemOutcome::Accept(Booking { bilag, mapped, mapping_version: mappings.version.clone() })
                        } else {
                            ItemOutcome::Reject(findings)
                        }
                    }
                }
            };
            plans.push(ItemPlan { reference: item_ref.reference, reference_loc: item_ref.loc, content_hash: item_ref.content_hash, outcome });
        }
        self.finish(&record, plans, version, mode)
    }

    /// Rejects a delivery that could not even be read in full (over the size limit), and records that.
    pub fn reject_unread(&self, rejection: Rejection, transport: Transport) -> Result<Processed, TechnicalError> {
        let record = DeliveryRecord::new(Integration::Sf1590A, transport.as_str(), String::new());
        self.finish(&record, reject_items(&[], &[Finding::nowhere(rejection)], Vec::new()), None, Mode::Book)
    }

    /// The delivery-level checks: municipality, Serviceplatformen's context, and the sender's sortiment.
    fn check_delivery<'s>(
        &self,
        header: &crate::domain::finans::DeliveryHeader,
        context: &CallContext,
        sortiment: &'s Sortiment,
        integration: Integration,
        today: NaiveDate,
        findings: &mut Vec<Finding>,
    ) -> Option<&'s Sender> {
        let ours = self.settings.authority.as_str();
        if header.authority.value != ours {
            findings.push(Finding::new(Rejection::WrongAuthority(header.authority.value.clone(), ours.into()), &header.authority.loc)
                .with_value(header.authority.value.clone()));
        }
        if let Some((cvr, loc)) = &context.municipality_cvr {
            if cvr != ours {
                findings.push(Finding::new(Rejection::WrongAuthority(cvr.clone(), ours.into()), loc).with_value(cvr.clone()));
            }
        }
        if let Some((system, loc)) = &context.user_system {
            let same = uuid::Uuid::parse_str(system).is_ok_and(|s| s == header.sender.value);
            if !same {
                findings.push(Finding::new(Rejection::SenderContextMismatch(system.clone()), loc).with_value(system.clone()));
            }
        }
        match sortiment.admit(&header.sender.value, integration, today) {
            Ok(sender) => Some(sender),
            Err(rejection) => {
                findings.push(Finding::new(rejection, &header.sender.loc).with_value(header.sender.value.to_string()));
                None
            }
        }
    }

    fn finish(&self, record: &DeliveryRecord, plans: Vec<ItemPlan>, soap_version: Option<SoapVersion>, mode: Mode) -> Result<Processed, TechnicalError> {
        let receipts = match mode {
            Mode::Book => self.db.commit_delivery(record, plans)?,
            Mode::DryRun => preview(record, plans),
        };
        let codes: Vec<&str> = receipts.receipts.iter().flat_map(|r| r.errors.iter().map(|e| e.code.as_str())).collect();
        if receipts.rejected() > 0 {
            warn!(accepted = receipts.accepted(), rejected = receipts.rejected(), codes = ?codes, "delivery processed with rejections");
        } else {
            info!(accepted = receipts.accepted(), "delivery processed");
        }
        Ok(Processed { receipts, soap_version })
    }
}

/// How an item is named in its receipt and recognised when sent again.
struct ItemRef {
    reference: String,
    loc: Loc,
    content_hash: String,
}

/// Every item rejected with the delivery's findings (and its own, where given); a delivery that names no
/// items gets one receipt for itself.
fn reject_items(items: &[ItemRef], delivery: &[Finding], per_item: Vec<Vec<Finding>>) -> Vec<ItemPlan> {
    if items.is_empty() {
        return vec![ItemPlan {
            reference: "LEVERANCE".into(),
            reference_loc: Loc::default(),
            content_hash: String::new(),
            outcome: ItemOutcome::Reject(delivery.to_vec()),
        }];
    }
    let mut per_item = per_item.into_iter();
    items
        .iter()
        .map(|item| {
            let mut findings = delivery.to_vec();
            findings.extend(per_item.next().unwrap_or_default());
            ItemPlan {
                reference: item.reference.clone(),
                reference_loc: item.loc.clone(),
                content_hash: item.content_hash.clone(),
                outcome: ItemOutcome::Reject(findings),
            }
        })
        .collect()
}

/// Turns libxml2's schema messages into findings with a path, and sorts them into those about the delivery
/// itself and those inside the n-th finansbilag.
fn place_schema_issues(body: &Element, issues: &[schema::SchemaIssue], items: usize) -> (Vec<Finding>, Vec<Vec<Finding>>) {
    let mut located = Vec::new();
    body.walk("", sf1590a::INDEXED, &mut located);
    let item_prefix = format!("/{}/{}[", body.name, sf1590a::ITEM);
    let mut delivery = Vec::new();
    let mut per_item = vec![Vec::new(); items];
    for issue in issues {
        let on_line: Vec<&(String, &Element)> = located.iter().filter(|(_, e)| Some(e.line) == issue.line).collect();
        let hit = on_line
            .iter()
            .find(|(_, e)| Some(&e.name) == issue.element.as_ref())
            .or_else(|| on_line.first())
            .copied();
        let (loc, value) = match hit {
            Some((path, e)) => {
                let leaf = e.children.is_empty() && !e.text().is_empty();
                let value = leaf.then(|| {
                    if e.name == "CPR" { crate::domain::values::mask_cpr(e.text()) } else { e.text().chars().take(100).collect() }
                });
                (Loc { path: path.clone(), line: Some(e.line), col: Some(e.col) }, value)
            }
            None => (Loc { path: format!("/{}", body.name), line: issue.line, col: None }, None),
        };
        let index = loc
            .path
            .strip_prefix(&item_prefix)
            .and_then(|rest| rest.split(']').next())
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=items).contains(n));
        let mut finding = Finding::new(Rejection::Schema(issue.message.clone()), &loc);
        finding.value = value;
        match index {
            Some(n) => per_item[n - 1].push(finding),
            None => delivery.push(finding),
        }
    }
    (delivery, per_item)
}
