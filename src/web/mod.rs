//! The administrative listener: a server-rendered web page for finance staff (behind a login), and health,
//! readiness and Prometheus metrics for operators (without one). No JavaScript is needed anywhere.

mod login;
mod ops;
mod pages;
mod views;

pub use login::hash_password;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};

use argon2::password_hash::PasswordHash;

use crate::config::{AdminUser, Config};
use crate::startup::App as AppState;

const SESSION_COOKIE: &str = "fkoeko_session";

struct State {
    app: Arc<AppState>,
    users: Vec<AdminUser>,
    session: chrono::Duration,
    /// Cookies only over HTTPS when the page is served over HTTPS.
    secure_cookies: bool,
    /// Checked in place of an unknown user's hash, so that a wrong name takes as long as a wrong password.
    dummy_hash: String,
    /// Password checks allowed at once (Argon2 takes memory and a core each).
    checks: Arc<tokio::sync::Semaphore>,
}

/// Password checks at once: one per core, at least two.
fn checks_at_once() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)
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

/// Serves the web page, health and metrics on a bound listener. The caller has checked the transport
/// (`check_transport`) before binding it.
pub fn server(app: Arc<AppState>, listener: TcpListener) -> anyhow::Result<actix_web::dev::Server> {
    let config = &app.config.clone();
    if config.admin.users.is_empty() {
        tracing::warn!("no users in admin.users: nobody can log in to the web page (see `fkoeko admin hash-password`)");
    }
    let state = web::Data::new(State {
        app,
        users: config.admin.users.clone(),
        session: chrono::Duration::hours(config.admin.session_hours as i64),
        secure_cookies: config.admin.tls,
        dummy_hash: hash_password("no user has this password")?,
        checks: Arc::new(tokio::sync::Semaphore::new(checks_at_once())),
    });
    let app = move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::FormConfig::default().limit(2 * 1024 * 1024))
            .route("/healthz", web::get().to(ops::healthz))
            .route("/livez", web::get().to(ops::healthz))
            .route("/readyz", web::get().to(ops::readyz))
            .route("/metrics", web::get().to(ops::metrics))
            .route("/login", web::get().to(login::login_page))
            .route("/login", web::post().to(login::login))
            .route("/logout", web::post().to(login::logout))
            .route("/", web::get().to(|| async { see_other("/afvisninger") }))
            .route("/afvisninger", web::get().to(views::rejections))
            .route("/leverancer", web::get().to(views::deliveries))
            .route("/leverancer/{key}", web::get().to(views::delivery))
            .route("/mapninger", web::get().to(views::mappings))
            .route("/mapninger/ret", web::get().to(views::edit_mappings_page))
            .route("/mapninger/ret", web::post().to(views::edit_mappings))
            .route("/mapninger/historik", web::get().to(views::mapping_history))
            .route("/mapninger/historik/{id}/rul-tilbage", web::post().to(views::roll_back))
            .route("/sortiment", web::get().to(views::sortiment))
            .route("/importtabeller", web::get().to(views::targets))
            .route("/importtabeller", web::post().to(views::try_targets))
            .route("/revision", web::get().to(views::audit))
            .route("/batchfiler", web::get().to(views::batch_files))
            .route("/batchfiler/{id}/tag-over", web::post().to(views::take_over_batch_file))
            .route("/batchfiler/{id}/kvittering", web::post().to(views::rewrite_receipt_file))
            .route("/opbevaring", web::get().to(views::retention))
            .route("/opbevaring/slet", web::post().to(views::purge))
    };
    let listen = crate::http::tls::Listen { workers: 2, max_connections: 25_000, client_request_timeout: Duration::from_secs(5) };
    if config.admin.tls {
        // The server's own certificate; finance staff's browsers have no client certificates.
        let tls = crate::config::TlsConfig { client_ca: Vec::new(), allowed_clients: Vec::new(), ..config.tls.clone() };
        return Ok(crate::http::tls::serve(listener, crate::http::tls::server_config(&tls)?, &listen, app)?);
    }
    Ok(HttpServer::new(app).workers(listen.workers).listen(listener)?.run())
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
