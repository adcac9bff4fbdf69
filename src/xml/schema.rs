//! XSD validation through libxml2. The bytes reach libxml2 only after `tree::read_document` has accepted
//! them (UTF-8, no DTD, no entities, within limits), and it parses them with network access off.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::ffi::c_void;

use libxml::bindings;
use libxml::parser::{Parser, ParserOptions};
use libxml::schemas::{SchemaParserContext, SchemaValidationContext};

use super::tree::Element;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema {path} could not be loaded: {message}")]
    Load { path: String, message: String },
    /// libxml2 refused a document the streaming reader had accepted: it is not one libxml2 can check, which the
    /// sender must fix (not a failure to retry).
    #[error("libxml2 could not parse a document the reader had accepted: {0}")]
    Parse(String),
}

/// Makes libxml2 allocate with mimalloc, the allocator of the rest of the process, instead of the C library's:
/// the tree of each item it builds is thousands of small allocations, and the C library's allocator was about 5 %
/// of a batch file's time. Returns whether libxml2 took it.
///
/// # Safety
/// Call it before libxml2 is used in the process: memory libxml2 took from one allocator must not be given back
/// to the other. `main` calls it first thing; a process that does not (the tests) keeps the C library's.
pub unsafe fn allocate_with_mimalloc() -> bool {
    use libmimalloc_sys::{mi_free, mi_malloc, mi_realloc};
    // SAFETY: the functions have the signatures libxml2 asks for (mimalloc's are drop-in replacements of the C
    // library's); the caller guarantees libxml2 holds no memory yet.
    unsafe { bindings::xmlMemSetup(Some(mi_free), Some(mi_malloc), Some(mi_realloc), Some(strdup_with_mimalloc)) == 0 }
}

/// `strdup` into mimalloc's memory.
unsafe extern "C" fn strdup_with_mimalloc(text: *const std::os::raw::c_char) -> *mut std::os::raw::c_char {
    if text.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: libxml2 passes a NUL-terminated string; the copy gets room for it and its NUL.
    unsafe {
        let bytes = std::ffi::CStr::from_ptr(text).to_bytes_with_nul();
        let copy = libmimalloc_sys::mi_malloc(bytes.len()) as *mut std::os::raw::c_char;
        if !copy.is_null() {
            std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const std::os::raw::c_char, copy, bytes.len());
        }
        copy
    }
}

/// libxml2's last error message on this thread.
fn last_error() -> String {
    // SAFETY: xmlGetLastError returns null or a pointer to this thread's last error, valid until the next call
    // into libxml2 on the thread; its message is copied at once.
    unsafe {
        let error = bindings::xmlGetLastError();
        if error.is_null() || (*error).message.is_null() {
            return "ukendt fejl".into();
        }
        std::ffi::CStr::from_ptr((*error).message).to_string_lossy().trim().to_string()
    }
}

/// One schema violation as libxml2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaIssue {
    /// The element it is about, as its number in document order (0 is the document's root element), counted
    /// the same way as `tree::Element::preorder` visits: it places the issue on its element whatever the
    /// layout (libxml2's line numbers cannot tell apart the elements of a document sent on one line).
    pub ordinal: Option<usize>,
    pub message: String,
}

/// What libxml2 found: the first `max` issues, and how many more there were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaReport {
    pub issues: Vec<SchemaIssue>,
    pub omitted: usize,
}

impl SchemaReport {
    pub fn is_empty(&self) -> bool {
        self.issues.is_empty() && self.omitted == 0
    }
}

/// Which element of the document the schema is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The root element (a batch file).
    Root,
    /// The one element inside the SOAP Body, found by the SOAP namespace (a straks call).
    SoapBody,
}

thread_local! {
    // A compiled schema is not thread-safe in the libxml crate; each worker thread keeps its own.
    static VALIDATORS: RefCell<HashMap<PathBuf, SchemaValidationContext>> = RefCell::new(HashMap::new());
}

