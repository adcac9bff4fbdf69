//! Reads a received document into a small element tree, refusing what a hostile or broken sender could use
//! against us before anything else (libxml2 included) sees the bytes: other encodings, DTDs and entities,
//! processing instructions, XInclude, and documents beyond the configured limits.

use std::collections::HashMap;
use std::sync::Arc;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use sha2::{Digest, Sha256};

use super::guard;
use crate::domain::rejection::{Finding, Loc, Rejection};

thread_local! {
    // The bytes of one element's content on their way into a digest (see `Element::feed`), kept for the next.
    static CONTENT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most room `CONTENT` keeps for the next element: a larger item's is given back.
const CONTENT_KEPT: usize = 1 << 20;

/// Limits on what a caller controls.
#[derive(Debug, Clone)]
pub struct XmlLimits {
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_attributes: usize,
    pub max_name_len: usize,
    pub max_text_len: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        XmlLimits { max_depth: 32, max_elements: 2_000_000, max_attributes: 16, max_name_len: 200, max_text_len: 10_000 }
    }
}

/// One element of a received document. Names and namespaces are shared between the elements that carry the
/// same one (a document of 100,000 elements holds each distinct name once), so memory grows with the elements
/// and their texts, not with the length of their names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub ns: Option<Arc<str>>,
    pub name: Arc<str>,
    pub line: u32,
    pub col: u32,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| &*c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| &*c.name == name)
    }

    pub fn ns(&self) -> Option<&str> {
        self.ns.as_deref()
    }

    pub fn text(&self) -> &str {
        self.text.trim()
    }

    pub fn loc(&self, path: String) -> Loc {
        Loc { path, line: Some(self.line), col: Some(self.col) }
    }

    /// Visits this element and everything under it in document order with its path, without building a path
    /// per element beyond the one being visited. Elements whose name is in `indexed` get their position among
    /// equally named siblings, as in `Postering[5]`. The visitor returns false to stop.
    pub fn preorder<'a>(&'a self, parent_path: &str, indexed: &[&str], visit: &mut dyn FnMut(&str, &'a Element) -> bool) {
        let mut path = format!("{parent_path}/{}", self.name);
        self.preorder_at(&mut path, indexed, visit);
    }

    fn preorder_at<'a>(&'a self, path: &mut String, indexed: &[&str], visit: &mut dyn FnMut(&str, &'a Element) -> bool) -> bool {
        if !visit(path, self) {
            return false;
        }
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for child in &self.children {
            let len = path.len();
            path.push('/');
            path.push_str(&child.name);
            if indexed.contains(&&*child.name) {
                let n = match counts.iter_mut().find(|(name, _)| *name == &*child.name) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        counts.push((&child.name, 1));
                        1
                    }
                };
                path.push_str(&format!("[{n}]"));
            }
            let go_on = child.preorder_at(path, indexed, visit);
            path.truncate(len);
            if !go_on {
                return false;
            }
        }
        true
    }

    /// A stable digest of names and trimmed texts, independent of prefixes, whitespace and attribute order:
    /// "the same content" for idempotency.
    pub fn content_hash(&self) -> String {
        let mut hasher = Sha256::new();
        self.feed(&mut hasher);
        hex::encode(hasher.finalize())
    }

    /// Feeds this element's content into a digest. A delivery read item by item feeds its root's start
    /// (`feed_open`), each child in turn and then `feed_close`: the same digest as `content_hash` of the whole.
    ///
    /// The bytes are gathered first and fed at once: the digest is the same as when each piece is fed alone, and
    /// an item has a hundred elements of six pieces each, a call into the digest for every one.
    pub fn feed(&self, h: &mut Sha256) {
        CONTENT.with_borrow_mut(|bytes| {
            bytes.clear();
            self.content_into(bytes);
            h.update(&bytes[..]);
            if bytes.capacity() > CONTENT_KEPT {
                *bytes = Vec::new();
            }
        })
    }

    /// The bytes `feed` feeds.
    fn content_into(&self, bytes: &mut Vec<u8>) {
        bytes.extend_from_slice(self.ns.as_deref().unwrap_or("").as_bytes());
        bytes.push(1);
        bytes.extend_from_slice(self.name.as_bytes());
        bytes.push(2);
        bytes.extend_from_slice(self.text().as_bytes());
        bytes.push(3);
        for c in &self.children {
            c.content_into(bytes);
        }
        bytes.push(4);
    }

    pub fn feed_open(&self, h: &mut Sha256) {
        h.update(self.ns.as_deref().unwrap_or("").as_bytes());
        h.update([1]);
        h.update(self.name.as_bytes());
        h.update([2]);
        h.update(self.text().as_bytes());
        h.update([3]);
    }

    pub fn feed_close(h: &mut Sha256) {
        h.update([4]);
    }
}

