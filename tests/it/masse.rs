//! Masse: batch files in drop folders, taken when complete, streamed through the pipeline, answered with a
//! receipt file.

use crate::common::claims::{Claim, ClaimDelivery};
use crate::common::delivery::{line_of, Bilag, Delivery, Posting};
use crate::common::masse::{platform_metadata, read_receipt_file, Batch};
use crate::common::{fkoeko_command, KY, OUR_CVR};
use diesel::RunQueryDsl;
use fkoeko_adapter::domain::receipt::Status;
use fkoeko_adapter::domain::sortiment::Integration;

fn mixed_file() -> (Delivery, String) {
    let mut unbalanced = Bilag::balanced("M-2", "100.00");
    unbalanced.postings[1].amount = "99.00".into();
    let mut bad_art = Bilag::balanced("M-3", "10.00");
    bad_art.postings[0].art = "52".into();
    let delivery = Delivery::new(vec![Bilag::balanced("M-1", "1250.50"), unbalanced, bad_art, Bilag::balanced("M-4", "7.25")]);
    let text = delivery.masse();
    (delivery, text)
}

#[test]
fn a_file_with_accepted_and_rejected_finansbilag_gives_its_receipt_file_and_import_rows() {
    let batch = Batch::plain();
    let (delivery, text) = mixed_file();
    batch.drop_file("udbetaling-2026-11.xml", text.as_bytes());

    let handled = batch.run_once();
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert_eq!((handled[0].accepted, handled[0].rejected), (2, 2));

    let (_, set) = batch.receipt("udbetaling-2026-11.xml");
    assert_eq!(set.delivery_id.to_string(), delivery.delivery_id);
    assert_eq!(set.sender.to_string(), KY);
    let order: Vec<(&str, Status)> = set.receipts.iter().map(|r| (r.reference.as_str(), r.status)).collect();
    assert_eq!(order, vec![("M-1", Status::Accepteret), ("M-2", Status::Afvist), ("M-3", Status::Afvist), ("M-4", Status::Accepteret)]);
    assert_eq!(
        crate::common::errors_of(&set, "M-2"),
        vec![("REGEL_BALANCE".to_string(), Some("/FinansbilagLeverance/Finansbilag[2]".to_string()))]
    );
    // The schema error is placed in the file as it is: the third bilag's Art, on its own line.
    let art = &set.receipts[2].errors[0];
    assert_eq!(art.code.as_str(), "FORMAT_XSD");
    assert_eq!(art.path.as_deref(), Some("/FinansbilagLeverance/Finansbilag[3]/Postering[1]/Kontering/Art"));
    assert_eq!(art.line, Some(line_of(&text, "<Art>52</Art>")));
    assert_eq!(art.value.as_deref(), Some("52"));

    // Booked: the two accepted bilag, in the import tables, once.
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), 2);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal_lines"), 4);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal WHERE bilag_id IN ('M-1', 'M-4')"), 2);
    assert_eq!(
        batch.count("SELECT COUNT(*) AS n FROM deliveries WHERE transport = 'masse' AND accepted_count = 2 AND rejected_count = 2"),
        1
    );
    // The input is archived; nothing is left in the inbox or in processing.
    let folders = batch.folders();
    assert!(Batch::names_in(&folders.inbox).is_empty());
    assert!(Batch::names_in(&folders.processing).is_empty());
    assert_eq!(Batch::names_in(&folders.archive).len(), 1);
    assert!(Batch::names_in(&folders.archive)[0].ends_with("-udbetaling-2026-11.xml"));
    assert_eq!(Batch::names_in(&folders.outbox), vec!["udbetaling-2026-11.kvittering.xml"]);
}

#[test]
fn a_file_on_one_line_is_placed_by_line_and_column() {
    let batch = Batch::plain();
    let (_, text) = mixed_file();
    let one_line = text.replace('\n', "");
    batch.drop_file("one-line.xml", one_line.as_bytes());
    batch.run_once();
    let (_, set) = batch.receipt("one-line.xml");
    let art = &set.receipts[2].errors[0];
    assert_eq!(art.path.as_deref(), Some("/FinansbilagLeverance/Finansbilag[3]/Postering[1]/Kontering/Art"));
    assert_eq!(art.line, Some(1));
    // Columns count characters (the file has "æ" before it), as in a straks receipt.
    let column = one_line[..one_line.find("<Art>52</Art>").unwrap()].chars().count() as u32 + 1;
    assert_eq!(art.col, Some(column));
}

#[test]
fn a_file_with_a_byte_order_mark_is_read_as_without_it() {
    // UTF-8 with its byte-order mark, as editors on Windows write it: once rejected whole, the items read three
    // bytes off ("'Finansbil<' er ikke et gyldigt elementnavn").
    let ((_, plain), (_, other)) = (mixed_file(), mixed_file());
    let batch = Batch::plain();
    batch.drop_file("plain.xml", plain.as_bytes());
    batch.drop_file("marked.xml", format!("\u{feff}{}", other.replace("M-", "B-")).as_bytes());
    let handled = batch.run_once();
    assert_eq!(handled.iter().map(|h| (h.accepted, h.rejected)).collect::<Vec<_>>(), [(2, 2), (2, 2)]);
    let errors = |name: &str| {
        let (_, set) = batch.receipt(name);
        set.receipts
            .iter()
            .flat_map(|r| r.errors.iter().map(|e| (e.code.as_str().to_string(), e.path.clone(), e.line, e.col)))
            .collect::<Vec<_>>()
    };
    assert_eq!(errors("marked.xml"), errors("plain.xml"), "the same errors in the same places");
    assert!(!errors("marked.xml").is_empty());
}