fn compile(path: &Path) -> Result<SchemaValidationContext, SchemaError> {
    let path_str = path.to_string_lossy().into_owned();
    if !path.is_file() {
        return Err(SchemaError::Load { path: path_str, message: "file not found".into() });
    }
    let mut parser = SchemaParserContext::from_file(&path_str);
    SchemaValidationContext::from_parser(&mut parser).map_err(|errors| SchemaError::Load {
        path: path_str,
        message: errors.iter().filter_map(|e| e.message.clone()).collect::<Vec<_>>().join("; "),
    })
}

/// Compiles a schema once to find errors in it at start-up rather than at the first delivery.
pub fn check_schema(path: &Path) -> Result<(), SchemaError> {
    compile(path).map(drop)
}

/// Where libxml2's errors go during one validation: the first `max` with the node each is about, then only a
/// count, so a document with 80,000 errors costs no more memory than one with 100.
struct Collector {
    issues: Vec<(usize, String)>,
    omitted: usize,
    max: usize,
}

unsafe extern "C" fn collect(data: *mut c_void, error: *const bindings::_xmlError) {
    if data.is_null() || error.is_null() {
        return;
    }
    // SAFETY: `data` is the Collector `validate` registered for the length of one validation, and libxml2
    // passes a valid error for the length of the call.
    let (collector, error) = unsafe { (&mut *(data as *mut Collector), &*error) };
    if collector.issues.len() >= collector.max {
        collector.omitted += 1;
        return;
    }
    let message = if error.message.is_null() {
        String::new()
    } else {
        // SAFETY: libxml2's messages are NUL-terminated C strings.
        unsafe { std::ffi::CStr::from_ptr(error.message) }.to_string_lossy().into_owned()
    };
    collector.issues.push((error.node as usize, message));
}

const SOAP_NAMESPACES: [&[u8]; 2] = [b"http://schemas.xmlsoap.org/soap/envelope/", b"http://www.w3.org/2003/05/soap-envelope"];

/// The element children of a libxml2 node.
fn element_children(node: bindings::xmlNodePtr) -> impl Iterator<Item = bindings::xmlNodePtr> {
    // SAFETY: `node` is an element of a document that outlives the iterator (both live inside `validate`).
    let mut next = unsafe { (*node).children };
    std::iter::from_fn(move || {
        while !next.is_null() {
            let current = next;
            // SAFETY: a non-null sibling pointer of a live document points at a valid node.
            let (following, kind) = unsafe { ((*current).next, (*current).type_) };
            next = following;
            if kind == bindings::xmlElementType_XML_ELEMENT_NODE {
                return Some(current);
            }
        }
        None
    })
}

/// Whether an element has this local name and one of these namespaces.
fn is_element(node: bindings::xmlNodePtr, name: &[u8], namespaces: &[&[u8]]) -> bool {
    // SAFETY: `node` is an element of a live document: its name is a NUL-terminated string, and `ns` is null or a
    // valid namespace whose href is null or NUL-terminated; nothing read here outlives the call.
    unsafe {
        let ns = (*node).ns;
        std::ffi::CStr::from_ptr((*node).name as *const std::os::raw::c_char).to_bytes() == name
            && !ns.is_null()
            && !(*ns).href.is_null()
            && namespaces.contains(&std::ffi::CStr::from_ptr((*ns).href as *const std::os::raw::c_char).to_bytes())
    }
}

/// The number in document order of each of `wanted` (element nodes under `root`), in one walk.
fn ordinals(root: bindings::xmlNodePtr, wanted: &[usize]) -> HashMap<usize, usize> {
    let mut found = HashMap::new();
    let wanted: std::collections::HashSet<usize> = wanted.iter().copied().collect();
    let mut stack = vec![root];
    let mut n = 0usize;
    while let Some(node) = stack.pop() {
        if wanted.contains(&(node as usize)) {
            found.insert(node as usize, n);
            if found.len() == wanted.len() {
                break;
            }
        }
        n += 1;
        let children: Vec<_> = element_children(node).collect();
        stack.extend(children.into_iter().rev());
    }
    found
}

