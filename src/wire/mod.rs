//! The wire model: from a checked XML tree to domain types. This is the only code that knows element names,
//! so the official SF1590 schemas can replace ours by changing this layer alone.

pub mod sf1590a;
pub mod sf1590b;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::domain::finans::{DeliveryHeader, Kontering, Located, Party};
use crate::domain::rejection::{Finding, Loc, Rejection};
use crate::domain::sortiment::Integration;
use crate::domain::values::{mask_cpr, Art, Cpr, Cvr, Dranst, Ejerforhold, Funktion, Gruppering, ValueError};
use crate::xml::tree::Element;

/// What the pipeline needs to know of an integration's wire model.
#[derive(Debug)]
pub struct WireSpec {
    pub namespace: &'static str,
    /// Root of a straks call's body.
    pub straks_root: &'static str,
    /// Root of a masse file.
    pub masse_root: &'static str,
    /// The element each receipt is for.
    pub item: &'static str,
    /// The item's id child, which its receipt names (BilagId, FordringId).
    pub reference: &'static str,
    /// Elements that may repeat, and so are shown with their position in paths.
    pub indexed: &'static [&'static str],
    pub schema: &'static str,
    pub wsdl: &'static str,
}

impl WireSpec {
    pub fn of(integration: Integration) -> &'static WireSpec {
        match integration {
            Integration::Sf1590A => &sf1590a::SPEC,
            Integration::Sf1590B => &sf1590b::SPEC,
        }
    }

    /// Whether a child of the delivery root is one of its items: the item's name in the delivery's namespace (an
    /// element of that name in another namespace is not one, as the scan does not take it for one).
    pub fn is_item(&self, element: &Element) -> bool {
        &*element.name == self.item && element.ns() == Some(self.namespace)
    }

    /// What an item is called in its receipt: its id, or its position when it has none.
    pub fn reference_of(&self, element: &Element, index: usize) -> String {
        element
            .child(self.reference)
            .map(|b| b.text().to_string())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| format!("{}[{index}]", self.item))
    }
}

/// `path/name`, made at its final length: a finansbilag's values each carry their path, millions of them in a
/// batch file, and `format!` grew most of them twice.
pub(crate) fn child_path(path: &str, name: &str) -> String {
    let mut joined = String::with_capacity(path.len() + 1 + name.len());
    joined.push_str(path);
    joined.push('/');
    joined.push_str(name);
    joined
}

/// `path/name[n]`, as `child_path`.
pub(crate) fn nth_path(path: &str, name: &str, n: usize) -> String {
    use std::fmt::Write;
    let mut joined = String::with_capacity(path.len() + name.len() + 23);
    joined.push_str(path);
    joined.push('/');
    joined.push_str(name);
    write!(joined, "[{n}]").expect("writing to a String does not fail");
    joined
}

/// Reads the children of one element, collecting findings instead of stopping at the first.
pub(crate) struct Fields<'a> {
    pub element: &'a Element,
    pub path: String,
    pub findings: &'a mut Vec<Finding>,
}

impl<'a> Fields<'a> {
    pub fn loc(&self) -> Loc {
        self.element.loc(self.path.clone())
    }

    pub fn child_loc(&self, name: &str) -> Loc {
        match self.element.child(name) {
            Some(child) => child.loc(child_path(&self.path, name)),
            None => self.loc(),
        }
    }

    /// A child's text; a missing required child (which the schema should have caught) is a finding.
    pub fn text(&mut self, name: &str) -> Option<&'a str> {
        match self.element.child(name) {
            Some(child) => Some(child.text()),
            None => {
                let loc = self.loc();
                self.findings.push(Finding::new(Rejection::Schema(format!("elementet {name} mangler")), &loc));
                None
            }
        }
    }

    pub fn optional(&self, name: &str) -> Option<&'a str> {
        self.element.child(name).map(|c| c.text())
    }

    /// Parses a required child with a domain constructor; a failure becomes a finding at that child.
    pub fn parse<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, ValueError>) -> Option<T> {
        let raw = self.text(name)?;
        self.check(name, raw, parse)
    }

    pub fn parse_optional<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, ValueError>) -> Option<T> {
        let raw = self.optional(name)?;
        self.check(name, raw, parse)
    }

    fn check<T>(&mut self, name: &str, raw: &str, parse: impl FnOnce(&str) -> Result<T, ValueError>) -> Option<T> {
        match parse(raw) {
            Ok(value) => Some(value),
            Err(e) => {
                let loc = self.child_loc(name);
                self.findings.push(Finding::new(Rejection::InvalidValue(e), &loc).with_value(raw));
                None
            }
        }
    }

    pub fn date(&mut self, name: &str) -> Option<NaiveDate> {
        self.parse(name, |raw| iso_date(raw).ok_or_else(|| ValueError::Pattern(raw.into(), "ÅÅÅÅ-MM-DD")))
    }
}

