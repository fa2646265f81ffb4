//! NTLM to upstream proxies (docs/PROTOCOL.md#proxy-auth; FLT-3, FLT-12, PAC-14, TLS-4): a scripted NTLM
//! proxy that
//! issues a real Type 2 and verifies the Type 3 with the NTLMv2 math (pinned by MS-NLMP §4.2.4 in the
//! unit tests and by pyspnego below), one that closes between Type 2 and Type 3, and pyspnego itself
//! as the acceptor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use exoproxy::error::ProxyError;
use exoproxy::target::{Decision, Target};
use exoproxy::upstream::auth::Scheme;
use exoproxy::upstream::ntlm::{self, NtSecret, NtlmClient, NtlmIdentity};
use exoproxy::upstream::{ProxyCredentials, Upstream, UpstreamConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zeroize::Zeroizing;

const USER: &str = "alice";
const DOMAIN: &str = "CORP";
const PASSWORD: &str = "N7lm-s3cret";
const SERVER_CHALLENGE: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// How the scripted proxy behaves.
#[derive(Clone, Copy)]
struct Script {
    /// This many connections are closed right after their Type 2 is sent (FLT-12).
    close_after_type2: usize,
    /// Offer these schemes in the first 407.
    offer: &'static str,
}

/// What the scripted proxy saw.
#[derive(Debug, Default)]
struct Seen {
    connections: usize,
    /// Every `Proxy-Authorization` scheme word received, in order (`-` for none).
    auths: Vec<String>,
    /// Users whose Type 3 verified.
    verified: Vec<String>,
    /// Type 3 messages that did not verify.
    rejected: usize,
}

struct NtlmProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl NtlmProxy {
    async fn start(script: Script) -> NtlmProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let index = {
                    let mut s = shared.lock().unwrap();
                    s.connections += 1;
                    s.connections - 1
                };
                tokio::spawn(serve(stream, script, index, shared.clone()));
            }
        });
        NtlmProxy { addr, seen }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }
}

/// One client connection: 407 → Type 2 → verify Type 3 → 200 (CONNECT: then echo; HEAD: keep serving
/// requests on the authenticated connection).
async fn serve(mut stream: TcpStream, script: Script, index: usize, seen: Arc<Mutex<Seen>>) {
    let mut authenticated = false;
    let mut type1: Option<Vec<u8>> = None;
    while let Some((head, _)) = read_head(&mut stream).await {
        let is_connect = head.starts_with("CONNECT ");
        let token = header(&head, "proxy-authorization");
        seen.lock().unwrap().auths.push(
            token
                .as_deref()
                .and_then(|t| t.split(' ').next())
                .unwrap_or("-")
                .to_string(),
        );
        let reply = match (
            token.as_deref().and_then(|t| t.strip_prefix("NTLM ")),
            authenticated,
        ) {
            (None, true) => ok_reply(is_connect, "authed"),
            (None, false) => challenge(script.offer),
            (Some(b64), _) => {
                let msg = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                match msg[8] {
                    1 => {
                        type1 = Some(msg);
                        let reply = type2_reply();
                        if index < script.close_after_type2 {
                            let reply = without_body_for_head(&head, &reply);
                            stream.write_all(reply).await.unwrap();
                            return; // closes between Type 2 and Type 3
                        }
                        reply
                    }
                    _ => match verify_type3(&msg) {
                        Some(user) if type1.is_some() => {
                            seen.lock().unwrap().verified.push(user);
                            authenticated = true;
                            ok_reply(is_connect, "authed")
                        }
                        _ => {
                            seen.lock().unwrap().rejected += 1;
                            challenge("NTLM")
                        }
                    },
                }
            }
        };
        stream
            .write_all(without_body_for_head(&head, &reply))
            .await
            .unwrap();
        if is_connect && authenticated {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            return;
        }
    }
}

