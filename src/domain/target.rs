//! Target profiles: where the ERP wants accepted records in its own import tables, and how each column is
//! filled. A profile is one file of the mapping set (`erp-profil.toml`), so it is versioned, rolled back and
//! edited with the mapping files, and an item is mapped and rendered by one version of both.
//!
//! A column is filled by an expression of a fixed, documented set (docs/target-profiles.md): a field of the
//! record, a constant, or a transformation of them. There is no scripting: every expression has a type known
//! when the profile is read, so a profile that cannot work is refused before it is in force, at its line.
//!
//! Reading a profile (`Profile::parse`) checks it on its own; binding it to the target tables' real columns
//! (`Profile::bind`, with what storage read from the database) checks that every column exists and can hold what
//! the expression gives. Rendering an accepted item then yields finished rows, or a `MAPNING_MANGLER` naming the
//! column that a value does not fit: a value is never cut.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::finans::{Finansbilag, Postering};
use super::fordring::{Fordring, Haefter};
use super::mapping::{Mapped, MappedClaimType, MappingError, MappingFiles};
use super::rejection::{Finding, Loc, Rejection};

/// The profile's name in the mapping folder. Without it, the adapter's own import tables are the only target.
pub const PROFILE_FILE: &str = "erp-profil.toml";

/// The kinds of record a target takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Record {
    Finansbilag,
    Postering,
    Fordring,
    Haefter,
}

impl Record {
    const ALL: [Record; 4] = [Record::Finansbilag, Record::Postering, Record::Fordring, Record::Haefter];

    pub fn as_str(self) -> &'static str {
        match self {
            Record::Finansbilag => "finansbilag",
            Record::Postering => "postering",
            Record::Fordring => "fordring",
            Record::Haefter => "haefter",
        }
    }

    fn is_finans(self) -> bool {
        matches!(self, Record::Finansbilag | Record::Postering)
    }
}

/// The type of what an expression gives, known when the profile is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// An exact amount.
    Decimal,
    Integer,
    Date,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "en tekst",
            Kind::Decimal => "et beløb",
            Kind::Integer => "et heltal",
            Kind::Date => "en dato",
        }
    }
}

/// Keys known only when the item is written: its row in the adapter's own tables and its delivery's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// The item's row: `erp_journal.id` or `erp_claims.id`.
    Item,
    /// The receipt's ErpReference, `erp_journal:<id>` or `erp_claims:<id>`.
    Reference,
    /// The delivery's row, one number per delivery (a straks call or a batch file): the batch number.
    Delivery,
}

impl Key {
    /// The widest it can be written as text: a 32-bit key, with "erp_claims:" before it.
    fn max_chars(self) -> usize {
        match self {
            Key::Item | Key::Delivery => 10,
            Key::Reference => 21,
        }
    }
}

/// A value of a record, by the names the integrators' guide lists for the adapter's own tables.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Key(Key),
    AfsenderSystem,
    LeveranceId,
    MappingVersion,
    ItemNo,
    BilagId,
    Bilagsdato,
    Bilagstekst,
    PostingCount,
    LineNo,
    PostingId,
    ErpAccount,
    ErpDimensions,
    Dimension(String),
    Amount,
    DebitCredit,
    Currency,
    PostingDate,
    PostingText,
    PartyType,
    PartyId,
    CaseReference,
    Kontering(&'static str),
    FordringId,
    ErpClaimType,
    SrcFordringstype,
    Principal,
    Description,
    PeriodFrom,
    PeriodTo,
    Established,
    Due,
    LastTimelyPayment,
    Limitation,
    RelatedFordringId,
    Position,
    Role,
    IdentifierType,
    Identifier,
    Name,
    Street,
    HouseNumber,
    Floor,
    Door,
    Postcode,
    City,
    Country,
}

/// Which records have a field.
#[derive(Clone, Copy)]
enum Scope {
    All,
    Finans,
    Posting,
    Claim,
    Party,
}

impl Scope {
    fn has(self, record: Record) -> bool {
        match self {
            Scope::All => true,
            Scope::Finans => record.is_finans(),
            Scope::Posting => record == Record::Postering,
            Scope::Claim => !record.is_finans(),
            Scope::Party => record == Record::Haefter,
        }
    }
}

/// Every field: its name in a profile, which records have it, and its type.
const FIELDS: &[(&str, Scope, Kind)] = &[
    ("afsender_system", Scope::All, Kind::Text),
    ("leverance_id", Scope::All, Kind::Text),
    ("mapping_version", Scope::All, Kind::Text),
    ("item_no", Scope::All, Kind::Integer),
    ("batch_number", Scope::All, Kind::Integer),
    ("erp_reference", Scope::All, Kind::Text),
    ("erp_account", Scope::All, Kind::Text),
    ("erp_dimensions", Scope::All, Kind::Text),
    ("currency", Scope::All, Kind::Text),
    ("journal_id", Scope::Finans, Kind::Integer),
    ("bilag_id", Scope::Finans, Kind::Text),
    ("bilagsdato", Scope::Finans, Kind::Date),
    ("bilagstekst", Scope::Finans, Kind::Text),
    ("posting_count", Scope::Finans, Kind::Integer),
    ("line_no", Scope::Posting, Kind::Integer),
    ("posting_id", Scope::Posting, Kind::Integer),
    ("amount", Scope::Posting, Kind::Decimal),
    ("debit_credit", Scope::Posting, Kind::Text),
    ("posting_date", Scope::Posting, Kind::Date),
    ("posting_text", Scope::Posting, Kind::Text),
    ("party_type", Scope::Posting, Kind::Text),
    ("party_id", Scope::Posting, Kind::Text),
    ("case_reference", Scope::Posting, Kind::Text),
    ("src_funktion", Scope::Posting, Kind::Text),
    ("src_gruppering", Scope::Posting, Kind::Text),
    ("src_dranst", Scope::Posting, Kind::Text),
    ("src_ejerforhold", Scope::Posting, Kind::Text),
    ("src_art", Scope::Posting, Kind::Text),
    ("src_omkostningssted", Scope::Posting, Kind::Text),
    ("src_pspelement", Scope::Posting, Kind::Text),
    ("claim_id", Scope::Claim, Kind::Integer),
    ("fordring_id", Scope::Claim, Kind::Text),
    ("erp_claim_type", Scope::Claim, Kind::Text),
    ("src_fordringstype", Scope::Claim, Kind::Text),
    ("principal", Scope::Claim, Kind::Decimal),
    ("description", Scope::Claim, Kind::Text),
    ("period_from", Scope::Claim, Kind::Date),
    ("period_to", Scope::Claim, Kind::Date),
    ("established", Scope::Claim, Kind::Date),
    ("due", Scope::Claim, Kind::Date),
    ("last_timely_payment", Scope::Claim, Kind::Date),
    ("limitation", Scope::Claim, Kind::Date),
    ("related_fordring_id", Scope::Claim, Kind::Text),
    ("position", Scope::Party, Kind::Integer),
    ("role", Scope::Party, Kind::Text),
    ("identifier_type", Scope::Party, Kind::Text),
    ("identifier", Scope::Party, Kind::Text),
    ("name", Scope::Party, Kind::Text),
    ("street", Scope::Party, Kind::Text),
    ("house_number", Scope::Party, Kind::Text),
    ("floor", Scope::Party, Kind::Text),
    ("door", Scope::Party, Kind::Text),
    ("postcode", Scope::Party, Kind::Text),
    ("city", Scope::Party, Kind::Text),
    ("country", Scope::Party, Kind::Text),
];

const DIMENSION_PREFIX: &str = "dimension:";

/// The field of `record` named `name`, with its type.
fn field(record: Record, name: &str) -> Result<(Field, Kind), String> {
    if let Some(dimension) = name.strip_prefix(DIMENSION_PREFIX) {
        if dimension.is_empty() {
            return Err(format!("{DIMENSION_PREFIX} skal efterfølges af navnet på en ERP-dimension"));
        }
        return Ok((Field::Dimension(dimension.to_string()), Kind::Text));
    }
    let Some(&(name, scope, kind)) = FIELDS.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("ukendt felt '{name}'; felterne er listet i docs/target-profiles.md"));
    };
    if !scope.has(record) {
        return Err(format!("en {} har ikke feltet '{name}'", record.as_str()));
    }
    let field = match name {
        "journal_id" | "claim_id" => Field::Key(Key::Item),
        "erp_reference" => Field::Key(Key::Reference),
        "batch_number" => Field::Key(Key::Delivery),
        "afsender_system" => Field::AfsenderSystem,
        "leverance_id" => Field::LeveranceId,
        "mapping_version" => Field::MappingVersion,
        "item_no" => Field::ItemNo,
        "erp_account" => Field::ErpAccount,
        "erp_dimensions" => Field::ErpDimensions,
        "currency" => Field::Currency,
        "bilag_id" => Field::BilagId,
        "bilagsdato" => Field::Bilagsdato,
        "bilagstekst" => Field::Bilagstekst,
        "posting_count" => Field::PostingCount,
        "line_no" => Field::LineNo,
        "posting_id" => Field::PostingId,
        "amount" => Field::Amount,
        "debit_credit" => Field::DebitCredit,
        "posting_date" => Field::PostingDate,
        "posting_text" => Field::PostingText,
        "party_type" => Field::PartyType,
        "party_id" => Field::PartyId,
        "case_reference" => Field::CaseReference,
        "src_funktion" | "src_gruppering" | "src_dranst" | "src_ejerforhold" | "src_art" | "src_omkostningssted" | "src_pspelement" => {
            Field::Kontering(name)
        }
        "fordring_id" => Field::FordringId,
        "erp_claim_type" => Field::ErpClaimType,
        "src_fordringstype" => Field::SrcFordringstype,
        "principal" => Field::Principal,
        "description" => Field::Description,
        "period_from" => Field::PeriodFrom,
        "period_to" => Field::PeriodTo,
        "established" => Field::Established,
        "due" => Field::Due,
        "last_timely_payment" => Field::LastTimelyPayment,
        "limitation" => Field::Limitation,
        "related_fordring_id" => Field::RelatedFordringId,
        "position" => Field::Position,
        "role" => Field::Role,
        "identifier_type" => Field::IdentifierType,
        "identifier" => Field::Identifier,
        "name" => Field::Name,
        "street" => Field::Street,
        "house_number" => Field::HouseNumber,
        "floor" => Field::Floor,
        "door" => Field::Door,
        "postcode" => Field::Postcode,
        "city" => Field::City,
        "country" => Field::Country,
        other => unreachable!("field {other} is in FIELDS but not matched"),
    };
    Ok((field, kind))
}