/// Line and column (1-based, columns in characters) of byte offsets that only move forward: each byte of the
/// document is looked at once, so positions cost time in proportion to the document whatever its layout.
pub(crate) struct Cursor<'a> {
    text: &'a [u8],
    offset: usize,
    line: u32,
    col: u32,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Self {
        Cursor { text: text.as_bytes(), offset: 0, line: 1, col: 1 }
    }

    /// The position of `offset`; an offset behind the last one asked for starts again from the beginning
    /// (only error positions can do that, once per document).
    pub fn at(&mut self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        if offset < self.offset {
            (self.offset, self.line, self.col) = (0, 1, 1);
        }
        for &b in &self.text[self.offset..offset] {
            if b == b'\n' {
                self.line += 1;
                self.col = 1;
            } else if b & 0xC0 != 0x80 {
                self.col += 1;
            }
        }
        self.offset = offset;
        (self.line, self.col)
    }
}

fn rejected(rejection: Rejection, line: u32, col: u32) -> Finding {
    Finding { rejection, loc: Some(Loc { path: String::new(), line: Some(line), col: Some(col) }), value: None }
}

/// The bytes as UTF-8 text, or why not. Only UTF-8 is accepted, with or without its byte-order mark.
pub fn decode_utf8(bytes: &[u8]) -> Result<&str, Finding> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.starts_with(b"\xFE\xFF") || bytes.starts_with(b"\xFF\xFE") {
        return Err(Finding::nowhere(Rejection::Encoding("byte-order mark for UTF-16".into())));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let good = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
        let (line, col) = Cursor::new(good).at(good.len());
        rejected(Rejection::Encoding(format!("ugyldig UTF-8-byte ved byte {}", e.valid_up_to())), line, col)
    })
}

/// Names and namespaces met so far, each held once. Looked up by their bytes with a fast hash (seeded per
/// process): two lookups an element, which with SipHash and a UTF-8 conversion each were about 5 % of a batch
/// file's CPU.
#[derive(Default)]
struct Names(HashMap<Box<[u8]>, Arc<str>, foldhash::fast::RandomState>);

/// More names than any schema here has: a thread's names are forgotten beyond it, so that documents full of
/// made-up names cannot make it grow.
pub(crate) const NAMES_KEPT: usize = 1_024;

thread_local! {
    // Kept from one document to the next on a thread: a batch file's items all use the same few dozen names,
    // which are then allocated once a thread instead of once an item.
    static NAMES: std::cell::RefCell<Names> = std::cell::RefCell::new(Names::default());
}

impl Names {
    fn get(&mut self, name: &[u8]) -> Arc<str> {
        if let Some(known) = self.0.get(name) {
            return known.clone();
        }
        let new: Arc<str> = Arc::from(&*String::from_utf8_lossy(name));
        self.0.insert(name.into(), new.clone());
        new
    }
}

/// Reads the whole document into a tree.
pub fn read_document(text: &str, limits: &XmlLimits) -> Result<Element, Finding> {
    read_with(text, limits, Guard::Check).map(|read| read.root)
}

/// A document read into a tree, and whether the tree holds all that libxml2's schema check of the document
/// looks at (see `schema::validate_tree`). A tree leaves out attributes, comments, CDATA markup (its text is
/// kept), line ends as sent (libxml2 reads "\r\n" as "\n"), and where an element's text stands among its
/// children; a document with any of these inside it, or a name that is not ASCII, is not `whole`.
#[derive(Debug)]
pub struct Scanned {
    pub root: Element,
    pub whole: bool,
}

