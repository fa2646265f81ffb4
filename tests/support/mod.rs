//! In-process test servers on loopback port 0: the proxy under test, an HTTP origin, an HTTPS origin
//! (rcgen + tokio-rustls), an upstream proxy stub with fault modes, and a raw-TCP client.
//!
//! Every server counts what it saw, so tests can assert that *nothing* was forwarded.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exoproxy::error::ProxyError;
use exoproxy::handler::{BoxFuture, Proxy, Resolve};
use exoproxy::limits::Limits;
use exoproxy::listener;
use exoproxy::target::{Action, Decision, Hop, ProxyEndpoint, Target};
use exoproxy::upstream::{ConnectTo, ProxyCredentials, Upstream, UpstreamConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub const ORIGIN_HOST: &str = "origin.test";

// ---------------------------------------------------------------------------------------------------
// The proxy under test

/// A fixed routing decision for every target.
#[derive(Debug)]
pub struct FixedRoute(pub Decision);

impl Resolve for FixedRoute {
    fn resolve<'a>(&'a self, _target: &'a Target) -> BoxFuture<'a, Result<Decision, ProxyError>> {
        let decision = self.0.clone();
        Box::pin(async move { Ok(decision) })
    }
}

/// A running proxy; dropping it shuts it down.
pub struct TestProxy {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    /// Stops accepting and waits for the drain.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Test limits: short timeouts so that nothing waits real seconds.
pub fn test_limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(2),
        client_idle: Duration::from_secs(2),
        stream_idle: Duration::from_secs(5),
        tunnel_idle: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

/// Test upstream config: short timeouts.
pub fn test_upstream() -> UpstreamConfig {
    UpstreamConfig {
        connect_timeout: Duration::from_millis(500),
        connect_reply_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_secs(3),
        ..UpstreamConfig::default()
    }
}

/// Starts the proxy with a fixed decision; `own_addrs` is filled in with the bound address.
pub async fn start_proxy(decision: Decision, config: UpstreamConfig, limits: Limits) -> TestProxy {
    start_proxy_with(Arc::new(FixedRoute(decision)), config, limits).await
}

pub async fn start_proxy_with(
    resolver: Arc<dyn Resolve>,
    config: UpstreamConfig,
    limits: Limits,
) -> TestProxy {
    start_proxy_at("127.0.0.1:0", resolver, config, limits).await
}

/// The proxy bound to `bind` (`127.0.0.1:0` or `[::1]:0`).
pub async fn start_proxy_at(
    bind: &str,
    resolver: Arc<dyn Resolve>,
    mut config: UpstreamConfig,
    limits: Limits,
) -> TestProxy {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    config.own_addrs.push(addr);
    let proxy = Arc::new(Proxy::with_resolver(
        resolver,
        Arc::new(Upstream::new(config)),
        limits,
    ));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(listener::serve(vec![listener], proxy, async move {
        let _ = stopped.await;
    }));
    TestProxy {
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}

/// DIRECT, with `origin.test` mapped to the given loopback port by `connect_to`.
pub fn direct_config(origin_port: u16) -> UpstreamConfig {
    UpstreamConfig {
        connect_to: vec![ConnectTo {
            host: ORIGIN_HOST.into(),
            port: None,
            to_host: "127.0.0.1".into(),
            to_port: origin_port,
        }],
        ..test_upstream()
    }
}

pub fn direct() -> Decision {
    Decision::direct("test: direct")
}

pub fn endpoint(addr: SocketAddr) -> ProxyEndpoint {
    ProxyEndpoint::parse(&addr.to_string()).unwrap()
}

/// Through the given proxies, in order.
pub fn via(proxies: &[SocketAddr]) -> Decision {
    Decision {
        action: Action::Tunnel,
        hops: proxies.iter().map(|a| Hop::Proxy(endpoint(*a))).collect(),
        allow_local: false,
        why: "test: via proxies".into(),
    }
}

pub fn credentials(proxy: SocketAddr, user: &str, pass: &str) -> (ProxyEndpoint, ProxyCredentials) {
    (
        endpoint(proxy),
        ProxyCredentials {
            username: user.into(),
            password: zeroize::Zeroizing::new(pass.into()),
            ..ProxyCredentials::default()
        },
    )
}

/// A port with nothing listening (bound, then released).
pub async fn dead_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------------------
// Origins

/// A plain HTTP origin: answers every request with `200` and a body describing what it received,
/// then closes.
pub struct Origin {
    pub addr: SocketAddr,
    /// Raw request heads received, in order.
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    pub fn requests(&self) -> usize {
        self.heads.lock().unwrap().len()
    }
}

pub async fn start_origin() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move { serve_origin(stream, seen).await });
        }
    });
    Origin { addr, heads }
}

async fn serve_origin<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let Some((head, rest)) = read_head(&mut stream).await else {
        return;
    };
    let body_len = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = rest;
    while body.len() < body_len {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    seen.lock().unwrap().push(head.clone());
    let reply_body = format!("origin saw:\n{head}body={}", String::from_utf8_lossy(&body));
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\nKeep-Alive: timeout=5\r\nX-Origin: yes\r\n\r\n{reply_body}",
        reply_body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// An HTTPS origin with a self-signed certificate for `origin.test`.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    pub cert: rustls_pki_types::CertificateDer<'static>,
    pub heads: Arc<Mutex<Vec<String>>>,
}

pub async fn start_tls_origin() -> TlsOrigin {
    let certified = rcgen::generate_simple_self_signed(vec![ORIGIN_HOST.to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    serve_origin(tls, seen).await;
                }
            });
        }
    });
    TlsOrigin { addr, cert, heads }
}

