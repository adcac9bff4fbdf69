//! Serviceplatformen's SFTP documents: the `FileMetadata` its SFTP service writes beside a delivered file (and
//! the `Trigger` a sender writes beside a file it sends, which a hand-fed folder may use instead), the `Trigger`
//! this installation writes beside a receipt file it sends back, and the `TechnicalReceipt` the platform answers
//! that with. Their layout is the platform's SFTP service contract (`schemas/sftp-metadata.xsd` is the project's
//! copy of its rules): only the root is in the namespace, but a qualified child is read as well.

use std::fmt::Write as _;

use uuid::Uuid;

use crate::xml::tree::{self, Element, XmlLimits};

pub const NAMESPACE: &str = "http://serviceplatformen.dk/xml/wsdl/soap11/SFTP/1/types";

/// The recipient a sender writes when the platform is to route by `SFTPDynamicRoutingInfo`.
pub const DYNAMIC_ROUTING: &str = "ROUTING_V1_0_0";

/// The longest a file name, SFTP user or SendersFileId may be.
const MAX_NAME: usize = 255;

/// What a metadata document says about the file beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The platform's id of this transfer (always in a `FileMetadata`, never in a `Trigger`).
    pub file_transfer_uuid: Option<String>,
    pub file_name: String,
    pub size_in_bytes: u64,
    /// The SFTP user that sent the file.
    pub sender: String,
    /// The sender's own id of the file, when it gave one.
    pub senders_file_id: Option<String>,
    /// SFTP users, or `ROUTING_V1_0_0`.
    pub recipients: Vec<String>,
    pub routing: Option<DynamicRouting>,
}

/// `SFTPDynamicRoutingInfo`: who sent the file and for whom, by IT system and authority rather than SFTP user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicRouting {
    pub inf_ref: String,
    pub sender_it_system: Uuid,
    /// The CVR number (8 digits) of `urn:oio:cvr-nr:…`.
    pub sender_authority: String,
    pub transaction_id: Uuid,
    pub sender_timestamp: String,
    pub recipient_it_system: Option<Uuid>,
    pub recipient_authority: String,
}

/// How this installation is addressed: its SFTP users, its municipality and its own IT system.
#[derive(Debug, Clone)]
pub struct Addressee<'a> {
    pub sftp_users: &'a [String],
    pub authority: &'a str,
    pub it_system: Option<Uuid>,
}

impl Metadata {
    /// What identifies the file for idempotency: the sender's own id when it gave one, else the platform's
    /// transfer id; `None` when the document has neither (the file is then known by its content).
    pub fn file_key(&self) -> Option<String> {
        match (&self.senders_file_id, &self.file_transfer_uuid) {
            (Some(id), _) => Some(format!("sftp:{}:{id}", self.sender)),
            (None, Some(transfer)) => Some(format!("sftp-transfer:{transfer}")),
            (None, None) => None,
        }
    }

    /// Whether the file is addressed to this installation; `Err` says to whom it is addressed instead.
    pub fn addressed_to(&self, us: &Addressee<'_>) -> Result<(), String> {
        if self.recipients.iter().any(|r| us.sftp_users.contains(r)) {
            return Ok(());
        }
        if self.recipients.iter().any(|r| r == DYNAMIC_ROUTING) {
            let Some(routing) = &self.routing else {
                return Err(format!("{DYNAMIC_ROUTING} without SFTPDynamicRoutingInfo"));
            };
            if routing.recipient_authority != us.authority {
                return Err(format!("RecipientAuthority {}, not this installation's {}", routing.recipient_authority, us.authority));
            }
            return match (routing.recipient_it_system, us.it_system) {
                (None, _) => Ok(()),
                (Some(theirs), Some(ours)) if theirs == ours => Ok(()),
                (Some(theirs), Some(ours)) => Err(format!("RecipientIt-system {theirs}, not this installation's {ours}")),
                (Some(theirs), None) => {
                    Err(format!("RecipientIt-system {theirs}, and installation.it_system is not set, so it cannot be this installation"))
                }
            };
        }
        Err(format!("Recipients {}, none of this installation's SFTP users ({})", self.recipients.join(", "), us.sftp_users.join(", ")))
    }
}