/// Reads a document every byte of which has passed the guard already, in the same limits: an item in its frame,
/// after its delivery's scan (a batch file's or a straks body's). The same tree as `read_document`, without
/// checking again what the scan checked (a sixth of reading it).
pub fn read_scanned(text: &str, limits: &XmlLimits) -> Result<Scanned, Finding> {
    read_with(text, limits, Guard::Passed)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Guard {
    Check,
    Passed,
}

fn read_with(text: &str, limits: &XmlLimits, guarding: Guard) -> Result<Scanned, Finding> {
    NAMES.with_borrow_mut(|names| {
        if names.0.len() > NAMES_KEPT {
            names.0.clear();
        }
        read_into_tree(text, limits, guarding, names)
    })
}

fn read_into_tree(text: &str, limits: &XmlLimits, guarding: Guard, names: &mut Names) -> Result<Scanned, Finding> {
    let mut cursor = Cursor::new(text);
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    // The namespace of the element before: nearly always this one's too, found without a lookup.
    let mut last_ns: Option<Arc<str>> = None;
    // A carriage return anywhere (libxml2 reads "\r\n" as "\n"; the tree keeps what was sent): one look at the
    // whole document costs less than one at each text.
    let mut whole = memchr::memchr(b'\r', text.as_bytes()).is_none();

    loop {
        let start = reader.buffer_position() as usize;
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let (line, col) = cursor.at(reader.error_position() as usize);
                return Err(rejected(Rejection::NotWellFormed(e.to_string()), line, col));
            }
        };
        let (line, col) = cursor.at(start);
        let at_event = |rejection| rejected(rejection, line, col);
        let fail = |rejection| Err(at_event(rejection));
        if guarding == Guard::Check {
            guard::check_event(&event).map_err(at_event)?;
        }
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                // Only a start tag's namespace is resolved: an end tag's is not used.
                let (ns, local) = reader.resolve_element(e.name());
                elements += 1;
                if elements > limits.max_elements {
                    return fail(Rejection::TooLarge(format!("mere end {} elementer", limits.max_elements)));
                }
                if guarding == Guard::Check {
                    guard::check_start(e, &ns, stack.len(), limits).map_err(at_event)?;
                }
                if whole && holds_more(e) {
                    whole = false;
                }
                let ns = match ns {
                    ResolveResult::Bound(ns) => Some(match &last_ns {
                        Some(last) if last.as_bytes() == ns.as_ref() => last.clone(),
                        _ => last_ns.insert(names.get(ns.as_ref())).clone(),
                    }),
                    _ => None,
                };
                let element = Element { ns, name: names.get(local.as_ref()), line, col, text: String::new(), children: Vec::new() };
                if matches!(event, Event::Start(_)) {
                    stack.push(element);
                } else {
                    attach(&mut stack, &mut root, element);
                }
            }
            Event::End(_) => {
                let element = stack.pop().expect("the reader checks that end tags match");
                // Text beside children: the tree does not keep where it stood.
                if !element.children.is_empty() && !element.text.is_empty() {
                    whole = false;
                }
                attach(&mut stack, &mut root, element);
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| rejected(Rejection::Encoding(e.to_string()), line, col))?;
                push_text(&mut stack, &text, limits, line, col)?;
            }
            Event::CData(t) => {
                whole = false;
                let text = t.decode().map_err(|e| rejected(Rejection::Encoding(e.to_string()), line, col))?;
                push_text(&mut stack, &text, limits, line, col)?;
            }
            Event::GeneralRef(r) => {
                let c = guard::resolve_reference(&r).map_err(at_event)?;
                push_text(&mut stack, c.encode_utf8(&mut [0; 4]), limits, line, col)?;
            }
            // Refused by the guard above.
            Event::Decl(_) | Event::DocType(_) | Event::PI(_) => {}
            Event::Comment(_) => whole &= stack.is_empty(),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        let (line, col) = cursor.at(text.len());
        return Err(rejected(Rejection::NotWellFormed("dokumentet slutter, før alle elementer er lukket".into()), line, col));
    }
    let root = root.ok_or_else(|| rejected(Rejection::NotWellFormed("dokumentet har intet rodelement".into()), 1, 1))?;
    Ok(Scanned { root, whole })
}

/// Whether a start tag holds what the tree leaves out or libxml2 may read otherwise: a name beyond ASCII (the
/// schemas' names are ASCII; the guard leaves the rest of XML's name rules to libxml2), or attributes other than
/// plain namespace declarations (see `plain_declarations`).
fn holds_more(e: &quick_xml::events::BytesStart) -> bool {
    if !e.name().as_ref().is_ascii() {
        return true;
    }
    let raw = e.attributes_raw();
    !super::stream::is_xml_whitespace(raw) && !plain_declarations(raw)
}

