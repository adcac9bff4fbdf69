//! SF1590_B_1 straks (claims and their debtors) against the running server with SQLite.

use crate::common::claims::{Claim, ClaimDelivery, Party};
use crate::common::delivery::new_id;
use crate::common::*;
use fkoeko_adapter::domain::receipt::Status;

const CLAIM1: &str = "/ModtagFordring/Fordring[1]";

fn codes_and_paths(set: &fkoeko_adapter::domain::receipt::ReceiptSet, reference: &str) -> Vec<(String, String)> {
    errors_of(set, reference).into_iter().map(|(c, p)| (c, p.unwrap_or_default())).collect()
}

#[test]
fn accepted_claim_with_two_parties_lands_in_the_import_tables() {
    let app = TestApp::start();
    // The ERP already knows the company as a debtor; the citizen is new to it.
    app.execute("INSERT INTO erp_debtors (identifier_type, identifier, erp_debtor_number) VALUES ('CVR', '29189846', 'D-1001')");
    let mut claim = Claim::repayment("KY-F-1");
    claim.parties.push(Party::company("JuridiskMedhaefter", "29189846", "Byens Vikarer ApS"));
    let set = app.send_claims(&ClaimDelivery::one(claim).soap11());
    let receipt = &set.receipts[0];
    assert_eq!((receipt.reference.as_str(), receipt.status), ("KY-F-1", Status::Accepteret), "{receipt:?}");

    let claims = app.rows(
        "SELECT json_array(id, fordring_id, src_fordringstype, erp_claim_type, principal, currency, period_from, period_to, \
         established, due, last_timely_payment, limitation, erp_account, mapping_rules, status) AS row FROM erp_claims",
        15,
    );
    assert_eq!(claims.len(), 1);
    let c: Vec<String> = claims[0].iter().map(|v| v.clone().unwrap_or_else(|| "NULL".into())).collect();
    assert_eq!(receipt.erp_reference.as_deref(), Some(format!("erp_claims:{}", c[0]).as_str()));
    assert_eq!(
        c[1..],
        [
            "KY-F-1",
            "KONTANT-TILB",
            "DEB-KH-TILBAGEBETALING",
            "4250.00",
            "DKK",
            "2026-08-01",
            "2026-08-31",
            "2026-09-15",
            "2026-10-01",
            "2026-10-15",
            "2029-10-15",
            "55772900",
            "fordringstyper.csv:7",
            "NY"
        ]
    );
    let parties = app.rows(
        "SELECT json_array(p.position, p.role, p.erp_debtor_number, d.identifier_type, d.identifier, d.name, d.street, \
         d.house_number, d.floor, d.door, d.postcode, d.city, d.country) AS row \
         FROM erp_claim_parties p JOIN erp_debtor_data d ON d.id = p.debtor_data_id ORDER BY p.position",
        13,
    );
    let text = |row: &Vec<Option<String>>| row.iter().map(|v| v.clone().unwrap_or_else(|| "NULL".into())).collect::<Vec<_>>();
    assert_eq!(
        text(&parties[0]),
        ["1", "JuridiskAnsvarlig", "NULL", "CPR", "0101901234", "Jens Jensen", "Byvej", "12", "2", "tv", "2750", "Ballerup", "DK"]
    );
    assert_eq!(
        text(&parties[1]),
        ["2", "JuridiskMedhaefter", "D-1001", "CVR", "29189846", "Byens Vikarer ApS", "Byvej", "12", "2", "tv", "2750", "Ballerup", "DK"]
    );

    // A second claim on the same citizen reuses the master-data row: the CPR number is stored once.
    let mut second = Claim::repayment("KY-F-2");
    second.kontering = Some(("5.57.72".into(), "1".into(), "5.2".into()));
    let set = app.send_claims(&ClaimDelivery::one(second).soap11());
    assert_eq!(set.receipts[0].status, Status::Accepteret);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_debtor_data WHERE identifier = '0101901234'"), 1);
    // With a kontering of its own, the account comes from konti.csv.
    let account = app.rows("SELECT json_array(erp_account, mapping_rules) AS row FROM erp_claims WHERE fordring_id = 'KY-F-2'", 2);
    assert_eq!(account, [[Some("55772152".to_string()), Some("fordringstyper.csv:7; konti.csv:12 → kontantydelser.csv:3".to_string())]]);
}

