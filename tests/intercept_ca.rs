//! The local CA and the interception TLS configs on real loopback sockets, checked by rustls,
//! OpenSSL and curl (CA-1, CA-3, CA-4, BAD-15, TLS-7, FLT-8, CRL for docs/PROTOCOL.md#winrm-revocation).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use exoproxy::intercept::{
    LeafCache, LocalCa, TlsFailureKind, classify_tls_error, peek_client_hello,
    server_config_for_host,
};
use exoproxy::tls_client::{client_config_with_roots, upstream_client_config};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use rustls::client::danger::ServerCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const DOMAINS: [&str; 4] = [
    "outlook.office365.com",
    "ps.outlook.com",
    "ps.compliance.protection.outlook.com",
    "office365.us",
];
const CRL_URL: &str = "http://127.0.0.1:9/exoproxy-ca.crl";

// === fixtures ===

/// Every log line of this test binary, at TRACE (CA-1: the key must never appear).
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Sink(buffer.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    })
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    ca: Arc<LocalCa>,
}

fn fixture() -> Fixture {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let domains: Vec<String> = DOMAINS.iter().map(|d| d.to_string()).collect();
    let (ca, _) = LocalCa::load_or_create(&dir, &domains).unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        ca: Arc::new(ca),
    }
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn ca_pem_path(&self) -> PathBuf {
        let path = self.path("export.pem");
        self.ca.export(&path).unwrap();
        path
    }

    /// Signs a leaf for any name with the CA key, bypassing `mint_leaf`'s host check: what an
    /// attacker holding the key could do. Only the name constraints stand in the way (CA-3).
    fn forge_leaf(&self, host: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key_pem = std::fs::read_to_string(&self.ca.files().key).unwrap();
        let issuer =
            Issuer::from_ca_cert_der(self.ca.cert_der(), KeyPair::from_pem(&key_pem).unwrap())
                .unwrap();
        let mut params = CertificateParams::new(vec![host.to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&leaf_key, &issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        (cert.der().clone(), key)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.cert_der().clone()).unwrap();
        roots
    }

    fn client(&self) -> Arc<ClientConfig> {
        client_config_with_roots(self.roots()).unwrap()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn single_cert_server(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    Arc::new(config)
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A loopback TLS server for one connection: handshake, read one request head, answer `ok`.
/// Resolves to the handshake outcome and the negotiated ALPN.
async fn serve_once(
    config: Arc<ServerConfig>,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<std::io::Result<Option<Vec<u8>>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(config).accept(tcp).await?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).await? == 1 {
            head.push(byte[0]);
        }
        tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .await?;
        tls.shutdown().await?;
        Ok(alpn)
    });
    (addr, task)
}

async fn connect(
    addr: SocketAddr,
    client: Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    TlsConnector::from(client).connect(name, tcp).await
}

