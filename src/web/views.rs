//! The pages finance staff use: rejections and deliveries, the mappings (try, edit, history, roll back) and the
//! sortiment.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::login::{peer, same_origin, LoggedIn, Viewer};
use super::{blocking, failure, html, page, pages, see_other, State};
use crate::domain::audit::Role;
use crate::domain::mapping::{KonteringInput, MappingFiles};
use crate::pipeline::MappingChange;
use crate::storage::batch::Reprocess;
use crate::storage::inspect::DeliveryFilter;
use crate::storage::mappings::MappingSource;

/// The filter fields of the lists, as they come in the query string.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(crate) struct FilterQuery {
    pub(crate) q: String,
    pub(crate) afsender: String,
    pub(crate) integration: String,
    pub(crate) kode: String,
    pub(crate) fra: String,
    pub(crate) til: String,
    /// The next page: deliveries older than this id.
    pub(crate) foer: Option<i32>,
    /// Rows per page, at most `LIST_LIMIT`.
    pub(crate) antal: Option<i64>,
}

impl FilterQuery {
    fn filter(&self, only_rejected: bool) -> DeliveryFilter {
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok();
        DeliveryFilter {
            text: some(&self.q),
            sender: some(&self.afsender),
            integration: some(&self.integration),
            code: some(&self.kode),
            from: day(&self.fra),
            to: day(&self.til),
            only_rejected,
            before: self.foer,
        }
    }
}

const LIST_LIMIT: i64 = 200;

pub(super) async fn delivery_list(
    user: Viewer,
    query: web::Query<FilterQuery>,
    state: web::Data<State>,
    only_rejected: bool,
) -> HttpResponse {
    let query = query.into_inner();
    let (app, filter) = (state.app.clone(), query.filter(only_rejected));
    let limit = query.antal.unwrap_or(LIST_LIMIT).clamp(1, LIST_LIMIT);
    let found = blocking(move || {
        let rows = app.db.find_deliveries(&filter, limit)?;
        let codes_of = app.db.error_codes_of(&rows.iter().map(|r| r.id).collect::<Vec<_>>())?;
        let codes = app.db.error_codes_seen()?;
        let sortiment = app.pipeline.sortiment()?;
        Ok((pages::DeliveryRows { rows, codes_of }, codes, sortiment))
    })
    .await;
    match found {
        Ok((rows, codes, sortiment)) => html(pages::delivery_list(&user, only_rejected, &query, &rows, &codes, &sortiment, limit as usize)),
        Err(response) => response,
    }
}

pub(super) async fn rejections(LoggedIn(user): LoggedIn, query: web::Query<FilterQuery>, state: web::Data<State>) -> HttpResponse {
    delivery_list(user, query, state, true).await
}

pub(super) async fn deliveries(LoggedIn(user): LoggedIn, query: web::Query<FilterQuery>, state: web::Data<State>) -> HttpResponse {
    delivery_list(user, query, state, false).await
}

pub(super) async fn delivery(LoggedIn(user): LoggedIn, key: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    let app = state.app.clone();
    let key = key.into_inner();
    match blocking(move || Ok((app.db.delivery_detail(&key)?, app.pipeline.sortiment()?))).await {
        Ok((Some(detail), sortiment)) => html(pages::delivery(&user, &detail, &sortiment)),
        Ok((None, _)) => page(StatusCode::NOT_FOUND, pages::not_found(&user)),
        Err(response) => response,
    }
}

/// The "try it" fields: a kontering, or a fordringstype.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct TryQuery {
    #[serde(flatten)]
    pub(crate) kontering: KonteringInput,
    pub(crate) fordringstype: String,
}

pub(super) async fn mappings(LoggedIn(user): LoggedIn, query: web::Query<TryQuery>, state: web::Data<State>) -> HttpResponse {
    let app = state.app.clone();
    let found = blocking(move || {
        let (stored, set) = crate::pipeline::in_force(&app.db, &app.config.targets)?;
        let warnings = set.warnings(app.pipeline.sortiment().ok().as_deref());
        Ok((stored, set, warnings))
    });
    match found.await {
        Ok((stored, set, warnings)) => {
            let kontering = query.kontering.is_given().then_some(&query.kontering);
            let tried = pages::TryOutcome::of(&set, kontering, &query.fordringstype);
            html(pages::mappings(&user, &stored, &query, &tried, &warnings))
        }
        Err(response) => response,
    }
}