#[test]
fn a_partial_file_is_not_taken() {
    // Serviceplatformen's convention: the data file alone, or with a .metadata whose size does not agree yet.
    let batch = Batch::metadata();
    let (_, text) = mixed_file();
    let inbox = batch.folders().inbox;
    std::fs::create_dir_all(&inbox).unwrap();
    let half = &text.as_bytes()[..text.len() / 2];
    std::fs::write(inbox.join("bilag.xml"), half).unwrap();
    assert!(batch.run_once().is_empty());
    let meta = platform_metadata("bilag.xml", text.len(), "ky-sftp", Some("F-1"), OUR_CVR);
    std::fs::write(inbox.join("bilag.xml.metadata"), &meta).unwrap();
    assert!(batch.run_once().is_empty(), "taken while the size does not agree");
    assert_eq!(Batch::names_in(&inbox), vec!["bilag.xml", "bilag.xml.metadata"]);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM batch_files"), 0);

    // The rest arrives: now it is taken, metadata and all.
    std::fs::write(inbox.join("bilag.xml"), &text).unwrap();
    let handled = batch.run_once();
    assert_eq!(handled.len(), 1);
    assert!(Batch::names_in(&inbox).is_empty());
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM batch_files WHERE file_key = 'sftp:ky-sftp:F-1'"), 1);

    // A plain folder: a temporary name, or a file changed within the quiet time, is not taken.
    let plain = Batch::with(|c| {
        c.batch.convention = fkoeko_adapter::config::BatchConvention::Plain;
        c.batch.quiet_secs = 3600;
    });
    let inbox = plain.folders().inbox;
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("upload.xml.filepart"), &text).unwrap();
    std::fs::write(inbox.join("fresh.xml"), &text).unwrap();
    assert!(plain.run_once().is_empty());
    assert_eq!(Batch::names_in(&inbox), vec!["fresh.xml", "upload.xml.filepart"]);
}

#[test]
fn a_file_for_another_recipient_is_left_alone_and_one_from_another_sftp_user_is_rejected() {
    let batch = Batch::from_platform(|_| {});
    let (_, text) = mixed_file();
    let inbox = batch.folders().inbox;
    std::fs::create_dir_all(&inbox).unwrap();
    // For another SFTP user (the municipality's CVR is no longer one of ours once sftp_users is set).
    std::fs::write(inbox.join("a.xml"), &text).unwrap();
    std::fs::write(inbox.join("a.xml.metadata"), platform_metadata("a.xml", text.len(), "ky-sftp", Some("F-A"), OUR_CVR)).unwrap();
    // From an SFTP user the sortiment does not give KY, whose AfsenderSystem the file names.
    std::fs::write(inbox.join("b.xml"), &text).unwrap();
    std::fs::write(inbox.join("b.xml.metadata"), platform_metadata("b.xml", text.len(), "ksd-sftp", Some("F-B"), "erp-sftp")).unwrap();
    batch.run_once();
    batch.run_once();
    assert_eq!(Batch::names_in(&inbox), vec!["a.xml", "a.xml.metadata"], "left where it is, for whoever it is for");
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM batch_files"), 1);
    let (_, b) = batch.receipt("b.xml");
    for receipt in &b.receipts {
        assert_eq!(receipt.status, Status::Afvist);
        let error = receipt.errors.iter().find(|e| e.code.as_str() == "AFSENDER_UKENDT").expect("AFSENDER_UKENDT");
        assert!(error.text.contains("ksd-sftp") && error.text.contains(KY), "names both: {}", error.text);
    }
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), 0);
}

#[test]
fn a_malformed_file_or_an_unknown_sender_is_rejected_whole() {
    let batch = Batch::plain();
    let (_, text) = mixed_file();
    // Cut off inside the last bilag: the first three are well-formed, but the file is not.
    let cut = &text[..text.rfind("<BilagId>M-4").unwrap() + 20];
    batch.drop_file("cut.xml", cut.as_bytes());
    let mut unknown = Delivery::new(vec![Bilag::balanced("U-1", "1.00"), Bilag::balanced("U-2", "2.00")]);
    unknown.sender = "11111111-2222-4333-8444-555555555555".into();
    batch.drop_file("unknown.xml", unknown.masse().as_bytes());
    batch.drop_file("dtd.xml", b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"b\">]><FinansbilagLeverance/>");
    batch.run_once();

    let (_, cut) = batch.receipt("cut.xml");
    assert_eq!(cut.receipts.len(), 1);
    assert_eq!(cut.receipts[0].reference, "LEVERANCE");
    assert_eq!(cut.receipts[0].errors[0].code.as_str(), "FORMAT_XML");
    assert!(cut.receipts[0].errors[0].line.is_some());
    let (_, dtd) = batch.receipt("dtd.xml");
    assert_eq!(dtd.receipts[0].errors[0].code.as_str(), "FORMAT_XML");
    let (_, unknown) = batch.receipt("unknown.xml");
    let refs: Vec<&str> = unknown.receipts.iter().map(|r| r.reference.as_str()).collect();
    assert_eq!(refs, vec!["U-1", "U-2"]);
    assert!(unknown.receipts.iter().all(|r| r.status == Status::Afvist && r.errors[0].code.as_str() == "AFSENDER_UKENDT"));
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), 0);
}

