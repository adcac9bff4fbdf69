//! The sortiment: which senders may deliver what. Parsed from the operator's TOML file (errors by file and
//! line), stored in the database as versions, and used by the pipeline as this in-memory form.

use std::collections::HashMap;
use std::fmt;

use chrono::NaiveDate;
use serde::Deserialize;
use uuid::Uuid;
use wildmatch::WildMatch;

use super::finans::Kontering;
use super::line_and_column;
use super::rejection::Rejection;
use super::values::Cvr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub enum Integration {
    #[serde(rename = "SF1590_A")]
    Sf1590A,
    #[serde(rename = "SF1590_B")]
    Sf1590B,
}

impl Integration {
    pub fn as_str(self) -> &'static str {
        match self {
            Integration::Sf1590A => "SF1590_A",
            Integration::Sf1590B => "SF1590_B",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "SF1590_A" => Some(Integration::Sf1590A),
            "SF1590_B" => Some(Integration::Sf1590B),
            _ => None,
        }
    }
}

impl fmt::Display for Integration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The client certificate a call came with, by the names allowlists and sortiment pins use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerCertificate {
    /// "sha256:" and the hex SHA-256 of the certificate (DER).
    pub fingerprint: String,
    /// The subject, attribute by attribute, as the certificate encodes it.
    pub subject: DistinguishedName,
}

impl CallerCertificate {
    /// Whether a list of allowlist entries or sortiment pins names this certificate.
    pub fn is_in(&self, names: &[CertificateName]) -> bool {
        names.iter().any(|name| name.names(self))
    }
}

/// A client certificate as an allowlist or a sortiment pin names it: "sha256:" and 64 hex digits (colons
/// allowed), or a subject in RFC 4514 text. Parsed where the configuration or sortiment is read, so a name that
/// could never match anything is an error there, not a silent refusal later, and is not parsed again per call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CertificateName {
    /// The SHA-256 of the certificate (DER), as 64 lower-case hex digits.
    Fingerprint(String),
    /// A subject, compared as a parsed name, attribute type and value in order, never as printed text: a
    /// certificate whose one CN is "allowed-client, O=Test" is not "CN=allowed-client, O=Test".
    Subject(DistinguishedName),
}

impl CertificateName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let name = name.trim();
        match name.strip_prefix("sha256:") {
            Some(hex) => {
                let digits: String = hex.chars().filter(|c| *c != ':').collect::<String>().to_lowercase();
                match digits.len() == 64 && digits.chars().all(|c| c.is_ascii_hexdigit()) {
                    true => Ok(CertificateName::Fingerprint(digits)),
                    false => Err(format!("'{name}' er ikke et SHA-256-fingeraftryk (sha256: og 64 hex-cifre)")),
                }
            }
            None => DistinguishedName::parse(name).map(CertificateName::Subject),
        }
    }

    pub fn names(&self, caller: &CallerCertificate) -> bool {
        match self {
            CertificateName::Fingerprint(hex) => caller.fingerprint.strip_prefix("sha256:") == Some(hex.as_str()),
            CertificateName::Subject(subject) => subject.names(&caller.subject),
        }
    }
}

impl fmt::Display for CertificateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateName::Fingerprint(hex) => write!(f, "sha256:{hex}"),
            CertificateName::Subject(subject) => subject.fmt(f),
        }
    }
}

impl TryFrom<String> for CertificateName {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        CertificateName::parse(&text)
    }
}

impl From<CertificateName> for String {
    fn from(name: CertificateName) -> String {
        name.to_string()
    }
}

/// One attribute of a distinguished name: its type (a short name such as "CN", or the OID's dotted form) and
/// its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnAttribute {
    /// Upper case short name, or the dotted OID when the type has no short name.
    pub kind: String,
    /// The dotted OID, when known (from a certificate).
    pub oid: Option<String>,
    pub value: String,
    /// In the same RDN as the attribute before it (written with `+`, a multi-valued RDN in a certificate).
    pub joined: bool,
}

/// A distinguished name as a sequence of attributes, in the order written (in a configuration) or encoded (in a
/// certificate); a multi-valued RDN's attributes in their order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DistinguishedName(pub Vec<DnAttribute>);