/// A column's expression, typed.
#[derive(Debug, Clone)]
enum Expr {
    Field(Field),
    Text(String),
    Integer(i64),
    /// An amount as whole øre (hundredths).
    Oere(Box<Expr>),
    /// A posting's amount, negative when it is a credit.
    Signed(Box<Expr>),
    /// An amount as text with two decimals and this separator.
    AmountText(Box<Expr>, String),
    /// A date as text in this chrono format.
    DateText(Box<Expr>, String),
    Upper(Box<Expr>),
    Concat(Vec<Expr>),
    /// The second column of the lookup table's row whose first column is the value.
    Lookup {
        file: String,
        table: Arc<HashMap<String, String>>,
        key: Box<Expr>,
    },
}

impl Expr {
    /// The fewest characters the value has as text whenever it is there: what a text column must at least hold.
    fn min_chars(&self) -> usize {
        // Required dates only: an optional one may be empty.
        let required_date = |expr: &Expr| {
            matches!(expr, Expr::Field(Field::Bilagsdato | Field::PostingDate | Field::Established | Field::Due | Field::LastTimelyPayment))
        };
        match self {
            Expr::Text(text) => text.chars().count(),
            Expr::Field(Field::AfsenderSystem) => 36,
            Expr::Field(Field::IdentifierType | Field::Currency) => 3,
            Expr::Field(Field::DebitCredit) => 1,
            Expr::Field(Field::Role) => "JuridiskAnsvarlig".len(),
            expr if required_date(expr) => "2026-01-01".len(),
            Expr::DateText(inner, format) if required_date(inner) => {
                // The shortest over every weekday and month, and days of one and two digits.
                (1..=12)
                    .flat_map(|month| {
                        [1, 10, 20, 21, 22, 23, 24, 25, 26].map(|day| NaiveDate::from_ymd_opt(2026, month, day).expect("a date"))
                    })
                    .map(|date| date.format(format).to_string().chars().count())
                    .min()
                    .unwrap_or(0)
            }
            Expr::AmountText(..) => "0,01".len(),
            Expr::Upper(inner) => inner.min_chars(),
            Expr::Concat(parts) => parts.iter().map(Expr::min_chars).sum(),
            _ => 0,
        }
    }
}

/// A value of a rendered column; keys are filled in when the item is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Decimal(Decimal),
    Integer(i64),
    Date(NaiveDate),
    Key(Key),
}

impl Value {
    /// As text, for a text column.
    fn into_text(self) -> Option<String> {
        match self {
            Value::Null | Value::Key(_) => None,
            Value::Text(text) => Some(text),
            // Amounts with two decimals, as sent or not ("1250.5" is "1250.50").
            Value::Decimal(mut d) => {
                d.rescale(d.scale().max(2));
                Some(d.to_string())
            }
            Value::Integer(n) => Some(n.to_string()),
            Value::Date(date) => Some(date.format("%Y-%m-%d").to_string()),
        }
    }
}

/// The expression language: a constant ('text' or a whole number), a field name, or a function of them.
mod parse {
    use super::*;

    pub(super) struct Parser<'a> {
        text: &'a str,
        at: usize,
        record: Record,
        files: &'a MappingFiles,
        lookups: &'a mut HashMap<String, Arc<HashMap<String, String>>>,
    }

    impl<'a> Parser<'a> {
        pub(super) fn new(
            text: &'a str,
            record: Record,
            files: &'a MappingFiles,
            lookups: &'a mut HashMap<String, Arc<HashMap<String, String>>>,
        ) -> Self {
            Parser { text, at: 0, record, files, lookups }
        }

        /// The whole text as one expression, with its type.
        pub(super) fn whole(mut self) -> Result<(Expr, Kind), String> {
            let expr = self.expr()?;
            self.space();
            if self.at < self.text.len() {
                return Err(format!("uventet '{}' efter udtrykket", &self.text[self.at..]));
            }
            Ok(expr)
        }

        fn space(&mut self) {
            while self.text[self.at..].starts_with(char::is_whitespace) {
                self.at += self.text[self.at..].chars().next().map_or(1, char::len_utf8);
            }
        }

        fn eat(&mut self, c: char) -> bool {
            self.space();
            if self.text[self.at..].starts_with(c) {
                self.at += c.len_utf8();
                true
            } else {
                false
            }
        }

        fn expr(&mut self) -> Result<(Expr, Kind), String> {
            self.space();
            let rest = &self.text[self.at..];
            if rest.starts_with('\'') {
                return Ok((Expr::Text(self.string()?), Kind::Text));
            }
            let word: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.' | '+')).collect();
            if word.is_empty() {
                return Err(match rest.chars().next() {
                    Some(c) => format!("uventet '{c}': her skal stå et felt, en konstant i 'enkelte anførselstegn' eller en funktion"),
                    None => "udtrykket mangler".into(),
                });
            }
            self.at += word.len();
            if word.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') {
                return word.parse().map(|n| (Expr::Integer(n), Kind::Integer)).map_err(|_| format!("'{word}' er ikke et helt tal"));
            }
            if !self.eat('(') {
                let (field, kind) = field(self.record, &word)?;
                return Ok((Expr::Field(field), kind));
            }
            self.call(&word)
        }

        fn string(&mut self) -> Result<String, String> {
            // 'it''s': a quote inside is written twice.
            let mut out = String::new();
            let mut chars = self.text[self.at + 1..].char_indices();
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if self.text[self.at + 1 + i + 1..].starts_with('\'') {
                        out.push('\'');
                        chars.next();
                        continue;
                    }
                    self.at += 1 + i + 1;
                    return Ok(out);
                }
                out.push(c);
            }
            Err("en tekst i anførselstegn slutter ikke".into())
        }

        fn arguments(&mut self, name: &str) -> Result<Vec<(Expr, Kind)>, String> {
            let mut args = Vec::new();
            if self.eat(')') {
                return Ok(args);
            }
            loop {
                args.push(self.expr()?);
                if self.eat(')') {
                    return Ok(args);
                }
                if !self.eat(',') {
                    return Err(format!("{name}(...) mangler ',' eller ')'"));
                }
            }
        }

        fn call(&mut self, name: &str) -> Result<(Expr, Kind), String> {
            let args = self.arguments(name)?;
            let count = |n: usize| {
                if args.len() == n {
                    Ok(())
                } else {
                    Err(format!("{name}(...) tager {n} argument{}, ikke {}", if n == 1 { "" } else { "er" }, args.len()))
                }
            };
            let want = |(expr, kind): &(Expr, Kind), wanted: Kind| {
                if let Expr::Field(Field::Key(_)) = expr {
                    return Err(format!(
                        "{name}(...) kan ikke tage et id, der først gives, når rækken skrives; brug det som hele kolonnens værdi"
                    ));
                }
                if *kind == wanted {
                    Ok(expr.clone())
                } else {
                    Err(format!("{name}(...) skal have {} som argument, ikke {}", wanted.as_str(), kind.as_str()))
                }
            };
            let constant = |arg: &(Expr, Kind), what: &str| match &arg.0 {
                Expr::Text(text) => Ok(text.clone()),
                _ => Err(format!("{name}(...): {what} skal være en tekst i 'enkelte anførselstegn'")),
            };
            Ok(match name {
                "oere" => {
                    count(1)?;
                    (Expr::Oere(Box::new(want(&args[0], Kind::Decimal)?)), Kind::Integer)
                }
                "signed" => {
                    count(1)?;
                    if self.record != Record::Postering {
                        return Err("signed(...) findes kun for en postering: den har debet/kredit".into());
                    }
                    (Expr::Signed(Box::new(want(&args[0], Kind::Decimal)?)), Kind::Decimal)
                }
                "text" => {
                    count(2)?;
                    let separator = constant(&args[1], "decimaltegnet")?;
                    if separator.chars().count() != 1 {
                        return Err("text(beløb, 'tegn'): decimaltegnet skal være ét tegn, f.eks. ',' eller '.'".into());
                    }
                    (Expr::AmountText(Box::new(want(&args[0], Kind::Decimal)?), separator), Kind::Text)
                }
                "date" => {
                    count(2)?;
                    let format = constant(&args[1], "formatet")?;
                    if format.is_empty() || StrftimeItems::new(&format).any(|item| matches!(item, Item::Error)) {
                        return Err(format!(
                            "date(dato, '{format}'): formatet kan ikke bruges; skriv det med %Y, %m, %d, f.eks. '%d-%m-%Y'"
                        ));
                    }
                    (Expr::DateText(Box::new(want(&args[0], Kind::Date)?), format), Kind::Text)
                }
                "upper" => {
                    count(1)?;
                    (Expr::Upper(Box::new(want(&args[0], Kind::Text)?)), Kind::Text)
                }
                "concat" => {
                    if args.len() < 2 {
                        return Err("concat(...) skal have mindst to argumenter".into());
                    }
                    let mut parts = Vec::new();
                    for arg in &args {
                        if let Expr::Field(Field::Key(_)) = arg.0 {
                            return Err(
                                "concat(...) kan ikke tage et id, der først gives, når rækken skrives; brug det som hele kolonnens værdi"
                                    .into(),
                            );
                        }
                        parts.push(arg.0.clone());
                    }
                    (Expr::Concat(parts), Kind::Text)
                }
                "lookup" => {
                    count(2)?;
                    let file = constant(&args[0], "opslagstabellen")?;
                    let table = self.lookup_table(&file)?;
                    (Expr::Lookup { file, table, key: Box::new(want(&args[1], Kind::Text)?) }, Kind::Text)
                }
                other => {
                    return Err(format!(
                        "ukendt funktion '{other}(...)'; funktionerne er oere, signed, text, date, upper, concat og lookup"
                    ))
                }
            })
        }

        /// A lookup table of the mapping set: a CSV file with a header and two columns, from and to.
        fn lookup_table(&mut self, file: &str) -> Result<Arc<HashMap<String, String>>, String> {
            if let Some(table) = self.lookups.get(file) {
                return Ok(table.clone());
            }
            let Some(content) = self.files.get(file) else {
                return Err(format!("opslagstabellen {file} findes ikke i mapningsmappen"));
            };
            // The mapping files' own form: ';' between cells, a header first, '#' for comments.
            let mut errors = Vec::new();
            let read = super::super::mapping::read_rows(file, content, &mut errors);
            if let Some(error) = errors.first() {
                return Err(format!("opslagstabellen {error}"));
            }
            let mut rows = HashMap::new();
            for row in read {
                let [(_, from), (_, to), ..] = row.cells.as_slice() else {
                    return Err(format!("opslagstabellen {file}:{}: en række skal have to kolonner, fra og til", row.line));
                };
                if rows.insert(from.clone(), to.clone()).is_some() {
                    return Err(format!("opslagstabellen {file}:{}: '{from}' står der to gange", row.line));
                }
            }
            let table = Arc::new(rows);
            self.lookups.insert(file.to_string(), table.clone());
            Ok(table)
        }
    }
}

