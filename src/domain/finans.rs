//! SF1590_A in domain terms: a delivery of finansbilag, each a set of posteringer. Built by the wire layer from
//! schema-valid XML; every field holds a checked value.

use chrono::NaiveDate;
use uuid::Uuid;

use super::rejection::Loc;
use super::values::{Art, Beloeb, Cpr, Cvr, DebetKredit, Dranst, Ejerforhold, Funktion, Gruppering, Valuta};

/// A value and where it was in the received XML, so a rule can point at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub loc: Loc,
}

/// What a delivery says about itself, whatever it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryHeader {
    pub delivery_id: Uuid,
    pub sender: Located<Uuid>,
    /// Kept raw: a wrong value is a MYNDIGHED_FORKERT, whatever its form.
    pub authority: Located<String>,
    pub created: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finansbilag {
    /// 1-based position in the delivery.
    pub index: usize,
    pub loc: Loc,
    pub bilag_id: String,
    pub date: NaiveDate,
    pub text: Option<String>,
    pub postings: Vec<Postering>,
}

impl Finansbilag {
    /// Drops the positions of an accepted finansbilag: nothing points into it any more, and a delivery of
    /// 70,000 postings waiting for its transaction then holds their values, not their paths.
    pub fn forget_positions(&mut self) {
        self.loc = Loc::default();
        for p in &mut self.postings {
            for loc in [&mut p.loc, &mut p.id.loc, &mut p.currency.loc, &mut p.date.loc, &mut p.kontering.loc] {
                *loc = Loc::default();
            }
            if let Some(party) = p.party.as_mut() {
                party.loc = Loc::default();
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Postering {
    pub loc: Loc,
    pub id: Located<u64>,
    pub amount: Beloeb,
    pub side: DebetKredit,
    /// DKK when the element is absent; then the location is the postering's.
    pub currency: Located<Valuta>,
    pub date: Located<NaiveDate>,
    pub text: String,
    pub kontering: Located<Kontering>,
    pub party: Option<Located<Party>>,
    pub case_reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Kontering {
    pub funktion: Funktion,
    pub gruppering: Option<Gruppering>,
    pub dranst: Dranst,
    pub ejerforhold: Option<Ejerforhold>,
    pub art: Art,
    pub omkostningssted: Option<String>,
    pub psp_element: Option<String>,
    pub dimensions: Vec<(String, String)>,
}

impl Kontering {
    /// A field by the name it has in the wire model and in mapping files.
    pub fn field(&self, name: KonteringField) -> Option<&str> {
        match name {
            KonteringField::Funktion => Some(self.funktion.as_str()),
            KonteringField::Gruppering => self.gruppering.as_ref().map(|g| g.as_str()),
            KonteringField::Dranst => Some(self.dranst.as_str()),
            KonteringField::Ejerforhold => self.ejerforhold.as_ref().map(|e| e.as_str()),
            KonteringField::Art => Some(self.art.as_str()),
            KonteringField::Omkostningssted => self.omkostningssted.as_deref(),
            KonteringField::PspElement => self.psp_element.as_deref(),
        }
    }

    pub fn dimension(&self, name: &str) -> Option<&str> {
        self.dimensions.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The single-valued fields of a kontering, as mapping files and sortiment patterns name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KonteringField {
    Funktion,
    Gruppering,
    Dranst,
    Ejerforhold,
    Art,
    Omkostningssted,
    PspElement,
}

impl KonteringField {
    pub const ALL: [KonteringField; 7] = [
        KonteringField::Funktion,
        KonteringField::Gruppering,
        KonteringField::Dranst,
        KonteringField::Ejerforhold,
        KonteringField::Art,
        KonteringField::Omkostningssted,
        KonteringField::PspElement,
    ];

    /// The lower-case column name used in mapping files.
    pub fn column(self) -> &'static str {
        match self {
            KonteringField::Funktion => "funktion",
            KonteringField::Gruppering => "gruppering",
            KonteringField::Dranst => "dranst",
            KonteringField::Ejerforhold => "ejerforhold",
            KonteringField::Art => "art",
            KonteringField::Omkostningssted => "omkostningssted",
            KonteringField::PspElement => "pspelement",
        }
    }

    pub fn from_column(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.column() == name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Party {
    Cpr(Cpr),
    Cvr(Cvr),
}

impl Party {
    pub fn kind(&self) -> &'static str {
        match self {
            Party::Cpr(_) => "CPR",
            Party::Cvr(_) => "CVR",
        }
    }

    /// The full identifier, for the ERP's import table only.
    pub fn expose(&self) -> &str {
        match self {
            Party::Cpr(cpr) => cpr.expose(),
            Party::Cvr(cvr) => cvr.as_str(),
        }
    }
}
