//! HTTPS and mutual TLS with real certificates made in the test (rcgen), curl as the client.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::delivery::Delivery;
use crate::common::*;
use fkoeko_adapter::config::Config;
use fkoeko_adapter::startup::{spawn, RunningServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate for a server (127.0.0.1) or a client, written as PEM files `name.pem` and `name.key`.
    fn issue(&self, dir: &Path, name: &str, server: bool, expired: bool) -> Issued {
        self.issue_named(dir, name, &[(DnType::CommonName, name)], server, expired)
    }

    /// A certificate whose subject has the attributes `subject`, in that order; files named after `file`.
    fn issue_named(&self, dir: &Path, file: &str, subject: &[(DnType, &str)], server: bool, expired: bool) -> Issued {
        let mut params =
            CertificateParams::new(if server { vec!["127.0.0.1".to_string(), "localhost".to_string()] } else { Vec::new() }).unwrap();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.extended_key_usages = vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.sign(dir, file, params)
    }

    /// Signs `params` with a new key, written as PEM files `name.pem` and `name.key`.
    fn sign(&self, dir: &Path, name: &str, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (pem, key_file) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&pem, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let fingerprint = fkoeko_adapter::http::tls::caller_certificate(cert.der()).fingerprint;
        Issued { pem, key: key_file, fingerprint }
    }

    fn write(&self, path: &Path) {
        std::fs::write(path, self.cert.pem()).unwrap();
    }

    /// A client certificate with the key usage `usages` (and the client-auth extended key usage).
    fn issue_with_key_usage(&self, dir: &Path, name: &str, usages: Vec<KeyUsagePurpose>) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = usages;
        self.sign(dir, name, params)
    }

    /// A client certificate made by openssl, whose `-subj` can write a multi-valued RDN (`/O=A+CN=B`), which
    /// rcgen cannot.
    fn issue_with_openssl(&self, dir: &Path, name: &str, subject: &str) -> Issued {
        let (ca_pem, ca_key) = (dir.join("openssl-ca.pem"), dir.join("openssl-ca.key"));
        self.write(&ca_pem);
        std::fs::write(&ca_key, self.key.serialize_pem()).unwrap();
        let (pem, key, csr, ext) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
            dir.join(format!("{name}.csr")),
            dir.join(format!("{name}.ext")),
        );
        std::fs::write(&ext, "extendedKeyUsage = clientAuth\nkeyUsage = digitalSignature\n").unwrap();
        let run = |args: &[&std::ffi::OsStr]| {
            let out = Command::new("openssl").args(args).output().expect("openssl is installed");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        let os = |s: &str| std::ffi::OsString::from(s);
        run(&[
            &os("req"),
            &os("-new"),
            &os("-newkey"),
            &os("ec"),
            &os("-pkeyopt"),
            &os("ec_paramgen_curve:P-256"),
            &os("-nodes"),
            &os("-multivalue-rdn"),
            &os("-subj"),
            &os(subject),
            &os("-keyout"),
            key.as_os_str(),
            &os("-out"),
            csr.as_os_str(),
        ]);
        run(&[
            &os("x509"),
            &os("-req"),
            &os("-in"),
            csr.as_os_str(),
            &os("-CA"),
            ca_pem.as_os_str(),
            &os("-CAkey"),
            ca_key.as_os_str(),
            &os("-CAcreateserial"),
            &os("-days"),
            &os("30"),
            &os("-extfile"),
            ext.as_os_str(),
            &os("-out"),
            pem.as_os_str(),
        ]);
        let der = {
            let text = std::fs::read_to_string(&pem).unwrap();
            let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
            base64_decode(&body)
        };
        let fingerprint = fkoeko_adapter::http::tls::caller_certificate(&der).fingerprint;
        Issued { pem, key, fingerprint }
    }
}

/// Standard base64, for reading back a PEM file.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|chunk| {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(chunk.len() - 1)
        })
        .collect()
}

struct Issued {
    pem: PathBuf,
    key: PathBuf,
    fingerprint: String,
}

/// curl's exit code, the HTTP status and the body.
fn curl(url: &str, ca: &Path, client: Option<&Issued>, body: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (request, response) = (dir.path().join("request.xml"), dir.path().join("response.xml"));
    std::fs::write(&request, body).unwrap();
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "20", "-H", "Content-Type: text/xml", "-o"])
        .arg(&response)
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(ca);
    if let Some(client) = client {
        command.arg("--cert").arg(&client.pem).arg("--key").arg(&client.key);
    }
    let out = command.arg("--data-binary").arg(format!("@{}", request.display())).arg(url).output().expect("curl is installed");
    let body = std::fs::read_to_string(&response).unwrap_or_default();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), body)
}