/// A response to HEAD has no body (RFC 9110 §9.3.2), whatever its framing headers say.
fn without_body_for_head<'a>(request: &str, reply: &'a [u8]) -> &'a [u8] {
    match request.starts_with("HEAD ") {
        true => {
            let end = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            &reply[..end]
        }
        false => reply,
    }
}

fn ok_reply(is_connect: bool, body: &str) -> Vec<u8> {
    match is_connect {
        true => b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec(),
        false => format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    }
}

/// A 407 with a body (which the client must drain to reuse the connection).
fn challenge(offer: &str) -> Vec<u8> {
    let mut r = String::from("HTTP/1.1 407 Proxy Authentication Required\r\n");
    for scheme in offer.split(", ") {
        r.push_str(&format!("Proxy-Authenticate: {scheme}\r\n"));
    }
    r.push_str("Content-Length: 13\r\n\r\nauth required");
    r.into_bytes()
}

fn type2_reply() -> Vec<u8> {
    let t2 = base64::engine::general_purpose::STANDARD.encode(type2());
    format!(
        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM {t2}\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    .into_bytes()
}

/// A CHALLENGE with NetBIOS names and a timestamp (so the client must send a MIC).
fn type2() -> Vec<u8> {
    let utf16 = |s: &str| {
        s.encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>()
    };
    let mut info = Vec::new();
    for (id, value) in [(2u16, utf16(DOMAIN)), (1, utf16("PROXY")), (7, vec![9; 8])] {
        info.extend_from_slice(&id.to_le_bytes());
        info.extend_from_slice(&(value.len() as u16).to_le_bytes());
        info.extend_from_slice(&value);
    }
    info.extend_from_slice(&[0; 4]);
    let mut m = b"NTLMSSP\0".to_vec();
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 56, 0, 0, 0]);
    m.extend_from_slice(&0xe28a_8235u32.to_le_bytes());
    m.extend_from_slice(&SERVER_CHALLENGE);
    m.extend_from_slice(&[0; 8]);
    let len = (info.len() as u16).to_le_bytes();
    m.extend_from_slice(&[len[0], len[1], len[0], len[1], 56, 0, 0, 0]);
    m.extend_from_slice(&[10, 0, 0x61, 0x4a, 0, 0, 0, 15]);
    m.extend_from_slice(&info);
    m
}

fn field(m: &[u8], at: usize) -> &[u8] {
    let len = u16::from_le_bytes([m[at], m[at + 1]]) as usize;
    let off = u32::from_le_bytes(m[at + 4..at + 8].try_into().unwrap()) as usize;
    &m[off..off + len]
}

