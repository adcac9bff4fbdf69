//! Every reason a delivery can be rejected, and the one place that maps each to its receipt code and its
//! Danish text (the `#[error]` text is what a person reads in the receipt).

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::values::ValueError;

/// The receipt codes of the contract (receipts.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    FormatXml,
    FormatXsd,
    FormatStoerrelse,
    AfsenderUkendt,
    AfsenderIkkeAktiv,
    MyndighedForkert,
    SortimentKontering,
    SortimentFordringstype,
    RegelBalance,
    RegelPosteringId,
    RegelPeriodeLukket,
    RegelValuta,
    RegelDato,
    RegelCpr,
    RegelCvr,
    RegelHaefter,
    RegelStamdata,
    RegelRelateret,
    MapningMangler,
    DubletAfvigende,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::FormatXml => "FORMAT_XML",
            Code::FormatXsd => "FORMAT_XSD",
            Code::FormatStoerrelse => "FORMAT_STOERRELSE",
            Code::AfsenderUkendt => "AFSENDER_UKENDT",
            Code::AfsenderIkkeAktiv => "AFSENDER_IKKE_AKTIV",
            Code::MyndighedForkert => "MYNDIGHED_FORKERT",
            Code::SortimentKontering => "SORTIMENT_KONTERING",
            Code::SortimentFordringstype => "SORTIMENT_FORDRINGSTYPE",
            Code::RegelBalance => "REGEL_BALANCE",
            Code::RegelPosteringId => "REGEL_POSTERING_ID",
            Code::RegelPeriodeLukket => "REGEL_PERIODE_LUKKET",
            Code::RegelValuta => "REGEL_VALUTA",
            Code::RegelDato => "REGEL_DATO",
            Code::RegelCpr => "REGEL_CPR",
            Code::RegelCvr => "REGEL_CVR",
            Code::RegelHaefter => "REGEL_HAEFTER",
            Code::RegelStamdata => "REGEL_STAMDATA",
            Code::RegelRelateret => "REGEL_RELATERET",
            Code::MapningMangler => "MAPNING_MANGLER",
            Code::DubletAfvigende => "DUBLET_AFVIGENDE",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason for rejection. The text tells a person what is wrong and how to fix it at the source.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("Leverancen er ikke velformet XML: {0}. Ret dokumentet og send igen.")]
    NotWellFormed(String),
    #[error("Leverancen bruger en konstruktion, der ikke er tilladt: {0}. Send ren UTF-8-XML uden DTD og entiteter.")]
    Forbidden(String),
    #[error("Leverancen er ikke kodet som UTF-8: {0}. Send den som UTF-8.")]
    Encoding(String),
    #[error("Elementet overholder ikke skemaet: {0}. Ret elementet efter skemaet i WSDL'en.")]
    Schema(String),
    #[error("Leverancen overskrider en grænse: {0}. Del leverancen op og send delene hver for sig.")]
    TooLarge(String),
    #[error("Afsendersystemet findes ikke i sortimentet. Kontakt kommunen for at få systemet oprettet.")]
    UnknownSender,
    #[error("Afsendersystemet må ikke levere til {0} efter sortimentet.")]
    SenderNotForIntegration(&'static str),
    #[error("Kaldets klientcertifikat ({0}) er ikke et af dem, sortimentet tillader for afsendersystemet.")]
    CertificateNotForSender(String),
    #[error("Afsendersystemet i Serviceplatformens kald ({0}) er ikke det samme som AfsenderSystem i leverancen.")]
    SenderContextMismatch(String),
    #[error("Filen er sendt af SFTP-brugeren {user}, som sortimentet ikke knytter til AfsenderSystem {system}. Send filen som systemets egen SFTP-bruger, eller bed kommunen om at tilføje brugeren i sortimentet.")]
    SftpUserNotForSender { user: String, system: uuid::Uuid },
    #[error(
        "SFTPDynamicRoutingInfo angiver SenderIt-system {routed}, men filens AfsenderSystem er {system}. De skal være det samme system."
    )]
    RoutedSenderMismatch { routed: uuid::Uuid, system: uuid::Uuid },
    #[error("SFTPDynamicRoutingInfo angiver SenderAuthority {0}, men denne installation modtager for {1}. Send til den rigtige kommune.")]
    RoutedAuthorityMismatch(String, String),
    #[error("Afsendersystemets sortiment er ikke gyldigt den {0} (gyldigt {1}). Kontakt kommunen.")]
    SenderInactive(NaiveDate, String),
    #[error("Leverancen er sendt til myndighed {0}, men denne installation modtager for {1}. Send til den rigtige kommune.")]
    WrongAuthority(String, String),
    #[error("Konteringen (funktion {funktion}, dranst {dranst}, art {art}) ligger uden for afsenderens sortiment.")]
    KonteringOutsideSortiment { funktion: String, dranst: String, art: String },
    #[error("Bilaget balancerer ikke i {currency}: debet {debit}, kredit {credit}. Debet og kredit skal være lige store for hver valuta.")]
    Unbalanced { currency: String, debit: Decimal, credit: Decimal },
    #[error("PosteringId {0} findes mere end én gang i bilaget. Hver postering skal have sit eget id.")]
    RepeatedPostingId(u64),
    #[error("Posteringsdatoen {0} ligger i en lukket regnskabsperiode (åbne perioder: {1}).")]
    ClosedPeriod(NaiveDate, String),
    #[error("Valutaen {0} er ikke tilladt (tilladte: {1}).")]
    CurrencyNotAllowed(String, String),
    #[error("CPR-nummeret er ugyldigt: {0}.")]
    InvalidCpr(ValueError),
    #[error("CVR-nummeret er ugyldigt: {0}.")]
    InvalidCvr(ValueError),
    #[error("Ugyldig værdi: {0}.")]
    InvalidValue(ValueError),
    #[error("Datoerne er ikke i orden: {0}.")]
    DateOrder(String),
    #[error("Hæfterne er ikke i orden: {0}. En fordring skal have præcis én JuridiskAnsvarlig og hver part kun én gang.")]
    Liability(String),
    #[error("Fordringstypen '{0}' ligger uden for afsenderens sortiment.")]
    ClaimTypeOutsideSortiment(String),
    #[error("Fordringstypen {1} kræver {0} efter sortimentet, men fordringen har det ikke.")]
    MissingMasterData(&'static str, String),
    #[error(
        "Den relaterede fordring '{0}' er ikke modtaget og accepteret fra dette afsendersystem (tidligere eller før i samme leverance)."
    )]
    RelatedUnknown(String),
    #[error("Ingen mapning fører fordringstypen '{0}' til en fordringstype i ERP-systemet. Kommunens økonomiafdeling skal tilføje den i fordringstyper.csv.")]
    NoClaimTypeMapping(String),
    #[error("Ingen mapning fører konteringen (funktion {funktion}, dranst {dranst}, art {art}) til en ERP-konto. Kommunens økonomiafdeling skal tilføje en regel i mapningsfilerne.")]
    NoMapping { funktion: String, dranst: String, art: String },
    #[error("Værdien til kolonnen {column} i ERP-systemets importtabel kan ikke skrives: {reason}. Intet er afkortet; ERP-leverandøren eller kommunens økonomiafdeling skal rette målprofilen (erp-profil.toml), eller afsenderen sende en værdi, der passer.")]
    TargetColumn { column: String, reason: String },
    #[error("{0} er allerede modtaget fra dette afsendersystem med et andet indhold. Brug et nyt id til nyt indhold.")]
    DuplicateDifferent(String),
    #[error("Yderligere {count} fejl er ikke vist: kvitteringen viser de første {MAX_ERRORS_PER_ITEM} fejl for hvert bilag og hver fordring. Ret de viste fejl og send igen.")]
    MoreErrors { count: usize, code: Code },
}

