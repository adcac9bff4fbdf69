//! HTTP transport: SOAP over HTTP for straks deliveries (SF1590_A at /sf1590a, SF1590_B at /sf1590b), the WSDL and the schemas it refers to.

pub mod tls;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;

use crate::config::Config;
use crate::domain::rejection::Rejection;
use crate::domain::sortiment::{CallerCertificate, CertificateName, Integration};
use crate::pipeline::{Pipeline, Transport};
use crate::wire::WireSpec;
use crate::xml::soap::{self, SoapVersion};

struct State {
    pipeline: Arc<Pipeline>,
    schema_dir: PathBuf,
    max_body: usize,
    body_timeout: Duration,
    min_body_rate: u64,
    body_grace: Duration,
    /// Body bytes reserved by the calls in flight, and the most there may be.
    body_bytes: AtomicU64,
    max_body_bytes: u64,
    /// Deliveries being read and decided (how many, and their bytes), and the most there may be at once.
    processing: (std::sync::Mutex<(usize, u64)>, std::sync::Condvar),
    max_processing: usize,
    readers: Readers,
    /// Client certificates let in beyond the TLS handshake; empty: any the CAs issued.
    allowed_clients: Vec<CertificateName>,
    /// Whether clients must show a certificate (mutual TLS).
    mutual_tls: bool,
    /// "https" or "http", for the addresses in the WSDL.
    scheme: &'static str,
    public_url: Option<String>,
    /// The listener's own address, for a call without a usable Host header.
    local_addr: String,
    in_flight: AtomicUsize,
    max_in_flight: usize,
}

/// Counts a call as in flight while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Body bytes a call has reserved of the budget, given back when the call is answered.
struct Reserved {
    state: web::Data<State>,
    bytes: u64,
}

impl Reserved {
    /// Reserves `bytes`, or `None` when the budget would be exceeded.
    fn take(state: &web::Data<State>, bytes: u64) -> Option<Self> {
        state
            .body_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| (held + bytes <= state.max_body_bytes).then_some(held + bytes))
            .ok()
            .map(|_| Reserved { state: state.clone(), bytes })
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.state.body_bytes.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// The threads that read and decide deliveries: a fixed few, started with the server, so that the memory one
/// delivery took is reused by the next (a new thread per call keeps memory of its own in the allocator).
struct Readers {
    jobs: crossbeam_channel::Sender<Box<dyn FnOnce() + Send>>,
}

/// A reader thread stopped before it answered (it panicked).
struct Stopped;

impl Readers {
    fn start(threads: usize) -> Self {
        let (jobs, queue) = crossbeam_channel::unbounded::<Box<dyn FnOnce() + Send>>();
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            // The threads end when the server's state, and with it the sender, is dropped.
            std::thread::Builder::new()
                .name(format!("delivery-reader-{n}"))
                .spawn(move || {
                    for job in queue {
                        // A panic is logged by the hook and answered as a fault; the thread goes on.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .expect("a reader thread starts");
        }
        Readers { jobs }
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, Stopped> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(job());
            }))
            .map_err(|_| Stopped)?;
        answered.await.map_err(|_| Stopped)
    }
}

/// A turn to read and decide a delivery, on a blocking thread. It waits while `max_processing` others have one,
/// or while the bodies being read already add up to the largest body allowed: reading takes memory in
/// proportion to the delivery, so large deliveries take their turns one at a time and small ones side by side.
struct Turn<'a>(&'a State, u64);

impl<'a> Turn<'a> {
    fn wait(state: &'a State, bytes: u64) -> Self {
        let (taken, freed) = &state.processing;
        let full =
            |(count, held): &mut (usize, u64)| *count >= state.max_processing || (*held > 0 && *held + bytes > state.max_body as u64);
        let mut taken = freed.wait_while(taken.lock().expect("turn lock"), full).expect("turn lock");
        taken.0 += 1;
        taken.1 += bytes;
        Turn(state, bytes)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let (taken, freed) = &self.0.processing;
        let mut taken = taken.lock().expect("turn lock");
        taken.0 -= 1;
        taken.1 -= self.1;
        freed.notify_all();
    }
}