pub(super) async fn edit_mappings_page(logged_in: LoggedIn, req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let user = match logged_in.may(Role::Mapping, "ret mapningerne", &req, &state).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let app = state.app.clone();
    match blocking(move || Ok(crate::pipeline::in_force(&app.db, &app.config.targets)?.0)).await {
        Ok(stored) => html(pages::edit_mappings(&user, stored.id, &stored.files, "", &pages::EditOutcome::Fresh)),
        Err(response) => response,
    }
}

pub(super) async fn edit_mappings(
    logged_in: LoggedIn,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
    state: web::Data<State>,
) -> HttpResponse {
    if let Err(refused) = same_origin(&req) {
        return refused;
    }
    let user = match logged_in.may(Role::Mapping, "gem mapninger", &req, &state).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let mut files = MappingFiles::new();
    let (mut comment, mut base, mut new_name, mut new_content) = (String::new(), 0_i64, String::new(), String::new());
    let mut allow_empty = false;
    // Browsers send line ends as CRLF; the files are kept with LF.
    let lf = |text: String| text.replace("\r\n", "\n");
    for (name, value) in form.into_inner() {
        match name.as_str() {
            "comment" => comment = value,
            "base" => base = value.parse().unwrap_or(0),
            "ny_fil_navn" => new_name = value.trim().to_string(),
            "ny_fil_indhold" => new_content = lf(value),
            "tillad_tom" => allow_empty = value == "ja",
            _ => {
                // A file emptied on the page is removed from the version (the check then says if it is needed).
                if let Some(file) = name.strip_prefix("fil:").filter(|_| !value.trim().is_empty()) {
                    files.insert(file.to_string(), lf(value));
                }
            }
        }
    }
    if !new_name.is_empty() {
        if files.contains_key(&new_name) {
            return edit_refused(&state, &user, pages::EditOutcome::BadName(format!("{new_name} findes allerede"))).await;
        }
        files.insert(new_name, new_content);
    }
    let app = state.app.clone();
    let (author, origin) = (user.clone(), peer(&req));
    let outcome = blocking(move || {
        if let Some(bad) = files.keys().find(|n| !crate::domain::mapping::is_mapping_file_name(n)) {
            return Ok(pages::EditOutcome::BadName(format!(
                "{bad} er ikke et gyldigt filnavn (bogstaver, tal, - og _, og .csv til sidst, eller erp-profil.toml)"
            )));
        }
        let comment = if comment.trim().is_empty() { "ændret på siden".to_string() } else { comment.trim().to_string() };
        let origin = origin.as_deref();
        Ok(
            match app.pipeline.change_mappings_from(&files, &author.name, origin, MappingSource::Page, &comment, Some(base), allow_empty)? {
                MappingChange::Invalid(errors) => pages::EditOutcome::Invalid { files, comment, errors },
                MappingChange::Moved(current) => pages::EditOutcome::Moved { base, current },
                MappingChange::Saved(id) | MappingChange::Unchanged(id) => pages::EditOutcome::Saved(id),
            },
        )
    })
    .await;
    match outcome {
        Ok(pages::EditOutcome::Saved(id)) => {
            tracing::info!(user = %user, id, "mapping saved on the web page");
            see_other(&format!("/mapninger?gemt={id}"))
        }
        Ok(ref invalid @ pages::EditOutcome::Invalid { ref files, ref comment, .. }) => {
            page(StatusCode::UNPROCESSABLE_ENTITY, pages::edit_mappings(&user, base, files, comment, invalid))
        }
        Ok(other) => edit_refused(&state, &user, other).await,
        Err(response) => response,
    }
}

/// The edit page again, on the version in force, saying why nothing was saved.
pub(super) async fn edit_refused(state: &web::Data<State>, user: &Viewer, outcome: pages::EditOutcome) -> HttpResponse {
    let app = state.app.clone();
    match blocking(move || Ok(crate::pipeline::in_force(&app.db, &app.config.targets)?.0)).await {
        Ok(stored) => page(StatusCode::CONFLICT, pages::edit_mappings(user, stored.id, &stored.files, "", &outcome)),
        Err(response) => response,
    }
}

pub(super) async fn mapping_history(LoggedIn(user): LoggedIn, state: web::Data<State>) -> HttpResponse {
    let app = state.app.clone();
    // The newest 50, and one more so that the oldest of them has something to compare with.
    match blocking(move || Ok(app.db.mapping_history(51)?)).await {
        Ok(history) => html(pages::mapping_history(&user, &history)),
        Err(response) => response,
    }
}