#[test]
fn a_file_whose_items_are_all_in_another_namespace_is_rejected_whole_with_the_reason() {
    // No item is found (an item is a Finansbilag in the delivery's namespace), so none can be rejected one by one:
    // the file itself gets a rejection naming the element and its namespace, not an empty receipt file.
    let batch = Batch::plain();
    let (_, text) = mixed_file();
    batch.drop_file("elsewhere.xml", text.replace("<Finansbilag>", "<Finansbilag xmlns=\"urn:andet\">").as_bytes());
    batch.run_once();

    let (_, elsewhere) = batch.receipt("elsewhere.xml");
    assert_eq!(elsewhere.receipts.len(), 1);
    let receipt = &elsewhere.receipts[0];
    assert_eq!((receipt.reference.as_str(), receipt.status), ("LEVERANCE", Status::Afvist));
    let error = &receipt.errors[0];
    assert_eq!((error.code.as_str(), error.path.as_deref()), ("FORMAT_XSD", Some("/FinansbilagLeverance/Finansbilag[1]")));
    assert!(error.text.contains("urn:andet"), "{}", error.text);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), 0);
}

#[test]
fn a_file_dropped_again_books_nothing_and_gets_its_receipt_again() {
    let batch = Batch::plain();
    let (_, text) = mixed_file();
    batch.drop_file("first.xml", text.as_bytes());
    batch.run_once();
    let (first_xml, first) = batch.receipt("first.xml");

    // The same bytes again, under the same name: the same receipt file, nothing booked.
    batch.drop_file("first.xml", text.as_bytes());
    let handled = batch.run_once();
    assert_eq!(handled.len(), 1);
    assert!(handled[0].repeated);
    let (again_xml, _) = batch.receipt("first.xml");
    assert_eq!(again_xml, first_xml);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), 2);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM receipts"), 4);
    assert_eq!(Batch::names_in(&batch.folders().archive).len(), 2);

    // The same finansbilag in a new delivery (a new LeveranceId), laid out differently: each gets its first
    // receipt, nothing is booked twice.
    let copy_text = text.replace(&first.delivery_id.to_string(), &crate::common::delivery::new_id()).replace('\n', "\n  ");
    batch.drop_file("copy.xml", copy_text.as_bytes());
    batch.run_once();
    let (_, copy) = batch.receipt("copy.xml");
    let (_, first) = batch.receipt("first.xml");
    assert_eq!(copy.receipts[0], first.receipts[0]);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), 2);
}

#[test]
fn the_same_senders_file_id_with_other_content_is_rejected() {
    let batch = Batch::metadata();
    let inbox = batch.folders().inbox;
    std::fs::create_dir_all(&inbox).unwrap();
    for (name, bilag) in [("one.xml", "S-1"), ("two.xml", "S-2")] {
        let text = Delivery::new(vec![Bilag::balanced(bilag, "5.00")]).masse();
        std::fs::write(inbox.join(name), &text).unwrap();
        std::fs::write(inbox.join(format!("{name}.metadata")), platform_metadata(name, text.len(), "ky-sftp", Some("SAME-ID"), OUR_CVR))
            .unwrap();
        let handled = batch.run_once();
        let expected = if name == "one.xml" { (1, 0, false) } else { (0, 1, false) };
        assert_eq!((handled[0].accepted, handled[0].rejected, handled[0].repeated), expected, "{name}");
    }
    let (_, two) = batch.receipt("two.xml");
    assert_eq!(two.receipts.len(), 1);
    assert_eq!(two.receipts[0].errors[0].code.as_str(), "DUBLET_AFVIGENDE");
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), 1);
}

#[test]
fn two_receivers_never_take_the_same_file() {
    let batch = Batch::plain();
    let mut expected = 0;
    for f in 0..8 {
        let bilag = (0..20).map(|b| Bilag::balanced(&format!("P{f}-{b}"), "3.00")).collect();
        batch.drop_file(&format!("f{f}.xml"), Delivery::new(bilag).masse().as_bytes());
        expected += 20;
    }
    let (a, b) = (batch.receiver(), batch.receiver());
    let (mut handled_a, handled_b) = std::thread::scope(|s| {
        let one = s.spawn(|| a.run_once(&|_, _| {}).unwrap().handled);
        let two = s.spawn(|| b.run_once(&|_, _| {}).unwrap().handled);
        (one.join().unwrap(), two.join().unwrap())
    });
    handled_a.extend(handled_b);
    let mut names: Vec<String> = handled_a.iter().map(|h| h.file_name.clone()).collect();
    names.sort();
    assert_eq!(names, (0..8).map(|f| format!("f{f}.xml")).collect::<Vec<_>>());
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), expected);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM batch_files WHERE state = 'done'"), 8);
}

