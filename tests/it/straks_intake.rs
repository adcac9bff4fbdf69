//! The straks intake read item by item, as a batch file is: each finansbilag is schema-checked as a document of
//! its own, so an error lands on its own item whatever the layout; the SOAP Body's one element is what is
//! checked and read; indentation is not text; an item's errors are capped; context blocks in the Body are read
//! and checked; bodies are held to a memory budget and a minimum rate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::delivery::{indented, new_id, one_line, today, Bilag, Delivery, Posting};
use crate::common::*;

const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Line and column (in characters) of the `nth` (0-based) occurrence of `needle`.
fn position_of(doc: &str, needle: &str, nth: usize) -> (u32, u32) {
    let at = doc.match_indices(needle).nth(nth).unwrap_or_else(|| panic!("{needle} #{nth} not in the document")).0;
    let before = &doc[..at];
    let line = before.matches('\n').count() as u32 + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() as u32 + 1;
    (line, col)
}

fn with_text(delivery: &Delivery, bilag_index: usize, text: &str) -> String {
    // The builder writes no Bilagstekst: it goes in after the nth Bilagsdato.
    let soap = delivery.soap11();
    let mut at = 0;
    for _ in 0..=bilag_index {
        at += soap[at..].find("</Bilagsdato>").unwrap() + "</Bilagsdato>".len();
    }
    format!("{}\n<Bilagstekst>{text}</Bilagstekst>{}", &soap[..at], &soap[at..])
}

#[test]
fn on_one_line_a_schema_error_lands_on_its_own_finansbilag() {
    let app = TestApp::start();
    let first = format!("EN-LINJE-1-{}", new_id());
    let second = format!("EN-LINJE-2-{}", new_id());
    let delivery = Delivery::new(vec![Bilag::balanced(&first, "100.00"), Bilag::balanced(&second, "200.00")]);
    let soap = one_line(&with_text(&delivery, 1, &"x".repeat(201)));
    assert_eq!(soap.lines().count(), 1);
    let set = app.send(&soap);
    let status = |reference: &str| set.receipts.iter().find(|r| r.reference == reference).unwrap().status.as_str().to_string();
    assert_eq!(status(&first), "Accepteret", "{set:?}");
    assert_eq!(status(&second), "Afvist");
    let receipt = set.receipts.iter().find(|r| r.reference == second).unwrap();
    assert_eq!(receipt.errors.len(), 1, "{receipt:?}");
    let error = &receipt.errors[0];
    assert_eq!(error.code.as_str(), "FORMAT_XSD");
    assert_eq!(error.path.as_deref(), Some("/ModtagFinansbilag/Finansbilag[2]/Bilagstekst"));
    let (line, col) = position_of(&soap, "<Bilagstekst>", 0);
    assert_eq!((error.line, error.col), (Some(line), Some(col)));
    // Only the first is booked, and nothing of the second's text.
    assert_eq!(app.count(&format!("SELECT count(*) AS n FROM erp_journal WHERE bilag_id = '{first}'")), 1);
    assert_eq!(app.count(&format!("SELECT count(*) AS n FROM erp_journal WHERE bilag_id = '{second}'")), 0);
}

#[test]
fn the_same_error_is_placed_alike_on_one_line_indented_and_as_built() {
    let app = TestApp::start();
    for (layout, shape) in [("one line", one_line as fn(&str) -> String), ("indented", indented), ("as built", str::to_string)] {
        let mut delivery = Delivery::new(vec![Bilag::balanced(&new_id(), "10.00"), Bilag::balanced(&new_id(), "20.00")]);
        delivery.bilag[1].postings[1].art = "99".into();
        let soap = shape(&delivery.soap11());
        let set = app.send(&soap);
        assert_eq!(set.receipts[0].status.as_str(), "Accepteret", "{layout}");
        let error = &set.receipts[1].errors[0];
        assert_eq!(error.path.as_deref(), Some("/ModtagFinansbilag/Finansbilag[2]/Postering[2]/Kontering/Art"), "{layout}");
        // The second Art of the second bilag: the fourth Art in the document.
        assert_eq!(
            (error.line, error.col),
            {
                let (l, c) = position_of(&soap, "<Art>", 3);
                (Some(l), Some(c))
            },
            "{layout}"
        );
        assert_eq!(error.value.as_deref(), Some("99"), "{layout}");
    }
}

