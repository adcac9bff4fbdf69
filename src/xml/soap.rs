//! SOAP 1.1 and 1.2 envelopes: finding the body, reading Serviceplatformen's context header blocks, and
//! writing answers and faults.

use crate::domain::rejection::{Finding, Loc, Rejection};
use crate::xml::tree::Element;

const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
const AUTHORITY_CONTEXT_NS: &str = "http://serviceplatformen.dk/xml/schemas/AuthorityContext/1/";
const INVOCATION_CONTEXT_NS: &str = "http://serviceplatformen.dk/xml/schemas/InvocationContext/1/";
const REQUEST_HEADER_NS: &str = "http://kombit.dk/xml/schemas/RequestHeader/1/";
const CALL_CONTEXT_NS: &str = "http://serviceplatformen.dk/xml/schemas/CallContext/1/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

impl SoapVersion {
    pub fn namespace(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11_NS,
            SoapVersion::V12 => SOAP12_NS,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::V11 => "text/xml; charset=utf-8",
            SoapVersion::V12 => "application/soap+xml; charset=utf-8",
        }
    }

    /// The version a client speaks, from its Content-Type, for answering before the body is read.
    pub fn from_content_type(content_type: &str) -> Self {
        if content_type.contains("application/soap+xml") {
            SoapVersion::V12
        } else {
            SoapVersion::V11
        }
    }
}

/// Serviceplatformen's context, each value with where it was. A block may stand in the SOAP header (the token
/// model) or first in the request element inside the Body (the certificate model); both are read, and every
/// value found is checked.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub municipality_cvr: Vec<(String, Loc)>,
    pub user_system: Vec<(String, Loc)>,
    pub transaction: Option<String>,
    /// The caller's own id of the call, and its accounting info (InvocationContext or CallContext).
    pub call_identifier: Option<String>,
    pub accounting_info: Option<String>,
    /// The TransactionUUID of a RequestHeader in the SOAP header (the token model), sent back in the answer's.
    pub echo_transaction: Option<String>,
    /// Blocks without the value they exist to carry.
    pub findings: Vec<Finding>,
}

/// The blocks whose content is checked against the delivery.
const CONTEXT_BLOCKS: [&str; 4] = ["AuthorityContext", "InvocationContext", "RequestHeader", "CallContext"];

/// Every element with one of `names` under `element` (at any depth), with its path.
fn all_named_in<'a>(element: &'a Element, path: &str, names: &[&str], out: &mut Vec<(String, &'a Element)>) {
    for child in &element.children {
        let child_path = format!("{path}/{}", child.name);
        if names.contains(&&*child.name) {
            out.push((child_path.clone(), child));
        }
        all_named_in(child, &child_path, names, out);
    }
}

/// The one element inside the SOAP Body of an envelope the streaming scan has accepted.
pub fn body_content(envelope: &Element) -> Option<&Element> {
    let ns = envelope.ns()?;
    envelope.children.iter().find(|e| &*e.name == "Body" && e.ns() == Some(ns)).and_then(|body| body.children.first())
}

pub fn body_content_mut(envelope: &mut Element) -> Option<&mut Element> {
    let ns = envelope.ns.clone()?;
    envelope.children.iter_mut().find(|e| &*e.name == "Body" && e.ns() == Some(&ns)).and_then(|body| body.children.first_mut())
}

