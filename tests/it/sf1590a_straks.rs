//! SF1590_A straks against the running server: real SOAP envelopes over HTTP, a temporary SQLite database.

use crate::common::delivery::{envelope, line_of, new_id, Bilag, Delivery, Posting};
use crate::common::*;
use fkoeko_adapter::domain::receipt::Status;

const ROOT: &str = "/ModtagFinansbilag";
const POSTING1: &str = "/ModtagFinansbilag/Finansbilag[1]/Postering[1]";

#[test]
fn accepted_delivery_lands_in_the_import_tables() {
    let app = TestApp::start();
    let delivery = Delivery::one("KY-1001");
    let set = app.send(&delivery.soap11());
    assert_eq!(set.delivery_id.to_string(), delivery.delivery_id);
    assert_eq!(set.sender.to_string(), KY);
    let receipt = &set.receipts[0];
    assert_eq!((receipt.reference.as_str(), receipt.status), ("KY-1001", Status::Accepteret));
    assert!(receipt.errors.is_empty());
    let journal = app.rows(
        "SELECT json_array(id, bilag_id, afsender_system, bilagsdato, mapping_version, status, kvittering_id) AS row FROM erp_journal",
        7,
    );
    assert_eq!(journal.len(), 1);
    let j = &journal[0];
    assert_eq!(receipt.erp_reference.as_deref(), Some(format!("erp_journal:{}", j[0].as_deref().unwrap()).as_str()));
    assert_eq!(j[1].as_deref(), Some("KY-1001"));
    assert_eq!(j[2].as_deref(), Some(KY));
    assert_eq!(j[3].as_deref(), Some(crate::common::delivery::today().as_str()));
    assert_eq!(j[4], Some(app.mapping_version()));
    assert_eq!(j[5].as_deref(), Some("NY"));
    assert_eq!(j[6].as_deref(), Some(receipt.id.to_string().as_str()));

    let lines = app.rows(
        "SELECT json_array(line_no, posting_id, erp_account, erp_dimensions, amount, debit_credit, currency, posting_text, \
         party_type, party_id, src_funktion, src_dranst, src_art, src_omkostningssted, src_dimensions, mapping_rule, status) \
         AS row FROM erp_journal_lines ORDER BY line_no",
        17,
    );
    let text = |row: &Vec<Option<String>>| row.iter().map(|v| v.clone().unwrap_or_else(|| "NULL".into())).collect::<Vec<_>>();
    assert_eq!(
        text(&lines[0]),
        [
            "1",
            "1",
            "55772152",
            r#"{"afdeling":"SOC","ordning":"kontanthjaelp","sag":"S-118"}"#,
            "1250.50",
            "D",
            "DKK",
            "Kontanthjælp",
            "CPR",
            "0101901234",
            "5.57.72",
            "1",
            "5.2",
            "OMK-4410",
            r#"[["Sag","S-118"]]"#,
            "konti.csv:12 → kontantydelser.csv:3",
            "NY"
        ]
    );
    assert_eq!(
        text(&lines[1]),
        [
            "2",
            "2",
            "91000000",
            "{}",
            "1250.50",
            "K",
            "DKK",
            "Modpost",
            "NULL",
            "NULL",
            "9.51.01",
            "0",
            "9.5",
            "NULL",
            "[]",
            "konti.csv:15",
            "NY"
        ]
    );
}

#[test]
fn soap_12_is_answered_in_soap_12() {
    let app = TestApp::start();
    let delivery = Delivery::one("KY-12");
    let (status, body) = app.post_as(&delivery.soap12(), "application/soap+xml; charset=utf-8");
    assert_eq!(status, 200);
    assert!(body.contains("http://www.w3.org/2003/05/soap-envelope"), "{body}");
    assert_eq!(parse_receipts(&body).receipts[0].status, Status::Accepteret);
}