/// Validates the element a delivery is about (see `Target`) and reports at most `max` issues, each with the
/// element it is about.
pub fn validate(schema: &Path, text: &str, target: Target, max: usize) -> Result<SchemaReport, SchemaError> {
    let options = ParserOptions {
        recover: false,
        no_def_dtd: true,
        no_error: true,
        no_warning: true,
        pedantic: false,
        no_blanks: false,
        no_net: true,
        no_implied: true,
        huge: false,
        compact: true,
        ignore_enc: false,
        encoding: Some("UTF-8"),
    };
    let document = Parser::default().parse_string_with_options(text, options).map_err(|_| SchemaError::Parse(last_error()))?;
    let root = document.get_root_element().ok_or_else(|| SchemaError::Parse("intet rodelement".into()))?.node_ptr();
    let node = match target {
        Target::Root => root,
        Target::SoapBody => element_children(root)
            .find(|n| is_element(*n, b"Body", &SOAP_NAMESPACES))
            .and_then(|body| element_children(body).next())
            .ok_or_else(|| SchemaError::Parse("ingen SOAP-Body med et element".into()))?,
    };
    check(schema, root, node, max)
}

/// Validates a document already read into a tree (its root the element the schema is for), by building
/// libxml2's tree from it instead of parsing the text again: libxml2's parse was half of its time on a batch
/// file's items. `None` when libxml2 could not build it (out of memory); the caller then validates the text.
///
/// The report is libxml2's for the text only when the tree holds all that libxml2's check looks at
/// (`tree::Scanned::whole`), and only as far as it says "valid": which issues it finds, and their messages,
/// can differ from the text's (it has no layout between elements), so a caller asks `validate` for those.
pub fn validate_tree(schema: &Path, root: &Element, max: usize) -> Result<Option<SchemaReport>, SchemaError> {
    let Some(built) = Built::from_tree(root) else { return Ok(None) };
    // SAFETY: `built` holds a document with a root element (`from_tree` returns none without one).
    let root = unsafe { bindings::xmlDocGetRootElement(built.0) };
    check(schema, root, root, max).map(Some)
}

/// Checks `node` (an element of the document whose root is `root`) against the schema.
fn check(schema: &Path, root: bindings::xmlNodePtr, node: bindings::xmlNodePtr, max: usize) -> Result<SchemaReport, SchemaError> {
    VALIDATORS.with(|cell| {
        let mut validators = cell.borrow_mut();
        let validator = match validators.entry(schema.to_path_buf()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(compile(schema)?),
        };
        let mut collector = Collector { issues: Vec::new(), omitted: 0, max };
        // The libxml crate's own error list keeps every error and not the node it is about; this collector
        // takes its place for the length of the call.
        type Handler = unsafe extern "C" fn(*mut c_void, *const bindings::_xmlError);
        let handler: Handler = collect;
        // SAFETY: the two signatures differ only in the constness of the error pointer (libxml2 2.12 changed
        // it), which has the same representation; the collector outlives the validation and is unregistered
        // before it is dropped; `node` is an element of the caller's document, alive for the call.
        let rc = unsafe {
            let handler = std::mem::transmute::<Handler, bindings::xmlStructuredErrorFunc>(handler);
            bindings::xmlSchemaSetValidStructuredErrors(validator.as_ptr(), handler, &mut collector as *mut Collector as *mut c_void);
            let rc = bindings::xmlSchemaValidateOneElement(validator.as_ptr(), node);
            bindings::xmlSchemaSetValidStructuredErrors(validator.as_ptr(), handler, std::ptr::null_mut());
            rc
        };
        if rc != 0 && collector.issues.is_empty() && collector.omitted == 0 {
            collector.issues.push((0, format!("libxml2 stopped the schema check with status {rc}")));
        }
        let nodes: Vec<usize> = collector.issues.iter().map(|(node, _)| *node).filter(|n| *n != 0).collect();
        let numbers = if nodes.is_empty() { HashMap::new() } else { ordinals(root, &nodes) };
        let issues = collector
            .issues
            .into_iter()
            .map(|(node, raw)| SchemaIssue { ordinal: numbers.get(&node).copied(), message: tidy(&raw) })
            .collect();
        Ok(SchemaReport { issues, omitted: collector.omitted })
    })
}