impl DistinguishedName {
    /// Reads RFC 4514 text as written in an allowlist or a sortiment pin: `type=value` pairs separated by `,` or
    /// `+`, with `\`-escapes (`\,`, `\+`, `\\`, `\"`, hex pairs such as `\2C`) in values.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut attributes = Vec::new();
        let mut chars = text.chars().peekable();
        let mut joined = false;
        loop {
            let (mut kind, mut equals) = (String::new(), false);
            for c in chars.by_ref() {
                if c == '=' {
                    equals = true;
                    break;
                }
                kind.push(c);
            }
            let kind = kind.trim().to_uppercase();
            if !equals || kind.is_empty() || kind.contains([',', '+']) {
                return Err(format!("'{text}' is not a subject like \"CN=…, O=…\" (type=value pairs separated by commas)"));
            }
            let mut value = Vec::<u8>::new();
            let mut ended = false;
            let mut next_joined = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(h) if h.is_ascii_hexdigit() => {
                            let l =
                                chars.next().filter(|l| l.is_ascii_hexdigit()).ok_or_else(|| format!("'{text}': a broken \\ escape"))?;
                            value.push(u8::from_str_radix(&format!("{h}{l}"), 16).expect("two hex digits"));
                        }
                        Some(other) => value.extend(other.to_string().as_bytes()),
                        None => return Err(format!("'{text}': ends in \\")),
                    },
                    ',' | '+' => {
                        ended = true;
                        next_joined = c == '+';
                        break;
                    }
                    other => value.extend(other.to_string().as_bytes()),
                }
            }
            let value = String::from_utf8(value).map_err(|_| format!("'{text}': an escaped value is not UTF-8"))?;
            attributes.push(DnAttribute { kind, oid: None, value: value.trim().to_string(), joined });
            if !ended {
                break;
            }
            joined = next_joined;
        }
        Ok(DistinguishedName(attributes))
    }

    /// Whether this name (as written) names `other` (from a certificate): the same attributes in the same order
    /// and the same RDNs, types by short name or OID, values exactly.
    ///
    /// The attributes of one multi-valued RDN are a set (DER sorts them by their encoding), so within an RDN
    /// they are matched in any order.
    pub fn names(&self, other: &DistinguishedName) -> bool {
        let (ours, theirs) = (self.rdns(), other.rdns());
        let same = |a: &DnAttribute, b: &DnAttribute| (a.kind == b.kind || b.oid.as_deref() == Some(a.kind.as_str())) && a.value == b.value;
        ours.len() == theirs.len()
            && ours.iter().zip(&theirs).all(|(a, b)| {
                let mut unmatched: Vec<&DnAttribute> = b.iter().collect();
                a.len() == b.len()
                    && a.iter().all(|x| match unmatched.iter().position(|y| same(x, y)) {
                        Some(i) => {
                            unmatched.swap_remove(i);
                            true
                        }
                        None => false,
                    })
            })
    }

    /// The attributes, RDN by RDN.
    fn rdns(&self) -> Vec<&[DnAttribute]> {
        let mut rdns = Vec::new();
        let mut start = 0;
        for (n, attribute) in self.0.iter().enumerate() {
            if n > 0 && !attribute.joined {
                rdns.push(&self.0[start..n]);
                start = n;
            }
        }
        if start < self.0.len() {
            rdns.push(&self.0[start..]);
        }
        rdns
    }
}

impl fmt::Display for DistinguishedName {
    /// RFC 4514-like, with `,`, `+`, `\` and `"` in values escaped, so that the text reads back as the same name,
    /// and control characters as `\XX`, so that a subject cannot write lines of its own into a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, a) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(if a.joined { " + " } else { ", " })?;
            }
            let mut value = String::with_capacity(a.value.len());
            for c in a.value.chars() {
                match c {
                    ',' | '+' | '\\' | '"' => {
                        value.push('\\');
                        value.push(c);
                    }
                    c if c.is_control() => {
                        let mut bytes = [0; 4];
                        for b in c.encode_utf8(&mut bytes).bytes() {
                            value.push_str(&format!("\\{b:02X}"));
                        }
                    }
                    c => value.push(c),
                }
            }
            write!(f, "{}={value}", a.kind)?;
        }
        Ok(())
    }
}