/// The errors a receipt lists for one item at most: beyond this a count stands for the rest, so an answer stays in
/// proportion to what was sent.
pub const MAX_ERRORS_PER_ITEM: usize = 100;

/// Keeps the first `MAX_ERRORS_PER_ITEM` findings and a count of the rest (beside `omitted` found and not kept
/// earlier), under the code of the first left out.
pub fn cap_findings(findings: &mut Vec<Finding>, omitted: usize) {
    // A count made by an earlier cap (of the schema errors) is carried into this one.
    let mut carried = None;
    findings.retain(|f| match f.rejection {
        Rejection::MoreErrors { count, code } => {
            carried = Some((carried.map_or(0, |(n, _)| n) + count, code));
            false
        }
        _ => true,
    });
    let omitted = omitted + carried.map_or(0, |(n, _)| n);
    let over = findings.len().saturating_sub(MAX_ERRORS_PER_ITEM);
    if over == 0 {
        if let Some((_, code)) = carried.filter(|_| omitted > 0) {
            let loc = findings.last().and_then(|f| f.loc.clone());
            findings.push(Finding { rejection: Rejection::MoreErrors { count: omitted, code }, loc, value: None });
            return;
        }
    }
    if over == 0 && omitted == 0 {
        return;
    }
    let code = findings.get(MAX_ERRORS_PER_ITEM).or(findings.last()).map_or(Code::FormatXsd, Finding::code);
    let loc = findings.get(MAX_ERRORS_PER_ITEM).or(findings.last()).and_then(|f| f.loc.clone());
    findings.truncate(MAX_ERRORS_PER_ITEM);
    findings.push(Finding { rejection: Rejection::MoreErrors { count: over + omitted, code }, loc, value: None });
}