/// Whether a start tag's attributes (its bytes after the name) are namespace declarations only, each written the
/// one way both readers read alike: whitespace before it, `xmlns` or `xmlns:` and an ASCII name (not `xml` or
/// `xmlns`), `=`, and a quoted value that is not empty and holds no reference, each name once. quick-xml reads
/// more than that (attributes run together, `a="1"b="2"`, which libxml2 refuses); whatever else there is goes to
/// libxml2 as text.
fn plain_declarations(raw: &[u8]) -> bool {
    let skip_space = |bytes: &[u8]| -> usize { bytes.iter().take_while(|&&b| super::stream::is_xml_space(b)).count() };
    let mut names: Vec<&[u8]> = Vec::new();
    let mut rest = raw;
    loop {
        let space = skip_space(rest);
        if space == rest.len() {
            return true;
        }
        if space == 0 {
            return false;
        }
        rest = &rest[space..];
        let name_len = rest.iter().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.')).count();
        let name = &rest[..name_len];
        let prefix = name.strip_prefix(b"xmlns:");
        if !(name == b"xmlns" || prefix.is_some_and(|p| !p.is_empty() && p != b"xml" && p != b"xmlns" && !p.contains(&b':')))
            || names.contains(&name)
        {
            return false;
        }
        names.push(name);
        rest = &rest[name_len..];
        rest = &rest[skip_space(rest)..];
        let Some(value) = rest.strip_prefix(b"=") else { return false };
        rest = &value[skip_space(value)..];
        let Some((&quote, value)) = rest.split_first() else { return false };
        if quote != b'"' && quote != b'\'' {
            return false;
        }
        let Some(close) = value.iter().position(|&b| b == quote) else { return false };
        if close == 0 || value[..close].iter().any(|&b| b == b'<' || b == b'&') {
            return false;
        }
        rest = &value[close + 1..];
    }
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => {
            // Whitespace before a child is layout, not text: an indented element holds no text of its own.
            if parent.children.is_empty() && super::stream::is_xml_whitespace(parent.text.as_bytes()) {
                parent.text.clear();
            }
            parent.children.push(element);
        }
        // The reader refuses a second root element itself; keep the first.
        None => {
            root.get_or_insert(element);
        }
    }
}

