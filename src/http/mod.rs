//! HTTP transport: SOAP over HTTP for straks deliveries (SF1590_A at /sf1590a, SF1590_B at /sf1590b), the WSDL and the schemas it refers to.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;

use crate::config::Config;
use crate::domain::rejection::Rejection;
use crate::domain::sortiment::Integration;
use crate::pipeline::{Mode, Pipeline, Transport};
use crate::wire::WireSpec;
use crate::xml::soap::{self, SoapVersion};

struct State {
    pipeline: Arc<Pipeline>,
    schema_dir: PathBuf,
    max_body: usize,
}

pub fn server(pipeline: Arc<Pipeline>, listener: TcpListener, config: &Config) -> anyhow::Result<actix_web::dev::Server> {
    let state = web::Data::new(State {
        pipeline,
        schema_dir: config.paths.schemas.clone(),
        max_body: config.limits.max_body_bytes,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/sf1590a", web::get().to(|req, state| wsdl(req, state, Integration::Sf1590A)))
            .route("/sf1590a", web::post().to(|req, body, state| receive(req, body, state, Integration::Sf1590A)))
            .route("/sf1590b", web::get().to(|req, state| wsdl(req, state, Integration::Sf1590B)))
            .route("/sf1590b", web::post().to(|req, body, state| receive(req, body, state, Integration::Sf1590B)))
            .route("/schemas/{name}", web::get().to(schema_file))
    })
    .workers(config.server.workers.max(1))
    .listen(listener)?
    .run();
    Ok(server)
}

/// The address clients reached us on, so the WSDL points back at it.
fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

async fn wsdl(req: HttpRequest, state: web::Data<State>, integration: Integration) -> HttpResponse {
    if !req.query_string().eq_ignore_ascii_case("wsdl") {
        return HttpResponse::BadRequest().body(format!("GET {}?wsdl gives the WSDL; deliveries are POSTed as SOAP.\n", req.path()));
    }
    match tokio_read(state.schema_dir.join(WireSpec::of(integration).wsdl)).await {
        Ok(text) => HttpResponse::Ok()
            .content_type(ContentType::xml())
            .body(text.replace("{{BASE}}", &base_url(&req))),
        Err(e) => {
            tracing::error!(error = %e, "WSDL not readable");
            HttpResponse::InternalServerError().finish()
        }
    }
}

async fn schema_file(name: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    // Only plain file names of schemas: nothing outside the schema folder can be asked for.
    let name = name.into_inner();
    let plain = name.ends_with(".xsd") && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && !name.contains("..");
    if !plain {
        return HttpResponse::NotFound().finish();
    }
    match tokio_read(state.schema_dir.join(&name)).await {
        Ok(text) => HttpResponse::Ok().content_type(ContentType::xml()).body(text),
        Err(_) => HttpResponse::NotFound().finish(),
    }
}

async fn tokio_read(path: PathBuf) -> std::io::Result<String> {
    web::block(move || std::fs::read_to_string(path)).await.map_err(std::io::Error::other)?
}

fn soap_response(status: StatusCode, version: SoapVersion, body: String) -> HttpResponse {
    HttpResponse::build(status).insert_header((header::CONTENT_TYPE, version.content_type())).body(body)
}

async fn receive(req: HttpRequest, mut payload: web::Payload, state: web::Data<State>, integration: Integration) -> HttpResponse {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let hinted = SoapVersion::from_content_type(content_type);
    let mut body = web::BytesMut::new();
    let mut too_large = false;
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) if body.len() + chunk.len() > state.max_body => {
                too_large = true;
                break;
            }
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(e) => {
                tracing::warn!(error = %e, "request body could not be read");
                return HttpResponse::BadRequest().finish();
            }
        }
    }
    let pipeline = state.pipeline.clone();
    let max_body = state.max_body;
    let result = web::block(move || {
        if too_large {
            pipeline.reject_unread(Rejection::TooLarge(format!("kaldet er større end {max_body} bytes")), integration, Transport::Straks)
        } else {
            pipeline.process(&body, integration, Transport::Straks, Mode::Book)
        }
    })
    .await;
    let mut response = match result {
        Ok(Ok(processed)) => {
            let version = processed.soap_version.unwrap_or(hinted);
            soap_response(StatusCode::OK, version, soap::envelope(version, &processed.receipts.to_xml()))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "technical failure; answered with a SOAP Fault, nothing handed over");
            soap_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                hinted,
                soap::fault(hinted, "Teknisk fejl hos modtageren; intet er modtaget. Prøv igen senere."),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "worker pool failure");
            soap_response(StatusCode::INTERNAL_SERVER_ERROR, hinted, soap::fault(hinted, "Modtageren lukker ned; prøv igen senere."))
        }
    };
    if too_large {
        // The rest of the body was not read, so the connection cannot be reused.
        response.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
    }
    response
}