/// Glob patterns (`*` any run, `?` one character) over Funktion, Dranst and Art.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KonteringPattern {
    pub funktion: Vec<String>,
    pub dranst: Vec<String>,
    pub art: Vec<String>,
}

impl KonteringPattern {
    pub fn allows(&self, kontering: &Kontering) -> bool {
        let any = |patterns: &[String], value: &str| patterns.iter().any(|p| WildMatch::new(p).matches(value));
        any(&self.funktion, kontering.funktion.as_str())
            && any(&self.dranst, kontering.dranst.as_str())
            && any(&self.art, kontering.art.as_str())
    }
}

/// Master data a fordringstype can require beyond the schema (REGEL_STAMDATA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stamdata {
    /// PeriodeFra and PeriodeTil, e.g. for periodic benefits.
    Periode,
    /// Foraeldelsesdato, the limitation date.
    Foraeldelsesdato,
    /// An Adresse on every hæfter.
    Adresse,
    /// The revenue Kontering.
    Kontering,
    /// RelateretFordringId: interest and fees point to their main claim.
    #[serde(rename = "relateret")]
    RelateretFordring,
}

impl Stamdata {
    pub fn describe(self) -> &'static str {
        match self {
            Stamdata::Periode => "en periode (PeriodeFra og PeriodeTil)",
            Stamdata::Foraeldelsesdato => "en forældelsesdato (Foraeldelsesdato)",
            Stamdata::Adresse => "en adresse på hver hæfter (Adresse)",
            Stamdata::Kontering => "en kontering (Kontering)",
            Stamdata::RelateretFordring => "en hovedfordring (RelateretFordringId)",
        }
    }
}

/// A fordringstype a sender may hand over, and the master data it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTypeRule {
    pub code: String,
    pub required: Vec<Stamdata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub system: Uuid,
    pub name: String,
    pub authority: Cvr,
    pub owners: Vec<String>,
    pub valid_from: NaiveDate,
    pub valid_to: Option<NaiveDate>,
    pub integrations: Vec<Integration>,
    pub certificates: Vec<CertificateName>,
    /// The SFTP users on Serviceplatformen this sender sends batch files as (`sftp_brugere` in the file).
    pub sftp_users: Vec<String>,
    pub konteringer: Vec<KonteringPattern>,
    pub claim_types: Vec<ClaimTypeRule>,
    /// Whether the owners are mailed when a delivery is rejected (`advarsler` in the file).
    pub alerts: bool,
}

impl Sender {
    pub fn claim_type(&self, code: &str) -> Option<&ClaimTypeRule> {
        self.claim_types.iter().find(|t| t.code == code)
    }

    pub fn allows_kontering(&self, kontering: &Kontering) -> bool {
        self.konteringer.iter().any(|p| p.allows(kontering))
    }

    fn validity(&self) -> String {
        match self.valid_to {
            Some(to) => format!("{} til {}", self.valid_from, to),
            None => format!("fra {}", self.valid_from),
        }
    }
}

/// The sortiment in force: one stored version.
#[derive(Debug, Clone, Default)]
pub struct Sortiment {
    pub version: i64,
    senders: HashMap<Uuid, Sender>,
}

impl Sortiment {
    pub fn new(version: i64, senders: Vec<Sender>) -> Self {
        Sortiment { version, senders: senders.into_iter().map(|s| (s.system, s)).collect() }
    }

    /// The sender whatever it may deliver, e.g. to find the owners of a rejected delivery.
    pub fn get(&self, system: &Uuid) -> Option<&Sender> {
        self.senders.get(system)
    }

    pub fn senders(&self) -> impl Iterator<Item = &Sender> {
        self.senders.values()
    }