#[test]
fn a_decoy_body_is_neither_checked_nor_read() {
    let app = TestApp::start();
    let good = Delivery::one(&format!("LOKKEDUE-{}", new_id())).body();
    let mut bad = Delivery::one(&"B".repeat(314));
    bad.bilag[0].postings[1].dimensions = (0..11).map(|i| (format!("D{i}"), "v".to_string())).collect();
    // The first posting's elements out of order and one unknown; the second with 11 dimensions.
    let bad_body = bad.body().replacen("<PosteringId>1</PosteringId>\n<Beloeb>", "<Beloeb>", 1).replacen(
        "</Beloeb>\n<DebetKredit>",
        "</Beloeb>\n<PosteringId>1</PosteringId>\n<Ukendt>x</Ukendt>\n<DebetKredit>",
        1,
    );
    // A valid delivery in a Body of another namespace before the SOAP Body.
    let before = format!(
        "<soap:Envelope xmlns:soap=\"{SOAP11}\"><d:Body xmlns:d=\"urn:decoy\">{good}</d:Body><soap:Body>{bad_body}</soap:Body></soap:Envelope>"
    );
    let set = app.send(&before);
    assert!(set.receipts.iter().all(|r| r.status.as_str() == "Afvist"), "{set:?}");
    assert!(set.receipts[0].errors.iter().any(|e| e.code.as_str() == "FORMAT_XSD"), "{set:?}");
    // The same decoy in the Header: the real Body is the one checked, and every error in it is reported.
    let in_header = format!(
        "<soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Header><d:Body xmlns:d=\"urn:decoy\">{good}</d:Body></soap:Header><soap:Body>{bad_body}</soap:Body></soap:Envelope>"
    );
    let set = app.send(&one_line(&in_header));
    assert_eq!(set.receipts.len(), 1, "{set:?}");
    let paths: Vec<String> = set.receipts[0].errors.iter().filter_map(|e| e.path.clone()).collect();
    assert!(set.receipts[0].errors.iter().all(|e| e.code.as_str() == "FORMAT_XSD"), "{set:?}");
    assert!(paths.iter().any(|p| p == "/ModtagFinansbilag/Finansbilag[1]/BilagId"), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with("/ModtagFinansbilag/Finansbilag[1]/Postering[1]")), "{paths:?}");
    assert!(paths.iter().any(|p| p.contains("Dimension[11]")), "{paths:?}");
    // A second SOAP Body, and two elements in the Body, are refused too.
    let two_bodies =
        format!("<soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body>{good}</soap:Body><soap:Body>{good}</soap:Body></soap:Envelope>");
    let set = app.send(&two_bodies);
    assert_eq!(set.receipts[0].errors.first().map(|e| e.code.as_str()), Some("FORMAT_XSD"), "{set:?}");
    let two_children = format!("<soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body>{good}{good}</soap:Body></soap:Envelope>");
    let set = app.send(&two_children);
    assert_eq!(set.receipts[0].errors.first().map(|e| e.code.as_str()), Some("FORMAT_XSD"), "{set:?}");
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 0);
}

/// A balanced finansbilag of `n` postings (n even).
fn big_bilag(id: &str, n: u32) -> Bilag {
    let mut postings = Vec::with_capacity(n as usize);
    for i in 0..n / 2 {
        let mut debit = Posting::debit(2 * i + 1, "1.25");
        debit.dimensions.clear();
        postings.push(debit);
        postings.push(Posting::credit(2 * i + 2, "1.25"));
    }
    Bilag { id: id.into(), date: today(), postings }
}

