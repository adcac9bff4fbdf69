//! SF1590_A wire model v1 (namespace urn:fkoeko:sf1590a:v1) to domain types.

use crate::domain::finans::{Finansbilag, Located, Postering};
use crate::domain::rejection::Finding;
use crate::domain::values::{Beloeb, DebetKredit, ValueError, Valuta};
use crate::xml::tree::Element;

use super::{read_kontering, read_party, Fields, WireSpec};

pub const SPEC: WireSpec = WireSpec {
    namespace: "urn:fkoeko:sf1590a:v1",
    straks_root: "ModtagFinansbilag",
    masse_root: "FinansbilagLeverance",
    item: "Finansbilag",
    reference: "BilagId",
    indexed: &["Finansbilag", "Postering", "Dimension"],
    schema: "sf1590a.xsd",
    wsdl: "sf1590a.wsdl",
};

/// Builds one finansbilag. Values that fail a domain check are left out and reported, so that the rules can
/// still run over the rest and the receipt lists every error.
pub fn read_finansbilag(element: &Element, index: usize, path: String, findings: &mut Vec<Finding>) -> Option<Finansbilag> {
    let mut f = Fields { element, path, findings };
    let bilag_id = f.text("BilagId").map(str::to_string);
    let date = f.date("Bilagsdato");
    let text = f.optional("Bilagstekst").map(str::to_string);
    let loc = f.loc();
    let base = f.path.clone();
    let mut postings = Vec::new();
    let mut complete = true;
    for (n, posting) in element.children_named("Postering").enumerate() {
        match read_postering(posting, format!("{base}/Postering[{}]", n + 1), f.findings) {
            Some(p) => postings.push(p),
            None => complete = false,
        }
    }
    if !complete {
        return None;
    }
    Some(Finansbilag { index, loc, bilag_id: bilag_id?, date: date?, text, postings })
}

fn read_postering(element: &Element, path: String, findings: &mut Vec<Finding>) -> Option<Postering> {
    let mut f = Fields { element, path, findings };
    let loc = f.loc();
    let id_loc = f.child_loc("PosteringId");
    let id = f.parse("PosteringId", |raw| raw.parse::<u64>().map_err(|_| ValueError::Pattern(raw.into(), "positivt heltal")));
    let amount = f.parse("Beloeb", Beloeb::parse);
    let side = f.parse("DebetKredit", DebetKredit::parse);
    let currency_loc = f.child_loc("Valuta");
    let currency = f.parse_optional("Valuta", Valuta::parse).unwrap_or_else(Valuta::dkk);
    let date_loc = f.child_loc("Posteringsdato");
    let date = f.date("Posteringsdato");
    let text = f.text("Posteringstekst").map(str::to_string);
    let case_reference = f.optional("Sagsreference").map(str::to_string);
    let kontering_loc = f.child_loc("Kontering");
    let kontering = match element.child("Kontering") {
        Some(k) => read_kontering(k, kontering_loc.path.clone(), f.findings),
        None => f.text("Kontering").and(None),
    };
    let party = element.child("Part").and_then(|part| read_party(part, &format!("{}/Part", f.path), f.findings));
    Some(Postering {
        loc,
        id: Located { value: id?, loc: id_loc },
        amount: amount?,
        side: side?,
        currency: Located { value: currency, loc: currency_loc },
        date: Located { value: date?, loc: date_loc },
        text: text?,
        kontering: Located { value: kontering?, loc: kontering_loc },
        party: party.flatten(),
        case_reference,
    })
}