fn busy() -> HttpResponse {
    HttpResponse::ServiceUnavailable().insert_header((header::RETRY_AFTER, "5")).insert_header((header::CONNECTION, "close")).finish()
}

/// The client certificates let in beyond the handshake, as the configuration names them.
fn allowed_clients(config: &Config) -> anyhow::Result<Vec<CertificateName>> {
    let parse =
        |(n, name): (usize, &String)| CertificateName::parse(name).map_err(|why| anyhow::anyhow!("tls.allowed_clients[{n}]: {why}"));
    config.tls.allowed_clients.iter().enumerate().map(parse).collect()
}

/// Plain HTTP only on loopback, or where the configuration says so explicitly. Checked before binding.
pub fn check_transport(config: &Config) -> anyhow::Result<()> {
    allowed_clients(config)?;
    if !config.tls.enabled && !is_loopback(&config.server.listen) && !config.server.allow_plain_http {
        anyhow::bail!(
            "refusing plain HTTP on {}: configure [tls], or set server.allow_plain_http = true if a proxy in front terminates TLS",
            config.server.listen
        );
    }
    Ok(())
}

/// Whether a listen address is on loopback only.
pub fn is_loopback(listen: &str) -> bool {
    listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback()) || listen.starts_with("localhost:")
}

/// Serves deliveries on a bound listener. The caller has checked the transport (`check_transport`) before
/// binding it.
pub fn server(pipeline: Arc<Pipeline>, listener: TcpListener, config: &Config) -> anyhow::Result<actix_web::dev::Server> {
    let max_processing = match config.server.max_processing {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let state = web::Data::new(State {
        pipeline,
        schema_dir: config.paths.schemas.clone(),
        max_body: config.limits.max_body_bytes,
        body_timeout: Duration::from_secs(config.server.request_body_timeout_secs),
        min_body_rate: config.server.min_body_bytes_per_sec.max(1),
        body_grace: Duration::from_secs(config.server.body_grace_secs),
        body_bytes: AtomicU64::new(0),
        max_body_bytes: config.server.max_body_bytes_in_flight,
        processing: Default::default(),
        max_processing,
        readers: Readers::start(max_processing),
        allowed_clients: allowed_clients(config)?,
        mutual_tls: config.tls.enabled && !config.tls.client_ca.is_empty(),
        scheme: if config.tls.enabled { "https" } else { "http" },
        public_url: config.server.public_url.clone(),
        local_addr: listener.local_addr()?.to_string(),
        in_flight: AtomicUsize::new(0),
        max_in_flight: config.server.max_concurrent_requests,
    });
    let app = move || {
        App::new()
            .app_data(state.clone())
            .route("/sf1590a", web::get().to(|req, state| wsdl(req, state, Integration::Sf1590A)))
            .route("/sf1590a", web::post().to(|req, body, state| receive(req, body, state, Integration::Sf1590A)))
            .route("/sf1590b", web::get().to(|req, state| wsdl(req, state, Integration::Sf1590B)))
            .route("/sf1590b", web::post().to(|req, body, state| receive(req, body, state, Integration::Sf1590B)))
            .route("/schemas/{name}", web::get().to(schema_file))
    };
    let listen = tls::Listen {
        workers: config.server.workers.max(1),
        max_connections: config.server.max_connections,
        client_request_timeout: Duration::from_secs(config.server.request_head_timeout_secs),
    };
    if config.tls.enabled {
        return Ok(tls::serve(listener, tls::server_config(&config.tls)?, &listen, app)?);
    }
    Ok(HttpServer::new(app)
        .workers(listen.workers)
        .max_connections(listen.max_connections)
        .client_request_timeout(listen.client_request_timeout)
        .listen(listener)?
        .run())
}

/// The address clients reached us on, so the WSDL points back at it: the configured public address, else the
/// Host header when it is a plain host name or address, else the address the call came in on. Forwarded headers
/// are not read: any caller could set them, and the WSDL would send the next reader elsewhere.
fn base_url(req: &HttpRequest, state: &State) -> String {
    if let Some(public) = &state.public_url {
        return public.trim_end_matches('/').to_string();
    }
    let plain =
        |host: &str| !host.is_empty() && host.len() <= 255 && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    let host = match req.headers().get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) if plain(host) => host.to_string(),
        _ => state.local_addr.clone(),
    };
    format!("{}://{host}", state.scheme)
}