#[test]
fn each_rule_rejects_with_its_code_and_path() {
    let app = TestApp::start();
    let claim = |id: &str, change: &dyn Fn(&mut Claim)| {
        let mut c = Claim::repayment(id);
        change(&mut c);
        ClaimDelivery::one(c)
    };
    // (what, delivery, expected (code, path) of each error)
    type Case = (&'static str, ClaimDelivery, Vec<(&'static str, String)>);
    let cases: Vec<Case> = vec![
        ("schema", claim("B-XSD", &|c| c.parties[0].role = "Ejer"), vec![("FORMAT_XSD", format!("{CLAIM1}/Haefter[1]/Rolle"))]),
        (
            "unknown sender",
            ClaimDelivery { sender: new_id(), ..ClaimDelivery::one(Claim::repayment("B-UKENDT")) },
            vec![("AFSENDER_UKENDT", "/ModtagFordring/AfsenderSystem".into())],
        ),
        (
            "expired sender",
            ClaimDelivery { sender: EXPIRED_SENDER.into(), ..ClaimDelivery::one(Claim::repayment("B-UDLOEBET")) },
            vec![("AFSENDER_IKKE_AKTIV", "/ModtagFordring/AfsenderSystem".into())],
        ),
        (
            "wrong municipality",
            ClaimDelivery { authority: "12345674".into(), ..ClaimDelivery::one(Claim::repayment("B-MYNDIGHED")) },
            vec![("MYNDIGHED_FORKERT", "/ModtagFordring/Myndighed".into())],
        ),
        (
            "claim type outside sortiment",
            claim("B-TYPE", &|c| c.claim_type = "BOEDE".into()),
            // Outside the sortiment, and not also "add a mapping row" (receipts.md).
            vec![("SORTIMENT_FORDRINGSTYPE", format!("{CLAIM1}/Fordringstype"))],
        ),
        (
            "claim type not mapped",
            claim("B-UMAPPET", &|c| c.claim_type = "UMAPPET".into()),
            vec![("MAPNING_MANGLER", format!("{CLAIM1}/Fordringstype"))],
        ),
        (
            "kontering outside sortiment",
            claim("B-KONTERING", &|c| c.kontering = Some(("5.57.71".into(), "1".into(), "5.2".into()))),
            vec![("SORTIMENT_KONTERING", format!("{CLAIM1}/Kontering"))],
        ),
        (
            "due before established",
            claim("B-DATO1", &|c| c.due = "2026-09-14".into()),
            vec![("REGEL_DATO", format!("{CLAIM1}/Forfaldsdato"))],
        ),
        (
            "last timely payment before due",
            claim("B-DATO2", &|c| c.last_timely = "2026-09-30".into()),
            vec![("REGEL_DATO", format!("{CLAIM1}/SidsteRettidigeBetalingsdato"))],
        ),
        (
            "limitation not after last timely payment",
            claim("B-DATO3", &|c| c.limitation = Some("2026-10-15".into())),
            vec![("REGEL_DATO", format!("{CLAIM1}/Foraeldelsesdato"))],
        ),
        (
            "period with only a start",
            claim("B-DATO4", &|c| c.period.1 = None),
            vec![("REGEL_DATO", format!("{CLAIM1}/PeriodeFra")), ("REGEL_STAMDATA", CLAIM1.into())],
        ),
        (
            "period reversed",
            claim("B-DATO5", &|c| c.period = (Some("2026-08-31".into()), Some("2026-08-01".into()))),
            vec![("REGEL_DATO", format!("{CLAIM1}/PeriodeTil"))],
        ),
        (
            "cpr date",
            claim("B-CPR", &|c| c.parties[0].number = "3102901234".into()),
            vec![("REGEL_CPR", format!("{CLAIM1}/Haefter[1]/CPR"))],
        ),
        (
            "cvr check digit",
            claim("B-CVR", &|c| c.parties.push(Party::company("JuridiskMedhaefter", "29189847", "X ApS"))),
            vec![("REGEL_CVR", format!("{CLAIM1}/Haefter[2]/CVR"))],
        ),
        (
            "no responsible party",
            claim("B-HAEFTER1", &|c| c.parties[0].role = "JuridiskMedhaefter"),
            vec![("REGEL_HAEFTER", CLAIM1.into())],
        ),
        (
            "two responsible parties",
            claim("B-HAEFTER2", &|c| c.parties.push(Party::person("JuridiskAnsvarlig", "0202801234", "Karen Hansen"))),
            vec![("REGEL_HAEFTER", format!("{CLAIM1}/Haefter[2]"))],
        ),
        (
            "one party twice",
            claim("B-HAEFTER3", &|c| c.parties.push(Party::person("JuridiskMedhaefter", "0101901234", "Jens Jensen"))),
            vec![("REGEL_HAEFTER", format!("{CLAIM1}/Haefter[2]/CPR"))],
        ),
        ("required period missing", claim("B-STAMDATA1", &|c| c.period = (None, None)), vec![("REGEL_STAMDATA", CLAIM1.into())]),
        ("required address missing", claim("B-STAMDATA2", &|c| c.parties[0].address = false), vec![("REGEL_STAMDATA", CLAIM1.into())]),
        ("currency", claim("B-VALUTA", &|c| c.currency = Some("EUR".into())), vec![("REGEL_VALUTA", format!("{CLAIM1}/Valuta"))]),
        (
            "related claim unknown",
            ClaimDelivery::one(Claim::interest("B-RENTE", "FINDES-IKKE")),
            vec![("REGEL_RELATERET", format!("{CLAIM1}/RelateretFordringId"))],
        ),
    ];
    let total = cases.len() as i64;
    for (name, delivery, expect) in cases {
        let reference = delivery.claims[0].id.clone();
        let set = app.send_claims(&delivery.soap11());
        assert_eq!(set.receipts[0].status, Status::Afvist, "{name}");
        let want: Vec<(String, String)> = expect.iter().map(|(c, p)| (c.to_string(), p.clone())).collect();
        assert_eq!(codes_and_paths(&set, &reference), want, "{name}");
        assert!(set.receipts[0].errors.iter().all(|e| e.line.is_some() && !e.text.is_empty()), "{name}");
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_claims"), 0);
    assert_eq!(app.count("SELECT count(*) AS n FROM receipts WHERE integration = 'SF1590_B' AND status = 'Afvist'"), total);
}

