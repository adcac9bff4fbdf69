//! SF1590_B_1 wire model v1 (namespace urn:fkoeko:sf1590b:v1) to domain types.

use crate::domain::finans::Located;
use crate::domain::fordring::{Adresse, Fordring, Haefter, Rolle, SentFordring, SentParty};
use crate::domain::rejection::{Finding, Rejection};
use crate::domain::values::{mask_cpr, Beloeb, ValueError, Valuta};
use crate::xml::tree::Element;

use super::{child_path, nth_path, read_kontering, read_party, Fields, WireSpec};

pub const SPEC: WireSpec = WireSpec {
    namespace: "urn:fkoeko:sf1590b:v1",
    straks_root: "ModtagFordring",
    masse_root: "FordringLeverance",
    item: "Fordring",
    reference: "FordringId",
    indexed: &["Fordring", "Haefter", "Dimension"],
    schema: "sf1590b.xsd",
    wsdl: "sf1590b.wsdl",
};

/// Builds one fordring. Values that fail a domain check (a CPR that is not a date, a CVR failing modulus 11)
/// are reported, and the rules still run over the rest, so the receipt lists every error.
pub fn read_fordring(element: &Element, index: usize, path: String, findings: &mut Vec<Finding>) -> Option<SentFordring> {
    let mut f = Fields { element, path, findings };
    let loc = f.loc();
    let base = f.path.clone();
    let located_date = |f: &mut Fields, name: &str| {
        let loc = f.child_loc(name);
        f.date(name).map(|value| Located { value, loc })
    };
    let optional_date = |f: &mut Fields, name: &str| {
        f.element.child(name).and_then(|_| {
            let loc = f.child_loc(name);
            f.date(name).map(|value| Located { value, loc })
        })
    };
    let fordring_id = f.text("FordringId").map(str::to_string);
    let claim_type_loc = f.child_loc("Fordringstype");
    let claim_type = f.text("Fordringstype").map(str::to_string);
    let principal = f.parse("Hovedstol", Beloeb::parse);
    let currency_loc = f.child_loc("Valuta");
    let currency = f.parse_optional("Valuta", Valuta::parse).unwrap_or_else(Valuta::dkk);
    let description = f.text("Beskrivelse").map(str::to_string);
    let period_from = optional_date(&mut f, "PeriodeFra");
    let period_to = optional_date(&mut f, "PeriodeTil");
    let established = located_date(&mut f, "Stiftelsesdato");
    let due = located_date(&mut f, "Forfaldsdato");
    let last_timely_payment = located_date(&mut f, "SidsteRettidigeBetalingsdato");
    let limitation = optional_date(&mut f, "Foraeldelsesdato");
    let related = f.optional("RelateretFordringId").map(|r| Located { value: r.to_string(), loc: f.child_loc("RelateretFordringId") });
    let kontering = element.child("Kontering").map(|k| {
        let loc = k.loc(child_path(&base, "Kontering"));
        read_kontering(k, loc.path.clone(), f.findings).map(|value| Located { value, loc })
    });

    let mut parties = Vec::new();
    let mut complete = true;
    for (n, haefter) in element.children_named("Haefter").enumerate() {
        match read_haefter(haefter, &nth_path(&base, "Haefter", n + 1), f.findings) {
            Some(h) => parties.push(h),
            None => complete = false,
        }
    }
    let kontering = match kontering {
        Some(None) => return None,
        Some(Some(k)) => Some(k),
        None => None,
    };
    if !complete {
        return None;
    }
    Some(Fordring {
        index,
        loc,
        fordring_id: fordring_id?,
        claim_type: Located { value: claim_type?, loc: claim_type_loc },
        principal: principal?,
        currency: Located { value: currency, loc: currency_loc },
        description: description?,
        period_from,
        period_to,
        established: established?,
        due: due?,
        last_timely_payment: last_timely_payment?,
        limitation,
        related,
        parties,
        kontering,
    })
}

/// `None` when the hæfter cannot be built; what is wrong has been reported.
fn read_haefter(element: &Element, path: &str, findings: &mut Vec<Finding>) -> Option<Haefter<SentParty>> {
    let mut f = Fields { element, path: path.to_string(), findings };
    let loc = f.loc();
    let role_loc = f.child_loc("Rolle");
    let role = f.text("Rolle").map(|raw| (raw, Rolle::parse(raw)));
    let role = match role {
        Some((_, Some(role))) => Some(role),
        Some((raw, None)) => {
            let rejection = Rejection::InvalidValue(ValueError::Pattern(raw.into(), "JuridiskAnsvarlig eller JuridiskMedhaefter"));
            f.findings.push(Finding::new(rejection, &role_loc).with_value(raw));
            None
        }
        None => None,
    };
    let name = f.text("Navn").map(str::to_string);
    let address = element.child("Adresse").map(|a| {
        let text = |name: &str| a.child(name).map(|c| c.text().to_string());
        Adresse {
            street: text("Vejnavn").unwrap_or_default(),
            house_number: text("Husnummer").unwrap_or_default(),
            floor: text("Etage"),
            door: text("Doer"),
            postcode: text("Postnummer").unwrap_or_default(),
            city: text("By").unwrap_or_default(),
            country: text("Landekode").unwrap_or_else(|| "DK".into()),
        }
    });
    let party = match read_party(element, path, f.findings) {
        Some(Some(party)) => Some(SentParty::Valid(party)),
        // Invalid, and reported: kept as sent, so that the claim's other rules still run.
        Some(None) => ["CPR", "CVR"].into_iter().find_map(|kind| {
            element.child(kind).map(|number| SentParty::Invalid {
                kind,
                raw: number.text().to_string(),
                shown: if kind == "CPR" { mask_cpr(number.text()) } else { number.text().to_string() },
                loc: number.loc(child_path(path, kind)),
            })
        }),
        None => {
            let loc = f.loc();
            f.findings.push(Finding::new(Rejection::Schema("hæfteren mangler CPR eller CVR".into()), &loc));
            None
        }
    };
    Some(Haefter { loc, role: role?, party: party?, name: name?, address })
}
