//! FUZZ-4 (docs/TESTING.md#fuzz-4): the proxy driven by generated event sequences. The proxy is not
//! sans-IO, so the events go through a running in-process proxy (the interception harness: real
//! router, local CA, token manager signed in at exosim) over loopback sockets:
//!
//! - client events: bytes (valid requests of every kind the proxy serves, smuggling-shaped ones,
//!   fragments of them, random bytes), pauses, a half-close, an abort; on plain connections and
//!   inside intercepted TLS sessions (where the requests name other hosts in `Host` or absolute
//!   form);
//! - upstream events: the origin of the non-intercepted host answers, stays silent, closes at
//!   once, or sends garbage;
//! - timeouts: the proxy runs with short limits (1–2 s), so a silent peer meets them.
//!
//! Invariants after every sequence: no panic anywhere in the process; the origin that is not
//! allow-listed for tokens never received an `Authorization` header or the account's token (while
//! token-bearing requests ran in the same sequence); every connection the client ended reaches EOF,
//! and the proxy's open connections and tunnels return to zero, within a bound above the limits.
//!
//! 64 sequences in the suite (each takes up to a few seconds: timeouts are part of the events);
//! `PROPTEST_CASES` for more.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exoproxy::limits::Limits;
use exoproxy::token::Audience;
use exoproxy::upstream::ConnectTo;
use intercept_support::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The host that is not allow-listed for tokens (tunnelled blind, DIRECT to our origin).
const OTHER: &str = "other.test";
/// How long a connection the client ended may take to close (the limits below are 1–2 s).
const CLOSE_BOUND: Duration = Duration::from_secs(10);

static PANICS: AtomicUsize = AtomicUsize::new(0);

// === the model ===

#[derive(Clone)]
enum Event {
    Send(Vec<u8>),
    Pause(u64),
    HalfClose,
    Abort,
}

