//! The one intake of both transports: a delivery is read item by item, whether it is a straks call's SOAP body
//! in memory or a batch file on disk.
//!
//! 1. `stream::scan` reads the document once as a stream of events: well-formed, free of DTDs and entities,
//!    within the limits, and where each item (finansbilag / fordring) starts and ends, by byte offsets.
//! 2. `open` reads the delivery's own fields: the document's bytes before the first item (the *prefix*) with the
//!    first item and the end tags, as a document of its own, schema-checked by libxml2.
//! 3. `read_item` reads each item the same way, as a one-item document: libxml2 checks exactly the element the
//!    wire reader reads, and an error found in it belongs to that item by construction.
//!
//! Positions in a one-item document are moved to where they are in what was sent; schema errors are placed on
//! their element by its number in document order, not by line, so a delivery on one line is placed as well as
//! an indented one. Memory is one item's tree and libxml2 document at a time; time is linear in the delivery.

use std::borrow::Cow;
use std::fs::File;
use std::io::BufRead;
use std::path::PathBuf;

use sha2::Sha256;

use crate::domain::rejection::{cap_findings, Finding, Loc, Rejection, MAX_ERRORS_PER_ITEM};
use crate::domain::values::mask_cpr;
use crate::wire::WireSpec;
use crate::xml::schema::{self, SchemaError, SchemaReport, Target};
use crate::xml::soap::{self, CallContext};
use crate::xml::stream::{self, Framing, ItemSpan, Outline, ScanError, StreamLimits};
use crate::xml::tree::{self, Element, XmlLimits};

use super::TechnicalError;

/// Where a delivery's bytes are.
pub trait Source: Sync {
    /// A reader from the start, for a scan.
    fn reader(&self) -> std::io::Result<Box<dyn BufRead + Send + '_>>;
    /// The bytes of `start..end`.
    fn range(&self, start: u64, end: u64) -> std::io::Result<Cow<'_, [u8]>>;
}

impl Source for [u8] {
    fn reader(&self) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        Ok(Box::new(self))
    }

    fn range(&self, start: u64, end: u64) -> std::io::Result<Cow<'_, [u8]>> {
        self.get(start as usize..end as usize).map(Cow::Borrowed).ok_or_else(|| std::io::Error::other("range outside the delivery"))
    }
}

impl Source for File {
    fn reader(&self) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        let mut handle: &File = self;
        std::io::Seek::rewind(&mut handle)?;
        Ok(Box::new(std::io::BufReader::with_capacity(256 * 1024, handle)))
    }

    fn range(&self, start: u64, end: u64) -> std::io::Result<Cow<'_, [u8]>> {
        stream::read_range(self, start, end).map(Cow::Owned)
    }
}

/// The delivery's own part of every one-item document: the bytes before the first item, and the end tags.
pub struct Frame {
    prefix: String,
    pub outline: Outline,
    framing: Framing,
    spec: &'static WireSpec,
    /// The delivery root's number in document order (0 for a batch file; after the envelope, its Header and
    /// the Body for a straks call): schema issues are numbered from the document's root.
    root_ordinal: usize,
}

impl Frame {
    /// The frame from what the scan found before the first item (or, with none, before the root's end tag). Also
    /// made while the scan still runs, from the outline its callback gets at the first item: the one-item
    /// documents are then the ones `read_item` makes, so they can be schema-checked ahead.
    pub fn read<S: Source + ?Sized>(source: &S, outline: Outline, framing: Framing, spec: &'static WireSpec) -> std::io::Result<Frame> {
        let prefix = source.range(0, outline.prefix_end)?;
        // A byte-order mark stays out of the one-item documents, as it stays out of the scan's positions.
        let prefix = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&prefix).to_vec();
        let prefix = String::from_utf8(prefix).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Frame { prefix, outline, framing, spec, root_ordinal: 0 })
    }

    /// The delivery's fields with one item, as a document of its own.
    fn with_item(&self, item: &str) -> String {
        let mut text = String::with_capacity(self.prefix.len() + item.len() + self.outline.closing.len());
        text.push_str(&self.prefix);
        text.push_str(item);
        text.push_str(&self.outline.closing);
        text
    }

    fn target(&self) -> Target {
        match self.framing {
            Framing::Document => Target::Root,
            Framing::Soap => Target::SoapBody,
        }
    }

    /// The delivery root in a document read from `with_item`.
    fn root<'a>(&self, document: &'a Element) -> Option<&'a Element> {
        match self.framing {
            Framing::Document => Some(document),
            Framing::Soap => soap::body_content(document),
        }
    }

    fn root_mut<'a>(&self, document: &'a mut Element) -> Option<&'a mut Element> {
        match self.framing {
            Framing::Document => Some(document),
            Framing::Soap => soap::body_content_mut(document),
        }
    }

    /// Moves positions in a one-item document to where they are in what was sent: the prefix is the source's
    /// own bytes, and the item follows it there at `span`.
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

    fn shift_element(&self, span: &ItemSpan, element: &mut Element) {
        (element.line, element.col) = self.shift(span, element.line, element.col);
        for child in &mut element.children {
            self.shift_element(span, child);
        }
    }

    /// The path of the `index`-th item.
    pub fn item_path(&self, index: usize) -> String {
        format!("/{}/{}[{index}]", self.outline.root_local, self.spec.item)
    }
}