#[test]
fn a_posting_error_deep_in_a_large_file_is_found_in_place() {
    // Not a speed test (see benches/): 3,000 finansbilag, the 2,718th with a closed period. Every 300th, from
    // the 7th, breaks the schema: while the file is scanned its items are schema-checked ahead by another thread
    // as far as it keeps up, and each of these must be found wherever that thread had got to.
    let batch = Batch::plain();
    let mut bilag: Vec<Bilag> = (0..3000).map(|b| Bilag::balanced(&format!("L-{b}"), "12.00")).collect();
    bilag[2717].postings[0] = Posting { date: "2001-01-01".into(), ..bilag[2717].postings[0].clone() };
    let broken: Vec<usize> = (6..3000).step_by(300).collect();
    for &b in &broken {
        bilag[b].postings[1].amount = "12.005".into();
    }
    let text = Delivery::new(bilag).masse();
    batch.drop_file("large.xml", text.as_bytes());
    let handled = batch.run_once();
    assert_eq!((handled[0].accepted, handled[0].rejected), (2999 - broken.len() as i32, 1 + broken.len() as i32));
    let (_, set) = batch.receipt("large.xml");
    assert_eq!(set.receipts.len(), 3000);
    let rejected: Vec<usize> = set.receipts.iter().enumerate().filter(|(_, r)| r.status == Status::Afvist).map(|(i, _)| i).collect();
    assert_eq!(rejected, broken.iter().copied().chain([2717]).collect::<Vec<_>>());
    let error = &set.receipts[2717].errors[0];
    assert_eq!(error.code.as_str(), "REGEL_PERIODE_LUKKET");
    assert_eq!(error.path.as_deref(), Some("/FinansbilagLeverance/Finansbilag[2718]/Postering[1]/Posteringsdato"));
    for &b in &broken {
        let errors: Vec<(&str, Option<&str>)> = set.receipts[b].errors.iter().map(|e| (e.code.as_str(), e.path.as_deref())).collect();
        let path = format!("/FinansbilagLeverance/Finansbilag[{}]/Postering[2]/Beloeb", b + 1);
        assert_eq!(errors, [("FORMAT_XSD", Some(path.as_str()))], "finansbilag {}", b + 1);
    }
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal_lines"), 2 * (2999 - broken.len() as i64));

    // As the page and `deliveries show` see it: the first thousand receipts, in file order, of 3,000.
    let leverance = set.delivery_id.to_string();
    let detail = batch.app.db.delivery_detail(&leverance).unwrap().expect("the file's delivery");
    assert_eq!((detail.items.len(), detail.items_total), (1000, 3000));
    assert_eq!(detail.file_name.as_deref(), Some("large.xml"));
    let references: Vec<&str> = detail.items.iter().map(|i| i.receipt.reference.as_str()).collect();
    assert_eq!((references[0], references[9], references[999]), ("L-0", "L-9", "L-999"));
    let unbooked: Vec<usize> = detail.items.iter().enumerate().filter(|(_, i)| i.booked.is_none()).map(|(n, _)| n).collect();
    assert_eq!(unbooked, [6, 306, 606, 906], "the broken ones of the first thousand");
}

#[test]
fn a_file_of_fordringer_gives_its_receipt_file_and_claims() {
    // SF1590_B_1 through the same path: a claim, its interest claim later in the file (related to a claim
    // booked before it in the same file), and an interest claim whose main claim is unknown.
    let batch = Batch::plain();
    let delivery =
        ClaimDelivery::new(vec![Claim::repayment("FM-1"), Claim::interest("FM-2", "FM-1"), Claim::interest("FM-3", "FM-UKENDT")]);
    batch.drop_file_for(Integration::Sf1590B, "fordringer.xml", delivery.masse().as_bytes());
    let handled = batch.run_once();
    assert_eq!((handled[0].accepted, handled[0].rejected), (2, 1));

    let (_, set) = batch.receipt_for(Integration::Sf1590B, "fordringer.xml");
    let outcome: Vec<(&str, Status)> = set.receipts.iter().map(|r| (r.reference.as_str(), r.status)).collect();
    assert_eq!(outcome, vec![("FM-1", Status::Accepteret), ("FM-2", Status::Accepteret), ("FM-3", Status::Afvist)]);
    assert_eq!(
        crate::common::errors_of(&set, "FM-3"),
        vec![("REGEL_RELATERET".to_string(), Some("/FordringLeverance/Fordring[3]/RelateretFordringId".to_string()))]
    );
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_claims"), 2);
    assert_eq!(
        batch.count("SELECT COUNT(*) AS n FROM erp_claims c JOIN erp_claims m ON c.related_claim_id = m.id WHERE c.fordring_id = 'FM-2' AND m.fordring_id = 'FM-1'"),
        1
    );
    assert!(Batch::names_in(&batch.folders().outbox).is_empty(), "nothing in SF1590_A's outbox");
}