struct Setup {
    dir: tempfile::TempDir,
    server: RunningServer,
    /// What clients trust for the server.
    ca_file: PathBuf,
    server_cert: Issued,
    client_ca: Ca,
    sp: Issued,
    ky_direct: Issued,
    pinned: Issued,
    db: String,
}

const DIRECT_SENDER: &str = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b05";

/// A server CA (its certificate in `server-ca.pem`, for clients to trust) and the server's certificate from it,
/// and a client CA (in `client-ca.pem`, for the server to trust).
fn pki(d: &Path) -> (PathBuf, Issued, Ca) {
    let (server_ca, client_ca) = (Ca::new("Server CA"), Ca::new("Client CA"));
    let ca_file = d.join("server-ca.pem");
    server_ca.write(&ca_file);
    client_ca.write(&d.join("client-ca.pem"));
    (ca_file, server_ca.issue(d, "server", true, false), client_ca)
}

fn start() -> Setup {
    start_with(|_| {})
}

fn start_with(adjust: impl FnOnce(&mut Config)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca_file, server_cert, client_ca) = pki(d);
    // Serviceplatformen's callback certificate, on the allowlist by fingerprint.
    let sp = client_ca.issue(d, "SP_TEST_Callback", false, false);
    // Allowed by subject.
    let ky_direct = client_ca.issue(d, "KY-direkte", false, false);
    // A sender that connects directly, pinned to its own certificate in the sortiment.
    let pinned = client_ca.issue(d, "Direkte", false, false);
    let sortiment = std::fs::read_to_string(repo("tests/fixtures/sortiment.toml")).unwrap()
        + &format!(
            "\n[[afsender]]\nsystem = \"{DIRECT_SENDER}\"\nnavn = \"Direkte (test)\"\nmyndighed = \"29189846\"\n\
             gyldig_fra = \"2024-01-01\"\nintegrationer = [\"SF1590_A\"]\ncertifikater = [\"{}\"]\n\n  [[afsender.kontering]]\n  funktion = \"*\"\n",
            pinned.fingerprint
        );
    std::fs::write(d.join("sortiment.toml"), sortiment).unwrap();
    let db = new_database_url(d);
    let mut config = test_config(&db);
    config.paths.sortiment = d.join("sortiment.toml");
    config.tls.enabled = true;
    config.tls.cert = server_cert.pem.clone();
    config.tls.key = server_cert.key.clone();
    config.tls.client_ca = vec![d.join("client-ca.pem")];
    config.tls.allowed_clients = vec![sp.fingerprint.clone(), "CN=KY-direkte".into(), pinned.fingerprint.clone()];
    adjust(&mut config);
    let server = spawn(&config).unwrap();
    Setup { dir, server, ca_file, server_cert, client_ca, sp, ky_direct, pinned, db }
}

fn status_of(body: &str) -> String {
    parse_receipts(body).receipts[0].status.as_str().to_string()
}

/// A subject on the allowlist is compared attribute by attribute: a certificate whose one CN reads like the
/// allowed subject printed is not it.
#[test]
fn a_subject_is_compared_as_a_name_not_as_printed_text() {
    let s = start_with(|c| c.tls.allowed_clients.push("CN=allowed-client, O=Test".into()));
    let url = s.server.https_url("/sf1590a");
    let d = s.dir.path();
    let spoofed = s.client_ca.issue_named(d, "spoofed", &[(DnType::CommonName, "allowed-client, O=Test")], false, false);
    let (code, status, body) = curl(&url, &s.ca_file, Some(&spoofed), &Delivery::one("DN-NO").soap11());
    assert_eq!((code, status.as_str()), (0, "403"), "{body}");
    let real =
        s.client_ca.issue_named(d, "real", &[(DnType::CommonName, "allowed-client"), (DnType::OrganizationName, "Test")], false, false);
    let (code, status, body) = curl(&url, &s.ca_file, Some(&real), &Delivery::one("DN-YES").soap11());
    assert_eq!((code, status.as_str()), (0, "200"), "{body}");
    assert_eq!(status_of(&body), "Accepteret");
}

