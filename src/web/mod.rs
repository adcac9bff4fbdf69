//! The administrative listener: a server-rendered web page for finance staff (behind a login), and health,
//! readiness and Prometheus metrics for operators (without one). No JavaScript is needed anywhere.

mod pages;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;

use crate::config::{AdminUser, Config};
use crate::domain::mapping::{KonteringInput, MappingFiles};
use crate::domain::sortiment::Integration;
use crate::pipeline::{MappingChange, Pipeline};
use crate::storage::inspect::DeliveryFilter;
use crate::storage::mappings::MappingSource;
use crate::wire::WireSpec;
use crate::xml::schema;

const SESSION_COOKIE: &str = "fkoeko_session";

struct State {
    pipeline: Arc<Pipeline>,
    users: Vec<AdminUser>,
    session: chrono::Duration,
    /// Cookies only over HTTPS when the page is served over HTTPS.
    secure_cookies: bool,
    /// Checked in place of an unknown user's hash, so that a wrong name takes as long as a wrong password.
    dummy_hash: String,
    /// Failed logins per user name: when the last began counting, and how many since.
    failures: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u32)>>,
}

/// After this many failed logins for one name, that name cannot log in for `LOCKOUT` (on this instance).
const MAX_FAILURES: u32 = 10;
const LOCKOUT: std::time::Duration = std::time::Duration::from_secs(300);

impl State {
    fn locked_out(&self, name: &str) -> bool {
        let mut failures = self.failures.lock().expect("failure counts");
        failures.retain(|_, (since, _)| since.elapsed() < LOCKOUT);
        failures.get(name).is_some_and(|(_, count)| *count >= MAX_FAILURES)
    }

    fn failed(&self, name: &str) {
        let mut failures = self.failures.lock().expect("failure counts");
        failures.entry(name.to_string()).or_insert((std::time::Instant::now(), 0)).1 += 1;
    }
}

/// Plain HTTP only on loopback, unless the configuration says so or the page is served over TLS.
pub fn check_transport(config: &Config) -> anyhow::Result<()> {
    let admin = &config.admin;
    if !admin.tls && !admin.allow_plain_http && !crate::http::is_loopback(&admin.listen) {
        anyhow::bail!("refusing plain HTTP for the web page on {}: set admin.tls = true, or admin.allow_plain_http = true behind a proxy that terminates TLS", admin.listen);
    }
    for user in &admin.users {
        PasswordHash::new(&user.password_hash).map_err(|e| {
            anyhow::anyhow!(
                "admin.users '{}': password_hash is not a PHC hash ({e}); make one with `fkoeko admin hash-password`",
                user.name
            )
        })?;
    }
    Ok(())
}

/// An Argon2id hash of a password, for admin.users.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    // A random v4 UUID is 16 bytes from the operating system's generator: a salt of the recommended length.
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("hashing: {e}"))?.to_string())
}

/// Serves the web page, health and metrics on a bound listener. The caller has checked the transport
/// (`check_transport`) before binding it.
pub fn server(pipeline: Arc<Pipeline>, listener: TcpListener, config: &Config) -> anyhow::Result<actix_web::dev::Server> {
    if config.admin.users.is_empty() {
        tracing::warn!("no users in admin.users: nobody can log in to the web page (see `fkoeko admin hash-password`)");
    }
    let state = web::Data::new(State {
        pipeline,
        users: config.admin.users.clone(),
        session: chrono::Duration::hours(config.admin.session_hours as i64),
        secure_cookies: config.admin.tls,
        dummy_hash: hash_password("no user has this password")?,
        failures: Default::default(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::FormConfig::default().limit(2 * 1024 * 1024))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
            .route("/login", web::get().to(login_page))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/", web::get().to(|| async { see_other("/afvisninger") }))
            .route("/afvisninger", web::get().to(rejections))
            .route("/leverancer", web::get().to(deliveries))
            .route("/leverancer/{key}", web::get().to(delivery))
            .route("/mapninger", web::get().to(mappings))
            .route("/mapninger/ret", web::get().to(edit_mappings_page))
            .route("/mapninger/ret", web::post().to(edit_mappings))
            .route("/mapninger/historik", web::get().to(mapping_history))
            .route("/mapninger/historik/{id}/rul-tilbage", web::post().to(roll_back))
            .route("/sortiment", web::get().to(sortiment))
    })
    .workers(2)
    .on_connect(crate::http::tls::on_connect);
    let server = if config.admin.tls {
        // The server's own certificate; finance staff's browsers have no client certificates.
        let tls = crate::config::TlsConfig { client_ca: Vec::new(), allowed_clients: Vec::new(), ..config.tls.clone() };
        server.listen_rustls_0_23(listener, crate::http::tls::server_config(&tls)?)?
    } else {
        server.listen(listener)?
    };
    Ok(server.run())
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to.to_string())).finish()
}

