//! Mapping of a received kontering onto the ERP's account and dimensions, from files finance staff edit.
//!
//! `konti.csv` holds ordered rules: the first rule that matches wins, read from the top. A cell is an exact
//! value, a pattern (`5.57.*` for a prefix, `?` for one character), or empty / `*` for anything. A rule's
//! `erp_konto` may instead say `opslag:FILE.csv`: that lookup table is searched at this point in the order,
//! by exact values of its key columns, and the search goes on below when it has no row.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wildmatch::WildMatch;

use super::finans::{Kontering, KonteringField};
use super::target::{Profile, Targets, PROFILE_FILE};

pub const RULES_FILE: &str = "konti.csv";
/// Optional: SF1590_B fordringstyper to the ERP's claim types.
pub const CLAIM_TYPES_FILE: &str = "fordringstyper.csv";
const LOOKUP_PREFIX: &str = "opslag:";

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("{file}:{line}: {message}")]
    Invalid { file: String, line: u64, message: String },
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
}

impl MappingError {
    /// The file and line an error is at (line 0: the file as a whole), for showing it beside the row.
    pub fn place(&self) -> (&str, u64) {
        match self {
            MappingError::Invalid { file, line, .. } => (file, *line),
            MappingError::Io { file, .. } => (file, 0),
        }
    }

    pub fn message(&self) -> String {
        match self {
            MappingError::Invalid { message, .. } => message.clone(),
            MappingError::Io { source, .. } => source.to_string(),
        }
    }
}

/// Every error found in a set of mapping files, in file and line order: a person fixes them all at once.
#[derive(Debug)]
pub struct MappingErrors(pub Vec<MappingError>);

impl std::fmt::Display for MappingErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for MappingErrors {}

impl From<MappingError> for MappingErrors {
    fn from(error: MappingError) -> Self {
        MappingErrors(vec![error])
    }
}

/// The mapping files by name: what is stored as one version, edited on the page and written to the folder.
pub type MappingFiles = BTreeMap<String, String>;

/// Reads every .csv file of the mapping folder.
pub fn read_dir(dir: &Path) -> Result<MappingFiles, MappingError> {
    let io = |file: &str, source| MappingError::Io { file: file.to_string(), source };
    let mut files = MappingFiles::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(&dir.display().to_string(), e))? {
        let name = entry.map_err(|e| io(&dir.display().to_string(), e))?.file_name().to_string_lossy().into_owned();
        if is_mapping_file_name(&name) {
            let bytes = std::fs::read(dir.join(&name)).map_err(|e| io(&name, e))?;
            let content = String::from_utf8(bytes).map_err(|e| {
                // Where it stops being UTF-8: the line, and the character on it, a person can find in an editor.
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let text = std::str::from_utf8(valid).expect("valid up to here");
                let (line, col) = super::line_and_column(text, text.len());
                let line = line as u64;
                MappingError::Invalid {
                    file: name.clone(),
                    line,
                    message: format!(
                        "filen er ikke UTF-8 (tegn {col} på linjen er ikke et gyldigt tegn); gem den som UTF-8, f.eks. fra Excel som \"CSV UTF-8\""
                    ),
                }
            })?;
            files.insert(name, content);
        }
    }
    Ok(files)
}

/// A plain `.csv` name: no folders, no hidden or temporary files.
pub fn is_mapping_file_name(name: &str) -> bool {
    if name == super::target::PROFILE_FILE {
        return true;
    }
    name.ends_with(".csv")
        && !name.starts_with('.')
        && name.len() > 4
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The version of a set of files: a hash of names and contents, recorded with each booking.
pub fn version_of(files: &MappingFiles) -> String {
    let mut hasher = Sha256::new();
    for (name, content) in files {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(content.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..8])
}

/// The outcome of mapping one kontering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub account: String,
    pub dimensions: Vec<(String, String)>,
    /// Which rule decided it, as file:line (and the lookup row, when a table was used).
    pub rule: String,
}

#[derive(Debug, Clone)]
enum Cell {
    Any,
    Exact(String),
    /// As written, and compiled once when the file is read: every posting is matched against the rules.
    Pattern(String, WildMatch),
}

impl Cell {
    fn parse(raw: &str) -> Cell {
        match raw {
            "" | "*" => Cell::Any,
            _ if raw.contains(['*', '?']) => Cell::Pattern(raw.to_string(), WildMatch::new(raw)),
            _ => Cell::Exact(raw.to_string()),
        }
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Cell::Any, _) => true,
            (_, None) => false,
            (Cell::Exact(want), Some(v)) => want == v,
            (Cell::Pattern(_, glob), Some(v)) => glob.matches(v),
        }
    }
}

#[derive(Debug, Clone)]
struct Output {
    account: String,
    /// name and template; a template in braces copies a received value.
    dimensions: Vec<(String, String)>,
}

