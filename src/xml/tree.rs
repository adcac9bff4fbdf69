//! Reads a received document into a small element tree, refusing what a hostile or broken sender could use
//! against us before anything else (libxml2 included) sees the bytes: other encodings, DTDs and entities,
//! processing instructions, XInclude, and documents beyond the configured limits.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::guard;
use crate::domain::rejection::{Finding, Loc, Rejection};

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub ns: Option<String>,
    pub name: String,
    pub line: u32,
    pub col: u32,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn text(&self) -> &str {
        self.text.trim()
    }

    pub fn loc(&self, path: String) -> Loc {
        Loc { path, line: Some(self.line), col: Some(self.col) }
    }

    /// Every element under (and including) this one, with its path, in document order. Elements whose name is
    /// in `indexed` get their position among equally named siblings, as in `Postering[5]`.
    pub fn walk<'a>(&'a self, parent_path: &str, indexed: &[&str], out: &mut Vec<(String, &'a Element)>) {
        self.walk_at(format!("{parent_path}/{}", self.name), indexed, out);
    }

    fn walk_at<'a>(&'a self, path: String, indexed: &[&str], out: &mut Vec<(String, &'a Element)>) {
        out.push((path.clone(), self));
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for child in &self.children {
            let segment = if indexed.contains(&child.name.as_str()) {
                let n = match counts.iter_mut().find(|(name, _)| *name == child.name) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        counts.push((&child.name, 1));
                        1
                    }
                };
                format!("{}[{n}]", child.name)
            } else {
                child.name.clone()
            };
            child.walk_at(format!("{path}/{segment}"), indexed, out);
        }
    }

    /// A stable digest of names and trimmed texts, independent of prefixes, whitespace and attribute order:
    /// "the same content" for idempotency.
    pub fn content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        fn feed(e: &Element, h: &mut Sha256) {
            h.update(e.ns.as_deref().unwrap_or("").as_bytes());
            h.update([1]);
            h.update(e.name.as_bytes());
            h.update([2]);
            h.update(e.text().as_bytes());
            h.update([3]);
            for c in &e.children {
                feed(c, h);
            }
            h.update([4]);
        }
        let mut hasher = Sha256::new();
        feed(self, &mut hasher);
        hex::encode(hasher.finalize())
    }
}

/// Line and column (1-based, in characters) of byte offsets in one document.
struct Positions<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Positions<'a> {
    fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Positions { text, line_starts }
    }

    fn at(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let col = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count()) + 1;
        (line as u32, col as u32)
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
        let (line, col) = Positions::new(good).at(good.len());
        rejected(Rejection::Encoding(format!("ugyldig UTF-8-byte ved byte {}", e.valid_up_to())), line, col)
    })
}

/// Reads the whole document into a tree.
pub fn read_document(text: &str, limits: &XmlLimits) -> Result<Element, Finding> {
    let positions = Positions::new(text);
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;

    loop {
        let start = reader.buffer_position() as usize;
        let at = |offset: usize| positions.at(offset);
        let (ns, event) = match reader.read_resolved_event() {
            Ok(ok) => ok,
            Err(e) => {
                let (line, col) = at(reader.error_position() as usize);
                return Err(rejected(Rejection::NotWellFormed(e.to_string()), line, col));
            }
        };
        let (line, col) = at(start);
        let at_event = |rejection| rejected(rejection, line, col);
        let fail = |rejection| Err(at_event(rejection));
        guard::check_event(&event).map_err(at_event)?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                elements += 1;
                if elements > limits.max_elements {
                    return fail(Rejection::TooLarge(format!("mere end {} elementer", limits.max_elements)));
                }
                guard::check_start(e, &ns, stack.len(), limits).map_err(at_event)?;
                let ns = match ns {
                    ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
                    _ => None,
                };
                let element = Element {
                    ns,
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    line,
                    col,
                    text: String::new(),
                    children: Vec::new(),
                };
                if matches!(event, Event::Start(_)) {
                    stack.push(element);
                } else {
                    attach(&mut stack, &mut root, element);
                }
            }
            Event::End(_) => {
                let element = stack.pop().expect("the reader checks that end tags match");
                attach(&mut stack, &mut root, element);
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| rejected(Rejection::Encoding(e.to_string()), line, col))?;
                push_text(&mut stack, &text, limits, line, col)?;
            }
            Event::CData(t) => {
                let text = t.decode().map_err(|e| rejected(Rejection::Encoding(e.to_string()), line, col))?;
                push_text(&mut stack, &text, limits, line, col)?;
            }
            Event::GeneralRef(r) => {
                let c = guard::resolve_reference(&r).map_err(at_event)?;
                push_text(&mut stack, c.encode_utf8(&mut [0; 4]), limits, line, col)?;
            }
            // Refused by the guard above.
            Event::Decl(_) | Event::DocType(_) | Event::PI(_) => {}
            Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        let (line, col) = positions.at(text.len());
        return Err(rejected(Rejection::NotWellFormed("dokumentet slutter, før alle elementer er lukket".into()), line, col));
    }
    root.ok_or_else(|| rejected(Rejection::NotWellFormed("dokumentet har intet rodelement".into()), 1, 1))
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        // The reader refuses a second root element itself; keep the first.
        None => {
            root.get_or_insert(element);
        }
    }
}

fn push_text(stack: &mut [Element], text: &str, limits: &XmlLimits, line: u32, col: u32) -> Result<(), Finding> {
    if let Some(current) = stack.last_mut() {
        if current.text.len() + text.len() > limits.max_text_len {
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
        assert_eq!((root.line, root.col, root.ns.as_deref()), (2, 1, Some("urn:x")));
        let mut all = Vec::new();
        root.walk("", &["b"], &mut all);
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
    fn content_hash_ignores_layout_and_prefixes() {
        let a = read("<p:a xmlns:p=\"urn:x\"><p:b> 1 </p:b></p:a>").unwrap();
        let b = read("<a xmlns=\"urn:x\">\n  <b>1</b>\n</a>").unwrap();
        let c = read("<a xmlns=\"urn:x\"><b>2</b></a>").unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
    }
}