/// A delivery whose own fields have been read.
pub struct Opened {
    pub frame: Frame,
    /// The delivery root's own fields, and in a straks call the context blocks, read from the first one-item
    /// document (its item is read again with the others).
    pub root: Element,
    /// What is wrong with the delivery's own fields (its root, their schema): every item is rejected with it.
    pub findings: Vec<Finding>,
    pub context: CallContext,
}

impl Opened {
    pub fn root_path(&self) -> String {
        format!("/{}", self.root.name)
    }

    /// Starts the layout-independent digest of the delivery (see `Element::content_hash`) with the root and its
    /// fields; the items are fed as they are read.
    pub fn start_digest(&self, digest: &mut Sha256) {
        self.root.feed_open(digest);
        for child in self.root.children.iter().filter(|c| &*c.name != self.frame.spec.item) {
            child.feed(digest);
        }
    }
}

/// Why a delivery could not be opened.
pub enum OpenError {
    /// Rejected as a whole: not XML, not the expected shape, or not readable.
    Rejected(Finding),
    Technical(TechnicalError),
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> Self {
        OpenError::Technical(e.into())
    }
}

/// What reading needs: the schema, the limits, the integration's wire model.
pub struct Reading<'a> {
    pub spec: &'static WireSpec,
    pub schema: PathBuf,
    pub xml: &'a XmlLimits,
    pub stream: StreamLimits,
}

/// Scans the delivery and reads its own fields (see the module's comment).
pub fn open<S: Source + ?Sized>(source: &S, framing: Framing, reading: &Reading) -> Result<Opened, OpenError> {
    open_logging(source, framing, reading, |_, _| Ok(()))
}