pub(super) async fn roll_back(logged_in: LoggedIn, req: HttpRequest, id: web::Path<i64>, state: web::Data<State>) -> HttpResponse {
    if let Err(refused) = same_origin(&req) {
        return refused;
    }
    let user = match logged_in.may(Role::Mapping, "rul mapningerne tilbage", &req, &state).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let (app, to, author, origin) = (state.app.clone(), id.into_inner(), user.name.clone(), peer(&req));
    match blocking(move || Ok(app.pipeline.roll_back_mappings_from(to, &author, origin.as_deref())?)).await {
        Ok(Some(MappingChange::Saved(id) | MappingChange::Unchanged(id))) => {
            tracing::info!(user = %user, to, id, "mapping rolled back on the web page");
            see_other(&format!("/mapninger?gemt={id}"))
        }
        // A version that passed once and fails now: only after a program update with stricter checks.
        Ok(Some(MappingChange::Invalid(errors))) => failure(format!("version {to} does not pass the checks now: {errors}")),
        Ok(Some(MappingChange::Moved(_))) => unreachable!("a rollback replaces whatever is in force"),
        Ok(None) => page(StatusCode::NOT_FOUND, pages::not_found(&user)),
        Err(response) => response,
    }
}

pub(super) async fn sortiment(LoggedIn(user): LoggedIn, state: web::Data<State>) -> HttpResponse {
    let app = state.app.clone();
    match blocking(move || Ok(app.pipeline.sortiment()?)).await {
        Ok(sortiment) => html(pages::sortiment(&user, &sortiment, chrono::Utc::now().date_naive())),
        Err(response) => response,
    }
}

/// A delivery to try against the target profile in force.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TargetTry {
    #[serde(default)]
    pub(crate) leverance: String,
    #[serde(default)]
    pub(crate) integration: String,
}

/// The ERP's import tables and files: what the profile in force writes where, what waits for a file, and "Prøv"
/// with a delivery.
pub(super) async fn targets(LoggedIn(user): LoggedIn, state: web::Data<State>) -> HttpResponse {
    targets_page(user, state, TargetTry::default()).await
}

pub(super) async fn try_targets(
    LoggedIn(user): LoggedIn,
    req: HttpRequest,
    form: web::Form<TargetTry>,
    state: web::Data<State>,
) -> HttpResponse {
    if let Err(refused) = same_origin(&req) {
        return refused;
    }
    targets_page(user, state, form.into_inner()).await
}

async fn targets_page(user: Viewer, state: web::Data<State>, tried: TargetTry) -> HttpResponse {
    let app = state.app.clone();
    let found = blocking(move || {
        let mappings = app.pipeline.mappings()?;
        let backlog = app.db.target_backlog()?;
        let warnings = super::ops::target_warnings(&app);
        let preview = if tried.leverance.trim().is_empty() {
            None
        } else {
            let integration = if tried.integration == "SF1590_B" {
                crate::domain::sortiment::Integration::Sf1590B
            } else {
                crate::domain::sortiment::Integration::Sf1590A
            };
            Some(app.pipeline.preview_targets(tried.leverance.as_bytes(), integration)?)
        };
        let written = app.target_files.lock().expect("status lock").files_written;
        let forwarded =
            app.forwarders.lock().expect("status lock").iter().map(|(name, status)| (name.clone(), status.files_written)).collect();
        let state = pages::TargetState { backlog, files_written: written, forwarded, warnings };
        Ok((mappings, state, preview, tried))
    });
    match found.await {
        Ok((mappings, state, preview, tried)) => html(pages::targets(&user, &mappings, &state, &tried, preview.as_deref())),
        Err(response) => response,
    }
}

/// The audit page's filters, as its form sends them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    pub(crate) bruger: Option<String>,
    pub(crate) handling: Option<String>,
    #[serde(default, deserialize_with = "empty_date")]
    pub(crate) fra: Option<chrono::NaiveDate>,
    #[serde(default, deserialize_with = "empty_date")]
    pub(crate) til: Option<chrono::NaiveDate>,
}

