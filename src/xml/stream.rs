//! Streaming reading of a batch file: the document is read once as a stream of events, with memory bounded by
//! the largest single event, to check that it is well-formed (and free of DTDs, entities and the like) and to
//! find where each finansbilag / fordring starts and ends. The items themselves are then read one at a time
//! by their byte range (see `pipeline::masse`).

use std::cell::Cell;
use std::io::{BufRead, Read};
use std::rc::Rc;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::guard;
use super::soap::SoapVersion;
use super::tree::XmlLimits;
use crate::domain::rejection::{Finding, Loc, Rejection};

/// Where one item (a direct child of the root with the item's name) lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemSpan {
    /// 1-based, in document order.
    pub index: usize,
    /// Byte range of the element, from its `<` to the end of its end tag.
    pub start: u64,
    pub end: u64,
    /// Where its start tag ends: the item's own start tag, without its content, stands in for it where only the
    /// delivery's own fields are checked.
    pub start_tag_end: u64,
    /// Position of its `<` in the file (column in bytes).
    pub line: u32,
    pub col: u32,
}

/// What the scan found around the items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    /// The root's qualified name as written (with its prefix, if any), to close a one-item document with.
    pub root_qname: String,
    pub root_local: String,
    /// Everything before the first item (or, with no items, before the root's end tag): the XML
    /// declaration, the root's start tag and the delivery's own fields.
    pub prefix_end: u64,
    pub prefix_end_line: u32,
    pub prefix_end_col: u32,
    pub items: usize,
    /// Where the first item is: the delivery's own fields are schema-checked together with it.
    pub first_item: Option<ItemSpan>,
    /// The end tags that close a document cut after an item: the delivery root's, and in a SOAP envelope the
    /// Body's and the Envelope's.
    pub closing: String,
    /// The SOAP version, when the delivery came in an envelope.
    pub soap: Option<SoapVersion>,
}

/// How the delivery root sits in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The document's root is the delivery (a batch file).
    Document,
    /// The delivery is the one element in the Body of a SOAP 1.1 or 1.2 Envelope (a straks call). The Envelope
    /// holds an optional Header and then the Body, both in the SOAP namespace, and nothing else: an element of
    /// another namespace named Body is not taken for it.
    Soap,
}

/// Where the reader is in a SOAP envelope, outside the delivery root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SoapPart {
    Envelope,
    Header,
    Body,
    AfterBody,
}

/// Limits of a streamed file; unlike a straks body the file as a whole has no size or element limit.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    pub xml: XmlLimits,
    /// The largest the part before the first item may be.
    pub max_prefix_bytes: u64,
    /// The largest one item may be, in bytes (it is read into memory whole).
    pub max_item_bytes: u64,
}

#[derive(Debug)]
pub enum ScanError<E> {
    /// The file is not acceptable as XML: it is rejected as a whole.
    Rejected(Finding),
    /// The item callback stopped the scan.
    Stopped(E),
    Io(std::io::Error),
}

/// A reader that counts lines as bytes are consumed, and refuses to go further than `budget` bytes past the
/// start of the current event: quick-xml holds a whole event in memory, so this bounds memory on a file with a
/// gigabyte-long text node or tag.
///
/// The inner reader's buffer is released only when all of it is consumed, so the consumed bytes stay at hand and
/// lines are counted when a position is asked for (`settle`) or the buffer is released: quick-xml consumes a few
/// bytes at a time, millions of times in a batch file, and counting each piece cost a quarter of the scan. Only a
/// buffer that may hold a character XML does not allow is counted as it is consumed, so that the character is
/// found at the event that holds it.
struct Counting<R> {
    inner: R,
    consumed: u64,
    /// Bytes of the inner reader's buffer consumed but not yet released to it, and how many of them are counted.
    held: usize,
    tallied: usize,
    /// Whether the buffer has been looked at for forbidden characters, and whether it may hold one.
    screened: bool,
    suspicious: bool,
    tally: Tally,
    event_start: Rc<Cell<u64>>,
    budget: u64,
}

impl<R: BufRead> Counting<R> {
    fn new(inner: R, event_start: Rc<Cell<u64>>, budget: u64) -> Self {
        Counting {
            inner,
            consumed: 0,
            held: 0,
            tallied: 0,
            screened: false,
            suspicious: false,
            tally: Tally::default(),
            event_start,
            budget,
        }
    }

    /// Counts the lines of every byte consumed so far.
    fn settle(&mut self) {
        if self.tallied == self.held {
            return;
        }
        // The buffer still holds the bytes consumed since it was filled: nothing is read here.
        let Ok(buffer) = self.inner.fill_buf() else { return };
        let bytes = &buffer[self.tallied..self.held.min(buffer.len())];
        let at = self.consumed - (self.held - self.tallied) as u64;
        if self.suspicious && self.tally.forbidden.is_none() {
            self.tally.count_bytewise(at, bytes);
        } else {
            self.tally.count_lines(at, bytes);
        }
        self.tallied = self.held;
    }
}

/// What `Counting` has seen of the bytes consumed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    lines: u32,
    line_start: u64,
    /// UTF-8 continuation bytes on the current line, so that columns count characters as the tree reader does.
    continuations: u64,
    /// The last two bytes seen, to find U+FFFE and U+FFFF (EF BF BE, EF BF BF) across buffer boundaries.
    last: [u8; 2],
    /// The first character XML does not allow, with its line and column: every byte of the document passes here.
    forbidden: Option<(u32, u32, u32)>,
}

/// Whitespace as XML means it (not Unicode's: a no-break space is text).
pub fn is_xml_whitespace(text: &[u8]) -> bool {
    text.iter().all(|&b| is_xml_space(b))
}