#[test]
fn an_indented_finansbilag_of_10000_postings_is_accepted_in_straks_and_in_a_batch_file() {
    let app = TestApp::start();
    let id = format!("STOR-{}", new_id());
    let delivery = Delivery::new(vec![big_bilag(&id, 10_000)]);
    let soap = indented(&delivery.soap11());
    assert!(soap.contains("\n        <Postering>"), "indented as a client would");
    let set = app.send(&soap);
    assert_eq!(set.receipts[0].status.as_str(), "Accepteret", "{:?}", set.receipts[0].errors.first());
    let lines =
        format!("SELECT count(*) AS n FROM erp_journal_lines l JOIN erp_journal j ON l.journal_id = j.id WHERE j.bilag_id = '{id}'");
    assert_eq!(app.count(&lines), 10_000);

    // The same indented content as a batch file, checked through `fkoeko validate` (the production intake).
    let masse = Delivery::new(vec![big_bilag("STOR-MASSE", 10_000)]).masse();
    let file = app.dir.path().join("stor.xml");
    std::fs::write(&file, indented(&masse)).unwrap();
    let out = fkoeko_command(&app.db_url).args(["validate"]).arg(&file).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("Accepteret") && !printed.contains("Afvist"), "{printed}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn eighty_thousand_empty_postings_are_answered_in_proportion() {
    let app = TestApp::start();
    let delivery = Delivery::one("TOM");
    let soap = delivery.soap11();
    let start = soap.find("<Postering>").unwrap();
    let end = soap.rfind("</Postering>").unwrap() + "</Postering>".len();
    let soap = format!("{}{}{}", &soap[..start], "<Postering/>".repeat(80_000), &soap[end..]);
    assert!(soap.len() < 1_100_000);
    let (status, text) = app.post(&soap);
    assert_eq!(status, 200);
    assert!(text.len() < 100_000, "answer of {} bytes", text.len());
    let set = parse_receipts(&text);
    let codes: Vec<&str> = set.receipts[0].errors.iter().map(|e| e.code.as_str()).collect();
    assert!(codes.contains(&"FORMAT_XSD") && codes.contains(&"FORMAT_STOERRELSE"), "{codes:?}");
    assert_eq!(set.receipts[0].errors[0].path.as_deref(), Some("/ModtagFinansbilag/Finansbilag[1]/Postering[1]"));
}

#[test]
fn an_item_with_thousands_of_errors_lists_the_first_hundred_and_a_count() {
    let app = TestApp::start();
    let mut bilag = big_bilag("MANGE-FEJL", 5_000);
    for posting in &mut bilag.postings {
        posting.art = "99".into();
    }
    let soap = one_line(&Delivery::new(vec![bilag]).soap11());
    let (status, text) = app.post(&soap);
    assert_eq!(status, 200);
    assert!(text.len() < 100_000, "answer of {} bytes", text.len());
    let set = parse_receipts(&text);
    let errors = &set.receipts[0].errors;
    assert_eq!(errors.len(), 101, "{:?}", &errors[..3]);
    assert!(errors[..100].iter().all(|e| e.code.as_str() == "FORMAT_XSD"));
    // Each on its own posting, in order, though the delivery is on one line.
    for (i, error) in errors[..100].iter().enumerate() {
        assert_eq!(error.path.as_deref(), Some(format!("/ModtagFinansbilag/Finansbilag[1]/Postering[{}]/Kontering/Art", i + 1).as_str()));
        assert_eq!((error.line, error.col), {
            let (l, c) = position_of(&soap, "<Art>", i);
            (Some(l), Some(c))
        });
    }
    let last = &errors[100];
    assert_eq!(last.code.as_str(), "FORMAT_XSD");
    assert!(last.text.starts_with("Yderligere 4900 fejl er ikke vist"), "{}", last.text);
}

fn context_blocks(user_system: &str, cvr: &str) -> String {
    format!(
        "<cc:CallContext xmlns:cc=\"http://serviceplatformen.dk/xml/schemas/CallContext/1/\"><cc:OnBehalfOfUser>x</cc:OnBehalfOfUser></cc:CallContext>\
         <ac:AuthorityContext xmlns:ac=\"http://serviceplatformen.dk/xml/schemas/AuthorityContext/1/\"><ac:MunicipalityCVR>{cvr}</ac:MunicipalityCVR></ac:AuthorityContext>\
         <ic:InvocationContext xmlns:ic=\"http://serviceplatformen.dk/xml/schemas/InvocationContext/1/\"><ic:ServiceAgreementUUID>{}</ic:ServiceAgreementUUID><ic:UserSystemUUID>{user_system}</ic:UserSystemUUID><ic:UserUUID>{}</ic:UserUUID><ic:ServiceUUID>{}</ic:ServiceUUID></ic:InvocationContext>",
        new_id(),
        new_id(),
        new_id()
    )
}

