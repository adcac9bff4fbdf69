//! SF1590_B_1 in domain terms: claims (fordringer) with their liable parties (hæftere), and the rules of
//! sf1590b.md that the schema cannot express.

use chrono::NaiveDate;

use super::finans::{Kontering, Located, Party};
use super::rejection::{Finding, Loc, Rejection};
use super::sortiment::{ClaimTypeRule, Stamdata};
use super::values::{Beloeb, Valuta};

/// A claim. `P` is how its hæftere's CPR or CVR numbers are held: valid (`Located<Party>`, the default, the only
/// kind that is booked), or as sent (`SentParty`), so that the claim's rules run even where a number is invalid
/// (the receipt lists every error: receipts.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Fordring<P = Located<Party>> {
    pub index: usize,
    pub loc: Loc,
    pub fordring_id: String,
    pub claim_type: Located<String>,
    pub principal: Beloeb,
    pub currency: Located<Valuta>,
    pub description: String,
    pub period_from: Option<Located<NaiveDate>>,
    pub period_to: Option<Located<NaiveDate>>,
    pub established: Located<NaiveDate>,
    pub due: Located<NaiveDate>,
    pub last_timely_payment: Located<NaiveDate>,
    pub limitation: Option<Located<NaiveDate>>,
    pub related: Option<Located<String>>,
    pub parties: Vec<Haefter<P>>,
    pub kontering: Option<Located<Kontering>>,
}

/// A claim as it was sent: its hæftere's numbers valid or not.
pub type SentFordring = Fordring<SentParty>;

/// A hæfter's CPR or CVR number as sent: valid, or not (reported already where it was read), kept so that the
/// other rules of the claim can still run over it.
#[derive(Debug, Clone, PartialEq)]
pub enum SentParty {
    Valid(Located<Party>),
    Invalid {
        /// "CPR" or "CVR".
        kind: &'static str,
        /// As sent, only to tell two of them apart.
        raw: String,
        /// As a receipt may show it.
        shown: String,
        loc: Loc,
    },
}

/// What the rules need of a hæfter's number: who it is (to find a party named twice), where, and how it may be shown.
pub trait PartyNumber {
    fn same_as(&self, other: &Self) -> bool;
    fn loc(&self) -> &Loc;
    fn shown(&self) -> String;
}

impl PartyNumber for Located<Party> {
    fn same_as(&self, other: &Self) -> bool {
        self.value == other.value
    }
    fn loc(&self) -> &Loc {
        &self.loc
    }
    fn shown(&self) -> String {
        masked(&self.value)
    }
}

impl PartyNumber for SentParty {
    fn same_as(&self, other: &Self) -> bool {
        match (self, other) {
            (SentParty::Valid(a), SentParty::Valid(b)) => a.same_as(b),
            (SentParty::Invalid { kind: ka, raw: ra, .. }, SentParty::Invalid { kind: kb, raw: rb, .. }) => ka == kb && ra == rb,
            _ => false,
        }
    }
    fn loc(&self) -> &Loc {
        match self {
            SentParty::Valid(party) => &party.loc,
            SentParty::Invalid { loc, .. } => loc,
        }
    }
    fn shown(&self) -> String {
        match self {
            SentParty::Valid(party) => party.shown(),
            SentParty::Invalid { shown, .. } => shown.clone(),
        }
    }
}

