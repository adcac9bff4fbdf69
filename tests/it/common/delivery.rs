//! Builds SF1590_A deliveries as the wire model says, one element per line so that line numbers in receipts
//! can be asserted.

use std::fmt::Write;

pub fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Clone, Debug)]
pub struct Posting {
    pub id: String,
    pub amount: String,
    pub side: &'static str,
    pub currency: Option<String>,
    pub date: String,
    pub text: String,
    pub funktion: String,
    pub dranst: String,
    pub art: String,
    pub omkostningssted: Option<String>,
    pub dimensions: Vec<(String, String)>,
    /// ("CPR" | "CVR", number)
    pub party: Option<(&'static str, String)>,
}

impl Posting {
    /// A payout of cash benefit: 5.57.72 / dranst 1 / art 5.2.
    pub fn debit(id: u32, amount: &str) -> Self {
        Posting {
            id: id.to_string(),
            amount: amount.into(),
            side: "D",
            currency: Some("DKK".into()),
            date: today(),
            text: "Kontanthjælp".into(),
            funktion: "5.57.72".into(),
            dranst: "1".into(),
            art: "5.2".into(),
            omkostningssted: Some("OMK-4410".into()),
            dimensions: vec![("Sag".into(), "S-118".into())],
            party: Some(("CPR", "0101901234".into())),
        }
    }

    /// The counter entry on a balance account: 9.51.01 / dranst 0 / art 9.5.
    pub fn credit(id: u32, amount: &str) -> Self {
        Posting {
            id: id.to_string(),
            amount: amount.into(),
            side: "K",
            currency: None,
            date: today(),
            text: "Modpost".into(),
            funktion: "9.51.01".into(),
            dranst: "0".into(),
            art: "9.5".into(),
            omkostningssted: None,
            dimensions: Vec::new(),
            party: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Bilag {
    pub id: String,
    pub date: String,
    pub postings: Vec<Posting>,
}

impl Bilag {
    /// A balanced bilag: one payout and its counter entry.
    pub fn balanced(id: &str, amount: &str) -> Self {
        Bilag { id: id.into(), date: today(), postings: vec![Posting::debit(1, amount), Posting::credit(2, amount)] }
    }
}

#[derive(Clone, Debug)]
pub struct Delivery {
    pub delivery_id: String,
    pub sender: String,
    pub authority: String,
    pub bilag: Vec<Bilag>,
    /// Extra SOAP header blocks, as raw XML.
    pub header: String,
}

impl Delivery {
    pub fn new(bilag: Vec<Bilag>) -> Self {
        Delivery { delivery_id: new_id(), sender: super::KY.into(), authority: super::OUR_CVR.into(), bilag, header: String::new() }
    }

    pub fn one(bilag_id: &str) -> Self {
        Self::new(vec![Bilag::balanced(bilag_id, "1250.50")])
    }

    /// The ModtagFinansbilag element. The first line of the element is line `first_line` of the document.
    pub fn body(&self) -> String {
        let mut x = String::new();
        writeln!(x, "<ModtagFinansbilag xmlns=\"urn:fkoeko:sf1590a:v1\">").unwrap();
        writeln!(x, "<LeveranceId>{}</LeveranceId>", self.delivery_id).unwrap();
        writeln!(x, "<AfsenderSystem>{}</AfsenderSystem>", self.sender).unwrap();
        writeln!(x, "<Myndighed>{}</Myndighed>", self.authority).unwrap();
        writeln!(x, "<Dannet>{}T08:00:00+01:00</Dannet>", today()).unwrap();
        for bilag in &self.bilag {
            writeln!(x, "<Finansbilag>").unwrap();
            writeln!(x, "<BilagId>{}</BilagId>", bilag.id).unwrap();
            writeln!(x, "<Bilagsdato>{}</Bilagsdato>", bilag.date).unwrap();
            for p in &bilag.postings {
                writeln!(x, "<Postering>").unwrap();
                writeln!(x, "<PosteringId>{}</PosteringId>", p.id).unwrap();
                writeln!(x, "<Beloeb>{}</Beloeb>", p.amount).unwrap();
                writeln!(x, "<DebetKredit>{}</DebetKredit>", p.side).unwrap();
                if let Some(currency) = &p.currency {
                    writeln!(x, "<Valuta>{currency}</Valuta>").unwrap();
                }
                writeln!(x, "<Posteringsdato>{}</Posteringsdato>", p.date).unwrap();
                writeln!(x, "<Posteringstekst>{}</Posteringstekst>", p.text).unwrap();
                writeln!(x, "<Kontering>").unwrap();
                writeln!(x, "<Funktion>{}</Funktion>", p.funktion).unwrap();
                writeln!(x, "<Dranst>{}</Dranst>", p.dranst).unwrap();
                writeln!(x, "<Art>{}</Art>", p.art).unwrap();
                if let Some(omk) = &p.omkostningssted {
                    writeln!(x, "<Omkostningssted>{omk}</Omkostningssted>").unwrap();
                }
                for (name, value) in &p.dimensions {
                    writeln!(x, "<Dimension><Navn>{name}</Navn><Vaerdi>{value}</Vaerdi></Dimension>").unwrap();
                }
                writeln!(x, "</Kontering>").unwrap();
                if let Some((kind, number)) = &p.party {
                    writeln!(x, "<Part>\n<{kind}>{number}</{kind}>\n</Part>").unwrap();
                }
                writeln!(x, "</Postering>").unwrap();
            }
            writeln!(x, "</Finansbilag>").unwrap();
        }
        write!(x, "</ModtagFinansbilag>").unwrap();
        x
    }

    /// As a batch file: the same children under FinansbilagLeverance, the root on line 2.
    pub fn masse(&self) -> String {
        let body =
            self.body().replace("<ModtagFinansbilag ", "<FinansbilagLeverance ").replace("</ModtagFinansbilag>", "</FinansbilagLeverance>");
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}\n")
    }

    /// A SOAP 1.1 call. The body element starts on line 4.
    pub fn soap11(&self) -> String {
        envelope("http://schemas.xmlsoap.org/soap/envelope/", &self.header, &self.body())
    }

    pub fn soap12(&self) -> String {
        envelope("http://www.w3.org/2003/05/soap-envelope", &self.header, &self.body())
    }
}

pub fn envelope(ns: &str, header: &str, body: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{ns}\"><soap:Header>{header}</soap:Header>\n<soap:Body>\n{body}\n</soap:Body>\n</soap:Envelope>\n")
}

/// The line (1-based) of the first occurrence of `needle` in `doc`.
pub fn line_of(doc: &str, needle: &str) -> u32 {
    let at = doc.find(needle).unwrap_or_else(|| panic!("{needle} not in document"));
    doc[..at].matches('\n').count() as u32 + 1
}

/// The whole envelope on one line, as most clients send it.
pub fn one_line(xml: &str) -> String {
    xml.lines().map(str::trim).collect::<Vec<_>>().join("")
}

/// Indented two spaces a level, as a pretty-printing client sends it (the builder writes one tag a line).
pub fn indented(xml: &str) -> String {
    let mut depth: usize = 0;
    let mut out = String::new();
    for line in xml.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let closes_first = line.starts_with("</");
        if closes_first {
            depth = depth.saturating_sub(1);
        }
        out.push_str(&"  ".repeat(depth));
        out.push_str(line);
        out.push('\n');
        let opens = line.matches('<').count() - line.matches("</").count() - line.matches("/>").count() - line.matches("<?").count();
        let closes = line.matches("</").count() - usize::from(closes_first);
        depth = (depth + opens).saturating_sub(closes);
    }
    out
}