/// One rejected delivery per code that applies to SF1590_A: the code, the path, and (where the element is on
/// a line of its own) the line.
#[test]
fn each_rule_rejects_with_its_code_and_path() {
    let app = TestApp::start();
    struct Case {
        name: &'static str,
        delivery: Delivery,
        expect: Vec<(&'static str, String)>,
        /// The text of the element the first error points at, to check its line.
        line_of: Option<String>,
    }
    let with_posting = |id: &str, change: &dyn Fn(&mut Posting)| {
        let mut d = Delivery::one(id);
        change(&mut d.bilag[0].postings[0]);
        d
    };
    let cases = vec![
        Case {
            name: "schema",
            delivery: with_posting("C-XSD", &|p| p.art = "52".into()),
            expect: vec![("FORMAT_XSD", format!("{POSTING1}/Kontering/Art"))],
            line_of: Some("<Art>52</Art>".into()),
        },
        Case {
            name: "unknown sender",
            delivery: Delivery { sender: new_id(), ..Delivery::one("C-UKENDT") },
            expect: vec![("AFSENDER_UKENDT", format!("{ROOT}/AfsenderSystem"))],
            line_of: Some("<AfsenderSystem>".into()),
        },
        Case {
            name: "sender not for SF1590_A",
            delivery: Delivery { sender: DEBTOR_ONLY_SENDER.into(), ..Delivery::one("C-KUN-B") },
            expect: vec![("AFSENDER_UKENDT", format!("{ROOT}/AfsenderSystem"))],
            line_of: None,
        },
        Case {
            name: "expired sender",
            delivery: Delivery { sender: EXPIRED_SENDER.into(), ..Delivery::one("C-UDLOEBET") },
            expect: vec![("AFSENDER_IKKE_AKTIV", format!("{ROOT}/AfsenderSystem"))],
            line_of: None,
        },
        Case {
            name: "wrong municipality",
            delivery: Delivery { authority: "12345674".into(), ..Delivery::one("C-MYNDIGHED") },
            expect: vec![("MYNDIGHED_FORKERT", format!("{ROOT}/Myndighed"))],
            line_of: Some("<Myndighed>".into()),
        },
        Case {
            name: "kontering outside sortiment",
            delivery: with_posting("C-SORTIMENT", &|p| p.funktion = "5.57.71".into()),
            expect: vec![("SORTIMENT_KONTERING", format!("{POSTING1}/Kontering"))],
            line_of: None,
        },
        Case {
            name: "unbalanced",
            delivery: {
                let mut d = Delivery::one("C-BALANCE");
                d.bilag[0].postings[1].amount = "1250.49".into();
                d
            },
            expect: vec![("REGEL_BALANCE", "/ModtagFinansbilag/Finansbilag[1]".into())],
            line_of: Some("<Finansbilag>".into()),
        },
        Case {
            name: "repeated posting id",
            delivery: {
                let mut d = Delivery::one("C-POSTID");
                d.bilag[0].postings[1].id = "1".into();
                d
            },
            expect: vec![("REGEL_POSTERING_ID", "/ModtagFinansbilag/Finansbilag[1]/Postering[2]/PosteringId".into())],
            line_of: None,
        },
        Case {
            name: "closed period",
            delivery: with_posting("C-PERIODE", &|p| p.date = "2020-01-15".into()),
            expect: vec![("REGEL_PERIODE_LUKKET", format!("{POSTING1}/Posteringsdato"))],
            line_of: Some("<Posteringsdato>2020-01-15".into()),
        },
        Case {
            name: "currency",
            delivery: {
                let mut d = Delivery::one("C-VALUTA");
                d.bilag[0].postings[0].currency = Some("EUR".into());
                d.bilag[0].postings[1].currency = Some("EUR".into());
                d
            },
            expect: vec![
                ("REGEL_VALUTA", format!("{POSTING1}/Valuta")),
                ("REGEL_VALUTA", "/ModtagFinansbilag/Finansbilag[1]/Postering[2]/Valuta".into()),
            ],
            line_of: Some("<Valuta>EUR".into()),
        },
        Case {
            name: "cpr date",
            delivery: with_posting("C-CPR", &|p| p.party = Some(("CPR", "3102901234".into()))),
            expect: vec![("REGEL_CPR", format!("{POSTING1}/Part/CPR"))],
            line_of: Some("<CPR>".into()),
        },
        Case {
            name: "cvr modulus 11",
            delivery: with_posting("C-CVR", &|p| p.party = Some(("CVR", "12345678".into()))),
            expect: vec![("REGEL_CVR", format!("{POSTING1}/Part/CVR"))],
            line_of: Some("<CVR>".into()),
        },
        Case {
            name: "no mapping",
            delivery: with_posting("C-MAPNING", &|p| p.art = "7.2".into()),
            expect: vec![("MAPNING_MANGLER", format!("{POSTING1}/Kontering"))],
            line_of: Some("<Kontering>".into()),
        },
    ];
    for case in cases {
        let doc = case.delivery.soap11();
        let set = app.send(&doc);
        let receipt = &set.receipts[0];
        assert_eq!(receipt.status, Status::Afvist, "{}", case.name);
        let got: Vec<(String, String)> =
            receipt.errors.iter().map(|e| (e.code.as_str().to_string(), e.path.clone().unwrap_or_default())).collect();
        let want: Vec<(String, String)> = case.expect.iter().map(|(c, p)| (c.to_string(), p.clone())).collect();
        assert_eq!(got, want, "{}", case.name);
        assert!(receipt.errors.iter().all(|e| !e.text.is_empty() && e.line.is_some()), "{}: {:?}", case.name, receipt.errors);
        if let Some(needle) = case.line_of {
            assert_eq!(receipt.errors[0].line, Some(line_of(&doc, &needle)), "{}", case.name);
        }
    }
    // A rejected delivery books nothing.
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 0);
    assert_eq!(app.count("SELECT count(*) AS n FROM receipts WHERE status = 'Afvist'"), 13);
}