impl Output {
    fn parse(account: &str, dimensions: &str) -> Result<Self, String> {
        if account.is_empty() {
            return Err("erp_konto er tom".into());
        }
        let mut dims = Vec::new();
        for part in dimensions.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| format!("'{part}' i erp_dimensioner mangler '='"))?;
            let (name, value) = (name.trim(), value.trim());
            if let Some(inner) = value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                let known = KonteringField::from_column(inner).is_some() || inner.strip_prefix("dimension:").is_some_and(|d| !d.is_empty());
                if !known {
                    return Err(format!("'{{{inner}}}' er ikke et felt i konteringen"));
                }
            }
            dims.push((name.to_string(), value.to_string()));
        }
        Ok(Output { account: account.to_string(), dimensions: dims })
    }

    fn apply(&self, kontering: &Kontering, rule: String) -> Mapped {
        let dimensions = self
            .dimensions
            .iter()
            .filter_map(|(name, template)| {
                let value = match template.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                    None => Some(template.as_str()),
                    Some(inner) => match inner.strip_prefix("dimension:") {
                        Some(dim) => kontering.dimension(dim),
                        None => KonteringField::from_column(inner).and_then(|f| kontering.field(f)),
                    },
                };
                // A copied value the kontering does not carry leaves the dimension out.
                value.map(|v| (name.clone(), v.to_string()))
            })
            .collect();
        Mapped { account: self.account.clone(), dimensions, rule }
    }
}

#[derive(Debug, Clone)]
struct LookupTable {
    file: String,
    keys: Vec<KonteringField>,
    rows: HashMap<Vec<Option<String>>, (u64, Output)>,
}

#[derive(Debug, Clone)]
enum Target {
    Output(Output),
    Lookup(LookupTable),
}

#[derive(Debug, Clone)]
struct Rule {
    line: u64,
    cells: Vec<(KonteringField, Cell)>,
    /// (dimension name, value pattern)
    dimension: Option<(String, Cell)>,
    target: Target,
}

/// The ERP's claim type for a received fordringstype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedClaimType {
    pub claim_type: String,
    /// The revenue account to use when the claim carries no kontering of its own.
    pub account: Option<String>,
    pub rule: String,
}

#[derive(Debug, Clone)]
struct ClaimTypeRow {
    line: u64,
    pattern: Cell,
    claim_type: String,
    account: Option<String>,
}

/// One loaded version of the mapping files.
#[derive(Debug, Clone)]
pub struct MappingSet {
    /// Content hash of every file in the mapping folder, recorded with each booking.
    pub version: String,
    rules: Vec<Rule>,
    claim_types: Vec<ClaimTypeRow>,
    /// The target profile (`erp-profil.toml`), when there is one: read, not yet bound to the target tables.
    pub profile: Option<Arc<Profile>>,
    /// The profile bound to the target tables' columns (`Pipeline::mappings`): what renders an item's rows.
    pub targets: Option<Arc<Targets>>,
}

impl MappingSet {
    /// Loads the mapping folder; any error leaves the caller with the version it had.
    pub fn load_dir(dir: &Path) -> Result<Self, MappingErrors> {
        Self::check(&read_dir(dir)?)
    }

    /// Checks files that are to become the version in force: as `check`, and a rules file without a single rule
    /// (or a fordringstyper.csv without a row) is refused too, unless the operator allows it explicitly: after
    /// it, every finansbilag (or fordring) would be rejected with MAPNING_MANGLER.
    pub fn check_new(files: &MappingFiles, allow_empty: bool) -> Result<Self, MappingErrors> {
        let set = Self::check(files)?;
        if allow_empty {
            return Ok(set);
        }
        let mut errors = Vec::new();
        let empty = |file: &str, what: &str| MappingError::Invalid {
            file: file.into(),
            line: 1,
            message: format!(
                "filen har ingen {what}: alt ville blive afvist med MAPNING_MANGLER. Gemmes kun, når det bekræftes \
                 (afkrydsning på siden, --allow-empty på kommandolinjen)"
            ),
        };
        if set.rules.is_empty() {
            errors.push(empty(RULES_FILE, "regler"));
        }
        if files.contains_key(CLAIM_TYPES_FILE) && set.claim_types.is_empty() {
            errors.push(empty(CLAIM_TYPES_FILE, "rækker"));
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(MappingErrors(errors))
        }
    }

    /// Reads a set of files into mapping rules, or every error in them.
    pub fn check(files: &MappingFiles) -> Result<Self, MappingErrors> {
        let mut errors = Vec::new();
        let set = Self::read(files, &mut errors);
        if errors.is_empty() {
            Ok(set)
        } else {
            errors.sort_by(|a, b| a.place().cmp(&b.place()));
            Err(MappingErrors(errors))
        }
    }

