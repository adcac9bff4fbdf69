//! Serviceplatformen's `.metadata` file: what its SFTP service writes beside a delivered file.

use crate::xml::tree::{self, Element, XmlLimits};

pub const NAMESPACE: &str = "http://serviceplatformen.dk/xml/wsdl/soap11/SFTP/1/types";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub file_transfer_uuid: Option<String>,
    pub file_name: String,
    pub size_in_bytes: u64,
    pub sender: String,
    pub senders_file_id: String,
    pub recipients: Vec<String>,
}

/// Reads a metadata document (with the same guarded reader as deliveries); the error says what is wrong.
pub fn parse(bytes: &[u8]) -> Result<Metadata, String> {
    let text = tree::decode_utf8(bytes).map_err(|f| f.rejection.to_string())?;
    let root = tree::read_document(text, &XmlLimits::default()).map_err(|f| f.rejection.to_string())?;
    if &*root.name != "Trigger" || root.ns() != Some(NAMESPACE) {
        return Err(format!("expected {{{NAMESPACE}}}Trigger, found {}", root.name));
    }
    let descriptor = find(&root, "FileDescriptor").ok_or("no FileDescriptor")?;
    let field = |name: &str| find(descriptor, name).map(|e| e.text().trim().to_string()).filter(|t| !t.is_empty());
    let required = |name: &str| field(name).ok_or_else(|| format!("no {name} in FileDescriptor"));
    let size = required("SizeInBytes")?;
    let mut recipients = Vec::new();
    collect_recipients(descriptor, false, &mut recipients);
    Ok(Metadata {
        file_transfer_uuid: find(&root, "FileTransferUUID").map(|e| e.text().trim().to_string()),
        file_name: required("FileName")?,
        size_in_bytes: size.parse().map_err(|_| format!("SizeInBytes '{size}' is not a number"))?,
        sender: required("Sender")?,
        senders_file_id: required("SendersFileId")?,
        recipients,
    })
}

/// The first element with this local name, depth first.
fn find<'a>(element: &'a Element, name: &str) -> Option<&'a Element> {
    element.children.iter().find_map(|c| if &*c.name == name { Some(c) } else { find(c, name) })
}

/// Every non-empty text at or under a Recipients element: a recipient may be given as its text or in child
/// elements.
fn collect_recipients(element: &Element, inside: bool, out: &mut Vec<String>) {
    let inside = inside || &*element.name == "Recipients";
    if inside && element.children.is_empty() && !element.text().trim().is_empty() {
        out.push(element.text().trim().to_string());
    }
    for child in &element.children {
        collect_recipients(child, inside, out);
    }
}

/// A metadata document for a file, as Serviceplatformen writes it; for the tests, and for operators who feed a
/// metadata-convention folder by hand.
pub fn render(file_name: &str, size: u64, sender: &str, senders_file_id: &str, recipients: &[&str]) -> String {
    let recipients: String = recipients.iter().map(|r| format!("<Recipients>{r}</Recipients>")).collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Trigger xmlns=\"{NAMESPACE}\"><FileTransferUUID>{}</FileTransferUUID>\
         <FileDescriptor><FileName>{file_name}</FileName><SizeInBytes>{size}</SizeInBytes><Sender>{sender}</Sender>\
         <SendersFileId>{senders_file_id}</SendersFileId>{recipients}</FileDescriptor></Trigger>\n",
        uuid::Uuid::new_v4()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_renders_and_refuses_the_rest() {
        let text = render("bilag.xml", 1234, "6f1c0a7e-0000-4000-8000-000000004c01", "F-1", &["29189846", "other"]);
        let m = parse(text.as_bytes()).unwrap();
        assert_eq!((m.file_name.as_str(), m.size_in_bytes, m.senders_file_id.as_str()), ("bilag.xml", 1234, "F-1"));
        assert_eq!(m.recipients, vec!["29189846", "other"]);
        let nested = text.replace("<Recipients>29189846</Recipients>", "<Recipients><Recipient>29189846</Recipient></Recipients>");
        assert!(parse(nested.as_bytes()).unwrap().recipients.contains(&"29189846".to_string()));
        assert!(parse(b"<Trigger/>").unwrap_err().contains("Trigger"));
        assert!(parse(text.replace("<SizeInBytes>1234", "<SizeInBytes>x").as_bytes()).unwrap_err().contains("SizeInBytes"));
    }
}
