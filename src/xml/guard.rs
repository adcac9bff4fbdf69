//! The checks every received document passes before anything else (libxml2 included) sees its bytes. One set
//! of checks, shared by the reader of a straks body (`tree`) and the streaming scan of a batch file (`stream`).

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;

use super::tree::XmlLimits;
use crate::domain::rejection::Rejection;

const XINCLUDE_NS: &[u8] = b"http://www.w3.org/2001/XInclude";

/// Refuses the constructs that are refused wherever they stand: a DTD, a processing instruction, and an
/// XML declaration naming an encoding other than UTF-8. Start tags and references have checks of their own.
pub fn check_event(event: &Event) -> Result<(), Rejection> {
    match event {
        Event::Decl(decl) => {
            if let Some(Ok(encoding)) = decl.encoding() {
                let encoding = String::from_utf8_lossy(&encoding).to_string();
                if !encoding.eq_ignore_ascii_case("utf-8") {
                    return Err(Rejection::Encoding(format!("erklæret encoding '{encoding}'")));
                }
            }
            Ok(())
        }
        Event::DocType(_) => Err(Rejection::Forbidden("DTD (<!DOCTYPE>)".into())),
        Event::PI(_) => Err(Rejection::Forbidden("behandlingsinstruktion (<?...?>)".into())),
        // XML allows no "--" inside a comment, nor one that ends in "-" ("--->").
        Event::Comment(text) if text.windows(2).any(|w| w == b"--") || text.ends_with(b"-") => {
            Err(Rejection::NotWellFormed("en kommentar indeholder \"--\"".into()))
        }
        // "]]>" may only end a CDATA section.
        Event::Text(text) if text.windows(3).any(|w| w == b"]]>") => Err(Rejection::NotWellFormed("\"]]>\" står i en tekst".into())),
        _ => Ok(()),
    }
}

/// Whether `name` is an XML name (a qualified name with at most one prefix). Characters beyond ASCII are left to
/// be whatever XML allows; in ASCII, a name starts with a letter or "_" and goes on with letters, digits and
/// "-", ".", "_".
fn is_name(name: &[u8]) -> bool {
    let start = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
    let rest = |b: u8| start(b) || b.is_ascii_digit() || b == b'-' || b == b'.';
    let part = |p: &[u8]| p.first().is_some_and(|&b| start(b)) && p.iter().all(|&b| rest(b));
    let mut parts = name.split(|&b| b == b':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), None, _) => part(local),
        (Some(prefix), Some(local), None) => part(prefix) && part(local),
        _ => false,
    }
}

/// A start tag with `depth` elements open around it: depth, name, namespace (XInclude is refused, a prefix
/// must be declared) and attributes (count, length, and no entities in their values).
pub fn check_start(e: &BytesStart, ns: &ResolveResult, depth: usize, limits: &XmlLimits) -> Result<(), Rejection> {
    if depth >= limits.max_depth {
        return Err(Rejection::TooLarge(format!("elementer mere end {} niveauer dybt", limits.max_depth)));
    }
    if e.name().as_ref().len() > limits.max_name_len {
        return Err(Rejection::TooLarge(format!("et elementnavn er længere end {} tegn", limits.max_name_len)));
    }
    if !is_name(e.name().as_ref()) {
        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        return Err(Rejection::NotWellFormed(format!("'{}' er ikke et gyldigt elementnavn", crate::domain::rejection::cut(&name, 100))));
    }
    match ns {
        ResolveResult::Bound(ns) if ns.as_ref() == XINCLUDE_NS => return Err(Rejection::Forbidden("XInclude".into())),
        ResolveResult::Unknown(prefix) => {
            let prefix = String::from_utf8_lossy(prefix).into_owned();
            return Err(Rejection::NotWellFormed(format!("præfikset '{prefix}' er ikke erklæret")));
        }
        _ => {}
    }
    for (count, attribute) in e.attributes().enumerate() {
        let attribute = attribute.map_err(|err| Rejection::NotWellFormed(err.to_string()))?;
        if count + 1 > limits.max_attributes {
            return Err(Rejection::TooLarge(format!("mere end {} attributter på et element", limits.max_attributes)));
        }
        if attribute.value.len() > limits.max_text_len || attribute.key.as_ref().len() > limits.max_name_len {
            return Err(Rejection::TooLarge("en attribut er for lang".into()));
        }
        if !is_name(attribute.key.as_ref()) || attribute.value.contains(&b'<') {
            return Err(Rejection::NotWellFormed("en attribut har et ugyldigt navn eller et '<' i sin værdi".into()));
        }
        if attribute.value.contains(&b'&') {
            let value = String::from_utf8_lossy(&attribute.value);
            match quick_xml::escape::unescape(&value) {
                Err(err) => return Err(Rejection::Forbidden(format!("entitet i en attribut ({err})"))),
                Ok(value) if !value.chars().all(super::stream::is_xml_char) => {
                    return Err(Rejection::NotWellFormed("en attribut har en tegnreference til et tegn, XML ikke tillader".into()))
                }
                Ok(_) => {}
            }
        }
    }
    Ok(())
}

/// The character a reference in text stands for: one of the five predefined entities or a character
/// reference. Any other entity is refused: there is no DTD to define it, and none is read.
pub fn resolve_reference(r: &BytesRef) -> Result<char, Rejection> {
    let resolved = if r.is_char_ref() {
        r.resolve_char_ref().ok().flatten()
    } else {
        match &**r {
            b"lt" => Some('<'),
            b"gt" => Some('>'),
            b"amp" => Some('&'),
            b"apos" => Some('\''),
            b"quot" => Some('"'),
            _ => None,
        }
    };
    let resolved = resolved.ok_or_else(|| Rejection::Forbidden(format!("entitetsreference &{};", String::from_utf8_lossy(r))))?;
    if !super::stream::is_xml_char(resolved) {
        return Err(Rejection::NotWellFormed(format!(
            "tegnreferencen &{}; står for et tegn, XML ikke tillader",
            String::from_utf8_lossy(r)
        )));
    }
    Ok(resolved)
}