    fn read(files: &MappingFiles, errors: &mut Vec<MappingError>) -> Self {
        let version = version_of(files);
        let mut rules = Vec::new();
        let mut lookups: HashMap<&str, Option<LookupTable>> = HashMap::new();
        match files.get(RULES_FILE) {
            None => {
                errors.push(MappingError::Invalid { file: RULES_FILE.into(), line: 0, message: "filen mangler i mapningsmappen".into() })
            }
            Some(content) => {
                for row in read_rows(RULES_FILE, content, errors) {
                    match read_rule(&row, files, &mut lookups, errors) {
                        Ok(Some(rule)) => rules.push(rule),
                        Ok(None) => {}
                        Err(message) => errors.push(MappingError::Invalid { file: RULES_FILE.into(), line: row.line, message }),
                    }
                }
            }
        }
        let claim_types = match files.get(CLAIM_TYPES_FILE) {
            Some(content) => read_claim_types(content, errors),
            None => Vec::new(),
        };
        let profile = files.get(PROFILE_FILE).and_then(|content| match Profile::parse(content, files) {
            Ok(profile) => Some(Arc::new(profile)),
            Err(found) => {
                errors.extend(found);
                None
            }
        });
        MappingSet { version, rules, claim_types, profile, targets: None }
    }

    /// How many rules konti.csv holds: none, and every kontering is MAPNING_MANGLER.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Rows in fordringstyper.csv.
    pub fn claim_type_count(&self) -> usize {
        self.claim_types.len()
    }

    /// The first row of fordringstyper.csv, from the top, that matches the fordringstype.
    pub fn map_claim_type(&self, fordringstype: &str) -> Option<MappedClaimType> {
        self.claim_types.iter().find(|row| row.pattern.matches(Some(fordringstype))).map(|row| MappedClaimType {
            claim_type: row.claim_type.clone(),
            account: row.account.clone(),
            rule: format!("{CLAIM_TYPES_FILE}:{}", row.line),
        })
    }

    /// "Try it": the rule that maps a kontering typed by a person, and what it maps it to; `Ok(None)` when no
    /// rule does; `Err` when the kontering itself is not valid.
    pub fn try_kontering(&self, input: &KonteringInput) -> Result<Option<Mapped>, Vec<String>> {
        input.parse().map(|kontering| self.map(&kontering))
    }

    /// The first rule, from the top, that maps this kontering.
    pub fn map(&self, kontering: &Kontering) -> Option<Mapped> {
        self.rules.iter().find_map(|rule| {
            let matches = rule.cells.iter().all(|(field, cell)| cell.matches(kontering.field(*field)))
                && rule.dimension.as_ref().is_none_or(|(name, cell)| cell.matches(kontering.dimension(name)));
            if !matches {
                return None;
            }
            let here = format!("{RULES_FILE}:{}", rule.line);
            match &rule.target {
                Target::Output(output) => Some(output.apply(kontering, here)),
                Target::Lookup(table) => {
                    let key: Vec<Option<String>> = table.keys.iter().map(|f| kontering.field(*f).map(str::to_string)).collect();
                    table.rows.get(&key).map(|(line, output)| output.apply(kontering, format!("{here} → {}:{line}", table.file)))
                }
            }
        })
    }
}

/// What a set of mapping files will never do, or leaves undone for a sortiment: warnings for finance staff, shown
/// by `fkoeko mappings check` and on the page. They do not stop a version from being used.
impl MappingSet {
    pub fn warnings(&self, sortiment: Option<&super::sortiment::Sortiment>) -> Vec<String> {
        let mut warnings = Vec::new();
        // A row after a row that matches everything it matches (and always answers: not a lookup, which can
        // miss and hand on to the next row) can never win.
        for (n, later) in self.rules.iter().enumerate() {
            if let Some(earlier) =
                self.rules[..n].iter().find(|earlier| matches!(earlier.target, Target::Output(_)) && earlier.covers(later))
            {
                warnings.push(format!(
                    "{RULES_FILE}:{}: rækken bruges aldrig: række {} passer på alt, hvad den passer på, og står før den",
                    later.line, earlier.line
                ));
            }
        }
        for (n, later) in self.claim_types.iter().enumerate() {
            if let Some(earlier) = self.claim_types[..n].iter().find(|earlier| covers(&earlier.pattern, &later.pattern)) {
                warnings.push(format!(
                    "{CLAIM_TYPES_FILE}:{}: rækken bruges aldrig: række {} passer på alt, hvad den passer på, og står før den",
                    later.line, earlier.line
                ));
            }
        }
        let Some(sortiment) = sortiment else { return warnings };
        let mut senders: Vec<_> = sortiment.senders().collect();
        senders.sort_by(|a, b| a.name.cmp(&b.name));
        for sender in senders {
            for pattern in &sender.konteringer {
                for funktion in &pattern.funktion {
                    for dranst in &pattern.dranst {
                        for art in &pattern.art {
                            let wanted =
                                [(KonteringField::Funktion, funktion), (KonteringField::Dranst, dranst), (KonteringField::Art, art)];
                            let exact = wanted.iter().all(|(_, glob)| !glob.contains(['*', '?']));
                            let mapped = match exact {
                                // One kontering: followed through the rules, lookups and all, as it would be mapped.
                                true => self.maps_exactly(&wanted).unwrap_or(true),
                                false => self.rules.iter().any(|rule| {
                                    wanted.iter().all(|(field, glob)| rule.cell(*field).is_none_or(|cell| may_meet(cell, glob)))
                                        && rule.lookup_may_meet(&wanted)
                                }),
                            };
                            if !mapped {
                                warnings.push(format!(
                                    "sortimentet lader {} sende funktion {funktion}, dranst {dranst}, art {art}, men ingen regel i {RULES_FILE} kan mappe det: det afvises med MAPNING_MANGLER",
                                    sender.name
                                ));
                            }
                        }
                    }
                }
            }
            for claim_type in &sender.claim_types {
                if self.map_claim_type(&claim_type.code).is_none() {
                    warnings.push(format!(
                        "sortimentet lader {} sende fordringstype {}, men ingen række i {CLAIM_TYPES_FILE} mapper den: den afvises med MAPNING_MANGLER",
                        sender.name, claim_type.code
                    ));
                }
            }
        }
        warnings
    }
}