impl SentFordring {
    /// The claim with every hæfter's number valid; `None` when one is not (that was reported where it was read).
    pub fn into_valid(self) -> Option<Fordring> {
        let mut parties = Vec::with_capacity(self.parties.len());
        for h in self.parties {
            let SentParty::Valid(party) = h.party else { return None };
            parties.push(Haefter { loc: h.loc, role: h.role, party, name: h.name, address: h.address });
        }
        Some(Fordring {
            index: self.index,
            loc: self.loc,
            fordring_id: self.fordring_id,
            claim_type: self.claim_type,
            principal: self.principal,
            currency: self.currency,
            description: self.description,
            period_from: self.period_from,
            period_to: self.period_to,
            established: self.established,
            due: self.due,
            last_timely_payment: self.last_timely_payment,
            limitation: self.limitation,
            related: self.related,
            parties,
            kontering: self.kontering,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rolle {
    JuridiskAnsvarlig,
    JuridiskMedhaefter,
}

impl Rolle {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "JuridiskAnsvarlig" => Some(Rolle::JuridiskAnsvarlig),
            "JuridiskMedhaefter" => Some(Rolle::JuridiskMedhaefter),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rolle::JuridiskAnsvarlig => "JuridiskAnsvarlig",
            Rolle::JuridiskMedhaefter => "JuridiskMedhaefter",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Haefter<P = Located<Party>> {
    pub loc: Loc,
    pub role: Rolle,
    pub party: P,
    pub name: String,
    pub address: Option<Adresse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Adresse {
    pub street: String,
    pub house_number: String,
    pub floor: Option<String>,
    pub door: Option<String>,
    pub postcode: String,
    pub city: String,
    /// ISO 3166-1 alpha-2; DK when left out.
    pub country: String,
}

/// The rules for one claim that need nothing but the claim and the sender's rule for its type.
pub fn check_fordring<P: PartyNumber>(fordring: &Fordring<P>, type_rule: Option<&ClaimTypeRule>, currencies: &[Valuta]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut date_order = |earlier: &Located<NaiveDate>, later: &Located<NaiveDate>, names: (&str, &str), strictly: bool| {
        let wrong = if strictly { later.value <= earlier.value } else { later.value < earlier.value };
        if wrong {
            let relation = if strictly { "efter" } else { "samme dag som eller efter" };
            findings.push(
                Finding::new(
                    Rejection::DateOrder(format!("{} ({}) skal ligge {relation} {} ({})", names.1, later.value, names.0, earlier.value)),
                    &later.loc,
                )
                .with_value(later.value.to_string()),
            );
        }
    };
    date_order(&fordring.established, &fordring.due, ("Stiftelsesdato", "Forfaldsdato"), false);
    date_order(&fordring.due, &fordring.last_timely_payment, ("Forfaldsdato", "SidsteRettidigeBetalingsdato"), false);
    if let Some(limitation) = &fordring.limitation {
        date_order(&fordring.last_timely_payment, limitation, ("SidsteRettidigeBetalingsdato", "Foraeldelsesdato"), true);
    }
    match (&fordring.period_from, &fordring.period_to) {
        (Some(from), Some(to)) => date_order(from, to, ("PeriodeFra", "PeriodeTil"), false),
        (Some(only), None) | (None, Some(only)) => findings
            .push(Finding::new(Rejection::DateOrder("PeriodeFra og PeriodeTil skal angives begge eller ingen af dem".into()), &only.loc)),
        (None, None) => {}
    }

    if !currencies.contains(&fordring.currency.value) {
        let allowed = currencies.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
        findings.push(
            Finding::new(Rejection::CurrencyNotAllowed(fordring.currency.value.to_string(), allowed), &fordring.currency.loc)
                .with_value(fordring.currency.value.to_string()),
        );
    }

    let responsible = fordring.parties.iter().filter(|h| h.role == Rolle::JuridiskAnsvarlig).count();
    if responsible == 0 {
        findings.push(Finding::new(Rejection::Liability("ingen hæfter har rollen JuridiskAnsvarlig".into()), &fordring.loc));
    }
    for (n, haefter) in fordring.parties.iter().enumerate() {
        if haefter.role == Rolle::JuridiskAnsvarlig && fordring.parties[..n].iter().any(|h| h.role == Rolle::JuridiskAnsvarlig) {
            findings.push(Finding::new(Rejection::Liability("mere end én hæfter har rollen JuridiskAnsvarlig".into()), &haefter.loc));
        }
        if fordring.parties[..n].iter().any(|h| h.party.same_as(&haefter.party)) {
            findings.push(
                Finding::new(Rejection::Liability("den samme part står som hæfter mere end én gang".into()), haefter.party.loc())
                    .with_value(haefter.party.shown()),
            );
        }
    }

    if let Some(rule) = type_rule {
        for required in &rule.required {
            let present = match required {
                Stamdata::Periode => fordring.period_from.is_some() && fordring.period_to.is_some(),
                Stamdata::Foraeldelsesdato => fordring.limitation.is_some(),
                Stamdata::Adresse => fordring.parties.iter().all(|h| h.address.is_some()),
                Stamdata::Kontering => fordring.kontering.is_some(),
                Stamdata::RelateretFordring => fordring.related.is_some(),
            };
            if !present {
                findings.push(Finding::new(Rejection::MissingMasterData(required.describe(), rule.code.clone()), &fordring.loc));
            }
        }
    }
    findings
}

/// What a receipt may show of a party.
pub fn masked(party: &Party) -> String {
    match party {
        Party::Cpr(cpr) => cpr.masked(),
        Party::Cvr(cvr) => cvr.to_string(),
    }
}