#[test]
fn context_blocks_first_in_the_body_are_read_and_checked() {
    let app = TestApp::start();
    let in_body =
        |delivery: &Delivery, blocks: &str| one_line(&delivery.soap11().replacen("<LeveranceId>", &format!("{blocks}<LeveranceId>"), 1));
    // Agreeing blocks: accepted, and the system recorded.
    let delivery = Delivery::one(&format!("KONTEKST-{}", new_id()));
    let set = app.send(&in_body(&delivery, &context_blocks(KY, OUR_CVR)));
    assert_eq!(set.receipts[0].status.as_str(), "Accepteret", "{set:?}");
    assert_eq!(app.count(&format!("SELECT count(*) AS n FROM deliveries WHERE user_system_uuid = '{KY}'")), 1);
    // Another system, another municipality: each rejected at its place in the Body.
    let other = new_id();
    let delivery = Delivery::one(&format!("KONTEKST-{}", new_id()));
    let set = app.send(&in_body(&delivery, &context_blocks(&other, "12345674")));
    let errors = errors_of(&set, &delivery.bilag[0].id);
    assert!(errors.contains(&("AFSENDER_UKENDT".into(), Some("/ModtagFinansbilag/InvocationContext/UserSystemUUID".into()))), "{errors:?}");
    assert!(
        errors.contains(&("MYNDIGHED_FORKERT".into(), Some("/ModtagFinansbilag/AuthorityContext/MunicipalityCVR".into()))),
        "{errors:?}"
    );
    // A block in the header and a block in the body are both checked.
    let mut delivery = Delivery::one(&format!("KONTEKST-{}", new_id()));
    delivery.header = "<ac:AuthorityContext xmlns:ac=\"http://serviceplatformen.dk/xml/schemas/AuthorityContext/1/\"><ac:MunicipalityCVR>12345674</ac:MunicipalityCVR></ac:AuthorityContext>".into();
    let set = app.send(&in_body(&delivery, &context_blocks(KY, OUR_CVR)));
    let errors = errors_of(&set, &delivery.bilag[0].id);
    assert_eq!(errors, vec![("MYNDIGHED_FORKERT".into(), Some("/Envelope/Header/AuthorityContext/MunicipalityCVR".into()))]);
    // Anything else before LeveranceId is a schema error.
    let delivery = Delivery::one(&format!("KONTEKST-{}", new_id()));
    let set = app.send(&in_body(&delivery, "<x:Fremmed xmlns:x=\"urn:other\"/>"));
    assert_eq!(errors_of(&set, &delivery.bilag[0].id)[0].0, "FORMAT_XSD");
}

#[test]
fn bodies_over_the_memory_budget_are_turned_away_before_they_are_read() {
    let small = Delivery::one(&format!("BUDGET-{}", new_id())).soap11();
    let app = TestApp::start_with(|c| c.server.max_body_bytes_in_flight = small.len() as u64 + 100);
    // A call that fits is taken.
    assert_eq!(app.send(&small).receipts[0].status.as_str(), "Accepteret");
    // One that declares more than the budget gets 503 with Retry-After, and its body is not read.
    let big = Delivery::new((0..20).map(|i| Bilag::balanced(&format!("BUDGET-{i}-{}", new_id()), "1.00")).collect()).soap11();
    match ureq::post(&app.url("/sf1590a")).set("Content-Type", "text/xml").send_string(&big) {
        Err(ureq::Error::Status(503, r)) => assert_eq!(r.header("Retry-After"), Some("5")),
        other => panic!("expected 503, got {other:?}"),
    }
    // While a slow call holds the budget, the next is turned away; once it is cut off, the budget is free.
    let mut slow = post_head(&app, small.len());
    slow.write_all(b"<soap:Envelope").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    match ureq::post(&app.url("/sf1590a")).set("Content-Type", "text/xml").send_string(&small) {
        Err(ureq::Error::Status(503, _)) => {}
        other => panic!("expected 503 while the budget is held, got {other:?}"),
    }
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(app.send(&Delivery::one(&format!("BUDGET-{}", new_id())).soap11()).receipts[0].status.as_str(), "Accepteret");
}

/// A server whose whole-body timeout is long, so that only the rate rules can end a slow body: after a second's
/// grace, 1000 bytes a second on average, and no pause longer than 5 s.
fn rate_limited_app() -> TestApp {
    TestApp::start_with(|c| {
        c.server.request_body_timeout_secs = 600;
        c.server.body_grace_secs = 1;
        c.server.min_body_bytes_per_sec = 1000;
    })
}