impl MappingSet {
    /// Whether the one kontering with these Funktion, Dranst and Art is mapped: `None` when that depends on more
    /// than them (a rule on another field or a dimension could match it), so that no warning is given wrongly.
    fn maps_exactly(&self, wanted: &[(KonteringField, &String); 3]) -> Option<bool> {
        let value = |field: KonteringField| wanted.iter().find(|(f, _)| *f == field).map(|(_, v)| v.as_str());
        for rule in &self.rules {
            let decided_by_these =
                rule.dimension.is_none() && rule.cells.iter().all(|(field, cell)| matches!(cell, Cell::Any) || value(*field).is_some());
            let matches = rule.cells.iter().all(|(field, cell)| match value(*field) {
                Some(v) => cell.matches(Some(v)),
                None => true,
            });
            if !matches {
                continue;
            }
            if !decided_by_these {
                return None;
            }
            match &rule.target {
                Target::Output(_) => return Some(true),
                Target::Lookup(table) => {
                    if table.keys.iter().any(|key| value(*key).is_none()) {
                        return None;
                    }
                    let key: Vec<Option<String>> = table.keys.iter().map(|k| value(*k).map(str::to_string)).collect();
                    if table.rows.contains_key(&key) {
                        return Some(true);
                    }
                    // Not in the table: the next rule is tried, as when mapping.
                }
            }
        }
        Some(false)
    }
}

impl Rule {
    /// For a lookup rule, whether its table has a row the sortiment's globs may meet; other rules always may.
    fn lookup_may_meet(&self, wanted: &[(KonteringField, &String); 3]) -> bool {
        let Target::Lookup(table) = &self.target else { return true };
        table.rows.keys().any(|key| {
            table.keys.iter().zip(key).all(|(field, value)| match (wanted.iter().find(|(f, _)| f == field), value) {
                (Some((_, glob)), Some(value)) => WildMatch::new(glob).matches(value),
                _ => true,
            })
        })
    }

    fn cell(&self, field: KonteringField) -> Option<&Cell> {
        self.cells.iter().find(|(f, _)| *f == field).map(|(_, c)| c)
    }

    /// Whether this row matches every kontering `other` matches (a sufficient check: it may miss a cover, never
    /// claim a false one).
    fn covers(&self, other: &Rule) -> bool {
        let cells = KonteringField::ALL.iter().all(|field| match (self.cell(*field), other.cell(*field)) {
            (None | Some(Cell::Any), _) => true,
            (Some(mine), Some(theirs)) => covers(mine, theirs),
            (Some(_), None) => false,
        });
        let dimension = match (&self.dimension, &other.dimension) {
            (None, _) => true,
            (Some((mine, a)), Some((theirs, b))) => mine == theirs && covers(a, b),
            (Some(_), None) => false,
        };
        cells && dimension
    }
}

/// The literal text of a pattern before its first wildcard.
fn literal_prefix(pattern: &str) -> &str {
    &pattern[..pattern.find(['*', '?']).unwrap_or(pattern.len())]
}

/// Whether `a` matches every value `b` matches. Sufficient, not complete: a pattern "L*" (L without wildcards)
/// covers any pattern whose literal start begins with L.
fn covers(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::Any, _) => true,
        (_, Cell::Any) => false,
        (Cell::Exact(x), Cell::Exact(y)) => x == y,
        (Cell::Exact(_), Cell::Pattern(..)) => false,
        (Cell::Pattern(_, glob), Cell::Exact(v)) => glob.matches(v),
        (Cell::Pattern(p, _), Cell::Pattern(q, _)) => {
            p == q || (p.ends_with('*') && literal_prefix(p).len() == p.len() - 1 && literal_prefix(q).starts_with(literal_prefix(p)))
        }
    }
}