    /// The sender if it may deliver this integration on this date; else why not.
    pub fn admit(&self, system: &Uuid, integration: Integration, on: NaiveDate) -> Result<&Sender, Rejection> {
        let sender = self.senders.get(system).ok_or(Rejection::UnknownSender)?;
        if !sender.integrations.contains(&integration) {
            return Err(Rejection::SenderNotForIntegration(integration.as_str()));
        }
        if on < sender.valid_from || sender.valid_to.is_some_and(|to| on > to) {
            return Err(Rejection::SenderInactive(on, sender.validity()));
        }
        Ok(sender)
    }
}

/// Errors in a sortiment file, each naming file and line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct SortimentFileError(pub Vec<String>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    afsender: Vec<toml::Spanned<SenderSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SenderSpec {
    system: Uuid,
    navn: String,
    myndighed: toml::Spanned<String>,
    #[serde(default)]
    ejere: Vec<toml::Spanned<String>>,
    gyldig_fra: NaiveDate,
    gyldig_til: Option<NaiveDate>,
    integrationer: Vec<Integration>,
    #[serde(default)]
    certifikater: Vec<String>,
    #[serde(default)]
    sftp_brugere: Vec<String>,
    #[serde(default)]
    kontering: Vec<toml::Spanned<PatternSpec>>,
    #[serde(default)]
    fordringstype: Vec<toml::Spanned<ClaimTypeSpec>>,
    #[serde(default = "yes")]
    advarsler: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimTypeSpec {
    kode: String,
    #[serde(default)]
    kraever: Vec<Stamdata>,
}