fn from_utf16(b: &[u8]) -> String {
    String::from_utf16(
        &b.chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

/// Recomputes the NTLMv2 response from the blob the client sent and the password we know.
fn verify_type3(m: &[u8]) -> Option<String> {
    if &m[..8] != b"NTLMSSP\0" || m[8] != 3 {
        return None;
    }
    let nt = field(m, 20);
    let (domain, user) = (from_utf16(field(m, 28)), from_utf16(field(m, 36)));
    let blob = &nt[16..];
    let time: [u8; 8] = blob[8..16].try_into().unwrap();
    let client_challenge: [u8; 8] = blob[16..24].try_into().unwrap();
    let server_name = &blob[28..blob.len() - 4];
    let hash = NtSecret::Password(Zeroizing::new(PASSWORD.into())).nt_hash();
    let key = ntlm::ntowfv2(&hash, &user, &domain);
    let expected = ntlm::ntlmv2_responses(
        &key,
        &SERVER_CHALLENGE,
        &client_challenge,
        &time,
        server_name,
    );
    (expected.nt_response == nt && time == [9; 8]).then(|| format!("{domain}\\{user}"))
}

fn creds(proxy: SocketAddr, password: &str) -> (exoproxy::target::ProxyEndpoint, ProxyCredentials) {
    let (endpoint, mut c) = credentials(proxy, &format!("{DOMAIN}\\{USER}"), password);
    c.schemes = vec![];
    (endpoint, c)
}

fn upstream_with(
    credentials: Vec<(exoproxy::target::ProxyEndpoint, ProxyCredentials)>,
) -> Upstream {
    Upstream::new(UpstreamConfig {
        credentials,
        ..test_upstream()
    })
}

/// A CONNECT to [`target`] through `proxy` alone.
async fn connect_through(
    upstream: &Upstream,
    proxy: &NtlmProxy,
) -> Result<exoproxy::upstream::Connected, ProxyError> {
    upstream.connect(&target(), &via(&[proxy.addr])).await
}

fn target() -> Target {
    Target::parse_connect("origin.test:443").unwrap()
}

async fn echo(stream: &mut TcpStream) -> Vec<u8> {
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    buf.to_vec()
}

const PLAIN: Script = Script {
    close_after_type2: 0,
    offer: "NTLM",
};

#[tokio::test]
async fn flt_12_ntlm_connect_runs_on_one_keep_alive_connection() {
    let proxy = NtlmProxy::start(PLAIN).await;
    let upstream = upstream_with(vec![creds(proxy.addr, PASSWORD)]);
    let decision: Decision = via(&[proxy.addr]);
    let mut conn = upstream.connect(&target(), &decision).await.unwrap();
    assert_eq!(echo(&mut conn.stream).await, b"ping");
    proxy.seen(|s| {
        assert_eq!(
            s.connections, 1,
            "407, Type 1 and Type 3 share one connection"
        );
        assert_eq!(s.auths, ["-", "NTLM", "NTLM"]);
        assert_eq!(s.verified, ["CORP\\alice"]);
    });
    // The proxy is now known to want NTLM: the next CONNECT starts with Type 1.
    let mut conn = upstream.connect(&target(), &decision).await.unwrap();
    assert_eq!(echo(&mut conn.stream).await, b"ping");
    proxy.seen(|s| {
        assert_eq!(s.connections, 2);
        assert_eq!(s.auths[3..], ["NTLM", "NTLM"]);
        assert_eq!(s.verified.len(), 2);
    });
}

#[tokio::test]
async fn flt_12_close_between_type2_and_type3_restarts_once() {
    let proxy = NtlmProxy::start(Script {
        close_after_type2: 1,
        ..PLAIN
    })
    .await;
    let upstream = upstream_with(vec![creds(proxy.addr, PASSWORD)]);
    let mut conn = connect_through(&upstream, &proxy).await.unwrap();
    assert_eq!(echo(&mut conn.stream).await, b"ping");
    proxy.seen(|s| {
        assert_eq!(s.connections, 2, "one fresh connection after the close");
        assert_eq!(s.verified.len(), 1);
    });
}

#[tokio::test]
async fn flt_12_a_proxy_that_always_closes_mid_handshake_fails_clearly() {
    let proxy = NtlmProxy::start(Script {
        close_after_type2: usize::MAX,
        ..PLAIN
    })
    .await;
    let upstream = upstream_with(vec![creds(proxy.addr, PASSWORD)]);
    let err = connect_through(&upstream, &proxy).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ProxyError::UpstreamAuthFailed { .. }),
        "{text}"
    );
    assert!(
        text.contains("twice") && text.contains(&proxy.addr.to_string()),
        "{text}"
    );
    proxy.seen(|s| assert_eq!(s.connections, 2, "restarted once, not forever"));
}