/// A profile as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[serde(default)]
    target: Vec<toml::Spanned<TargetFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    record: toml::Spanned<String>,
    /// A table in the adapter's own database...
    table: Option<toml::Spanned<String>>,
    /// ...or, with `database`, a table in a database the ERP owns (named under `[targets.databases]`)...
    database: Option<toml::Spanned<String>>,
    /// ...or files in a folder the ERP imports from.
    file: Option<toml::Spanned<FileSpecFile>>,
    columns: BTreeMap<toml::Spanned<String>, toml::Spanned<String>>,
    /// Fixed-width files: each column's width in characters.
    #[serde(default)]
    widths: BTreeMap<toml::Spanned<String>, toml::Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpecFile {
    /// A folder's name under `[targets.folders]` in fkoeko.toml: where the files go is the installation's.
    folder: String,
    name: String,
    #[serde(default = "csv")]
    format: String,
    #[serde(default = "semicolon")]
    separator: String,
    #[serde(default = "yes")]
    header: bool,
    #[serde(default = "per_delivery")]
    per: String,
}

fn csv() -> String {
    "csv".into()
}

fn semicolon() -> String {
    ";".into()
}

fn yes() -> bool {
    true
}

fn per_delivery() -> String {
    "delivery".into()
}

/// How a file target's rows are laid out.
#[derive(Debug, Clone, PartialEq)]
pub enum FileFormat {
    /// Separated values, quoted where a value holds the separator, a quote or a line break.
    Csv { separator: u8, header: bool },
    /// Each column padded to its width: text to the left, numbers to the right.
    Fixed { widths: Vec<u32> },
}

/// Which rows share a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilePer {
    /// One file per delivery (a straks call, or a batch file once all of it is decided).
    Delivery,
    /// One file per round of the file writer: everything waiting.
    Run,
}

impl FilePer {
    pub fn as_str(self) -> &'static str {
        match self {
            FilePer::Delivery => "delivery",
            FilePer::Run => "run",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [FilePer::Delivery, FilePer::Run].into_iter().find(|p| p.as_str() == text)
    }
}

/// A file target: where its files go and how a row is written.
#[derive(Debug, Clone, PartialEq)]
pub struct FileTarget {
    /// `file:<folder>/<name>`: what its rows are kept under until they are written.
    pub id: String,
    pub folder: String,
    pub name: String,
    pub format: FileFormat,
    pub per: FilePer,
    pub columns: Vec<String>,
    /// Which columns are numbers, right-aligned in a fixed-width file.
    numeric: Vec<bool>,
}

impl FileTarget {
    /// The file's extension.
    pub fn extension(&self) -> &'static str {
        match self.format {
            FileFormat::Csv { .. } => "csv",
            FileFormat::Fixed { .. } => "txt",
        }
    }

    /// The header line, when the format has one.
    pub fn header(&self) -> Option<String> {
        match &self.format {
            FileFormat::Csv { separator, header: true } => Some(csv_line(*separator, self.columns.iter().map(String::as_str))),
            _ => None,
        }
    }

    /// One row as a line, without its line break; its keys filled in.
    pub fn line(&self, values: Vec<Value>) -> String {
        let texts: Vec<String> = values.into_iter().map(|v| v.into_text().unwrap_or_default()).collect();
        match &self.format {
            FileFormat::Csv { separator, .. } => csv_line(*separator, texts.iter().map(String::as_str)),
            FileFormat::Fixed { widths } => {
                let mut line = String::new();
                for ((text, width), numeric) in texts.iter().zip(widths).zip(&self.numeric) {
                    let width = *width as usize;
                    // Fitted when rendered (a value wider than its column is MAPNING_MANGLER); keys are ten digits
                    // at most and the width was checked to hold them.
                    if *numeric {
                        line.push_str(&format!("{text:>width$}"));
                    } else {
                        line.push_str(&format!("{text:<width$}"));
                    }
                }
                line
            }
        }
    }
}

/// A row of a file target as the outbox keeps it: everything the file writer needs, so that a row is written
/// as it was rendered whatever profile is in force by then.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct FileLine {
    pub line: String,
    /// The file's header line, when it has one: rows with another header (the profile changed) get a file of
    /// their own.
    pub header: Option<String>,
    pub per: String,
    pub extension: String,
}

impl FileLine {
    pub fn of(file: &FileTarget, values: Vec<Value>) -> Self {
        FileLine { line: file.line(values), header: file.header(), per: file.per.as_str().into(), extension: file.extension().into() }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings serialize")
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

fn csv_line<'a>(separator: u8, cells: impl Iterator<Item = &'a str>) -> String {
    let mut writer = csv::WriterBuilder::new().delimiter(separator).terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    writer.write_record(cells).expect("writing to memory");
    let mut bytes = writer.into_inner().expect("writing to memory");
    bytes.pop();
    String::from_utf8(bytes).expect("cells are UTF-8")
}

/// Where a target's rows go.
#[derive(Debug, Clone)]
enum Destination {
    Table(String),
    Database { database: String, table: String },
    File(FileSpec),
}

/// `database:<name>/<table>`: a database target's rows are kept under this until they are copied.
pub fn database_target_id(database: &str, table: &str) -> String {
    format!("database:{database}/{table}")
}

#[derive(Debug, Clone)]
struct FileSpec {
    folder: String,
    name: String,
    format: FileFormat,
    per: FilePer,
}

/// One column of a target as read: its name, its expression and where it is.
#[derive(Debug, Clone)]
struct ColumnSpec {
    name: String,
    line: u64,
    expr: Expr,
    kind: Kind,
}

/// One target of a profile, read but not yet bound to the table's columns.
#[derive(Debug, Clone)]
struct TargetSpec {
    record: Record,
    destination: Destination,
    line: u64,
    columns: Vec<ColumnSpec>,
}

/// A profile read and checked on its own.
#[derive(Debug, Clone)]
pub struct Profile {
    targets: Vec<TargetSpec>,
}

/// A table or column name: letters, digits and underscores, not starting with a digit. Nothing else is ever
/// put into SQL.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// "table" or "schema.table".
fn is_table_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((schema, table)) => is_identifier(schema) && is_identifier(table),
        None => is_identifier(name),
    }
}

