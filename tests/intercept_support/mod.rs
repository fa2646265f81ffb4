//! The interception path against exosim on loopback: the proxy with a real `Router` (Exchange hosts
//! intercepted), a local CA in a temp dir, a `TokenManager` whose transport reaches exosim, and a
//! client that speaks CONNECT + TLS + HTTP/1.1 through the proxy.

#![allow(
    dead_code,
    unreachable_pub,
    missing_debug_implementations,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use exoproxy::client::OutboundClient;
use exoproxy::handler::Proxy;
use exoproxy::intercept::{InterceptState, LeafCache, LocalCa};
use exoproxy::limits::Limits;
use exoproxy::listener;
use exoproxy::route::pac::{PacConfig, PacResolver, PacSource};
use exoproxy::route::{InterceptRule, RouteConfig, Router, UpstreamSource};
use exoproxy::tls_client::upstream_client_config;
use exoproxy::token::schedule::Jitter;
use exoproxy::token::{
    AccountConfig, BoxFuture, ManagerSettings, SignInPrompt, TokenManager, Transport,
    TransportError,
};
use exoproxy::upstream::{ConnectTo, Upstream, UpstreamConfig};
use exosim::{Sim, SimConfig};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub const ADMIN: &str = "admin@contoso.com";
pub const EXO: &str = "outlook.office365.com";
pub const REST_PATH: &str = "/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand";
pub const ORIGIN_HOST: &str = "origin.test";

/// Everything a test needs; dropping it stops the proxy and the emulator.
pub struct Harness {
    pub sim: Sim,
    pub proxy: SocketAddr,
    /// PEM file of exoproxy's local CA (what a client must trust).
    pub ca_file: PathBuf,
    pub ca_pem: String,
    pub tokens: TokenManager,
    pub leaves: Arc<LeafCache>,
    /// When the token manager sent each refresh-token grant.
    pub refreshes: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
    /// The interception state the proxy serves with.
    pub intercept: Arc<InterceptState>,
    /// The state dir the token manager persists into (`Options::state_dir`), under [`Harness::temp_dir`].
    pub state_dir: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    _tmp: tempfile::TempDir,
}

pub struct Options {
    pub token_lifetime: Duration,
    pub sign_in: bool,
    /// Extra `connect_to` entries placed before the catch-all to exosim.
    pub connect_to: Vec<ConnectTo>,
    pub default_account: Option<String>,
    /// Extra upstream roots (PEM), trusted besides exosim's CA.
    pub extra_roots: Vec<String>,
    /// exosim's canary (SEC-19): embedded in every token it issues.
    pub canary: Option<String>,
    /// Give the token manager a real state dir (`<temp dir>/state`) instead of memory only.
    pub state_dir: bool,
    /// The proxy's limits (short idle limits for the timeout tests).
    pub limits: Limits,
    /// A PAC script as the default route (instead of DIRECT), for client traffic and token calls.
    pub pac: Option<PacSource>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token_lifetime: Duration::from_secs(3600),
            sign_in: true,
            connect_to: Vec::new(),
            default_account: Some(ADMIN.into()),
            extra_roots: Vec::new(),
            canary: None,
            state_dir: false,
            limits: Limits::default(),
            pac: None,
        }
    }
}