#[tokio::test]
async fn flt_3_wrong_password_is_auth_failed_naming_proxy_and_scheme_without_failover() {
    let proxy = NtlmProxy::start(PLAIN).await;
    let spare = dead_port().await;
    let upstream = upstream_with(vec![creds(proxy.addr, "wrong")]);
    let decision = via(&[proxy.addr, spare]);
    let err = upstream.connect(&target(), &decision).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ProxyError::UpstreamAuthFailed { .. }),
        "{text}"
    );
    assert!(
        text.contains(&proxy.addr.to_string()) && text.contains("NTLM"),
        "{text}"
    );
    proxy.seen(|s| assert_eq!((s.rejected, s.verified.len()), (1, 0)));
    // Not marked bad (FLT-3): the next attempt goes to the same proxy first, not the spare.
    let err = upstream.connect(&target(), &decision).await.unwrap_err();
    assert!(
        matches!(err, ProxyError::UpstreamAuthFailed { .. }),
        "{err}"
    );
    proxy.seen(|s| assert_eq!(s.rejected, 2));
}

#[tokio::test]
async fn negotiate_and_basic_offers_pick_ntlm_and_never_basic() {
    let proxy = NtlmProxy::start(Script {
        offer: "Basic realm=\"corp\", Negotiate, NTLM",
        ..PLAIN
    })
    .await;
    let upstream = upstream_with(vec![creds(proxy.addr, PASSWORD)]);
    connect_through(&upstream, &proxy).await.unwrap();
    proxy.seen(|s| {
        assert!(
            !s.auths.iter().any(|a| a == "Basic" || a == "Negotiate"),
            "{:?}",
            s.auths
        );
        assert_eq!(s.verified.len(), 1);
    });
}

#[tokio::test]
async fn pac_14_a_proxy_without_credentials_gets_none() {
    let proxy = NtlmProxy::start(PLAIN).await;
    let other = dead_port().await;
    let upstream = upstream_with(vec![creds(other, PASSWORD)]);
    let err = connect_through(&upstream, &proxy).await.unwrap_err();
    assert!(err.to_string().contains("no credentials"), "{err}");
    proxy.seen(|s| assert_eq!(s.auths, ["-"]));
}

#[tokio::test]
async fn nt_hash_credentials_authenticate() {
    let proxy = NtlmProxy::start(PLAIN).await;
    let (endpoint, mut c) = creds(proxy.addr, "");
    c.nt_hash = Some(NtSecret::Password(Zeroizing::new(PASSWORD.into())).nt_hash());
    let upstream = upstream_with(vec![(endpoint, c)]);
    connect_through(&upstream, &proxy).await.unwrap();
    proxy.seen(|s| assert_eq!(s.verified.len(), 1));
}

#[tokio::test]
async fn ntlm_only_credentials_refuse_basic_offer() {
    let proxy = NtlmProxy::start(Script {
        offer: "Basic realm=\"corp\"",
        ..PLAIN
    })
    .await;
    let (endpoint, mut c) = creds(proxy.addr, PASSWORD);
    c.schemes = vec![Scheme::Ntlm];
    let upstream = upstream_with(vec![(endpoint, c)]);
    let err = connect_through(&upstream, &proxy).await.unwrap_err();
    assert!(err.to_string().contains("no supported scheme"), "{err}");
    proxy.seen(|s| assert_eq!(s.auths, ["-"]));
}

#[tokio::test]
async fn plain_http_authenticates_the_connection_before_the_request() {
    let proxy = NtlmProxy::start(PLAIN).await;
    let upstream = upstream_with(vec![creds(proxy.addr, PASSWORD)]);
    let target = Target::from_http_authority("origin.test").unwrap();
    let mut conn = upstream
        .connect_http(&target, &via(&[proxy.addr]))
        .await
        .unwrap();
    assert!(conn.proxy_authorization.is_none());
    // The returned connection is authenticated: a request without credentials passes.
    conn.stream
        .write_all(b"GET http://origin.test/x HTTP/1.1\r\nHost: origin.test\r\n\r\n")
        .await
        .unwrap();
    let (head, rest) = read_head(&mut conn.stream).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(rest, b"authed");
    proxy.seen(|s| {
        assert_eq!(s.connections, 1);
        assert_eq!(s.auths, ["-", "NTLM", "NTLM", "-"]);
    });
}