/// One byte of XML whitespace.
pub fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Whether XML 1.0 allows the character in a document (its `Char` production).
pub fn is_xml_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

impl<R: BufRead> Read for Counting<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.consumed.saturating_sub(self.event_start.get()) > self.budget {
            return Err(std::io::Error::other(TooLong));
        }
        if self.held > 0 && self.held >= self.inner.fill_buf()?.len() {
            // All of the buffer is consumed: counted, and released for the next.
            self.settle();
            self.inner.consume(self.held);
            (self.held, self.tallied, self.screened) = (0, 0, false);
        }
        if !self.screened {
            // Every byte of a delivery passes here. A buffer with no byte that could start or end a forbidden
            // character (by far the most) is counted a whole piece at a time; any other, byte by byte as consumed.
            let buffer = self.inner.fill_buf()?;
            self.suspicious = self.tally.forbidden.is_none() && may_hold_forbidden(buffer);
            self.screened = true;
        }
        Ok(&self.inner.fill_buf()?[self.held..])
    }

    fn consume(&mut self, n: usize) {
        self.held += n;
        self.consumed += n as u64;
        if self.suspicious {
            self.settle();
        }
    }
}

/// A control character XML does not allow, or the last byte of U+FFFE / U+FFFF (EF BF BE, EF BF BF).
fn may_hold_forbidden(bytes: &[u8]) -> bool {
    // Whole blocks, without stopping early, so that the compiler makes one vector loop of it.
    bytes.chunks(64).any(|block| {
        block.iter().fold(false, |found, &b| found | ((b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r') | (b == 0xBE) | (b == 0xBF)))
    })
}

/// UTF-8 continuation bytes: a character's bytes after its first.
fn continuation_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b & 0xC0 == 0x80).count() as u64
}

impl Tally {
    /// Lines and columns of `bytes`, consumed after the first `consumed`, when none of them is forbidden.
    fn count_lines(&mut self, consumed: u64, bytes: &[u8]) {
        match memchr::memrchr(b'\n', bytes) {
            Some(last) => {
                self.lines += memchr::memchr_iter(b'\n', bytes).count() as u32;
                self.line_start = consumed + last as u64 + 1;
                self.continuations = continuation_bytes(&bytes[last + 1..]);
            }
            None => self.continuations += continuation_bytes(bytes),
        }
        self.last = match bytes {
            [.., a, b] => [*a, *b],
            [b] => [self.last[1], *b],
            [] => self.last,
        };
    }

    /// `count_lines`, and the first forbidden character's position.
    fn count_bytewise(&mut self, consumed: u64, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                self.lines += 1;
                self.line_start = consumed + i as u64 + 1;
                self.continuations = 0;
            } else if b & 0xC0 == 0x80 {
                self.continuations += 1;
            }
            let control = b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r');
            let non_character = self.last == [0xEF, 0xBF] && (b == 0xBE || b == 0xBF);
            if (control || non_character) && self.forbidden.is_none() {
                let at = consumed + i as u64;
                let col = (at - self.line_start).saturating_sub(self.continuations) + 1;
                // The code point: the control character itself, or U+FFFE / U+FFFF from their last byte.
                let code = if control { b as u32 } else { 0xFFFE + u32::from(b == 0xBF) };
                self.forbidden = Some((self.lines + 1, col as u32, code));
            }
            self.last = [self.last[1], b];
        }
    }
}

#[derive(Debug)]
struct TooLong;

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an XML construct is longer than the limit")
    }
}

impl std::error::Error for TooLong {}

fn reject(rejection: Rejection, line: u32, col: u32) -> Finding {
    Finding { rejection, loc: Some(Loc { path: String::new(), line: Some(line), col: Some(col) }), value: None }
}

/// Comments and CDATA sections allowed in the delivery's own part, and in each item: more is not a real
/// delivery, and each costs libxml2 a node (and joining the text they split).
const MAX_SECTIONS: usize = 1000;

fn text_too_long(limits: &XmlLimits) -> Rejection {
    Rejection::TooLarge(format!("en tekst er længere end {} tegn", limits.max_text_len))
}

/// Counts one more comment or CDATA section in the part of the document being read.
fn count_section(sections: &mut usize, item: &str) -> Result<(), Rejection> {
    *sections += 1;
    if *sections > MAX_SECTIONS {
        return Err(Rejection::TooLarge(format!("mere end {MAX_SECTIONS} kommentarer og CDATA-afsnit i ét {item}")));
    }
    Ok(())
}

/// Text (written out, as a reference or as CDATA) where no one-item document holds it, and so no schema check
/// sees it: outside the root element, in the SOAP Envelope, Header or Body beside the delivery, or directly in
/// the delivery root after its first item (whose content is elements only).
fn misplaced_text(
    outline: &Option<Outline>,
    root_done: bool,
    depth: usize,
    root_depth: usize,
    in_envelope: bool,
    current: &Option<(ItemSpan, usize)>,
) -> Option<Rejection> {
    let outside_delivery = outline.is_none() || root_done;
    if depth == 0 {
        return Some(Rejection::NotWellFormed("tekst uden for rodelementet".into()));
    }
    if in_envelope && depth <= root_depth && outside_delivery {
        return Some(Rejection::Schema("tekst i SOAP-Envelope uden for Body's element".into()));
    }
    let between = outline.as_ref().is_some_and(|o| o.items > 0) && !root_done && depth == root_depth + 1 && current.is_none();
    between.then(|| Rejection::Schema("der står tekst mellem elementerne; kun elementer må følge efter det første".into()))
}