/// The line (from 1) of a byte offset, by the offsets where lines start: a profile's every key is placed
/// without reading the file from its start each time.
struct Lines(Vec<usize>);

impl Lines {
    fn of(content: &str) -> Self {
        Lines(std::iter::once(0).chain(content.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    fn at(&self, offset: usize) -> u64 {
        self.0.partition_point(|&start| start <= offset) as u64
    }
}

/// The most a profile may hold: enough for any import layout, and a bound on the work of checking it and of
/// rendering every item by it.
const MAX_PROFILE_BYTES: usize = 256 * 1024;
const MAX_TARGETS: usize = 50;
const MAX_COLUMNS: usize = 200;

impl Profile {
    /// Reads a profile; every error in it, each at its line. `files` are the mapping set's other files (lookup
    /// tables).
    pub fn parse(content: &str, files: &MappingFiles) -> Result<Profile, Vec<MappingError>> {
        let error = |line: u64, message: String| MappingError::Invalid { file: PROFILE_FILE.into(), line, message };
        if content.len() > MAX_PROFILE_BYTES {
            return Err(vec![error(0, format!("profilen er {} KB; højst {} KB", content.len() / 1024, MAX_PROFILE_BYTES / 1024))]);
        }
        let lines = Lines::of(content);
        let parsed: ProfileFile = toml::from_str(content).map_err(|e| {
            let line = e.span().map_or(0, |span| lines.at(span.start));
            vec![error(line, e.message().to_string())]
        })?;
        let mut errors = Vec::new();
        let mut targets = Vec::new();
        let mut lookups = HashMap::new();
        if parsed.target.len() > MAX_TARGETS {
            return Err(vec![error(0, format!("profilen har {} mål; højst {MAX_TARGETS}", parsed.target.len()))]);
        }
        for target in parsed.target {
            let line = lines.at(target.span().start);
            let target = target.into_inner();
            let record_line = lines.at(target.record.span().start);
            let Some(record) = Record::ALL.into_iter().find(|r| r.as_str() == target.record.get_ref()) else {
                errors.push(error(
                    record_line,
                    format!("ukendt record '{}'; det kan være finansbilag, postering, fordring eller haefter", target.record.get_ref()),
                ));
                continue;
            };
            let destination = match (&target.table, &target.file) {
                (Some(_), None) if target.database.as_ref().is_some_and(|d| !is_identifier(d.get_ref())) => {
                    let database = target.database.as_ref().expect("checked");
                    errors.push(error(
                        lines.at(database.span().start),
                        format!("'{}' er ikke et navn fra [targets.databases]: bogstaver, tal og _", database.get_ref()),
                    ));
                    continue;
                }
                (Some(table), None) => {
                    if !is_table_name(table.get_ref()) {
                        errors.push(error(
                            lines.at(table.span().start),
                            format!("'{}' er ikke et tabelnavn: bogstaver, tal og _, evt. med skema foran (skema.tabel)", table.get_ref()),
                        ));
                    }
                    if let Some((name, _)) = target.widths.first_key_value() {
                        errors.push(error(lines.at(name.span().start), "widths hører kun til filer med format = \"fixed\"".into()));
                    }
                    match &target.database {
                        Some(database) => Destination::Database { database: database.get_ref().clone(), table: table.get_ref().clone() },
                        None => Destination::Table(table.get_ref().clone()),
                    }
                }
                (None, Some(file)) if target.database.is_none() => match file_spec(file.get_ref(), &target.columns, &target.widths) {
                    Ok(spec) => Destination::File(spec),
                    Err((at, message)) => {
                        let at = at.map_or(lines.at(file.span().start), |offset| lines.at(offset));
                        errors.push(error(at, message));
                        continue;
                    }
                },
                _ => {
                    errors.push(error(line, "et mål har enten table = \"...\" eller file = { ... }, ikke begge eller ingen".into()));
                    continue;
                }
            };
            if target.columns.len() > MAX_COLUMNS {
                errors.push(error(line, format!("målet har {} kolonner; højst {MAX_COLUMNS}", target.columns.len())));
                continue;
            }
            if target.columns.is_empty() {
                errors.push(error(line, "målet har ingen kolonner".into()));
            }
            let mut columns = Vec::new();
            for (name, expression) in &target.columns {
                let line = lines.at(name.span().start);
                if !is_identifier(name.get_ref()) {
                    errors.push(error(line, format!("'{}' er ikke et kolonnenavn: bogstaver, tal og _", name.get_ref())));
                    continue;
                }
                match parse::Parser::new(expression.get_ref(), record, files, &mut lookups).whole() {
                    Ok((expr, kind)) => columns.push(ColumnSpec { name: name.get_ref().clone(), line, expr, kind }),
                    Err(message) => errors.push(error(line, format!("kolonnen {}: {message}", name.get_ref()))),
                }
            }
            columns.sort_by_key(|c| c.line);
            targets.push(TargetSpec { record, destination, line, columns });
        }
        if errors.is_empty() {
            Ok(Profile { targets })
        } else {
            Err(errors)
        }
    }

    /// Where the profile writes, as it names each place: a table, `database:<name>/<table>`,
    /// `file:<folder>/<name>`.
    pub fn destinations(&self) -> Vec<String> {
        self.targets
            .iter()
            .map(|t| match &t.destination {
                Destination::Table(table) => table.clone(),
                Destination::Database { database, table } => database_target_id(database, table),
                Destination::File(spec) => format!("file:{}/{}", spec.folder, spec.name),
            })
            .collect()
    }

    /// The tables the profile writes to, as written in it.
    pub fn tables(&self) -> Vec<&str> {
        let mut tables: Vec<&str> = self
            .targets
            .iter()
            .filter_map(|t| match &t.destination {
                Destination::Table(table) => Some(table.as_str()),
                Destination::Database { .. } | Destination::File(_) => None,
            })
            .collect();
        tables.sort_unstable();
        tables.dedup();
        tables
    }

    /// The tables in databases the ERP owns, by database name.
    pub fn database_tables(&self) -> Vec<(&str, &str)> {
        let mut tables: Vec<(&str, &str)> = self
            .targets
            .iter()
            .filter_map(|t| match &t.destination {
                Destination::Database { database, table } => Some((database.as_str(), table.as_str())),
                _ => None,
            })
            .collect();
        tables.sort_unstable();
        tables.dedup();
        tables
    }

    /// Binds the profile to the target tables' real columns (`columns`: by table as written in the profile;
    /// absent when the table does not exist), or every way it does not fit them, each at its line.
    pub fn bind(&self, places: &Places) -> Result<Targets, Vec<MappingError>> {
        let (columns, folders) = (places.tables, places.folders);
        let error = |line: u64, message: String| MappingError::Invalid { file: PROFILE_FILE.into(), line, message };
        let mut errors = Vec::new();
        let mut bound = Vec::new();
        for target in &self.targets {
            let (sink, table, shown) = match &target.destination {
                Destination::Table(name) => {
                    let Some(table) = columns.get(name) else {
                        errors.push(error(target.line, format!("tabellen {name} findes ikke i databasen")));
                        continue;
                    };
                    (None, table.clone(), name.clone())
                }
                Destination::Database { database, table: name } => {
                    if !places.databases.contains(database) {
                        errors.push(error(
                            target.line,
                            format!("databasen '{database}' er ikke sat op under [targets.databases] i fkoeko.toml"),
                        ));
                        continue;
                    }
                    let Some(table) = places.remote.get(&database_target_id(database, name)) else {
                        let message = match places.unreachable.get(database) {
                            Some(why) => format!("databasen '{database}' kan ikke nås, og tabellen {name}s kolonner er aldrig læst: {why}"),
                            None => format!("tabellen {name} findes ikke i databasen '{database}'"),
                        };
                        errors.push(error(target.line, message));
                        continue;
                    };
                    (Some(Remote::Database(database)), table.clone(), format!("{database}/{name}"))
                }
                Destination::File(spec) => {
                    if !folders.contains(&spec.folder) {
                        errors.push(error(
                            target.line,
                            format!("mappen '{}' er ikke sat op under [targets.folders] i fkoeko.toml", spec.folder),
                        ));
                        continue;
                    }
                    // A file's columns hold any text; a fixed-width one's no more than its width.
                    let widths = match &spec.format {
                        FileFormat::Fixed { widths } => widths.iter().map(|w| Some(*w)).collect(),
                        FileFormat::Csv { .. } => vec![None; target.columns.len()],
                    };
                    let columns = target
                        .columns
                        .iter()
                        .zip(widths)
                        .map(|(c, width)| Column {
                            name: c.name.clone(),
                            ty: ColumnType::Text(width),
                            not_null: false,
                            has_default: false,
                            // A line break or tab would break a fixed-width file's layout; CSV quotes them.
                            single_line: width.is_some(),
                        })
                        .collect();
                    let shown = format!("{}/{}", spec.folder, spec.name);
                    (Some(Remote::File(spec)), TableColumns { name: shown.clone(), columns }, shown)
                }
            };
            if sink.is_none() && is_reserved(&shown, places.reserved) {
                errors.push(error(
                    target.line,
                    format!("{shown} er en af adapterens egne tabeller; målprofilen skriver kun i ERP-systemets importtabeller"),
                ));
                continue;
            }
            let mut cols: Vec<(Column, Expr)> = Vec::new();
            for spec in &target.columns {
                let Some(column) = table.columns.iter().find(|c| c.name.eq_ignore_ascii_case(&spec.name)) else {
                    errors.push(error(spec.line, format!("tabellen {shown} har ingen kolonne {}", spec.name)));
                    continue;
                };
                if cols.iter().any(|(c, _)| c.name == column.name) {
                    errors.push(error(
                        spec.line,
                        format!("kolonnen {shown}.{} er nævnt to gange (store og små bogstaver er det samme)", column.name),
                    ));
                    continue;
                }
                if let Err(message) = column.accepts(&spec.expr, spec.kind) {
                    errors.push(error(spec.line, format!("kolonnen {shown}.{} ({}): {message}", spec.name, column.ty.describe())));
                    continue;
                }
                cols.push((column.clone(), spec.expr.clone()));
            }
            for column in &table.columns {
                let filled = target.columns.iter().any(|s| s.name.eq_ignore_ascii_case(&column.name));
                if column.not_null && !column.has_default && !filled {
                    errors.push(error(
                        target.line,
                        format!(
                            "kolonnen {shown}.{} må ikke være tom og har ingen standardværdi, men profilen fylder den ikke",
                            column.name
                        ),
                    ));
                }
            }
            let names: Vec<String> = cols.iter().map(|(c, _)| c.name.clone()).collect();
            let sink = match sink {
                None => Sink::Table(Arc::new(TargetTable { name: table.name.clone(), shown, columns: names })),
                Some(Remote::Database(database)) => {
                    let Destination::Database { table: name, .. } = &target.destination else { unreachable!("a database target") };
                    Sink::Database(Arc::new(DatabaseTarget {
                        id: database_target_id(database, name),
                        table: TargetTable { name: table.name.clone(), shown, columns: names },
                    }))
                }
                Some(Remote::File(spec)) => Sink::File(Arc::new(FileTarget {
                    id: format!("file:{}/{}", spec.folder, spec.name),
                    folder: spec.folder.clone(),
                    name: spec.name.clone(),
                    format: spec.format.clone(),
                    per: spec.per,
                    numeric: target.columns.iter().map(|c| matches!(c.kind, Kind::Integer | Kind::Decimal)).collect(),
                    columns: names,
                })),
            };
            bound.push(BoundTarget { record: target.record, sink, columns: cols });
        }
        if errors.is_empty() {
            Ok(Targets { targets: bound })
        } else {
            Err(errors)
        }
    }
}

/// Where a target that is not a table of the adapter's own database sends its rows.
enum Remote<'a> {
    Database(&'a str),
    File(&'a FileSpec),
}

/// What a profile is bound to: the tables in the adapter's database and in the ERP's, by the names the profile
/// gives them (`database:<name>/<table>` for the ERP's: `database_target_id`); the folders and databases the
/// configuration names.
pub struct Places<'a> {
    /// The adapter's own tables, which no profile writes to.
    pub reserved: &'a [&'a str],
    pub tables: &'a HashMap<String, TableColumns>,
    pub remote: &'a HashMap<String, TableColumns>,
    pub folders: &'a [String],
    pub databases: &'a [String],
    /// The databases that could not be reached, and why, when their columns were never read.
    pub unreachable: &'a HashMap<String, String>,
}

/// One of the adapter's own tables (in its own schema), or the database's catalogue.
fn is_reserved(name: &str, reserved: &[&str]) -> bool {
    let (schema, table) = name.rsplit_once('.').map_or((None, name), |(schema, table)| (Some(schema.to_ascii_lowercase()), table));
    let own_schema = schema.as_deref().is_none_or(|s| s == "public" || s == "main");
    let catalogue = schema.as_deref().is_some_and(|s| s == "pg_catalog" || s == "information_schema" || s.starts_with("pg_"))
        || table.to_ascii_lowercase().starts_with("sqlite_");
    catalogue || (own_schema && reserved.iter().any(|own| own.eq_ignore_ascii_case(table)))
}

/// A file target as written in a profile, checked: its folder's name, its own, format and widths.
type SpecError = (Option<usize>, String);

fn file_spec(
    file: &FileSpecFile,
    columns: &BTreeMap<toml::Spanned<String>, toml::Spanned<String>>,
    widths: &BTreeMap<toml::Spanned<String>, toml::Spanned<u32>>,
) -> Result<FileSpec, SpecError> {
    if !is_identifier(&file.folder) {
        return Err((None, format!("'{}' er ikke et mappenavn fra [targets.folders]: bogstaver, tal og _", file.folder)));
    }
    if file.name.is_empty() || !file.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
        return Err((None, format!("'{}' kan ikke være et filnavn: bogstaver, tal, - og _", file.name)));
    }
    let per = FilePer::parse(&file.per).ok_or_else(|| (None, format!("per = '{}': det kan være delivery eller run", file.per)))?;
    let format = match file.format.as_str() {
        "csv" => {
            let separator = match file.separator.as_bytes() {
                [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => *b,
                _ => {
                    return Err((
                        None,
                        format!(
                            "separator = '{}': ét ASCII-tegn, dog ikke anførselstegn eller linjeskift; f.eks. ';' eller ','",
                            file.separator
                        ),
                    ))
                }
            };
            if let Some((name, _)) = widths.first_key_value() {
                return Err((Some(name.span().start), "widths hører kun til filer med format = \"fixed\"".into()));
            }
            FileFormat::Csv { separator, header: file.header }
        }
        "fixed" => {
            for name in widths.keys() {
                if !columns.keys().any(|c| c.get_ref() == name.get_ref()) {
                    return Err((Some(name.span().start), format!("widths nævner {}, som ikke er en kolonne", name.get_ref())));
                }
            }
            let mut ordered: Vec<(&toml::Spanned<String>, u32)> = Vec::new();
            for name in columns.keys() {
                match widths.iter().find(|(w, _)| w.get_ref() == name.get_ref()) {
                    Some((_, width)) if *width.get_ref() > 0 => ordered.push((name, *width.get_ref())),
                    Some((w, _)) => return Err((Some(w.span().start), format!("bredden af {} skal være mindst 1", name.get_ref()))),
                    None => return Err((Some(name.span().start), format!("kolonnen {} har ingen bredde under widths", name.get_ref()))),
                }
            }
            // In the order the columns are written in the file.
            ordered.sort_by_key(|(name, _)| name.span().start);
            FileFormat::Fixed { widths: ordered.into_iter().map(|(_, w)| w).collect() }
        }
        other => return Err((None, format!("format = '{other}': det kan være csv eller fixed"))),
    };
    Ok(FileSpec { folder: file.folder.clone(), name: file.name.clone(), format, per })
}

/// What a target table's column holds, as its database declares it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub enum ColumnType {
    /// Text of at most this many characters, or any length.
    Text(Option<u32>),
    /// A whole number in this range.
    Integer(i64, i64),
    /// An exact number with at most this many digits in all, and after the point (PostgreSQL's numeric).
    Numeric(Option<u32>, Option<u32>),
    Date,
    Timestamp,
    /// A type no expression writes: a SQLite NUMERIC (kept as a floating-point number), a float, a blob.
    Other(String),
}

impl ColumnType {
    fn describe(&self) -> String {
        match self {
            ColumnType::Text(Some(n)) => format!("tekst, højst {n} tegn"),
            ColumnType::Text(None) => "tekst".into(),
            ColumnType::Integer(..) => "heltal".into(),
            ColumnType::Numeric(Some(p), Some(s)) => format!("numeric({p},{s})"),
            ColumnType::Numeric(..) => "numeric".into(),
            ColumnType::Date => "dato".into(),
            ColumnType::Timestamp => "tidsstempel".into(),
            ColumnType::Other(name) => name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Column {
    /// As the database spells it.
    pub name: String,
    pub ty: ColumnType,
    pub not_null: bool,
    pub has_default: bool,
    /// A value with a line break or a tab does not fit (a column of a fixed-width file).
    #[serde(default)]
    pub single_line: bool,
}

/// A target table as the database has it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct TableColumns {
    /// As the database spells it, with its schema where one was named.
    pub name: String,
    pub columns: Vec<Column>,
}

impl Column {
    /// Whether the column can hold what the expression gives.
    fn accepts(&self, expr: &Expr, kind: Kind) -> Result<(), String> {
        if let Expr::Field(Field::Key(key)) = expr {
            return match self.ty {
                ColumnType::Integer(_, max) if *key != Key::Reference && max >= i64::from(i32::MAX) => Ok(()),
                ColumnType::Text(None) => Ok(()),
                ColumnType::Text(Some(n)) if n as usize >= key.max_chars() => Ok(()),
                _ if *key == Key::Reference => Err(format!("kan ikke rumme en ErpReference (tekst op til {} tegn)", key.max_chars())),
                _ => Err(format!("kan ikke rumme et id (et heltal op til {} cifre)", key.max_chars())),
            };
        }
        let fits = matches!(
            (&self.ty, kind),
            (ColumnType::Text(_), _)
                | (ColumnType::Integer(..), Kind::Integer)
                | (ColumnType::Numeric(..), Kind::Integer | Kind::Decimal)
                | (ColumnType::Date | ColumnType::Timestamp, Kind::Date)
        );
        if !fits {
            let hint = match (&self.ty, kind) {
                (ColumnType::Integer(..), Kind::Decimal) => " (et beløb i hele øre: oere(...))",
                (ColumnType::Other(_), Kind::Decimal) => {
                    " (i en SQLite-database: oere(...) i en INTEGER-kolonne eller text(...) i en tekstkolonne)"
                }
                (ColumnType::Integer(..) | ColumnType::Numeric(..), Kind::Text) => " (skriv tallet uden anførselstegn)",
                _ => "",
            };
            return Err(format!("kan ikke rumme {}{hint}", kind.as_str()));
        }
        // What is never short enough is known now, not at the first delivery: a constant, a code of fixed
        // length, a formatted date. A sender's free text is checked value by value (MAPNING_MANGLER).
        if let ColumnType::Text(Some(n)) = &self.ty {
            let least = expr.min_chars();
            if least > *n as usize {
                return Err(format!("værdien er altid mindst {least} tegn, men kolonnen rummer højst {n}"));
            }
        }
        Ok(())
    }

    /// The value as the column will hold it, or why it does not fit: never cut or rounded.
    fn fit(&self, value: Value) -> Result<Value, String> {
        let value = match (&self.ty, value) {
            (_, Value::Null) if self.not_null => return Err("feltet er tomt, men kolonnen må ikke være tom".into()),
            (_, value @ (Value::Null | Value::Key(_))) => return Ok(value),
            (ColumnType::Text(max), value) => {
                let text = value.into_text().expect("a value that is not null or a key has a text");
                if self.single_line && text.contains(['\n', '\r', '\t']) {
                    return Err("værdien har et linjeskift eller en tabulator, som en fil med faste bredder ikke kan rumme".into());
                }
                let chars = text.chars().count();
                if max.is_some_and(|max| chars > max as usize) {
                    return Err(format!("værdien er {chars} tegn, men kolonnen rummer højst {}", max.expect("checked")));
                }
                Value::Text(text)
            }
            (ColumnType::Integer(min, max), Value::Integer(n)) => {
                if n < *min || n > *max {
                    return Err(format!("{n} ligger uden for kolonnens område ({min} til {max})"));
                }
                Value::Integer(n)
            }
            (ColumnType::Numeric(precision, scale), value) => {
                let d = match value {
                    Value::Integer(n) => Decimal::from(n),
                    Value::Decimal(d) => d,
                    other => unreachable!("checked when bound: {other:?} into a numeric column"),
                };
                let shown = d;
                let d = d.normalize();
                if scale.is_some_and(|s| d.scale() > s) {
                    return Err(format!("{shown} har flere decimaler end kolonnens {}", scale.expect("checked")));
                }
                let whole_digits = d.trunc().abs().to_string().trim_start_matches('0').len() as u32;
                if let Some(p) = precision {
                    if whole_digits > p - scale.unwrap_or(0) {
                        return Err(format!("{d} har flere cifre, end kolonnen rummer"));
                    }
                }
                Value::Decimal(d)
            }
            (ColumnType::Date | ColumnType::Timestamp, value @ Value::Date(_)) => value,
            (ty, value) => unreachable!("checked when bound: {value:?} into {ty:?}"),
        };
        Ok(value)
    }
}

/// A target table rows are written to: its name and the columns each row fills, in order.
#[derive(Debug, PartialEq)]
pub struct TargetTable {
    /// As the database spells it.
    pub name: String,
    /// As the profile wrote it, for messages.
    pub shown: String,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone)]
struct BoundTarget {
    record: Record,
    sink: Sink,
    columns: Vec<(Column, Expr)>,
}

/// Where a rendered row goes: a table in the booking transaction, or by way of the outbox a file or a table in
/// a database the ERP owns.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    Table(Arc<TargetTable>),
    Database(Arc<DatabaseTarget>),
    File(Arc<FileTarget>),
}

/// A table in a database the ERP owns.
#[derive(Debug, PartialEq)]
pub struct DatabaseTarget {
    /// `database:<name>/<table>`.
    pub id: String,
    /// The table as that database spells it.
    pub table: TargetTable,
}

/// A row for a database target as the outbox keeps it: the table, its columns and the values, typed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct DatabaseRow {
    pub table: String,
    pub columns: Vec<String>,
    pub values: Vec<WireValue>,
}