#[test]
fn a_masked_cpr_is_the_only_cpr_in_a_receipt() {
    let app = TestApp::start();
    let mut d = Delivery::one("C-CPR-MASK");
    d.bilag[0].postings[0].party = Some(("CPR", "3102901234".into()));
    let (_, body) = app.post(&d.soap11());
    assert!(!body.contains("3102901234"), "{body}");
    assert!(body.contains("<Vaerdi>310290-XXXX</Vaerdi>"), "{body}");
}

#[test]
fn not_well_formed_and_oversized_deliveries() {
    let app = TestApp::start_with(|c| c.limits.max_body_bytes = 64 * 1024);
    let set =
        app.send("<?xml version=\"1.0\"?>\n<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\n<soap:Body>\n<a></b>");
    assert_eq!(set.receipts.len(), 1);
    assert_eq!(set.receipts[0].errors[0].code.as_str(), "FORMAT_XML");
    assert_eq!(set.receipts[0].errors[0].line, Some(4));

    let too_many = Delivery::new((0..101).map(|i| Bilag::balanced(&format!("M-{i}"), "1.00")).collect());
    let app_big = TestApp::start();
    let set = app_big.send(&too_many.soap11());
    assert_eq!(set.receipts.len(), 101);
    assert!(set.receipts.iter().all(|r| r.status == Status::Afvist && r.errors[0].code.as_str() == "FORMAT_STOERRELSE"));
    assert_eq!(set.receipts[0].errors[0].path.as_deref(), Some(ROOT));

    let huge = format!("{}{}", Delivery::one("BIG").soap11(), " ".repeat(100 * 1024));
    let set = app.send(&huge);
    assert_eq!(set.receipts[0].errors[0].code.as_str(), "FORMAT_STOERRELSE");
    // The service goes on answering.
    assert_eq!(app.send(&Delivery::one("AFTER-BIG").soap11()).receipts[0].status, Status::Accepteret);
}