/// Whether a mapping cell and a sortiment glob may both match some value: only clearly apart (different literal
/// starts, or an exact value the glob does not match) says no, so that a warning is never given wrongly.
fn may_meet(cell: &Cell, glob: &str) -> bool {
    match cell {
        Cell::Any => true,
        Cell::Exact(value) => WildMatch::new(glob).matches(value),
        Cell::Pattern(p, _) => {
            let (a, b) = (literal_prefix(p), literal_prefix(glob));
            a.starts_with(b) || b.starts_with(a)
        }
    }
}

/// A kontering as typed by a person into "try it" (the page, `fkoeko mappings try`): every field as text,
/// empty where not given. Read from a form by the column names of the mapping files.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct KonteringInput {
    pub funktion: String,
    pub gruppering: String,
    pub dranst: String,
    pub ejerforhold: String,
    pub art: String,
    pub omkostningssted: String,
    #[serde(rename = "pspelement")]
    pub psp_element: String,
    /// NAME=VALUE, separated by commas.
    #[serde(rename = "dimensioner")]
    pub dimensions: String,
}

impl KonteringInput {
    /// Whether anything that makes a kontering was typed (a try of a fordringstype has none of it).
    pub fn is_given(&self) -> bool {
        !(self.funktion.is_empty() && self.dranst.is_empty() && self.art.is_empty())
    }

    /// The kontering, or what is wrong with each field, as a delivery's kontering would be checked.
    pub fn parse(&self) -> Result<Kontering, Vec<String>> {
        use crate::domain::values::{Art, Dranst, Ejerforhold, Funktion, Gruppering};
        let mut errors = Vec::new();
        fn optional(raw: &str) -> Option<&str> {
            Some(raw.trim()).filter(|v| !v.is_empty())
        }
        fn field<T>(errors: &mut Vec<String>, name: &str, result: Result<T, crate::domain::values::ValueError>) -> Option<T> {
            result.map_err(|e| errors.push(format!("{name}: {e}"))).ok()
        }
        let funktion = field(&mut errors, "funktion", Funktion::parse(self.funktion.trim()));
        let dranst = field(&mut errors, "dranst", Dranst::parse(self.dranst.trim()));
        let art = field(&mut errors, "art", Art::parse(self.art.trim()));
        let gruppering = optional(&self.gruppering).and_then(|g| field(&mut errors, "gruppering", Gruppering::parse(g)));
        let ejerforhold = optional(&self.ejerforhold).and_then(|e| field(&mut errors, "ejerforhold", Ejerforhold::parse(e)));
        let mut dimensions = Vec::new();
        for part in self.dimensions.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((name, value)) => dimensions.push((name.trim().to_string(), value.trim().to_string())),
                None => errors.push(format!("dimension '{part}' skal skrives NAVN=VÆRDI")),
            }
        }
        match (funktion, dranst, art) {
            (Some(funktion), Some(dranst), Some(art)) if errors.is_empty() => Ok(Kontering {
                funktion,
                gruppering,
                dranst,
                ejerforhold,
                art,
                omkostningssted: optional(&self.omkostningssted).map(str::to_string),
                psp_element: optional(&self.psp_element).map(str::to_string),
                dimensions,
            }),
            _ => Err(errors),
        }
    }
}

pub(super) struct Row {
    pub(super) line: u64,
    pub(super) cells: Vec<(String, String)>,
}

/// One row of konti.csv as a rule; `Ok(None)` when the lookup table it names has errors of its own (reported
/// once, at the table's rows).
fn read_rule<'f>(
    row: &Row,
    files: &'f MappingFiles,
    lookups: &mut HashMap<&'f str, Option<LookupTable>>,
    errors: &mut Vec<MappingError>,
) -> Result<Option<Rule>, String> {
    let mut cells = Vec::new();
    let mut dimension = None;
    let mut account = None;
    let mut dimensions = "";
    for (column, value) in &row.cells {
        match column.as_str() {
            "erp_konto" => account = Some(value.as_str()),
            "erp_dimensioner" => dimensions = value,
            "dimension" => {
                if !matches!(value.as_str(), "" | "*") {
                    let (name, pattern) = value.split_once('=').ok_or_else(|| format!("dimension '{value}' skal skrives NAVN=VÆRDI"))?;
                    dimension = Some((name.trim().to_string(), Cell::parse(pattern.trim())));
                }
            }
            other => match KonteringField::from_column(other) {
                Some(field) => cells.push((field, Cell::parse(value))),
                None => return Err(format!("ukendt kolonne '{other}'")),
            },
        }
    }
    let account = account.ok_or("kolonnen erp_konto mangler")?;
    let target = match account.strip_prefix(LOOKUP_PREFIX) {
        Some(table) => {
            let (name, content) = files.get_key_value(table).ok_or_else(|| format!("opslagstabellen '{table}' findes ikke"))?;
            let loaded = lookups.entry(name.as_str()).or_insert_with(|| {
                let before = errors.len();
                let table = read_lookup(name, content, errors);
                (errors.len() == before).then_some(table)
            });
            match loaded {
                Some(table) => Target::Lookup(table.clone()),
                None => return Ok(None),
            }
        }
        None => Target::Output(Output::parse(account, dimensions)?),
    };
    Ok(Some(Rule { line: row.line, cells, dimension, target }))
}