/// A value as the outbox keeps it: an amount as its exact text, never a float.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum WireValue {
    Null,
    Text(String),
    Decimal(String),
    Integer(i64),
    Date(NaiveDate),
}

impl DatabaseRow {
    pub fn of(target: &DatabaseTarget, values: Vec<Value>) -> Self {
        let values = values
            .into_iter()
            .map(|value| match value {
                Value::Null | Value::Key(_) => WireValue::Null,
                Value::Text(text) => WireValue::Text(text),
                Value::Decimal(d) => WireValue::Decimal(d.to_string()),
                Value::Integer(n) => WireValue::Integer(n),
                Value::Date(date) => WireValue::Date(date),
            })
            .collect();
        DatabaseRow { table: target.table.name.clone(), columns: target.table.columns.clone(), values }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("values serialize")
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The values to bind, with the table they go into.
    pub fn values(&self) -> Result<Vec<Value>, String> {
        self.values
            .iter()
            .map(|value| {
                Ok(match value {
                    WireValue::Null => Value::Null,
                    WireValue::Text(text) => Value::Text(text.clone()),
                    WireValue::Decimal(d) => Value::Decimal(Decimal::from_str_exact(d).map_err(|e| format!("{d}: {e}"))?),
                    WireValue::Integer(n) => Value::Integer(*n),
                    WireValue::Date(date) => Value::Date(*date),
                })
            })
            .collect()
    }
}

impl Sink {
    /// As the profile names it: a table, or file:<folder>/<name>.
    pub fn name(&self) -> String {
        match self {
            Sink::Table(table) => table.shown.clone(),
            Sink::Database(target) => target.id.clone(),
            Sink::File(file) => file.id.clone(),
        }
    }