#[test]
fn related_claims_in_one_delivery_and_across_deliveries() {
    let app = TestApp::start();
    // The interest claim relates to the main claim before it in the same delivery.
    let set = app.send_claims(&ClaimDelivery::new(vec![Claim::repayment("MAIN-1"), Claim::interest("RENTE-1", "MAIN-1")]).soap11());
    assert!(set.receipts.iter().all(|r| r.status == Status::Accepteret), "{set:?}");
    assert_eq!(
        app.count("SELECT count(*) AS n FROM erp_claims r JOIN erp_claims m ON r.related_claim_id = m.id WHERE r.fordring_id = 'RENTE-1' AND m.fordring_id = 'MAIN-1'"),
        1
    );
    // ... and to one accepted in an earlier delivery.
    let set = app.send_claims(&ClaimDelivery::one(Claim::interest("RENTE-2", "MAIN-1")).soap11());
    assert_eq!(set.receipts[0].status, Status::Accepteret);

    // A main claim that is rejected cannot be related to, even in the same delivery.
    let mut broken = Claim::repayment("MAIN-2");
    broken.due = "2020-01-01".into();
    let set = app.send_claims(&ClaimDelivery::new(vec![broken, Claim::interest("RENTE-3", "MAIN-2")]).soap11());
    assert_eq!(
        codes_and_paths(&set, "RENTE-3"),
        [("REGEL_RELATERET".to_string(), "/ModtagFordring/Fordring[2]/RelateretFordringId".to_string())]
    );
    // A relation to a claim later in the delivery is not a relation to an earlier one.
    let set = app.send_claims(&ClaimDelivery::new(vec![Claim::interest("RENTE-4", "MAIN-3"), Claim::repayment("MAIN-3")]).soap11());
    assert_eq!(set.receipts[0].status, Status::Afvist);
    assert_eq!(set.receipts[1].status, Status::Accepteret);
}

