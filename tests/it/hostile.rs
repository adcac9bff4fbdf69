//! Hostile input against a running `fkoeko serve` process: each document gets its clear error, the server
//! keeps answering, and its resident memory (read from /proc) stays bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::delivery::Delivery;
use crate::common::serve::ServeProcess;
use crate::common::*;

fn envelope(body: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>{body}</soap:Body></soap:Envelope>")
}

/// The hostile corpus: (what, document, expected code, a word the error text must hold).
fn corpus() -> Vec<(&'static str, Vec<u8>, &'static str, &'static str)> {
    let good = Delivery::one("HOSTILE").soap11();
    let lol = "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\"><!ENTITY lol9 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">]>";
    let big_entity = format!("<!DOCTYPE q [<!ENTITY a \"{}\">]>", "a".repeat(50_000));
    let mut utf16: Vec<u8> = vec![0xFF, 0xFE];
    for unit in good.replace("encoding=\"UTF-8\"", "encoding=\"UTF-16\"").encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    let mut lying_bom = vec![0xFE, 0xFF];
    lying_bom.extend_from_slice(good.as_bytes());
    let mut bad_utf8 = good.clone().into_bytes();
    let at = bad_utf8.windows(7).position(|w| w == b"Modpost").unwrap();
    bad_utf8[at + 1] = 0xC3;
    bad_utf8[at + 2] = 0x28;
    vec![
        ("billion laughs", format!("<?xml version=\"1.0\"?>\n{lol}\n{}", envelope("&lol9;")).into_bytes(), "FORMAT_XML", "DTD"),
        (
            "quadratic blow-up",
            format!("<?xml version=\"1.0\"?>\n{big_entity}\n{}", envelope(&"&a;".repeat(10_000))).into_bytes(),
            "FORMAT_XML",
            "DTD",
        ),
        (
            "XXE to a file",
            format!("<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>\n{}", envelope("&e;")).into_bytes(),
            "FORMAT_XML",
            "DTD",
        ),
        (
            "XXE to a URL",
            format!("<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM \"http://127.0.0.1:9/x\">]>\n{}", envelope("&e;"))
                .into_bytes(),
            "FORMAT_XML",
            "DTD",
        ),
        (
            "parameter entity",
            format!("<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p;]>\n{}", envelope("<a/>"))
                .into_bytes(),
            "FORMAT_XML",
            "DTD",
        ),
        ("undeclared entity", envelope("<a>&passwd;</a>").into_bytes(), "FORMAT_XML", "&passwd;"),
        (
            "XInclude",
            envelope("<a xmlns:xi=\"http://www.w3.org/2001/XInclude\"><xi:include href=\"file:///etc/passwd\" parse=\"text\"/></a>")
                .into_bytes(),
            "FORMAT_XML",
            "XInclude",
        ),
        (
            "processing instruction",
            good.replace("<soap:Body>", "<soap:Body><?php system('id'); ?>").into_bytes(),
            "FORMAT_XML",
            "behandlingsinstruktion",
        ),
        ("invalid UTF-8", bad_utf8, "FORMAT_XML", "UTF-8"),
        ("declared Latin-1", good.replace("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"").into_bytes(), "FORMAT_XML", "ISO-8859-1"),
        ("UTF-16", utf16, "FORMAT_XML", "UTF-16"),
        ("byte-order mark that lies", lying_bom, "FORMAT_XML", "UTF-16"),
        ("very long name", envelope(&format!("<{0}/>", "n".repeat(100_000))).into_bytes(), "FORMAT_STOERRELSE", "elementnavn"),
        (
            "very long value",
            good.replace("<Posteringstekst>Kontanthjælp<", &format!("<Posteringstekst>{}<", "x".repeat(5_000_000))).into_bytes(),
            "FORMAT_STOERRELSE",
            "tekst",
        ),
        ("very long attribute", envelope(&format!("<a b=\"{}\"/>", "v".repeat(1_000_000))).into_bytes(), "FORMAT_STOERRELSE", "attribut"),
        (
            "many attributes",
            envelope(&format!("<a {}/>", (0..500).map(|i| format!("a{i}=\"1\"")).collect::<Vec<_>>().join(" "))).into_bytes(),
            "FORMAT_STOERRELSE",
            "attributter",
        ),
        (
            "deep nesting",
            envelope(&format!("{}{}", "<a>".repeat(200_000), "</a>".repeat(200_000))).into_bytes(),
            "FORMAT_STOERRELSE",
            "niveauer",
        ),
        ("over the size limit", format!("{good}<!--{}-->", "x".repeat(25 * 1024 * 1024)).into_bytes(), "FORMAT_STOERRELSE", "bytes"),
    ]
}

#[test]
fn hostile_documents_get_clear_errors_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database_url(dir.path());
    let server = ServeProcess::start(&db, &[]);
    let baseline = server.rss_mb();
    let mut peak = baseline;
    for (what, document, code, word) in corpus() {
        let (status, body) = server.post(&document);
        assert_eq!(status, 200, "{what}: {body}");
        assert_valid_receipt(&receipt_xml(&body));
        let set = parse_receipts(&body);
        let error = set.receipts[0].errors.first().unwrap_or_else(|| panic!("{what}: accepted: {body}"));
        assert_eq!(error.code.as_str(), code, "{what}: {}", error.text);
        assert!(error.text.contains(word), "{what}: {}", error.text);
        assert!(!body.contains("root:x:0"), "{what}: file contents leaked");
        // The server goes on answering ordinary calls.
        let (status, body) = server.post(Delivery::one(&format!("AFTER-{}", what.replace(' ', "-"))).soap11().as_bytes());
        assert_eq!((status, parse_receipts(&body).receipts[0].status.as_str()), (200, "Accepteret"), "after {what}");
        peak = peak.max(server.rss_mb());
    }

    // A 1 GB body streamed at the server, by a client that reads while it writes (as curl does): the server
    // reads up to its limit and answers FORMAT_STOERRELSE; the client then stops sending.
    let mut stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = {
        let answered = answered.clone();
        std::thread::spawn(move || {
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(22).any(|w| w == b"</KvitteringLeverance>") {
                    break;
                }
            }
            answered.store(true, std::sync::atomic::Ordering::SeqCst);
            // Unblocks the writer, which may be waiting for a server that no longer reads.
            let _ = reader.shutdown(std::net::Shutdown::Both);
            (String::from_utf8_lossy(&answer).into_owned(), Instant::now())
        })
    };
    write!(stream, "POST /sf1590a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, "<a>".repeat((1 << 20) / 3) + "x");
    let started = Instant::now();
    let mut sent_mb = 0;
    while sent_mb < 1024 && !answered.load(std::sync::atomic::Ordering::SeqCst) {
        if stream.write_all(chunk.as_bytes()).is_err() {
            break;
        }
        sent_mb += 1;
        if sent_mb % 16 == 0 {
            peak = peak.max(server.rss_mb());
        }
    }
    let (answer, answered_at) = reading.join().unwrap();
    println!("1 GB stream: the server answered after {sent_mb} MB, in {:?}", answered_at - started);
    assert!(sent_mb < 1024, "the server stopped reading long before 1 GB");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("<Kode>FORMAT_STOERRELSE</Kode>"), "{answer}");
    drop(stream);
    peak = peak.max(server.rss_mb());

    let (status, _) = server.post(Delivery::one("AFTER-1GB").soap11().as_bytes());
    assert_eq!(status, 200);
    // Bounded: the largest document the limits let in is 20 MB; the process stays far below the gigabyte.
    assert!(peak < baseline + 400, "resident memory grew from {baseline} MB to {peak} MB");
    println!("resident memory: {baseline} MB at start, {peak} MB at most");
}