    /// The columns a row fills, in order.
    pub fn columns(&self) -> &[String] {
        match self {
            Sink::Table(table) => &table.columns,
            Sink::Database(target) => &target.table.columns,
            Sink::File(file) => &file.columns,
        }
    }

    /// As the profile names it, for messages.
    fn shown(&self) -> String {
        match self {
            Sink::Table(table) => table.shown.clone(),
            Sink::Database(target) => target.table.shown.clone(),
            Sink::File(file) => format!("{}/{}", file.folder, file.name),
        }
    }
}

/// A profile bound to the target tables: what renders an accepted item's rows.
#[derive(Debug, Clone)]
pub struct Targets {
    targets: Vec<BoundTarget>,
}

/// One row for a target table: a value per column, in the table's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRow {
    pub sink: Sink,
    pub values: Vec<Value>,
}

impl TargetRow {
    /// The values as text, for showing on the page: a value of ten digits (a CPR number, from whatever field or
    /// function) masked as everywhere a person reads.
    pub fn shown_values(&self) -> Vec<Shown> {
        self.values
            .iter()
            .map(|v| match v {
                Value::Key(_) => Shown::Key,
                Value::Null => Shown::Empty,
                Value::Text(text) if text.len() == 10 && text.bytes().all(|b| b.is_ascii_digit()) => {
                    Shown::Text(super::values::mask_cpr(text))
                }
                other => Shown::Text(other.clone().into_text().expect("a value that is not null or a key has a text")),
            })
            .collect()
    }

    /// The row with its keys filled in, once the item's and delivery's rows have them.
    pub fn with_keys(&self, item: i32, reference: &str, delivery: i32) -> Vec<Value> {
        self.values
            .iter()
            .map(|value| match value {
                Value::Key(Key::Item) => Value::Integer(item.into()),
                Value::Key(Key::Delivery) => Value::Integer(delivery.into()),
                Value::Key(Key::Reference) => Value::Text(reference.to_string()),
                other => other.clone(),
            })
            .collect()
    }
}

/// A rendered value as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    Text(String),
    Empty,
    /// Given only when the item is booked.
    Key,
}

/// What every record of an item shares: its delivery and sender.
pub struct ItemInfo<'a> {
    pub sender: String,
    pub delivery_id: Option<uuid::Uuid>,
    pub mapping_version: &'a str,
}

/// The record a row is rendered from.
enum View<'a> {
    Bilag { bilag: &'a Finansbilag },
    Posting { bilag: &'a Finansbilag, posting: &'a Postering, mapped: &'a Mapped, line_no: usize },
    Claim { fordring: &'a Fordring, claim_type: &'a MappedClaimType, account: Option<&'a Mapped> },
    Party { fordring: &'a Fordring, claim_type: &'a MappedClaimType, account: Option<&'a Mapped>, party: &'a Haefter, position: usize },
}

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

fn optional_text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, text)
}