/// Streams the document from `source`, calling `on_item` for every item in order. The items are direct
/// children of the delivery root (see `Framing`) with the local name `item` in the namespace `namespace`.
pub fn scan<R: BufRead, E>(
    source: R,
    framing: Framing,
    namespace: &str,
    item: &str,
    limits: &StreamLimits,
    mut on_item: impl FnMut(ItemSpan, &Outline) -> Result<(), E>,
) -> Result<Outline, ScanError<E>> {
    // The depth of the delivery root, and the envelope's state around it.
    let root_depth = match framing {
        Framing::Document => 0,
        Framing::Soap => 2,
    };
    let mut soap: Option<(SoapVersion, SoapPart)> = None;
    // The envelope's and the Body's qualified names, to close a cut document with.
    let mut soap_names: Vec<String> = Vec::new();
    let mut root_done = false;
    let event_start = Rc::new(Cell::new(0));
    let budget = limits.max_item_bytes.max(limits.max_prefix_bytes).max(limits.xml.max_text_len as u64 * 4 + 4096);
    // A UTF-8 byte-order mark is not part of the document. quick-xml would skip it without counting it in its
    // positions while the tally counted it; it is skipped here, so both count from after it, and the byte offsets
    // handed out (item spans, the prefix's end) are moved past it again to be offsets in what was sent.
    let mut source = source;
    let bom = match source.fill_buf() {
        Ok(head) if head.starts_with(b"\xEF\xBB\xBF") => 3,
        Ok(_) => 0,
        Err(e) => return Err(ScanError::Io(e)),
    };
    source.consume(bom as usize);
    let counting = Counting::new(source, event_start.clone(), budget);
    let mut reader = NsReader::from_reader(counting);
    reader.config_mut().trim_text(false);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut outline: Option<Outline> = None;
    let mut seen_bom = false;
    // The item being read: its span so far, and the number of elements in it.
    let mut current: Option<(ItemSpan, usize)> = None;
    // The text since the last tag (split by comments or references it is still one text): its length, and
    // whether it is more than the whitespace between elements.
    let mut run = (0usize, false);
    // Comments and CDATA sections in the part of the document libxml2 reads next (the prefix, or the item):
    // libxml2 makes a node of each, and joins split text again at a cost that grows with their number.
    let mut sections = 0usize;
    // Text at depth 0 after the root is closed, or a second root: the reader refuses those itself.
    loop {
        let start = reader.buffer_position();
        event_start.set(start);
        buf.clear();
        // The line and column (in characters) of the event's start. When asked after the event was read, the
        // event's own bytes are consumed: `own_continuations` of them are inside characters.
        let here = |reader: &mut NsReader<Counting<R>>, own_continuations: u64| {
            let counting = reader.get_mut();
            counting.settle();
            let tally = &counting.tally;
            let bytes = start.saturating_sub(tally.line_start);
            (tally.lines + 1, (bytes.saturating_sub(tally.continuations.saturating_sub(own_continuations)) + 1) as u32)
        };
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(quick_xml::Error::Io(e)) => {
                let (line, col) = here(&mut reader, 0);
                if e.get_ref().is_some_and(|inner| inner.is::<TooLong>()) {
                    let what = if current.is_some() { "et element i et bilag" } else { "en del af filen" };
                    return Err(ScanError::Rejected(reject(
                        Rejection::TooLarge(format!("{what} er længere end grænsen på {budget} byte")),
                        line,
                        col,
                    )));
                }
                return Err(ScanError::Io(std::io::Error::new(e.kind(), e.to_string())));
            }
            Err(e) => {
                let (line, col) = here(&mut reader, 0);
                return Err(ScanError::Rejected(reject(Rejection::NotWellFormed(e.to_string()), line, col)));
            }
        };
        // Only a start tag's namespace is looked at, so only a start tag's is resolved (an end tag's was half of
        // the resolving).
        let ns = match &event {
            Event::Start(e) | Event::Empty(e) => reader.resolve_element(e.name()).0,
            _ => ResolveResult::Unbound,
        };
        // The shared guards, and whether an element is in the delivery's namespace, are decided while the
        // namespace is borrowed from the reader; after that the reader can be asked for positions.
        let checked = match &event {
            Event::Start(e) | Event::Empty(e) => match std::str::from_utf8(e) {
                Err(err) => Err(Rejection::Encoding(format!("ugyldig UTF-8 ({err})"))),
                Ok(_) => guard::check_start(e, &ns, depth, &limits.xml),
            },
            Event::GeneralRef(r) => guard::resolve_reference(r).map(drop),
            other => guard::check_event(other),
        };
        // Compared only where they are asked (an item is a child of the root; the envelope is above it): most
        // events are deeper, and a batch file has millions.
        let in_delivery_ns = depth == root_depth + 1 && matches!(&ns, ResolveResult::Bound(ns) if ns.0 == namespace.as_bytes());
        let soap_ns = match &ns {
            _ if framing != Framing::Soap || depth > root_depth => None,
            ResolveResult::Bound(ns) if ns.0 == SoapVersion::V11.namespace().as_bytes() => Some(SoapVersion::V11),
            ResolveResult::Bound(ns) if ns.0 == SoapVersion::V12.namespace().as_bytes() => Some(SoapVersion::V12),
            _ => None,
        };
        // Asked for only where used (an error, the prefix's end, an item's start): most events are none of those.
        let position = |reader: &mut NsReader<Counting<R>>| {
            let own_continuations = match &event {
                Event::Start(e) | Event::Empty(e) => continuation_bytes(e),
                _ => 0,
            };
            here(reader, own_continuations)
        };
        if let Some((bad_line, bad_col, code)) = reader.get_ref().tally.forbidden {
            return Err(ScanError::Rejected(reject(
                Rejection::NotWellFormed(format!("tegnet U+{code:04X} er ikke tilladt i XML")),
                bad_line,
                bad_col,
            )));
        }
        let fail = |reader: &mut NsReader<Counting<R>>, rejection| {
            let (line, col) = position(reader);
            Err(ScanError::Rejected(reject(rejection, line, col)))
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                run = (0, false);
                let empty = matches!(event, Event::Empty(_));
                // The start tag is consumed already: its own line breaks are not before it.
                let tag_position = |reader: &mut NsReader<Counting<R>>| {
                    let (line, col) = position(reader);
                    let tag_lines = e.iter().filter(|&&b| b == b'\n').count() as u32;
                    if tag_lines > 0 {
                        (line - tag_lines, 1)
                    } else {
                        (line, col)
                    }
                };
                if let Err(rejection) = checked {
                    let (line, col) = tag_position(&mut reader);
                    return Err(ScanError::Rejected(reject(rejection, line, col)));
                }
                // Names are compared as bytes: most elements are neither the root nor an item, and allocate nothing.
                let local = e.local_name();
                let is_item = in_delivery_ns && local.as_ref() == item.as_bytes();
                if framing == Framing::Soap && depth <= root_depth {
                    let version = soap_ns;
                    let part = soap.map(|(_, part)| part);
                    let named = |name: &[u8]| local.as_ref() == name && version.is_some() && version == soap.map(|(v, _)| v);
                    let next = match (depth, part) {
                        (0, _) if local.as_ref() == b"Envelope" && version.is_some() => (version.expect("checked"), SoapPart::Envelope),
                        (0, _) => {
                            return fail(&mut reader, Rejection::Schema("rodelementet skal være en SOAP 1.1- eller 1.2-Envelope".into()))
                        }
                        (1, Some(SoapPart::Envelope)) if named(b"Header") => (version.expect("checked"), SoapPart::Header),
                        (1, Some(SoapPart::Envelope | SoapPart::Header)) if named(b"Body") => (version.expect("checked"), SoapPart::Body),
                        (1, _) => {
                            let local = String::from_utf8_lossy(local.as_ref());
                            return fail(
                                &mut reader,
                                Rejection::Schema(format!(
                                    "SOAP-Envelope må kun indeholde en Header og derefter én Body i SOAP-navnerummet; fandt '{local}'"
                                )),
                            );
                        }
                        // Inside the Header: its blocks are read from the prefix with the delivery's fields.
                        (_, Some(SoapPart::Header)) => soap.expect("in the envelope"),
                        (2, Some(SoapPart::Body)) if outline.is_none() => soap.expect("in the envelope"),
                        _ => return fail(&mut reader, Rejection::Schema("SOAP-Body skal indeholde præcis ét element".into())),
                    };
                    if !empty && (depth == 0 || next.1 == SoapPart::Body) && depth < 2 {
                        soap_names.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                    }
                    soap = Some(next);
                    if depth == 1 && next.1 == SoapPart::Body && empty {
                        return fail(&mut reader, Rejection::Schema("SOAP-Body skal indeholde præcis ét element".into()));
                    }
                }
                let in_root = outline.is_some() && !root_done;
                // Everything before the first item is part of every item's document: it is held to its limit.
                let before_items = outline.as_ref().is_some_and(|o| o.items == 0);
                if in_root && depth == root_depth + 1 && before_items && start > limits.max_prefix_bytes {
                    return fail(
                        &mut reader,
                        Rejection::TooLarge(format!(
                            "leverancens felter før første {item} fylder mere end {} byte",
                            limits.max_prefix_bytes
                        )),
                    );
                }
                match (depth, &mut outline, &mut current) {
                    (d, None, _) if d == root_depth && soap.is_none_or(|(_, part)| part == SoapPart::Body) => {
                        let root_qname = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                        let mut closing = format!("</{root_qname}>");
                        for name in soap_names.iter().rev() {
                            closing.push_str(&format!("</{name}>"));
                        }
                        outline = Some(Outline {
                            root_qname,
                            root_local: String::from_utf8_lossy(local.as_ref()).into_owned(),
                            prefix_end: 0,
                            prefix_end_line: 0,
                            prefix_end_col: 0,
                            items: 0,
                            first_item: None,
                            closing,
                            soap: soap.map(|(v, _)| v),
                        });
                        if empty {
                            root_done = true;
                            let (line, col) = tag_position(&mut reader);
                            if let Some(o) = outline.as_mut() {
                                (o.prefix_end, o.prefix_end_line, o.prefix_end_col) = (start + bom, line, col);
                            }
                        }
                    }
                    (d, Some(o), None) if d == root_depth + 1 && in_root && is_item => {
                        let (line, col) = tag_position(&mut reader);
                        if o.items == 0 {
                            (o.prefix_end, o.prefix_end_line, o.prefix_end_col) = (start + bom, line, col);
                        }
                        o.items += 1;
                        sections = 0;
                        let end = reader.buffer_position() + bom;
                        let span = ItemSpan { index: o.items, start: start + bom, end, start_tag_end: end, line, col };
                        if empty {
                            o.first_item.get_or_insert(span);
                            on_item(span, o).map_err(ScanError::Stopped)?;
                        } else {
                            current = Some((span, 1));
                        }
                    }
                    (d, Some(o), None) if d == root_depth + 1 && in_root && o.items > 0 => {
                        let local = String::from_utf8_lossy(local.as_ref());
                        let other = if local == item { format!(" i et andet navnerum end {namespace}") } else { String::new() };
                        return fail(
                            &mut reader,
                            Rejection::Schema(format!("elementet '{local}'{other} står efter første {item}; kun {item} må følge")),
                        );
                    }
                    (_, _, Some((_, elements))) => {
                        *elements += 1;
                        if *elements > limits.xml.max_elements {
                            return fail(
                                &mut reader,
                                Rejection::TooLarge(format!("mere end {} elementer i ét {item}", limits.xml.max_elements)),
                            );
                        }
                    }
                    _ => {}
                }
                if !empty {
                    depth += 1;
                }
            }
            Event::End(_) => {
                run = (0, false);
                depth -= 1;
                if framing == Framing::Soap && depth == 1 && soap.is_some_and(|(_, part)| part == SoapPart::Body) {
                    if outline.is_none() {
                        return fail(&mut reader, Rejection::Schema("SOAP-Body skal indeholde præcis ét element".into()));
                    }
                    soap = soap.map(|(v, _)| (v, SoapPart::AfterBody));
                } else if framing == Framing::Soap && depth == 1 && soap.is_some_and(|(_, part)| part == SoapPart::Header) {
                    soap = soap.map(|(v, _)| (v, SoapPart::Envelope));
                }
                match (depth, &mut current) {
                    (d, Some((span, _))) if d == root_depth + 1 => {
                        span.end = reader.buffer_position() + bom;
                        if span.end - span.start > limits.max_item_bytes {
                            return fail(
                                &mut reader,
                                Rejection::TooLarge(format!(
                                    "{item} nr. {} fylder {} byte; højst {} er tilladt",
                                    span.index,
                                    span.end - span.start,
                                    limits.max_item_bytes
                                )),
                            );
                        }
                        let span = *span;
                        current = None;
                        let o = outline.as_mut().expect("an item is inside the delivery root");
                        o.first_item.get_or_insert(span);
                        on_item(span, o).map_err(ScanError::Stopped)?;
                    }
                    (d, _) if d == root_depth && outline.is_some() && !root_done => {
                        root_done = true;
                        let (line, col) = position(&mut reader);
                        if let Some(o) = outline.as_mut().filter(|o| o.items == 0) {
                            (o.prefix_end, o.prefix_end_line, o.prefix_end_col) = (start + bom, line, col);
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(ref t) => {
                let text = match std::str::from_utf8(t.as_ref()) {
                    Ok(text) => text,
                    Err(err) => return fail(&mut reader, Rejection::Encoding(format!("ugyldig UTF-8 ({err})"))),
                };
                let text = if !seen_bom && outline.is_none() { text.trim_start_matches('\u{feff}') } else { text };
                seen_bom = true;
                if let Err(rejection) = checked {
                    return fail(&mut reader, rejection);
                }
                let layout = is_xml_whitespace(text.as_bytes());
                if !layout {
                    if let Some(rejection) = misplaced_text(&outline, root_done, depth, root_depth, soap.is_some(), &current) {
                        return fail(&mut reader, rejection);
                    }
                }
                run = (run.0 + t.len(), run.1 || !layout);
                if run.1 && run.0 > limits.xml.max_text_len {
                    return fail(&mut reader, text_too_long(&limits.xml));
                }
            }
            Event::CData(ref t) => {
                if std::str::from_utf8(t.as_ref()).is_err() {
                    return fail(&mut reader, Rejection::Encoding("ugyldig UTF-8 i CDATA".into()));
                }
                if let Some(rejection) = misplaced_text(&outline, root_done, depth, root_depth, soap.is_some(), &current) {
                    return fail(&mut reader, rejection);
                }
                run = (run.0 + t.len(), true);
                if run.0 > limits.xml.max_text_len {
                    return fail(&mut reader, text_too_long(&limits.xml));
                }
                if let Err(rejection) = count_section(&mut sections, item) {
                    return fail(&mut reader, rejection);
                }
            }
            Event::GeneralRef(ref r) => {
                if let Err(rejection) = checked {
                    return fail(&mut reader, rejection);
                }
                // A reference to a space, a tab or a line break is layout, as the same character written out is.
                let layout = guard::resolve_reference(r).is_ok_and(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
                if !layout {
                    if let Some(rejection) = misplaced_text(&outline, root_done, depth, root_depth, soap.is_some(), &current) {
                        return fail(&mut reader, rejection);
                    }
                }
                run = (run.0 + 1, run.1 || !layout);
                if run.0 > limits.xml.max_text_len {
                    return fail(&mut reader, text_too_long(&limits.xml));
                }
            }
            Event::Decl(_) | Event::DocType(_) | Event::PI(_) => {
                if let Err(rejection) = checked {
                    return fail(&mut reader, rejection);
                }
                // The XML declaration stands first (after a byte-order mark at most), or not at all.
                if matches!(event, Event::Decl(_)) && start > 3 {
                    return fail(&mut reader, Rejection::NotWellFormed("XML-erklæringen står ikke først i dokumentet".into()));
                }
            }
            Event::Comment(_) => {
                if let Err(rejection) = checked {
                    return fail(&mut reader, rejection);
                }
                if let Err(rejection) = count_section(&mut sections, item) {
                    return fail(&mut reader, rejection);
                }
            }
            Event::Eof => break,
        }
    }
    let (line, col) = {
        let counting = reader.get_mut();
        counting.settle();
        (counting.tally.lines + 1, (counting.consumed.saturating_sub(counting.tally.line_start) + 1) as u32)
    };
    if depth > 0 {
        return Err(ScanError::Rejected(reject(Rejection::NotWellFormed("filen slutter, før alle elementer er lukket".into()), line, col)));
    }
    match framing {
        Framing::Document => {
            outline.ok_or_else(|| ScanError::Rejected(reject(Rejection::NotWellFormed("filen har intet rodelement".into()), 1, 1)))
        }
        Framing::Soap => outline.ok_or_else(|| ScanError::Rejected(reject(Rejection::Schema("SOAP-Envelope uden Body".into()), line, col))),
    }
}

/// The items' spans as one scan found them, for the pass that reads the items: a batch file is then scanned once,
/// not once to check it whole and again to read it. A fixed-size record a span in an unnamed temporary file, so
/// memory is the same for ten items as for ten million.
pub struct SpanLog {
    file: std::fs::File,
    len: usize,
}

/// Writes a `SpanLog` during a scan, in the scan's order.
pub struct SpanLogWriter {
    out: std::io::BufWriter<std::fs::File>,
    len: usize,
}

/// start, end, start_tag_end (u64), line, col (u32); the index is the record's place.
const SPAN_RECORD: usize = 32;

impl SpanLogWriter {
    /// A log in an unnamed file in `dir` (removed by the system when it is dropped, also after a crash).
    pub fn create_in(dir: &std::path::Path) -> std::io::Result<Self> {
        Ok(SpanLogWriter { out: std::io::BufWriter::with_capacity(64 * 1024, tempfile::tempfile_in(dir)?), len: 0 })
    }

    /// The next item's span: spans come in document order.
    pub fn push(&mut self, span: &ItemSpan) -> std::io::Result<()> {
        debug_assert_eq!(span.index, self.len + 1, "spans are logged in order");
        use std::io::Write;
        let mut record = [0u8; SPAN_RECORD];
        record[0..8].copy_from_slice(&span.start.to_le_bytes());
        record[8..16].copy_from_slice(&span.end.to_le_bytes());
        record[16..24].copy_from_slice(&span.start_tag_end.to_le_bytes());
        record[24..28].copy_from_slice(&span.line.to_le_bytes());
        record[28..32].copy_from_slice(&span.col.to_le_bytes());
        self.out.write_all(&record)?;
        self.len += 1;
        Ok(())
    }

    pub fn finish(self) -> std::io::Result<SpanLog> {
        let file = self.out.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        Ok(SpanLog { file, len: self.len })
    }
}

impl SpanLog {
    /// How many items the scan found.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The spans after the first `skip`, in document order.
    pub fn spans_after(&self, skip: usize) -> impl Iterator<Item = std::io::Result<ItemSpan>> + '_ {
        use std::os::unix::fs::FileExt;
        // Read a block of records at a time by offset: the file is shared, its position is not used.
        const BLOCK: usize = 2048;
        let mut block = Vec::new();
        let mut next = skip;
        std::iter::from_fn(move || {
            if next >= self.len {
                return None;
            }
            let in_block = next % BLOCK;
            if in_block == 0 || block.is_empty() {
                let first = next - in_block;
                let count = BLOCK.min(self.len - first);
                block.resize(count * SPAN_RECORD, 0);
                if let Err(e) = self.file.read_exact_at(&mut block, (first * SPAN_RECORD) as u64) {
                    next = self.len;
                    return Some(Err(e));
                }
            }
            let record = &block[in_block * SPAN_RECORD..][..SPAN_RECORD];
            let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().expect("eight bytes"));
            let u32_at = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().expect("four bytes"));
            next += 1;
            Some(Ok(ItemSpan {
                index: next,
                start: u64_at(0),
                end: u64_at(8),
                start_tag_end: u64_at(16),
                line: u32_at(24),
                col: u32_at(28),
            }))
        })
    }
}