/// `open`, handing each item's span to `on_item` as the scan finds it (a batch file keeps them, and is not
/// scanned again to read its items).
pub fn open_logging<S: Source + ?Sized>(
    source: &S,
    framing: Framing,
    reading: &Reading,
    on_item: impl FnMut(ItemSpan, &Outline) -> std::io::Result<()>,
) -> Result<Opened, OpenError> {
    let spec = reading.spec;
    let outline = match stream::scan(source.reader()?, framing, spec.namespace, spec.item, &reading.stream, on_item) {
        Ok(outline) => outline,
        Err(ScanError::Rejected(finding)) => return Err(OpenError::Rejected(finding)),
        Err(ScanError::Io(e) | ScanError::Stopped(e)) => return Err(e.into()),
    };
    let unreadable = |e: std::string::FromUtf8Error| std::io::Error::other(e.to_string());
    // The schema wants an item after the delivery's fields: the first item's own start tag, emptied, stands in
    // for it. Its errors are the item's (dropped here); the item itself is read with the others.
    let stand_in = match outline.first_item {
        Some(span) => {
            let tag = String::from_utf8(source.range(span.start, span.start_tag_end)?.into_owned()).map_err(unreadable)?;
            match tag.strip_suffix("/>") {
                Some(_) => tag,
                None => {
                    let name: String = tag[1..].chars().take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/').collect();
                    format!("{tag}</{name}>")
                }
            }
        }
        None => String::new(),
    };
    let mut frame = Frame::read(source, outline, framing, spec)?;
    let text = frame.with_item(&stand_in);
    let mut document = tree::read_document(&text, reading.xml).map_err(OpenError::Rejected)?;
    if let Some(span) = frame.outline.first_item {
        frame.shift_element(&span, &mut document);
    }
    let root = frame
        .root(&document)
        .ok_or_else(|| OpenError::Rejected(Finding::nowhere(Rejection::Schema("SOAP-Body skal indeholde præcis ét element".into()))))?;
    frame.root_ordinal = ordinal_of(&document, root);
    let context = match framing {
        Framing::Soap => soap::read_context(&document, root),
        Framing::Document => CallContext::default(),
    };
    let expected = match framing {
        Framing::Soap => spec.straks_root,
        Framing::Document => spec.masse_root,
    };
    let root_path = format!("/{}", root.name);
    let mut findings = Vec::new();
    if &*root.name != expected || root.ns() != Some(spec.namespace) {
        let rejection = Rejection::Schema(format!("forventede {{{}}}{expected}, fandt {}", spec.namespace, root.name));
        findings.push(Finding::new(rejection, &root.loc(root_path)));
    } else {
        let report = match schema::validate(&reading.schema, &text, frame.target(), MAX_ERRORS_PER_ITEM) {
            Ok(report) => report,
            Err(SchemaError::Parse(message)) => {
                return Err(OpenError::Rejected(Finding::new(Rejection::NotWellFormed(message), &root.loc(root_path))))
            }
            Err(e) => return Err(OpenError::Technical(e.into())),
        };
        // Issues inside the first item are found again when it is read as an item.
        let (delivery, _, unplaced) = place(&frame, root, &report);
        findings.extend(delivery);
        findings.extend(unplaced);
    }
    let mut root = root.clone();
    root.children.retain(|c| &*c.name != spec.item);
    Ok(Opened { frame, root, findings, context })
}

/// One item, read: its element (positions as sent), and its own schema findings.
pub struct ItemRead {
    pub item: Element,
    pub findings: Vec<Finding>,
}

/// The largest item (in bytes) whose tree is read before its schema check, to check it in a libxml2 tree built
/// from ours (see `read_item`): both trees are then in memory at once, a few megabytes at most.
const BUILT_FROM_TREE: usize = 256 * 1024;

/// Reads the item at `span` as a one-item document; `Err` when it cannot be read at all, with the finding
/// placed on the item.
///
/// `valid`: the item's one-item document was found valid by `check_ahead` already; libxml2 is not run again.
pub fn read_item(
    frame: &Frame,
    span: &ItemSpan,
    bytes: &[u8],
    reading: &Reading,
    valid: bool,
) -> Result<Result<ItemRead, Finding>, TechnicalError> {
    let index = span.index;
    let at_item = |mut finding: Finding| {
        if let Some(loc) = finding.loc.as_mut() {
            if let Some(line) = loc.line {
                let (l, c) = frame.shift(span, line, loc.col.unwrap_or(1));
                (loc.line, loc.col) = (Some(l), loc.col.map(|_| c));
            }
            if loc.path.is_empty() {
                loc.path = frame.item_path(index);
            }
        }
        finding
    };
    let unreadable = || Finding::nowhere(Rejection::Schema(format!("{} nr. {index} kunne ikke læses", frame.spec.item)));
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return Ok(Err(at_item(Finding::nowhere(Rejection::Encoding(e.to_string()))))),
    };
    let text = frame.with_item(text);
    // Every byte here passed the scan's guard (no DTD, entities or the like, within the limits) before libxml2
    // sees it. A batch file's item up to `BUILT_FROM_TREE` is read first and checked in libxml2's tree built from
    // ours, which is half the work of libxml2 parsing it; only if that does not find it valid is its text checked,
    // so that its issues are always the ones libxml2 finds in what was sent. A larger item's text is checked
    // first, and its tree read once libxml2's is freed, so that the two are never in memory at once.
    let mut report = valid.then(SchemaReport::default);
    let mut read_first = None;
    if report.is_none() && frame.framing == Framing::Document && bytes.len() <= BUILT_FROM_TREE {
        if let Ok(scanned) = tree::read_scanned(&text, reading.xml) {
            if scanned.whole {
                let built = schema::validate_tree(&reading.schema, &scanned.root, MAX_ERRORS_PER_ITEM)?;
                report = built.filter(SchemaReport::is_empty);
            }
            read_first = Some(scanned.root);
        }
    }
    let report = match report {
        Some(report) => report,
        None => match schema::validate(&reading.schema, &text, frame.target(), MAX_ERRORS_PER_ITEM) {
            Ok(report) => report,
            Err(SchemaError::Parse(message)) => return Ok(Err(at_item(Finding::nowhere(Rejection::NotWellFormed(message))))),
            Err(e) => return Err(e.into()),
        },
    };
    let mut document = match read_first {
        Some(document) => document,
        None => match tree::read_scanned(&text, reading.xml) {
            Ok(scanned) => scanned.root,
            Err(finding) => return Ok(Err(at_item(finding))),
        },
    };
    frame.shift_element(span, &mut document);
    let Some(root) = frame.root(&document) else {
        return Ok(Err(at_item(unreadable())));
    };
    // The delivery's own fields were checked once, when it was opened; what is left here is about the item.
    let first = frame.item_path(1);
    let (_, mut findings, unplaced) = place(frame, root, &report);
    findings.extend(unplaced.into_iter().map(|mut f| {
        f.loc = Some(Loc { path: first.clone(), line: None, col: None });
        f
    }));
    let this = frame.item_path(index);
    for finding in &mut findings {
        if let Some(loc) = finding.loc.as_mut() {
            if let Some(rest) = loc.path.strip_prefix(&first) {
                loc.path = format!("{this}{rest}");
            }
        }
    }
    cap_findings(&mut findings, report.omitted);
    let Some(at) = root.children.iter().position(|c| frame.spec.is_item(c)) else {
        return Ok(Err(at_item(unreadable())));
    };
    // Taken out of the document rather than copied: an item can hold 10,000 postings.
    let item = frame.root_mut(&mut document).expect("found above").children.swap_remove(at);
    Ok(Ok(ItemRead { item, findings }))
}