async fn wsdl(req: HttpRequest, state: web::Data<State>, integration: Integration) -> HttpResponse {
    if !req.query_string().eq_ignore_ascii_case("wsdl") {
        return HttpResponse::BadRequest().body(format!("GET {}?wsdl gives the WSDL; deliveries are POSTed as SOAP.\n", req.path()));
    }
    match read_file(state.schema_dir.join(WireSpec::of(integration).wsdl)).await {
        Ok(text) => HttpResponse::Ok().content_type(ContentType::xml()).body(text.replace("{{BASE}}", &base_url(&req, &state))),
        Err(e) => {
            tracing::error!(error = %e, "WSDL not readable");
            HttpResponse::InternalServerError().finish()
        }
    }
}

async fn schema_file(name: web::Path<String>, state: web::Data<State>) -> HttpResponse {
    // Only plain file names of schemas: nothing outside the schema folder can be asked for.
    let name = name.into_inner();
    let plain =
        name.ends_with(".xsd") && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && !name.contains("..");
    if !plain {
        return HttpResponse::NotFound().finish();
    }
    match read_file(state.schema_dir.join(&name)).await {
        Ok(text) => HttpResponse::Ok().content_type(ContentType::xml()).body(text),
        Err(_) => HttpResponse::NotFound().finish(),
    }
}

/// Reads a file on the blocking pool, off the request threads.
async fn read_file(path: PathBuf) -> std::io::Result<String> {
    web::block(move || std::fs::read_to_string(path)).await.map_err(std::io::Error::other)?
}

fn soap_response(status: StatusCode, version: SoapVersion, body: String) -> HttpResponse {
    HttpResponse::build(status).insert_header((header::CONTENT_TYPE, version.content_type())).body(body)
}

/// The caller's certificate, if it is let in: with mutual TLS, on the allowlist (when there is one).
fn admitted_caller(req: &HttpRequest, state: &State) -> Result<Option<CallerCertificate>, HttpResponse> {
    let caller = req.conn_data::<CallerCertificate>().cloned();
    if !state.mutual_tls || state.allowed_clients.is_empty() {
        return Ok(caller);
    }
    match caller {
        Some(c) if c.is_in(&state.allowed_clients) => Ok(Some(c)),
        other => {
            let shown = other.map_or("none".to_string(), |c| format!("{} ({})", c.subject, c.fingerprint));
            tracing::warn!(certificate = %shown, peer = ?req.peer_addr(), "client certificate not on the allowlist; refused");
            Err(HttpResponse::Forbidden().body("Klientcertifikatet er ikke på listen over tilladte kaldere.\n"))
        }
    }
}

enum Body {
    Read(web::BytesMut),
    TooLarge,
    /// Not received in time, or slower than the minimum rate.
    TooSlow,
}

/// The length a call declares.
fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// Reads the body up to the size limit, and no further, as long as it keeps coming at the minimum rate: after the
/// grace period, by each moment at least `rate` bytes a second on average must have arrived, and all of it
/// within the body timeout.
async fn read_body(req: &HttpRequest, payload: &mut web::Payload, state: &State) -> Result<Body, actix_web::error::PayloadError> {
    let max = state.max_body;
    // A declared length over the limit is refused before a byte of the body is read.
    if declared_length(req).is_some_and(|len| len > max as u64) {
        return Ok(Body::TooLarge);
    }
    let started = actix_web::rt::time::Instant::now();
    // No pause in a body may be longer than this: a sender that sends much at once and then stalls would otherwise
    // keep its place in the memory budget for as long as its average allows.
    let longest_pause = state.body_grace.max(Duration::from_secs(1)) * 5;
    let mut last_progress = started;
    let mut body = web::BytesMut::with_capacity(declared_length(req).unwrap_or(0) as usize);
    loop {
        let due = state.body_grace + Duration::from_secs_f64((body.len() as f64 + 1.0) / state.min_body_rate as f64);
        let deadline = (started + due.min(state.body_timeout)).min(last_progress + longest_pause);
        let left = deadline.saturating_duration_since(actix_web::rt::time::Instant::now());
        let chunk = match actix_web::rt::time::timeout(left, payload.next()).await {
            Ok(Some(chunk)) => chunk?,
            Ok(None) => return Ok(Body::Read(body)),
            Err(_) => return Ok(Body::TooSlow),
        };
        if body.len() + chunk.len() > max {
            return Ok(Body::TooLarge);
        }
        body.extend_from_slice(&chunk);
        last_progress = actix_web::rt::time::Instant::now();
    }
}

