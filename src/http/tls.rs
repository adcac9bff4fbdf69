//! TLS with rustls, and mutual TLS: only client certificates issued by the configured CAs get through the
//! handshake, and only those on the allowlist get further. The server certificate and the CA files are read
//! again when they change on disk, so certificates are rotated without a restart.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io::BufReader;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use actix_http::body::MessageBody;
use actix_http::{HttpService, Protocol, Request, Response};
use actix_service::{apply_fn_factory, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt as _};
use actix_tls::accept::rustls_0_23::{Acceptor, AcceptorService, TlsStream};
use actix_tls::accept::TlsError;
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;

use anyhow::Context;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::TlsConfig;
use crate::domain::sortiment::{self, CallerCertificate, DnAttribute};

fn modified(paths: &[PathBuf]) -> Vec<Option<SystemTime>> {
    paths.iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let mut reader = BufReader::new(File::open(path).with_context(|| format!("reading {}", path.display()))?);
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate in the file", path.display());
    Ok(certs)
}

/// Files read again when any of them changes; a version that does not load keeps the one that did.
struct Reloading<T> {
    paths: Vec<PathBuf>,
    load: Box<dyn Fn() -> anyhow::Result<T> + Send + Sync>,
    current: Mutex<(Vec<Option<SystemTime>>, T)>,
}

impl<T: Clone> Reloading<T> {
    fn new(paths: Vec<PathBuf>, load: Box<dyn Fn() -> anyhow::Result<T> + Send + Sync>) -> anyhow::Result<Self> {
        let stamps = modified(&paths);
        let value = load()?;
        Ok(Reloading { paths, load, current: Mutex::new((stamps, value)) })
    }

    fn get(&self) -> T {
        let mut current = self.current.lock().expect("tls lock");
        let stamps = modified(&self.paths);
        if stamps != current.0 {
            match (self.load)() {
                Ok(value) => {
                    tracing::info!(files = ?self.paths, "TLS files changed; new version in use");
                    *current = (stamps, value);
                }
                // Half-written files during a rotation: keep serving with the old version and look again later.
                Err(e) => tracing::warn!(error = %e, "TLS files changed but do not load; keeping the version in use"),
            }
        }
        current.1.clone()
    }
}

struct CertResolver(Reloading<Arc<CertifiedKey>>);

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertResolver({:?})", self.0.paths)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
}

struct ClientVerifier {
    inner: Reloading<Arc<dyn ClientCertVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientVerifier {
    fn refused(&self, end_entity: &CertificateDer<'_>, error: &rustls::Error) {
        let reason = match error {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. }) => {
                "expired"
            }
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidYet | rustls::CertificateError::NotValidYetContext { .. },
            ) => "not_valid_yet",
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => "unknown_issuer",
            rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked) => "revoked",
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding) => "bad_encoding",
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::InvalidPurpose | rustls::CertificateError::InvalidPurposeContext { .. },
            ) => "wrong_purpose",
            rustls::Error::InvalidCertificate(_) => "invalid",
            _ => "other",
        };
        let peer = HANDSHAKE_PEER.get();
        if refusals().count(peer, reason) {
            let caller = caller_certificate(end_entity.as_ref());
            tracing::warn!(peer = %Peer(peer), reason, error = %error, subject = %caller.subject, fingerprint = %caller.fingerprint, "TLS handshake refused: client certificate");
        }
    }
}

impl std::fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientVerifier({:?})", self.inner.paths)
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; the CAs can change under us, so none are sent.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.get().verify_client_cert(end_entity, intermediates, now).and_then(|ok| {
            // webpki checks the extended key usage, not the key usage: a key whose certificate limits it to
            // signing certificates (or anything without digital signatures) is not a client's key.
            match signs_digitally(end_entity.as_ref()) {
                true => Ok(ok),
                false => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::InvalidPurpose)),
            }
        });
        if let Err(error) = &verified {
            self.refused(end_entity, error);
        }
        verified
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Whether a certificate's key may sign a TLS handshake: no key usage extension, or one with digitalSignature.
fn signs_digitally(der: &[u8]) -> bool {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => match cert.key_usage() {
            Ok(Some(usage)) => usage.value.digital_signature(),
            Ok(None) => true,
            Err(_) => false,
        },
        Err(_) => false,
    }
}

