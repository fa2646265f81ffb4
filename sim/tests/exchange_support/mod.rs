//! Test-only helpers for the Exchange emulator tests: an HS256 `TokenCheck` with token minting,
//! WS-Man envelope builders, and a small HTTPS harness (rcgen CA + tokio-rustls + hyper) that serves
//! `Exchange::handle` on 127.0.0.1:0, independent of the full exosim server.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use exosim::exchange::{Exchange, ExchangeSettings, TokenCheck, TokenClaims, TokenRejection};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::hmac;
use serde_json::{Value, json};

pub const TID: &str = "6f6c9a3e-1c2b-4b8e-9d41-3c1f0e2a7b55";
pub const EXO: &str = "https://outlook.office365.com";
pub const SCC: &str = "https://ps.compliance.protection.outlook.com";
pub const ADMIN: &str = "admin@contoso.com";

// === tokens ===

/// HS256 tokens signed with a per-test random key (the real sim uses RS256; the seam hides that).
pub struct TestTokens {
    key: hmac::Key,
}

/// What to put in a minted token.
#[derive(Clone)]
pub struct Mint {
    pub aud: String,
    pub upn: Option<String>,
    pub roles: Vec<String>,
    /// Seconds from now; negative = already expired.
    pub expires_in: i64,
    pub claims_satisfied: bool,
}

impl Mint {
    pub fn user(aud: &str, upn: &str) -> Mint {
        Mint {
            aud: aud.to_owned(),
            upn: Some(upn.to_owned()),
            roles: Vec::new(),
            expires_in: 3600,
            claims_satisfied: false,
        }
    }

    pub fn app(aud: &str) -> Mint {
        Mint {
            upn: None,
            roles: vec!["Exchange.ManageAsApp".to_owned()],
            ..Mint::user(aud, "")
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl TestTokens {
    pub fn new() -> TestTokens {
        let rng = ring::rand::SystemRandom::new();
        TestTokens {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap(),
        }
    }

    pub fn mint(&self, m: &Mint) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let mut claims = json!({
            "aud": m.aud, "tid": TID, "appid": "fb78d390-0c51-40cd-8e17-fdbfab77341b",
            "exp": now() + m.expires_in, "xms_cc": ["cp1"], "xms_test_claims_satisfied": m.claims_satisfied,
        });
        if let Some(upn) = &m.upn {
            claims["upn"] = json!(upn);
            claims["scp"] = json!("Exchange.Manage");
        } else {
            claims["roles"] = json!(m.roles);
        }
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, signing_input.as_bytes()));
        format!("{signing_input}.{sig}")
    }
}

impl TokenCheck for TestTokens {
    fn check(&self, jwt: &str, audience: &str) -> Result<TokenClaims, TokenRejection> {
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header, payload, sig] = parts[..] else {
            return Err(TokenRejection::Malformed);
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenRejection::Malformed)?;
        hmac::verify(&self.key, format!("{header}.{payload}").as_bytes(), &sig)
            .map_err(|_| TokenRejection::BadSignature)?;
        let raw = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenRejection::Malformed)?;
        let c: Value = serde_json::from_slice(&raw).map_err(|_| TokenRejection::Malformed)?;
        let exp = c["exp"].as_i64().ok_or(TokenRejection::Malformed)?;
        if exp <= now() {
            return Err(TokenRejection::Expired);
        }
        let aud = c["aud"].as_str().unwrap_or_default().to_owned();
        if aud != audience {
            return Err(TokenRejection::WrongAudience {
                expected: audience.to_owned(),
                got: aud,
            });
        }
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(TokenClaims {
            aud,
            tid: c["tid"].as_str().unwrap_or_default().to_owned(),
            upn: c["upn"].as_str().map(str::to_owned),
            appid: c["appid"].as_str().unwrap_or_default().to_owned(),
            roles: strings(&c["roles"]),
            scp: c["scp"].as_str().map(str::to_owned),
            exp: exp as u64,
            xms_cc: strings(&c["xms_cc"]),
            claims_satisfied: c["xms_test_claims_satisfied"].as_bool().unwrap_or(false),
        })
    }
}

// === requests ===

pub fn basic(user: &str, jwt: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:Bearer {jwt}")))
}

pub const RPS_PATH: &str =
    "/PowerShell-LiveID?BasicAuthToOAuthConversion=true;PSVersion=5.1.19041.1";

/// A WS-Man POST with the given Authorization and optional cookie.
pub fn wsman_request(
    host: &str,
    path: &str,
    auth: &str,
    cookie: Option<&str>,
    body: String,
) -> http::Request<Bytes> {
    let mut b = http::Request::post(format!("https://{host}{path}"))
        .header("host", format!("{host}:443"))
        .header("content-type", "application/soap+xml;charset=UTF-8")
        .header("authorization", auth);
    if let Some(c) = cookie {
        b = b.header("cookie", format!("MS-WSMAN={c}"));
    }
    b.body(Bytes::from(body)).unwrap()
}

const SHELL_NS: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";

/// A WS-Man envelope in WinRM's prefix style.
pub fn envelope(action: &str, shell_id: Option<&str>, timeout: &str, body: &str) -> String {
    let selector = shell_id
        .map(|id| {
            format!("<w:SelectorSet><w:Selector Name=\"ShellId\">{id}</w:Selector></w:SelectorSet>")
        })
        .unwrap_or_default();
    format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
         xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" xmlns:rsp=\"{SHELL_NS}\"><s:Header>\
         <a:Action s:mustUnderstand=\"true\">{action}</a:Action><a:MessageID>uuid:TEST-1</a:MessageID>\
         <w:ResourceURI s:mustUnderstand=\"true\">http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>\
         <w:OperationTimeout>{timeout}</w:OperationTimeout>{selector}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
}