#[test]
fn slow_bodies_time_out_and_calls_at_once_are_limited() {
    let app = TestApp::start_with(|c| {
        c.server.max_concurrent_requests = 1;
        c.server.request_body_timeout_secs = 2;
    });
    // A caller that announces a body and sends only part of it holds the one slot...
    let mut slow = TcpStream::connect(app.server.as_ref().unwrap().addr).unwrap();
    write!(slow, "POST /sf1590a HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<soap:Envelope").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // ... so another call is turned away with 503 and Retry-After.
    match ureq::post(&app.url("/sf1590a")).set("Content-Type", "text/xml").send_string(&Delivery::one("BUSY").soap11()) {
        Err(ureq::Error::Status(503, r)) => assert_eq!(r.header("Retry-After"), Some("5")),
        other => panic!("expected 503, got {other:?}"),
    }
    // The slow body is cut off after its time with 408.
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // And the slot is free again.
    assert_eq!(app.send(&Delivery::one("AFTER-SLOW").soap11()).receipts[0].status.as_str(), "Accepteret");
}

/// The fuzz target's inputs through what it runs (`pipeline::dry_run`, also `fkoeko validate`): production code on
/// the test installation, offline. Each gets receipts that say why, and a dry run writes nothing.
#[test]
fn the_fuzz_seeds_go_through_the_production_pipeline_in_a_dry_run_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("never.db").display().to_string();
    let pipeline = &fkoeko_adapter::startup::offline_pipeline(&test_config(&url)).unwrap();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(repo("fuzz/seeds/parse_delivery")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let set = fkoeko_adapter::pipeline::dry_run(pipeline, &std::fs::read(&path).unwrap()).unwrap().receipts;
        assert!(!set.receipts.is_empty(), "{name}: no receipt");
        let codes: Vec<&str> = set.receipts.iter().flat_map(|r| r.errors.iter().map(|e| e.code.as_str())).collect();
        seen.push((name, set.accepted(), codes.iter().map(|c| c.to_string()).collect::<Vec<_>>()));
    }
    seen.sort();
    let find = |name: &str| seen.iter().find(|(n, ..)| n == name).unwrap_or_else(|| panic!("{name} in {seen:?}"));
    assert_eq!(find("dtd.xml").2, ["FORMAT_XML"], "{seen:?}");
    assert!(find("schema-error.xml").2.iter().any(|c| c == "FORMAT_XSD"), "{seen:?}");
    assert!(find("rules-error.xml").2.iter().any(|c| c.starts_with("REGEL_")), "{seen:?}");
    assert!(find("finansbilag-soap11.xml").1 > 0, "a well-made finansbilag from a known sender is accepted: {seen:?}");
    assert!(!std::path::Path::new(&url).exists(), "a dry run touches no database");
}
