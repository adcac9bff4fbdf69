//! Logging in to the web page: the login form, sessions, the lock-out after failed logins, and the check that a
//! form was posted from the page itself.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;

use super::{blocking, html, pages, see_other, State, SESSION_COOKIE};
use crate::domain::audit::{AuditAction, AuditEntry, Role};

/// An Argon2id hash of a password, for admin.users.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    // A random v4 UUID is 16 bytes from the operating system's generator: a salt of the recommended length.
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("hashing: {e}"))?.to_string())
}

/// After this many tries for one name within `LOCKOUT`, that name cannot log in until `LOCKOUT` has passed since
/// the first of them (on every instance: the tries are counted in the database).
const MAX_TRIES: i32 = 10;
const LOCKOUT: chrono::Duration = chrono::Duration::minutes(5);
/// How long a login waits for one of the password checks allowed at once before it is answered 503.
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Where a login goes afterwards: a path on this site only (one leading `/`, no `\`, no control characters), else
/// the start page. A browser reads `//host`, `/\host` and `/<TAB>/host` as another site.
pub(super) fn return_address(next: Option<&str>) -> String {
    let on_site = |n: &str| {
        n.starts_with('/')
            && !n[1..].starts_with(['/', '\\'])
            && !n.contains('\\')
            && !n.chars().any(|c| c.is_control() || c.is_whitespace())
    };
    next.filter(|n| on_site(n)).unwrap_or("/").to_string()
}

/// Who is logged in, and what their role lets them do.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub role: Role,
}

impl std::fmt::Display for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// The logged-in user; a request without a live session (or whose user is no longer configured) is sent to the
/// login page instead.
pub(super) struct LoggedIn(pub(super) Viewer);

impl LoggedIn {
    /// The user, when the role allows `needed`; else the refusal (403), which is recorded in the audit trail.
    pub(super) async fn may(self, needed: Role, what: &str, req: &HttpRequest, state: &web::Data<State>) -> Result<Viewer, HttpResponse> {
        let viewer = self.0;
        if viewer.role.may(needed) {
            return Ok(viewer);
        }
        tracing::warn!(user = %viewer, role = viewer.role.as_str(), what, "web page: refused, the role does not allow it");
        let entry = AuditEntry::new(
            viewer.name.clone(),
            AuditAction::Refused,
            format!("{what} (rolle {}; kræver {})", viewer.role.as_str(), needed.as_str()),
            peer(req),
        );
        let app = state.app.clone();
        blocking(move || Ok(app.db.audit(&entry)?)).await?;
        Err(super::page(actix_web::http::StatusCode::FORBIDDEN, pages::forbidden(&viewer, what, needed)))
    }
}

/// A login, failed login or locked name in the audit trail. The name is what was typed: cut, since anyone can
/// type anything there.
async fn audit_login(state: &web::Data<State>, name: &str, action: AuditAction, req: &HttpRequest) -> Result<(), HttpResponse> {
    let name: String = name.chars().take(100).collect();
    let entry = AuditEntry::new(name, action, "", peer(req));
    let app = state.app.clone();
    blocking(move || Ok(app.db.audit(&entry)?)).await
}

/// The client's address, for the audit trail.
pub(super) fn peer(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|a| a.ip().to_string())
}

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
            let app = state.app.clone();
            let users = state.users.clone();
            match blocking(move || Ok(app.db.session_user(&token)?)).await {
                Ok(Some(user)) => match users.iter().find(|u| u.name == user) {
                    Some(configured) => Ok(LoggedIn(Viewer { name: user, role: configured.role })),
                    None => Err(to_login()),
                },
                Ok(None) => Err(to_login()),
                Err(response) => Err(actix_web::error::InternalError::from_response("session lookup failed", response).into()),
            }
        })
    }
}

/// A form may only be posted from this page: the session cookie is SameSite=Strict, and a browser's Origin,
/// when it sends one, must be this host.
pub(super) fn same_origin(req: &HttpRequest) -> Result<(), HttpResponse> {
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

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
}

pub(super) async fn login_page(query: web::Query<LoginQuery>, state: web::Data<State>) -> HttpResponse {
    html(pages::login(&return_address(query.next.as_deref()), "", None, state.users.is_empty()))
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    user: String,
    password: String,
    next: Option<String>,
}