/// A date written `ÅÅÅÅ-MM-DD`, as chrono reads that pattern. The form nearly every date is sent in (four, two and
/// two digits) is read here directly, and any other is left to chrono, which decides what else it takes: chrono
/// reads the pattern itself anew for each date, and a batch file has a date in every posting.
fn iso_date(raw: &str) -> Option<NaiveDate> {
    let b = raw.as_bytes();
    let number = |digits: &[u8]| digits.iter().try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')));
    if let [y @ .., b'-', m1, m2, b'-', d1, d2] = b {
        if let (4, Some(year), Some(month), Some(day)) = (y.len(), number(y), number(&[*m1, *m2]), number(&[*d1, *d2])) {
            if let Some(date) = NaiveDate::from_ymd_opt(year as i32, month, day) {
                return Some(date);
            }
        }
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()
}

fn uuid(raw: &str) -> Result<Uuid, ValueError> {
    Uuid::parse_str(raw).map_err(|_| ValueError::Pattern(raw.into(), "UUID"))
}

/// The delivery's own fields. `None` when the schema check already reported what is wrong with them.
pub fn read_header(root: &Element, findings: &mut Vec<Finding>) -> Option<DeliveryHeader> {
    let mut f = Fields { element: root, path: format!("/{}", root.name), findings };
    let delivery_id = f.parse("LeveranceId", uuid);
    let sender = f.parse("AfsenderSystem", uuid);
    let sender_loc = f.child_loc("AfsenderSystem");
    let authority = f.text("Myndighed");
    let authority_loc = f.child_loc("Myndighed");
    let created = f.text("Dannet");
    Some(DeliveryHeader {
        delivery_id: delivery_id?,
        sender: Located { value: sender?, loc: sender_loc },
        authority: Located { value: authority?.to_string(), loc: authority_loc },
        created: created?.to_string(),
    })
}

pub(crate) fn read_kontering(element: &Element, path: String, findings: &mut Vec<Finding>) -> Option<Kontering> {
    let mut f = Fields { element, path, findings };
    let funktion = f.parse("Funktion", Funktion::parse);
    let gruppering = f.parse_optional("Gruppering", Gruppering::parse);
    let dranst = f.parse("Dranst", Dranst::parse);
    let ejerforhold = f.parse_optional("Ejerforhold", Ejerforhold::parse);
    let art = f.parse("Art", Art::parse);
    let dimensions = element
        .children_named("Dimension")
        .map(|d| {
            let text = |name| d.child(name).map(|c| c.text().to_string()).unwrap_or_default();
            (text("Navn"), text("Vaerdi"))
        })
        .collect();
    Some(Kontering {
        funktion: funktion?,
        gruppering,
        dranst: dranst?,
        ejerforhold,
        art: art?,
        omkostningssted: f.optional("Omkostningssted").map(str::to_string),
        psp_element: f.optional("PSPElement").map(str::to_string),
        dimensions,
    })
}

/// `Some(None)`: the party is present but invalid (reported); the postering is still built so that the
/// other rules run, and the finding rejects the bilag.
pub(crate) fn read_party(element: &Element, path: &str, findings: &mut Vec<Finding>) -> Option<Option<Located<Party>>> {
    if let Some(cpr) = element.child("CPR") {
        let loc = cpr.loc(child_path(path, "CPR"));
        return Some(match Cpr::parse(cpr.text()) {
            Ok(cpr) => Some(Located { value: Party::Cpr(cpr), loc }),
            Err(e) => {
                findings.push(Finding::new(Rejection::InvalidCpr(e), &loc).with_value(mask_cpr(cpr.text())));
                None
            }
        });
    }
    if let Some(cvr) = element.child("CVR") {
        let loc = cvr.loc(child_path(path, "CVR"));
        return Some(match Cvr::parse(cvr.text()) {
            Ok(cvr) => Some(Located { value: Party::Cvr(cvr), loc }),
            Err(e) => {
                findings.push(Finding::new(Rejection::InvalidCvr(e), &loc).with_value(cvr.text()));
                None
            }
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_as_chrono_reads_their_pattern() {
        let by_chrono = |raw: &str| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok();
        let mut raws = Vec::new();
        for year in ["0000", "0001", "1900", "2000", "2024", "2026", "9999"] {
            for month in 0..=13 {
                for day in 0..=32 {
                    raws.push(format!("{year}-{month:02}-{day:02}"));
                }
            }
        }
        let odd = [
            "2026-1-02",
            "2026-01-2",
            "+2026-01-02",
            "02026-01-02",
            " 2026-01-02",
            "2026-01-02 ",
            "2026-01-02Z",
            "2026-01-02+01:00",
            "2026/01/02",
            "２０２６-01-02",
            "",
            "2026-0a-02",
            "-2026-01-02",
            "2026-01-0２",
            "2026-+1-02",
            "2026-01--2",
        ];
        raws.extend(odd.map(String::from));
        for raw in &raws {
            assert_eq!(iso_date(raw), by_chrono(raw), "{raw:?}");
        }
        assert_eq!(iso_date("2024-02-29"), NaiveDate::from_ymd_opt(2024, 2, 29));
    }
}