#[test]
fn a_file_that_fails_does_not_hold_up_the_others() {
    // SF1590_A's outbox cannot be written (it is a file, not a folder): its file fails in this round and
    // stays claimed, to be tried again; the SF1590_B file after it is still handled.
    // A lease of 0 s: the failed file may be taken over at the next round.
    let batch = Batch::with(|c| {
        c.batch.convention = fkoeko_adapter::config::BatchConvention::Plain;
        c.batch.lease_secs = 0;
    });
    let receiver = batch.receiver();
    let outbox = batch.folders().outbox;
    std::fs::remove_dir(&outbox).unwrap();
    std::fs::write(&outbox, b"not a folder").unwrap();
    batch.drop_file("stuck.xml", Delivery::one("ST-1").masse().as_bytes());
    batch.drop_file_for(Integration::Sf1590B, "claims.xml", ClaimDelivery::one(Claim::repayment("ST-F1")).masse().as_bytes());

    let round = receiver.run_once(&|_, _| {}).unwrap();
    assert_eq!(round.failed.len(), 1, "{round:?}");
    assert_eq!(round.failed[0].0, "stuck.xml");
    assert!(round.failed[0].1.contains("kvittering"), "{}", round.failed[0].1);
    let handled: Vec<&str> = round.handled.iter().map(|h| h.file_name.as_str()).collect();
    assert_eq!(handled, vec!["claims.xml"]);
    batch.receipt_for(Integration::Sf1590B, "claims.xml");
    // The failed file's items are booked; only its receipt file is missing, and it is still in processing/.
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM batch_files WHERE file_name = 'stuck.xml' AND state = 'receipt'"), 1);
    assert_eq!(Batch::names_in(&batch.folders().processing).len(), 1);

    // Once the outbox is there again and the lease has run out, the file is finished: nothing booked twice.
    std::fs::remove_file(&outbox).unwrap();
    std::fs::create_dir(&outbox).unwrap();
    // The lease runs out (as it would lease_secs after the last renewal), without waiting for the clock.
    diesel::sql_query("UPDATE batch_files SET lease_until = '2000-01-01 00:00:00' WHERE file_name = 'stuck.xml'")
        .execute(&mut crate::common::connect(&batch.db_url))
        .unwrap();
    let round = batch.receiver().run_once(&|_, _| {}).unwrap();
    assert!(round.failed.is_empty(), "{round:?}");
    assert_eq!(round.handled.iter().map(|h| h.file_name.as_str()).collect::<Vec<_>>(), vec!["stuck.xml"]);
    let (_, set) = batch.receipt("stuck.xml");
    assert_eq!(set.receipts.len(), 1);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal WHERE bilag_id = 'ST-1'"), 1);
}

#[test]
fn the_envelope_is_schema_checked_once_and_the_first_bilag_on_its_own() {
    let batch = Batch::plain();
    // An error in the first bilag rejects that bilag only, though the envelope is checked together with it.
    let mut first_bad = Bilag::balanced("E-1", "10.00");
    first_bad.postings[0].art = "52".into();
    let text = Delivery::new(vec![first_bad, Bilag::balanced("E-2", "10.00")]).masse();
    batch.drop_file("first-bad.xml", text.as_bytes());
    // An error in the envelope rejects every bilag, each with that error.
    let envelope_bad =
        Delivery::new(vec![Bilag::balanced("E-3", "1.00"), Bilag::balanced("E-4", "1.00")]).masse().replace("T08:00:00+01:00", "kl. 8");
    batch.drop_file("envelope-bad.xml", envelope_bad.as_bytes());
    batch.run_once();

    let (_, first) = batch.receipt("first-bad.xml");
    let outcome: Vec<(&str, Status)> = first.receipts.iter().map(|r| (r.reference.as_str(), r.status)).collect();
    assert_eq!(outcome, vec![("E-1", Status::Afvist), ("E-2", Status::Accepteret)]);
    assert_eq!(
        crate::common::errors_of(&first, "E-1"),
        vec![("FORMAT_XSD".to_string(), Some("/FinansbilagLeverance/Finansbilag[1]/Postering[1]/Kontering/Art".to_string()))]
    );
    let (_, envelope) = batch.receipt("envelope-bad.xml");
    for reference in ["E-3", "E-4"] {
        assert_eq!(
            crate::common::errors_of(&envelope, reference),
            vec![("FORMAT_XSD".to_string(), Some("/FinansbilagLeverance/Dannet".to_string()))]
        );
    }
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), 1);
}

