//! SOAP 1.1 and 1.2 envelopes: finding the body, reading Serviceplatformen's context header blocks, and
//! writing answers and faults.

use crate::domain::rejection::{Finding, Loc, Rejection};
use crate::xml::tree::Element;

const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
const AUTHORITY_CONTEXT_NS: &str = "http://serviceplatformen.dk/xml/schemas/AuthorityContext/1/";
const INVOCATION_CONTEXT_NS: &str = "http://serviceplatformen.dk/xml/schemas/InvocationContext/1/";
const REQUEST_HEADER_NS: &str = "http://kombit.dk/xml/schemas/RequestHeader/1/";

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

/// Serviceplatformen's context from the SOAP header, each value with where it was.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub municipality_cvr: Option<(String, Loc)>,
    pub user_system: Option<(String, Loc)>,
    pub transaction: Option<String>,
}

/// The parts of an envelope the pipeline needs.
pub struct Envelope<'a> {
    pub version: SoapVersion,
    pub context: CallContext,
    pub body: &'a Element,
}

fn xml_error(rejection: Rejection, element: &Element) -> Finding {
    Finding::new(rejection, &element.loc(format!("/{}", element.name)))
}

pub fn open(root: &Element) -> Result<Envelope<'_>, Finding> {
    let version = match (root.name.as_str(), root.ns.as_deref()) {
        ("Envelope", Some(SOAP11_NS)) => SoapVersion::V11,
        ("Envelope", Some(SOAP12_NS)) => SoapVersion::V12,
        _ => return Err(xml_error(Rejection::Schema("rodelementet skal være en SOAP 1.1- eller 1.2-Envelope".into()), root)),
    };
    let in_soap = |e: &&Element| e.ns.as_deref() == Some(version.namespace());
    let header = root.children.iter().filter(in_soap).find(|e| e.name == "Header");
    let body = root
        .children
        .iter()
        .filter(in_soap)
        .find(|e| e.name == "Body")
        .ok_or_else(|| xml_error(Rejection::Schema("SOAP-Envelope uden Body".into()), root))?;
    let content = match body.children.as_slice() {
        [one] => one,
        _ => return Err(xml_error(Rejection::Schema("SOAP-Body skal indeholde præcis ét element".into()), body)),
    };
    Ok(Envelope { version, context: header.map(read_context).unwrap_or_default(), body: content })
}

fn read_context(header: &Element) -> CallContext {
    let mut context = CallContext::default();
    for block in &header.children {
        let path = format!("/Envelope/Header/{}", block.name);
        let value = |name: &str| {
            block.child(name).map(|c| (c.text().to_string(), c.loc(format!("{path}/{name}"))))
        };
        match (block.ns.as_deref(), block.name.as_str()) {
            (Some(AUTHORITY_CONTEXT_NS), "AuthorityContext") => context.municipality_cvr = value("MunicipalityCVR"),
            (Some(INVOCATION_CONTEXT_NS), "InvocationContext") => context.user_system = value("UserSystemUUID"),
            (Some(REQUEST_HEADER_NS), "RequestHeader") => context.transaction = value("TransactionUUID").map(|(v, _)| v),
            _ => {}
        }
    }
    context
}

pub fn envelope(version: SoapVersion, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{}\"><soap:Body>{body}</soap:Body></soap:Envelope>",
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
