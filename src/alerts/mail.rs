//! One mail for a group of rejected deliveries of one sender: plain text and HTML, with every error code,
//! its Danish text and path, and what to do. Receipts hold CPR numbers masked, so the mail does too.

use std::fmt::Write;

use quick_xml::escape::escape;

use super::AlertPayload;
use crate::domain::alert::{Alert, MissingFile, UndeliveredReceiptFile};

/// Receipts listed in full per mail; a rejected batch of thousands is summarised after these.
pub const MAX_LISTED: usize = 200;

pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// One mail for a group of alerts, which are of one kind (a group is one sender's, or the operators').
pub fn render(alerts: &[Alert]) -> Rendered {
    let rejections: Vec<AlertPayload> =
        alerts.iter().filter_map(|a| if let Alert::Rejection(p) = a { Some(p.clone()) } else { None }).collect();
    let undelivered: Vec<&UndeliveredReceiptFile> =
        alerts.iter().filter_map(|a| if let Alert::ReceiptFileUndelivered(u) = a { Some(u) } else { None }).collect();
    let missing: Vec<&MissingFile> =
        alerts.iter().filter_map(|a| if let Alert::ExpectedFileMissing(m) = a { Some(m) } else { None }).collect();
    if !rejections.is_empty() {
        render_rejections(&rejections)
    } else if !missing.is_empty() {
        render_missing(&missing)
    } else {
        render_undelivered(&undelivered)
    }
}

/// For a sender's owners and the operators: the day's batch file has not arrived by its time.
fn render_missing(files: &[&MissingFile]) -> Rendered {
    // A group is one sender's files in one integration: one day each, several when mails could not go out for days.
    let first = files[0];
    let days = files.iter().map(|f| f.day.as_str()).collect::<Vec<_>>().join(", ");
    let who = first.sender_name.clone().map_or_else(|| first.sender.clone(), |name| format!("{name} ({})", first.sender));
    let subject = format!("Forventet fil ikke modtaget: {} fra {who} den {days} kl. {}", first.integration, first.expected_by);
    let what_to_do = format!(
        "Der er ikke modtaget nogen batchfil ({}) fra afsendersystemet {who} den {days} inden kl. {}. \
         Kontrollér, at fagsystemet har dannet filen og lagt den på Serviceplatformens SFTP, og se siden Batchfiler \
         (eller `fkoeko batch list`) for filer, der er modtaget, men ikke taget.",
        first.integration, first.expected_by
    );
    let text = format!("{what_to_do}\n\nDenne besked er sendt automatisk af fkoeko-adapter.\n");
    let html =
        format!("<html><body><p>{}</p><p>Denne besked er sendt automatisk af fkoeko-adapter.</p></body></html>", escape(&what_to_do));
    Rendered { subject, text, html }
}

/// For the operators: receipt files Serviceplatformen did not deliver, so their senders have no receipt.
fn render_undelivered(files: &[&UndeliveredReceiptFile]) -> Rendered {
    let subject = format!("Kvitteringsfil ikke leveret: {} fil(er) til afsendere via Serviceplatformen", files.len());
    let what_to_do = "Afsenderen har ikke fået sin kvittering. Se fejlen nedenfor og i `fkoeko batch list`; \
        ret årsagen (SFTP-bruger, routing, Serviceplatformens aftale) og send kvitteringsfilen igen ved at lægge \
        den oprindelige fil i indbakken igen.";
    let mut text = format!("{what_to_do}\n");
    let mut html = format!(
        "<html><body><p>{}</p><table border=\"1\" cellpadding=\"4\"><tr><th>Kvitteringsfil</th><th>Integration</th>\
         <th>Til</th><th>Forsøg</th><th>Sidste fejl</th><th>Opgivet</th></tr>",
        escape(what_to_do)
    );
    for f in files {
        let _ = writeln!(
            text,
            "\n{} ({}, SendersFileId {}) til {}: {} forsøg, opgivet {}\n  sidste fejl: {}",
            f.receipt_name, f.integration, f.senders_file_id, f.recipient, f.attempts, f.failed_at, f.last_error
        );
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.receipt_name),
            escape(&f.integration),
            escape(&f.recipient),
            f.attempts,
            escape(&f.last_error),
            escape(&f.failed_at)
        );
    }
    text.push_str("\nDenne besked er sendt automatisk af fkoeko-adapter.\n");
    html.push_str("</table><p>Denne besked er sendt automatisk af fkoeko-adapter.</p></body></html>");
    Rendered { subject, text, html }
}