async fn get_ok(
    addr: SocketAddr,
    client: Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<String> {
    let mut tls = connect(addr, client, name).await?;
    tls.write_all(format!("GET / HTTP/1.1\r\nHost: {name}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    tls.read_to_string(&mut response).await?;
    Ok(response)
}

fn tool_present(tool: &str) -> bool {
    let present = Command::new(tool).arg("--version").output().is_ok()
        || Command::new(tool).arg("version").output().is_ok();
    if !present {
        panic!("{tool} is missing: run scripts/setup.sh");
    }
    present
}

/// curl to `host` with the TCP connection pinned to our loopback server (never the real host).
async fn curl(ca_pem: &Path, host: &str, addr: SocketAddr) -> Output {
    let ca_pem = ca_pem.to_path_buf();
    let connect_to = format!("{host}:443:127.0.0.1:{}", addr.port());
    let url = format!("https://{host}/");
    tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--noproxy", "*", "--cacert"])
            .arg(&ca_pem)
            .args(["--connect-to", &connect_to, &url])
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl").args(args).output().unwrap()
}

// === CA-1 ===

#[tokio::test]
async fn ca1_key_never_logged() {
    let f = fixture();
    let domains: Vec<String> = DOMAINS.iter().map(|d| d.to_string()).collect();
    let reloaded = Arc::new(LocalCa::load(&f.dir, &domains).unwrap());
    let cache = LeafCache::new(reloaded, Some(CRL_URL.into()));
    let (addr, server) =
        serve_once(server_config_for_host(&cache, "outlook.office365.com").unwrap()).await;
    get_ok(addr, f.client(), "outlook.office365.com")
        .await
        .unwrap();
    server.await.unwrap().unwrap();
    tracing::info!(ca = ?f.ca, cache = ?cache, "state after a handshake");
    let logs = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    assert!(logs.contains("created a new local CA"), "log capture works");
    assert!(logs.contains("[redacted]"));
    let key_pem = std::fs::read_to_string(&f.ca.files().key).unwrap();
    for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!logs.contains(line), "CA key material in the logs");
    }
}

// === CA-3: the name constraints hold in every verifier we can run here ===

#[test]
fn ca3_foreign_leaf_fails_in_rustls() {
    let f = fixture();
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(f.roots().into(), provider())
            .build()
            .unwrap();
    let verify = |host: &str| {
        let (leaf, _) = f.forge_leaf(host);
        let name = ServerName::try_from(host.to_string()).unwrap();
        verifier.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
    };
    assert!(
        verify("outlook.office365.com").is_ok(),
        "control: a permitted name verifies"
    );
    let err = verify("www.google.com").unwrap_err();
    assert!(
        format!("{err:?}").contains("NameConstraintViolation"),
        "{err:?}"
    );
    assert!(verify("outlook.com").is_err());
}

#[test]
fn ca3_foreign_leaf_fails_in_openssl_and_crl_checks_pass() {
    if !tool_present("openssl") {
        return;
    }
    let f = fixture();
    let ca_pem = f.ca_pem_path();
    let write = |name: &str, text: String| {
        let path = f.path(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path.display().to_string()
    };
    let google = write(
        "google.pem",
        pem("CERTIFICATE", &f.forge_leaf("www.google.com").0),
    );
    let minted = f.ca.mint_leaf("ps.outlook.com", Some(CRL_URL)).unwrap();
    let allowed = write("allowed.pem", pem("CERTIFICATE", &minted.cert));
    let crl = write("ca.crl", pem("X509 CRL", &f.ca.crl_der().unwrap()));
    let ca = ca_pem.display().to_string();

    let bad = openssl(&["verify", "-CAfile", &ca, "-purpose", "sslserver", &google]);
    let bad_text = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(!bad.status.success(), "{bad_text}");
    assert!(
        bad_text.contains("permitted subtree violation"),
        "{bad_text}"
    );

    let good = openssl(&[
        "verify",
        "-CAfile",
        &ca,
        "-purpose",
        "sslserver",
        "-crl_check",
        "-CRLfile",
        &crl,
        &allowed,
    ]);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains(": OK"));
    let crl_check = openssl(&["crl", "-in", &crl, "-noout", "-CAfile", &ca, "-verify"]);
    let crl_text = String::from_utf8_lossy(&crl_check.stderr);
    assert!(
        crl_check.status.success() && crl_text.contains("verify OK"),
        "{crl_text}"
    );
}

#[tokio::test]
async fn ca3_foreign_leaf_fails_in_curl_and_allowed_host_passes() {
    if !tool_present("curl") {
        return;
    }
    let f = fixture();
    let ca_pem = f.ca_pem_path();
    let (cert, key) = f.forge_leaf("www.google.com");
    let (addr, server) = serve_once(single_cert_server(cert, key)).await;
    let out = curl(&ca_pem, "www.google.com", addr).await;
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        server.await.unwrap().is_err(),
        "server saw the client abort"
    );

    let cache = LeafCache::new(f.ca.clone(), Some(CRL_URL.into()));
    let (addr, server) =
        serve_once(server_config_for_host(&cache, "outlook.office365.com").unwrap()).await;
    let out = curl(&ca_pem, "outlook.office365.com", addr).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    assert_eq!(
        server.await.unwrap().unwrap().as_deref(),
        Some(&b"http/1.1"[..])
    );
}

// === handshakes with the per-connection server config (BAD-15, TLS-7) ===

#[tokio::test]
async fn handshake_ok_for_allowed_host_with_http11_alpn() {
    let f = fixture();
    let cache = LeafCache::new(f.ca.clone(), None);
    let (addr, server) =
        serve_once(server_config_for_host(&cache, "ps.outlook.com").unwrap()).await;
    let mut client = (*f.client()).clone();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let response = get_ok(addr, Arc::new(client), "ps.outlook.com")
        .await
        .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with("ok"),
        "{response}"
    );
    assert_eq!(
        server.await.unwrap().unwrap().as_deref(),
        Some(&b"http/1.1"[..])
    );
}

#[tokio::test]
async fn bad15_sni_mismatch_is_refused() {
    let f = fixture();
    let cache = LeafCache::new(f.ca.clone(), None);
    // CONNECT said outlook.office365.com, the ClientHello names ps.outlook.com.
    let (addr, server) =
        serve_once(server_config_for_host(&cache, "outlook.office365.com").unwrap()).await;
    let client = connect(addr, f.client(), "ps.outlook.com").await;
    assert!(client.is_err(), "handshake must fail");
    // The server refused (no certificate for a foreign SNI): the client did not merely distrust it.
    let refused = server.await.unwrap().unwrap_err().to_string();
    assert!(
        refused.contains("no server certificate chain resolved"),
        "{refused}"
    );
}