#[tokio::test]
async fn tls_4_through_the_proxy_wrong_credentials_are_502_upstream_auth_failed() {
    let proxy = NtlmProxy::start(PLAIN).await;
    let config = UpstreamConfig {
        credentials: vec![creds(proxy.addr, "wrong")],
        ..test_upstream()
    };
    let ours = start_proxy(via(&[proxy.addr]), config, test_limits()).await;
    let response = raw(
        ours.addr,
        b"CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n",
    )
    .await;
    assert_eq!(response.status(), 502, "{}", response.text);
    assert_eq!(response.code(), "upstream_auth_failed");
    assert!(
        response.body().contains(&proxy.addr.to_string()),
        "{}",
        response.text
    );
    assert!(response.body().contains("NTLM"), "{}", response.text);
    assert!(
        !response.text.contains("TlRMTVNT"),
        "no token in the answer"
    );
}

/// pyspnego's NTLM acceptor verifies our Type 3 (right password accepted, wrong refused).
#[test]
fn pyspnego_accepts_right_password_and_refuses_wrong() {
    assert_eq!(pyspnego_verdict(PASSWORD), "ACCEPTED");
    assert!(pyspnego_verdict("wrong").starts_with("REFUSED"));
}

fn pyspnego_verdict(password: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, format!("{DOMAIN}:{USER}:{PASSWORD}\n")).unwrap();
    let script = r#"
import base64, os, sys
os.environ["NTLM_USER_FILE"] = sys.argv[1]
import spnego
srv = spnego.server(protocol="ntlm")
for line in sys.stdin:
    try:
        out = srv.step(base64.b64decode(line.strip()))
    except Exception as e:
        print("REFUSED", type(e).__name__, flush=True); sys.exit(0)
    if srv.complete:
        print("ACCEPTED", flush=True); sys.exit(0)
    print(base64.b64encode(out).decode(), flush=True)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, users.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with pyspnego (pip install pyspnego)");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let b64 = base64::engine::general_purpose::STANDARD;
    let identity = NtlmIdentity::new(
        &format!("{DOMAIN}\\{USER}"),
        None,
        NtSecret::Password(Zeroizing::new(password.into())),
    );
    let client = NtlmClient::new(identity);
    writeln!(stdin, "{}", b64.encode(client.negotiate())).unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let type2 = b64.decode(line.trim()).expect("a Type 2 from pyspnego");
    let type3 = client.authenticate(&type2).unwrap();
    writeln!(stdin, "{}", b64.encode(type3.as_slice())).unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let _ = child.wait();
    line.trim().to_string()
}

// --- configuration: `[[upstream.credentials]]` gains domain, nt_hash_env and schemes