#[test]
fn hostile_xml_is_refused() {
    let app = TestApp::start();
    let laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>\n<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>&lol2;</soap:Body></soap:Envelope>";
    let xxe = "<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>&xxe;</soap:Body></soap:Envelope>";
    let undeclared = Delivery::one("ENT").soap11().replace("<Posteringstekst>Kontanthjælp", "<Posteringstekst>&passwd;");
    let latin1 = Delivery::one("LATIN").soap11().replace("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"");
    for (name, doc, needle) in
        [("billion laughs", laughs, "DTD"), ("xxe", xxe, "DTD"), ("entity", &undeclared, "&passwd;"), ("latin-1", &latin1, "ISO-8859-1")]
    {
        let (status, body) = app.post(doc);
        assert_eq!(status, 200, "{name}");
        let set = parse_receipts(&body);
        let error = &set.receipts[0].errors[0];
        assert_eq!(error.code.as_str(), "FORMAT_XML", "{name}");
        assert!(error.text.contains(needle), "{name}: {}", error.text);
        assert!(!body.contains("root:"), "{name}: file contents leaked");
    }
    let mut bytes = Delivery::one("BYTES").soap11().into_bytes();
    let at = bytes.windows(7).position(|w| w == b"Modpost").unwrap();
    bytes[at] = 0xFF;
    let (_, body) = app.post_bytes(&bytes, "text/xml");
    assert_eq!(parse_receipts(&body).receipts[0].errors[0].code.as_str(), "FORMAT_XML");
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 0);
}

#[test]
fn several_errors_are_all_returned_and_each_bilag_stands_alone() {
    let app = TestApp::start();
    let mut bad = Bilag::balanced("MULTI-BAD", "100.00");
    bad.postings[0].date = "2020-01-15".into();
    bad.postings[0].party = Some(("CVR", "12345678".into()));
    bad.postings[1].amount = "99.00".into();
    bad.postings[1].funktion = "0.22.01".into();
    let good = Bilag::balanced("MULTI-GOOD", "100.00");
    let set = app.send(&Delivery::new(vec![bad, good]).soap11());
    let codes: Vec<String> = errors_of(&set, "MULTI-BAD").into_iter().map(|(c, _)| c).collect();
    // The kontering outside the sortiment is not also tried against the mapping files (receipts.md).
    assert_eq!(codes, ["REGEL_CVR", "REGEL_PERIODE_LUKKET", "REGEL_BALANCE", "SORTIMENT_KONTERING"]);
    assert_eq!(set.receipts[1].status, Status::Accepteret);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM receipt_errors"), 4);
}

#[test]
fn schema_errors_in_one_bilag_reject_only_that_bilag() {
    let app = TestApp::start();
    let mut bad = Bilag::balanced("XSD-BAD", "10.00");
    bad.postings[1].amount = "10.005".into();
    let set = app.send(&Delivery::new(vec![Bilag::balanced("XSD-GOOD", "10.00"), bad]).soap11());
    assert_eq!(set.receipts[0].status, Status::Accepteret);
    assert_eq!(
        errors_of(&set, "XSD-BAD"),
        [("FORMAT_XSD".to_string(), Some("/ModtagFinansbilag/Finansbilag[2]/Postering[2]/Beloeb".to_string()))]
    );
}

#[test]
fn a_resent_finansbilag_gets_its_first_receipt_and_is_booked_once() {
    let app = TestApp::start();
    let first = app.send(&Delivery::one("DUP-1").soap11());
    // The same content in a new delivery (new LeveranceId): the first receipt, unchanged.
    let again = app.send(&Delivery::one("DUP-1").soap11());
    assert_eq!(again.receipts[0], first.receipts[0]);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal_lines"), 2);

    // Other content under the same BilagId: rejected, and the first booking stays as it was.
    let changed = app.send(&Delivery::new(vec![Bilag::balanced("DUP-1", "999.00")]).soap11());
    assert_eq!(
        errors_of(&changed, "DUP-1"),
        [("DUBLET_AFVIGENDE".to_string(), Some("/ModtagFinansbilag/Finansbilag[1]/BilagId".to_string()))]
    );
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal_lines WHERE amount = '1250.50'"), 2);

    // The very same delivery again: the very same answer.
    let delivery = Delivery::one("DUP-2");
    let (_, one) = app.post(&delivery.soap11());
    let (_, two) = app.post(&delivery.soap11());
    assert_eq!(receipt_xml(&one), receipt_xml(&two));
    // The same LeveranceId with other content is a different delivery under a used id.
    let reused = Delivery { delivery_id: delivery.delivery_id.clone(), ..Delivery::one("DUP-3") };
    let set = app.send(&reused.soap11());
    assert_eq!(errors_of(&set, "DUP-3"), [("DUBLET_AFVIGENDE".to_string(), Some(format!("{ROOT}/LeveranceId")))]);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal WHERE bilag_id = 'DUP-3'"), 0);
}