pub fn create_body() -> String {
    envelope(
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
        None,
        "PT20S",
        "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>",
    )
}

pub fn command_body(shell: &str, cmd: &str) -> String {
    envelope(
        &format!("{SHELL_NS}/Command"),
        Some(shell),
        "PT20S",
        &format!("<rsp:CommandLine><rsp:Command>{cmd}</rsp:Command></rsp:CommandLine>"),
    )
}

pub fn receive_body(shell: &str, command: &str, timeout: &str) -> String {
    envelope(
        &format!("{SHELL_NS}/Receive"),
        Some(shell),
        timeout,
        &format!(
            "<rsp:Receive><rsp:DesiredStream CommandId=\"{command}\">stdout stderr</rsp:DesiredStream></rsp:Receive>"
        ),
    )
}

pub fn send_body(shell: &str, command: &str, data: &[u8], end: bool) -> String {
    envelope(
        &format!("{SHELL_NS}/Send"),
        Some(shell),
        "PT20S",
        &format!(
            "<rsp:Send><rsp:Stream Name=\"stdin\" CommandId=\"{command}\" End=\"{end}\">{}</rsp:Stream></rsp:Send>",
            STANDARD.encode(data)
        ),
    )
}

pub fn signal_body(shell: &str, command: &str) -> String {
    envelope(
        &format!("{SHELL_NS}/Signal"),
        Some(shell),
        "PT20S",
        &format!(
            "<rsp:Signal CommandId=\"{command}\"><rsp:Code>{SHELL_NS}/signal/Terminate</rsp:Code></rsp:Signal>"
        ),
    )
}

pub fn delete_body(shell: &str) -> String {
    envelope(
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete",
        Some(shell),
        "PT20S",
        "",
    )
}

/// Text content of the first `<prefix:local ...>` element in a response body (opening tags only).
pub fn element_text(xml: &str, local: &str) -> Option<String> {
    let needle = format!(":{local}");
    let mut from = 0;
    while let Some(off) = xml[from..].find(&needle) {
        let at = from + off;
        from = at + needle.len();
        let next = xml[from..].chars().next()?;
        let open = xml[..at].rfind('<')?;
        if (next != '>' && next != ' ') || xml[open..].starts_with("</") {
            continue;
        }
        let text = &xml[from + xml[from..].find('>')? + 1..];
        return Some(text[..text.find('<')?].to_owned());
    }
    None
}

/// The MS-WSMAN value of a Set-Cookie header, if any.
pub fn set_cookie_value(resp: &http::Response<Bytes>) -> Option<String> {
    let h = resp.headers().get("set-cookie")?.to_str().ok()?;
    let first = h.split(';').next()?;
    first.strip_prefix("MS-WSMAN=").map(str::to_owned)
}

pub fn body_text(resp: &http::Response<Bytes>) -> String {
    String::from_utf8_lossy(resp.body()).into_owned()
}

// === HTTPS harness ===

/// A running HTTPS server for `Exchange::handle` on 127.0.0.1.
pub struct Harness {
    pub addr: SocketAddr,
    pub ca_file: PathBuf,
    pub exchange: Arc<Exchange>,
    pub tokens: Arc<TestTokens>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

const SERVED_NAMES: [&str; 5] = [
    "outlook.office365.com",
    "*.outlook.office365.com",
    "ps.outlook.com",
    "ps.compliance.protection.outlook.com",
    "*.ps.compliance.protection.outlook.com",
];

/// A CA and a leaf for the Exchange hosts; returns (CA PEM, leaf chain, leaf key).
fn certificates() -> (
    String,
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "exosim exchange test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(SERVED_NAMES.map(str::to_owned).to_vec()).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    (ca.pem(), vec![leaf.der().clone(), ca.der().clone()], key)
}

fn temp_path(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("exosim-exchange-{}-{n}-{name}", std::process::id()))
}

/// Write a secret-bearing file readable only by us.
pub fn write_private(name: &str, contents: &str) -> PathBuf {
    use std::io::Write as _;
    let path = temp_path(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&path).unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    path
}

pub async fn start(settings: ExchangeSettings) -> Harness {
    let (ca_pem, chain, key) = certificates();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let exchange = Arc::new(Exchange::new(settings));
    let tokens = Arc::new(TestTokens::new());
    let task = tokio::spawn(serve(listener, acceptor, exchange.clone(), tokens.clone()));
    let ca_file = temp_path("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    Harness {
        addr,
        ca_file,
        exchange,
        tokens,
        task,
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    exchange: Arc<Exchange>,
    tokens: Arc<TestTokens>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, exchange, tokens) = (acceptor.clone(), exchange.clone(), tokens.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (exchange, tokens, sni) = (exchange.clone(), tokens.clone(), sni.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let req = http::Request::from_parts(parts, body);
                    let host = request_host(&req).or(sni).unwrap_or_default();
                    let resp = exchange.handle(&host, req, &*tokens).await;
                    Ok::<_, hyper::Error>(resp.map(Full::new))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Lower-cased Host header without port.
fn request_host(req: &http::Request<Bytes>) -> Option<String> {
    let host = req.headers().get(http::header::HOST)?.to_str().ok()?;
    let name = host.rsplit_once(':').map_or(
        host,
        |(h, p)| if p.parse::<u16>().is_ok() { h } else { host },
    );
    Some(name.to_ascii_lowercase())
}
