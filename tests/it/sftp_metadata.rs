//! Serviceplatformen's SFTP metadata as its contract lays it out: `FileMetadata` and `Trigger` roots,
//! unqualified and qualified children, with and without `SendersFileId`, static recipients and dynamic routing.
//! Each document is first checked with xmllint against `schemas/sftp-metadata.xsd` (the contract's rules as the
//! project writes them), then dropped beside a file, and the file is taken, left alone or rejected as the rules
//! say.

use std::path::Path;
use std::process::Command;

use crate::common::delivery::{Bilag, Delivery};
use crate::common::masse::Batch;
use crate::common::{repo, KY, OUR_CVR};
use fkoeko_adapter::batch::metadata::{render, Describe, SendTo};
use fkoeko_adapter::domain::receipt::Status;

/// This installation's IT system on the platform, in these tests.
const OUR_SYSTEM: &str = "5a0c9e1d-7b2f-4c3a-8d4e-6f7a8b9c0d11";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// Taken and booked, known by this file key (`None`: by content).
    Accepted(Option<&'static str>),
    /// Left in the inbox: not for this installation, or not readable.
    LeftAlone,
    /// Taken, and every item rejected with this code.
    Rejected(&'static str),
}

fn xmllint_accepts(document: &str, dir: &Path) -> bool {
    let file = dir.join(format!("{}.xml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, document).unwrap();
    let out = Command::new("xmllint").arg("--noout").arg("--schema").arg(repo("schemas/sftp-metadata.xsd")).arg(&file).output().unwrap();
    out.status.success()
}

fn describe<'a>(name: &'a str, size: u64, sender: &'a str, id: Option<&'a str>, to: &'a SendTo, transfer: Option<&'a str>) -> Describe<'a> {
    Describe {
        file_transfer_uuid: transfer,
        file_name: name,
        size,
        sender,
        senders_file_id: id,
        to,
        from_it_system: Some(KY.parse().unwrap()),
        from_authority: OUR_CVR,
    }
}

#[test]
fn metadata_is_read_as_the_contract_lays_it_out() {
    let batch = Batch::from_platform(|c| {
        c.installation.it_system = Some(OUR_SYSTEM.parse().unwrap());
    });
    let inbox = batch.folders().inbox;
    std::fs::create_dir_all(&inbox).unwrap();
    let to_us = SendTo::User("erp-sftp".into());
    let routed_to_us = SendTo::Routed { it_system: OUR_SYSTEM.parse().unwrap(), authority: OUR_CVR.into() };
    let transfer = "7d1f3c2a-9b8e-4f6d-a5c4-3b2a1f0e9d8c";

    // (name, sender, SendersFileId, to, FileTransferUUID, how the rendered document is changed, whether the XSD
    // allows it, outcome)
    type Edit = fn(String) -> String;
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a SendTo, Option<&'a str>, Edit, bool, Outcome);
    let same: Edit = |d| d;
    let qualify: Edit = |d| d.replace(" xmlns=\"\"", "");
    let cases: Vec<Case> = vec![
        ("static.xml", "ky-sftp", Some("KY-1"), &to_us, Some(transfer), same, true, Outcome::Accepted(Some("sftp:ky-sftp:KY-1"))),
        (
            "no-id.xml",
            "ky-sftp",
            None,
            &to_us,
            Some(transfer),
            same,
            true,
            Outcome::Accepted(Some("sftp-transfer:7d1f3c2a-9b8e-4f6d-a5c4-3b2a1f0e9d8c")),
        ),
        ("qualified.xml", "ky-sftp", Some("KY-3"), &to_us, Some("q-1"), qualify, false, Outcome::Accepted(Some("sftp:ky-sftp:KY-3"))),
        // A Trigger, as a folder fed by hand may have it: the sender by its AfsenderSystem, known by content.
        ("trigger.xml", KY, None, &to_us, None, same, true, Outcome::Accepted(None)),
        ("routed.xml", "ky-sftp", Some("KY-5"), &routed_to_us, Some("r-1"), same, true, Outcome::Accepted(Some("sftp:ky-sftp:KY-5"))),
        // Routed to us without naming our IT system: the municipality is enough.
        (
            "routed-any.xml",
            "ky-sftp",
            Some("KY-6"),
            &routed_to_us,
            Some("r-2"),
            |d| strip_recipient_system(&d),
            true,
            Outcome::Accepted(Some("sftp:ky-sftp:KY-6")),
        ),
        (
            "other-user.xml",
            "ky-sftp",
            Some("KY-7"),
            &to_us,
            Some("o-1"),
            |d| d.replace(">erp-sftp<", ">another-erp<"),
            true,
            Outcome::LeftAlone,
        ),
        (
            "other-town.xml",
            "ky-sftp",
            Some("KY-8"),
            &routed_to_us,
            Some("o-2"),
            |d| d.replace("<RecipientAuthority>urn:oio:cvr-nr:29189846", "<RecipientAuthority>urn:oio:cvr-nr:12345674"),
            true,
            Outcome::LeftAlone,
        ),
        (
            "other-system.xml",
            "ky-sftp",
            Some("KY-9"),
            &routed_to_us,
            Some("o-3"),
            |d| d.replace(OUR_SYSTEM, "11111111-2222-4333-8444-555555555555"),
            true,
            Outcome::LeftAlone,
        ),
        // From an SFTP user the sortiment does not give KY.
        ("stranger.xml", "stranger-sftp", Some("S-1"), &to_us, Some("s-1"), same, true, Outcome::Rejected("AFSENDER_UKENDT")),
        // Dynamic routing from another IT system than the file's AfsenderSystem, or for another municipality.
        (
            "routed-other-sender.xml",
            "ky-sftp",
            Some("KY-11"),
            &routed_to_us,
            Some("s-2"),
            |d| d.replace(&format!("<SenderIt-system>{KY}"), "<SenderIt-system>3c9d7b21-5e4f-4a8b-9c1d-2e3f4a5b6c03"),
            true,
            Outcome::Rejected("AFSENDER_UKENDT"),
        ),
        (
            "routed-other-authority.xml",
            "ky-sftp",
            Some("KY-12"),
            &routed_to_us,
            Some("s-3"),
            |d| d.replace("<SenderAuthority>urn:oio:cvr-nr:29189846", "<SenderAuthority>urn:oio:cvr-nr:12345674"),
            true,
            Outcome::Rejected("MYNDIGHED_FORKERT"),
        ),
    ];
    for (n, (name, sender, id, to, transfer, edit, valid, outcome)) in cases.into_iter().enumerate() {
        let delivery = Delivery::new(vec![Bilag::balanced(&format!("META-{n}"), "12.50")]);
        let text = delivery.masse();
        let document = edit(render(&describe(name, text.len() as u64, sender, id, to, transfer)));
        assert_eq!(
            xmllint_accepts(&document, batch.dir.path()),
            valid,
            "{name}: the XSD {} it:\n{document}",
            if valid { "allows" } else { "refuses" }
        );
        std::fs::write(inbox.join(name), &text).unwrap();
        std::fs::write(inbox.join(format!("{name}.metadata")), &document).unwrap();
        batch.run_once();
        let booked = batch.count(&format!("SELECT COUNT(*) AS n FROM erp_journal WHERE bilag_id = 'META-{n}'"));
        match outcome {
            Outcome::LeftAlone => {
                assert!(inbox.join(name).exists(), "{name}: left in the inbox");
                assert_eq!(booked, 0, "{name}");
                assert_eq!(batch.count(&format!("SELECT COUNT(*) AS n FROM batch_files WHERE file_name = '{name}'")), 0, "{name}");
            }
            Outcome::Accepted(key) => {
                let (_, set) = batch.receipt(name);
                assert_eq!(set.receipts[0].status, Status::Accepteret, "{name}: {set:?}");
                assert_eq!(booked, 1, "{name}");
                let stored_key = batch.string(&format!("SELECT file_key AS s FROM batch_files WHERE file_name = '{name}'"));
                match key {
                    Some(key) => assert_eq!(stored_key, key, "{name}"),
                    None => assert!(stored_key.starts_with("sha256:"), "{name}: {stored_key}"),
                }
            }
            Outcome::Rejected(code) => {
                let (_, set) = batch.receipt(name);
                assert_eq!(set.receipts[0].status, Status::Afvist, "{name}");
                assert!(set.receipts[0].errors.iter().any(|e| e.code.as_str() == code), "{name}: {set:?}");
                assert_eq!(booked, 0, "{name}");
            }
        }
    }
}

/// The rendered routing info without its optional RecipientIt-system.
fn strip_recipient_system(document: &str) -> String {
    let start = document.find("<RecipientIt-system>").unwrap();
    let end = document.find("</RecipientIt-system>").unwrap() + "</RecipientIt-system>".len();
    format!("{}{}", &document[..start], &document[end..])
}

/// The texts of the rejections name both values: what the platform said and what the file says.
#[test]
fn a_routing_mismatch_names_both_values() {
    let batch = Batch::from_platform(|_| {});
    let inbox = batch.folders().inbox;
    std::fs::create_dir_all(&inbox).unwrap();
    let other = "3c9d7b21-5e4f-4a8b-9c1d-2e3f4a5b6c03";
    let to = SendTo::Routed { it_system: OUR_SYSTEM.parse().unwrap(), authority: OUR_CVR.into() };
    let text = Delivery::new(vec![Bilag::balanced("ROUTE-1", "1.00")]).masse();
    let document = render(&describe("r.xml", text.len() as u64, "ky-sftp", Some("R-1"), &to, Some("t")))
        .replace(&format!("<SenderIt-system>{KY}"), &format!("<SenderIt-system>{other}"))
        .replace("<SenderAuthority>urn:oio:cvr-nr:29189846", "<SenderAuthority>urn:oio:cvr-nr:12345674")
        .replace(&format!("<RecipientIt-system>{OUR_SYSTEM}</RecipientIt-system>"), "");
    std::fs::write(inbox.join("r.xml"), &text).unwrap();
    std::fs::write(inbox.join("r.xml.metadata"), &document).unwrap();
    batch.run_once();
    let (_, set) = batch.receipt("r.xml");
    let texts: Vec<(&str, &str)> = set.receipts[0].errors.iter().map(|e| (e.code.as_str(), e.text.as_str())).collect();
    assert!(texts.iter().any(|(c, t)| *c == "AFSENDER_UKENDT" && t.contains(other) && t.contains(KY)), "{texts:?}");
    assert!(texts.iter().any(|(c, t)| *c == "MYNDIGHED_FORKERT" && t.contains("12345674") && t.contains(OUR_CVR)), "{texts:?}");
}