/// The rustls configuration for `fkoeko serve`.
pub fn server_config(tls: &TlsConfig) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert, key) = (tls.cert.clone(), tls.key.clone());
    let key_provider = provider.clone();
    let certified = Reloading::new(
        vec![cert.clone(), key.clone()],
        Box::new(move || {
            let chain = read_certs(&cert)?;
            let mut reader = BufReader::new(File::open(&key).with_context(|| format!("reading {}", key.display()))?);
            let der = rustls_pemfile::private_key(&mut reader)?.with_context(|| format!("{}: no private key", key.display()))?;
            let signing = key_provider.key_provider.load_private_key(der)?;
            Ok(Arc::new(CertifiedKey::new(chain, signing)))
        }),
    )?;
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = if tls.client_ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let cas = tls.client_ca.clone();
        let verifier_provider = provider.clone();
        let inner = Reloading::new(
            cas.clone(),
            Box::new(move || {
                let mut roots = RootCertStore::empty();
                for ca in &cas {
                    for cert in read_certs(ca)? {
                        roots.add(cert).with_context(|| format!("{}: not a CA certificate", ca.display()))?;
                    }
                }
                // webpki checks the chain to these CAs, the validity period, and the client-auth key usage.
                let verifier: Arc<dyn ClientCertVerifier> =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), verifier_provider.clone()).build()?;
                Ok(verifier)
            }),
        )?;
        builder.with_client_cert_verifier(Arc::new(ClientVerifier { inner, algorithms: provider.signature_verification_algorithms }))
    };
    Ok(builder.with_cert_resolver(Arc::new(CertResolver(certified))))
}

/// The identity of a client certificate, as allowlists and sortiment pins name it.
pub fn caller_certificate(der: &[u8]) -> CallerCertificate {
    use sha2::{Digest, Sha256};
    let fingerprint = format!("sha256:{}", hex::encode(Sha256::digest(der)));
    let subject = x509_parser::parse_x509_certificate(der).map(|(_, cert)| subject_of(cert.subject())).unwrap_or_default();
    CallerCertificate { fingerprint, subject }
}

/// A certificate's subject, attribute by attribute in the order it is encoded, each RDN's own together.
fn subject_of(name: &x509_parser::x509::X509Name) -> sortiment::DistinguishedName {
    let registry = x509_parser::objects::oid_registry();
    let attributes = name
        .iter()
        .flat_map(|rdn| rdn.iter().enumerate())
        .map(|(n, attribute)| {
            let oid = attribute.attr_type();
            let dotted = oid.to_id_string();
            let kind = x509_parser::objects::oid2abbrev(oid, registry).map(|sn| sn.to_uppercase()).unwrap_or_else(|_| dotted.clone());
            // A value that is not a string type is compared by its bytes, as RFC 4514 writes them: "#" and hex.
            let value = attribute.as_str().map(str::to_string).unwrap_or_else(|_| format!("#{}", hex::encode(attribute.attr_value().data)));
            DnAttribute { kind, oid: Some(dotted), value, joined: n > 0 }
        })
        .collect();
    sortiment::DistinguishedName(attributes)
}

/// Only the identity leaves the TLS layer: the request handlers read it from the connection's data.
fn on_connect(tls: &TlsStream<TcpStream>, data: &mut actix_web::dev::Extensions) {
    if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        data.insert(caller_certificate(cert.as_ref()));
    }
}

/// How a TLS listener runs.
pub struct Listen {
    pub workers: usize,
    pub max_connections: usize,
    pub client_request_timeout: Duration,
}

/// Serves an actix-web app over TLS on `listener`, as `HttpServer::listen_rustls_0_23` does, with one difference:
/// a handshake that fails is counted by reason and logged with the peer's address. actix-web's own TLS listener
/// drops these errors, so an operator never learns that a client came without a certificate or with one the CAs
/// did not issue.
pub fn serve<F, I, S, B>(listener: TcpListener, tls: ServerConfig, listen: &Listen, factory: F) -> std::io::Result<actix_server::Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let mut tls = tls;
    // HTTP/2 is not built in (actix-web without its http2 feature).
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let request_timeout = listen.client_request_timeout;
    let address = listener.local_addr()?;
    let server = actix_server::Server::build()
        .workers(listen.workers)
        .max_concurrent_connections(listen.max_connections)
        .listen(format!("fkoeko-tls-{address}"), listener, move || {
            let mut acceptor = Acceptor::new(tls.clone());
            acceptor.set_handshake_timeout(HANDSHAKE_TIMEOUT);
            let app = factory().into_factory().map_err(|e| e.into().error_response());
            let http = HttpService::build()
                .client_request_timeout(request_timeout)
                // actix-web's default: a second for the client to close after the answer.
                .client_disconnect_timeout(Duration::from_secs(1))
                .on_connect_ext(on_connect)
                // The scheme the handlers need (the WSDL's address) is known to them; the rest is actix-web's default.
                .finish(map_config(app, |_| AppConfig::default()));
            apply_fn_factory::<_, _, _, _, TcpStream, TcpStream, _, _>(acceptor, |io: TcpStream, acceptor: &AcceptorService| {
                let peer = io.peer_addr().ok().map(|a| a.ip());
                let handshake = WithPeer { peer, handshake: Box::pin(acceptor.call(io)) };
                async move { handshake.await.inspect_err(|e| handshake_failed(peer, e)) }
            })
            .map_err(TlsError::into_service_error)
            .and_then(|io: TlsStream<TcpStream>| async move {
                let peer = io.get_ref().0.peer_addr().ok();
                Ok((io, Protocol::Http1, peer))
            })
            .and_then(http.map_err(TlsError::Service))
        })?
        .run();
    Ok(server)
}