#[test]
fn a_rejected_finansbilag_can_be_corrected_and_resent_under_its_id() {
    let app = TestApp::start();
    let mut wrong = Delivery::one("FIX-1");
    wrong.bilag[0].postings[1].amount = "1.00".into();
    assert_eq!(app.send(&wrong.soap11()).receipts[0].status, Status::Afvist);
    assert_eq!(app.send(&Delivery::one("FIX-1").soap11()).receipts[0].status, Status::Accepteret);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 1);
}

#[test]
fn fifty_parallel_sends_book_once() {
    let app = TestApp::start();
    let bilag = Bilag::balanced("PAR-1", "75.25");
    let shared = Delivery::new(vec![bilag.clone()]);
    let answers: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                // Half resend one delivery; half send the same finansbilag in deliveries of their own.
                let doc = if i % 2 == 0 { shared.soap11() } else { Delivery::new(vec![bilag.clone()]).soap11() };
                let app = &app;
                s.spawn(move || app.send(&doc))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = &answers[0].receipts[0];
    assert_eq!(first.status, Status::Accepteret);
    assert!(answers.iter().all(|a| a.receipts[0] == *first), "every send got the one receipt");
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal_lines"), 2);
    assert_eq!(app.count("SELECT count(*) AS n FROM receipts"), 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM deliveries"), 26);
}

#[test]
fn database_unreachable_answers_a_fault_and_books_nothing() {
    let app = TestApp::start_with(|c| c.database.busy_timeout_ms = 200);
    let delivery = Delivery::one("DB-DOWN");
    // Another process holds the database's write lock for longer than the service waits.
    let blocker = app.lock_writes();
    let (status, body) = app.post(&delivery.soap11());
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("<soap:Fault>") && body.contains("Prøv igen senere"), "{body}");
    drop(blocker);
    assert_eq!(app.count("SELECT count(*) AS n FROM deliveries"), 0);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 0);
    // Once the database is back, the retry is taken.
    assert_eq!(app.send(&delivery.soap11()).receipts[0].status, Status::Accepteret);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 1);
}

#[test]
fn serviceplatform_context_must_agree_with_the_delivery() {
    let app = TestApp::start();
    let mut delivery = Delivery::one("CTX-1");
    delivery.header = format!(
        "<AuthorityContext xmlns=\"http://serviceplatformen.dk/xml/schemas/AuthorityContext/1/\"><MunicipalityCVR>12345674</MunicipalityCVR></AuthorityContext>\
         <InvocationContext xmlns=\"http://serviceplatformen.dk/xml/schemas/InvocationContext/1/\"><UserSystemUUID>{}</UserSystemUUID></InvocationContext>",
        new_id()
    );
    let set = app.send(&delivery.soap11());
    assert_eq!(
        errors_of(&set, "CTX-1"),
        [
            ("MYNDIGHED_FORKERT".to_string(), Some("/Envelope/Header/AuthorityContext/MunicipalityCVR".to_string())),
            ("AFSENDER_UKENDT".to_string(), Some("/Envelope/Header/InvocationContext/UserSystemUUID".to_string())),
        ]
    );

    let transaction = new_id();
    let mut agreeing = Delivery::one("CTX-2");
    agreeing.header = format!(
        "<RequestHeader xmlns=\"http://kombit.dk/xml/schemas/RequestHeader/1/\"><TransactionUUID>{transaction}</TransactionUUID></RequestHeader>\
         <InvocationContext xmlns=\"http://serviceplatformen.dk/xml/schemas/InvocationContext/1/\"><UserSystemUUID>{KY}</UserSystemUUID></InvocationContext>"
    );
    assert_eq!(app.send(&agreeing.soap11()).receipts[0].status, Status::Accepteret);
    let recorded = app.rows(
        &format!(
            "SELECT json_array(transaction_uuid, user_system_uuid) AS row FROM deliveries WHERE leverance_id = '{}'",
            agreeing.delivery_id
        ),
        2,
    );
    assert_eq!(recorded, [[Some(transaction), Some(KY.to_string())]]);
}