/// Where one RDN ends and the next begins is part of a subject: a certificate with one multi-valued RDN
/// `O=KOMBIT + CN=SP` is not the allowed `O=KOMBIT, CN=SP` (two RDNs), and the other way round.
#[test]
fn a_multi_valued_rdn_is_not_two_rdns() {
    let s = start_with(|c| c.tls.allowed_clients = vec!["O=KOMBIT, CN=SP_PROD_Callback".into(), "O=Kommune + CN=KY".into()]);
    let url = s.server.https_url("/sf1590a");
    let d = s.dir.path();
    let cases = [
        ("one RDN for the two", "/O=KOMBIT+CN=SP_PROD_Callback", "403"),
        ("two RDNs", "/O=KOMBIT/CN=SP_PROD_Callback", "200"),
        ("two RDNs for the one", "/O=Kommune/CN=KY", "403"),
        ("one RDN", "/O=Kommune+CN=KY", "200"),
    ];
    for (n, (what, subject, expected)) in cases.iter().enumerate() {
        let client = s.client_ca.issue_with_openssl(d, &format!("rdn-{n}"), subject);
        let (code, status, body) = curl(&url, &s.ca_file, Some(&client), &Delivery::one(&format!("RDN-{n}")).soap11());
        assert_eq!((code, status.as_str()), (0, *expected), "{what}: {body}");
    }
}

#[test]
fn client_certificates_are_checked() {
    let s = start();
    let url = s.server.https_url("/sf1590a");
    let d = s.dir.path();

    // On the allowlist by fingerprint (Serviceplatformen) and by subject: in.
    let (code, status, body) = curl(&url, &s.ca_file, Some(&s.sp), &Delivery::one("TLS-1").soap11());
    assert_eq!((code, status.as_str()), (0, "200"), "{body}");
    assert_eq!(status_of(&body), "Accepteret");
    let (_, status, body) = curl(&url, &s.ca_file, Some(&s.ky_direct), &Delivery::one("TLS-2").soap11());
    assert_eq!((status.as_str(), status_of(&body).as_str()), ("200", "Accepteret"));

    // Refused in the handshake: no certificate, one from another CA, an expired one from the trusted CA, and
    // one whose key may only sign certificates.
    let refused = [
        ("no certificate", None),
        ("unknown CA", Some(Ca::new("Unknown CA").issue(d, "SP_TEST_Callback-copy", false, false))),
        ("expired", Some(s.client_ca.issue(d, "SP_TEST_Callback-expired", false, true))),
        ("key usage", Some(s.client_ca.issue_with_key_usage(d, "KY-direkte", vec![KeyUsagePurpose::KeyCertSign]))),
    ];
    for (what, client) in &refused {
        let (code, status, _) = curl(&url, &s.ca_file, client.as_ref(), &Delivery::one("TLS-NO").soap11());
        assert!(code != 0 && status != "200", "{what}: curl {code}, HTTP {status}");
    }
    // Every refused handshake is counted by reason, the one without a certificate too (its log line is shown
    // by `a_refused_handshake_is_logged_once_per_peer_and_reason`).
    let metrics = ureq::get(&s.server.admin_url("/metrics")).call().unwrap().into_string().unwrap();
    for reason in ["expired", "unknown_issuer", "no_certificate", "wrong_purpose"] {
        let series = format!("fkoeko_tls_refused_total{{reason=\"{reason}\"}} ");
        let count: f64 = metrics.lines().find_map(|l| l.strip_prefix(&series)).and_then(|n| n.trim().parse().ok()).unwrap_or(0.0);
        assert!(count >= 1.0, "{reason} not counted:\n{metrics}");
    }

    // The WSDL names the address it was fetched on, https and all.
    let wsdl = |headers: &[&str]| {
        let mut command = Command::new("curl");
        command.args(["-sS", "--cacert"]).arg(&s.ca_file).arg("--cert").arg(&s.sp.pem).arg("--key").arg(&s.sp.key);
        for header in headers {
            command.args(["-H", header]);
        }
        String::from_utf8_lossy(&command.arg(format!("{url}?wsdl")).output().unwrap().stdout).into_owned()
    };
    let base = url.trim_end_matches("/sf1590a");
    let plain = wsdl(&[]);
    assert!(base.starts_with("https://") && plain.contains(&format!("schemaLocation=\"{base}/schemas/sf1590a.xsd\"")), "{plain}");
    // A caller's forwarded headers do not move it, nor does a Host that is not a host name.
    let forwarded = wsdl(&["X-Forwarded-Host: a\"/><evil/><x y=\"", "Forwarded: host=evil.example", "Host: x\"y"]);
    assert!(!forwarded.contains("evil") && forwarded.contains(&format!("{base}/schemas/sf1590a.xsd")), "{forwarded}");

    // From the trusted CA but not on the allowlist: HTTP 403, nothing processed.
    let stranger = s.client_ca.issue(d, "stranger", false, false);
    let (code, status, body) = curl(&url, &s.ca_file, Some(&stranger), &Delivery::one("TLS-NO").soap11());
    assert_eq!((code, status.as_str()), (0, "403"), "{body}");

    // A sender pinned to its own certificate: a call for it with another allowed certificate is rejected
    // with AFSENDER_UKENDT; with its own certificate it is accepted.
    let for_direct = |id: &str| Delivery { sender: DIRECT_SENDER.into(), ..Delivery::one(id) }.soap11();
    let (_, status, body) = curl(&url, &s.ca_file, Some(&s.sp), &for_direct("PIN-1"));
    assert_eq!(status, "200");
    let set = parse_receipts(&body);
    assert_eq!(set.receipts[0].errors[0].code.as_str(), "AFSENDER_UKENDT", "{body}");
    assert!(set.receipts[0].errors[0].text.contains("klientcertifikat"), "{body}");
    let (_, _, body) = curl(&url, &s.ca_file, Some(&s.pinned), &for_direct("PIN-2"));
    assert_eq!(status_of(&body), "Accepteret", "{body}");

    assert_eq!(count_in(&s.db, "SELECT count(*) AS n FROM erp_journal"), 3);
    assert_eq!(count_in(&s.db, "SELECT count(*) AS n FROM erp_journal WHERE bilag_id = 'TLS-NO'"), 0);
}