#[tokio::test]
async fn bad15_no_sni_gets_the_connect_host_certificate() {
    let f = fixture();
    let cache = LeafCache::new(f.ca.clone(), None);
    let (addr, server) =
        serve_once(server_config_for_host(&cache, "outlook.office365.com").unwrap()).await;
    let mut client = (*f.client()).clone();
    client.enable_sni = false;
    let response = get_ok(addr, Arc::new(client), "outlook.office365.com")
        .await
        .unwrap();
    assert!(response.ends_with("ok"));
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn tls7_h2_only_client_is_refused() {
    let f = fixture();
    let cache = LeafCache::new(f.ca.clone(), None);
    let (addr, server) =
        serve_once(server_config_for_host(&cache, "outlook.office365.com").unwrap()).await;
    let mut client = (*f.client()).clone();
    client.alpn_protocols = vec![b"h2".to_vec()];
    assert!(
        connect(addr, Arc::new(client), "outlook.office365.com")
            .await
            .is_err()
    );
    assert!(server.await.unwrap().is_err());
}

#[test]
fn server_config_refuses_hosts_outside_the_ca() {
    let f = fixture();
    let cache = LeafCache::new(f.ca.clone(), None);
    assert!(server_config_for_host(&cache, "www.google.com").is_err());
    assert!(server_config_for_host(&cache, "*.office365.us").is_err());
}

// === the peek helper in front of a real TLS accept ===

#[tokio::test]
async fn peeked_client_hello_is_replayed_into_the_tls_accept() {
    let f = fixture();
    let cache = LeafCache::new(f.ca.clone(), None);
    let config = server_config_for_host(&cache, "outlook.office365.com").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let peeked = peek_client_hello(tcp).await.unwrap();
        assert!(peeked.is_client_hello);
        let mut tls = TlsAcceptor::from(config)
            .accept(peeked.stream)
            .await
            .unwrap();
        tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        tls.shutdown().await.unwrap();
    });
    let mut tls = connect(addr, f.client(), "outlook.office365.com")
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.ends_with("ok"));
    server.await.unwrap();
}

// === upstream config and failure classification (FLT-8, TLS-1) ===

async fn upstream_failure(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> TlsFailureKind {
    let (addr, _server) = serve_once(server).await;
    let err = get_ok(addr, client, name).await.unwrap_err();
    classify_tls_error(&err)
}

#[tokio::test]
async fn flt8_upstream_failures_are_classified() {
    let f = fixture();
    let other = fixture();
    let now = time::OffsetDateTime::now_utc();
    let expired =
        f.ca.mint_leaf_at(
            "outlook.office365.com",
            None,
            now - time::Duration::days(30),
        )
        .unwrap();
    let expired = single_cert_server(expired.cert, expired.key);
    assert_eq!(
        upstream_failure(expired, f.client(), "outlook.office365.com").await,
        TlsFailureKind::Expired
    );

    let leaf = f.ca.mint_leaf("outlook.office365.com", None).unwrap();
    let server = single_cert_server(leaf.cert, leaf.key);
    assert_eq!(
        upstream_failure(server.clone(), f.client(), "ps.outlook.com").await,
        TlsFailureKind::WrongHost
    );
    assert_eq!(
        upstream_failure(server, other.client(), "outlook.office365.com").await,
        TlsFailureKind::Untrusted
    );

    // Not TLS at all: the "server" answers with plain text and closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    });
    let err = get_ok(addr, f.client(), "outlook.office365.com")
        .await
        .unwrap_err();
    assert_eq!(classify_tls_error(&err), TlsFailureKind::Handshake);
}

#[tokio::test]
async fn upstream_config_trusts_system_plus_extra_roots() {
    let f = fixture();
    let ca_pem = f.ca_pem_path();
    let config = upstream_client_config(Some(&ca_pem)).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    let leaf = f.ca.mint_leaf("outlook.office365.com", None).unwrap();
    let (addr, server) = serve_once(single_cert_server(leaf.cert, leaf.key)).await;
    let response = get_ok(addr, config, "outlook.office365.com").await.unwrap();
    assert!(response.ends_with("ok"));
    server.await.unwrap().unwrap();
}

/// A server that answers any ClientHello with a TLS 1.0 ServerHello, like a TLS 1.0-only origin.
async fn tls10_only_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = tcp.read(&mut buf).await;
        let mut hello = vec![0x03, 0x01]; // TLS 1.0
        hello.extend([0x42; 32]); // random
        hello.push(0); // empty session id
        hello.extend([0x00, 0x2f, 0x00]); // TLS_RSA_WITH_AES_128_CBC_SHA, no compression
        let mut handshake = vec![0x02, 0, 0, hello.len() as u8];
        handshake.extend(hello);
        let mut record = vec![0x16, 0x03, 0x01, 0, handshake.len() as u8];
        record.extend(handshake);
        let _ = tcp.write_all(&record).await;
        let _ = tcp.read(&mut buf).await;
    });
    addr
}

#[tokio::test]
async fn tls5_tls10_only_upstream_is_refused() {
    let f = fixture();
    let addr = tls10_only_server().await;
    let err = get_ok(addr, f.client(), "outlook.office365.com")
        .await
        .unwrap_err();
    assert_eq!(classify_tls_error(&err), TlsFailureKind::Handshake);
    let rustls_error = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(rustls_error, Some(rustls::Error::PeerIncompatible(_))),
        "{err:?}"
    );
}
