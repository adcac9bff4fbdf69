//! The operators' endpoints, without a login: liveness, readiness and Prometheus metrics.

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::{failure, State};
use crate::domain::sortiment::Integration;
use crate::wire::WireSpec;
use crate::xml::schema;

pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::plaintext()).body("ok\n")
}

/// Ready when the database answers, both schemas compile and a mapping version is in force.
pub(super) async fn readyz(state: web::Data<State>) -> HttpResponse {
    let app = state.app.clone();
    let checks = web::block(move || {
        let database = app.db.ping().map(|_| "ok".to_string()).map_err(|e| e.to_string());
        let schemas = [Integration::Sf1590A, Integration::Sf1590B]
            .iter()
            .try_for_each(|i| schema::check_schema(&app.pipeline.settings.schema_dir.join(WireSpec::of(*i).schema)))
            .map(|_| "ok".to_string())
            .map_err(|e| e.to_string());
        let mappings = app.pipeline.mappings().map(|m| format!("version {}", m.version)).map_err(|e| e.to_string());
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

pub(super) async fn metrics(state: web::Data<State>) -> HttpResponse {
    let app = state.app.clone();
    let text = web::block(move || {
        // The process's own figures are still worth having when the database is away.
        let shared = app.db.shared_figures().map_err(|e| tracing::warn!(error = %e, "metrics: shared figures not readable")).ok();
        app.pipeline.metrics.render(shared.as_ref())
    })
    .await;
    match text {
        Ok(text) => HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text),
        Err(e) => failure(e),
    }
}
