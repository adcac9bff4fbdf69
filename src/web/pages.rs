//! The HTML of the web page (maud: checked at compile time, every value escaped). Danish, as its users are.

use chrono::NaiveDate;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::login::Viewer;
use super::views::{FilterQuery, TryQuery};
use crate::domain::audit::Role;
use crate::domain::mapping::{Mapped, MappedClaimType, MappingErrors, MappingFiles, MappingSet};
use crate::domain::receipt::Status;
use crate::domain::sortiment::Sortiment;
use crate::storage::inspect::{Booked, DeliveryDetail, DeliverySummary};
use crate::storage::mappings::StoredMapping;

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #fafafa; }
header { background: #0b3d5c; color: white; padding: .6rem 1.2rem; display: flex; gap: 1.4rem; align-items: center; }
header a { color: white; text-decoration: none; } header a:hover { text-decoration: underline; }
header .who { margin-left: auto; display: flex; gap: .8rem; align-items: center; }
main { padding: 1rem 1.4rem; max-width: 1300px; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 1.6rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; background: white; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; font-size: .92rem; }
th { background: #eef2f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.error td { background: #fde8e8; }
.rejected { color: #a40000; font-weight: 600; } .accepted { color: #1f6f1f; font-weight: 600; }
.box { background: white; border: 1px solid #ccc; padding: .8rem 1rem; margin: .6rem 0 1rem; }
.errors { border-color: #a40000; background: #fff5f5; } .ok { border-color: #1f6f1f; background: #f3fbf3; }
form.filters { display: flex; flex-wrap: wrap; gap: .6rem; align-items: end; }
form.filters label, form.try label { display: flex; flex-direction: column; font-size: .85rem; }
form.try { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; }
textarea { width: 100%; font-family: ui-monospace, monospace; font-size: .9rem; }
pre { background: #f4f4f4; padding: .5rem; overflow-x: auto; font-size: .85rem; }
.muted { color: #666; } code { font-size: .9em; }
"#;

fn layout(title: &str, user: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="da" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – fkoeko" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "fkoeko" }
                    @if let Some(user) = user {
                        a href="/afvisninger" { "Afvisninger" }
                        a href="/leverancer" { "Leverancer" }
                        a href="/mapninger" { "Mapninger" }
                        a href="/sortiment" { "Sortiment" }
                        a href="/importtabeller" { "Importtabeller" }
                        a href="/batchfiler" { "Batchfiler" }
                        @if user.role.may(Role::Operator) { a href="/revision" { "Revision" } a href="/opbevaring" { "Opbevaring" } }
                        span.who {
                            span { "Logget ind som " strong { (user.name) } " (" (user.role.label()) ")" }
                            form method="post" action="/logout" { button type="submit" { "Log ud" } }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The login form; after a failed try it keeps the name typed, so only the password is typed again.
pub fn login(next: &str, name: &str, error: Option<&str>, no_users: bool) -> Markup {
    layout(
        "Log ind",
        None,
        html! {
            h1 { "Log ind" }
            @if no_users {
                div.box.errors { "Der er ingen brugere sat op. En driftsansvarlig tilføjer dem i konfigurationen (admin.users) med "
                    code { "fkoeko admin hash-password" } "." }
            }
            @if let Some(error) = error { div.box.errors role="alert" { (error) } }
            form.box method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                p { label { "Brugernavn" br; input name="user" value=(name) autocomplete="username" required autofocus[name.is_empty()]; } }
                p { label { "Adgangskode" br; input name="password" type="password" autocomplete="current-password" required autofocus[!name.is_empty()]; } }
                button type="submit" { "Log ind" }
            }
        },
    )
}

/// What the user's role does not allow: said plainly, and recorded in the audit trail by the caller.
pub fn forbidden(user: &Viewer, what: &str, needed: Role) -> Markup {
    layout(
        "Ikke tilladt",
        Some(user),
        html! {
            h1 { "Ikke tilladt" }
            p { "Din rolle (" (user.role.label()) ") må ikke " (what) "; det kræver rollen " (needed.label()) ". Forsøget er noteret i revisionssporet. En driftsansvarlig kan give dig en anden rolle (admin.users i fkoeko.toml)." }
        },
    )
}

pub fn not_found(user: &Viewer) -> Markup {
    layout("Ikke fundet", Some(user), html! { h1 { "Ikke fundet" } p { "Der er intet her med det navn." } })
}

fn sender_name(sortiment: &Sortiment, system: Option<&str>) -> String {
    let Some(system) = system else { return "ukendt".into() };
    uuid::Uuid::parse_str(system)
        .ok()
        .and_then(|id| sortiment.get(&id))
        .map_or_else(|| system.to_string(), |s| format!("{} ({})", s.name, &system[..8.min(system.len())]))
}

fn select(name: &str, current: &str, options: &[(String, String)]) -> Markup {
    html! {
        select name=(name) {
            option value="" selected[current.is_empty()] { "alle" }
            @for (value, label) in options {
                option value=(value) selected[value == current] { (label) }
            }
        }
    }
}

/// The deliveries of a list, and the error codes each of them got.
pub struct DeliveryRows {
    pub rows: Vec<DeliverySummary>,
    pub codes_of: std::collections::HashMap<i32, Vec<String>>,
}

#[allow(clippy::too_many_arguments)]
pub fn delivery_list(
    user: &Viewer,
    only_rejected: bool,
    query: &FilterQuery,
    found: &DeliveryRows,
    codes: &[String],
    sortiment: &Sortiment,
    limit: usize,
) -> Markup {
    let (title, action) = if only_rejected { ("Afvisninger", "/afvisninger") } else { ("Leverancer", "/leverancer") };
    let senders: Vec<(String, String)> = sortiment.senders().map(|s| (s.system.to_string(), s.name.clone())).collect();
    let integrations =
        vec![("SF1590_A".to_string(), "SF1590_A (Finans)".to_string()), ("SF1590_B".to_string(), "SF1590_B (Debitor)".to_string())];
    let codes: Vec<(String, String)> = codes.iter().map(|c| (c.clone(), c.clone())).collect();
    layout(
        title,
        Some(user),
        html! {
            h1 { (title) }
            @if only_rejected {
                p.muted { "Leverancer med mindst ét afvist finansbilag eller én afvist fordring, nyeste først." }
            }
            form.filters method="get" action=(action) {
                @if !only_rejected {
                    label { "LeveranceId, BilagId eller FordringId" input name="q" value=(query.q) size="40"; }
                }
                label { "Afsender" (select("afsender", &query.afsender, &senders)) }
                label { "Integration" (select("integration", &query.integration, &integrations)) }
                label { "Fejlkode" (select("kode", &query.kode, &codes)) }
                label { "Fra dato" input type="date" name="fra" value=(query.fra); }
                label { "Til dato" input type="date" name="til" value=(query.til); }
                button type="submit" { "Søg" }
            }
            @let rows = &found.rows;
            @if rows.is_empty() {
                p { "Ingen leverancer passer på søgningen." }
            } @else {
                table {
                    thead { tr { th { "Modtaget (UTC)" } th { "LeveranceId" } th { "Integration" } th { "Vej" } th { "Afsender" }
                        th { "Accepteret" } th { "Afvist" } th { "Fejlkoder" } th { "Mapning" } } }
                    tbody {
                        @for row in rows {
                            tr {
                                td { (row.received_at.format("%Y-%m-%d %H:%M:%S")) }
                                td { a href={ "/leverancer/" (row.id) } { (row.leverance_id.as_deref().unwrap_or("(ikke læsbar)")) } }
                                td { (row.integration) }
                                td { (row.transport) }
                                td { (sender_name(sortiment, row.sender.as_deref())) }
                                td.num { (row.accepted) }
                                td.num.rejected[row.rejected > 0] { (row.rejected) }
                                td { @for code in found.codes_of.get(&row.id).into_iter().flatten() { code { (code) } " " } }
                                td { code { (row.mapping_version.as_deref().unwrap_or("-")) } }
                            }
                        }
                    }
                }
                @if let (true, Some(last)) = (rows.len() >= limit, rows.last()) {
                    @let next = serde_urlencoded::to_string([
                        ("q", query.q.as_str()), ("afsender", &query.afsender), ("integration", &query.integration),
                        ("kode", &query.kode), ("fra", &query.fra), ("til", &query.til), ("foer", &last.id.to_string()),
                        ("antal", &limit.to_string()),
                    ]).expect("strings encode");
                    p { a #older href={ (action) "?" (next) } { "Vis ældre" } }
                }
            }
        },
    )
}

pub fn delivery(user: &Viewer, detail: &DeliveryDetail, sortiment: &Sortiment) -> Markup {
    let s = &detail.summary;
    let title = format!("Leverance {}", s.leverance_id.as_deref().unwrap_or("(ikke læsbar)"));
    layout(
        &title,
        Some(user),
        html! {
            h1 { (title) }
            table {
                tr { th { "Modtaget (UTC)" } td { (s.received_at.format("%Y-%m-%d %H:%M:%S")) } }
                tr { th { "Integration" } td { (s.integration) } }
                tr { th { "Vej" } td { (s.transport) @if let Some(file) = &detail.file_name { " – fil " code { (file) } } } }
                @if let Some(t) = &detail.receipt_transfer {
                    tr { th { "Kvitteringsfil" } td {
                        code { (t.receipt_name) } " – " (transfer_state(t.state)) ", " (t.attempts) " forsøg"
                        @if let Some(e) = &t.last_error { " – sidste fejl: " (e) }
                    } }
                }
                tr { th { "Afsender" } td { (sender_name(sortiment, s.sender.as_deref())) } }
                @if !detail.context.is_empty() {
                    @let c = &detail.context;
                    tr { th { "Serviceplatformens kontekst" } td {
                        @for (label, value) in [("TransactionUUID", &c.transaction_uuid), ("UserSystemUUID", &c.user_system_uuid),
                            ("MunicipalityCVR", &c.municipality_cvr), ("CallersServiceCallIdentifier", &c.call_identifier),
                            ("AccountingInfo", &c.accounting_info)] {
                            @if let Some(value) = value { div { (label) ": " code { (value) } } }
                        }
                    } }
                }
                tr { th { "Mapningsversion" } td { code { (s.mapping_version.as_deref().unwrap_or("-")) } } }
                tr { th { "Accepteret / afvist" } td { (s.accepted) " / " span.rejected[s.rejected > 0] { (s.rejected) } } }
            }
            @if detail.items.len() < detail.items_total {
                p.muted { "Viser de første " (detail.items.len()) " af " (detail.items_total) " kvitteringer, i leverancens rækkefølge." }
            }
            @for item in &detail.items {
                @let r = &item.receipt;
                h2 {
                    (r.reference) " – "
                    @if r.status == Status::Accepteret { span.accepted { "Accepteret" } } @else { span.rejected { "Afvist" } }
                }
                p.muted { "KvitteringId " code { (r.id) } " · behandlet " (r.processed_at)
                    @if let Some(erp) = &r.erp_reference { " · ERP-reference " code { (erp) } } }
                @if !r.errors.is_empty() {
                    table {
                        thead { tr { th { "Kode" } th { "Tekst" } th { "Sti" } th { "Linje" } th { "Kolonne" } th { "Værdi" } } }
                        tbody {
                            @for e in &r.errors {
                                tr.error {
                                    td { code { (e.code.as_str()) } }
                                    td { (e.text) }
                                    td { code { (e.path.as_deref().unwrap_or("")) } }
                                    td.num { (e.line.map(|l| l.to_string()).unwrap_or_default()) }
                                    td.num { (e.col.map(|c| c.to_string()).unwrap_or_default()) }
                                    td { (e.value.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
                @match &item.booked {
                    Some(Booked::Journal { journal_id, mapping_version, status, lines }) => {
                        p { "Bogført i " code { "erp_journal" } " som id " (journal_id) " (status " (status) "), mapningsversion " code { (mapping_version) } }
                        table {
                            thead { tr { th { "Linje" } th { "PosteringId" } th { "Kontering (modtaget)" } th { "ERP-konto" } th { "Dimensioner" }
                                th { "Beløb" } th { "D/K" } th { "Regel" } } }
                            tbody {
                                @for l in lines {
                                    tr {
                                        td.num { (l.line_no) } td.num { (l.posting_id) }
                                        td { code { (l.funktion) " / " (l.dranst) " / " (l.art) } }
                                        td { code { (l.account) } } td { code { (l.dimensions) } }
                                        td.num { (l.amount) } td { (l.debit_credit) } td { code { (l.rule) } }
                                    }
                                }
                            }
                        }
                    }
                    Some(Booked::Claim { claim_id, claim_type, account, principal, rules, mapping_version, status, parties }) => {
                        p { "Overtaget i " code { "erp_claims" } " som id " (claim_id) " (status " (status) "), mapningsversion " code { (mapping_version) } }
                        table {
                            tr { th { "ERP-fordringstype" } td { code { (claim_type) } } }
                            tr { th { "ERP-konto" } td { code { (account.as_deref().unwrap_or("-")) } } }
                            tr { th { "Hovedstol" } td.num { (principal) } }
                            tr { th { "Regler" } td { code { (rules) } } }
                        }
                        table {
                            thead { tr { th { "Hæfter" } th { "Rolle" } th { "Navn" } th { "ERP-debitornummer" } } }
                            tbody {
                                @for p in parties {
                                    tr {
                                        td { (p.identifier_type) " " code { (p.identifier) } } td { (p.role) } td { (p.name) }
                                        td { (p.erp_debtor_number.as_deref().unwrap_or("ny debitor")) }
                                    }
                                }
                            }
                        }
                    }
                    None => {}
                }
            }
        },
    )
}

/// What "try it" found.
pub enum TryOutcome {
    Nothing,
    Kontering(Result<Option<Mapped>, Vec<String>>),
    ClaimType(String, Option<MappedClaimType>),
}

impl TryOutcome {
    pub fn of(set: &MappingSet, kontering: Option<&crate::domain::mapping::KonteringInput>, fordringstype: &str) -> Self {
        if let Some(input) = kontering {
            TryOutcome::Kontering(set.try_kontering(input))
        } else if !fordringstype.trim().is_empty() {
            TryOutcome::ClaimType(fordringstype.trim().to_string(), set.map_claim_type(fordringstype.trim()))
        } else {
            TryOutcome::Nothing
        }
    }
}

/// A file's lines as a table, with the rows that have errors marked and the error beside them.
fn file_table(name: &str, content: &str, errors: Option<&MappingErrors>) -> Markup {
    let errors_at = |line: u64| -> Vec<String> {
        errors.map_or_else(Vec::new, |e| e.0.iter().filter(|e| e.place() == (name, line)).map(|e| e.message()).collect())
    };
    let whole_file = errors_at(0);
    html! {
        h2 { code { (name) } }
        @for message in &whole_file { div.box.errors { (message) } }
        table data-file=(name) {
            @for (index, text) in content.lines().enumerate() {
                @let line = index as u64 + 1;
                @let here = errors_at(line);
                @if !text.trim().is_empty() {
                    tr.error[!here.is_empty()] data-line=(line) {
                        td.num.muted { (line) }
                        @if text.trim_start().starts_with('#') {
                            td.muted colspan="8" { (text) }
                        } @else if !name.ends_with(".csv") {
                            // The target profile (TOML): a line is one setting, shown whole.
                            td colspan="8" { code { (text) } }
                        } @else {
                            // A line the CSV reader cannot split is shown whole; its error is beside it.
                            @match crate::domain::mapping::cells_of(text) {
                                Ok(cells) => { @for cell in cells { td { (cell) } } }
                                Err(_) => { td colspan="8" { (text) } }
                            }
                        }
                        @if !here.is_empty() { td { strong { (here.join("; ")) } } }
                    }
                }
            }
        }
    }
}

fn try_form(fields: &TryQuery) -> Markup {
    let k = &fields.kontering;
    html! {
        h2 { "Prøv en kontering" }
        form.try method="get" action="/mapninger" {
            label { "Funktion" input name="funktion" value=(k.funktion) placeholder="5.57.72" size="9"; }
            label { "Gruppering" input name="gruppering" value=(k.gruppering) size="5"; }
            label { "Dranst" input name="dranst" value=(k.dranst) placeholder="1" size="3"; }
            label { "Ejerforhold" input name="ejerforhold" value=(k.ejerforhold) size="3"; }
            label { "Art" input name="art" value=(k.art) placeholder="5.2" size="5"; }
            label { "Omkostningssted" input name="omkostningssted" value=(k.omkostningssted) size="10"; }
            label { "PSP-element" input name="pspelement" value=(k.psp_element) size="10"; }
            label { "Dimensioner (NAVN=VÆRDI, …)" input name="dimensioner" value=(k.dimensions) size="20"; }
            button type="submit" { "Prøv" }
        }
        h2 { "Prøv en fordringstype" }
        form.try method="get" action="/mapninger" {
            label { "Fordringstype" input name="fordringstype" value=(fields.fordringstype) size="20"; }
            button type="submit" { "Prøv" }
        }
    }
}

fn try_result(tried: &TryOutcome) -> Markup {
    html! {
        @match tried {
            TryOutcome::Nothing => {}
            TryOutcome::Kontering(Err(errors)) => div.box.errors #try-result { "Konteringen kan ikke læses: " (errors.join("; ")) }
            TryOutcome::Kontering(Ok(None)) => div.box.errors #try-result { "Ingen regel mapper denne kontering (den ville blive afvist med MAPNING_MANGLER)." }
            TryOutcome::Kontering(Ok(Some(m))) => div.box.ok #try-result {
                "Mappes af " code { (m.rule) } " til ERP-konto " strong { code { (m.account) } }
                @if !m.dimensions.is_empty() {
                    " med dimensionerne "
                    code { (m.dimensions.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(", ")) }
                }
            }
            TryOutcome::ClaimType(code, None) => div.box.errors #try-result { "Ingen række i fordringstyper.csv mapper " code { (code) } "." }
            TryOutcome::ClaimType(code, Some(t)) => div.box.ok #try-result {
                code { (code) } " mappes af " code { (t.rule) } " til ERP-fordringstype " strong { code { (t.claim_type) } }
                @if let Some(account) = &t.account { " og ERP-konto " strong { code { (account) } } }
            }
        }
    }
}

fn version_line(stored: &StoredMapping) -> Markup {
    html! {
        "Version " strong { (stored.id) } " (" code { (stored.version) } "), gemt " (stored.created_at.format("%Y-%m-%d %H:%M:%S")) " UTC af "
        strong { (stored.author) } " (" (stored.source) "): " (stored.comment)
    }
}

pub fn mappings(user: &Viewer, stored: &StoredMapping, fields: &TryQuery, tried: &TryOutcome, warnings: &[String]) -> Markup {
    layout(
        "Mapninger",
        Some(user),
        html! {
            h1 { "Mapninger" }
            p { (version_line(stored)) }
            @if user.role.may(Role::Mapping) {
                p { a href="/mapninger/ret" { "Ret mapningerne" } " · " a href="/mapninger/historik" { "Historik og tilbagerulning" } }
            } @else {
                p { a href="/mapninger/historik" { "Historik" } }
            }
            @if !warnings.is_empty() {
                div.box.errors #mapping-warnings {
                    strong { "Advarsler (" (warnings.len()) "): versionen er i brug, men:" }
                    ul { @for w in warnings { li { (w) } } }
                }
            }
            (try_form(fields))
            (try_result(tried))
            p.muted { "Reglerne i konti.csv læses oppefra; den første regel, der passer, bestemmer. En celle er en præcis værdi, et mønster (5.57.*) eller tom/* for alt. "
                code { "opslag:FIL.csv" } " slår op i en tabel på det sted i rækkefølgen." }
            @for (name, content) in &stored.files { (file_table(name, content, None)) }
        },
    )
}

/// What an edit came to, for the edit page.
pub enum EditOutcome {
    Fresh,
    Saved(i64),
    Invalid {
        files: MappingFiles,
        comment: String,
        errors: MappingErrors,
    },
    /// Someone saved another version after this edit began.
    Moved {
        base: i64,
        current: i64,
    },
    BadName(String),
}

pub fn edit_mappings(user: &Viewer, base: i64, files: &MappingFiles, comment: &str, outcome: &EditOutcome) -> Markup {
    let errors = match outcome {
        EditOutcome::Invalid { errors, .. } => Some(errors),
        _ => None,
    };
    layout(
        "Ret mapninger",
        Some(user),
        html! {
            h1 { "Ret mapninger" }
            @match outcome {
                EditOutcome::Invalid { errors, .. } => div.box.errors role="alert" #edit-errors {
                    strong { "Ændringen er ikke gemt: " (errors.0.len()) " fejl. Versionen i brug er uændret." }
                    ul { @for e in &errors.0 { li { code { (e.place().0) } ", linje " (e.place().1) ": " (e.message()) } } }
                }
                EditOutcome::Moved { base, current } => div.box.errors role="alert" #edit-errors {
                    "Ændringen er ikke gemt: nogen har gemt version " (current) ", efter du begyndte at rette version " (base) ". Her er den nye version; ret den igen."
                }
                EditOutcome::BadName(why) => div.box.errors role="alert" #edit-errors { "Ændringen er ikke gemt: " (why) "." }
                EditOutcome::Fresh | EditOutcome::Saved(_) => {}
            }
            form #edit method="post" action="/mapninger/ret" {
                input type="hidden" name="base" value=(base);
                @for (name, content) in files {
                    h2 { code { (name) } }
                    textarea name={ "fil:" (name) } rows=(content.lines().count().clamp(4, 30) + 2) spellcheck="false" { (content) }
                }
                h2 { "Ny opslagstabel" }
                p.muted { "Et navn som " code { "boligstoette.csv" } " og indholdet; konti.csv henviser til den med " code { "opslag:NAVN.csv" } ". "
                    "En fil, hvis indhold slettes helt ovenfor, fjernes." }
                p { label { "Filnavn" br; input name="ny_fil_navn" size="30" pattern="[A-Za-z0-9_.-]+[.]csv"; } }
                textarea name="ny_fil_indhold" rows="4" spellcheck="false" {}
                p { label { "Hvad og hvorfor (gemmes i historikken)" br; input name="comment" value=(comment) size="80"; } }
                p { label { input type="checkbox" name="tillad_tom" value="ja";
                    " Gem også, hvis konti.csv eller fordringstyper.csv ikke har en eneste regel (alt vil så blive afvist med MAPNING_MANGLER)" } }
                button type="submit" { "Tjek og gem" }
                " " a href="/mapninger" { "Fortryd" }
            }
            @if let Some(errors) = errors {
                h2 { "Fejlene ved rækkerne" }
                @for (name, content) in files {
                    @if errors.0.iter().any(|e| e.place().0 == name) { (file_table(name, content, Some(errors))) }
                }
            }
        },
    )
}

/// What changed from one version to the next, file by file, as a unified diff.
fn diff(older: Option<&StoredMapping>, newer: &StoredMapping) -> String {
    let empty = MappingFiles::new();
    let old = older.map_or(&empty, |o| &o.files);
    let mut names: Vec<&String> = old.keys().chain(newer.files.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = String::new();
    for name in names {
        let (a, b) = (old.get(name).map_or("", String::as_str), newer.files.get(name).map_or("", String::as_str));
        if a != b {
            let text = similar::TextDiff::from_lines(a, b);
            out.push_str(&text.unified_diff().context_radius(1).header(name, name).to_string());
        }
    }
    out
}

pub fn mapping_history(user: &Viewer, history: &[StoredMapping]) -> Markup {
    let current = history.first().map(|h| h.id);
    layout(
        "Mapningshistorik",
        Some(user),
        html! {
            h1 { "Mapningshistorik" }
            p.muted { "Hver gemt ændring, nyeste først. En tilbagerulning gemmer den gamle version som en ny version, så intet forsvinder." }
            // The last entry, when there are 51, is only there to show what the 50th changed.
            @for (i, version) in history.iter().enumerate().take(50) {
                div.box data-version=(version.id) {
                    p { (version_line(version)) @if Some(version.id) == current { " – " strong { "i brug" } } }
                    pre { (diff(history.get(i + 1), version)) }
                    @if Some(version.id) != current && user.role.may(Role::Mapping) {
                        form method="post" action={ "/mapninger/historik/" (version.id) "/rul-tilbage" } {
                            button type="submit" { "Rul tilbage til version " (version.id) }
                        }
                    }
                }
            }
        },
    )
}

pub fn sortiment(user: &Viewer, sortiment: &Sortiment, today: NaiveDate) -> Markup {
    layout(
        "Sortiment",
        Some(user),
        html! {
            h1 { "Sortiment" }
            p.muted { "Version " (sortiment.version) " i brug. Ændres med " code { "fkoeko sortiment load FIL" } "." }
            @for sender in sortiment.senders() {
                @let valid = sender.valid_from <= today && sender.valid_to.is_none_or(|to| today <= to);
                div.box {
                    h2 { (sender.name) " " span.accepted[valid] .rejected[!valid] { @if valid { "(gyldig)" } @else { "(ikke gyldig i dag)" } } }
                    table {
                        tr { th { "AfsenderSystem" } td { code { (sender.system) } } }
                        tr { th { "Myndighed" } td { (sender.authority.as_str()) } }
                        tr { th { "Gyldig" } td { (sender.valid_from) " – " (sender.valid_to.map(|d| d.to_string()).unwrap_or_else(|| "uden slut".into())) } }
                        tr { th { "Ejere (får advarsler)" } td { (sender.owners.join(", ")) @if !sender.alerts { " – advarsler slået fra" } } }
                        tr { th { "Integrationer" } td { (sender.integrations.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")) } }
                        @if !sender.certificates.is_empty() { tr { th { "Certifikater" } td { (sender.certificates.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) } } }
                        @if !sender.sftp_users.is_empty() { tr { th { "SFTP-brugere" } td { (sender.sftp_users.join(", ")) } } }
                    }
                    @if !sender.konteringer.is_empty() {
                        table {
                            thead { tr { th { "Funktion" } th { "Dranst" } th { "Art" } } }
                            tbody { @for k in &sender.konteringer { tr { td { (k.funktion.join(", ")) } td { (k.dranst.join(", ")) } td { (k.art.join(", ")) } } } }
                        }
                    }
                    @if !sender.claim_types.is_empty() {
                        table {
                            thead { tr { th { "Fordringstype" } th { "Kræver" } } }
                            tbody { @for t in &sender.claim_types { tr { td { code { (t.code) } }
                                td { (t.required.iter().map(|r| r.describe()).collect::<Vec<_>>().join(", ")) } } } }
                        }
                    }
                }
            }
        },
    )
}

/// A receipt file's way back, in words for the page.
fn transfer_state(state: crate::storage::text::TransferState) -> &'static str {
    use crate::storage::text::TransferState;
    match state {
        TransferState::Written => "venter på at blive sendt",
        TransferState::Sent => "sendt, venter på Serviceplatformens svar",
        TransferState::Delivered => "leveret",
        TransferState::Failed => "IKKE leveret efter sidste forsøg",
    }
}

/// The ERP's import tables and files: the profile in force, what waits for a file, and a delivery tried.
/// How the copying to the ERP's tables, files and databases stands.
pub struct TargetState {
    pub backlog: crate::storage::targets::Backlog,
    /// By this instance, since it started.
    pub files_written: u64,
    /// Rows copied by this instance since it started, by database.
    pub forwarded: Vec<(String, u64)>,
    pub warnings: Vec<String>,
}

pub fn targets(
    user: &Viewer,
    mappings: &MappingSet,
    state: &TargetState,
    tried: &super::views::TargetTry,
    preview: Option<&[crate::pipeline::TargetPreview]>,
) -> Markup {
    use crate::domain::target::Shown;
    let TargetState { backlog, files_written, forwarded, warnings } = state;
    layout(
        "Importtabeller",
        Some(user),
        html! {
            h1 { "ERP-systemets importtabeller og -filer" }
            @if mappings.profile.is_none() {
                p { "Mapningsversion " (mappings.version) " har ingen målprofil (" code { (crate::domain::target::PROFILE_FILE) } "): accepterede bilag og fordringer skrives kun i adapterens egne importtabeller (erp_journal, erp_claims m.fl.)." }
            } @else {
                p { "Mapningsversion " (mappings.version) " skriver også efter målprofilen " code { (crate::domain::target::PROFILE_FILE) } " (ret den under " a href="/mapninger/ret" { "Mapninger" } ")." }
            }
            @if !warnings.is_empty() {
                div.box.errors #target-warnings { ul { @for w in warnings { li { (w) } } } }
            }
            table #target-backlog {
                tr { th { "Rækker, der venter på deres fil eller på at blive kopieret til ERP-systemets database" } td.num { (backlog.rows) } }
                tr { th { "Den ældste venter siden" } td { (backlog.oldest.map(|o| format!("{} UTC", o.format("%Y-%m-%d %H:%M:%S"))).unwrap_or_else(|| "–".into())) } }
                tr { th { "Filer påbegyndt, ikke færdige" } td.num { (backlog.files_unfinished) } }
                tr { th { "Rækker afvist af ERP-systemets database, sat til side" } td.num { (backlog.parked) } }
                tr { th { "Filer skrevet af denne instans siden start" } td.num { (files_written) } }
                @for (database, copied) in forwarded {
                    tr { th { "Rækker kopieret til databasen '" (database) "' af denne instans siden start" } td.num { (copied) } }
                }
            }
            h2 { "Prøv en leverance" }
            p.muted { "Indsæt et kald (SOAP eller ModtagFinansbilag/ModtagFordring): det vurderes som ved modtagelse, men intet gemmes, og tidligere leverancer ses ikke. Id'er, der først gives ved bogføring, vises som «ved bogføring», og CPR-numre maskeret (ERP-systemet får dem hele)." }
            form.try method="post" action="/importtabeller" {
                label { "Integration"
                    select name="integration" {
                        option value="SF1590_A" selected[tried.integration != "SF1590_B"] { "SF1590_A (finansbilag)" }
                        option value="SF1590_B" selected[tried.integration == "SF1590_B"] { "SF1590_B (fordringer)" }
                    }
                }
                textarea name="leverance" rows="10" { (tried.leverance) }
                button type="submit" { "Prøv" }
            }
            @if let Some(preview) = preview {
                @for item in preview {
                    h2 { (item.reference) " "
                        @if item.errors.is_empty() { span.accepted { "accepteres" } } @else { span.rejected { "afvises" } } }
                    @if !item.errors.is_empty() { ul { @for e in &item.errors { li { (e) } } } }
                    @if item.errors.is_empty() && item.rows.is_empty() { p.muted { "Ingen rækker: profilen har intet mål for denne slags post." } }
                    @for (target, columns, values) in &item.rows {
                        table.target-row {
                            tr { th colspan=(columns.len()) { (target) } }
                            tr { @for c in columns { th { (c) } } }
                            tr { @for v in values { td { @match v {
                                Shown::Text(text) => (text),
                                Shown::Empty => span.muted { "(tom)" },
                                Shown::Key => span.muted { "«ved bogføring»" },
                            } } } }
                        }
                    }
                }
            }
        },
    )
}

/// The audit trail, newest first, with its filters.
pub fn audit(user: &Viewer, rows: &[crate::storage::audit::AuditRow], filter: &super::views::AuditQuery) -> Markup {
    use crate::domain::audit::AuditAction;
    layout(
        "Revision",
        Some(user),
        html! {
            h1 { "Revisionsspor" }
            p.muted { "Hvem gjorde hvad, hvornår og hvorfra: logins (også de forkerte), ændringer af mapninger og sortiment, og hvad en rolle ikke måtte. Nyeste først; højst " (AUDIT_LIMIT) " ad gangen. Også med " code { "fkoeko audit list" } "." }
            form.filters method="get" action="/revision" {
                label { "Bruger" input name="bruger" value=(filter.bruger.as_deref().unwrap_or("")); }
                label { "Handling"
                    select name="handling" {
                        option value="" { "alle" }
                        @for action in AuditAction::ALL {
                            option value=(action.as_str()) selected[filter.handling.as_deref() == Some(action.as_str())] { (action.label()) }
                        }
                    }
                }
                label { "Fra" input type="date" name="fra" value=(filter.fra.map(|d| d.to_string()).unwrap_or_default()); }
                label { "Til" input type="date" name="til" value=(filter.til.map(|d| d.to_string()).unwrap_or_default()); }
                button type="submit" { "Vis" }
            }
            table #audit {
                tr { th { "Tidspunkt (UTC)" } th { "Bruger" } th { "Handling" } th { "Hvad" } th { "Hvorfra" } }
                @for row in rows {
                    tr.error[row.action.starts_with("login_") || row.action == "refused"] {
                        td { (row.at.format("%Y-%m-%d %H:%M:%S")) }
                        td { (row.actor) }
                        td { (AuditAction::parse(&row.action).map_or(row.action.as_str(), |a| a.label())) }
                        td { (row.detail) }
                        td { (row.origin.as_deref().unwrap_or("")) }
                    }
                }
            }
        },
    )
}

/// Entries shown on the audit page at most.
pub const AUDIT_LIMIT: i64 = 500;

/// The latest batch files: how far each came; an operator may take one that is not done over at once.
pub fn batch_files(user: &Viewer, files: &[crate::storage::batch::BatchFile], released: Option<&str>) -> Markup {
    let now = chrono::Utc::now().naive_utc();
    layout(
        "Batchfiler",
        Some(user),
        html! {
            h1 { "Batchfiler" }
            @if let Some(name) = released {
                div.box.ok { (name) " er frigivet: den næste runde tager den over og fortsætter fra sidste gemte del (eller skriver dens kvitteringsfil igen)." }
            }
            p.muted { "De seneste filer, nyeste først. En fil, der ikke er færdig, og hvis ejer ikke har fornyet sin lejekontrakt, tages over af næste runde; en driftsansvarlig kan tage den over med det samme (også " code { "fkoeko batch take-over ID" } ")." }
            table #batch-files {
                tr { th { "Id" } th { "Modtaget (UTC)" } th { "Integration" } th { "Tilstand" } th { "Behandlet" } th { "Accepteret" } th { "Afvist" } th { "Ejer" } th { "Fil" } th {} }
                @for file in files {
                    @let done = file.state == crate::storage::text::BatchState::Done;
                    tr.error[!done && file.lease_until < now] data-batch=(file.id) {
                        td.num { (file.id) }
                        td { (file.received_at.format("%Y-%m-%d %H:%M:%S")) }
                        td { (file.integration.as_str()) }
                        td { (crate::storage::text::Named::name(file.state)) }
                        td.num { (file.items_done) " / " (file.items_total.map_or("?".to_string(), |t| t.to_string())) }
                        td.num { (file.accepted_count) }
                        td.num { (file.rejected_count) }
                        td { @if !done { (file.claimed_by) " til " (file.lease_until.format("%H:%M:%S")) } }
                        td { (file.file_name) }
                        td { @if user.role.may(Role::Operator) {
                            @if done {
                                form method="post" action={ "/batchfiler/" (file.id) "/kvittering" } { button type="submit" { "Skriv kvitteringsfil igen" } }
                            } @else {
                                form method="post" action={ "/batchfiler/" (file.id) "/tag-over" } { button type="submit" { "Tag over nu" } }
                            }
                        } }
                    }
                }
            }
        },
    )
}

/// The retention periods in force, what a purge would take now, and (operators) the button that purges.
pub fn retention(
    user: &Viewer,
    periods: &crate::domain::retention::Retention,
    outcomes: &[crate::retention::Outcome],
    purged: Option<u64>,
) -> Markup {
    use crate::domain::retention::DataKind;
    layout(
        "Opbevaring",
        Some(user),
        html! {
            h1 { "Opbevaring" }
            @if let Some(rows) = purged {
                div.box.ok { (rows) " rækker/filer er slettet eller pseudonymiseret. Hver slags står i revisionssporet." }
            }
            p.muted { "Perioderne sættes af kommunen som dataansvarlig i konfigurationens " code { "[retention]" } ". Det, der er ældre, slettes eller pseudonymiseres dagligt af tjenesten, med " code { "fkoeko purge" } " eller her. Accepterede kvitteringer bevares med deres indholdshash, så et BilagId eller FordringId sendt igen får sin første kvittering (eller DUBLET_AFVIGENDE)." }
            table #retention {
                tr { th { "Data" } th { "Periode" } th { "Hvad sker der" } th { "Nu over perioden" } }
                @for kind in DataKind::ALL {
                    tr data-kind=(kind.key()) {
                        td { (kind.label()) }
                        td { @match periods.days(kind) { Some(days) => { (days.get()) " dage" }, None => { "gemmes" } } }
                        td { (kind.action()) }
                        td.num { @if let Some(outcome) = outcomes.iter().find(|o| o.rule.kind == kind) { (outcome.rows) } }
                    }
                }
            }
            @if !outcomes.is_empty() {
                form method="post" action="/opbevaring/slet" { button type="submit" { "Slet nu" } }
            }
        },
    )
}