/// Text inside the innermost open element. Whitespace-only text after a child is the layout between children
/// and is not kept, so the text limit applies to real text however a document is indented.
fn push_text(stack: &mut [Element], text: &str, limits: &XmlLimits, line: u32, col: u32) -> Result<(), Finding> {
    if let Some(current) = stack.last_mut() {
        let layout = super::stream::is_xml_whitespace(text.as_bytes());
        if !current.children.is_empty() && layout {
            return Ok(());
        }
        // Whitespace before a first child is layout too (dropped when the child comes): only real text counts.
        let only_layout = layout && super::stream::is_xml_whitespace(current.text.as_bytes());
        if !only_layout && current.text.len() + text.len() > limits.max_text_len {
            return Err(rejected(Rejection::TooLarge(format!("en tekst er længere end {} tegn", limits.max_text_len)), line, col));
        }
        current.text.push_str(text);
    } else if !text.trim().is_empty() {
        return Err(rejected(Rejection::NotWellFormed("tekst uden for rodelementet".into()), line, col));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Element, Finding> {
        read_document(text, &XmlLimits::default())
    }

    #[test]
    fn positions_and_paths() {
        let root = read("<?xml version=\"1.0\"?>\n<a xmlns=\"urn:x\">\n  <b>1</b>\n  <b>t&amp;&#65;</b>\n</a>").unwrap();
        assert_eq!((root.line, root.col, root.ns()), (2, 1, Some("urn:x")));
        let mut all = Vec::new();
        root.preorder("", &["b"], &mut |path, e| {
            all.push((path.to_string(), e));
            true
        });
        let paths: Vec<_> = all.iter().map(|(p, e)| (p.as_str(), e.line, e.col)).collect();
        assert_eq!(paths, vec![("/a", 2, 1), ("/a/b[1]", 3, 3), ("/a/b[2]", 4, 3)]);
        assert_eq!(all[2].1.text(), "t&A");
    }

    #[test]
    fn hostile_constructs_are_refused() {
        let dtd = read("<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>").unwrap_err();
        assert_eq!(dtd.code().as_str(), "FORMAT_XML");
        assert!(dtd.rejection.to_string().contains("DTD"));
        let entity = read("<a>&x;</a>").unwrap_err();
        assert!(entity.rejection.to_string().contains("&x;"));
        let latin = read("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>").unwrap_err();
        assert!(latin.rejection.to_string().contains("ISO-8859-1"));
        assert!(decode_utf8(b"<a>\xff</a>").is_err());
        assert!(decode_utf8(b"\xFF\xFE<\0a\0").is_err());
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert_eq!(read(&deep).unwrap_err().code().as_str(), "FORMAT_STOERRELSE");
        let xi = read("<a xmlns:xi=\"http://www.w3.org/2001/XInclude\"><xi:include href=\"/etc/passwd\"/></a>");
        assert!(xi.unwrap_err().rejection.to_string().contains("XInclude"));
        let open = read("<a><b></a>").unwrap_err();
        assert_eq!(open.code().as_str(), "FORMAT_XML");
    }

    #[test]
    fn a_scanned_document_reads_into_the_same_tree() {
        let text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<p:a xmlns:p=\"urn:x\" xmlns=\"urn:y\">\n  <b k=\"v\">t&amp;&#65;<![CDATA[<c>]]></b>\n  <!-- note -->\n  <p:c>Æ€<d/></p:c><e> </e>\n</p:a>";
        let checked = read(text).unwrap();
        assert_eq!(read_scanned(text, &XmlLimits::default()).unwrap().root, checked);
        assert_eq!((checked.children[1].ns(), checked.children[1].children[0].ns()), (Some("urn:x"), Some("urn:y")));
        // Only the guard is left out: what is not well-formed, or a text over the limit, is still refused.
        assert!(read_scanned("<a><b></a>", &XmlLimits::default()).is_err());
        let limits = XmlLimits { max_text_len: 3, ..XmlLimits::default() };
        assert_eq!(read_scanned("<a>abcd</a>", &limits).unwrap_err().code().as_str(), "FORMAT_STOERRELSE");
    }

    #[test]
    fn a_tree_is_whole_only_without_what_it_leaves_out() {
        let whole = |text: &str| read_scanned(text, &XmlLimits::default()).unwrap().whole;
        assert!(whole("<?xml version=\"1.0\"?>\n<!-- before -->\n<p:a xmlns:p=\"urn:x\" xmlns=\"urn:y\">\n  <b>1 &amp; 2&#13;</b>\n  <c> <d/> </c><e/>\n</p:a>\n<!-- after -->\n"));
        assert!(whole("<a><b\n  xmlns:p = 'urn:p'\txmlns=\"urn:q\" /><c xmlns:q=\"urn:q\"></c></a>"));
        let partial = [
            "<a k=\"v\"><b/></a>",
            "<a><b k=\"v\"/></a>",
            "<a xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><b i:nil=\"true\"/></a>",
            "<a><b><![CDATA[1]]></b></a>",
            "<a><!-- c --><b/></a>",
            "<a><b>1\r\n2</b></a>",
            "<a>x<b/></a>",
            "<a><b/>x</a>",
            "<a xmlns:p=\"\"><b/></a>",
            "<a><b\u{f8}/></a>",
            "<a><b xmlns:p=\"urn:p\"xmlns:q=\"urn:q\"/></a>",
            "<a><b xmlns=\"urn:p\"xmlns:q='urn:q'/></a>",
            "<a><b xmlns:p='urn:p' xmlns:p='urn:q'/></a>",
            "<a><b xmlns:p=\"urn:a&amp;b\"/></a>",
            "<a><b xmlns:xml=\"http://www.w3.org/XML/1998/namespace\"/></a>",
        ];
        for text in partial {
            assert!(!whole(text), "{text}");
        }
    }

    #[test]
    fn content_is_hashed_as_when_fed_piece_by_piece() {
        fn piecewise(e: &Element, h: &mut Sha256) {
            e.feed_open(h);
            for c in &e.children {
                piecewise(c, h);
            }
            Element::feed_close(h);
        }
        let root = read("<a xmlns=\"urn:x\"><b> 1 </b><c><d>æ</d><e/></c><p:f xmlns:p=\"urn:y\">t</p:f></a>").unwrap();
        let mut h = Sha256::new();
        piecewise(&root, &mut h);
        assert_eq!(root.content_hash(), hex::encode(h.finalize()));
    }

    #[test]
    fn content_hash_ignores_layout_and_prefixes() {
        let a = read("<p:a xmlns:p=\"urn:x\"><p:b> 1 </p:b></p:a>").unwrap();
        let b = read("<a xmlns=\"urn:x\">\n  <b>1</b>\n</a>").unwrap();
        let c = read("<a xmlns=\"urn:x\"><b>2</b></a>").unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
    }
}
