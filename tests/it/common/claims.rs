//! Builds SF1590_B deliveries (ModtagFordring) as the wire model says, one element per line.

use std::fmt::Write;

use super::delivery::{envelope, new_id, today};

#[derive(Clone, Debug)]
pub struct Party {
    pub role: &'static str,
    /// "CPR" or "CVR"
    pub kind: &'static str,
    pub number: String,
    pub name: String,
    pub address: bool,
}

impl Party {
    pub fn person(role: &'static str, cpr: &str, name: &str) -> Self {
        Party { role, kind: "CPR", number: cpr.into(), name: name.into(), address: true }
    }

    pub fn company(role: &'static str, cvr: &str, name: &str) -> Self {
        Party { role, kind: "CVR", number: cvr.into(), name: name.into(), address: true }
    }
}

#[derive(Clone, Debug)]
pub struct Claim {
    pub id: String,
    pub claim_type: String,
    pub principal: String,
    pub currency: Option<String>,
    pub period: (Option<String>, Option<String>),
    pub established: String,
    pub due: String,
    pub last_timely: String,
    pub limitation: Option<String>,
    pub related: Option<String>,
    pub parties: Vec<Party>,
    /// (Funktion, Dranst, Art)
    pub kontering: Option<(String, String, String)>,
}

impl Claim {
    /// Repayment of cash benefit from one citizen, with the period and address its type requires.
    pub fn repayment(id: &str) -> Self {
        Claim {
            id: id.into(),
            claim_type: "KONTANT-TILB".into(),
            principal: "4250.00".into(),
            currency: None,
            period: (Some("2026-08-01".into()), Some("2026-08-31".into())),
            established: "2026-09-15".into(),
            due: "2026-10-01".into(),
            last_timely: "2026-10-15".into(),
            limitation: Some("2029-10-15".into()),
            related: None,
            parties: vec![Party::person("JuridiskAnsvarlig", "0101901234", "Jens Jensen")],
            kontering: None,
        }
    }

    /// Interest on the main claim `main`.
    pub fn interest(id: &str, main: &str) -> Self {
        Claim {
            claim_type: "RENTE-KH".into(),
            principal: "37.50".into(),
            period: (None, None),
            related: Some(main.into()),
            ..Claim::repayment(id)
        }
    }
}

#[derive(Clone, Debug)]
pub struct ClaimDelivery {
    pub delivery_id: String,
    pub sender: String,
    pub authority: String,
    pub claims: Vec<Claim>,
}

impl ClaimDelivery {
    pub fn new(claims: Vec<Claim>) -> Self {
        ClaimDelivery { delivery_id: new_id(), sender: super::KY.into(), authority: super::OUR_CVR.into(), claims }
    }

    pub fn one(claim: Claim) -> Self {
        Self::new(vec![claim])
    }

    pub fn body(&self) -> String {
        let mut x = String::new();
        let mut tag = |name: &str, value: &str| writeln!(x, "<{name}>{value}</{name}>").unwrap();
        tag("LeveranceId", &self.delivery_id);
        tag("AfsenderSystem", &self.sender);
        tag("Myndighed", &self.authority);
        tag("Dannet", &format!("{}T08:00:00Z", today()));
        let mut claims = String::new();
        for c in &self.claims {
            let mut y = String::new();
            let mut tag = |name: &str, value: &str| writeln!(y, "<{name}>{value}</{name}>").unwrap();
            tag("FordringId", &c.id);
            tag("Fordringstype", &c.claim_type);
            tag("Hovedstol", &c.principal);
            if let Some(currency) = &c.currency {
                tag("Valuta", currency);
            }
            tag("Beskrivelse", "Tilbagebetaling af for meget udbetalt kontanthjælp");
            if let Some(from) = &c.period.0 {
                tag("PeriodeFra", from);
            }
            if let Some(to) = &c.period.1 {
                tag("PeriodeTil", to);
            }
            tag("Stiftelsesdato", &c.established);
            tag("Forfaldsdato", &c.due);
            tag("SidsteRettidigeBetalingsdato", &c.last_timely);
            if let Some(limitation) = &c.limitation {
                tag("Foraeldelsesdato", limitation);
            }
            if let Some(related) = &c.related {
                tag("RelateretFordringId", related);
            }
            for p in &c.parties {
                writeln!(y, "<Haefter>").unwrap();
                writeln!(y, "<Rolle>{}</Rolle>", p.role).unwrap();
                writeln!(y, "<{0}>{1}</{0}>", p.kind, p.number).unwrap();
                writeln!(y, "<Navn>{}</Navn>", p.name).unwrap();
                if p.address {
                    writeln!(y, "<Adresse>\n<Vejnavn>Byvej</Vejnavn>\n<Husnummer>12</Husnummer>\n<Etage>2</Etage>\n<Doer>tv</Doer>\n<Postnummer>2750</Postnummer>\n<By>Ballerup</By>\n</Adresse>").unwrap();
                }
                writeln!(y, "</Haefter>").unwrap();
            }
            if let Some((funktion, dranst, art)) = &c.kontering {
                writeln!(y, "<Kontering>\n<Funktion>{funktion}</Funktion>\n<Dranst>{dranst}</Dranst>\n<Art>{art}</Art>\n</Kontering>")
                    .unwrap();
            }
            write!(claims, "<Fordring>\n{y}</Fordring>\n").unwrap();
        }
        format!("<ModtagFordring xmlns=\"urn:fkoeko:sf1590b:v1\">\n{x}{claims}</ModtagFordring>")
    }

    /// As a batch file: the same children under FordringLeverance.
    pub fn masse(&self) -> String {
        let body = self.body().replace("<ModtagFordring ", "<FordringLeverance ").replace("</ModtagFordring>", "</FordringLeverance>");
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}\n")
    }

    pub fn soap11(&self) -> String {
        envelope("http://schemas.xmlsoap.org/soap/envelope/", "", &self.body())
    }

    pub fn soap12(&self) -> String {
        envelope("http://www.w3.org/2003/05/soap-envelope", "", &self.body())
    }
}