#[test]
fn a_mapping_change_part_way_through_a_file_leaves_the_whole_file_on_the_version_it_started_with() {
    let batch = Batch::plain();
    let bilag: Vec<Bilag> = (0..2500).map(|b| Bilag::balanced(&format!("V-{b}"), "3.00")).collect();
    batch.drop_file("versions.xml", Delivery::new(bilag).masse().as_bytes());
    let before = batch.app.pipeline.mappings().unwrap().version.clone();

    // After the first chunk is booked, a new version maps the payouts elsewhere (a rule above all others).
    let mut files = fkoeko_adapter::domain::mapping::read_dir(&batch.config.paths.mappings).unwrap();
    let rules = files.get_mut("konti.csv").unwrap();
    *rules = rules.replacen("5.57.72;*;*;*;*;*;*;*;opslag", "5.57.72;*;1;*;5.2;*;*;*;99999999;\n5.57.72;*;*;*;*;*;*;*;opslag", 1);
    let changed = std::sync::atomic::AtomicBool::new(false);
    let round = batch
        .receiver()
        .run_once(&|_, progress| {
            if progress.items_done > 0
                && progress.items_done < progress.items_total
                && !changed.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                let change = batch
                    .app
                    .pipeline
                    .change_mappings(&files, "test", fkoeko_adapter::storage::mappings::MappingSource::Page, "midt i filen", None, false)
                    .unwrap();
                assert!(matches!(change, fkoeko_adapter::pipeline::MappingChange::Saved(_)), "{change:?}");
            }
        })
        .unwrap();
    assert!(changed.load(std::sync::atomic::Ordering::SeqCst), "the change was made while the file was in progress");
    assert_eq!((round.handled[0].accepted, round.handled[0].rejected), (2500, 0));
    let versions = batch.count(&format!("SELECT COUNT(*) AS n FROM erp_journal WHERE mapping_version <> '{before}'"));
    assert_eq!(versions, 0, "every bilag of the file on the version it started with");
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal_lines WHERE erp_account = '99999999'"), 0);

    // The next delivery is mapped by the new version.
    assert_ne!(batch.app.pipeline.mappings().unwrap().version, before);
    batch.drop_file("after.xml", Delivery::new(vec![Bilag::balanced("V-AFTER", "3.00")]).masse().as_bytes());
    batch.run_once();
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal_lines WHERE erp_account = '99999999'"), 1);
}