fn optional_date(value: Option<NaiveDate>) -> Value {
    value.map_or(Value::Null, Value::Date)
}

fn dimensions_json(mapped: Option<&Mapped>) -> Value {
    let map: serde_json::Map<String, serde_json::Value> =
        mapped.iter().flat_map(|m| m.dimensions.iter()).map(|(name, value)| (name.clone(), value.clone().into())).collect();
    Value::Text(serde_json::Value::Object(map).to_string())
}

impl View<'_> {
    fn value(&self, field: &Field, info: &ItemInfo) -> Value {
        let (bilag, posting, mapped) = match self {
            View::Bilag { bilag } => (Some(*bilag), None, None),
            View::Posting { bilag, posting, mapped, .. } => (Some(*bilag), Some(*posting), Some(*mapped)),
            View::Claim { account, .. } | View::Party { account, .. } => (None, None, *account),
        };
        let (fordring, claim_type) = match self {
            View::Claim { fordring, claim_type, .. } | View::Party { fordring, claim_type, .. } => (Some(*fordring), Some(*claim_type)),
            _ => (None, None),
        };
        let party = match self {
            View::Party { party, position, .. } => Some((*party, *position)),
            _ => None,
        };
        let address = party.and_then(|(p, _)| p.address.as_ref());
        // Each field is offered only on the records that have it (`FIELDS`), so the ones it needs are there.
        let b = || bilag.expect("a finans field on a finans record");
        let p = || posting.expect("a posting field on a posting");
        let f = || fordring.expect("a claim field on a claim");
        let h = || party.expect("a party field on a hæfter").0;
        match field {
            Field::Key(key) => Value::Key(*key),
            Field::AfsenderSystem => text(&info.sender),
            Field::LeveranceId => info.delivery_id.map_or(Value::Null, |id| Value::Text(id.to_string())),
            Field::MappingVersion => text(info.mapping_version),
            Field::ItemNo => Value::Integer(bilag.map_or_else(|| f().index, |b| b.index) as i64),
            Field::BilagId => text(&b().bilag_id),
            Field::Bilagsdato => Value::Date(b().date),
            Field::Bilagstekst => optional_text(b().text.as_deref()),
            Field::PostingCount => Value::Integer(b().postings.len() as i64),
            Field::LineNo => match self {
                View::Posting { line_no, .. } => Value::Integer(*line_no as i64),
                _ => unreachable!("line_no on a posting only"),
            },
            Field::PostingId => Value::Integer(p().id.value as i64),
            Field::ErpAccount => optional_text(mapped.map(|m| m.account.as_str())),
            Field::ErpDimensions => dimensions_json(mapped),
            Field::Dimension(name) => {
                optional_text(mapped.and_then(|m| m.dimensions.iter().find(|(n, _)| n == name)).map(|(_, v)| v.as_str()))
            }
            Field::Amount => Value::Decimal(p().amount.value()),
            Field::DebitCredit => text(p().side.code()),
            Field::Currency => match posting {
                Some(posting) => text(posting.currency.value.as_str()),
                None => text(f().currency.value.as_str()),
            },
            Field::PostingDate => Value::Date(p().date.value),
            Field::PostingText => text(&p().text),
            Field::PartyType => optional_text(p().party.as_ref().map(|party| party.value.kind())),
            Field::PartyId => optional_text(p().party.as_ref().map(|party| party.value.expose())),
            Field::CaseReference => optional_text(p().case_reference.as_deref()),
            Field::Kontering(name) => {
                let k = &p().kontering.value;
                match *name {
                    "src_funktion" => text(k.funktion.as_str()),
                    "src_gruppering" => optional_text(k.gruppering.as_ref().map(|g| g.as_str())),
                    "src_dranst" => text(k.dranst.as_str()),
                    "src_ejerforhold" => optional_text(k.ejerforhold.as_ref().map(|e| e.as_str())),
                    "src_art" => text(k.art.as_str()),
                    "src_omkostningssted" => optional_text(k.omkostningssted.as_deref()),
                    _ => optional_text(k.psp_element.as_deref()),
                }
            }
            Field::FordringId => text(&f().fordring_id),
            Field::ErpClaimType => text(&claim_type.expect("a claim has its type").claim_type),
            Field::SrcFordringstype => text(&f().claim_type.value),
            Field::Principal => Value::Decimal(f().principal.value()),
            Field::Description => text(&f().description),
            Field::PeriodFrom => optional_date(f().period_from.as_ref().map(|d| d.value)),
            Field::PeriodTo => optional_date(f().period_to.as_ref().map(|d| d.value)),
            Field::Established => Value::Date(f().established.value),
            Field::Due => Value::Date(f().due.value),
            Field::LastTimelyPayment => Value::Date(f().last_timely_payment.value),
            Field::Limitation => optional_date(f().limitation.as_ref().map(|d| d.value)),
            Field::RelatedFordringId => optional_text(f().related.as_ref().map(|r| r.value.as_str())),
            Field::Position => Value::Integer(party.expect("a hæfter").1 as i64),
            Field::Role => text(h().role.as_str()),
            Field::IdentifierType => text(h().party.value.kind()),
            Field::Identifier => text(h().party.value.expose()),
            Field::Name => text(&h().name),
            Field::Street => optional_text(address.map(|a| a.street.as_str())),
            Field::HouseNumber => optional_text(address.map(|a| a.house_number.as_str())),
            Field::Floor => optional_text(address.and_then(|a| a.floor.as_deref())),
            Field::Door => optional_text(address.and_then(|a| a.door.as_deref())),
            Field::Postcode => optional_text(address.map(|a| a.postcode.as_str())),
            Field::City => optional_text(address.map(|a| a.city.as_str())),
            Field::Country => optional_text(address.map(|a| a.country.as_str())),
        }
    }

    fn debit_credit_sign(&self) -> Decimal {
        match self {
            View::Posting { posting, .. } if posting.side.code() == "K" => Decimal::NEGATIVE_ONE,
            _ => Decimal::ONE,
        }
    }

    /// The expression's value for this record; `Err` when a lookup has no row for it.
    fn eval(&self, expr: &Expr, info: &ItemInfo) -> Result<Value, String> {
        Ok(match expr {
            Expr::Field(field) => self.value(field, info),
            Expr::Text(text) => Value::Text(text.clone()),
            Expr::Integer(n) => Value::Integer(*n),
            Expr::Oere(inner) => match self.eval(inner, info)? {
                Value::Decimal(d) => {
                    let oere = d * Decimal::ONE_HUNDRED;
                    // An amount with more than two decimals is never rounded into øre.
                    if !oere.fract().is_zero() {
                        return Err(format!("{d} kan ikke skrives i hele øre"));
                    }
                    Value::Integer(i64::try_from(oere).map_err(|_| format!("{d} er for stort til et heltal i øre"))?)
                }
                other => other,
            },
            Expr::Signed(inner) => match self.eval(inner, info)? {
                Value::Decimal(d) => Value::Decimal(d * self.debit_credit_sign()),
                other => other,
            },
            Expr::AmountText(inner, separator) => match self.eval(inner, info)? {
                Value::Decimal(mut d) => {
                    d.rescale(d.scale().max(2));
                    Value::Text(d.to_string().replacen('.', separator, 1))
                }
                other => other,
            },
            Expr::DateText(inner, format) => match self.eval(inner, info)? {
                Value::Date(date) => Value::Text(date.format(format).to_string()),
                other => other,
            },
            Expr::Upper(inner) => match self.eval(inner, info)? {
                Value::Text(text) => Value::Text(text.to_uppercase()),
                other => other,
            },
            Expr::Concat(parts) => {
                let mut out = String::new();
                let mut any = false;
                for part in parts {
                    // Constants join what is there; they alone do not make a value.
                    if let Some(text) = self.eval(part, info)?.into_text() {
                        any |= !matches!(part, Expr::Text(_));
                        out.push_str(&text);
                    }
                }
                if any {
                    Value::Text(out)
                } else {
                    Value::Null
                }
            }
            Expr::Lookup { file, table, key } => match self.eval(key, info)? {
                Value::Text(key) => match table.get(&key) {
                    Some(found) => Value::Text(found.clone()),
                    // A key of ten digits may be a CPR number: receipts never show one whole.
                    None if key.len() == 10 && key.bytes().all(|b| b.is_ascii_digit()) => {
                        return Err(format!("opslagstabellen {file} har ingen række for '{}'", super::values::mask_cpr(&key)))
                    }
                    None => return Err(format!("opslagstabellen {file} har ingen række for '{key}'")),
                },
                other => other,
            },
        })
    }
}