impl Harness {
    pub async fn start(options: Options) -> Harness {
        let sim = Sim::start(SimConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            token_lifetime: options.token_lifetime,
            canary: options.canary.clone(),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let sim_ca = tmp.path().join("exosim-ca.pem");
        let roots = std::iter::once(sim.ca_pem().to_string())
            .chain(options.extra_roots.iter().cloned())
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&sim_ca, roots).unwrap();
        let domains: Vec<String> = [
            "outlook.office365.com",
            "ps.outlook.com",
            "ps.compliance.protection.outlook.com",
        ]
        .iter()
        .map(|d| d.to_string())
        .collect();
        let (ca, _) = LocalCa::load_or_create(&tmp.path().join("state"), &domains).unwrap();
        let ca_pem = ca.cert_pem().to_string();
        let ca_file = tmp.path().join("exoproxy-ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap();
        let leaves = Arc::new(LeafCache::new(Arc::new(ca), None));
        let upstream_tls = upstream_client_config(Some(&sim_ca)).unwrap();
        let mut connect_to = options.connect_to;
        connect_to.push(ConnectTo {
            host: String::new(),
            port: None,
            to_host: "127.0.0.1".into(),
            to_port: sim.addr().port(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = listener.local_addr().unwrap();
        let upstream = UpstreamConfig {
            connect_to,
            own_addrs: vec![proxy_addr],
            ..UpstreamConfig::default()
        };
        // Wired as app.rs does: one Router and one Upstream for client traffic and token calls.
        let router = match options.pac {
            None => router_at(proxy_addr),
            Some(source) => pac_router_at(proxy_addr, source).await,
        };
        let upstream = Arc::new(Upstream::new(upstream));
        let client = OutboundClient::new(router.clone(), upstream.clone(), upstream_tls.clone());
        let refreshes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let state_dir = options.state_dir.then(|| tmp.path().join("state"));
        let tokens = token_manager_in(client, refreshes.clone(), state_dir.as_deref());
        let intercept = Arc::new(
            InterceptState::new(leaves.clone(), upstream_tls, tokens.clone())
                .with_default_account(options.default_account.clone()),
        );
        // The status surface, as app.rs wires it (tests/status_page.rs).
        let admin = Arc::new(exoproxy::admin::status::Sources {
            router: router.clone(),
            upstream: upstream.clone(),
            intercept: Some(intercept.clone()),
            started: tokio::time::Instant::now(),
            config: None,
            actions: Arc::new(exoproxy::admin::action::Actions::new(
                exoproxy::admin::action::AdminToken::create(tmp.path()).unwrap(),
            )),
            reload: None,
        });
        let proxy = Proxy::new(router, upstream, options.limits)
            .with_intercept(intercept.clone())
            .with_admin(admin);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(listener::serve(
            vec![listener],
            Arc::new(proxy),
            async move {
                let _ = stopped.await;
            },
        ));
        let harness = Harness {
            sim,
            proxy: proxy_addr,
            ca_file,
            ca_pem,
            tokens,
            leaves,
            refreshes,
            intercept,
            state_dir,
            stop: Some(stop),
            _tmp: tmp,
        };
        if options.sign_in {
            harness.sign_in(ADMIN).await;
        }
        harness
    }

    /// Device-code sign-in for `upn`, approved at the emulator.
    pub async fn sign_in(&self, upn: &str) {
        let handle = self.tokens.begin_login(upn, None).await.unwrap();
        let SignInPrompt::Device(prompt) = &handle.prompt else {
            panic!("expected a device code prompt");
        };
        self.sim
            .control()
            .approve_device(Some(&prompt.user_code))
            .unwrap();
        handle.wait().await.unwrap();
    }

    /// A CONNECT tunnel through the proxy to `host:443`, TLS trusting exoproxy's CA, HTTP/1.1.
    pub async fn client(&self, host: &str) -> SendRequest<Full<Bytes>> {
        let stream = connect_tunnel(self.proxy, host).await;
        let tls = tls_client(stream, host, &[self.ca_pem.as_str()]).await;
        http_client(tls).await
    }

    pub fn control(&self) -> exosim::Control {
        self.sim.control()
    }

    /// The harness's temp dir (CA files, state dir); removed on drop.
    pub fn temp_dir(&self) -> &std::path::Path {
        self._tmp.path()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Exchange and S&C hosts intercepted with the global profile; everything else DIRECT.
pub fn router() -> Arc<Router> {
    Arc::new(router_config())
}

/// [`router`] knowing the proxy's listen address (`Host` checks of the admin paths).
pub fn router_at(own: SocketAddr) -> Arc<Router> {
    Arc::new(router_config().with_own_addrs(&[own]))
}

/// [`router_at`] with the PAC script at `source` as the default route (loaded in the background).
async fn pac_router_at(own: SocketAddr, source: PacSource) -> Arc<Router> {
    let pac = PacResolver::start(PacConfig {
        source,
        own_addrs: vec![own],
        ..PacConfig::default()
    })
    .await;
    let config = RouteConfig {
        upstream: UpstreamSource::Pac(Arc::new(pac)),
        ..intercept_config()
    };
    Arc::new(Router::new(config).unwrap().with_own_addrs(&[own]))
}

fn router_config() -> Router {
    Router::new(intercept_config()).unwrap()
}

fn intercept_config() -> RouteConfig {
    RouteConfig {
        intercept: vec![InterceptRule {
            profile: "global".into(),
            hosts: vec![
                "outlook.office365.com".into(),
                "*.outlook.office365.com".into(),
                "ps.outlook.com".into(),
                "ps.compliance.protection.outlook.com".into(),
                "*.ps.compliance.protection.outlook.com".into(),
            ],
        }],
        ..RouteConfig::default()
    }
}

pub fn token_manager(
    client: OutboundClient,
    refreshes: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
) -> TokenManager {
    token_manager_in(client, refreshes, None)
}

/// [`token_manager`] persisting into `state_dir` (`None`: memory only).
pub fn token_manager_in(
    client: OutboundClient,
    refreshes: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
    state_dir: Option<&std::path::Path>,
) -> TokenManager {
    let settings = ManagerSettings {
        request_wait: Duration::from_secs(10),
        expiry_margin: Duration::from_millis(500),
        jitter: Jitter::None,
        open_browser: false,
        ..ManagerSettings::default()
    };
    let transport = Arc::new(RecordingTransport {
        inner: client,
        refreshes,
    });
    let tokens = TokenManager::new(transport, state_dir, settings).unwrap();
    tokens.add_account(AccountConfig::new(ADMIN));
    tokens
}

/// The proxy's own outbound client (Router + Upstream, as `app.rs` wires it), recording when each
/// refresh-token grant is sent.
pub struct RecordingTransport {
    pub inner: OutboundClient,
    pub refreshes: Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
}

impl Transport for RecordingTransport {
    fn send(&self, req: Request<Bytes>) -> BoxFuture<'_, Result<Response<Bytes>, TransportError>> {
        if String::from_utf8_lossy(req.body()).contains("grant_type=refresh_token") {
            self.refreshes
                .lock()
                .unwrap()
                .push(tokio::time::Instant::now());
        }
        Box::pin(self.inner.send(req))
    }
}

/// Sends `CONNECT host:443` and reads the 200 head.
pub async fn connect_tunnel(proxy: SocketAddr, host: &str) -> TcpStream {
    let (stream, head) = try_connect(proxy, host).await;
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT {host}: {head}");
    stream
}

/// Sends `CONNECT host:443`; returns the stream and the response head.
pub async fn try_connect(proxy: SocketAddr, host: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let request = format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

/// TLS client trusting exactly the given PEM roots.
pub async fn tls_client(
    stream: TcpStream,
    host: &str,
    roots_pem: &[&str],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    tokio_rustls::TlsConnector::from(client_config(roots_pem))
        .connect(ServerName::try_from(host.to_string()).unwrap(), stream)
        .await
        .unwrap()
}

pub fn client_config(roots_pem: &[&str]) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for pem in roots_pem {
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

pub async fn http_client<S>(io: S) -> SendRequest<Full<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// A request for `host` with a JSON body.
pub fn post_json(host: &str, path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

pub const GET_MAILBOX: &str = r#"{"CmdletInput":{"CmdletName":"Get-Mailbox","Parameters":{}}}"#;

/// Sends and collects: status, headers, body text.
pub async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> (http::StatusCode, http::HeaderMap, String) {
    sender.ready().await.unwrap();
    let response = sender.send_request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The tenant host the front door redirects to.
pub async fn tenant_host(h: &Harness) -> String {
    tenant_host_of(h, EXO).await
}

/// The tenant host `front` redirects to.
pub async fn tenant_host_of(h: &Harness, front: &str) -> String {
    let mut client = h.client(front).await;
    let (status, headers, _) = send(&mut client, post_json(front, REST_PATH, GET_MAILBOX)).await;
    assert_eq!(status, 302, "{front}");
    let location = headers["location"].to_str().unwrap();
    location
        .strip_prefix("https://")
        .unwrap()
        .split(['/', ':'])
        .next()
        .unwrap()
        .to_string()
}

/// Token-endpoint calls made with a refresh token so far.
pub fn refresh_calls(h: &Harness) -> u64 {
    h.control().grant_count(exosim::GrantType::RefreshToken)
}

/// A Get-Mailbox call on a fresh connection to `host`: status and body.
pub async fn rest_once(h: &Harness, host: &str) -> (http::StatusCode, String) {
    let mut client = h.client(host).await;
    let (status, _, body) = send(&mut client, post_json(host, REST_PATH, GET_MAILBOX)).await;
    (status, body)
}

// === WS-Man client (pypsrp) ===

pub fn python() -> String {
    std::env::var("EXO_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sim/tests/py/wsman_whoami.py")
}

/// Runs `wsman_whoami.py` through the proxy with the placeholder password "Bearer x".
pub async fn whoami(h: &Harness, user: &str) -> Output {
    whoami_via(h.proxy, &h.ca_file, user).await
}

/// [`whoami`] with explicit proxy and CA file.
pub async fn whoami_via(proxy: SocketAddr, ca_file: &std::path::Path, user: &str) -> Output {
    wsman_script(proxy, ca_file, user, &["--operation-timeout", "5"]).await
}

/// Runs `wsman_whoami.py` through `proxy` as `user` with the placeholder password and `extra` args.
pub async fn wsman_script(
    proxy: SocketAddr,
    ca_file: &std::path::Path,
    user: &str,
    extra: &[&str],
) -> Output {
    let mut cmd = Command::new(python());
    cmd.arg(script())
        .arg("https://outlook.office365.com/PowerShell-LiveID?BasicAuthToOAuthConversion=true")
        .arg("--ca")
        .arg(ca_file)
        .args(["--username", user, "--token-file", "-"])
        .args(extra)
        .arg("--proxy")
        .arg(format!("http://{proxy}"))
        .env_remove("EXO_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("start the Python client");
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(b"x").unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// === A scripted HTTPS origin ===

/// The origin's side of one TLS connection.
pub type OriginTls = tokio_rustls::server::TlsStream<TcpStream>;

/// What a [`scripted_origin`] does with each accepted connection.
pub type OriginHandler = Arc<
    dyn Fn(OriginTls) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// An HTTPS origin on loopback, with a certificate for one host from its own CA.
pub struct ScriptedOrigin {
    pub port: u16,
    /// The origin's CA (what the proxy must trust upstream: `Options::extra_roots`).
    pub ca_pem: String,
}

impl ScriptedOrigin {
    /// Harness options that send `host` to this origin and trust its CA.
    pub fn options(&self, host: &str, limits: Limits) -> Options {
        Options {
            connect_to: vec![ConnectTo {
                host: host.into(),
                port: None,
                to_host: "127.0.0.1".into(),
                to_port: self.port,
            }],
            extra_roots: vec![self.ca_pem.clone()],
            limits,
            ..Options::default()
        }
    }
}

/// An HTTPS origin for `host` running `handler` on each accepted TLS connection.
pub async fn scripted_origin(host: &str, handler: OriginHandler) -> ScriptedOrigin {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    handler(tls).await;
                }
            });
        }
    });
    ScriptedOrigin {
        port,
        ca_pem: ca.pem(),
    }
}

/// One request as a scripted origin saw it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub head: String,
    /// `Content-Length` of the head (0 without one).
    pub length: usize,
    /// Body bytes that arrived before the stream ended or `length` was reached.
    pub body: usize,
}

impl Seen {
    pub fn complete(&self) -> bool {
        self.body == self.length
    }
}

/// Reads one request (head and a `Content-Length` body) until it is whole or the stream ends;
/// `None` when the stream ended before a whole head.
pub async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Seen> {
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = data.len() - end;
    while body < length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body += n,
        }
    }
    Some(Seen { head, length, body })
}
