//! XSD validation through libxml2. The bytes reach libxml2 only after `tree::read_document` has accepted
//! them (UTF-8, no DTD, no entities, within limits), and it parses them with network access off.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use libxml::parser::{Parser, ParserOptions};
use libxml::schemas::{SchemaParserContext, SchemaValidationContext};

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema {path} could not be loaded: {message}")]
    Load { path: String, message: String },
    #[error("libxml2 could not parse a document the reader had accepted")]
    Parse,
}

/// One schema violation as libxml2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaIssue {
    pub line: Option<u32>,
    /// Local name of the element the message is about, when it names one.
    pub element: Option<String>,
    pub message: String,
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

/// Validates the element the delivery is about: the root, or with `in_soap_body` the first element inside
/// the SOAP Body. Line numbers are those of the whole received text.
pub fn validate(schema: &Path, text: &str, in_soap_body: bool) -> Result<Vec<SchemaIssue>, SchemaError> {
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
    let document = Parser::default().parse_string_with_options(text, options).map_err(|_| SchemaError::Parse)?;
    let root = document.get_root_element().ok_or(SchemaError::Parse)?;
    let target = if in_soap_body {
        root.get_child_elements()
            .into_iter()
            .find(|n| n.get_name() == "Body")
            .and_then(|body| body.get_first_element_child())
            .ok_or(SchemaError::Parse)?
    } else {
        root
    };
    VALIDATORS.with(|cell| {
        let mut validators = cell.borrow_mut();
        let validator = match validators.entry(schema.to_path_buf()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(compile(schema)?),
        };
        let issues = match validator.validate_node(&target) {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| {
                    let raw = e.message.unwrap_or_default();
                    SchemaIssue { line: e.line.map(|l| l as u32), element: element_name(&raw), message: tidy(&raw) }
                })
                .collect(),
        };
        Ok(issues)
    })
}

/// libxml2 writes "Element '{urn:...}Art': ..."; this takes out "Art".
fn element_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("Element '")?;
    let name = &rest[..rest.find('\'')?];
    Some(name.rsplit('}').next().unwrap_or(name).to_string())
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
    out.trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_messages() {
        let m = "Element '{urn:fkoeko:sf1590a:v1}Art': [facet 'pattern'] The value '52' is not accepted.\n";
        assert_eq!(element_name(m).as_deref(), Some("Art"));
        assert_eq!(tidy(m), "Element 'Art': [facet 'pattern'] The value '52' is not accepted");
        let p = "Element '{urn:fkoeko:sf1590a:v1}LeveranceId': not accepted by the pattern '[0-9a-f]{8}-[0-9a-f]{4}'.";
        assert_eq!(tidy(p), "Element 'LeveranceId': not accepted by the pattern '[0-9a-f]{8}-[0-9a-f]{4}'");
    }
}
