//! The business receipt (Kvittering) of receipts.md. The same structure is written as XML on the wire and kept
//! as JSON in the database, so a re-sent delivery gets back exactly what it got the first time.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::rejection::{Code, Finding};

pub const KVITTERING_NS: &str = "urn:fkoeko:kvittering:v1";

/// When a receipt was made: UTC with milliseconds on the wire, as the schema's dateTime with zone. Ids that could
/// not be read from a delivery are the nil UUID (`Uuid::nil()`, what `Option<Uuid>::unwrap_or_default` gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(pub DateTime<Utc>);

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

impl Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text).map(|t| Stamp(t.with_timezone(&Utc))).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Accepteret,
    Afvist,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepteret => "Accepteret",
            Status::Afvist => "Afvist",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptError {
    #[serde(rename = "Kode")]
    pub code: Code,
    #[serde(rename = "Tekst")]
    pub text: String,
    #[serde(rename = "Sti", default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(rename = "Linje", default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(rename = "Kolonne", default, skip_serializing_if = "Option::is_none")]
    pub col: Option<u32>,
    #[serde(rename = "Vaerdi", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The longest an offending value is shown, and an error's text: a sender controls both, and a delivery's own
/// errors stand in every item's receipt, so uncut they could make an answer (and its stored copy) many times the
/// size of the call.
use super::rejection::{cut, MAX_VALUE_CHARS};
const MAX_TEXT_CHARS: usize = 600;

impl From<&Finding> for ReceiptError {
    fn from(finding: &Finding) -> Self {
        let loc = finding.loc.as_ref();
        ReceiptError {
            code: finding.code(),
            // The value stands masked in its own field; a text may quote it too (the schema validator's do).
            text: cut(&super::values::mask_cpr_in_text(&finding.rejection.to_string()), MAX_TEXT_CHARS),
            path: loc.map(|l| l.path.clone()).filter(|p| !p.is_empty()),
            line: loc.and_then(|l| l.line),
            col: loc.and_then(|l| l.col),
            value: finding.value.as_deref().map(|v| cut(&super::values::mask_cpr_in_text(v), MAX_VALUE_CHARS)),
        }
    }
}

/// One receipt: for one finansbilag (or fordring), or for a delivery that could not be read at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    #[serde(rename = "KvitteringId")]
    pub id: Uuid,
    #[serde(rename = "LeveranceId")]
    pub delivery_id: Uuid,
    #[serde(rename = "Reference")]
    pub reference: String,
    #[serde(rename = "Status")]
    pub status: Status,
    #[serde(rename = "Behandlet")]
    pub processed_at: Stamp,
    #[serde(rename = "ErpReference", default, skip_serializing_if = "Option::is_none")]
    pub erp_reference: Option<String>,
    #[serde(rename = "Fejl", default)]
    pub errors: Vec<ReceiptError>,
}

impl Receipt {
    pub fn accepted(delivery_id: Uuid, reference: &str, processed_at: Stamp) -> Self {
        Receipt {
            // Time-ordered (version 7): the indexes on KvitteringId grow at their end, so a commit writes a few
            // pages of them instead of a random page for each receipt.
            id: Uuid::now_v7(),
            delivery_id,
            reference: reference.to_string(),
            status: Status::Accepteret,
            processed_at,
            erp_reference: None,
            errors: Vec::new(),
        }
    }

    pub fn rejected(delivery_id: Uuid, reference: &str, processed_at: Stamp, findings: &[Finding]) -> Self {
        Receipt {
            status: Status::Afvist,
            errors: findings.iter().map(ReceiptError::from).collect(),
            ..Receipt::accepted(delivery_id, reference, processed_at)
        }
    }
}

/// The answer to a whole delivery: the body of the SOAP answer, or the root of a receipt file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "KvitteringLeverance")]
pub struct ReceiptSet {
    #[serde(rename = "@xmlns", default = "kvittering_ns")]
    xmlns: String,
    #[serde(rename = "LeveranceId")]
    pub delivery_id: Uuid,
    #[serde(rename = "AfsenderSystem")]
    pub sender: Uuid,
    #[serde(rename = "Behandlet")]
    pub processed_at: Stamp,
    #[serde(rename = "Kvittering", default)]
    pub receipts: Vec<Receipt>,
}

fn kvittering_ns() -> String {
    KVITTERING_NS.to_string()
}

impl ReceiptSet {
    pub fn new(delivery_id: Uuid, sender: Uuid, processed_at: Stamp, receipts: Vec<Receipt>) -> Self {
        ReceiptSet { xmlns: kvittering_ns(), delivery_id, sender, processed_at, receipts }
    }