/// How long a client has to complete the handshake (actix-web's default).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

thread_local! {
    /// The peer of the handshake being polled on this thread, for the certificate verifier, which rustls calls
    /// inside that poll and gives no address of its own.
    static HANDSHAKE_PEER: Cell<Option<IpAddr>> = const { Cell::new(None) };
}

/// A handshake that makes its peer known to the verifier while it runs.
struct WithPeer<F> {
    peer: Option<IpAddr>,
    handshake: Pin<Box<F>>,
}

impl<F: Future> Future for WithPeer<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let outer = HANDSHAKE_PEER.replace(this.peer);
        let polled = this.handshake.as_mut().poll(cx);
        HANDSHAKE_PEER.set(outer);
        polled
    }
}

/// A peer's address as logged: "unknown" when the socket could not say.
struct Peer(Option<IpAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("unknown"),
        }
    }
}

/// A handshake that did not complete. A refused certificate was counted and logged by the verifier, which knows
/// the certificate; everything else is counted and logged here.
fn handshake_failed(peer: Option<IpAddr>, error: &TlsError<std::io::Error, std::convert::Infallible>) {
    let io = match error {
        TlsError::Timeout => {
            if refusals().count(peer, "handshake_timeout") {
                tracing::warn!(peer = %Peer(peer), reason = "handshake_timeout", seconds = HANDSHAKE_TIMEOUT.as_secs(), "TLS handshake not completed in time");
            }
            return;
        }
        TlsError::Tls(io) => io,
        TlsError::Service(never) => match *never {},
    };
    let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        // The connection closed or broke mid-handshake (a port probe, a load balancer's TCP check): counted, not
        // logged above debug, for it says nothing about a client's certificate.
        crate::metrics::tls_refused().with_label_values(&["aborted"]).inc();
        tracing::debug!(peer = %Peer(peer), error = %io, "TLS handshake aborted by the peer");
        return;
    };
    let (reason, what) = match tls {
        rustls::Error::InvalidCertificate(_) => return,
        rustls::Error::NoCertificatesPresented => ("no_certificate", "the client sent no certificate, and one is required"),
        rustls::Error::AlertReceived(_) => ("client_alert", "the client ended the handshake (does it trust the server certificate?)"),
        rustls::Error::PeerIncompatible(_) => ("incompatible", "no TLS version or cipher suite in common"),
        _ => ("handshake", "the handshake failed"),
    };
    if refusals().count(peer, reason) {
        tracing::warn!(peer = %Peer(peer), reason, error = %tls, "TLS handshake refused: {what}");
    }
}

/// Refused handshakes: each is counted; each peer and reason is logged at most once in ten minutes, so a client
/// that retries does not flood the log.
struct Refusals(Mutex<HashMap<(Option<IpAddr>, &'static str), Instant>>);

const LOG_REFUSED_EVERY: Duration = Duration::from_secs(600);

fn refusals() -> &'static Refusals {
    static REFUSALS: OnceLock<Refusals> = OnceLock::new();
    REFUSALS.get_or_init(|| Refusals(Mutex::default()))
}

impl Refusals {
    /// Counts a refusal; true when it is to be logged.
    fn count(&self, peer: Option<IpAddr>, reason: &'static str) -> bool {
        crate::metrics::tls_refused().with_label_values(&[reason]).inc();
        let mut logged = self.0.lock().expect("refusal log");
        if logged.len() > 10_000 {
            logged.retain(|_, at| at.elapsed() < LOG_REFUSED_EVERY);
        }
        if logged.get(&(peer, reason)).is_some_and(|at| at.elapsed() < LOG_REFUSED_EVERY) {
            return false;
        }
        logged.insert((peer, reason), Instant::now());
        true
    }
}