#[test]
fn wsdl_and_schemas_are_served() {
    let app = TestApp::start();
    let wsdl = ureq::get(&app.url("/sf1590a?wsdl")).call().unwrap().into_string().unwrap();
    assert!(wsdl.contains(&format!("location=\"{}\"", app.url("/sf1590a"))), "{wsdl}");
    assert!(wsdl.contains(&format!("schemaLocation=\"{}\"", app.url("/schemas/sf1590a.xsd"))));
    let xsd = ureq::get(&app.url("/schemas/kvittering.xsd")).call().unwrap().into_string().unwrap();
    assert!(xsd.contains("KvitteringLeverance"));
    assert!(matches!(ureq::get(&app.url("/schemas/..%2FCargo.toml")).call(), Err(ureq::Error::Status(404, _))));
    let (status, _) = app.post_as(&envelope("urn:not-soap", "", "<x/>"), "text/xml");
    assert_eq!(status, 200);
}

/// One figure from the admin listener's /metrics.
fn metric(app: &TestApp, name: &str) -> f64 {
    let text = ureq::get(&app.server.as_ref().unwrap().admin_url("/metrics")).call().unwrap().into_string().unwrap();
    let line = text.lines().find(|l| l.split(' ').next() == Some(name)).unwrap_or_else(|| panic!("{name} not in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn deliveries_written_in_one_group_stand_alone_and_book_a_finansbilag_once() {
    let app = TestApp::start_with(|c| {
        c.database.busy_timeout_ms = 60_000;
        // On PostgreSQL too one writer, so that the deliveries queue up behind it (with several, each would take
        // one and wait).
        c.database.writers = 1;
    });
    // A finansbilag the database refuses once its delivery and receipt rows are written, as a full disk or a
    // broken constraint would.
    app.execute(match fkoeko_adapter::storage::Backend::of(&app.db_url) {
        fkoeko_adapter::storage::Backend::Sqlite => {
            "CREATE TRIGGER refuse_bilag BEFORE INSERT ON erp_journal WHEN NEW.bilag_id = 'GROUP-FAIL' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
        }
        fkoeko_adapter::storage::Backend::Postgres => {
            "CREATE FUNCTION refuse_bilag() RETURNS trigger AS $$ BEGIN IF NEW.bilag_id = 'GROUP-FAIL' THEN \
             RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse_bilag BEFORE INSERT ON erp_journal FOR EACH ROW EXECUTE FUNCTION refuse_bilag();"
        }
    });
    let first = Delivery::one("GROUP-0").soap11();
    let booked = Delivery::one("GROUP-B").soap11();
    let same_bilag = Delivery::one("GROUP-B").soap11();
    let failing = Delivery::one("GROUP-FAIL");
    let other = Delivery::one("GROUP-D").soap11();

    // While another process holds the write lock, the writer waits with the first delivery and the rest queue
    // up behind it: they are written as one group when the lock is let go.
    let blocker = app.lock_writes();
    let app = &app;
    let answers = std::thread::scope(|s| {
        let first = s.spawn(move || app.post(&first));
        // Time for the writer to take the first delivery alone before the others come.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let bodies = [booked.clone(), same_bilag, booked.clone(), failing.soap11(), other];
        let rest: Vec<_> = bodies.into_iter().map(|body| s.spawn(move || app.post(&body))).collect();
        let started = std::time::Instant::now();
        while metric(app, "fkoeko_write_queue") < 5.0 {
            assert!(started.elapsed().as_secs() < 30, "the deliveries never queued up behind the writer");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(blocker);
        let mut answers = vec![first.join().unwrap()];
        answers.extend(rest.into_iter().map(|h| h.join().unwrap()));
        answers
    });
    assert_eq!(metric(app, "fkoeko_write_group_deliveries_sum"), 6.0);
    assert!(metric(app, "fkoeko_write_group_deliveries_count") <= 2.0, "the five waiting deliveries were written together");

    let [zero, b, b_again, b_resent, failed, d] = &answers[..] else { unreachable!() };
    for (status, body) in [zero, b, b_again, b_resent, d] {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(parse_receipts(body).receipts[0].status, Status::Accepteret, "{body}");
    }
    // A new delivery of a finansbilag just booked in the same group: its first receipt, booked once; the very
    // same call again: the very same answer.
    assert_eq!(parse_receipts(&b_again.1).receipts[0], parse_receipts(&b.1).receipts[0]);
    assert_eq!(receipt_xml(&b_resent.1), receipt_xml(&b.1));
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal WHERE bilag_id = 'GROUP-B'"), 1);
    // The refused one is a fault, and nothing of it stayed; the others in its group were written.
    assert_eq!(failed.0, 500, "{}", failed.1);
    assert!(failed.1.contains("Prøv igen senere"), "{}", failed.1);
    let refused_rows = format!("SELECT count(*) AS n FROM deliveries WHERE leverance_id = '{}'", failing.delivery_id);
    assert_eq!(app.count(&refused_rows), 0);
    assert_eq!(app.count("SELECT count(*) AS n FROM receipts WHERE reference = 'GROUP-FAIL'"), 0);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 3);
    assert_eq!(app.count("SELECT count(*) AS n FROM deliveries"), 4);

    // Sent again once the cause is gone, it is taken.
    app.execute(match fkoeko_adapter::storage::Backend::of(&app.db_url) {
        fkoeko_adapter::storage::Backend::Sqlite => "DROP TRIGGER refuse_bilag",
        fkoeko_adapter::storage::Backend::Postgres => "DROP TRIGGER refuse_bilag ON erp_journal",
    });
    assert_eq!(app.send(&failing.soap11()).receipts[0].status, Status::Accepteret);
}

#[test]
fn a_finansbilag_of_many_postings_is_written_line_for_line_as_sent() {
    // 76 postings: SQLite writes lines 32 to a statement and the rest one at a time; every one must land whole
    // and in its place.
    let app = TestApp::start();
    let mut postings = Vec::new();
    for n in 0..37u32 {
        let amount = format!("{}.{:02}", 10 + n, n);
        postings.push(Posting::debit(2 * n + 1, &amount));
        postings.push(Posting::credit(2 * n + 2, &amount));
    }
    postings.push(Posting::debit(75, "0.50"));
    let mut last_credit = Posting::credit(76, "0.50");
    last_credit.text = "Sidste".into();
    postings.push(last_credit);
    let bilag = Bilag { postings, ..Bilag::balanced("MANY-1", "1.00") };
    let sent: Vec<[String; 4]> =
        bilag.postings.iter().enumerate().map(|(n, p)| [(n + 1).to_string(), p.id.clone(), p.amount.clone(), p.side.to_string()]).collect();
    let set = app.send(&Delivery::new(vec![bilag]).soap11());
    assert_eq!(set.receipts[0].status, Status::Accepteret, "{:?}", set.receipts[0].errors);
    let lines = app.rows("SELECT json_array(line_no, posting_id, amount, debit_credit) AS row FROM erp_journal_lines ORDER BY line_no", 4);
    let written: Vec<[String; 4]> =
        lines.iter().map(|row| std::array::from_fn(|i| row[i].clone().expect("no NULL in these columns"))).collect();
    assert_eq!(written, sent);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal_lines WHERE posting_text = 'Sidste'"), 1);
}