/// A receipt file the platform never answers for is sent again, and after the last try it is failed, with the
/// reason, where an operator looks (`fkoeko batch list`, the delivery in the terminal), and the operators mailed.
#[test]
fn a_receipt_file_never_answered_for_is_sent_again_then_failed() {
    let batch = Batch::from_platform(|c| {
        c.batch.receipt_max_attempts = 2;
        c.batch.receipt_answer_secs = 0;
        c.batch.receipt_backoff_initial_secs = 0;
        c.alerts.enabled = true;
        c.alerts.operators = vec!["drift@kommune.example.dk".into()];
    });
    let inbox = batch.folders().inbox;
    std::fs::create_dir_all(&inbox).unwrap();
    let delivery = Delivery::new(vec![Bilag::balanced("SILENT-1", "4.00")]);
    let text = delivery.masse();
    std::fs::write(inbox.join("silent.xml"), &text).unwrap();
    std::fs::write(inbox.join("silent.xml.metadata"), platform_metadata("silent.xml", text.len(), "ky-sftp", Some("S-1"), "erp-sftp"))
        .unwrap();
    let state = || batch.string("SELECT state || ' ' || CAST(attempts AS TEXT) AS s FROM receipt_transfers");
    // With no time at all to answer in, the first round sends it and counts the silence.
    batch.run_once();
    assert_eq!(state(), "written 1", "sent, unanswered: to be sent again");
    let outbox = batch.folders().outbox;
    assert!(outbox.join("silent.kvittering.xml.trigger").exists());
    // The platform took both files, and then said nothing.
    std::fs::remove_file(outbox.join("silent.kvittering.xml")).unwrap();
    std::fs::remove_file(outbox.join("silent.kvittering.xml.trigger")).unwrap();
    batch.run_once();
    assert_eq!(state(), "sent 2");
    assert!(
        outbox.join("silent.kvittering.xml").exists() && outbox.join("silent.kvittering.xml.trigger").exists(),
        "sent again from the kept copy"
    );
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM alert_outbox"), 0, "no alert while tries are left");
    batch.run_once();
    assert_eq!(state(), "failed 2");
    // The operators are mailed once, with what and why.
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM alert_outbox"), 1);
    assert!(batch.string("SELECT recipients AS s FROM alert_outbox").contains("drift@kommune.example.dk"));
    let payload = batch.string("SELECT payload AS s FROM alert_outbox");
    assert!(payload.contains("silent.kvittering.xml") && payload.contains("no .sftpreceipt") && payload.contains("ky-sftp"), "{payload}");
    batch.run_once();
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM alert_outbox"), 1, "given up once, said once");

    let out = fkoeko_command(&batch.db_url).args(["batch", "list"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout.lines().find(|l| l.contains("silent.xml")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("failed (2 tries)") && row.contains("no .sftpreceipt from Serviceplatformen"), "{row}");
    let out = fkoeko_command(&batch.db_url).args(["deliveries", "show", &delivery.delivery_id]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("receipt    silent.kvittering.xml failed after 2 tries"), "{stdout}");
}

/// Two files of the same name from the platform: the second's receipt file does not take the place of the
/// first's while the platform has not picked that up; it follows once the outbox is free.
#[test]
fn a_receipt_file_waits_for_another_of_the_same_name_to_be_picked_up() {
    let batch = Batch::from_platform(|_| {});
    let folders = batch.folders();
    std::fs::create_dir_all(&folders.inbox).unwrap();
    let drop = |bilag: &str, id: &str| {
        let delivery = Delivery::new(vec![Bilag::balanced(bilag, "2.00")]);
        let text = delivery.masse();
        std::fs::write(folders.inbox.join("same.xml"), &text).unwrap();
        std::fs::write(folders.inbox.join("same.xml.metadata"), platform_metadata("same.xml", text.len(), "ky-sftp", Some(id), "erp-sftp"))
            .unwrap();
        batch.run_once();
        delivery
    };
    let (receipt, trigger) = (folders.outbox.join("same.kvittering.xml"), folders.outbox.join("same.kvittering.xml.trigger"));
    let first = drop("SAME-1", "F-1");
    let second = drop("SAME-2", "F-2");
    let in_outbox = || read_receipt_file(&receipt).1.delivery_id.to_string();
    assert_eq!(in_outbox(), first.delivery_id, "the first is still there for the platform");
    assert_eq!(batch.string("SELECT state AS s FROM receipt_transfers WHERE senders_file_id IN (SELECT senders_file_id FROM receipt_transfers ORDER BY id DESC LIMIT 1)"), "written");
    // The platform takes the first; when the second's time comes, it is handed over.
    std::fs::remove_file(&receipt).unwrap();
    std::fs::remove_file(&trigger).unwrap();
    diesel::sql_query("UPDATE receipt_transfers SET next_attempt_at = '2000-01-01 00:00:00' WHERE state = 'written'")
        .execute(&mut crate::common::connect(&batch.db_url))
        .unwrap();
    batch.run_once();
    assert_eq!(in_outbox(), second.delivery_id);
    assert!(trigger.exists());
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM receipt_transfers WHERE state = 'sent'"), 2);
}

/// What the platform (or a careless hand) may put in the inbox beside the files: an answer with another
/// SendersFileId, an answer no receipt file waits for, a name too long to make a receipt file's name from,
/// metadata too large to be one, metadata with two senders, and an empty SendersFileId.
#[test]
fn answers_and_metadata_that_do_not_fit_are_left_or_archived_not_taken() {
    let batch = Batch::from_platform(|_| {});
    let folders = batch.folders();
    std::fs::create_dir_all(&folders.inbox).unwrap();
    let put = |name: &str, bilag: &str, edit: &dyn Fn(String) -> String| {
        let text = Delivery::new(vec![Bilag::balanced(bilag, "3.00")]).masse();
        std::fs::write(folders.inbox.join(name), &text).unwrap();
        let metadata = edit(platform_metadata(name, text.len(), "ky-sftp", Some(&format!("ID-{bilag}")), "erp-sftp"));
        std::fs::write(folders.inbox.join(format!("{name}.metadata")), metadata).unwrap();
    };
    put("a.xml", "ODD-1", &|m| m);
    let round = batch.receiver().run_once(&|_, _| {}).unwrap();
    assert!(round.failed.is_empty(), "{:?}", round.failed);
    let id = batch.string("SELECT senders_file_id AS s FROM receipt_transfers");
    let answer = |senders_file_id: &str| {
        format!(
            "<sftp:TechnicalReceipt xmlns:sftp=\"{}\"><FileTransferUUID>x</FileTransferUUID><SendersFileId>{senders_file_id}</SendersFileId>\
             <Receipt><Message>SUCCESS</Message></Receipt></sftp:TechnicalReceipt>",
            fkoeko_adapter::batch::metadata::NAMESPACE
        )
    };
    let answer_file = folders.inbox.join("a.kvittering.xml.sftpreceipt");
    let state = || batch.string("SELECT state AS s FROM receipt_transfers");
    // Another id under this receipt file's name: not its answer.
    std::fs::write(&answer_file, answer("kvittering-0000")).unwrap();
    batch.run_once();
    assert_eq!(state(), "sent");
    assert!(!answer_file.exists(), "archived as unmatched, not left to answer a later try");
    // Its own answer, and then the same answer once more: the second answers nothing.
    std::fs::write(&answer_file, answer(&id)).unwrap();
    batch.run_once();
    assert_eq!(state(), "delivered");
    std::fs::write(&answer_file, answer(&id)).unwrap();
    batch.run_once();
    assert!(!answer_file.exists());
    assert_eq!(Batch::names_in(&folders.archive).iter().filter(|n| n.starts_with("unmatched-")).count(), 2);

    // Left in the inbox, each without a failed round: a name too long, metadata too large, two Senders.
    let long = format!("{}.xml", "n".repeat(220));
    put(&long, "ODD-2", &|m| m);
    put("big.xml", "ODD-3", &|m| m.replace("<Recipients>", &format!("<!--{}--><Recipients>", "x".repeat(5 << 20))));
    put("two.xml", "ODD-4", &|m| m.replace("<Sender>ky-sftp</Sender>", "<Sender>ky-sftp</Sender><Sender>evil-sftp</Sender>"));
    // An empty SendersFileId is none: taken, and known by the platform's transfer id.
    put("empty-id.xml", "ODD-5", &|m| m.replace("<SendersFileId>ID-ODD-5</SendersFileId>", "<SendersFileId></SendersFileId>"));
    for _ in 0..2 {
        let round = batch.receiver().run_once(&|_, _| {}).unwrap();
        assert!(round.failed.is_empty(), "{:?}", round.failed);
    }
    let left = Batch::names_in(&folders.inbox);
    for name in [long.as_str(), "big.xml", "two.xml"] {
        assert!(left.contains(&name.to_string()), "{name} left: {left:?}");
    }
    assert!(!left.contains(&"empty-id.xml".to_string()), "{left:?}");
    assert!(batch.string("SELECT file_key AS s FROM batch_files WHERE file_name = 'empty-id.xml'").starts_with("sftp-transfer:"));
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal WHERE bilag_id IN ('ODD-2', 'ODD-3', 'ODD-4')"), 0);
}

/// A batch file booked while straks calls book some of its finansbilag at the same time: on PostgreSQL the calls'
/// writers and the file's chunks meet at the same unique keys, and a chunk that loses is committed again in
/// halves, down to single items (as a whole it would lose again while the calls keep coming). Each finansbilag is
/// booked once, with one receipt, whichever way it came first, and no call is answered with a fault: the calls
/// wait at most a second for a lock on PostgreSQL (a CI run failed with the default five seconds when the chunk
/// was written again item by item in one long transaction, holding the keys a call waited on).
#[test]
fn a_batch_file_and_straks_calls_of_the_same_finansbilag_at_once_book_each_once() {
    const N: usize = 1500;
    let batch = Batch::plain();
    // A second's lock wait on PostgreSQL; SQLite's calls wait for its one write lock, a whole chunk at a time.
    let postgres = batch.db_url.starts_with("postgres");
    let straks = crate::common::TestApp::start_on_url(batch.db_url.clone(), |c| {
        if postgres {
            c.database.busy_timeout_ms = 1000;
        }
    });
    let bilag: Vec<Bilag> = (0..N).map(|n| Bilag::balanced(&format!("RACE-{n}"), "42.00")).collect();
    batch.drop_file("race.xml", Delivery::new(bilag.clone()).masse().as_bytes());

    let stop = std::sync::atomic::AtomicBool::new(false);
    let answers = std::sync::Mutex::new(Vec::new());
    let handled = std::thread::scope(|s| {
        for client in 0..8u64 {
            let (stop, answers, straks, bilag) = (&stop, &answers, &straks, &bilag);
            s.spawn(move || {
                let mut seed = client + 1;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // Three of the file's finansbilag, in no particular order.
                    let picked = (0..3)
                        .map(|_| {
                            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                            bilag[(seed >> 33) as usize % N].clone()
                        })
                        .collect::<Vec<_>>();
                    let set = straks.send(&Delivery::new(picked).soap11());
                    answers.lock().unwrap().extend(set.receipts);
                }
            });
        }
        let round = batch.receiver().run_once(&|_, _| {});
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        round.unwrap()
    });
    // Not failed and left for its lease to run out, as it was when a chunk lost its race every time.
    assert!(handled.failed.is_empty(), "{:?}", handled.failed);
    let handled = handled.handled;
    assert_eq!(handled.len(), 1, "{handled:?}");
    assert_eq!((handled[0].accepted, handled[0].rejected), (N as i32, 0));
    assert_eq!(batch.count("SELECT count(*) AS n FROM erp_journal"), N as i64);
    assert_eq!(batch.count("SELECT count(*) AS n FROM erp_journal_lines"), 2 * N as i64);
    let (_, file) = batch.receipt("race.xml");
    let first: std::collections::HashMap<String, uuid::Uuid> = file.receipts.iter().map(|r| (r.reference.clone(), r.id)).collect();
    let answers = answers.into_inner().unwrap();
    assert!(!answers.is_empty());
    for receipt in answers {
        assert_eq!(receipt.status, Status::Accepteret, "{receipt:?}");
        assert_eq!(Some(&receipt.id), first.get(&receipt.reference), "one receipt for {}", receipt.reference);
    }
}

#[test]
fn a_lost_receipt_file_is_written_again_on_request_and_nothing_is_booked_again() {
    let batch = Batch::plain();
    let (_, text) = mixed_file();
    batch.drop_file("igen.xml", text.as_bytes());
    batch.run_once();
    let outbox = batch.folders().outbox;
    let receipt = outbox.join("igen.kvittering.xml");
    let first = std::fs::read_to_string(&receipt).unwrap();
    std::fs::remove_file(&receipt).unwrap();
    let booked = batch.count("SELECT COUNT(*) AS n FROM erp_journal");
    let id = batch.count("SELECT CAST(MAX(id) AS BIGINT) AS n FROM batch_files").to_string();

    let out = crate::common::fkoeko_command(&batch.db_url).args(["batch", "write-receipt", &id]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    batch.run_once();
    assert_eq!(std::fs::read_to_string(&receipt).unwrap(), first, "the same receipts, from the stored ones");
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM erp_journal"), booked, "nothing booked again");
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM batch_files WHERE state = 'done'"), 1);
    assert_eq!(batch.count("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'receipt_rewritten'"), 1);
    // A file that is not there (or not done) is refused.
    let out = crate::common::fkoeko_command(&batch.db_url).args(["batch", "write-receipt", "999"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}