/// A libxml2 dictionary, released when its thread ends.
struct Dict(bindings::xmlDictPtr);

impl Drop for Dict {
    fn drop(&mut self) {
        // SAFETY: the pointer came from xmlDictCreate and this is its last reference held here; documents still
        // using it hold references of their own.
        unsafe { bindings::xmlDictFree(self.0) }
    }
}

thread_local! {
    // The element names of the documents built on this thread, interned once: every element of a built
    // document takes its name from here, as a parsed document takes it from the parser's dictionary. Started
    // afresh beyond as many names as the tree reader keeps, so that documents full of made-up names cannot make
    // it grow.
    static DICT: RefCell<Option<Dict>> = const { RefCell::new(None) };
}

/// A libxml2 document built from a tree, freed when dropped.
struct Built(bindings::xmlDocPtr);

impl Drop for Built {
    fn drop(&mut self) {
        // SAFETY: the document was made by xmlNewDoc in `from_tree` and is freed once, here; its names belong to
        // its dictionary, which it holds a reference to.
        unsafe { bindings::xmlFreeDoc(self.0) }
    }
}

impl Built {
    /// Builds libxml2's tree of `root`: its elements with their names and namespaces, and the text of those
    /// without children (the layout between children is not content).
    fn from_tree(root: &Element) -> Option<Built> {
        DICT.with_borrow_mut(|kept| {
            // SAFETY: every pointer used below comes from libxml2 in this function and is checked for null
            // before use; the names and texts are passed with their lengths (they are not NUL-terminated).
            unsafe {
                if kept.as_ref().is_none_or(|d| bindings::xmlDictSize(d.0) > super::tree::NAMES_KEPT as _) {
                    let dict = bindings::xmlDictCreate();
                    if dict.is_null() {
                        return None;
                    }
                    *kept = Some(Dict(dict));
                }
                let dict = kept.as_ref().expect("made above").0;
                let doc = bindings::xmlNewDoc(c"1.0".as_ptr() as *const u8);
                if doc.is_null() {
                    return None;
                }
                let built = Built(doc);
                bindings::xmlDictReference(dict);
                (*doc).dict = dict;
                Builder { doc, dict, namespaces: Vec::new() }.add(std::ptr::null_mut(), root)?;
                Some(built)
            }
        })
    }
}

/// What building one document needs along the way. Made only in `Built::from_tree`, and only used there while
/// its document and dictionary are alive: the invariant its methods rely on.
struct Builder {
    doc: bindings::xmlDocPtr,
    dict: bindings::xmlDictPtr,
    /// The namespaces declared on the root so far, by their URI.
    namespaces: Vec<(std::sync::Arc<str>, bindings::xmlNsPtr)>,
}

impl Builder {
    /// Adds `element` under `parent` (as the document's root when null): its name, its namespace, and its
    /// children, or its text when it has none (the layout between children is not content).
    fn add(&mut self, parent: bindings::xmlNodePtr, element: &Element) -> Option<()> {
        // SAFETY: (the builder's invariant) `self.doc` and `self.dict` are live, and `parent` is null or a live
        // element of the document; the name and text are passed with their lengths; each new node is checked and
        // then owned by the document, through its parent.
        unsafe {
            let name = bindings::xmlDictLookup(self.dict, element.name.as_ptr(), element.name.len().try_into().ok()?);
            if name.is_null() {
                return None;
            }
            // The name belongs to the document's dictionary, which xmlFreeDoc knows not to free.
            let node = bindings::xmlNewDocNodeEatName(self.doc, std::ptr::null_mut(), name as *mut u8, std::ptr::null());
            if node.is_null() {
                return None;
            }
            if parent.is_null() {
                bindings::xmlDocSetRootElement(self.doc, node);
            } else {
                bindings::xmlAddChild(parent, node);
            }
            self.place_namespace(node, element)?;
            if element.children.is_empty() {
                if !element.text.is_empty() {
                    let text = bindings::xmlNewDocTextLen(self.doc, element.text.as_ptr(), element.text.len().try_into().ok()?);
                    if text.is_null() {
                        return None;
                    }
                    bindings::xmlAddChild(node, text);
                }
                return Some(());
            }
            for child in &element.children {
                self.add(node, child)?;
            }
            Some(())
        }
    }