pub(super) async fn login(req: HttpRequest, form: web::Form<LoginForm>, state: web::Data<State>) -> HttpResponse {
    if let Err(refused) = same_origin(&req) {
        return refused;
    }
    let form = form.into_inner();
    // Only a path on this site: a login never sends anyone elsewhere.
    let next = return_address(form.next.as_deref());
    let metrics = &state.app.pipeline.metrics;
    // Counted before the password is checked, so that tries sent at once cannot get past the limit together.
    let (app, name) = (state.app.clone(), form.user.clone());
    let tries = match blocking(move || Ok(app.db.count_login_attempt(&name, LOCKOUT)?)).await {
        Ok(tries) => tries,
        Err(response) => return response,
    };
    if tries > MAX_TRIES {
        metrics.logins.with_label_values(&["locked"]).inc();
        tracing::warn!(user = %form.user, peer = ?req.peer_addr(), "web page: login refused, too many tries");
        if let Err(response) = audit_login(&state, &form.user, AuditAction::LoginLocked, &req).await {
            return response;
        }
        let message = "For mange forkerte forsøg med dette brugernavn. Prøv igen om 5 minutter.";
        return html(pages::login(&next, &form.user, Some(message), state.users.is_empty()));
    }
    // Each check takes about 19 MiB and a core for a while: only a few run at once.
    let permit = match actix_web::rt::time::timeout(CHECK_WAIT, state.checks.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            metrics.logins.with_label_values(&["busy"]).inc();
            tracing::warn!(user = %form.user, "web page: too many logins at once; answered 503");
            return HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "5"))
                .body("For mange logins lige nu; prøv igen.\n");
        }
    };
    metrics.logins.with_label_values(&["checked"]).inc();
    let users = state.users.clone();
    let dummy = state.dummy_hash.clone();
    let (name, password) = (form.user.clone(), form.password.clone());
    let known = web::block(move || {
        let _permit = permit;
        let hash = users.iter().find(|u| u.name == name).map(|u| u.password_hash.clone());
        let parsed = PasswordHash::new(hash.as_deref().unwrap_or(&dummy)).ok();
        let matches = parsed.is_some_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        matches && hash.is_some()
    })
    .await
    .unwrap_or(false);
    if !known {
        tracing::warn!(user = %form.user, peer = ?req.peer_addr(), "web page: failed login");
        if let Err(response) = audit_login(&state, &form.user, AuditAction::LoginFailed, &req).await {
            return response;
        }
        return html(pages::login(&next, &form.user, Some("Forkert brugernavn eller adgangskode."), state.users.is_empty()));
    }
    let (app, name) = (state.app.clone(), form.user.clone());
    if let Err(response) = blocking(move || Ok(app.db.clear_login_attempts(&name)?)).await {
        return response;
    }
    let (app, user, lasts) = (state.app.clone(), form.user.clone(), state.session);
    let token = match blocking(move || Ok(app.db.create_session(&user, lasts)?)).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    tracing::info!(user = %form.user, "web page: logged in");
    if let Err(response) = audit_login(&state, &form.user, AuditAction::Login, &req).await {
        return response;
    }
    let cookie =
        Cookie::build(SESSION_COOKIE, token).path("/").http_only(true).same_site(SameSite::Strict).secure(state.secure_cookies).finish();
    HttpResponse::SeeOther().cookie(cookie).insert_header((header::LOCATION, next)).finish()
}

pub(super) async fn logout(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Err(refused) = same_origin(&req) {
        return refused;
    }
    if let Some(token) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()) {
        let (app, origin) = (state.app.clone(), peer(&req));
        let ended = blocking(move || {
            if let Some(user) = app.db.session_user(&token)? {
                app.db.audit(&AuditEntry::new(user, AuditAction::Logout, "", origin))?;
            }
            Ok(app.db.end_session(&token)?)
        });
        if let Err(response) = ended.await {
            return response;
        }
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    gone.make_removal();
    HttpResponse::SeeOther().cookie(gone).insert_header((header::LOCATION, "/login")).finish()
}

#[cfg(test)]
mod tests {
    use super::return_address;

    #[test]
    fn a_login_returns_only_to_a_path_on_the_site() {
        for kept in ["/", "/leverancer?q=B-1&kode=REGEL_CPR", "/mapninger/historik"] {
            assert_eq!(return_address(Some(kept)), kept);
        }
        for elsewhere in
            ["//evil.example/", "/\\evil.example/", "/\t/evil.example/", "/\r\nLocation: x", "https://evil.example/", "evil", ""]
        {
            assert_eq!(return_address(Some(elsewhere)), "/", "{elsewhere:?}");
        }
        assert_eq!(return_address(None), "/");
    }
}