/// Whether libxml2 finds an item's one-item document valid: the check `read_item` makes, made ahead of it (see
/// `ValidAhead`). Any failure to tell counts as not valid, and `read_item` checks the item itself.
pub fn check_ahead(frame: &Frame, bytes: &[u8], reading: &Reading) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else { return false };
    schema::validate(&reading.schema, &frame.with_item(text), frame.target(), MAX_ERRORS_PER_ITEM).is_ok_and(|report| report.is_empty())
}

/// The items of a batch file found valid by `check_ahead` while the file was still being scanned (on the core
/// the one-threaded scan leaves idle), by their number: a byte each, a few megabytes for the largest files.
#[derive(Debug, Default)]
pub struct ValidAhead(Vec<bool>);

impl ValidAhead {
    pub fn insert(&mut self, index: usize) {
        if self.0.len() <= index {
            self.0.resize(index + 1, false);
        }
        self.0[index] = true;
    }

    pub fn contains(&self, index: usize) -> bool {
        self.0.get(index).copied().unwrap_or(false)
    }

    pub fn count(&self) -> usize {
        self.0.iter().filter(|&&valid| valid).count()
    }
}

/// The number of `target` in `document`'s order.
fn ordinal_of(document: &Element, target: &Element) -> usize {
    let mut n = 0;
    let mut found = 0;
    document.preorder("", &[], &mut |_, e| {
        if std::ptr::eq(e, target) {
            found = n;
            return false;
        }
        n += 1;
        true
    });
    found
}

/// Where a schema issue is: its element's place and value, whether it is inside an item, and what its message
/// must add about the element's namespace.
#[derive(Clone)]
struct Placed {
    loc: Loc,
    value: Option<String>,
    in_item: bool,
    elsewhere: Option<String>,
}