fn render_rejections(payloads: &[AlertPayload]) -> Rendered {
    let first = &payloads[0];
    let system = match (&first.sender_name, &first.sender) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (None, Some(id)) => format!("ukendt afsendersystem {id}"),
        _ => "et afsendersystem, der ikke kunne læses".to_string(),
    };
    let rejected: usize = payloads.iter().map(|p| p.rejected_count()).sum();
    let subject =
        format!("Afvist: {rejected} {} fra {system}", if first.integration == "SF1590_B" { "fordring(er)" } else { "finansbilag" });
    let what_to_do = "Ret fejlene i afsendersystemet og send de afviste igen, med samme BilagId/FordringId. \
        Det, der blev accepteret i samme leverance, er modtaget og skal ikke sendes igen.";

    let mut text = format!("Kommunens ERP-system har afvist data fra {system}.\n\n{what_to_do}\n");
    let mut html =
        format!("<html><body><p>Kommunens ERP-system har afvist data fra <b>{}</b>.</p><p>{}</p>", escape(&system), escape(what_to_do));
    let mut listed = 0;
    for payload in payloads {
        let _ = write!(
            text,
            "\nLeverance {} ({} {}, modtaget {}): {} afvist, {} accepteret\n",
            payload.delivery_id,
            payload.integration,
            payload.transport,
            payload.received_at,
            payload.rejected_count(),
            payload.accepted
        );
        let _ = write!(
            html,
            "<h3>Leverance {} ({} {}, modtaget {}): {} afvist, {} accepteret</h3><table border=\"1\" cellpadding=\"4\">\
             <tr><th>Reference</th><th>Kode</th><th>Fejl</th><th>Sti</th><th>Linje</th></tr>",
            escape(&payload.delivery_id),
            escape(&payload.integration),
            escape(&payload.transport),
            escape(&payload.received_at),
            payload.rejected_count(),
            payload.accepted
        );
        for receipt in &payload.rejected {
            if listed == MAX_LISTED {
                break;
            }
            listed += 1;
            let _ = writeln!(text, "  {}:", receipt.reference);
            for error in &receipt.errors {
                let path = error.path.as_deref().unwrap_or("-");
                let line = error.line.map_or(String::new(), |l| format!(", linje {l}"));
                let value = error.value.as_deref().map_or(String::new(), |v| format!(" [værdi: {v}]"));
                let _ = writeln!(text, "    {} {}{value}\n      ({path}{line})", error.code, error.text);
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&receipt.reference),
                    error.code,
                    escape(&error.text),
                    escape(&value),
                    escape(path),
                    error.line.map_or(String::new(), |l| l.to_string())
                );
            }
        }
        html.push_str("</table>");
    }
    if listed < rejected {
        let more = rejected - listed;
        let _ = write!(text, "\n... og {more} afviste mere. Hele kvitteringen er gemt hos modtageren under leverancens id.\n");
        let _ = write!(html, "<p>... og {more} afviste mere. Hele kvitteringen er gemt hos modtageren under leverancens id.</p>");
    }
    text.push_str("\nDenne besked er sendt automatisk af fkoeko-adapter.\n");
    html.push_str("<p>Denne besked er sendt automatisk af fkoeko-adapter.</p></body></html>");
    Rendered { subject, text, html }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_of_several_days_in_one_mail_name_every_day() {
        let day = |day: &str| {
            Alert::ExpectedFileMissing(MissingFile {
                sender: "6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01".into(),
                sender_name: Some("KY".into()),
                integration: "SF1590_A".into(),
                day: day.into(),
                expected_by: "07:00".into(),
            })
        };
        let mail = render(&[day("2026-11-25"), day("2026-11-26")]);
        assert_eq!(
            mail.subject,
            "Forventet fil ikke modtaget: SF1590_A fra KY (6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01) den 2026-11-25, 2026-11-26 kl. 07:00"
        );
        let stored = serde_json::to_string(&day("2026-11-25")).unwrap();
        assert_eq!(serde_json::from_str::<Alert>(&stored).unwrap(), day("2026-11-25"), "read back as its kind");
    }

    #[test]
    fn an_undelivered_receipt_file_is_told_the_operators_and_stored_alerts_read_back_as_their_kind() {
        let undelivered = Alert::ReceiptFileUndelivered(UndeliveredReceiptFile {
            integration: "SF1590_A".into(),
            receipt_name: "bilag.kvittering.xml".into(),
            senders_file_id: "kvittering-1".into(),
            recipient: "ky-sftp".into(),
            attempts: 5,
            last_error: "17 RECIPIENT_UNAVAILABLE: <try again>".into(),
            failed_at: "2026-11-26T05:00:00Z".into(),
        });
        let mail = render(std::slice::from_ref(&undelivered));
        assert!(mail.subject.contains("Kvitteringsfil ikke leveret"), "{}", mail.subject);
        assert!(mail.text.contains("bilag.kvittering.xml") && mail.text.contains("ky-sftp") && mail.text.contains("5 forsøg"));
        assert!(mail.html.contains("&lt;try again&gt;"), "escaped: {}", mail.html);
        // Stored as JSON without a tag: each kind reads back as itself, a rejection written before as a rejection.
        let stored = serde_json::to_string(&undelivered).unwrap();
        assert_eq!(serde_json::from_str::<Alert>(&stored).unwrap(), undelivered);
        let rejection = r#"{"sender":null,"sender_name":null,"integration":"SF1590_A","transport":"straks","delivery_id":"d","received_at":"t","rejected":[],"accepted":0}"#;
        assert!(matches!(serde_json::from_str::<Alert>(rejection).unwrap(), Alert::Rejection(_)));
    }
}