/// Reads a `FileMetadata` or `Trigger` document (with the same guarded reader as deliveries); the error says what
/// is wrong and where.
pub fn parse(bytes: &[u8]) -> Result<Metadata, String> {
    let root = read(bytes)?;
    once(&root, &["FileTransferUUID", "FileDescriptor", "FileContentDescriptor"])?;
    let file_transfer_uuid = match &*root.name {
        // Required by the contract, but a string that may be empty: an empty one identifies nothing.
        "FileMetadata" => match child(&root, "FileTransferUUID") {
            Some(id) => Some(id.text().trim().to_string()).filter(|t| !t.is_empty()),
            None => return Err("no FileTransferUUID in FileMetadata".into()),
        },
        "Trigger" => None,
        other => return Err(format!("expected {{{NAMESPACE}}}FileMetadata or Trigger, found {other}")),
    };
    let descriptor = child(&root, "FileDescriptor").ok_or("no FileDescriptor")?;
    once(descriptor, &["FileName", "SizeInBytes", "Sender", "SendersFileId"])?;
    let size = required(descriptor, "SizeInBytes")?;
    let recipients: Vec<String> =
        children(descriptor, "Recipients").map(|e| e.text().trim().to_string()).filter(|r| !r.is_empty()).collect();
    if recipients.is_empty() {
        return Err("no Recipients in FileDescriptor".into());
    }
    if let Some(long) = recipients.iter().find(|r| r.chars().count() > MAX_NAME) {
        return Err(format!("a Recipients of {} characters; at most {MAX_NAME}", long.chars().count()));
    }
    let routing = match child(&root, "FileContentDescriptor").and_then(|c| child(c, "SFTPDynamicRoutingInfo")) {
        Some(info) => Some(dynamic_routing(info)?),
        None => None,
    };
    Ok(Metadata {
        file_transfer_uuid,
        file_name: short(descriptor, "FileName")?,
        size_in_bytes: size.parse().map_err(|_| format!("SizeInBytes '{size}' is not a whole number of bytes"))?,
        sender: short(descriptor, "Sender")?,
        // An empty SendersFileId (the contract's type allows it) is none: the file is known by its transfer.
        senders_file_id: match child(descriptor, "SendersFileId").map(|e| e.text().trim()) {
            Some(id) if !id.is_empty() => Some(short(descriptor, "SendersFileId")?),
            _ => None,
        },
        recipients,
        routing,
    })
}

fn dynamic_routing(info: &Element) -> Result<DynamicRouting, String> {
    let uuid = |name: &str| -> Result<Uuid, String> {
        let text = required(info, name)?;
        // The contract writes UUIDs in lower case; another case is the same UUID, read liberally.
        match text.len() == 36 {
            true => Uuid::parse_str(&text).map_err(|_| format!("SFTPDynamicRoutingInfo/{name} '{text}' is not a UUID")),
            false => Err(format!("SFTPDynamicRoutingInfo/{name} '{text}' is not a UUID")),
        }
    };
    let authority = |name: &str| -> Result<String, String> {
        let text = required(info, name)?;
        text.strip_prefix("urn:oio:cvr-nr:")
            .filter(|digits| digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
            .ok_or_else(|| format!("SFTPDynamicRoutingInfo/{name} '{text}' is not urn:oio:cvr-nr: and 8 digits"))
    };
    Ok(DynamicRouting {
        inf_ref: required(info, "InfRef")?,
        sender_it_system: uuid("SenderIt-system")?,
        sender_authority: authority("SenderAuthority")?,
        transaction_id: uuid("TransactionId")?,
        sender_timestamp: required(info, "SenderTimestamp")?,
        recipient_it_system: match child(info, "RecipientIt-system") {
            Some(_) => Some(uuid("RecipientIt-system")?),
            None => None,
        },
        recipient_authority: authority("RecipientAuthority")?,
    })
}

/// The platform's answer to a file this installation sent: `SUCCESS`, or why it was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TechnicalReceipt {
    pub file_transfer_uuid: String,
    pub senders_file_id: Option<String>,
    /// `Ok` with the message (`SUCCESS` when all went well), or the errors ("code description: text").
    pub outcome: Result<String, Vec<String>>,
}