/// A connection that has sent the head of a delivery call announcing `length` bytes of body, and nothing more.
fn post_head(app: &TestApp, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(app.server.as_ref().unwrap().addr).unwrap();
    write!(stream, "POST /sf1590a HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {length}\r\n\r\n").unwrap();
    stream
}

#[test]
fn a_body_that_trickles_in_is_cut_off_by_the_minimum_rate_not_the_whole_timeout() {
    // The whole-body timeout is long; the rate rule is what ends a trickle.
    let app = rate_limited_app();
    let mut slow = post_head(&app, 5000);
    slow.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut answer = Vec::new();
    // One byte every 200 ms, far under 1000 bytes a second, for at most 60 s (a tenth of the timeout).
    for _ in 0..300 {
        if slow.write_all(b" ").is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A sender at a normal rate is not affected.
    assert_eq!(app.send(&Delivery::one(&format!("RATE-{}", new_id())).soap11()).receipts[0].status.as_str(), "Accepteret");
}

/// Two balanced finansbilag with fresh ids.
fn two_bilag() -> Delivery {
    Delivery::new(vec![Bilag::balanced(&format!("H-{}", new_id()), "5.00"), Bilag::balanced(&format!("H-{}", new_id()), "6.00")])
}

/// The codes of every error in a set of receipts, in order.
fn codes(set: &fkoeko_adapter::domain::receipt::ReceiptSet) -> Vec<String> {
    set.receipts.iter().flat_map(|r| r.errors.iter().map(|e| e.code.as_str().to_string())).collect()
}

/// What a hostile tester found in the first version of this intake, each now answered as the contract says.
#[test]
fn text_and_characters_a_hostile_tester_sent_are_refused_or_taken_as_the_contract_says() {
    let app = TestApp::start();
    // Text between finansbilag (or after the last) is not in any item's document: refused, nothing booked.
    for text in ["JUNK", "\u{a0}", "&#65;", "<![CDATA[x]]>"] {
        let soap = two_bilag().soap11().replacen("</Finansbilag>\n<Finansbilag>", &format!("</Finansbilag>{text}<Finansbilag>"), 1);
        let set = app.send(&soap);
        assert!(set.receipts.iter().all(|r| r.status.as_str() == "Afvist"), "{text:?}: {set:?}");
        assert_eq!(codes(&set)[0], "FORMAT_XSD", "{text:?}");
    }
    // Characters XML does not allow, raw or as references, anywhere: a receipt with FORMAT_XML, not a fault.
    for (what, soap) in [
        ("NUL in a value", two_bilag().soap11().replacen("<Posteringstekst>Kontanthjælp", "<Posteringstekst>a\u{0}b", 1)),
        ("U+0001 in a comment after the envelope", format!("{}<!--\u{1}-->", two_bilag().soap11())),
        (
            "U+FFFF between items",
            two_bilag().soap11().replacen("</Finansbilag>\n<Finansbilag>", "</Finansbilag><!--\u{ffff}--><Finansbilag>", 1),
        ),
        ("&#1; in a value", two_bilag().soap11().replacen("<Posteringstekst>Kontanthjælp", "<Posteringstekst>a&#1;b", 1)),
    ] {
        let (status, text) = app.post(&soap);
        assert_eq!(status, 200, "{what}: {text}");
        assert_eq!(codes(&parse_receipts(&text)), vec!["FORMAT_XML".to_string()], "{what}");
    }
    // Text split by comments is one text, held to the text limit in the scan; comments are limited in number.
    let split =
        two_bilag().soap11().replacen("<Posteringstekst>Kontanthjælp", &format!("<Posteringstekst>{}", "a<!---->".repeat(20_000)), 1);
    assert_eq!(codes(&app.send(&split)), vec!["FORMAT_STOERRELSE".to_string()]);
    let comments =
        two_bilag().soap11().replacen("</Postering>\n<Postering>", &format!("</Postering>{}<Postering>", " <!---->".repeat(5_000)), 1);
    assert!(codes(&app.send(&comments)).contains(&"FORMAT_STOERRELSE".to_string()));
    // Whitespace is layout however long: between postings, between finansbilag and in the Body.
    let spaces = " ".repeat(10_001);
    let soap = two_bilag()
        .soap11()
        .replacen("</Postering>\n<Postering>", &format!("</Postering>{spaces}<Postering>"), 1)
        .replacen("</Finansbilag>\n<Finansbilag>", &format!("</Finansbilag>{spaces}<Finansbilag>"), 1)
        .replacen("<soap:Body>", &format!("<soap:Body>{spaces}"), 1);
    let set = app.send(&soap);
    assert!(set.receipts.iter().all(|r| r.status.as_str() == "Accepteret"), "{set:?}");
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 2);
}