    /// Gives `node` the namespace of `element`, declared on the document's root the first time it is met (each
    /// with a prefix of its own: libxml2's check looks at the URI, never at a prefix).
    fn place_namespace(&mut self, node: bindings::xmlNodePtr, element: &Element) -> Option<()> {
        let Some(uri) = &element.ns else { return Some(()) };
        let known = self.namespaces.iter().find(|(u, _)| std::sync::Arc::ptr_eq(u, uri) || u == uri).map(|(_, ns)| *ns);
        let ns = match known {
            Some(ns) => ns,
            None => {
                let href = std::ffi::CString::new(uri.as_bytes()).ok()?;
                let prefix = std::ffi::CString::new(format!("n{}", self.namespaces.len())).ok()?;
                // SAFETY: (the builder's invariant) the document is live and has its root (`add` sets it before
                // any namespace is placed); both strings are NUL-terminated and copied by libxml2.
                let ns = unsafe {
                    bindings::xmlNewNs(bindings::xmlDocGetRootElement(self.doc), href.as_ptr() as *const u8, prefix.as_ptr() as *const u8)
                };
                if ns.is_null() {
                    return None;
                }
                self.namespaces.push((uri.clone(), ns));
                ns
            }
        };
        // SAFETY: (the builder's invariant) `node` is a live element of the document, `ns` declared on its root.
        unsafe { bindings::xmlSetNs(node, ns) };
        Some(())
    }
}

/// Drops namespace URIs in braces ("{urn:...}Art" reads "Art"), but keeps braces that are part of a pattern
/// ("\d{8}"), and the final full stop, which the receipt text adds itself.
fn tidy(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message.trim();
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map(|c| open + c);
        match close {
            Some(close) if rest[open + 1..close].contains(':') => {
                out.push_str(&rest[..open]);
                rest = &rest[close + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    shorten_quoted(out.trim_end_matches('.'))
}

/// The longest a value quoted in a message may be: libxml2 quotes a wrong value whole, and a receipt repeats the
/// delivery's errors for every item, so a long value would make the answer many times the size of the call.
const MAX_QUOTED: usize = 100;

/// Cuts every '…'-quoted part of a message longer than `MAX_QUOTED` characters.
fn shorten_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut parts = message.split('\'');
    out.push_str(parts.next().unwrap_or_default());
    for (n, part) in parts.enumerate() {
        out.push('\'');
        // Odd parts (the first after a quote) are inside quotes.
        if n % 2 == 0 && part.chars().count() > MAX_QUOTED {
            out.extend(part.chars().take(MAX_QUOTED));
            out.push('…');
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quoted_values_are_cut() {
        let long = "x".repeat(9000);
        let m = format!("Element '{{urn:a:b}}Dannet': '{long}' is not a valid value of the atomic type 'xs:dateTime'.");
        let tidied = tidy(&m);
        assert!(tidied.len() < 250, "{tidied}");
        assert!(tidied.starts_with("Element 'Dannet': 'xxxx"), "{tidied}");
        assert!(tidied.ends_with("…' is not a valid value of the atomic type 'xs:dateTime'"), "{tidied}");
    }

    #[test]
    fn names_and_messages() {
        let m = "Element '{urn:fkoeko:sf1590a:v1}Art': [facet 'pattern'] The value '52' is not accepted.\n";
        assert_eq!(tidy(m), "Element 'Art': [facet 'pattern'] The value '52' is not accepted");
        let p = "Element '{urn:fkoeko:sf1590a:v1}LeveranceId': not accepted by the pattern '[0-9a-f]{8}-[0-9a-f]{4}'.";
        assert_eq!(tidy(p), "Element 'LeveranceId': not accepted by the pattern '[0-9a-f]{8}-[0-9a-f]{4}'");
    }
}