#[test]
fn cpr_edge_cases_and_cvr_check_digits() {
    let app = TestApp::start();
    let accepted = |cpr_or_cvr: (&'static str, &str)| {
        let mut c = Claim::repayment(&format!("ID-{}", cpr_or_cvr.1));
        c.parties[0].kind = cpr_or_cvr.0;
        c.parties[0].number = cpr_or_cvr.1.into();
        let set = app.send_claims(&ClaimDelivery::one(c).soap11());
        (set.receipts[0].status, set.receipts[0].errors.iter().map(|e| e.code.as_str().to_string()).collect::<Vec<_>>())
    };
    // 0101901234 fails modulus 11 (weighted sum 84), but such numbers have been issued since 2007.
    assert_eq!(accepted(("CPR", "0101901234")), (Status::Accepteret, vec![]));
    // 31 February does not exist.
    assert_eq!(accepted(("CPR", "3102901234")), (Status::Afvist, vec!["REGEL_CPR".to_string()]));
    // 29 February 00: the seventh digit decides the century. 0-3: 1900 (no leap day); 4 and 5-8 with year 00: 2000.
    assert_eq!(accepted(("CPR", "2902000123")).1, vec!["REGEL_CPR".to_string()]);
    assert_eq!(accepted(("CPR", "2902004123")).0, Status::Accepteret);
    assert_eq!(accepted(("CPR", "2902005123")).0, Status::Accepteret);
    // Year 36 with digit 4 or 9 is 2036, 37 is 1937; year 57 with digit 5-8 is 2057, 58 is 1858: all real dates.
    for cpr in ["0101364123", "0101379123", "0101575123", "0101588123"] {
        assert_eq!(accepted(("CPR", cpr)).0, Status::Accepteret, "{cpr}");
    }
    assert_eq!(accepted(("CPR", "0013901234")).1, vec!["REGEL_CPR".to_string()]);
    // CVR: weights 2,7,6,5,4,3,2,1 must sum to a multiple of 11, and the number may not start with 0.
    assert_eq!(accepted(("CVR", "29189846")).0, Status::Accepteret);
    assert_eq!(accepted(("CVR", "29189847")).1, vec!["REGEL_CVR".to_string()]);
    assert_eq!(accepted(("CVR", "00000000")).1, vec!["REGEL_CVR".to_string()]);
}

#[test]
fn a_resent_claim_is_booked_once() {
    let app = TestApp::start();
    let first = app.send_claims(&ClaimDelivery::one(Claim::repayment("DUP-F")).soap11());
    let again = app.send_claims(&ClaimDelivery::one(Claim::repayment("DUP-F")).soap11());
    assert_eq!(again.receipts[0], first.receipts[0]);
    let mut other = Claim::repayment("DUP-F");
    other.principal = "1.00".into();
    let changed = app.send_claims(&ClaimDelivery::one(other).soap12());
    assert_eq!(
        codes_and_paths(&changed, "DUP-F"),
        [("DUBLET_AFVIGENDE".to_string(), "/ModtagFordring/Fordring[1]/FordringId".to_string())]
    );
    // The same id under SF1590_A is another integration's id: no clash.
    assert_eq!(app.send(&crate::common::delivery::Delivery::one("DUP-F").soap11()).receipts[0].status, Status::Accepteret);

    let doc = ClaimDelivery::one(Claim::repayment("PAR-F")).soap11();
    let answers: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20).map(|_| s.spawn(|| app.send_claims(&doc))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| a.receipts[0] == answers[0].receipts[0] && a.receipts[0].status == Status::Accepteret));
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_claims WHERE fordring_id = 'PAR-F'"), 1);
    assert_eq!(
        app.count("SELECT count(*) AS n FROM erp_claim_parties p JOIN erp_claims c ON c.id = p.claim_id WHERE c.fordring_id = 'PAR-F'"),
        1
    );
}

#[test]
fn the_sf1590b_wsdl_is_served_and_the_wrong_endpoint_is_refused() {
    let app = TestApp::start();
    let wsdl = ureq::get(&app.url("/sf1590b?wsdl")).call().unwrap().into_string().unwrap();
    assert!(wsdl.contains(&format!("location=\"{}\"", app.url("/sf1590b"))), "{wsdl}");
    assert!(wsdl.contains("fb:ModtagFordring"));
    // A claim sent to the finance endpoint is refused as the wrong document.
    let (status, body) = app.post_to("/sf1590a", ClaimDelivery::one(Claim::repayment("WRONG")).soap11().as_bytes(), "text/xml");
    assert_eq!(status, 200);
    let set = parse_receipts(&body);
    assert_eq!(set.receipts[0].errors[0].code.as_str(), "FORMAT_XSD");
    assert_eq!(set.receipts[0].errors[0].path.as_deref(), Some("/ModtagFordring"));
}