/// A pattern field: one text or a list of texts. Read by hand, so that a wrong type says what was expected
/// (serde's untagged enums only say "did not match any variant").
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("en tekst i anførselstegn eller en liste af dem, f.eks. \"5.57.*\" eller [\"5.57.*\", \"5.61.*\"]")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(value.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element::<String>()? {
                    values.push(value);
                }
                Ok(OneOrMany::Many(values))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternSpec {
    funktion: Option<OneOrMany>,
    dranst: Option<OneOrMany>,
    art: Option<OneOrMany>,
}

/// Reads a sortiment file. `name` is only used in error messages.
pub fn parse_sortiment_file(name: &str, content: &str) -> Result<Vec<Sender>, SortimentFileError> {
    let spec: FileSpec = toml::from_str(content).map_err(|e| {
        let (line, col) = e.span().map(|s| line_and_column(content, s.start)).unwrap_or((0, 0));
        SortimentFileError(vec![format!("{name}:{line}:{col}: {}", e.message())])
    })?;
    let mut errors = Vec::new();
    let mut senders: Vec<Sender> = Vec::new();
    for spanned in spec.afsender {
        let at = |offset: usize| {
            let (line, col) = line_and_column(content, offset);
            format!("{name}:{line}:{col}")
        };
        let sender_line = at(spanned.span().start);
        let spec = spanned.into_inner();
        if senders.iter().any(|s| s.system == spec.system) {
            errors.push(format!("{sender_line}: afsender {} står mere end én gang", spec.system));
        }
        let authority = match Cvr::parse(spec.myndighed.get_ref()) {
            Ok(cvr) => Some(cvr),
            Err(e) => {
                errors.push(format!("{}: myndighed: {e}", at(spec.myndighed.span().start)));
                None
            }
        };
        for owner in &spec.ejere {
            let email = owner.get_ref();
            let ok = email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
            if !ok {
                errors.push(format!("{}: ejere: '{email}' er ikke en e-mailadresse", at(owner.span().start)));
            }
        }
        if spec.gyldig_til.is_some_and(|to| to < spec.gyldig_fra) {
            errors.push(format!("{sender_line}: gyldig_til ligger før gyldig_fra"));
        }
        if spec.integrationer.contains(&Integration::Sf1590A) && spec.kontering.is_empty() {
            errors.push(format!("{sender_line}: afsender {} må levere SF1590_A, men har ingen [[afsender.kontering]]", spec.system));
        }
        if spec.integrationer.contains(&Integration::Sf1590B) && spec.fordringstype.is_empty() {
            errors.push(format!("{sender_line}: afsender {} må levere SF1590_B, men har ingen [[afsender.fordringstype]]", spec.system));
        }
        let mut claim_types: Vec<ClaimTypeRule> = Vec::new();
        for claim_type in spec.fordringstype {
            let line = at(claim_type.span().start);
            let claim_type = claim_type.into_inner();
            let code_ok = !claim_type.kode.is_empty() && claim_type.kode.len() <= 20 && claim_type.kode.trim() == claim_type.kode;
            if !code_ok {
                errors.push(format!("{line}: kode: '{}' skal være 1-20 tegn uden mellemrum i enderne", claim_type.kode));
            }
            if claim_types.iter().any(|t| t.code == claim_type.kode) {
                errors.push(format!("{line}: fordringstypen '{}' står mere end én gang", claim_type.kode));
            }
            claim_types.push(ClaimTypeRule { code: claim_type.kode, required: claim_type.kraever });
        }
        let mut konteringer = Vec::new();
        for pattern in spec.kontering {
            let line = at(pattern.span().start);
            let pattern = pattern.into_inner();
            let field = |value: Option<OneOrMany>, label: &str, errors: &mut Vec<String>| {
                let values = value.map(OneOrMany::into_vec).unwrap_or_else(|| vec!["*".into()]);
                for v in &values {
                    if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '*' | '?')) {
                        errors.push(format!("{line}: {label}: '{v}' er ikke et mønster af cifre, '.', '*' og '?'"));
                    }
                }
                values
            };
            konteringer.push(KonteringPattern {
                funktion: field(pattern.funktion, "funktion", &mut errors),
                dranst: field(pattern.dranst, "dranst", &mut errors),
                art: field(pattern.art, "art", &mut errors),
            });
        }
        let mut certificates = Vec::new();
        for name in &spec.certifikater {
            match CertificateName::parse(name) {
                Ok(name) => certificates.push(name),
                Err(why) => errors.push(format!("{sender_line}: certifikater: {why}")),
            }
        }
        if let Some(authority) = authority {
            senders.push(Sender {
                system: spec.system,
                name: spec.navn,
                authority,
                owners: spec.ejere.into_iter().map(|o| o.into_inner()).collect(),
                valid_from: spec.gyldig_fra,
                valid_to: spec.gyldig_til,
                integrations: spec.integrationer,
                certificates,
                sftp_users: spec.sftp_brugere,
                konteringer,
                claim_types,
                alerts: spec.advarsler,
            });
        }
    }
    if errors.is_empty() {
        Ok(senders)
    } else {
        Err(SortimentFileError(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_name_that_could_never_match_is_an_error_where_it_is_written() {
        let fingerprint = format!("sha256:{}", "AB:".repeat(31) + "AB");
        let parsed = CertificateName::parse(&fingerprint).unwrap();
        assert_eq!(parsed.to_string(), format!("sha256:{}", "ab".repeat(32)), "colons and case do not matter");
        let caller = CallerCertificate { fingerprint: format!("sha256:{}", "ab".repeat(32)), subject: DistinguishedName::default() };
        assert!(caller.is_in(&[parsed]));
        assert!(CertificateName::parse("sha256:AB:CD").is_err(), "too short");
        let subject = CertificateName::parse("CN=SP_PROD_Callback, O=KOMBIT").unwrap();
        assert_eq!(CertificateName::parse(&subject.to_string()).unwrap(), subject, "stored as text, read back as itself");
        assert!(CertificateName::parse("SP_PROD_Callback").is_err(), "a bare name is no subject");
        let content = "[[afsender]]\nsystem = \"6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01\"\nnavn = \"KY\"\nmyndighed = \"29189846\"\n\
                       gyldig_fra = \"2024-01-01\"\nintegrationer = [\"SF1590_A\"]\ncertifikater = [\"KY-direkte\"]\n";
        let err = parse_sortiment_file("s.toml", content).unwrap_err().to_string();
        assert!(err.contains("s.toml:1:1: certifikater: ") && err.contains("KY-direkte"), "{err}");
    }

    #[test]
    fn a_subject_is_read_and_compared_attribute_by_attribute() {
        // "+CN": in the same RDN as the attribute before it.
        let cert = |attrs: &[(&str, &str)]| {
            let attribute = |(k, v): &(&str, &str)| DnAttribute {
                kind: k.trim_start_matches('+').to_string(),
                oid: None,
                value: v.to_string(),
                joined: k.starts_with('+'),
            };
            DistinguishedName(attrs.iter().map(attribute).collect())
        };
        let written = DistinguishedName::parse("CN=allowed-client, O=Test").unwrap();
        assert!(written.names(&cert(&[("CN", "allowed-client"), ("O", "Test")])));
        assert!(!written.names(&cert(&[("CN", "allowed-client, O=Test")])), "one CN that reads like two attributes");
        assert!(!written.names(&cert(&[("O", "Test"), ("CN", "allowed-client")])), "in order");
        // Escapes, a lower-case type and a value with a comma in it.
        let escaped = DistinguishedName::parse("cn=Kommune\\, Økonomi+OU=x\\2By").unwrap();
        assert!(escaped.names(&cert(&[("CN", "Kommune, Økonomi"), ("+OU", "x+y")])));
        assert_eq!(DistinguishedName::parse(&escaped.to_string()).unwrap(), escaped, "the printed name reads back as itself");
        // Where one RDN ends and the next begins is part of the name.
        let two = DistinguishedName::parse("O=KOMBIT, CN=SP").unwrap();
        assert!(two.names(&cert(&[("O", "KOMBIT"), ("CN", "SP")])));
        assert!(!two.names(&cert(&[("O", "KOMBIT"), ("+CN", "SP")])), "one multi-valued RDN is not two RDNs");
        let one = DistinguishedName::parse("O=KOMBIT + CN=SP").unwrap();
        assert!(one.names(&cert(&[("O", "KOMBIT"), ("+CN", "SP")])) && !one.names(&cert(&[("O", "KOMBIT"), ("CN", "SP")])));
        assert!(one.names(&cert(&[("CN", "SP"), ("+O", "KOMBIT")])), "an RDN's attributes are a set");
        assert!(!one.names(&cert(&[("CN", "SP"), ("+CN", "SP")])), "each attribute matched once");
        // A value with control characters prints them escaped: a subject cannot write a log line of its own.
        let forged = cert(&[("CN", "e\n2026-11-26T04:45:48Z  INFO forged\u{1b}[31m")]);
        assert_eq!(forged.to_string(), "CN=e\\0A2026-11-26T04:45:48Z  INFO forged\\1B[31m");
        assert!(DistinguishedName::parse("=x").is_err() && DistinguishedName::parse("CN=x\\").is_err());
        // By OID, as an allowlist may write an attribute without a short name.
        let by_oid = DistinguishedName::parse("2.5.4.3=a").unwrap();
        let from_cert =
            DistinguishedName(vec![DnAttribute { kind: "CN".into(), oid: Some("2.5.4.3".into()), value: "a".into(), joined: false }]);
        assert!(by_oid.names(&from_cert));
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let content = "[[afsender]]\nsystem = \"6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01\"\nnavn = \"KY\"\nmyndighed = \"29189847\"\ngyldig_fra = \"2024-01-01\"\nintegrationer = [\"SF1590_A\"]\n[[afsender.kontering]]\nfunktion = \"5.x\"\n";
        let err = parse_sortiment_file("s.toml", content).unwrap_err().to_string();
        assert!(err.contains("s.toml:4:13: myndighed: CVR-nummeret består ikke modulus 11-kontrollen"), "{err}");
        assert!(err.contains("s.toml:7:1: funktion: '5.x'"), "{err}");
        let err = parse_sortiment_file("s.toml", "[[afsender]]\nsystem = \"nope\"\n").unwrap_err().to_string();
        assert!(err.starts_with("s.toml:2:10: "), "{err}");
        // A wrong type: what was expected, in words, not serde's "did not match any variant".
        let err = parse_sortiment_file("s.toml", "[[afsender]]\n[[afsender.kontering]]\nfunktion = 5\n").unwrap_err().to_string();
        assert!(err.starts_with("s.toml:3:12: ") && err.contains("en tekst i anførselstegn eller en liste"), "{err}");
    }
}