#[test]
fn certificates_are_rotated_without_a_restart() {
    let s = start();
    let url = s.server.https_url("/sf1590a");
    let d = s.dir.path();
    // A new server certificate from a new CA, written over the files the server reads.
    let new_ca = Ca::new("Server CA 2026");
    let new_ca_file = d.join("server-ca-2026.pem");
    new_ca.write(&new_ca_file);
    let (code, _, _) = curl(&url, &new_ca_file, Some(&s.sp), &Delivery::one("ROT-0").soap11());
    assert_ne!(code, 0, "the new CA is not trusted for the old server certificate");
    let rotated = new_ca.issue(d, "server-2026", true, false);
    std::fs::copy(&rotated.key, &s.server_cert.key).unwrap();
    std::fs::copy(&rotated.pem, &s.server_cert.pem).unwrap();
    // The server reloads a file whose modification time changed; a copy within the same clock tick might not
    // change it, so it is moved on explicitly instead of waiting for the clock.
    touch_later(&[&s.server_cert.key, &s.server_cert.pem]);
    let (code, status, body) = curl(&url, &new_ca_file, Some(&s.sp), &Delivery::one("ROT-1").soap11());
    assert_eq!((code, status.as_str()), (0, "200"), "the rotated certificate is served: {body}");
    assert_eq!(status_of(&body), "Accepteret");

    // The client CAs are read again too: one from a new client CA gets in once that CA is added.
    let new_client_ca = Ca::new("Client CA 2026");
    let client = new_client_ca.issue(d, "SP_TEST_Callback-2026", false, false);
    let (code, _, _) = curl(&url, &new_ca_file, Some(&client), &Delivery::one("ROT-2").soap11());
    assert_ne!(code, 0);
    let both = std::fs::read_to_string(d.join("client-ca.pem")).unwrap() + &new_client_ca.cert.pem();
    std::fs::write(d.join("client-ca.pem"), both).unwrap();
    touch_later(&[&d.join("client-ca.pem")]);
    let (code, status, body) = curl(&url, &new_ca_file, Some(&client), &Delivery::one("ROT-2").soap11());
    // In the handshake now; the allowlist still decides: this certificate is not on it.
    assert_eq!((code, status.as_str()), (0, "403"), "{body}");
}

#[test]
fn plain_http_is_refused_off_loopback_unless_allowed() {
    let mut config = Config::default();
    config.server.listen = "0.0.0.0:0".into();
    let refused = spawn(&config).err().expect("refused before anything is bound").to_string();
    assert!(refused.contains("refusing plain HTTP"), "{refused}");
}

