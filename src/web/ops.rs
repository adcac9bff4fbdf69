//! The operators' endpoints, without a login: liveness, readiness and Prometheus metrics.

use actix_web::http::header::ContentType;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::{failure, State};
use crate::domain::sortiment::Integration;

/// Alive: the process answers (`/livez`, and `/healthz` as before). Says nothing of the database: a supervisor
/// restarts a process that does not answer, not one whose database is away (that is `/readyz`).
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::plaintext()).body("ok\n")
}

/// Ready when the database answers, both schemas compile and a mapping version is in force (else 503, "down").
/// Degraded (200, with the reasons) when the installation runs but cannot take a delivery in as it should: no
/// mapping rule, no sender active today, or a batch inbox it cannot read. A load balancer keeps sending to a
/// degraded instance; an operator is told why.
pub(super) async fn readyz(state: web::Data<State>) -> HttpResponse {
    let app = state.app.clone();
    let warnings = web::block({
        let app = app.clone();
        move || degraded_by(&app)
    });
    let checks = web::block(move || {
        let database = app.db.ping().map(|_| "ok".to_string()).map_err(|e| e.to_string());
        let schemas = crate::startup::check_schemas(&app.pipeline.settings.schema_dir).map(|_| "ok".to_string()).map_err(|e| e.to_string());
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
    let warnings = if ready { warnings.await.unwrap_or_default() } else { Vec::new() };
    let condition = match (ready, warnings.is_empty()) {
        (false, _) => "down",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let body = serde_json::json!({ "ready": ready, "status": condition, "checks": shown, "warnings": warnings });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if condition != "ok" {
        tracing::warn!(checks = %body, "not ready, or degraded");
    }
    HttpResponse::build(status).content_type(ContentType::json()).body(body.to_string())
}

/// Why an installation that is up cannot take deliveries in as it should, in words for an operator.
fn degraded_by(app: &crate::startup::App) -> Vec<String> {
    let mut warnings = Vec::new();
    let mappings = app.pipeline.mappings().ok();
    if let Some(mappings) = &mappings {
        if mappings.rule_count() == 0 {
            warnings.push(format!(
                "mapningsversion {} har ingen regler i konti.csv: alle finansbilag afvises med MAPNING_MANGLER",
                mappings.version
            ));
        }
    }
    match app.pipeline.sortiment() {
        Ok(sortiment) => {
            let today = chrono::Utc::now().date_naive();
            let active = |s: &&crate::domain::sortiment::Sender| s.valid_from <= today && s.valid_to.is_none_or(|to| today <= to);
            if !sortiment.senders().any(|s| active(&s)) {
                warnings.push(format!("sortimentsversion {} har ingen afsender, der er aktiv i dag: alt afvises", sortiment.version));
            }
            let hands_over_claims = sortiment.senders().filter(active).any(|s| s.integrations.contains(&Integration::Sf1590B));
            if let Some(mappings) = &mappings {
                if hands_over_claims && mappings.claim_type_count() == 0 {
                    warnings.push(format!(
                        "mapningsversion {} har ingen rækker i fordringstyper.csv: alle fordringer (SF1590_B) afvises med MAPNING_MANGLER",
                        mappings.version
                    ));
                }
            }
        }
        Err(e) => warnings.push(format!("sortimentet kan ikke læses: {e}")),
    }
    if app.config.batch.enabled {
        for integration in [Integration::Sf1590A, Integration::Sf1590B] {
            let folders = crate::batch::Folders::of(&app.config.batch.dir, integration);
            let named = [
                ("indbakken", &folders.inbox),
                ("processing", &folders.processing),
                ("arkivet", &folders.archive),
                ("udbakken", &folders.outbox),
            ];
            for (name, folder) in named {
                if let Err(e) = std::fs::read_dir(folder) {
                    warnings.push(format!("{name} {} kan ikke læses: {e}", folder.display()));
                }
            }
        }
        if let Ok(counts) = app.db.receipt_transfer_counts() {
            let failed = counts.iter().find(|(state, _)| *state == crate::storage::text::TransferState::Failed).map_or(0, |(_, n)| *n);
            if failed > 0 {
                warnings.push(format!(
                    "{failed} kvitteringsfil(er) er ikke leveret til afsenderen gennem Serviceplatformen efter sidste forsøg (se fkoeko batch list)"
                ));
            }
        }
    }
    warnings.extend(target_warnings(app));
    warnings
}

/// A file target's rows waiting longer than `targets.behind_secs`, or the file writer failing.
pub(crate) fn target_warnings(app: &crate::startup::App) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(problem) = app.pipeline.target_problem() {
        warnings.push(format!("målprofilen i brug passer ikke længere til tabellerne (ERP-systemet har ændret dem?): {problem}"));
    }
    match app.db.target_backlog() {
        Ok(backlog) => {
            if backlog.parked > 0 {
                warnings.push(format!(
                    "{} række(r) er afvist af ERP-systemets database og sat til side (prøves igen hvert 5. minut, eller nu med fkoeko targets retry): {}",
                    backlog.parked,
                    backlog.parked_error.as_deref().unwrap_or("")
                ));
            }
            let behind = chrono::Duration::seconds(app.config.targets.behind_secs as i64);
            if let Some(oldest) = backlog.oldest.filter(|oldest| chrono::Utc::now().naive_utc() - *oldest > behind) {
                warnings.push(format!(
                    "{} række(r) til ERP-systemets importfiler venter; den ældste siden {} UTC",
                    backlog.rows,
                    oldest.format("%Y-%m-%d %H:%M:%S")
                ));
            }
        }
        Err(e) => warnings.push(format!("ventende rækker til importfiler kan ikke tælles: {e}")),
    }
    if let Some((at, error)) = &app.target_files.lock().expect("status lock").last_error {
        warnings.push(format!("importfilerne kan ikke skrives (seneste fejl {} UTC): {error}", at.format("%Y-%m-%d %H:%M:%S")));
    }
    for (database, status) in app.forwarders.lock().expect("status lock").iter() {
        if let Some((at, error)) = &status.last_error {
            warnings.push(format!(
                "rækker kan ikke kopieres til ERP-systemets database '{database}' (seneste fejl {} UTC; prøves igen): {error}",
                at.format("%Y-%m-%d %H:%M:%S")
            ));
        }
    }
    warnings
}

pub(super) async fn metrics(state: web::Data<State>) -> HttpResponse {
    let app = state.app.clone();
    let text = web::block(move || {
        // The process's own figures are still worth having when the database is away.
        let shared = app.db.shared_figures().map_err(|e| tracing::warn!(error = %e, "metrics: shared figures not readable")).ok();
        if !app.config.targets.folders.is_empty() {
            app.pipeline.metrics.target_writer("files", app.target_files.lock().expect("status lock").last_error.is_some());
        }
        for (database, status) in app.forwarders.lock().expect("status lock").iter() {
            app.pipeline.metrics.target_writer(&format!("database:{database}"), status.last_error.is_some());
        }
        app.pipeline.metrics.render(shared.as_ref())
    })
    .await;
    match text {
        Ok(text) => HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text),
        Err(e) => failure(e),
    }
}