fn html(markup: maud::Markup) -> HttpResponse {
    page(StatusCode::OK, markup)
}

/// A page with its status; every page carries the same headers.
fn page(status: StatusCode, markup: maud::Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(ContentType::html())
        // The page is never framed by another site, and nothing it shows is cached.
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ))
        .body(markup.into_string())
}

fn failure(e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "web page: technical failure");
    HttpResponse::InternalServerError().content_type(ContentType::plaintext()).body("Teknisk fejl; se loggen.\n")
}

/// Runs database work off the request threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> Result<T, HttpResponse> {
    match web::block(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(failure(format!("{e:#}"))),
        Err(e) => Err(failure(e)),
    }
}

/// The logged-in user; a request without a live session is sent to the login page instead.
struct LoggedIn(String);

impl actix_web::FromRequest for LoggedIn {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let to_login = || {
                let query = serde_urlencoded::to_string([("next", req.uri().to_string())]).expect("a string pair encodes");
                let response = see_other(&format!("/login?{query}"));
                actix_web::error::InternalError::from_response("not logged in", response).into()
            };
            let Some(token) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()) else { return Err(to_login()) };
            let state = req.app_data::<web::Data<State>>().expect("the web page's state").clone();
            let pipeline = state.pipeline.clone();
            match blocking(move || Ok(pipeline.db.session_user(&token)?)).await {
                Ok(Some(user)) => Ok(LoggedIn(user)),
                Ok(None) => Err(to_login()),
                Err(response) => Err(actix_web::error::InternalError::from_response("session lookup failed", response).into()),
            }
        })
    }
}

/// A form may only be posted from this page: the session cookie is SameSite=Strict, and a browser's Origin,
/// when it sends one, must be this host.
fn same_origin(req: &HttpRequest) -> Result<(), HttpResponse> {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return Ok(()) };
    let host = req.connection_info().host().to_string();
    let ours = origin.split_once("://").is_some_and(|(_, rest)| rest == host);
    if ours {
        Ok(())
    } else {
        tracing::warn!(origin, host, "form posted from another origin; refused");
        Err(HttpResponse::Forbidden().body("Formularen kom fra en anden side.\n"))
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::plaintext()).body("ok\n")
}

