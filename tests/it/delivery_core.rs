//! The delivery core in process, without HTTP or a server: the matrix of rules and codes, each case sent as a
//! straks call (indented and on one line) and as a batch file. The two transports are decided by the same
//! functions, so each case gets the same codes at the same places, counted from the delivery's root. Fast: one
//! `App` for all cases, and a dry run (`pipeline::dry_run`, what `fkoeko validate` runs) writes nothing.

use std::sync::Arc;

use fkoeko_adapter::domain::receipt::ReceiptSet;
use fkoeko_adapter::startup::App;

use crate::common::claims::{Claim, ClaimDelivery, Party};
use crate::common::delivery::{line_of, new_id, one_line, Delivery, Posting};
use crate::common::*;

struct Core {
    _dir: tempfile::TempDir,
    url: String,
    app: Arc<App>,
}

/// One error as a receipt states it, its path and line counted from the delivery's root element.
type Placed = (String, String, Option<i64>, Option<u32>);

impl Core {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = new_database_url(dir.path());
        let app = App::build(&test_config(&url)).unwrap();
        Core { _dir: dir, url, app }
    }

    fn decide(&self, document: &str) -> ReceiptSet {
        fkoeko_adapter::pipeline::dry_run(&self.app.pipeline, document.as_bytes()).unwrap().receipts
    }

    /// Each receipt's reference and its errors, placed relative to the root (`root` is the root's start tag).
    fn placed(&self, document: &str, root: &str) -> Vec<(String, Vec<Placed>)> {
        let root_line = line_of(document, root) as i64;
        let root_path = format!("/{}", &root[1..]);
        self.decide(document)
            .receipts
            .iter()
            .map(|r| {
                let errors = r
                    .errors
                    .iter()
                    .map(|e| {
                        let path = e.path.clone().unwrap_or_default().replacen(&root_path, "", 1);
                        (e.code.as_str().to_string(), path, e.line.map(|l| l as i64 - root_line), e.col)
                    })
                    .collect();
                (r.reference.clone(), errors)
            })
            .collect()
    }
}

fn codes(placed: &[(String, Vec<Placed>)]) -> Vec<String> {
    placed.iter().flat_map(|(_, errors)| errors.iter().map(|e| e.0.clone())).collect()
}

fn without_lines(placed: &[(String, Vec<Placed>)]) -> Vec<(String, Vec<(String, String)>)> {
    placed.iter().map(|(r, errors)| (r.clone(), errors.iter().map(|e| (e.0.clone(), e.1.clone())).collect())).collect()
}

#[test]
fn every_rule_gets_the_same_code_at_the_same_place_by_straks_and_in_a_batch_file() {
    let core = Core::new();
    let with_posting = |change: &dyn Fn(&mut Posting)| {
        let mut d = Delivery::one(&format!("CORE-{}", new_id()));
        change(&mut d.bilag[0].postings[0]);
        d
    };
    let finans: Vec<(&str, Delivery)> = vec![
        ("", Delivery::one("CORE-OK")),
        ("FORMAT_XSD", with_posting(&|p| p.art = "52".into())),
        ("AFSENDER_UKENDT", Delivery { sender: new_id(), ..Delivery::one("CORE-UKENDT") }),
        ("AFSENDER_UKENDT", Delivery { sender: DEBTOR_ONLY_SENDER.into(), ..Delivery::one("CORE-KUN-B") }),
        ("AFSENDER_IKKE_AKTIV", Delivery { sender: EXPIRED_SENDER.into(), ..Delivery::one("CORE-UDLOEBET") }),
        ("MYNDIGHED_FORKERT", Delivery { authority: "12345674".into(), ..Delivery::one("CORE-MYNDIGHED") }),
        ("SORTIMENT_KONTERING", with_posting(&|p| p.funktion = "5.57.71".into())),
        ("REGEL_BALANCE", {
            let mut d = Delivery::one("CORE-BALANCE");
            d.bilag[0].postings[1].amount = "1250.49".into();
            d
        }),
        ("REGEL_POSTERING_ID", {
            let mut d = Delivery::one("CORE-POSTID");
            d.bilag[0].postings[1].id = "1".into();
            d
        }),
        ("REGEL_PERIODE_LUKKET", with_posting(&|p| p.date = "2020-01-15".into())),
        ("REGEL_CPR", with_posting(&|p| p.party = Some(("CPR", "3102901234".into())))),
        ("REGEL_CVR", with_posting(&|p| p.party = Some(("CVR", "12345678".into())))),
    ];
    for (code, delivery) in &finans {
        let straks = core.placed(&delivery.soap11(), "<ModtagFinansbilag");
        let masse = core.placed(&delivery.masse(), "<FinansbilagLeverance");
        let found = codes(&straks);
        match *code {
            "" => assert!(found.is_empty(), "a well-made finansbilag is accepted: {straks:?}"),
            code => assert!(found.iter().any(|c| c == code), "{code} expected: {straks:?}"),
        }
        assert_eq!(straks, masse, "{code}: straks and batch file differ");
        let one_line = core.placed(&one_line(&delivery.soap11()), "<ModtagFinansbilag");
        assert_eq!(without_lines(&one_line), without_lines(&straks), "{code}: on one line");
    }

    let claims: Vec<(&str, ClaimDelivery)> = vec![
        ("", ClaimDelivery::one(Claim::repayment("CORE-F-OK"))),
        ("REGEL_CPR", {
            let mut claim = Claim::repayment("CORE-F-CPR");
            claim.parties = vec![Party::person("JuridiskAnsvarlig", "3102901234", "Jens Jensen")];
            ClaimDelivery::one(claim)
        }),
        ("REGEL_CVR", {
            let mut claim = Claim::repayment("CORE-F-CVR");
            claim.parties = vec![Party::company("JuridiskAnsvarlig", "12345678", "Firma A/S")];
            ClaimDelivery::one(claim)
        }),
        ("FORMAT_XSD", {
            let mut claim = Claim::repayment("CORE-F-XSD");
            claim.principal = "mange penge".into();
            ClaimDelivery::one(claim)
        }),
    ];
    for (code, delivery) in &claims {
        let straks = core.placed(&delivery.soap11(), "<ModtagFordring");
        let masse = core.placed(&delivery.masse(), "<FordringLeverance");
        let found = codes(&straks);
        match *code {
            "" => assert!(found.is_empty(), "a well-made fordring is accepted: {straks:?}"),
            code => assert!(found.iter().any(|c| c == code), "{code} expected: {straks:?}"),
        }
        assert_eq!(straks, masse, "{code}: straks and batch file differ");
    }
    assert_eq!(count_in(&core.url, "SELECT COUNT(*) AS n FROM deliveries"), 0, "a dry run writes nothing");
}