fn validate_with(text: &str, env: &[(&str, &str)]) -> Result<exoproxy::config::Config, String> {
    use exoproxy::config::{Overrides, parse, validate::validate};
    let lookup = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let file = parse(text).map_err(|e| e.to_string())?;
    validate(file, &Overrides::default(), Some(text), &lookup).map_err(|errs| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[test]
fn config_accepts_nt_hash_domain_and_schemes() {
    let text = r#"
[[upstream.credentials]]
proxy = "proxy.corp:8080"
username = "alice"
domain = "CORP"
nt_hash_env = "PROXY_NT_HASH"
schemes = ["ntlm"]
"#;
    let hash = "a4f49c406510bdcab6824ee7c30fd852";
    let cfg = validate_with(text, &[("PROXY_NT_HASH", hash)]).unwrap();
    let (_, c) = &cfg.upstream.credentials[0];
    assert_eq!(c.domain.as_deref(), Some("CORP"));
    assert_eq!(hex::encode(c.nt_hash.as_ref().unwrap().as_slice()), hash);
    assert_eq!(c.schemes, [Scheme::Ntlm]);
    assert!(
        !format!("{cfg:?}").contains("a4f49c"),
        "the hash must not show in Debug"
    );
}

#[test]
fn config_refuses_bad_hash_unknown_scheme_and_two_secrets() {
    let text = r#"
[[upstream.credentials]]
proxy = "proxy.corp:8080"
username = "alice"
nt_hash_env = "H"
schemes = ["kerberos"]
"#;
    let err = validate_with(text, &[("H", "not-hex")]).unwrap_err();
    assert!(
        err.contains("32 hex digits") && !err.contains("not-hex"),
        "{err}"
    );
    let err = validate_with(text, &[("H", "a4f49c406510bdcab6824ee7c30fd852")]).unwrap_err();
    assert!(err.contains("unknown scheme"), "{err}");
    let two = "[[upstream.credentials]]\nproxy = \"p:1\"\nusername = \"a\"\npassword = \"x\"\nnt_hash_env = \"H\"\n";
    let err = validate_with(two, &[("H", "a4f49c406510bdcab6824ee7c30fd852")]).unwrap_err();
    assert!(err.contains("exactly one"), "{err}");
}

#[test]
fn config_allows_a_userless_negotiate_entry_for_windows_sign_on() {
    let text = "[[upstream.credentials]]\nproxy = \"proxy.corp:8080\"\nschemes = [\"negotiate\"]\n";
    let cfg = validate_with(text, &[]).unwrap();
    let (_, c) = &cfg.upstream.credentials[0];
    assert!(c.username.is_empty() && c.password.is_empty());
    let err = validate_with("[[upstream.credentials]]\nproxy = \"p:1\"\n", &[]).unwrap_err();
    assert!(err.contains("username"), "{err}");
}

#[tokio::test]
async fn plain_http_to_a_basic_proxy_carries_basic_on_the_request_only() {
    let proxy = NtlmProxy::start(Script {
        offer: "Basic realm=\"corp\"",
        ..PLAIN
    })
    .await;
    let upstream = upstream_with(vec![creds(proxy.addr, PASSWORD)]);
    let target = Target::from_http_authority("origin.test").unwrap();
    let conn = upstream
        .connect_http(&target, &via(&[proxy.addr]))
        .await
        .unwrap();
    let auth = conn.proxy_authorization.expect("Basic for the request");
    assert!(auth.0.starts_with("Basic "));
    proxy.seen(|s| assert_eq!(s.auths, ["-"], "the probe carried no credentials"));
}

#[tokio::test]
async fn plain_http_to_a_credentialed_proxy_that_wants_no_auth_probes_once() {
    let origin = start_origin().await;
    let stub = start_stub(StubMode::Forward { basic: None }).await;
    let config = UpstreamConfig {
        credentials: vec![creds(stub.addr, PASSWORD)],
        ..test_upstream()
    };
    let ours = start_proxy(via(&[stub.addr]), config, test_limits()).await;
    let authority = format!("{ORIGIN_HOST}:{}", origin.addr.port());
    for _ in 0..2 {
        let request =
            format!("GET http://{authority}/p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let response = raw(ours.addr, request.as_bytes()).await;
        assert_eq!(response.status(), 200, "{}", response.text);
    }
    // One HEAD probe, then the two requests; nobody got credentials.
    let lines = stub.lines();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("HEAD ")).count(),
        1,
        "{lines:?}"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(stub.auths().iter().all(Option::is_none));
}

#[cfg(not(windows))]
#[tokio::test]
async fn negotiate_only_proxy_is_not_supported_off_windows() {
    let proxy = NtlmProxy::start(Script {
        offer: "Negotiate",
        ..PLAIN
    })
    .await;
    let upstream = upstream_with(vec![creds(proxy.addr, PASSWORD)]);
    let err = connect_through(&upstream, &proxy).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Negotiate") && text.contains("no supported scheme"),
        "{text}"
    );
    proxy.seen(|s| assert_eq!(s.auths, ["-"]));
}