/// Ready when the database answers, both schemas compile and a mapping version is in force.
async fn readyz(state: web::Data<State>) -> HttpResponse {
    let pipeline = state.pipeline.clone();
    let checks = web::block(move || {
        let database = pipeline.db.ping().map(|_| "ok".to_string()).map_err(|e| e.to_string());
        let schemas = [Integration::Sf1590A, Integration::Sf1590B]
            .iter()
            .try_for_each(|i| schema::check_schema(&pipeline.settings.schema_dir.join(WireSpec::of(*i).schema)))
            .map(|_| "ok".to_string())
            .map_err(|e| e.to_string());
        let mappings = pipeline.mappings().map(|m| format!("version {}", m.version)).map_err(|e| e.to_string());
        vec![("database", database), ("schemas", schemas), ("mappings", mappings)]
    })
    .await;
    let checks = match checks {
        Ok(checks) => checks,
        Err(e) => return failure(e),
    };
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let mut shown = serde_json::Map::new();
    for (name, result) in checks {
        shown.insert(name.to_string(), result.unwrap_or_else(|e| format!("fejl: {e}")).into());
    }
    let body = serde_json::json!({ "ready": ready, "checks": shown });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if !ready {
        tracing::warn!(checks = %body, "not ready");
    }
    HttpResponse::build(status).content_type(ContentType::json()).body(body.to_string())
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    let pipeline = state.pipeline.clone();
    let text = web::block(move || {
        // The process's own figures are still worth having when the database is away.
        let shared = pipeline.db.shared_figures().map_err(|e| tracing::warn!(error = %e, "metrics: shared figures not readable")).ok();
        pipeline.metrics.render(shared.as_ref())
    })
    .await;
    match text {
        Ok(text) => HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(query: web::Query<LoginQuery>, state: web::Data<State>) -> HttpResponse {
    html(pages::login(query.next.as_deref().unwrap_or("/"), "", None, state.users.is_empty()))
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    next: Option<String>,
}

async fn login(req: HttpRequest, form: web::Form<LoginForm>, state: web::Data<State>) -> HttpResponse {
    if let Err(refused) = same_origin(&req) {
        return refused;
    }
    let form = form.into_inner();
    // Only a path on this site: a login never sends anyone elsewhere.
    let next = form.next.clone().filter(|n| n.starts_with('/') && !n.starts_with("//")).unwrap_or_else(|| "/".into());
    if state.locked_out(&form.user) {
        tracing::warn!(user = %form.user, peer = ?req.peer_addr(), "web page: login refused, too many failed tries");
        let message = "For mange forkerte forsøg med dette brugernavn. Prøv igen om 5 minutter.";
        return html(pages::login(&next, &form.user, Some(message), state.users.is_empty()));
    }
    let users = state.users.clone();
    let dummy = state.dummy_hash.clone();
    let (name, password) = (form.user.clone(), form.password.clone());
    let known = web::block(move || {
        let hash = users.iter().find(|u| u.name == name).map(|u| u.password_hash.clone());
        let parsed = PasswordHash::new(hash.as_deref().unwrap_or(&dummy)).ok();
        let matches = parsed.is_some_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        matches && hash.is_some()
    })
    .await
    .unwrap_or(false);
    if !known {
        state.failed(&form.user);
        tracing::warn!(user = %form.user, peer = ?req.peer_addr(), "web page: failed login");
        return html(pages::login(&next, &form.user, Some("Forkert brugernavn eller adgangskode."), state.users.is_empty()));
    }
    let (pipeline, user, lasts) = (state.pipeline.clone(), form.user.clone(), state.session);
    let token = match blocking(move || Ok(pipeline.db.create_session(&user, lasts)?)).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    tracing::info!(user = %form.user, "web page: logged in");
    let cookie =
        Cookie::build(SESSION_COOKIE, token).path("/").http_only(true).same_site(SameSite::Strict).secure(state.secure_cookies).finish();
    HttpResponse::SeeOther().cookie(cookie).insert_header((header::LOCATION, next)).finish()
}

async fn logout(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Err(refused) = same_origin(&req) {
        return refused;
    }
    if let Some(token) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()) {
        let pipeline = state.pipeline.clone();
        if let Err(response) = blocking(move || Ok(pipeline.db.end_session(&token)?)).await {
            return response;
        }
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    gone.make_removal();
    HttpResponse::SeeOther().cookie(gone).insert_header((header::LOCATION, "/login")).finish()
}

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

async fn delivery_list(user: String, query: web::Query<FilterQuery>, state: web::Data<State>, only_rejected: bool) -> HttpResponse {
    let query = query.into_inner();
    let (pipeline, filter) = (state.pipeline.clone(), query.filter(only_rejected));
    let limit = query.antal.unwrap_or(LIST_LIMIT).clamp(1, LIST_LIMIT);
    let found = blocking(move || {
        let rows = pipeline.db.find_deliveries(&filter, limit)?;
        let codes_of = pipeline.db.error_codes_of(&rows.iter().map(|r| r.id).collect::<Vec<_>>())?;
        let codes = pipeline.db.error_codes_seen()?;
        let sortiment = pipeline.sortiment()?;
        Ok((pages::DeliveryRows { rows, codes_of }, codes, sortiment))
    })
    .await;
    match found {
        Ok((rows, codes, sortiment)) => html(pages::delivery_list(&user, only_rejected, &query, &rows, &codes, &sortiment, limit as usize)),
        Err(response) => response,
    }
}

async fn rejections(LoggedIn(user): LoggedIn, query: web::Query<FilterQuery>, state: web::Data<State>) -> HttpResponse {
    delivery_list(user, query, state, true).await
}

async fn deliveries(LoggedIn(user): LoggedIn, query: web::Query<FilterQuery>, state: web::Data<State>) -> HttpResponse {
    delivery_list(user, query, state, false).await
}

async fn delivery(LoggedIn(user): LoggedIn, key: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    let pipeline = state.pipeline.clone();
    let key = key.into_inner();
    match blocking(move || Ok((pipeline.db.delivery_detail(&key)?, pipeline.sortiment()?))).await {
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

async fn mappings(LoggedIn(user): LoggedIn, query: web::Query<TryQuery>, state: web::Data<State>) -> HttpResponse {
    let pipeline = state.pipeline.clone();
    match blocking(move || Ok(crate::pipeline::in_force(&pipeline.db)?)).await {
        Ok((stored, set)) => {
            let kontering = query.kontering.is_given().then_some(&query.kontering);
            let tried = pages::TryOutcome::of(&set, kontering, &query.fordringstype);
            html(pages::mappings(&user, &stored, &query, &tried))
        }
        Err(response) => response,
    }
}

async fn edit_mappings_page(LoggedIn(user): LoggedIn, state: web::Data<State>) -> HttpResponse {
    let pipeline = state.pipeline.clone();
    match blocking(move || Ok(crate::pipeline::in_force(&pipeline.db)?.0)).await {
        Ok(stored) => html(pages::edit_mappings(&user, stored.id, &stored.files, "", &pages::EditOutcome::Fresh)),
        Err(response) => response,
    }
}

async fn edit_mappings(
    LoggedIn(user): LoggedIn,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
    state: web::Data<State>,
) -> HttpResponse {
    if let Err(refused) = same_origin(&req) {
        return refused;
    }
    let mut files = MappingFiles::new();
    let (mut comment, mut base, mut new_name, mut new_content) = (String::new(), 0_i64, String::new(), String::new());
    // Browsers send line ends as CRLF; the files are kept with LF.
    let lf = |text: String| text.replace("\r\n", "\n");
    for (name, value) in form.into_inner() {
        match name.as_str() {
            "comment" => comment = value,
            "base" => base = value.parse().unwrap_or(0),
            "ny_fil_navn" => new_name = value.trim().to_string(),
            "ny_fil_indhold" => new_content = lf(value),
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
    let pipeline = state.pipeline.clone();
    let author = user.clone();
    let outcome = blocking(move || {
        if let Some(bad) = files.keys().find(|n| !crate::domain::mapping::is_mapping_file_name(n)) {
            return Ok(pages::EditOutcome::BadName(format!(
                "{bad} er ikke et gyldigt filnavn (bogstaver, tal, - og _, og .csv til sidst)"
            )));
        }
        let comment = if comment.trim().is_empty() { "ændret på siden".to_string() } else { comment.trim().to_string() };
        Ok(match pipeline.change_mappings(&files, &author, MappingSource::Page, &comment, Some(base))? {
            MappingChange::Invalid(errors) => pages::EditOutcome::Invalid { files, comment, errors },
            MappingChange::Moved(current) => pages::EditOutcome::Moved { base, current },
            MappingChange::Saved(id) | MappingChange::Unchanged(id) => pages::EditOutcome::Saved(id),
        })
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
async fn edit_refused(state: &web::Data<State>, user: &str, outcome: pages::EditOutcome) -> HttpResponse {
    let pipeline = state.pipeline.clone();
    match blocking(move || Ok(crate::pipeline::in_force(&pipeline.db)?.0)).await {
        Ok(stored) => page(StatusCode::CONFLICT, pages::edit_mappings(user, stored.id, &stored.files, "", &outcome)),
        Err(response) => response,
    }
}

async fn mapping_history(LoggedIn(user): LoggedIn, state: web::Data<State>) -> HttpResponse {
    let pipeline = state.pipeline.clone();
    // The newest 50, and one more so that the oldest of them has something to compare with.
    match blocking(move || Ok(pipeline.db.mapping_history(51)?)).await {
        Ok(history) => html(pages::mapping_history(&user, &history)),
        Err(response) => response,
    }
}

async fn roll_back(LoggedIn(user): LoggedIn, req: HttpRequest, id: web::Path<i64>, state: web::Data<State>) -> HttpResponse {
    if let Err(refused) = same_origin(&req) {
        return refused;
    }
    let (pipeline, to, author) = (state.pipeline.clone(), id.into_inner(), user.clone());
    match blocking(move || Ok(pipeline.roll_back_mappings(to, &author)?)).await {
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

async fn sortiment(LoggedIn(user): LoggedIn, state: web::Data<State>) -> HttpResponse {
    let pipeline = state.pipeline.clone();
    match blocking(move || Ok(pipeline.sortiment()?)).await {
        Ok(sortiment) => html(pages::sortiment(&user, &sortiment, chrono::Utc::now().date_naive())),
        Err(response) => response,
    }
}
