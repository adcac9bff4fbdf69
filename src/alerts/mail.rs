//! One mail for a group of rejected deliveries of one sender: plain text and HTML, with every error code,
//! its Danish text and path, and what to do. Receipts hold CPR numbers masked, so the mail does too.

use std::fmt::Write;

use quick_xml::escape::escape;

use super::AlertPayload;

/// Receipts listed in full per mail; a rejected batch of thousands is summarised after these.
pub const MAX_LISTED: usize = 200;

pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn render(payloads: &[AlertPayload]) -> Rendered {
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