impl Targets {
    /// The rows of an accepted finansbilag for every target that takes finansbilag or posteringer, or a
    /// finding for each value that does not fit (at the posting it came from).
    pub fn finans_rows(&self, bilag: &Finansbilag, mapped: &[Mapped], info: &ItemInfo) -> Result<Vec<TargetRow>, Vec<Finding>> {
        let mut rows = Vec::new();
        let mut findings = Vec::new();
        for target in &self.targets {
            match target.record {
                Record::Finansbilag => target.render(&View::Bilag { bilag }, &bilag.loc, info, &mut rows, &mut findings),
                Record::Postering => {
                    for (n, (posting, mapped)) in bilag.postings.iter().zip(mapped).enumerate() {
                        let view = View::Posting { bilag, posting, mapped, line_no: n + 1 };
                        target.render(&view, &posting.loc, info, &mut rows, &mut findings);
                    }
                }
                Record::Fordring | Record::Haefter => {}
            }
        }
        if findings.is_empty() {
            Ok(rows)
        } else {
            Err(findings)
        }
    }

    /// The rows of an accepted claim, as `finans_rows`.
    pub fn claim_rows(
        &self,
        fordring: &Fordring,
        claim_type: &MappedClaimType,
        account: Option<&Mapped>,
        info: &ItemInfo,
    ) -> Result<Vec<TargetRow>, Vec<Finding>> {
        let mut rows = Vec::new();
        let mut findings = Vec::new();
        for target in &self.targets {
            match target.record {
                Record::Fordring => {
                    target.render(&View::Claim { fordring, claim_type, account }, &fordring.loc, info, &mut rows, &mut findings)
                }
                Record::Haefter => {
                    for (n, party) in fordring.parties.iter().enumerate() {
                        let view = View::Party { fordring, claim_type, account, party, position: n + 1 };
                        target.render(&view, &party.loc, info, &mut rows, &mut findings);
                    }
                }
                Record::Finansbilag | Record::Postering => {}
            }
        }
        if findings.is_empty() {
            Ok(rows)
        } else {
            Err(findings)
        }
    }

    /// Whether any target takes finansbilag (or claims): only then are rows rendered.
    pub fn takes(&self, finans: bool) -> bool {
        self.targets.iter().any(|t| t.record.is_finans() == finans)
    }
}

impl BoundTarget {
    fn render(&self, view: &View, loc: &Loc, info: &ItemInfo, rows: &mut Vec<TargetRow>, findings: &mut Vec<Finding>) {
        let mut values = Vec::with_capacity(self.columns.len());
        for (column, expr) in &self.columns {
            match view.eval(expr, info).and_then(|value| column.fit(value)) {
                Ok(value) => values.push(value),
                Err(reason) => findings
                    .push(Finding::new(Rejection::TargetColumn { column: format!("{}.{}", self.sink.shown(), column.name), reason }, loc)),
            }
        }
        if values.len() == self.columns.len() {
            rows.push(TargetRow { sink: self.sink.clone(), values });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> MappingFiles {
        let mut files = MappingFiles::new();
        files.insert("afdelinger.csv".into(), "omkostningssted;afdeling\n4711;AFD-NORD\n".into());
        files
    }

    fn errors(profile: &str) -> Vec<(u64, String)> {
        match Profile::parse(profile, &files()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(|e| (e.place().1, e.message())).collect(),
        }
    }

    #[test]
    fn every_error_is_named_at_its_line() {
        let profile = "[[target]]\nrecord = \"postering\"\ntable = \"gl\"\n[target.columns]\nA = \"amount\"\nB = \"oere(posting_text)\"\nC = \"nonsense\"\nD = \"lookup('mangler.csv', erp_account)\"\nE = \"date(posting_date, '%Q')\"\nF = \"concat(journal_id, 'x')\"\n";
        let found = errors(profile);
        let lines: Vec<u64> = found.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![6, 7, 8, 9, 10], "{found:?}");
        assert!(found[0].1.contains("skal have et beløb"), "{found:?}");
        assert!(found[1].1.contains("ukendt felt 'nonsense'"), "{found:?}");
        assert!(found[2].1.contains("mangler.csv findes ikke"), "{found:?}");
    }

    #[test]
    fn a_field_of_another_record_and_an_unknown_record_are_refused() {
        let found = errors("[[target]]\nrecord = \"fordring\"\ntable = \"t\"\ncolumns = { A = \"amount\" }\n[[target]]\nrecord = \"bilag\"\ntable = \"t\"\ncolumns = { A = \"'x'\" }\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].1.contains("en fordring har ikke feltet 'amount'"), "{found:?}");
        assert_eq!(found[1].0, 6);
    }

    #[test]
    fn a_table_name_that_is_not_an_identifier_is_refused() {
        let found = errors("[[target]]\nrecord = \"fordring\"\ntable = \"t; drop table x\"\ncolumns = { A = \"fordring_id\" }\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, 3);
    }

    fn column(name: &str, ty: ColumnType, not_null: bool) -> Column {
        Column { name: name.into(), ty, not_null, has_default: false, single_line: false }
    }

    #[test]
    fn binding_names_a_missing_table_a_missing_column_a_too_short_one_and_an_unfilled_one() {
        let profile = Profile::parse(
            "[[target]]\nrecord = \"postering\"\ntable = \"gl\"\n[target.columns]\nA = \"amount\"\nB = \"erp_reference\"\nC = \"'LANG KONSTANT'\"\nZ = \"posting_text\"\n[[target]]\nrecord = \"fordring\"\ntable = \"nowhere\"\ncolumns = { A = \"fordring_id\" }\n",
            &files(),
        )
        .unwrap();
        let mut tables = HashMap::new();
        tables.insert(
            "gl".to_string(),
            TableColumns {
                name: "gl".into(),
                columns: vec![
                    column("a", ColumnType::Integer(i64::MIN, i64::MAX), false),
                    column("b", ColumnType::Text(Some(8)), false),
                    column("c", ColumnType::Text(Some(4)), false),
                    column("must", ColumnType::Text(None), true),
                ],
            },
        );
        let found: Vec<(u64, String)> = profile
            .bind(&Places {
                reserved: &[],
                tables: &tables,
                remote: &HashMap::new(),
                folders: &[],
                databases: &[],
                unreachable: &HashMap::new(),
            })
            .unwrap_err()
            .iter()
            .map(|e| (e.place().1, e.message()))
            .collect();
        let lines: Vec<u64> = found.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![5, 6, 7, 8, 1, 9], "{found:?}");
        assert!(found[0].1.contains("oere(...)"), "{found:?}");
        assert!(found[3].1.contains("ingen kolonne Z"), "{found:?}");
        assert!(found[4].1.contains("must"), "{found:?}");
        assert!(found[5].1.contains("nowhere findes ikke"), "{found:?}");
    }

    #[test]
    fn the_adapters_own_tables_and_a_column_named_twice_are_refused() {
        let profile = Profile::parse(
            "[[target]]\nrecord = \"postering\"\ntable = \"gl\"\n[target.columns]\ntekst = \"posting_text\"\nTEKST = \"posting_text\"\n[[target]]\nrecord = \"fordring\"\ntable = \"deliveries\"\ncolumns = { a = \"fordring_id\" }\n[[target]]\nrecord = \"fordring\"\ntable = \"main.sqlite_master\"\ncolumns = { a = \"fordring_id\" }\n",
            &files(),
        )
        .unwrap();
        let text = |n| TableColumns {
            name: n,
            columns: vec![column("tekst", ColumnType::Text(None), false), column("a", ColumnType::Text(None), false)],
        };
        let mut tables = HashMap::new();
        tables.insert("gl".to_string(), text("gl".into()));
        tables.insert("deliveries".to_string(), text("deliveries".into()));
        tables.insert("main.sqlite_master".to_string(), text("sqlite_master".into()));
        let places = Places {
            reserved: &["deliveries"],
            tables: &tables,
            remote: &HashMap::new(),
            folders: &[],
            databases: &[],
            unreachable: &HashMap::new(),
        };
        let found: Vec<(u64, String)> = profile.bind(&places).unwrap_err().iter().map(|e| (e.place().1, e.message())).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, 6);
        assert!(found[0].1.contains("nævnt to gange"), "{found:?}");
        assert!(found[1].1.contains("adapterens egne tabeller") && found[2].1.contains("adapterens egne tabeller"), "{found:?}");
    }

    #[test]
    fn a_concatenation_of_nothing_but_empty_fields_is_empty_and_a_big_profile_is_refused() {
        let profile = Profile::parse(&"# x\n".repeat(70_000), &files());
        assert!(profile.unwrap_err()[0].message().contains("højst 256 KB"));
        let profile = Profile::parse(
            "[[target]]\nrecord = \"finansbilag\"\ntable = \"t\"\ncolumns = { a = \"concat(bilagstekst, ' ', bilagstekst)\" }\n",
            &files(),
        )
        .unwrap();
        let (_, expr) = &profile.targets[0].columns.iter().map(|c| (c.name.clone(), c.expr.clone())).collect::<Vec<_>>()[0];
        let bilag = Finansbilag {
            index: 1,
            loc: Loc::default(),
            bilag_id: "B".into(),
            date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            text: None,
            postings: Vec::new(),
        };
        let info = ItemInfo { sender: String::new(), delivery_id: None, mapping_version: "v" };
        assert_eq!(View::Bilag { bilag: &bilag }.eval(expr, &info).unwrap(), Value::Null);
    }
}