#[test]
fn every_value_of_a_context_block_is_checked_and_long_values_do_not_swell_the_answer() {
    let app = TestApp::start();
    let in_body = |delivery: &Delivery, blocks: &str| delivery.soap11().replacen("<LeveranceId>", &format!("{blocks}<LeveranceId>"), 1);
    let ns = "http://serviceplatformen.dk/xml/schemas/AuthorityContext/1/";
    // A right MunicipalityCVR does not hide a wrong one after it.
    let delivery = Delivery::one(&format!("TO-CVR-{}", new_id()));
    let blocks = format!("<AuthorityContext xmlns=\"{ns}\"><MunicipalityCVR>{OUR_CVR}</MunicipalityCVR><MunicipalityCVR>12345674</MunicipalityCVR></AuthorityContext>");
    let errors = errors_of(&app.send(&in_body(&delivery, &blocks)), &delivery.bilag[0].id);
    assert_eq!(errors, vec![("MYNDIGHED_FORKERT".into(), Some("/ModtagFinansbilag/AuthorityContext/MunicipalityCVR".into()))]);
    // A block without its value is an error of its own.
    let delivery = Delivery::one(&format!("INGEN-CVR-{}", new_id()));
    let errors = errors_of(&app.send(&in_body(&delivery, &format!("<AuthorityContext xmlns=\"{ns}\"/>"))), &delivery.bilag[0].id);
    assert_eq!(errors, vec![("FORMAT_XSD".into(), Some("/ModtagFinansbilag/AuthorityContext".into()))]);
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 0);

    // The delivery's fields repeated in each of 100 receipts: the values libxml2 quotes are cut, so the answer
    // stays in proportion to the call.
    let mut many = Delivery::new((0..100).map(|i| Bilag::balanced(&format!("LANG-{i}"), "1.00")).collect());
    many.sender = "x".repeat(9000);
    let soap = many.soap11().replacen("<Dannet>", &format!("<Dannet>{}", "x".repeat(9000)), 1);
    let (status, text) = app.post(&soap);
    assert_eq!(status, 200);
    assert!(text.len() < 4 * soap.len(), "an answer of {} bytes to a call of {}", text.len(), soap.len());
}

#[test]
fn a_call_far_over_the_item_limit_is_answered_as_a_whole_without_reading_its_items() {
    let app = TestApp::start();
    let soap = Delivery::one("MANGE").soap11();
    let start = soap.find("<Finansbilag>").unwrap();
    let end = soap.rfind("</Finansbilag>").unwrap() + "</Finansbilag>".len();
    // 200,000 finansbilag in 2.8 MB: far over the 100 a call may hold.
    let soap = format!("{}{}{}", &soap[..start], "<Finansbilag/>".repeat(200_000), &soap[end..]);
    let (status, text) = app.post(&soap);
    assert_eq!(status, 200);
    assert!(text.len() < 10_000, "an answer of {} bytes", text.len());
    let set = parse_receipts(&text);
    assert_eq!(set.receipts.len(), 1, "{set:?}");
    assert_eq!(set.receipts[0].reference, "LEVERANCE");
    assert_eq!(set.receipts[0].errors[0].code.as_str(), "FORMAT_STOERRELSE");
    assert!(set.receipts[0].errors[0].text.contains("200000 Finansbilag i ét kald"), "{}", set.receipts[0].errors[0].text);
}