/// A TLS client trusting only `cert`, over any stream (a CONNECT tunnel), to [`ORIGIN_HOST`].
pub async fn tls_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    cert: &rustls_pki_types::CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<S> {
    tls_connect_to(stream, cert, ORIGIN_HOST).await
}

/// A TLS client trusting only `cert`, over any stream, verifying the name `host`.
pub async fn tls_connect_to<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    cert: &rustls_pki_types::CertificateDer<'static>,
    host: &str,
) -> tokio_rustls::client::TlsStream<S> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).unwrap();
    connector.connect(name, stream).await.unwrap()
}

// ---------------------------------------------------------------------------------------------------
// Upstream proxy stub

/// How the stub answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubMode {
    /// A working proxy: CONNECT is spliced to 127.0.0.1:<port of the target>, absolute-form requests
    /// are rewritten to origin-form and relayed to 127.0.0.1:<port>. With `basic`, demands Basic.
    Forward { basic: Option<String> },
    /// Accepts and reads, never answers (FLT-2).
    Blackhole,
    /// Sends this reply verbatim and closes (BAD-18, 403, 407 variants).
    Reply(Vec<u8>),
}

pub struct Stub {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    /// Request lines seen (`CONNECT origin.test:1234 HTTP/1.1`).
    pub lines: Arc<Mutex<Vec<String>>>,
    /// `Proxy-Authorization` of each request (None when absent), in order.
    pub auths: Arc<Mutex<Vec<Option<String>>>>,
}

impl Stub {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn auths(&self) -> Vec<Option<String>> {
        self.auths.lock().unwrap().clone()
    }
}

pub async fn start_stub(mode: StubMode) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_stub_on(listener, mode)
}

pub fn start_stub_on(listener: TcpListener, mode: StubMode) -> Stub {
    let addr = listener.local_addr().unwrap();
    let stub = Stub {
        addr,
        connections: Arc::new(AtomicUsize::new(0)),
        lines: Arc::new(Mutex::new(Vec::new())),
        auths: Arc::new(Mutex::new(Vec::new())),
    };
    let (connections, lines, auths) = (
        stub.connections.clone(),
        stub.lines.clone(),
        stub.auths.clone(),
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            let (mode, lines, auths) = (mode.clone(), lines.clone(), auths.clone());
            tokio::spawn(async move { serve_stub(stream, mode, lines, auths).await });
        }
    });
    stub
}

async fn serve_stub(
    mut stream: TcpStream,
    mode: StubMode,
    lines: Arc<Mutex<Vec<String>>>,
    auths: Arc<Mutex<Vec<Option<String>>>>,
) {
    let Some((head, rest)) = read_head(&mut stream).await else {
        return;
    };
    let line = head.lines().next().unwrap_or_default().to_string();
    lines.lock().unwrap().push(line.clone());
    let auth = header(&head, "proxy-authorization");
    auths.lock().unwrap().push(auth.clone());
    match mode {
        StubMode::Blackhole => {
            let mut sink = [0u8; 1024];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        StubMode::Reply(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        StubMode::Forward { basic } => {
            if let Some(expected) = basic
                && auth.as_deref() != Some(expected.as_str())
            {
                let _ = stream
                    .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"stub\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                return;
            }
            relay(stream, &line, &head, rest).await;
        }
    }
}

/// The stub's forwarding: only ever to 127.0.0.1, port taken from the request.
async fn relay(mut stream: TcpStream, line: &str, head: &str, rest: Vec<u8>) {
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "CONNECT" {
        let port: u16 = target.rsplit(':').next().unwrap().parse().unwrap();
        let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else {
            let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
            return;
        };
        let _ = stream
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await;
        let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
        return;
    }
    let url = target.strip_prefix("http://").unwrap();
    let (authority, path) = url.split_at(url.find('/').unwrap_or(url.len()));
    let port: u16 = authority
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(80);
    let mut upstream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let rewritten = head.replacen(target, if path.is_empty() { "/" } else { path }, 1);
    upstream.write_all(rewritten.as_bytes()).await.unwrap();
    upstream.write_all(&rest).await.unwrap();
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
}

// ---------------------------------------------------------------------------------------------------
// Raw client

/// Reads a head (through the blank line); returns it and any bytes after it.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            return Some((head, buf[end + 4..].to_vec()));
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The first value of a header in a raw head, case-insensitive name.
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A whole response read to EOF.
#[derive(Debug)]
pub struct RawResponse {
    pub text: String,
}

impl RawResponse {
    pub fn status(&self) -> u16 {
        self.text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or_default();
        header(head, name)
    }

    pub fn code(&self) -> String {
        self.header("x-localproxy-error").unwrap_or_default()
    }

    pub fn body(&self) -> &str {
        self.text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("")
    }

    /// How many HTTP responses are in the text (BAD-10: exactly one).
    pub fn responses(&self) -> usize {
        usize::from(self.text.starts_with("HTTP/1.")) + self.text.matches("\nHTTP/1.").count()
    }
}

/// Sends raw bytes and reads until the proxy closes (bounded).
pub async fn raw(proxy: SocketAddr, bytes: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the proxy did not close the connection");
    RawResponse {
        text: String::from_utf8_lossy(&out).into_owned(),
    }
}

/// CONNECT and read the reply head; the stream is the tunnel when the status is 200.
pub async fn connect(proxy: SocketAddr, authority: &str) -> (String, Vec<u8>, TcpStream) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let (head, rest) = tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream))
        .await
        .expect("CONNECT reply in time")
        .expect("a CONNECT reply");
    (head, rest, stream)
}

/// A plain GET over any stream; returns the full response text (the origin closes).
pub async fn get_over<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
    host: &str,
) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