/// receipts.md, "Which errors a receipt lists": every error the sender can act on, found in one pass.
#[test]
fn an_invalid_cpr_does_not_hide_the_claims_other_errors_and_outside_the_sortiment_is_not_also_unmapped() {
    let core = Core::new();
    let codes_of = |document: &str, root: &str| -> Vec<String> {
        let mut found = codes(&core.placed(document, root));
        found.sort();
        found
    };
    // A hæfter with an invalid CPR number, a second JuridiskAnsvarlig (hæfter rule), no address (master data its
    // type requires) and a due date before the date it was established.
    let mut claim = Claim::repayment("CORE-F-ALL");
    let mut invalid = Party::person("JuridiskAnsvarlig", "3102901234", "Jens Jensen");
    invalid.address = false;
    claim.parties = vec![invalid, Party::person("JuridiskAnsvarlig", "0101901234", "Jens Jensen")];
    claim.due = "2026-09-01".into();
    let delivery = ClaimDelivery::one(claim);
    let expected = ["REGEL_CPR", "REGEL_DATO", "REGEL_HAEFTER", "REGEL_STAMDATA"];
    for (document, root) in [(delivery.soap11(), "<ModtagFordring"), (delivery.masse(), "<FordringLeverance")] {
        let found = codes_of(&document, root);
        for code in expected {
            assert!(found.iter().any(|c| c == code), "{code} missing beside the invalid CPR: {found:?}");
        }
    }
    // The same party named twice, its number invalid both times: still found.
    let mut twice = Claim::repayment("CORE-F-TWICE");
    twice.parties = vec![
        Party::person("JuridiskAnsvarlig", "3102901234", "Jens Jensen"),
        Party::person("JuridiskMedhaefter", "3102901234", "Jens Jensen"),
    ];
    let found = codes_of(&ClaimDelivery::one(twice).soap11(), "<ModtagFordring");
    assert_eq!(found, ["REGEL_CPR", "REGEL_CPR", "REGEL_HAEFTER"]);

    // A kontering and a fordringstype outside the sender's sortiment: that alone, not also "add a mapping row".
    let mut outside = Delivery::one("CORE-UDENFOR");
    outside.bilag[0].postings[0].funktion = "5.57.71".into();
    assert_eq!(codes_of(&outside.soap11(), "<ModtagFinansbilag"), ["SORTIMENT_KONTERING"]);
    let mut claim = Claim::repayment("CORE-F-UDENFOR");
    claim.claim_type = "UKENDT-TYPE".into();
    assert_eq!(codes_of(&ClaimDelivery::one(claim).soap11(), "<ModtagFordring"), ["SORTIMENT_FORDRINGSTYPE"]);
}