    /// The receipt as XML, without an XML declaration so that it can be put in a SOAP body.
    pub fn to_xml(&self) -> String {
        let mut out = Vec::new();
        self.write_xml(&mut out, std::iter::empty()).expect("writing to memory does not fail");
        String::from_utf8(out).expect("the receipt is written as UTF-8")
    }

    /// A receipt file: the XML declaration, then the set as in `to_xml`.
    pub fn write_document<W: Write>(&self, out: &mut W, more: impl IntoIterator<Item = io::Result<Receipt>>) -> io::Result<()> {
        out.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")?;
        self.write_xml(out, more)?;
        out.write_all(b"\n")
    }

    /// The one writer of a receipt set, for the SOAP answer and the receipt file alike: its head, its own
    /// receipts, then `more` as they come (a batch file's, read from the database a page at a time, so that a
    /// file of a million receipts is never held whole), then its end.
    pub fn write_xml<W: Write>(&self, out: &mut W, more: impl IntoIterator<Item = io::Result<Receipt>>) -> io::Result<()> {
        use quick_xml::escape::escape;
        write!(
            out,
            "<KvitteringLeverance xmlns=\"{}\"><LeveranceId>{}</LeveranceId><AfsenderSystem>{}</AfsenderSystem><Behandlet>{}</Behandlet>",
            escape(&self.xmlns),
            self.delivery_id,
            self.sender,
            self.processed_at
        )?;
        for receipt in self.receipts.iter().cloned().map(Ok).chain(more) {
            let xml = quick_xml::se::to_string_with_root("Kvittering", &receipt?).map_err(io::Error::other)?;
            out.write_all(xml.as_bytes())?;
        }
        out.write_all(b"</KvitteringLeverance>")
    }

    pub fn accepted(&self) -> usize {
        self.receipts.iter().filter(|r| r.status == Status::Accepteret).count()
    }

    pub fn rejected(&self) -> usize {
        self.receipts.len() - self.accepted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored KvitteringId (text) grows with each receipt, so its indexes are appended to.
    #[test]
    fn receipt_ids_grow_in_the_order_they_are_made() {
        let at = Stamp(Utc::now());
        let ids: Vec<String> = (0..2000).map(|_| Receipt::accepted(Uuid::nil(), "B", at).id.to_string()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "not increasing");
        assert!(ids.iter().all(|id| id.as_bytes()[14] == b'7'), "version 7");
    }

    #[test]
    fn xml_keeps_the_schema_order_and_namespace() {
        let at = Stamp("2026-11-25T10:00:00.120+00:00".parse().unwrap());
        let set = ReceiptSet::new(
            Uuid::nil(),
            Uuid::nil(),
            at,
            vec![Receipt {
                id: Uuid::nil(),
                delivery_id: Uuid::nil(),
                reference: "B-1".into(),
                status: Status::Afvist,
                processed_at: at,
                erp_reference: None,
                errors: vec![ReceiptError {
                    code: Code::RegelBalance,
                    text: "x & y".into(),
                    path: Some("/A".into()),
                    line: Some(3),
                    col: None,
                    value: None,
                }],
            }],
        );
        let xml = set.to_xml();
        assert!(xml.starts_with(r#"<KvitteringLeverance xmlns="urn:fkoeko:kvittering:v1"><LeveranceId>"#), "{xml}");
        assert!(xml.contains("<Status>Afvist</Status><Behandlet>2026-11-25T10:00:00.120Z</Behandlet>"), "{xml}");
        assert!(xml.contains("<LeveranceId>00000000-0000-0000-0000-000000000000</LeveranceId>"), "{xml}");
        assert!(xml.contains("<Fejl><Kode>REGEL_BALANCE</Kode><Tekst>x &amp; y</Tekst><Sti>/A</Sti><Linje>3</Linje></Fejl>"), "{xml}");
        assert_eq!(quick_xml::de::from_str::<ReceiptSet>(&xml).unwrap(), set, "the XML reads back as the set");
        let mut file = Vec::new();
        set.write_document(&mut file, [Ok(set.receipts[0].clone())]).unwrap();
        let file = String::from_utf8(file).unwrap();
        assert!(file.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<KvitteringLeverance"), "{file}");
        assert_eq!(file.matches("<Kvittering>").count(), 2, "its own receipt and the one streamed after it: {file}");
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<ReceiptSet>(&json).unwrap(), set);
    }
}