/// Reads the byte range of a file; for the prefix and for one item at a time.
pub fn read_range(file: &std::fs::File, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0; (end - start) as usize];
    file.read_exact_at(&mut bytes, start)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> StreamLimits {
        StreamLimits { xml: XmlLimits::default(), max_prefix_bytes: 4096, max_item_bytes: 4096 }
    }

    fn spans(text: &str) -> Result<(Outline, Vec<ItemSpan>), Finding> {
        let mut spans = Vec::new();
        let outline = scan::<_, ()>(text.as_bytes(), Framing::Document, "urn:x", "i", &limits(), |s, _| {
            spans.push(s);
            Ok(())
        })
        .map_err(|e| match e {
            ScanError::Rejected(f) => f,
            other => panic!("{other:?}"),
        })?;
        Ok((outline, spans))
    }

    /// A seeded xorshift generator: `next(n)` is a number below `n`, the same sequence every run.
    fn random_below(mut seed: u64) -> impl FnMut(usize) -> usize {
        move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        }
    }

    #[test]
    fn counting_a_buffer_at_a_time_finds_what_counting_byte_by_byte_finds() {
        fn counting(inner: std::io::BufReader<&[u8]>) -> Counting<std::io::BufReader<&[u8]>> {
            Counting::new(inner, Rc::new(Cell::new(0)), u64::MAX)
        }
        // Newlines, text, two-byte and three-byte characters, and the bytes of forbidden ones (a control
        // character, U+FFFE and U+FFFF), also split across buffers.
        let alphabet: &[&[u8]] =
            &[b"\n", b"abc ", "æø".as_bytes(), "€".as_bytes(), b"\x01", b"\xEF\xBF\xBE", b"\xEF\xBF\xBF", b"\t", b"\xEF", b"\xBF"];
        let mut next = random_below(0x2545_F491_4F6C_DD1D);
        for round in 0..400 {
            let mut text = Vec::new();
            // Mostly clean text, now and then a forbidden character somewhere in it.
            let pieces = 1 + next(300);
            for _ in 0..pieces {
                let piece = if round % 3 == 0 { next(alphabet.len()) } else { next(4) };
                text.extend_from_slice(alphabet[piece]);
            }
            let capacity = 1 + next(100);
            let mut fast = counting(std::io::BufReader::with_capacity(capacity, &text[..]));
            let mut reference = Tally::default();
            let mut at = 0;
            loop {
                let available = fast.fill_buf().unwrap().len();
                if available == 0 {
                    break;
                }
                let n = 1 + next(available);
                fast.consume(n);
                fast.settle();
                reference.count_bytewise(at as u64, &text[at..at + n]);
                at += n;
                assert_eq!(fast.consumed, at as u64);
                assert_eq!(fast.tally, reference, "round {round}: {:?}", String::from_utf8_lossy(&text));
            }
            assert_eq!(at, text.len());
        }
    }

    #[test]
    fn the_span_log_gives_back_every_span_after_any_point() {
        let span = |index: usize| ItemSpan {
            index,
            start: index as u64 * 1_000_000_007,
            end: index as u64 * 1_000_000_007 + 99,
            start_tag_end: index as u64 + 5,
            line: index as u32 * 3,
            col: u32::MAX - index as u32,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpanLogWriter::create_in(dir.path()).unwrap();
        // More than two of the reader's blocks, the last one partly filled.
        let count = 5_000;
        for index in 1..=count {
            writer.push(&span(index)).unwrap();
        }
        let log = writer.finish().unwrap();
        assert_eq!(log.len(), count);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the log has no name in the folder");
        for skip in [0, 1, 2047, 2048, 2049, 4096, count - 1, count] {
            let read: Vec<ItemSpan> = log.spans_after(skip).map(Result::unwrap).collect();
            let expected: Vec<ItemSpan> = (skip + 1..=count).map(span).collect();
            assert_eq!(read, expected, "after {skip}");
        }
    }

    #[test]
    fn finds_items_with_their_bytes_and_positions() {
        let text = "<?xml version=\"1.0\"?>\n<r xmlns=\"urn:x\">\n  <h>1</h>\n  <i>a</i>\n  <i\n    k=\"v\"><j/></i><i/>\n</r>\n";
        let (outline, spans) = spans(text).unwrap();
        assert_eq!((outline.root_qname.as_str(), outline.items), ("r", 3));
        assert_eq!(outline.first_item, Some(spans[0]));
        assert_eq!(&text[..outline.prefix_end as usize], "<?xml version=\"1.0\"?>\n<r xmlns=\"urn:x\">\n  <h>1</h>\n  ");
        assert_eq!((outline.prefix_end_line, outline.prefix_end_col), (4, 3));
        let texts: Vec<&str> = spans.iter().map(|s| &text[s.start as usize..s.end as usize]).collect();
        assert_eq!(texts, vec!["<i>a</i>", "<i\n    k=\"v\"><j/></i>", "<i/>"]);
        let positions: Vec<(u32, u32)> = spans.iter().map(|s| (s.line, s.col)).collect();
        assert_eq!(positions, vec![(4, 3), (5, 1), (6, 19)]);
    }

    #[test]
    fn a_byte_order_mark_moves_the_spans_but_not_the_positions() {
        let plain = "<?xml version=\"1.0\"?>\n<r xmlns=\"urn:x\"><h>1</h>\n<i>a</i><i>b</i>\n</r>\n";
        let marked = format!("\u{feff}{plain}");
        let (outline, spans_marked) = spans(&marked).unwrap();
        let (plain_outline, spans_plain) = spans(plain).unwrap();
        // Byte offsets are offsets in what was sent: the items' bytes are read by them.
        let texts: Vec<&str> = spans_marked.iter().map(|s| &marked[s.start as usize..s.end as usize]).collect();
        assert_eq!(texts, ["<i>a</i>", "<i>b</i>"]);
        assert_eq!(&marked[..outline.prefix_end as usize], "\u{feff}<?xml version=\"1.0\"?>\n<r xmlns=\"urn:x\"><h>1</h>\n");
        // Lines and columns are the document's, the mark not counted.
        let positions = |spans: &[ItemSpan]| spans.iter().map(|s| (s.line, s.col)).collect::<Vec<_>>();
        assert_eq!(positions(&spans_marked), positions(&spans_plain));
        assert_eq!((outline.prefix_end_line, outline.prefix_end_col), (plain_outline.prefix_end_line, plain_outline.prefix_end_col));
    }

    #[test]
    fn refuses_what_the_straks_reader_refuses() {
        let code = |text: &str| spans(text).unwrap_err().code().as_str();
        assert_eq!(code("<!DOCTYPE r [<!ENTITY e \"x\">]><r xmlns=\"urn:x\"/>"), "FORMAT_XML");
        assert_eq!(code("<r xmlns=\"urn:x\"><i>&e;</i></r>"), "FORMAT_XML");
        assert_eq!(code("<r xmlns=\"urn:x\"><i>a</i>"), "FORMAT_XML");
        assert_eq!(code("<r xmlns=\"urn:x\"><i>a</i><h/></r>"), "FORMAT_XSD");
        assert_eq!(code(&format!("<r xmlns=\"urn:x\"><i>{}</i></r>", "x".repeat(10_000))), "FORMAT_STOERRELSE");
        let invalid = b"<r xmlns=\"urn:x\"><i>\xff</i></r>";
        let err = scan::<_, ()>(&invalid[..], Framing::Document, "urn:x", "i", &limits(), |_, _| Ok(())).unwrap_err();
        assert!(matches!(err, ScanError::Rejected(f) if f.code().as_str() == "FORMAT_XML"));
    }

    #[test]
    fn characters_xml_does_not_allow_are_named_with_their_position() {
        for (text, shown, col) in [
            ("<r xmlns=\"urn:x\">a\u{1}</r>", "U+0001", 19),
            ("<r xmlns=\"urn:x\">\u{fffe}</r>", "U+FFFE", 18),
            ("<r xmlns=\"urn:x\"><!--\u{ffff}--></r>", "U+FFFF", 22),
        ] {
            let finding = spans(text).unwrap_err();
            assert_eq!(finding.code().as_str(), "FORMAT_XML");
            assert!(finding.rejection.to_string().contains(shown), "{text:?}: {}", finding.rejection);
            let loc = finding.loc.unwrap();
            assert_eq!((loc.line, loc.col), (Some(1), Some(col)), "{text:?}");
        }
    }

    #[test]
    fn positions_do_not_depend_on_how_the_source_is_buffered() {
        // Lines are counted when a position is asked for or a buffer is let go, and buffer by buffer as consumed
        // only where one may hold a forbidden character: the items' and the error's positions must be the same
        // whatever the buffer's size, and equal to reading the whole text at once.
        let mut next = random_below(0x9E37_79B9_7F4A_7C15);
        let texts = ["a", "æø", "€x", "\n  ", "þ", "ÿ\n", "&amp;", "<!--\n-->"];
        let faults = ["\u{1}", "\u{fffe}", "<j/>", "</i>", "\u{ffff}", "<i>"];
        for round in 0..300 {
            let mut doc = String::from("<?xml version=\"1.0\"?>\n<r xmlns=\"urn:x\">\n<h>1</h>");
            let items = 1 + next(12);
            let fault_at = if round % 2 == 0 { Some(next(items)) } else { None };
            for i in 0..items {
                doc.push_str(if next(3) == 0 { "\n" } else { "" });
                doc.push_str(if next(4) == 0 { "<i\n>" } else { "<i>" });
                for _ in 0..next(6) {
                    doc.push_str(&format!("<f>{}</f>", texts[next(texts.len())]));
                }
                if fault_at == Some(i) {
                    doc.push_str(faults[next(faults.len())]);
                }
                doc.push_str("</i>");
            }
            doc.push_str("\n</r>\n");
            let whole = scan_positions(doc.as_bytes(), doc.len().max(1));
            for capacity in [1, 2, 3, 7, 64, 1 + next(200)] {
                assert_eq!(scan_positions(doc.as_bytes(), capacity), whole, "round {round}, buffer {capacity}: {doc:?}");
            }
            if fault_at.is_none() {
                assert!(matches!(&whole, Ok(spans) if spans.len() == items + 1), "{doc:?}: {whole:?}");
            }
        }
    }

    /// Each item's offset, line and column, then the prefix's end; or the rejection and where it is.
    type Positions = Result<Vec<(u64, u32, u32)>, (String, Loc)>;

    /// The items' positions and the prefix's end, or the rejection with its position, reading `doc` through a
    /// buffer of `capacity` bytes.
    fn scan_positions(doc: &[u8], capacity: usize) -> Positions {
        let mut found = Vec::new();
        let source = std::io::BufReader::with_capacity(capacity, doc);
        match scan::<_, ()>(source, Framing::Document, "urn:x", "i", &limits(), |s, _| {
            found.push((s.start, s.line, s.col));
            Ok(())
        }) {
            Ok(outline) => {
                found.push((outline.prefix_end, outline.prefix_end_line, outline.prefix_end_col));
                Ok(found)
            }
            Err(ScanError::Rejected(f)) => Err((f.rejection.to_string(), f.loc.unwrap_or_default())),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_huge_text_node_is_refused_without_reading_it_whole() {
        // 64 MB of text in one node, served by a reader that produces it lazily.
        let head = std::io::Cursor::new(b"<r xmlns=\"urn:x\"><i>".to_vec());
        let body = std::io::repeat(b'a').take(64 << 20);
        let source = std::io::BufReader::new(head.chain(body));
        let err = scan::<_, ()>(source, Framing::Document, "urn:x", "i", &limits(), |_, _| Ok(())).unwrap_err();
        assert!(matches!(err, ScanError::Rejected(f) if f.code().as_str() == "FORMAT_STOERRELSE"));
    }
}

#[cfg(test)]
mod soap_tests {
    use super::*;

    fn outline(text: &str) -> Result<Outline, String> {
        let limits = StreamLimits { xml: XmlLimits::default(), max_prefix_bytes: 4096, max_item_bytes: 4096 };
        scan::<_, ()>(text.as_bytes(), Framing::Soap, "urn:x", "i", &limits, |_, _| Ok(())).map_err(|e| match e {
            ScanError::Rejected(f) => f.rejection.to_string(),
            other => panic!("{other:?}"),
        })
    }

    const ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

    #[test]
    fn the_delivery_is_the_one_element_of_the_soap_body() {
        let ok = outline(&format!(
            "<s:Envelope xmlns:s=\"{ENV}\"><s:Header><h/></s:Header><s:Body><r xmlns=\"urn:x\"><a/><i/><i/></r></s:Body></s:Envelope>"
        ))
        .unwrap();
        assert_eq!(
            (ok.root_local.as_str(), ok.items, ok.closing.as_str(), ok.soap),
            ("r", 2, "</r></s:Body></s:Envelope>", Some(SoapVersion::V11))
        );
        for bad in [
            format!("<s:Envelope xmlns:s=\"{ENV}\"><s:Body><r xmlns=\"urn:x\"/></s:Body><s:Body><r xmlns=\"urn:x\"/></s:Body></s:Envelope>"),
            format!("<s:Envelope xmlns:s=\"{ENV}\"><d:Body xmlns:d=\"urn:d\"><r xmlns=\"urn:x\"/></d:Body><s:Body><r xmlns=\"urn:x\"/></s:Body></s:Envelope>"),
            format!("<s:Envelope xmlns:s=\"{ENV}\"><s:Body><r xmlns=\"urn:x\"/><r xmlns=\"urn:x\"/></s:Body></s:Envelope>"),
            format!("<s:Envelope xmlns:s=\"{ENV}\"><s:Body/></s:Envelope>"),
            format!("<s:Envelope xmlns:s=\"{ENV}\"><s:Body>text</s:Body></s:Envelope>"),
            "<Envelope><Body><r xmlns=\"urn:x\"/></Body></Envelope>".to_string(),
        ] {
            assert!(outline(&bad).is_err(), "{bad}");
        }
    }
}
