//! TLS with rustls, and mutual TLS: only client certificates issued by the configured CAs get through the
//! handshake, and only those on the allowlist get further. The server certificate and the CA files are read
//! again when they change on disk, so certificates are rotated without a restart.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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
    /// When each (reason, certificate) was last logged: a client that retries does not flood the log.
    logged: Mutex<std::collections::HashMap<(String, String), std::time::Instant>>,
}

/// A refused certificate is logged at most this often per reason and certificate.
const LOG_REFUSED_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

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
            rustls::Error::InvalidCertificate(_) => "invalid",
            _ => "other",
        };
        crate::metrics::tls_refused().with_label_values(&[reason]).inc();
        let caller = caller_certificate(end_entity.as_ref());
        let key = (reason.to_string(), caller.fingerprint.clone());
        let mut logged = self.logged.lock().expect("log times");
        if logged.len() > 10_000 {
            logged.retain(|_, at| at.elapsed() < LOG_REFUSED_EVERY);
        }
        if logged.get(&key).is_some_and(|at| at.elapsed() < LOG_REFUSED_EVERY) {
            return;
        }
        logged.insert(key, std::time::Instant::now());
        tracing::warn!(reason, error = %error, subject = %caller.subject, fingerprint = %caller.fingerprint, "TLS handshake refused: client certificate");
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
        let verified = self.inner.get().verify_client_cert(end_entity, intermediates, now);
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
        builder.with_client_cert_verifier(Arc::new(ClientVerifier {
            inner,
            algorithms: provider.signature_verification_algorithms,
            logged: Mutex::default(),
        }))
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

/// A certificate's subject, attribute by attribute in the order it is encoded.
fn subject_of(name: &x509_parser::x509::X509Name) -> sortiment::DistinguishedName {
    let registry = x509_parser::objects::oid_registry();
    let attributes = name
        .iter()
        .flat_map(|rdn| rdn.iter())
        .map(|attribute| {
            let oid = attribute.attr_type();
            let dotted = oid.to_id_string();
            let kind = x509_parser::objects::oid2abbrev(oid, registry).map(|sn| sn.to_uppercase()).unwrap_or_else(|_| dotted.clone());
            // A value that is not a string type is compared by its bytes, as RFC 4514 writes them: "#" and hex.
            let value = attribute.as_str().map(str::to_string).unwrap_or_else(|_| format!("#{}", hex::encode(attribute.attr_value().data)));
            DnAttribute { kind, oid: Some(dotted), value }
        })
        .collect();
    sortiment::DistinguishedName(attributes)
}

/// Only the identity leaves the TLS layer: the request handlers read it from the connection's data.
pub fn on_connect(connection: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    if let Some(tls) = connection.downcast_ref::<Tls>() {
        if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
            data.insert(caller_certificate(cert.as_ref()));
        }
    }
}