#[test]
fn the_web_page_over_https_asks_for_no_client_certificate() {
    let s = start_with(|c| c.admin.tls = true);
    let url = s.server.admin_url("/healthz");
    assert!(url.starts_with("https://"), "{url}");
    // The server's certificate, no client certificate: finance staff's browsers have none.
    let out = Command::new("curl").args(["-sS", "--max-time", "20", "--cacert"]).arg(&s.ca_file).arg(&url).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    // The session cookie is Secure here.
    let login = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(&s.ca_file)
        .args(["--data-urlencode", &format!("user={ADMIN_USER}"), "--data-urlencode", &format!("password={ADMIN_PASSWORD}")])
        .arg(s.server.admin_url("/login"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&login.stdout);
    let cookie = headers.lines().find(|l| l.to_lowercase().starts_with("set-cookie:")).unwrap_or_default();
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{headers}");
    // The delivery listener still wants a client certificate.
    let (code, _, _) = curl(&s.server.https_url("/sf1590a"), &s.ca_file, None, &Delivery::one("TLS-ADMIN").soap11());
    assert_ne!(code, 0);
}

#[test]
fn the_web_page_is_not_served_in_plain_http_off_loopback_unless_allowed() {
    let mut config = test_config("unused.db");
    config.admin.listen = "0.0.0.0:0".into();
    let refused = spawn(&config).err().expect("refused before anything is bound").to_string();
    assert!(refused.contains("refusing plain HTTP for the web page"), "{refused}");
}

/// Moves the files' modification times a few seconds on, so that a reload keyed on them sees a change.
fn touch_later(paths: &[&std::path::Path]) {
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    for path in paths {
        std::fs::File::options().write(true).open(path).unwrap().set_modified(later).unwrap();
    }
}

/// An allowlist entry that could never match a certificate stops the start, naming the entry.
#[test]
fn an_allowlist_entry_that_is_neither_fingerprint_nor_subject_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&new_database_url(dir.path()));
    config.tls.allowed_clients = vec!["CN=KY-direkte".into(), "KY-direkte".into()];
    let error = spawn(&config).err().expect("the start is refused").to_string();
    assert!(error.contains("tls.allowed_clients[1]") && error.contains("KY-direkte"), "{error}");
}

/// `fkoeko serve` as a process: each refused handshake is logged with the peer's address and the reason, once
/// per peer and reason however often the client tries again; the certificate's subject when there was one.
#[test]
fn a_refused_handshake_is_logged_once_per_peer_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca_file, server, client_ca) = pki(d);
    let allowed = client_ca.issue(d, "SP_TEST_Callback", false, false);
    let expired = client_ca.issue(d, "SP_TEST_Callback-expired", false, true);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = d.join("fkoeko.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[log]\nformat = \"json\"\n[tls]\nenabled = true\ncert = {:?}\nkey = {:?}\n\
             client_ca = [{:?}]\nallowed_clients = [{:?}]\n",
            server.pem,
            server.key,
            d.join("client-ca.pem"),
            allowed.fingerprint
        ),
    )
    .unwrap();
    let db = new_database_url(d);
    let mut child = fkoeko_command(&db)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/sf1590a");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while curl(&url, &ca_file, Some(&allowed), &Delivery::one("LOG-OK").soap11()).1 != "200" {
        assert!(std::time::Instant::now() < deadline, "server did not come up");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for _ in 0..3 {
        let (code, _, _) = curl(&url, &ca_file, None, &Delivery::one("LOG-NO").soap11());
        assert_ne!(code, 0, "no certificate, no answer");
        let (code, _, _) = curl(&url, &ca_file, Some(&expired), &Delivery::one("LOG-NO").soap11());
        assert_ne!(code, 0, "an expired certificate, no answer");
    }
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    let refused: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("TLS handshake refused")))
        .collect();
    let of = |reason: &str| refused.iter().filter(|l| l["fields"]["reason"] == reason).collect::<Vec<_>>();
    let none = of("no_certificate");
    assert_eq!(none.len(), 1, "once for three tries: {logs}");
    assert_eq!(none[0]["fields"]["peer"], "127.0.0.1", "{logs}");
    assert!(none[0]["fields"]["message"].as_str().unwrap().contains("no certificate"), "{logs}");
    let expired_lines = of("expired");
    assert_eq!(expired_lines.len(), 1, "once for three tries: {logs}");
    assert_eq!(expired_lines[0]["fields"]["peer"], "127.0.0.1", "{logs}");
    assert_eq!(expired_lines[0]["fields"]["subject"], "CN=SP_TEST_Callback-expired", "{logs}");
    assert_eq!(expired_lines[0]["fields"]["fingerprint"], expired.fingerprint.as_str(), "{logs}");
    assert_eq!(refused.len(), 2, "nothing else refused: {logs}");
}