impl TechnicalReceipt {
    pub fn delivered(&self) -> bool {
        matches!(&self.outcome, Ok(message) if message.trim() == "SUCCESS")
    }
}

/// Reads a `.sftpreceipt`.
pub fn parse_technical_receipt(bytes: &[u8]) -> Result<TechnicalReceipt, String> {
    let root = read(bytes)?;
    if &*root.name != "TechnicalReceipt" {
        return Err(format!("expected {{{NAMESPACE}}}TechnicalReceipt, found {}", root.name));
    }
    let errors: Vec<String> = children(&root, "ErrorMessage")
        .map(|e| {
            let field = |name: &str| child(e, name).map(|f| f.text().trim().to_string()).unwrap_or_default();
            format!("{} {}: {}", field("ErrorCode"), field("ErrorCodeDescription"), field("ErrorDescription"))
        })
        .collect();
    let outcome = match child(&root, "Receipt") {
        Some(receipt) if errors.is_empty() => Ok(child(receipt, "Message").map(|m| m.text().trim().to_string()).unwrap_or_default()),
        Some(_) => return Err("both Receipt and ErrorMessage".into()),
        None if errors.is_empty() => return Err("neither Receipt nor ErrorMessage".into()),
        None => Err(errors),
    };
    Ok(TechnicalReceipt {
        file_transfer_uuid: required(&root, "FileTransferUUID")?,
        senders_file_id: child(&root, "SendersFileId").map(|e| e.text().trim().to_string()),
        outcome,
    })
}

/// Whom a file is sent to: an SFTP user, or dynamic routing to an IT system of an authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendTo {
    User(String),
    Routed { it_system: Uuid, authority: String },
}

/// What a `Trigger` or `FileMetadata` document says.
#[derive(Debug, Clone)]
pub struct Describe<'a> {
    /// `Some`: a `FileMetadata` with this transfer id (what the platform writes); `None`: a `Trigger`.
    pub file_transfer_uuid: Option<&'a str>,
    pub file_name: &'a str,
    pub size: u64,
    pub sender: &'a str,
    pub senders_file_id: Option<&'a str>,
    pub to: &'a SendTo,
    /// For dynamic routing: who sends, by IT system and authority.
    pub from_it_system: Option<Uuid>,
    pub from_authority: &'a str,
}

/// Writes a `FileMetadata` (as the platform writes beside a delivered file) or a `Trigger` (as a sender writes
/// beside a file it sends), children unqualified as the contract has them.
pub fn render(d: &Describe<'_>) -> String {
    let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
    let root = if d.file_transfer_uuid.is_some() { "FileMetadata" } else { "Trigger" };
    let mut out = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} xmlns=\"{NAMESPACE}\">");
    if let Some(id) = d.file_transfer_uuid {
        let _ = write!(out, "<FileTransferUUID xmlns=\"\">{}</FileTransferUUID>", esc(id));
    }
    let _ = write!(
        out,
        "<FileDescriptor xmlns=\"\"><FileName>{}</FileName><SizeInBytes>{}</SizeInBytes><Sender>{}</Sender>",
        esc(d.file_name),
        d.size,
        esc(d.sender)
    );
    if let Some(id) = d.senders_file_id {
        let _ = write!(out, "<SendersFileId>{}</SendersFileId>", esc(id));
    }
    match d.to {
        SendTo::User(user) => {
            let _ = write!(out, "<Recipients>{}</Recipients></FileDescriptor><FileContentDescriptor xmlns=\"\"/>", esc(user));
        }
        SendTo::Routed { it_system, authority } => {
            let _ = write!(
                out,
                "<Recipients>{DYNAMIC_ROUTING}</Recipients></FileDescriptor><FileContentDescriptor xmlns=\"\"><SFTPDynamicRoutingInfo>\
                 <InfRef>{}</InfRef><SenderIt-system>{}</SenderIt-system><SenderAuthority>urn:oio:cvr-nr:{}</SenderAuthority>\
                 <TransactionId>{}</TransactionId><SenderTimestamp>{}</SenderTimestamp><RecipientIt-system>{it_system}</RecipientIt-system>\
                 <RecipientAuthority>urn:oio:cvr-nr:{}</RecipientAuthority></SFTPDynamicRoutingInfo></FileContentDescriptor>",
                esc(d.file_name),
                d.from_it_system.unwrap_or_default(),
                esc(d.from_authority),
                Uuid::new_v4(),
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                esc(authority)
            );
        }
    }
    let _ = writeln!(out, "</{root}>");
    out
}