#[test]
fn a_body_sent_fast_and_then_stalled_is_cut_off_by_its_pause() {
    // The average rule alone would let 100 KB sent at once stall for about 100 s at 1000 bytes a second.
    let app = rate_limited_app();
    let mut stalled = post_head(&app, 200_000);
    stalled.write_all(&vec![b' '; 100_000]).unwrap();
    // A pause of five times the grace (5 s) ends it; the read waits far less than the average rule would allow.
    stalled.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let mut answer = String::new();
    let _ = stalled.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// What a second round of hostile testing found.
#[test]
fn content_no_item_document_holds_is_refused_and_context_values_are_found_wherever_they_stand() {
    let app = TestApp::start();
    let between =
        |text: &str| two_bilag().soap11().replacen("</Finansbilag>\n<Finansbilag>", &format!("</Finansbilag>{text}<Finansbilag>"), 1);
    for (what, soap, code) in [
        ("CDATA after the envelope", format!("{}<![CDATA[x]]>", two_bilag().soap11()), "FORMAT_XML"),
        ("a reference after the envelope", format!("{}&#120;", two_bilag().soap11()), "FORMAT_XML"),
        ("a comment with -- between items", between("<!-- a -- b -->"), "FORMAT_XML"),
        ("a comment ending in --->", between("<!-- a --->"), "FORMAT_XML"),
        ("an XML declaration between items", between("<?xml version=\"1.0\"?>"), "FORMAT_XML"),
        ("a name starting with a digit in an item", two_bilag().soap11().replacen("<Postering>", "<1x/><Postering>", 1), "FORMAT_XML"),
        ("'<' in an attribute value", two_bilag().soap11().replacen("<Postering>", "<Postering a=\"&lt;<\">", 1), "FORMAT_XML"),
        ("']]>' in a text", two_bilag().soap11().replacen("<Posteringstekst>Kontanthjælp", "<Posteringstekst>a]]>b", 1), "FORMAT_XML"),
        ("a no-break space reference in the Body", two_bilag().soap11().replacen("<soap:Body>", "<soap:Body>&#160;", 1), "FORMAT_XSD"),
        ("text in the Header", two_bilag().soap11().replacen("<soap:Header>", "<soap:Header>junk", 1), "FORMAT_XSD"),
    ] {
        let (status, text) = app.post(&soap);
        assert_eq!(status, 200, "{what}: {text}");
        let set = parse_receipts(&text);
        assert!(set.receipts.iter().all(|r| r.status.as_str() == "Afvist"), "{what}: {set:?}");
        assert_eq!(codes(&set)[0], code, "{what}: {set:?}");
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM erp_journal"), 0);
    // A reference to a space between items is layout, as a space is.
    let set = app.send(&between("&#32;&#10;"));
    assert!(set.receipts.iter().all(|r| r.status.as_str() == "Accepteret"), "{set:?}");

    // A context block inside another element is read and checked too.
    let authority = "<AuthorityContext xmlns=\"http://serviceplatformen.dk/xml/schemas/AuthorityContext/1/\"><MunicipalityCVR>12345674</MunicipalityCVR></AuthorityContext>";
    let delivery = Delivery::one(&format!("INDLEJRET-{}", new_id()));
    let wrapped = format!("<CallContext xmlns=\"http://serviceplatformen.dk/xml/schemas/CallContext/1/\">{authority}</CallContext>");
    let set = app.send(&delivery.soap11().replacen("<LeveranceId>", &format!("{wrapped}<LeveranceId>"), 1));
    assert!(codes(&set).contains(&"MYNDIGHED_FORKERT".to_string()), "{set:?}");
    // UserSystemUUID in another spelling of the sender's UUID is not the sender.
    let delivery = Delivery::one(&format!("STAVET-{}", new_id()));
    let invocation = format!(
        "<InvocationContext xmlns=\"http://serviceplatformen.dk/xml/schemas/InvocationContext/1/\"><UserSystemUUID>{{{KY}}}</UserSystemUUID></InvocationContext>"
    );
    let set = app.send(&delivery.soap11().replacen("<LeveranceId>", &format!("{invocation}<LeveranceId>"), 1));
    assert!(codes(&set).contains(&"AFSENDER_UKENDT".to_string()), "{set:?}");
    // A 10,000-character value in a context block, repeated in a hundred receipts, is cut in each.
    let long = format!(
        "<AuthorityContext xmlns=\"http://serviceplatformen.dk/xml/schemas/AuthorityContext/1/\"><MunicipalityCVR>{}</MunicipalityCVR></AuthorityContext>",
        "1".repeat(10_000)
    );
    let mut many = Delivery::new((0..100).map(|i| Bilag::balanced(&format!("LANGT-{i}-{}", new_id()), "1.00")).collect());
    many.header = long.repeat(6);
    let soap = many.soap11();
    let (status, text) = app.post(&soap);
    assert_eq!(status, 200);
    assert!(text.len() < 4 * soap.len(), "an answer of {} bytes to a call of {}", text.len(), soap.len());
}

/// Serviceplatformen's context is kept with the delivery as the call carried it (the blocks first in the Body, as
/// in the certificate model), shown with the delivery, and a RequestHeader sent in the SOAP header (the token
/// model) comes back in the answer's SOAP header.
#[test]
fn the_context_is_recorded_and_the_request_header_sent_back() {
    let app = TestApp::start();
    let transaction = format!("T-{}", new_id());
    let mut delivery = Delivery::one(&format!("KONTEKST-{}", new_id()));
    delivery.header = format!(
        "<rh:RequestHeader xmlns:rh=\"http://kombit.dk/xml/schemas/RequestHeader/1/\"><rh:TransactionUUID>{transaction}</rh:TransactionUUID></rh:RequestHeader>"
    );
    let blocks = format!(
        "<cc:CallContext xmlns:cc=\"http://serviceplatformen.dk/xml/schemas/CallContext/1/\"><cc:CallersServiceCallIdentifier>KY-kald-77</cc:CallersServiceCallIdentifier><cc:AccountingInfo>afd. 5</cc:AccountingInfo></cc:CallContext>\
         <ac:AuthorityContext xmlns:ac=\"http://serviceplatformen.dk/xml/schemas/AuthorityContext/1/\"><ac:MunicipalityCVR>{OUR_CVR}</ac:MunicipalityCVR></ac:AuthorityContext>\
         <ic:InvocationContext xmlns:ic=\"http://serviceplatformen.dk/xml/schemas/InvocationContext/1/\"><ic:ServiceAgreementUUID>{}</ic:ServiceAgreementUUID><ic:UserSystemUUID>{KY}</ic:UserSystemUUID><ic:UserUUID>{}</ic:UserUUID><ic:ServiceUUID>{}</ic:ServiceUUID></ic:InvocationContext>",
        new_id(),
        new_id(),
        new_id()
    );
    let call = one_line(&delivery.soap11().replacen("<LeveranceId>", &format!("{blocks}<LeveranceId>"), 1));
    let (status, answer) = app.post(&call);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(parse_receipts(&answer).receipts[0].status.as_str(), "Accepteret", "{answer}");
    let header_end = answer.find("<soap:Body>").expect("a Body");
    let header = &answer[..header_end];
    assert!(
        header.contains("<soap:Header><rh:RequestHeader xmlns:rh=\"http://kombit.dk/xml/schemas/RequestHeader/1/\">")
            && header.contains(&format!("<rh:TransactionUUID>{transaction}</rh:TransactionUUID>")),
        "the RequestHeader comes back in the answer's header: {answer}"
    );
    let stored = |column: &str| {
        app.count(&format!("SELECT count(*) AS n FROM deliveries WHERE leverance_id = '{}' AND {column}", delivery.delivery_id))
    };
    assert_eq!(stored(&format!("transaction_uuid = '{transaction}'")), 1);
    assert_eq!(stored(&format!("user_system_uuid = '{KY}' AND context_municipality_cvr = '{OUR_CVR}'")), 1);
    assert_eq!(stored("callers_service_call_identifier = 'KY-kald-77' AND accounting_info = 'afd. 5'"), 1);
    let out = fkoeko_command(&app.db_url).args(["deliveries", "show", &delivery.delivery_id]).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("context    CallersServiceCallIdentifier KY-kald-77") && shown.contains(&transaction), "{shown}");

    // Sent again, the same receipts come back, and this call's RequestHeader with them; without one, no header.
    let (_, again) = app.post(&call);
    assert!(again.contains(&format!("<rh:TransactionUUID>{transaction}</rh:TransactionUUID>")), "{again}");
    delivery.header = String::new();
    let (_, plain) = app.post(&delivery.soap11());
    assert!(!plain.contains("RequestHeader") && !plain.contains("<soap:Header>"), "{plain}");
}
