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
/// "-", ".", "_". Every element and attribute name of a delivery passes here, twice for a batch file's: one look
/// at each byte in a table.
fn is_name(name: &[u8]) -> bool {
    let mut at_start = true;
    let mut colons = 0;
    for &b in name {
        if b == b':' {
            colons += 1;
            if colons > 1 || at_start {
                return false;
            }
            at_start = true;
            continue;
        }
        let class = NAME_BYTES[b as usize];
        if class == 0 || (at_start && class != NAME_START) {
            return false;
        }
        at_start = false;
    }
    !at_start
}

/// A byte that may start a name part (and go on with one), or only go on with one.
const NAME_START: u8 = 1;
const NAME_REST: u8 = 2;
const NAME_BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = if byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80 {
            NAME_START
        } else if byte.is_ascii_digit() || byte == b'-' || byte == b'.' {
            NAME_REST
        } else {
            0
        };
        b += 1;
    }
    table
};

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule as written: at most two parts around a colon, each a start byte and then rest bytes.
    fn is_name_by_parts(name: &[u8]) -> bool {
        let start = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
        let rest = |b: u8| start(b) || b.is_ascii_digit() || b == b'-' || b == b'.';
        let part = |p: &[u8]| p.first().is_some_and(|&b| start(b)) && p.iter().all(|&b| rest(b));
        let parts: Vec<&[u8]> = name.split(|&b| b == b':').collect();
        matches!(parts.len(), 1 | 2) && parts.iter().all(|p| part(p))
    }

    #[test]
    fn names_are_told_as_the_rule_says_for_every_short_name() {
        let bytes = [b'a', b'Z', b'_', b'0', b'9', b'-', b'.', b':', 0x80, 0xC3, 0xFF, b' ', b'<', b'/', b'=', b'\t', 0];
        let mut names: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last = names.clone();
        for _ in 0..4 {
            last = last.iter().flat_map(|name| bytes.iter().map(move |&b| [name.as_slice(), &[b]].concat())).collect();
            names.extend(last.iter().cloned());
        }
        let mut valid = 0;
        for name in &names {
            assert_eq!(is_name(name), is_name_by_parts(name), "{name:?}");
            valid += usize::from(is_name(name));
        }
        // Both kinds are among them, so the comparison above says something.
        assert!(valid > 1_000 && valid < names.len() / 2, "{valid} of {}", names.len());
        assert!(is_name(b"xs:element") && is_name(b"Beloeb") && is_name("Værdi".as_bytes()));
        assert!(!is_name(b"a:b:c") && !is_name(b":a") && !is_name(b"a:") && !is_name(b"1a") && !is_name(b""));
    }
}