/// The cells of one line of a mapping file (semicolon-separated, trimmed, quotes as in CSV).
pub fn cells_of(line: &str) -> Result<Vec<String>, csv::Error> {
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').has_headers(false).trim(csv::Trim::All).from_reader(line.as_bytes());
    match reader.records().next() {
        Some(record) => Ok(record?.iter().map(str::to_string).collect()),
        None => Ok(Vec::new()),
    }
}

/// Reads a semicolon-separated file line by line, so that every row knows its physical line: the csv crate's
/// own positions skip comment lines, which would send a person to the wrong line. A row that cannot be read
/// is reported and left out, so that the rows after it are still checked.
pub(super) fn read_rows(file: &str, content: &str, errors: &mut Vec<MappingError>) -> Vec<Row> {
    // Many Windows editors put a byte order mark first on saving, before a comment line as well as a header.
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let invalid = |line: u64, message: String| MappingError::Invalid { file: file.into(), line, message };
    let fields = |line: u64, text: &str| cells_of(text).map_err(|e| invalid(line, e.to_string()));
    let mut headers: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for (index, text) in content.lines().enumerate() {
        let line = index as u64 + 1;
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let cells = match fields(line, text) {
            Ok(cells) => cells,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match &headers {
            None => headers = Some(cells.iter().map(|h| h.to_lowercase()).collect()),
            Some(headers) => {
                if cells.len() != headers.len() {
                    errors.push(invalid(line, format!("rækken har {} kolonner, men overskriften har {}", cells.len(), headers.len())));
                    continue;
                }
                rows.push(Row { line, cells: headers.iter().cloned().zip(cells).collect() });
            }
        }
    }
    rows
}

fn read_claim_types(content: &str, errors: &mut Vec<MappingError>) -> Vec<ClaimTypeRow> {
    let read = |row: &Row| -> Result<ClaimTypeRow, String> {
        let get = |name: &str| row.cells.iter().find(|(c, _)| c == name).map(|(_, v)| v.as_str());
        if let Some((column, _)) =
            row.cells.iter().find(|(c, _)| !matches!(c.as_str(), "fordringstype" | "erp_fordringstype" | "erp_konto"))
        {
            return Err(format!("ukendt kolonne '{column}'"));
        }
        let pattern = get("fordringstype").ok_or("kolonnen fordringstype mangler")?;
        let claim_type = get("erp_fordringstype").filter(|v| !v.is_empty()).ok_or("erp_fordringstype er tom")?;
        Ok(ClaimTypeRow {
            line: row.line,
            pattern: Cell::parse(pattern),
            claim_type: claim_type.to_string(),
            account: get("erp_konto").filter(|v| !v.is_empty()).map(str::to_string),
        })
    };
    let mut rows = Vec::new();
    for row in read_rows(CLAIM_TYPES_FILE, content, errors) {
        match read(&row) {
            Ok(claim_type) => rows.push(claim_type),
            Err(message) => errors.push(MappingError::Invalid { file: CLAIM_TYPES_FILE.into(), line: row.line, message }),
        }
    }
    rows
}

fn read_lookup(file: &str, content: &str, errors: &mut Vec<MappingError>) -> LookupTable {
    let mut keys: Option<Vec<KonteringField>> = None;
    let mut table: HashMap<Vec<Option<String>>, (u64, Output)> = HashMap::new();
    for row in read_rows(file, content, errors) {
        type Row = (Vec<KonteringField>, Vec<Option<String>>, Output);
        let read = || -> Result<Row, String> {
            let mut key_fields = Vec::new();
            let mut key = Vec::new();
            let (mut account, mut dimensions) = (None, "");
            for (column, value) in &row.cells {
                match column.as_str() {
                    "erp_konto" => account = Some(value.as_str()),
                    "erp_dimensioner" => dimensions = value,
                    other => {
                        let field = KonteringField::from_column(other)
                            .ok_or_else(|| format!("ukendt kolonne '{other}' (opslagstabeller slår op på præcise værdier)"))?;
                        if value.contains(['*', '?']) {
                            return Err(format!("'{value}': opslagstabeller har kun præcise værdier; brug konti.csv til mønstre"));
                        }
                        key_fields.push(field);
                        key.push((!value.is_empty()).then(|| value.clone()));
                    }
                }
            }
            let output = Output::parse(account.ok_or("kolonnen erp_konto mangler")?, dimensions)?;
            if let Some((first, _)) = table.get(&key) {
                return Err(format!("samme nøgle som linje {first}"));
            }
            Ok((key_fields, key, output))
        };
        match read() {
            Ok((key_fields, key, output)) => {
                keys.get_or_insert(key_fields);
                table.insert(key, (row.line, output));
            }
            Err(message) => errors.push(MappingError::Invalid { file: file.into(), line: row.line, message }),
        }
    }
    LookupTable { file: file.into(), keys: keys.unwrap_or_default(), rows: table }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cover_is_claimed_only_where_it_holds() {
        // Every pattern here has a wildcard, so `Cell::parse` makes it a pattern, compiled as a rule's is.
        let (p, e) = (Cell::parse, |t: &str| Cell::Exact(t.into()));
        assert!(["5.*", "5.5?", "5*2"].iter().all(|t| matches!(p(t), Cell::Pattern(..))));
        assert!(covers(&Cell::Any, &p("5.*")) && covers(&p("5.*"), &p("5.57.*")) && covers(&p("5.*"), &e("5.57.72")));
        assert!(covers(&p("5.5?"), &p("5.5?")) && covers(&e("1"), &e("1")));
        // "5.?" does not match "5.12", which "5.*" does; nor does a narrower pattern cover a wider one.
        assert!(!covers(&p("5.?"), &p("5.*")) && !covers(&p("5.57.*"), &p("5.*")) && !covers(&e("1"), &Cell::Any));
        assert!(!covers(&p("5*2"), &p("5.57.*")), "only a pattern that ends in its one * is taken as a prefix");
        assert!(may_meet(&p("5.57.*"), "5.*") && may_meet(&p("5.*"), "5.57.7?") && !may_meet(&p("5.57.*"), "9.*"));
        assert!(may_meet(&e("5.57.72"), "5.57.*") && !may_meet(&e("5.57.72"), "5.58.*"));
    }

    use super::*;
    use crate::domain::values::{Art, Dranst, Funktion};

    fn kontering(funktion: &str, dranst: &str, art: &str) -> Kontering {
        Kontering {
            funktion: Funktion::parse(funktion).unwrap(),
            gruppering: None,
            dranst: Dranst::parse(dranst).unwrap(),
            ejerforhold: None,
            art: Art::parse(art).unwrap(),
            omkostningssted: Some("OMK7".into()),
            psp_element: None,
            dimensions: vec![("Sag".into(), "S-9".into())],
        }
    }

    fn set(files: &[(&str, &str)]) -> Result<MappingSet, MappingErrors> {
        MappingSet::check(&files.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect())
    }

    const HEADER: &str = "funktion;dranst;art;dimension;erp_konto;erp_dimensioner\n";

    #[test]
    fn first_matching_rule_wins_and_lookup_sits_in_order() {
        let rules = format!(
            "{HEADER}# comment line\n5.57.72;1;5.2;;opslag:liste.csv;\n5.57.*;1;5.2;Sag=S-*;5500;sag={{dimension:Sag}},omk={{omkostningssted}}\n*;*;*;;9999;\n"
        );
        let lookup = "funktion;art;erp_konto;erp_dimensioner\n5.57.72;5.2;5572;afd=SOC\n";
        let mapping = set(&[(RULES_FILE, &rules), ("liste.csv", lookup)]).unwrap();
        let hit = mapping.map(&kontering("5.57.72", "1", "5.2")).unwrap();
        assert_eq!((hit.account.as_str(), hit.rule.as_str()), ("5572", "konti.csv:3 → liste.csv:2"));
        let prefix = mapping.map(&kontering("5.57.73", "1", "5.2")).unwrap();
        assert_eq!(prefix.account, "5500");
        assert_eq!(prefix.rule, "konti.csv:4");
        assert_eq!(prefix.dimensions, vec![("sag".into(), "S-9".into()), ("omk".into(), "OMK7".into())]);
        assert_eq!(mapping.map(&kontering("0.22.01", "2", "4.0")).unwrap().rule, "konti.csv:5");
    }

    #[test]
    fn a_kontering_a_lookup_table_lacks_is_reported_unless_a_later_rule_maps_it() {
        let rules = format!("{HEADER}5.57.72;*;*;;opslag:liste.csv;\n5.57.*;2;*;;5500;\n");
        let lookup = "funktion;art;erp_konto;erp_dimensioner\n5.57.72;5.2;5572;\n";
        let mapping = set(&[(RULES_FILE, &rules), ("liste.csv", lookup)]).unwrap();
        let sortiment = crate::domain::sortiment::parse_sortiment_file(
            "s.toml",
            "[[afsender]]\nsystem = \"6f1c0a7e-3b7a-4d3c-9a55-2f0b8d1e4c01\"\nnavn = \"KY\"\nmyndighed = \"29189846\"\ngyldig_fra = \"2024-01-01\"\n\
             integrationer = [\"SF1590_A\"]\n[[afsender.kontering]]\nfunktion = \"5.57.72\"\ndranst = [\"1\", \"2\"]\nart = [\"5.2\", \"7.2\"]\n",
        )
        .unwrap();
        let sortiment = crate::domain::sortiment::Sortiment::new(1, sortiment);
        let warnings = mapping.warnings(Some(&sortiment));
        // In the table: mapped; not in it but dranst 2: the next rule maps it; dranst 1, art 7.2: nothing does.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("dranst 1, art 7.2"), "{warnings:?}");
        assert!(mapping.map(&kontering("5.57.72", "1", "7.2")).is_none(), "as mapping itself has it");
    }

    #[test]
    fn a_byte_order_mark_before_a_comment_line_is_not_read_as_the_header() {
        let rules = format!("\u{feff}# saved by an editor that writes a BOM\n{HEADER}*;*;*;;9999;\n");
        let mapping = set(&[(RULES_FILE, &rules)]).unwrap();
        assert_eq!(mapping.map(&kontering("5.57.72", "1", "5.2")).unwrap().rule, "konti.csv:3");
    }

    #[test]
    fn claim_types_map_in_order() {
        let claims = "fordringstype;erp_fordringstype;erp_konto\nKONTANT-TILB;DEB-KH;55772900\nRENTE-*;DEB-RENTE;\n";
        let mapping = set(&[(RULES_FILE, HEADER), (CLAIM_TYPES_FILE, claims)]).unwrap();
        let hit = mapping.map_claim_type("KONTANT-TILB").unwrap();
        assert_eq!(
            (hit.claim_type.as_str(), hit.account.as_deref(), hit.rule.as_str()),
            ("DEB-KH", Some("55772900"), "fordringstyper.csv:2")
        );
        assert_eq!(mapping.map_claim_type("RENTE-KH").unwrap().account, None);
        assert!(mapping.map_claim_type("BOEDE").is_none());
    }

    #[test]
    fn no_rule_no_mapping() {
        let mapping = set(&[(RULES_FILE, &format!("{HEADER}5.57.72;1;5.2;;5500;\n"))]).unwrap();
        assert!(mapping.map(&kontering("5.57.72", "2", "5.2")).is_none());
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = set(&[(RULES_FILE, &format!("{HEADER}5.57.72;1;5.2;;5500;\n5.57.72;1;5.2;;opslag:mangler.csv;\n"))]).unwrap_err();
        assert_eq!(err.to_string(), "konti.csv:3: opslagstabellen 'mangler.csv' findes ikke");
        let err = set(&[(RULES_FILE, &format!("{HEADER}5.57.72;1\n"))]).unwrap_err();
        assert_eq!(err.to_string(), "konti.csv:2: rækken har 2 kolonner, men overskriften har 6");
        let err = set(&[(RULES_FILE, &format!("{HEADER}# c\n\n5.57.72;1;5.2;;5500;afd{{x}}\n"))]).unwrap_err();
        assert!(err.to_string().starts_with("konti.csv:4: "), "{err}");
    }

    #[test]
    fn every_error_is_reported_with_its_row_and_later_rows_are_still_checked() {
        let lookup = "funktion;erp_konto;erp_dimensioner\n5.57.72;5572;\n5.57.72;5573;\n";
        let rules = format!("{HEADER}5.57.72;1\n5.57.*;1;5.2;;opslag:liste.csv;\n*;*;*;;;\n*;*;*;;9999;\n");
        let err =
            set(&[(RULES_FILE, &rules), ("liste.csv", lookup), (CLAIM_TYPES_FILE, "fordringstype;erp_fordringstype\nX;\n")]).unwrap_err();
        let places: Vec<(String, u64)> = err.0.iter().map(|e| (e.place().0.to_string(), e.place().1)).collect();
        assert_eq!(
            places,
            vec![("fordringstyper.csv".into(), 2), ("konti.csv".into(), 2), ("konti.csv".into(), 4), ("liste.csv".into(), 3)],
            "{err}"
        );
        assert_eq!(err.0[3].message(), "samme nøgle som linje 2");
    }

    #[test]
    fn the_version_is_the_same_for_the_same_files_and_changes_with_any_byte() {
        let files = |konti: &str| MappingFiles::from([(RULES_FILE.to_string(), konti.to_string())]);
        assert_eq!(version_of(&files(HEADER)), version_of(&files(HEADER)));
        assert_ne!(version_of(&files(HEADER)), version_of(&files(&format!("{HEADER}\n"))));
    }
}