fn read(bytes: &[u8]) -> Result<Element, String> {
    let text = tree::decode_utf8(bytes).map_err(|f| f.rejection.to_string())?;
    let root = tree::read_document(text, &XmlLimits::default()).map_err(|f| match f.loc.and_then(|l| l.line) {
        Some(line) => format!("{} (line {line})", f.rejection),
        None => f.rejection.to_string(),
    })?;
    if root.ns() != Some(NAMESPACE) {
        return Err(format!("the root {} is not in the namespace {NAMESPACE}", root.name));
    }
    Ok(root)
}

/// The children of `parent` named `name`, unqualified as the contract writes them or in its namespace; a child
/// of any other namespace is not it.
fn children<'a>(parent: &'a Element, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
    parent.children.iter().filter(move |c| &*c.name == name && matches!(c.ns(), None | Some("") | Some(NAMESPACE)))
}

fn child<'a>(parent: &'a Element, name: &'a str) -> Option<&'a Element> {
    children(parent, name).next()
}

/// Each of `names` at most once in `parent`: of two Senders, neither is taken for the other.
fn once(parent: &Element, names: &[&str]) -> Result<(), String> {
    match names.iter().find(|name| children(parent, name).nth(1).is_some()) {
        Some(name) => Err(format!("more than one {name} in {}", parent.name)),
        None => Ok(()),
    }
}

fn required(parent: &Element, name: &str) -> Result<String, String> {
    child(parent, name)
        .map(|e| e.text().trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("no {name} in {}", parent.name))
}