/// The context blocks of a call: in the envelope's Header, and first in the request element `request`.
pub fn read_context(envelope: &Element, request: &Element) -> CallContext {
    let mut context = CallContext::default();
    let ns = envelope.ns();
    let header = envelope.children.iter().find(|e| &*e.name == "Header" && e.ns() == ns);
    // A block is read wherever it stands in the header or among the request's own fields, also inside another
    // element (a block inside a block, or a wrapper): a value is never passed over for where it is.
    let mut blocks = Vec::new();
    if let Some(h) = header {
        let path = format!("/{}/{}", envelope.name, h.name);
        for b in &h.children {
            let block_path = format!("{path}/{}", b.name);
            if b.ns() == Some(REQUEST_HEADER_NS) && &*b.name == "RequestHeader" && context.echo_transaction.is_none() {
                context.echo_transaction = b.child("TransactionUUID").map(|t| t.text().to_string()).filter(|t| !t.is_empty());
            }
            blocks.push((block_path.clone(), b));
            all_named_in(b, &block_path, &CONTEXT_BLOCKS, &mut blocks);
        }
    }
    for b in &request.children {
        let path = format!("/{}/{}", request.name, b.name);
        blocks.push((path.clone(), b));
        all_named_in(b, &path, &CONTEXT_BLOCKS, &mut blocks);
    }
    for (path, block) in blocks {
        // Every value a block holds is taken (and checked), wherever in it: a second, other value is not hidden
        // behind the first.
        let values = |name: &str| {
            let mut found = Vec::new();
            all_named_in(block, &path, &[name], &mut found);
            found.into_iter().map(|(path, e)| (e.text().to_string(), e.loc(path))).collect::<Vec<_>>()
        };
        // The caller's call id and accounting info are kept as they came (the first of each), never checked.
        let first = |name: &str| values(name).into_iter().next().map(|(v, _)| v).filter(|v| !v.is_empty());
        if matches!((block.ns(), &*block.name), (Some(INVOCATION_CONTEXT_NS), "InvocationContext") | (Some(CALL_CONTEXT_NS), "CallContext"))
        {
            context.call_identifier = context.call_identifier.take().or_else(|| first("CallersServiceCallIdentifier"));
            context.accounting_info = context.accounting_info.take().or_else(|| first("AccountingInfo"));
        }
        let (target, name) = match (block.ns(), &*block.name) {
            (Some(AUTHORITY_CONTEXT_NS), "AuthorityContext") => (&mut context.municipality_cvr, "MunicipalityCVR"),
            (Some(INVOCATION_CONTEXT_NS), "InvocationContext") => (&mut context.user_system, "UserSystemUUID"),
            (Some(REQUEST_HEADER_NS), "RequestHeader") => {
                // An empty TransactionUUID is none (the contract asks for a non-empty string).
                context.transaction =
                    context.transaction.take().or(values("TransactionUUID").into_iter().map(|(v, _)| v).find(|v| !v.trim().is_empty()));
                continue;
            }
            _ => continue,
        };
        let found = values(name);
        if found.is_empty() {
            let rejection = Rejection::Schema(format!("{} uden {name}", block.name));
            context.findings.push(Finding::new(rejection, &block.loc(path.clone())));
        }
        target.extend(found);
    }
    // A block inside a block is read on its own and with the outer one: each value is checked once.
    for values in [&mut context.municipality_cvr, &mut context.user_system] {
        let mut seen = std::collections::HashSet::new();
        values.retain(|(_, loc)| seen.insert((loc.path.clone(), loc.line, loc.col)));
    }
    context
}

pub fn envelope(version: SoapVersion, body: &str) -> String {
    envelope_with_header(version, None, body)
}

/// An answer, with the call's RequestHeader sent back in its SOAP header when the call had one there.
pub fn envelope_with_header(version: SoapVersion, echo_transaction: Option<&str>, body: &str) -> String {
    let header = match echo_transaction {
        Some(id) => format!(
            "<soap:Header><rh:RequestHeader xmlns:rh=\"{REQUEST_HEADER_NS}\"><rh:TransactionUUID>{}</rh:TransactionUUID></rh:RequestHeader></soap:Header>",
            quick_xml::escape::escape(id)
        ),
        None => String::new(),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{}\">{header}<soap:Body>{body}</soap:Body></soap:Envelope>",
        version.namespace()
    )
}

/// A fault: nothing was handed over, and the sender should try again later.
pub fn fault(version: SoapVersion, reason: &str) -> String {
    let reason = quick_xml::escape::escape(reason);
    let body = match version {
        SoapVersion::V11 => format!("<soap:Fault><faultcode>soap:Server</faultcode><faultstring xml:lang=\"da\">{reason}</faultstring></soap:Fault>"),
        SoapVersion::V12 => format!(
            "<soap:Fault><soap:Code><soap:Value>soap:Receiver</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang=\"da\">{reason}</soap:Text></soap:Reason></soap:Fault>"
        ),
    };
    envelope(version, &body)
}
