//! SF1590_A wire model v1 (namespace urn:fkoeko:sf1590a:v1) to domain types.

use uuid::Uuid;

use crate::domain::finans::{DeliveryHeader, Finansbilag, Kontering, Located, Party, Postering};
use crate::domain::rejection::{Finding, Rejection};
use crate::domain::values::{
    mask_cpr, Art, Beloeb, Cpr, Cvr, DebetKredit, Dranst, Ejerforhold, Funktion, Gruppering, Valuta, ValueError,
};
use crate::xml::tree::Element;

use super::Fields;

pub const NAMESPACE: &str = "urn:fkoeko:sf1590a:v1";
/// Root of a straks call's body.
pub const STRAKS_ROOT: &str = "ModtagFinansbilag";
/// Root of a masse file.
pub const MASSE_ROOT: &str = "FinansbilagLeverance";
pub const ITEM: &str = "Finansbilag";
/// Elements that may repeat, and so are shown with their position in paths.
pub const INDEXED: &[&str] = &["Finansbilag", "Postering", "Dimension"];

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

/// What a finansbilag is called in its receipt: its BilagId, or its position when it has none.
pub fn reference(element: &Element, index: usize) -> String {
    element
        .child("BilagId")
        .map(|b| b.text().to_string())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| format!("Finansbilag[{index}]"))
}

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
    let party = element.child("Part").and_then(|part| read_party(part, format!("{}/Part", f.path), f.findings));
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

fn read_kontering(element: &Element, path: String, findings: &mut Vec<Finding>) -> Option<Kontering> {
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
fn read_party(element: &Element, path: String, findings: &mut Vec<Finding>) -> Option<Option<Located<Party>>> {
    if let Some(cpr) = element.child("CPR") {
        let loc = cpr.loc(format!("{path}/CPR"));
        return Some(match Cpr::parse(cpr.text()) {
            Ok(cpr) => Some(Located { value: Party::Cpr(cpr), loc }),
            Err(e) => {
                findings.push(Finding::new(Rejection::InvalidCpr(e), &loc).with_value(mask_cpr(cpr.text())));
                None
            }
        });
    }
    if let Some(cvr) = element.child("CVR") {
        let loc = cvr.loc(format!("{path}/CVR"));
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