/// Bytes shown as text, so a failing sequence reads as the requests it sent.
impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Send(bytes) => write!(f, "Send({:?})", String::from_utf8_lossy(bytes)),
            Event::Pause(ms) => write!(f, "Pause({ms} ms)"),
            Event::HalfClose => f.write_str("HalfClose"),
            Event::Abort => f.write_str("Abort"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OriginMode {
    Answer,
    Silent,
    CloseAtOnce,
    Garbage,
}

#[derive(Debug, Clone)]
enum Session {
    /// A plain connection to the proxy.
    Plain(Vec<Event>),
    /// `CONNECT outlook.office365.com:443`, TLS with the local CA, then the events inside.
    Intercepted(Vec<Event>),
    /// A complete token-bearing request (the token is in flight during the sequence).
    Rest,
}

#[derive(Debug, Clone)]
struct Case {
    origin: OriginMode,
    sessions: Vec<Session>,
}

fn plain_fragments() -> Vec<Vec<u8>> {
    [
        format!("CONNECT {OTHER}:443 HTTP/1.1\r\nHost: {OTHER}:443\r\n\r\n"),
        format!("CONNECT {EXO}:443 HTTP/1.1\r\nHost: {EXO}:443\r\n\r\n"),
        format!("GET http://{OTHER}/ HTTP/1.1\r\nHost: {OTHER}\r\n\r\n"),
        format!("GET http://{EXO}/ HTTP/1.1\r\nHost: {EXO}\r\n\r\n"),
        format!(
            "POST http://{OTHER}/x HTTP/1.1\r\nHost: {OTHER}\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n"
        ),
        format!(
            "POST http://{OTHER}/x HTTP/1.1\r\nHost: {OTHER}\r\nContent-Length: 4\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://{EXO}/ HTTP/1.1\r\n\r\n"
        ),
        format!("GET /healthz HTTP/1.1\r\nHost: {OTHER}\r\n\r\n"),
        "GET /proxy.pac HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
        "\r\n".into(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

fn tls_fragments() -> Vec<Vec<u8>> {
    [
        format!("GET {REST_PATH} HTTP/1.1\r\nHost: {EXO}\r\n\r\n"),
        format!("GET {REST_PATH} HTTP/1.1\r\nHost: {OTHER}\r\n\r\n"),
        format!("GET https://{OTHER}/x HTTP/1.1\r\nHost: {OTHER}\r\n\r\n"),
        format!("GET http://{OTHER}:443/x HTTP/1.1\r\nHost: {OTHER}:443\r\n\r\n"),
        format!(
            "POST {REST_PATH} HTTP/1.1\r\nHost: {EXO}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{GET_MAILBOX}",
            GET_MAILBOX.len()
        ),
        format!(
            "POST {REST_PATH} HTTP/1.1\r\nHost: {EXO}\r\nContent-Length: 5\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: {OTHER}\r\n\r\n"
        ),
        format!("CONNECT {OTHER}:443 HTTP/1.1\r\nHost: {OTHER}:443\r\n\r\n"),
        "\r\n".into(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// Bytes: a fragment, a prefix or suffix of one (split requests), or random bytes.
fn bytes(fragments: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let whole = prop::sample::select(fragments.clone());
    let part = (
        prop::sample::select(fragments),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(f, at, head)| {
            let at = at.index(f.len() + 1);
            if head {
                f[..at].to_vec()
            } else {
                f[at..].to_vec()
            }
        });
    prop_oneof![
        4 => whole,
        2 => part,
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// A whole request first (so most sequences get past the head guard), then anything.
fn events(fragments: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<Event>> {
    let first = prop::sample::select(fragments.clone()).prop_map(Event::Send);
    let event = prop_oneof![
        6 => bytes(fragments).prop_map(Event::Send),
        2 => (0u64..60).prop_map(Event::Pause),
        1 => Just(Event::HalfClose),
        1 => Just(Event::Abort),
    ];
    (first, prop::collection::vec(event, 0..6)).prop_map(|(first, mut rest)| {
        rest.insert(0, first);
        rest
    })
}

fn case() -> impl Strategy<Value = Case> {
    let session = prop_oneof![
        3 => events(plain_fragments()).prop_map(Session::Plain),
        2 => events(tls_fragments()).prop_map(Session::Intercepted),
        1 => Just(Session::Rest),
    ];
    let origin = prop::sample::select(vec![
        OriginMode::Answer,
        OriginMode::Silent,
        OriginMode::CloseAtOnce,
        OriginMode::Garbage,
    ]);
    (origin, prop::collection::vec(session, 1..5)).prop_map(|(origin, mut sessions)| {
        sessions.push(Session::Rest);
        Case { origin, sessions }
    })
}

// === the origin that must never see a token ===

#[derive(Clone)]
struct Origin {
    addr: SocketAddr,
    mode: Arc<Mutex<OriginMode>>,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Origin {
    async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = Origin {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(OriginMode::Answer)),
            received: Arc::default(),
        };
        let serving = origin.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(stream));
            }
        });
        origin
    }

    /// Records everything; answers as the mode says; closes once the proxy closes (a silent
    /// origin is silent, not deaf: a deaf one is bounded by the timeouts of FLT-1 and FLT-2).
    async fn serve(self, mut stream: TcpStream) {
        let mode = *self.mode.lock().unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let mut answered = false;
        loop {
            let n = match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await
            {
                Ok(Ok(n)) if n > 0 => n,
                _ => return,
            };
            self.received.lock().unwrap().extend_from_slice(&buf[..n]);
            let reply: &[u8] = match mode {
                OriginMode::Answer => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                OriginMode::Garbage => b"\x00\x01garbage\r\n\r\n",
                OriginMode::CloseAtOnce => return,
                OriginMode::Silent => b"",
            };
            if !answered && !reply.is_empty() {
                answered = true;
                if stream.write_all(reply).await.is_err() {
                    return;
                }
            }
        }
    }
}

// === running a sequence ===

/// Plays `events` on `stream`; unless aborted, ends with a half-close and reads until the proxy
/// closes. Err when that takes longer than [`CLOSE_BOUND`].
async fn play<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    events: &[Event],
) -> Result<(), String> {
    for event in events {
        match event {
            Event::Send(bytes) => {
                if stream.write_all(bytes).await.is_err() {
                    break;
                }
            }
            Event::Pause(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
            Event::HalfClose => {
                let _ = stream.shutdown().await;
            }
            Event::Abort => return Ok(()),
        }
    }
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 16 * 1024];
    let drained = tokio::time::timeout(CLOSE_BOUND, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    drained
        .await
        .map_err(|_| format!("the proxy kept the connection open after {events:?}"))
}

async fn run_session(h: &Harness, session: &Session) -> Result<(), String> {
    match session {
        Session::Plain(events) => play(TcpStream::connect(h.proxy).await.unwrap(), events).await,
        Session::Intercepted(events) => {
            let tunnel = connect_tunnel(h.proxy, EXO).await;
            let tls = tls_client(tunnel, EXO, &[h.ca_pem.as_str()]).await;
            play(tls, events).await
        }
        Session::Rest => {
            let (status, body) = rest_once(h, EXO).await;
            assert!(
                status.is_success() || status.is_redirection(),
                "{status} {body}"
            );
            Ok(())
        }
    }
}

/// The open connections and tunnels the proxy reports.
fn open_now() -> (u64, u64) {
    let text = exoproxy::summary::metrics_text();
    let gauge = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    (
        gauge("exoproxy_open_connections "),
        gauge("exoproxy_open_tunnels "),
    )
}

async fn check_case(h: &Harness, origin: &Origin, token: &str, case: &Case) -> Result<(), String> {
    *origin.mode.lock().unwrap() = case.origin;
    let panics_before = PANICS.load(Ordering::SeqCst);
    let results = futures_join(case.sessions.iter().map(|s| run_session(h, s))).await;
    for result in results {
        result?;
    }
    let deadline = tokio::time::Instant::now() + CLOSE_BOUND;
    while open_now() != (0, 0) {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "still open (connections, tunnels): {:?}",
                open_now()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if PANICS.load(Ordering::SeqCst) != panics_before {
        return Err("a task panicked".into());
    }
    let received = origin.received.lock().unwrap();
    let text = String::from_utf8_lossy(&received).to_ascii_lowercase();
    if text.contains("authorization:") || String::from_utf8_lossy(&received).contains(token) {
        return Err(format!("a token reached {OTHER}"));
    }
    Ok(())
}

/// Runs the sessions concurrently, each on its own task.
async fn futures_join<'a, I, F>(sessions: I) -> Vec<Result<(), String>>
where
    I: Iterator<Item = F>,
    F: std::future::Future<Output = Result<(), String>> + 'a,
{
    let mut results = Vec::new();
    let all: Vec<_> = sessions.map(Box::pin).collect();
    // Interleaved on this task: the events of all sessions progress together.
    let mut pending: Vec<_> = all.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for slot in pending.iter_mut() {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => {
                        results.push(r);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results
}

#[test]
fn fuzz4_event_sequences_never_panic_leak_a_token_or_leave_a_connection_open() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (h, origin, token) = rt.block_on(async {
        let origin = Origin::start().await;
        let h = Harness::start(Options {
            canary: Some("CANARY-fuzz4-0b7d".into()),
            connect_to: vec![ConnectTo {
                host: OTHER.into(),
                port: None,
                to_host: "127.0.0.1".into(),
                to_port: origin.addr.port(),
            }],
            limits: Limits {
                header_read_timeout: Duration::from_secs(1),
                client_idle: Duration::from_secs(1),
                stream_idle: Duration::from_secs(2),
                tunnel_idle: Duration::from_secs(2),
                ..Limits::default()
            },
            ..Options::default()
        })
        .await;
        let audience = Audience::new("https://outlook.office365.com");
        let token = h.tokens.token(ADMIN, &audience).await.unwrap();
        let token = token.expose().to_string();
        (h, origin, token)
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        rt.block_on(check_case(&h, &origin, &token, &case))
            .map_err(TestCaseError::fail)
    });
    // The origin really saw traffic, and the token really was in use meanwhile.
    assert!(!origin.received.lock().unwrap().is_empty());
    assert!(rt.block_on(async { open_now() }) == (0, 0));
    drop(h);
    if let Err(e) = result {
        panic!("{e}");
    }
}