/// Places libxml2's issues on their elements under the delivery root, in one walk: those about the delivery's
/// own fields, those inside its (first) item, and those libxml2 gave no element for (at the root).
fn place(frame: &Frame, root: &Element, report: &SchemaReport) -> (Vec<Finding>, Vec<Finding>, Vec<Finding>) {
    let (mut delivery, mut item, mut unplaced) = (Vec::new(), Vec::new(), Vec::new());
    if report.issues.is_empty() {
        return (delivery, item, unplaced);
    }
    let root_path = format!("/{}", root.name);
    let mut wanted: Vec<(usize, usize)> = report.issues.iter().enumerate().filter_map(|(i, issue)| issue.ordinal.map(|o| (o, i))).collect();
    wanted.sort_unstable();
    // With each issue, whether it is inside an item: under a child of the root with the item's name in the
    // delivery's namespace. An element with the item's name in another namespace is not an item (the scan did not
    // take it for one, and it is never read as one): its issues are the delivery's.
    // And libxml2's message names elements without their namespace: for one in another namespace than the
    // delivery's, which one is said as well ("Finansbilag is not expected, expected is Finansbilag" otherwise).
    let mut locs: Vec<Option<Placed>> = vec![None; report.issues.len()];
    let mut next = 0;
    let mut n = frame.root_ordinal;
    let mut in_item = false;
    if !wanted.is_empty() {
        root.preorder("", frame.spec.indexed, &mut |path, e| {
            if path[root_path.len()..].matches('/').count() == 1 {
                in_item = frame.spec.is_item(e);
            }
            while next < wanted.len() && wanted[next].0 < n {
                next += 1;
            }
            while next < wanted.len() && wanted[next].0 == n {
                let leaf = e.children.is_empty() && !e.text().is_empty();
                let value = leaf.then(|| if &*e.name == "CPR" { mask_cpr(e.text()) } else { e.text().chars().take(100).collect() });
                let namespace = frame.spec.namespace;
                let elsewhere = match e.ns() {
                    Some(ns) if ns == namespace => None,
                    Some(ns) => Some(format!("; elementet er i navnerummet {ns}, ikke {namespace}")),
                    None => Some(format!("; elementet er ikke i noget navnerum, men skal være i {namespace}")),
                };
                locs[wanted[next].1] = Some(Placed { loc: e.loc(path.to_string()), value, in_item, elsewhere });
                next += 1;
            }
            n += 1;
            next < wanted.len()
        });
    }
    for (issue, placed) in report.issues.iter().zip(locs) {
        match placed {
            Some(Placed { loc, value, in_item, elsewhere }) => {
                let rejection = Rejection::Schema(format!("{}{}", issue.message, elsewhere.unwrap_or_default()));
                let finding = Finding { rejection, loc: Some(loc), value };
                if in_item {
                    item.push(finding)
                } else {
                    delivery.push(finding)
                }
            }
            None => unplaced
                .push(Finding::new(Rejection::Schema(issue.message.clone()), &Loc { path: root_path.clone(), line: None, col: None })),
        }
    }
    (delivery, item, unplaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sortiment::Integration;

    fn document(amounts: &[&str]) -> String {
        let bilag: String = amounts
            .iter()
            .enumerate()
            .map(|(n, amount)| {
                let posting = |id: usize, side: &str, art: &str| {
                    format!(
                        "<Postering><PosteringId>{id}</PosteringId><Beloeb>{amount}</Beloeb><DebetKredit>{side}</DebetKredit>\
                         <Posteringsdato>2026-11-02</Posteringsdato><Posteringstekst>T</Posteringstekst>\
                         <Kontering><Funktion>5.57.72</Funktion><Dranst>1</Dranst><Art>{art}</Art></Kontering></Postering>"
                    )
                };
                format!(
                    "<Finansbilag><BilagId>A-{n}</BilagId><Bilagsdato>2026-11-02</Bilagsdato>{}{}</Finansbilag>\n",
                    posting(1, "D", "5.2"),
                    posting(2, "K", "9.5")
                )
            })
            .collect();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<FinansbilagLeverance xmlns=\"urn:fkoeko:sf1590a:v1\">\n\
             <LeveranceId>6a1c2f3e-1111-4222-8333-944455556666</LeveranceId>\n\
             <AfsenderSystem>6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01</AfsenderSystem>\n<Myndighed>29189846</Myndighed>\n\
             <Dannet>2026-11-02T02:00:00+01:00</Dannet>\n{bilag}</FinansbilagLeverance>\n"
        )
    }

    /// How an SF1590_A delivery is read, with the repository's schema.
    fn sf1590a_reading(limits: &XmlLimits) -> Reading<'_> {
        Reading {
            spec: WireSpec::of(Integration::Sf1590A),
            schema: PathBuf::from("schemas/sf1590a.xsd"),
            xml: limits,
            stream: StreamLimits { xml: limits.clone(), max_prefix_bytes: 1 << 16, max_item_bytes: 1 << 20 },
        }
    }

    /// A batch file's delivery opened, with the spans of its items.
    fn opened_with_spans(source: &[u8], reading: &Reading) -> (Opened, Vec<ItemSpan>) {
        let mut spans = Vec::new();
        let opened = open_logging(source, Framing::Document, reading, |span, _| {
            spans.push(span);
            Ok(())
        });
        let Ok(opened) = opened else { panic!("the delivery opens") };
        (opened, spans)
    }

    #[test]
    fn an_item_checked_ahead_is_read_as_it_is_read_after_the_scan() {
        let limits = XmlLimits::default();
        let reading = sf1590a_reading(&limits);
        let text = document(&["12.00", "12.005", "7.25"]);
        let source = text.as_bytes();
        let (mut spans, mut early) = (Vec::new(), None);
        let opened = open_logging(source, Framing::Document, &reading, |span, outline| {
            if span.index == 1 {
                early = Some(Frame::read(source, outline.clone(), Framing::Document, reading.spec)?);
            }
            spans.push(span);
            Ok(())
        });
        let Ok(opened) = opened else { panic!("the delivery opens") };
        let early = early.expect("made at the first item");
        assert_eq!(early.with_item("<x/>"), opened.frame.with_item("<x/>"), "the same one-item documents");

        let bytes = |span: &ItemSpan| &source[span.start as usize..span.end as usize];
        let ahead: Vec<bool> = spans.iter().map(|span| check_ahead(&early, bytes(span), &reading)).collect();
        assert_eq!(ahead, [true, false, true], "an amount of three decimals breaks the schema");
        assert!(!check_ahead(&early, b"<Finansbilag><BilagId>", &reading), "a cut item is not valid");

        let read = |span: &ItemSpan, valid: bool| match read_item(&opened.frame, span, bytes(span), &reading, valid) {
            Ok(Ok(read)) => (read.item.content_hash(), read.item.line, read.item.col, read.findings),
            _ => panic!("item {} reads", span.index),
        };
        for span in [&spans[0], &spans[2]] {
            let ahead = read(span, true);
            assert_eq!(ahead, read(span, false), "item {}", span.index);
            assert!(ahead.3.is_empty());
        }
        let (_, _, _, findings) = read(&spans[1], false);
        let paths: Vec<_> = findings.iter().map(|f| f.loc.as_ref().map(|l| l.path.as_str())).collect();
        assert_eq!(
            paths,
            [
                Some("/FinansbilagLeverance/Finansbilag[2]/Postering[1]/Beloeb"),
                Some("/FinansbilagLeverance/Finansbilag[2]/Postering[2]/Beloeb")
            ]
        );
    }

    #[test]
    fn an_item_in_another_namespace_is_an_error_of_the_delivery_not_left_out() {
        let limits = XmlLimits::default();
        let reading = sf1590a_reading(&limits);
        let valid = document(&["12.00", "7.25"]);
        let others = [
            ("all in another namespace", valid.replace("<Finansbilag>", "<Finansbilag xmlns=\"urn:andet\">")),
            ("all in no namespace", valid.replace("<Finansbilag>", "<Finansbilag xmlns=\"\">")),
            ("the first in another namespace", valid.replacen("<Finansbilag>", "<Finansbilag xmlns=\"urn:andet\">", 1)),
        ];
        for ((case, text), namespace) in others.into_iter().zip(["urn:andet", "ikke i noget navnerum", "urn:andet"]) {
            let Ok(opened) = open(text.as_bytes(), Framing::Document, &reading) else { panic!("{case}: opens") };
            let first = opened.findings.first().unwrap_or_else(|| panic!("{case}: an error, not an empty receipt"));
            assert_eq!(
                first.loc.as_ref().map(|l| (l.path.as_str(), l.line)),
                Some(("/FinansbilagLeverance/Finansbilag[1]", Some(7))),
                "{case}"
            );
            let text = first.rejection.to_string();
            assert!(text.contains("Finansbilag") && text.contains(namespace), "{case}: {text}");
        }
        let Ok(opened) = open(valid.as_bytes(), Framing::Document, &reading) else { panic!("opens") };
        assert!(opened.findings.is_empty(), "{:?}", opened.findings);
    }

    #[test]
    fn an_item_checked_in_a_tree_built_from_ours_gets_what_libxml2_finds_in_its_text() {
        let limits = XmlLimits::default();
        let reading = sf1590a_reading(&limits);
        let plain = document(&["12.00", "12.005", "7.25"]);
        let layouts = [
            ("one line an item", plain.clone(), true),
            ("indented", plain.replace("><", ">\n      <"), true),
            (
                "items prefixed, declaring their namespace",
                plain
                    .replace("<Finansbilag>", "<p:Finansbilag xmlns:p=\"urn:fkoeko:sf1590a:v1\">")
                    .replace("</Finansbilag>", "</p:Finansbilag>"),
                true,
            ),
            ("blank CDATA between elements", plain.replace("<Postering><PosteringId>", "<Postering><![CDATA[ ]]><PosteringId>"), false),
            ("amounts in CDATA", plain.replace("<Beloeb>", "<Beloeb><![CDATA[").replace("</Beloeb>", "]]></Beloeb>"), false),
            ("CRLF", plain.replace('\n', "\r\n"), false),
            ("an attribute", plain.replace("<Postering>", "<Postering nr=\"1\">"), false),
            ("a comment in a value", plain.replace("</Beloeb>", "<!-- c --></Beloeb>"), false),
            ("text beside children", plain.replace("<Kontering>", "<Kontering>x"), false),
        ];
        for (layout, text, whole) in layouts {
            let source = text.as_bytes();
            let (opened, spans) = opened_with_spans(source, &reading);
            assert_eq!(spans.len(), 3, "{layout}");
            for span in &spans {
                let one = opened.frame.with_item(std::str::from_utf8(&source[span.start as usize..span.end as usize]).unwrap());
                let by_text = schema::validate(&reading.schema, &one, Target::Root, MAX_ERRORS_PER_ITEM).unwrap();
                let scanned = tree::read_scanned(&one, &limits).unwrap();
                assert_eq!(scanned.whole, whole, "{layout}: item {}", span.index);
                if scanned.whole {
                    let by_tree = schema::validate_tree(&reading.schema, &scanned.root, MAX_ERRORS_PER_ITEM).unwrap().unwrap();
                    assert_eq!(by_tree.is_empty(), by_text.is_empty(), "{layout}: item {}", span.index);
                    if layout == "one line an item" {
                        assert_eq!(by_tree, by_text, "{layout}: item {}: the same issues on the same elements", span.index);
                    }
                }
                let Ok(Ok(read)) = read_item(&opened.frame, span, &source[span.start as usize..span.end as usize], &reading, false) else {
                    panic!("{layout}: item {} reads", span.index)
                };
                let texts: Vec<String> = read.findings.iter().map(|f| f.rejection.to_string()).collect();
                let expected: Vec<String> = by_text.issues.iter().map(|i| i.message.clone()).collect();
                assert_eq!(texts.len(), expected.len(), "{layout}: item {}: {texts:?} against {expected:?}", span.index);
                for (got, want) in texts.iter().zip(&expected) {
                    assert!(got.contains(want.as_str()), "{layout}: item {}: {got} against {want}", span.index);
                }
            }
        }
    }

    #[test]
    fn an_item_libxml2_cannot_parse_is_not_taken_for_valid_from_its_tree() {
        // quick-xml reads namespace declarations run together; libxml2 refuses them ("attributes construct error").
        let limits = XmlLimits::default();
        let reading = sf1590a_reading(&limits);
        let text = document(&["12.00", "7.25", "1.00"]).replacen(
            "<Finansbilag><BilagId>A-1<",
            "<Finansbilag xmlns=\"urn:fkoeko:sf1590a:v1\"xmlns:a=\"urn:a\"><BilagId>A-1<",
            1,
        );
        let source = text.as_bytes();
        let (opened, spans) = opened_with_spans(source, &reading);
        let codes: Vec<_> = spans
            .iter()
            .map(|span| match read_item(&opened.frame, span, &source[span.start as usize..span.end as usize], &reading, false) {
                Ok(Ok(read)) => read.findings.first().map(|f| f.code().as_str().to_string()).unwrap_or_default(),
                Ok(Err(finding)) => finding.code().as_str().to_string(),
                Err(e) => panic!("{e}"),
            })
            .collect();
        assert_eq!(codes, ["", "FORMAT_XML", ""]);
    }

    #[test]
    fn items_valid_ahead_are_counted_by_their_number() {
        let mut valid = ValidAhead::default();
        valid.insert(3);
        valid.insert(1);
        assert_eq!((valid.contains(1), valid.contains(2), valid.contains(3), valid.contains(4)), (true, false, true, false));
        assert_eq!(valid.count(), 2);
    }
}