impl Rejection {
    /// The one mapping from reasons to receipt codes.
    pub fn code(&self) -> Code {
        match self {
            Rejection::NotWellFormed(_) | Rejection::Forbidden(_) | Rejection::Encoding(_) => Code::FormatXml,
            Rejection::Schema(_) => Code::FormatXsd,
            Rejection::TooLarge(_) => Code::FormatStoerrelse,
            Rejection::UnknownSender
            | Rejection::SenderNotForIntegration(_)
            | Rejection::SenderContextMismatch(_)
            | Rejection::SftpUserNotForSender { .. }
            | Rejection::RoutedSenderMismatch { .. }
            | Rejection::CertificateNotForSender(_) => Code::AfsenderUkendt,
            Rejection::SenderInactive(..) => Code::AfsenderIkkeAktiv,
            Rejection::WrongAuthority(..) | Rejection::RoutedAuthorityMismatch(..) => Code::MyndighedForkert,
            Rejection::KonteringOutsideSortiment { .. } => Code::SortimentKontering,
            Rejection::Unbalanced { .. } => Code::RegelBalance,
            Rejection::RepeatedPostingId(_) => Code::RegelPosteringId,
            Rejection::ClosedPeriod(..) => Code::RegelPeriodeLukket,
            Rejection::CurrencyNotAllowed(..) => Code::RegelValuta,
            Rejection::InvalidCpr(_) => Code::RegelCpr,
            Rejection::InvalidCvr(_) => Code::RegelCvr,
            Rejection::InvalidValue(_) => Code::FormatXsd,
            Rejection::NoMapping { .. } | Rejection::NoClaimTypeMapping(_) | Rejection::TargetColumn { .. } => Code::MapningMangler,
            Rejection::DateOrder(_) => Code::RegelDato,
            Rejection::Liability(_) => Code::RegelHaefter,
            Rejection::ClaimTypeOutsideSortiment(_) => Code::SortimentFordringstype,
            Rejection::MissingMasterData(..) => Code::RegelStamdata,
            Rejection::RelatedUnknown(_) => Code::RegelRelateret,
            Rejection::DuplicateDifferent(_) => Code::DubletAfvigende,
            Rejection::MoreErrors { code, .. } => *code,
        }
    }
}

/// Where in the received XML something is: a path like `/ModtagFinansbilag/Finansbilag[2]/Postering[5]/Beloeb`
/// and the line and column of the element's start tag.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Loc {
    pub path: String,
    pub line: Option<u32>,
    pub col: Option<u32>,
}

impl Loc {
    pub fn child(&self, name: &str) -> String {
        format!("{}/{}", self.path, name)
    }
}

/// One error of a receipt: a reason, where it is, and the offending value (CPR masked).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rejection: Rejection,
    pub loc: Option<Loc>,
    pub value: Option<String>,
}

impl Finding {
    pub fn new(rejection: Rejection, loc: &Loc) -> Self {
        Finding { rejection, loc: Some(loc.clone()), value: None }
    }

    pub fn nowhere(rejection: Rejection) -> Self {
        Finding { rejection, loc: None, value: None }
    }

    pub fn with_value(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self
    }

    pub fn code(&self) -> Code {
        self.rejection.code()
    }
}

/// The longest a value a sender controls is shown in a receipt, inside a text or on its own.
pub const MAX_VALUE_CHARS: usize = 100;

/// `text` cut to `max` characters, marked with "…" where it was cut.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}