/// A date field left empty is no date.
fn empty_date<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<chrono::NaiveDate>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// The audit trail: operators only.
pub(super) async fn audit(logged_in: LoggedIn, req: HttpRequest, query: web::Query<AuditQuery>, state: web::Data<State>) -> HttpResponse {
    let user = match logged_in.may(Role::Operator, "se revisionssporet", &req, &state).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let query = query.into_inner();
    let filter =
        crate::storage::audit::AuditFilter { actor: query.bruger.clone(), action: query.handling.clone(), from: query.fra, to: query.til };
    let app = state.app.clone();
    match blocking(move || Ok(app.db.audit_list(&filter, pages::AUDIT_LIMIT)?)).await {
        Ok(rows) => html(pages::audit(&user, &rows, &query)),
        Err(response) => response,
    }
}

/// `?frigivet=NAME` after a take-over.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BatchQuery {
    frigivet: Option<String>,
}

pub(super) async fn batch_files(LoggedIn(user): LoggedIn, query: web::Query<BatchQuery>, state: web::Data<State>) -> HttpResponse {
    let app = state.app.clone();
    match blocking(move || Ok(app.db.recent_batch_files(100)?)).await {
        Ok(files) => html(pages::batch_files(&user, &files, query.frigivet.as_deref())),
        Err(response) => response,
    }
}

/// Takes a batch file that is not done over at once: operators only.
pub(super) async fn take_over_batch_file(
    logged_in: LoggedIn,
    req: HttpRequest,
    id: web::Path<i32>,
    state: web::Data<State>,
) -> HttpResponse {
    reprocess_batch_file(logged_in, req, id.into_inner(), state, Reprocess::TakeOver, "tage en batchfil over").await
}

/// Has a done batch file's receipt file written (and sent back) again: operators only.
pub(super) async fn rewrite_receipt_file(
    logged_in: LoggedIn,
    req: HttpRequest,
    id: web::Path<i32>,
    state: web::Data<State>,
) -> HttpResponse {
    reprocess_batch_file(logged_in, req, id.into_inner(), state, Reprocess::WriteReceipt, "skrive en kvitteringsfil igen").await
}

async fn reprocess_batch_file(
    logged_in: LoggedIn,
    req: HttpRequest,
    id: i32,
    state: web::Data<State>,
    how: Reprocess,
    what: &str,
) -> HttpResponse {
    if let Err(refused) = same_origin(&req) {
        return refused;
    }
    let user = match logged_in.may(Role::Operator, what, &req, &state).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let (app, actor, origin) = (state.app.clone(), user.name.clone(), peer(&req).unwrap_or_default());
    match blocking(move || Ok(app.db.reprocess_batch_file(id, how, &actor, &origin)?)).await {
        Ok(Some(file)) => {
            tracing::warn!(user = %user, id, file = file.file_name, ?how, "batch file handed to the next round, asked on the web page");
            let query = serde_urlencoded::to_string([("frigivet", file.file_name.as_str())]).expect("a string pair encodes");
            see_other(&format!("/batchfiler?{query}"))
        }
        Ok(None) => page(StatusCode::NOT_FOUND, pages::not_found(&user)),
        Err(response) => response,
    }
}

/// `?slettet=N` after a purge.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RetentionQuery {
    slettet: Option<u64>,
}

/// The retention periods and what a purge would take now: operators only.
pub(super) async fn retention(
    logged_in: LoggedIn,
    req: HttpRequest,
    query: web::Query<RetentionQuery>,
    state: web::Data<State>,
) -> HttpResponse {
    let user = match logged_in.may(Role::Operator, "se opbevaringsperioderne", &req, &state).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let app = state.app.clone();
    match blocking(move || crate::retention::Purger::new(app.db.clone(), &app.config).dry_run()).await {
        Ok(outcomes) => html(pages::retention(&user, &state.app.config.retention.periods(), &outcomes, query.slettet)),
        Err(response) => response,
    }
}

/// Purges what is past its period now: operators only; recorded in the audit trail as the user's.
pub(super) async fn purge(logged_in: LoggedIn, req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Err(refused) = same_origin(&req) {
        return refused;
    }
    let user = match logged_in.may(Role::Operator, "slette efter opbevaringsperioderne", &req, &state).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let (app, actor, origin) = (state.app.clone(), user.name.clone(), peer(&req).unwrap_or_default());
    let run = move || crate::retention::Purger::new(app.db.clone(), &app.config).run(&actor, &origin);
    match blocking(run).await {
        Ok(outcomes) => {
            let rows: u64 = outcomes.iter().map(|o| o.rows).sum();
            tracing::warn!(user = %user, rows, "purged past the retention periods, asked on the web page");
            see_other(&format!("/opbevaring?slettet={rows}"))
        }
        Err(response) => response,
    }
}