async fn receive(req: HttpRequest, mut payload: web::Payload, state: web::Data<State>, integration: Integration) -> HttpResponse {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let hinted = SoapVersion::from_content_type(content_type);
    let caller = match admitted_caller(&req, &state) {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    if state.in_flight.fetch_add(1, Ordering::SeqCst) >= state.max_in_flight {
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!(limit = state.max_in_flight, "too many calls at once; answered 503");
        return busy();
    }
    let _in_flight = InFlight(&state.in_flight);
    // Memory: the body is reserved against the budget before a byte of it is read.
    let reserve = declared_length(&req).unwrap_or(state.max_body as u64).min(state.max_body as u64);
    let Some(_reserved) = Reserved::take(&state, reserve) else {
        tracing::warn!(budget = state.max_body_bytes, wanted = reserve, "request bodies in memory would exceed their budget; answered 503");
        return busy();
    };
    let body = match read_body(&req, &mut payload, &state).await {
        Ok(Body::TooSlow) => {
            tracing::warn!(rate = state.min_body_rate, "request body not received in time or too slowly; answered 408");
            return HttpResponse::RequestTimeout().insert_header((header::CONNECTION, "close")).finish();
        }
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(error = %e, "request body could not be read");
            return HttpResponse::BadRequest().finish();
        }
    };
    let too_large = matches!(body, Body::TooLarge);
    let pipeline = state.pipeline.clone();
    let max_body = state.max_body;
    let turns = state.clone();
    let bytes = match &body {
        Body::Read(body) => body.len() as u64,
        _ => 0,
    };
    // Read and decided on a reader thread, which is then free for the next call while this one waits its turn
    // in the writer's queue.
    let decided = state
        .readers
        .run(move || {
            let _turn = Turn::wait(&turns, bytes);
            match body {
                Body::TooLarge => {
                    let rejection = Rejection::TooLarge(format!("kaldet er større end {max_body} bytes"));
                    Ok(pipeline.reject_unread(rejection, integration, Transport::Straks))
                }
                Body::Read(body) => pipeline.decide(&body, integration, Transport::Straks, caller.as_ref()),
                Body::TooSlow => unreachable!("answered above"),
            }
        })
        .await;
    let result = match decided {
        Ok(Ok(decided)) => Ok(state.pipeline.book(decided).await),
        Ok(Err(e)) => Ok(Err(e)),
        Err(stopped) => Err(stopped),
    };
    let mut response = match result {
        Ok(Ok(processed)) => {
            let version = processed.soap_version.unwrap_or(hinted);
            let answer = soap::envelope_with_header(version, processed.echo_transaction.as_deref(), &processed.receipts.to_xml());
            soap_response(StatusCode::OK, version, answer)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "technical failure; answered with a SOAP Fault, nothing handed over");
            soap_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                hinted,
                soap::fault(hinted, "Teknisk fejl hos modtageren; intet er modtaget. Prøv igen senere."),
            )
        }
        Err(Stopped) => {
            tracing::error!("the delivery's reader thread stopped; answered with a SOAP Fault");
            soap_response(StatusCode::INTERNAL_SERVER_ERROR, hinted, soap::fault(hinted, "Modtageren lukker ned; prøv igen senere."))
        }
    };
    if too_large {
        // The rest of the body was not read, so the connection cannot be reused.
        response.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
    }
    response
}