/// A required text of at most 255 characters.
fn short(parent: &Element, name: &str) -> Result<String, String> {
    let text = required(parent, name)?;
    match text.chars().count() <= MAX_NAME {
        true => Ok(text),
        false => Err(format!("{name} has {} characters; at most {MAX_NAME}", text.chars().count())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe<'a>(to: &'a SendTo, transfer: Option<&'a str>, id: Option<&'a str>) -> Describe<'a> {
        Describe {
            file_transfer_uuid: transfer,
            file_name: "bilag.xml",
            size: 1234,
            sender: "ky-sftp",
            senders_file_id: id,
            to,
            from_it_system: Some(Uuid::from_u128(7)),
            from_authority: "29189846",
        }
    }

    #[test]
    fn reads_what_it_renders() {
        let to = SendTo::User("erp-sftp".into());
        let m = parse(render(&describe(&to, Some("t-1"), Some("F-1"))).as_bytes()).unwrap();
        assert_eq!((m.file_name.as_str(), m.size_in_bytes, m.sender.as_str()), ("bilag.xml", 1234, "ky-sftp"));
        assert_eq!((m.senders_file_id.as_deref(), m.file_transfer_uuid.as_deref()), (Some("F-1"), Some("t-1")));
        assert_eq!(m.file_key().unwrap(), "sftp:ky-sftp:F-1");
        let without_id = parse(render(&describe(&to, Some("t-1"), None)).as_bytes()).unwrap();
        assert_eq!(without_id.file_key().unwrap(), "sftp-transfer:t-1", "without SendersFileId: the transfer");
        let trigger = parse(render(&describe(&to, None, None)).as_bytes()).unwrap();
        assert_eq!(trigger.file_key(), None, "a Trigger without SendersFileId: known by its content");

        let routed = SendTo::Routed { it_system: Uuid::from_u128(9), authority: "29189846".into() };
        let m = parse(render(&describe(&routed, Some("t-2"), None)).as_bytes()).unwrap();
        let routing = m.routing.unwrap();
        assert_eq!((routing.sender_it_system, routing.recipient_it_system), (Uuid::from_u128(7), Some(Uuid::from_u128(9))));
        assert_eq!(routing.recipient_authority, "29189846");
    }

    #[test]
    fn children_may_be_qualified_but_not_of_another_namespace() {
        let to = SendTo::User("erp-sftp".into());
        let text = render(&describe(&to, Some("t-1"), Some("F-1")));
        let qualified = text.replace(" xmlns=\"\"", "");
        assert_eq!(parse(qualified.as_bytes()).unwrap().sender, "ky-sftp");
        let foreign = text.replace("<FileDescriptor xmlns=\"\">", "<FileDescriptor xmlns=\"urn:other\">");
        assert!(parse(foreign.as_bytes()).unwrap_err().contains("no FileDescriptor"));
    }

    #[test]
    fn refuses_what_the_contract_does_not_allow() {
        let to = SendTo::User("erp-sftp".into());
        let text = render(&describe(&to, Some("t-1"), Some("F-1")));
        assert!(parse(b"<Trigger/>").unwrap_err().contains("namespace"));
        assert!(parse(text.replace("<SizeInBytes>1234", "<SizeInBytes>x").as_bytes()).unwrap_err().contains("SizeInBytes"));
        assert!(parse(text.replace("<FileTransferUUID xmlns=\"\">t-1</FileTransferUUID>", "").as_bytes())
            .unwrap_err()
            .contains("FileTransferUUID"));
        assert!(parse(text.replace("<Recipients>erp-sftp</Recipients>", "").as_bytes()).unwrap_err().contains("Recipients"));
        let long = "x".repeat(256);
        assert!(parse(text.replace("F-1", &long).as_bytes()).unwrap_err().contains("at most 255"));
        let routed = SendTo::Routed { it_system: Uuid::from_u128(9), authority: "29189846".into() };
        let text = render(&describe(&routed, Some("t-2"), None));
        assert!(parse(text.replace("urn:oio:cvr-nr:29189846", "29189846").as_bytes()).unwrap_err().contains("urn:oio:cvr-nr"));
    }

    #[test]
    fn a_file_is_for_this_installation_by_sftp_user_or_by_dynamic_routing() {
        let users = vec!["erp-sftp".to_string()];
        let us = Addressee { sftp_users: &users, authority: "29189846", it_system: Some(Uuid::from_u128(9)) };
        let metadata = |to: &SendTo| parse(render(&describe(to, Some("t"), None)).as_bytes()).unwrap();
        assert!(metadata(&SendTo::User("erp-sftp".into())).addressed_to(&us).is_ok());
        assert!(metadata(&SendTo::User("other".into())).addressed_to(&us).unwrap_err().contains("other"));
        let routed = |system: u128, authority: &str| SendTo::Routed { it_system: Uuid::from_u128(system), authority: authority.into() };
        assert!(metadata(&routed(9, "29189846")).addressed_to(&us).is_ok());
        assert!(metadata(&routed(8, "29189846")).addressed_to(&us).unwrap_err().contains("RecipientIt-system"));
        assert!(metadata(&routed(9, "12345674")).addressed_to(&us).unwrap_err().contains("RecipientAuthority"));
        let unknown = Addressee { it_system: None, ..us.clone() };
        assert!(metadata(&routed(9, "29189846")).addressed_to(&unknown).unwrap_err().contains("installation.it_system"));
    }

    #[test]
    fn reads_a_technical_receipt() {
        let ok = format!("<TechnicalReceipt xmlns=\"{NAMESPACE}\"><FileTransferUUID xmlns=\"\">t</FileTransferUUID><Receipt xmlns=\"\"><Message>SUCCESS</Message></Receipt></TechnicalReceipt>");
        assert!(parse_technical_receipt(ok.as_bytes()).unwrap().delivered());
        let failed = format!(
            "<TechnicalReceipt xmlns=\"{NAMESPACE}\"><FileTransferUUID xmlns=\"\">t</FileTransferUUID><SendersFileId xmlns=\"\">K-1</SendersFileId>\
             <ErrorMessage xmlns=\"\"><ErrorCode>12</ErrorCode><ErrorCodeDescription>UNKNOWN_RECIPIENT</ErrorCodeDescription>\
             <ErrorDescription>no such user</ErrorDescription></ErrorMessage></TechnicalReceipt>"
        );
        let receipt = parse_technical_receipt(failed.as_bytes()).unwrap();
        assert!(!receipt.delivered());
        assert_eq!(receipt.outcome, Err(vec!["12 UNKNOWN_RECIPIENT: no such user".to_string()]));
        assert_eq!(receipt.senders_file_id.as_deref(), Some("K-1"));
    }
}
