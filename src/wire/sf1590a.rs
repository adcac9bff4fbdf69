//! SF1590_A wire model v1 (namespace urn:fkoeko:sf1590a:v1) to domain types.

use crate::domain::finans::{Finansbilag, Located, Postering};
use crate::domain::rejection::Finding;
use crate::domain::values::{Beloeb, DebetKredit, ValueError, Valuta};
use crate::xml::tree::Element;

use super::{child_path, nth_path, read_kontering, read_party, Fields, WireSpec};

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
        match read_postering(posting, nth_path(&base, "Postering", n + 1), f.findings) {
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
    let party = element.child("Part").and_then(|part| read_party(part, &child_path(&f.path, "Part"), f.findings));
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

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::domain::rejection::Code;
    use crate::domain::rules::{check_finansbilag, RuleSettings};
    use crate::xml::tree::{read_document, XmlLimits};

    /// A finansbilag of two postings, each element on a line of its own; `first` and `second` are the inside of
    /// each Postering after its PosteringId.
    fn bilag(first: &str, second: &str) -> String {
        let kontering = "<Kontering><Funktion>5.57.72</Funktion><Dranst>1</Dranst><Art>5.2</Art></Kontering>";
        format!(
            "<Finansbilag xmlns=\"urn:fkoeko:sf1590a:v1\">\n<BilagId>B-1</BilagId>\n<Bilagsdato>2026-11-20</Bilagsdato>\n\
             <Postering>\n<PosteringId>1</PosteringId>\n{first}\n<Posteringstekst>t</Posteringstekst>\n{kontering}\n</Postering>\n\
             <Postering>\n<PosteringId>2</PosteringId>\n{second}\n<Posteringstekst>t</Posteringstekst>\n{kontering}\n</Postering>\n\
             </Finansbilag>"
        )
    }

    fn posting(amount: &str, side: &str, date: &str) -> String {
        format!("<Beloeb>{amount}</Beloeb>\n<DebetKredit>{side}</DebetKredit>\n<Posteringsdato>{date}</Posteringsdato>")
    }

    fn settings() -> RuleSettings {
        RuleSettings { open_periods: Vec::new(), currencies: vec![Valuta::dkk()] }
    }

    /// The findings of reading and checking `xml` on `today`, as (code, path, line).
    fn findings(xml: &str, today: NaiveDate) -> Vec<(Code, String, Option<u32>)> {
        let root = read_document(xml, &XmlLimits::default()).unwrap();
        let mut found = Vec::new();
        if let Some(bilag) = read_finansbilag(&root, 1, "/F[1]".into(), &mut found) {
            found.extend(check_finansbilag(&bilag, &settings(), today));
        }
        found
            .iter()
            .map(|f| (f.code(), f.loc.as_ref().map(|l| l.path.clone()).unwrap_or_default(), f.loc.as_ref().and_then(|l| l.line)))
            .collect()
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn a_balanced_bilag_in_an_open_period_reads_and_passes() {
        let xml = bilag(&posting("100.00", "D", "2026-11-20"), &posting("100.00", "K", "2026-10-31"));
        assert_eq!(findings(&xml, day("2026-11-25")), []);
    }

    #[test]
    fn the_open_periods_are_this_and_last_month_also_across_a_new_year() {
        let xml = bilag(&posting("1.00", "D", "2025-12-31"), &posting("1.00", "K", "2025-11-30"));
        // In January, December of last year is open and November is not.
        assert_eq!(findings(&xml, day("2026-01-05")), [(Code::RegelPeriodeLukket, "/F[1]/Postering[2]/Posteringsdato".into(), Some(16))]);
    }

    #[test]
    fn unbalanced_and_repeated_ids_are_each_found_where_they_are() {
        let mut xml = bilag(&posting("100.00", "D", "2026-11-20"), &posting("99.99", "K", "2026-11-20"));
        xml = xml.replace("<PosteringId>2</PosteringId>", "<PosteringId>1</PosteringId>");
        assert_eq!(
            findings(&xml, day("2026-11-25")),
            [(Code::RegelPosteringId, "/F[1]/Postering[2]/PosteringId".into(), Some(13)), (Code::RegelBalance, "/F[1]".into(), Some(1))]
        );
    }

    #[test]
    fn a_value_that_fails_its_type_is_reported_at_its_element_and_the_rest_still_read() {
        let xml = bilag(&posting("12,50", "D", "2026-11-20"), &posting("100.00", "X", "2026-13-01"));
        let found = findings(&xml, day("2026-11-25"));
        let paths: Vec<&str> = found.iter().map(|f| f.1.as_str()).collect();
        assert_eq!(
            paths,
            ["/F[1]/Postering[1]/Beloeb", "/F[1]/Postering[2]/DebetKredit", "/F[1]/Postering[2]/Posteringsdato"],
            "{found:?}"
        );
        assert_eq!(found[0].2, Some(6), "on the line of its element");
    }
}
