//! Faults on the intercepted path against a scripted HTTPS origin (docs/TESTING.md#flt): a client
//! that leaves mid-body (FLT-9), an origin that throttles (FLT-10), a long silence inside an EWS
//! stream (FLT-15) and a request body that trickles in (LOAD-8). Short configured idle limits, so
//! each takes seconds; loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use exoproxy::limits::Limits;
use http_body_util::{BodyExt, Full};
use intercept_support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The host the scripted origin serves (intercepted, with a token audience).
const HOST: &str = "outlook.office365.com";

type Tls = OriginTls;

/// A scripted origin for [`HOST`].
async fn origin(handler: OriginHandler) -> ScriptedOrigin {
    scripted_origin(HOST, handler).await
}

/// The proxy with [`HOST`] mapped to `origin` (trusted upstream) and the given limits.
async fn harness(origin: &ScriptedOrigin, limits: Limits) -> Harness {
    Harness::start(origin.options(HOST, limits)).await
}

/// A CONNECT tunnel to [`HOST`] with TLS trusting exoproxy's CA.
async fn tunnel(h: &Harness) -> tokio_rustls::client::TlsStream<TcpStream> {
    let stream = connect_tunnel(h.proxy, HOST).await;
    tls_client(stream, HOST, &[h.ca_pem.as_str()]).await
}

/// Reads until the peer closes (or `within` passes): the bytes and when the stream ended.
async fn read_to_close<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (out, closed)
}

/// Live tasks of the test's runtime (proxy, emulator and origin all run on it).
fn tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits up to 5 s for the live task count to come back to `baseline`; returns the last count.
async fn tasks_back_to(baseline: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = tasks();
        if now <= baseline || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// === FLT-10 ===

/// Throttling answers as EXO and EWS write them (path, request content type, head without its
/// length, body), with lower-case header names (which HTTP/1.1 allows and hyper writes) so that
/// what the client receives can be compared byte for byte.
const THROTTLED: [(&str, &str, &str, &str); 3] = [
    (
        REST_PATH,
        "application/json",
        "HTTP/1.1 429 Too Many Requests\r\ndate: Mon, 07 Dec 2026 18:00:00 GMT\r\n\
         content-type: application/json; charset=utf-8\r\nretry-after: 20\r\n\
         rate-limit-limit: 100\r\nrate-limit-remaining: 0\r\nrate-limit-reset: 20\r\n\
         x-ms-diagnostics: 2000010;reason=\"throttled\"\r\n",
        r#"{"error":{"code":"TooManyRequests","message":"Retry after 20 seconds"}}"#,
    ),
    (
        "/PowerShell-LiveID?BasicAuthToOAuthConversion=true",
        "application/soap+xml",
        "HTTP/1.1 503 Service Unavailable\r\ndate: Mon, 07 Dec 2026 18:00:00 GMT\r\n\
         retry-after: 30\r\ncontent-type: text/plain\r\n",
        "Server is too busy.",
    ),
    (
        "/EWS/Exchange.asmx",
        "text/xml",
        "HTTP/1.1 500 Internal Server Error\r\ndate: Mon, 07 Dec 2026 18:00:00 GMT\r\n\
         content-type: text/xml; charset=utf-8\r\n",
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorServerBusy</faultcode><faultstring>The server cannot service this request right now. Try again later.</faultstring><detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorServerBusy</e:ResponseCode><t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><t:Value Name="BackOffMilliseconds">5000</t:Value></t:MessageXml></detail></s:Fault></s:Body></s:Envelope>"#,
    ),
];

/// The whole answer the origin writes for one [`THROTTLED`] entry.
fn throttled_reply(head: &str, body: &str) -> String {
    format!("{head}content-length: {}\r\n\r\n{body}", body.len())
}

/// FLT-10: 429 and 503 with `Retry-After` and EWS's `ErrorServerBusy` reach the client exactly as
/// the origin wrote them (status line, headers, body), each request reaches the origin once, and
/// no token call follows. Injected (REST, WS-Man) and pass-through (EWS) paths alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flt_10_throttling_answers_pass_through_byte_for_byte_without_retries() {
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let recorded = seen.clone();
    let origin = origin(Arc::new(move |mut tls: Tls| {
        let seen = recorded.clone();
        Box::pin(async move {
            while let Some(request) = read_request(&mut tls).await {
                let path = request.head.split(' ').nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(request);
                let (_, _, head, body) = THROTTLED.iter().find(|t| t.0 == path).unwrap();
                tls.write_all(throttled_reply(head, body).as_bytes())
                    .await
                    .unwrap();
            }
        })
    }))
    .await;
    let h = harness(&origin, Limits::default()).await;
    let refreshes = refresh_calls(&h);
    let mut tls = tunnel(&h).await;
    for (path, content_type, head, body) in THROTTLED {
        let reply = throttled_reply(head, body);
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: {content_type}\r\n\
             content-length: 4\r\n\r\n<x/>"
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut got = vec![0u8; reply.len()];
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut got)).await;
        assert!(
            matches!(read, Ok(Ok(_))),
            "{path}: {read:?} after {}",
            String::from_utf8_lossy(&got)
        );
        assert_eq!(String::from_utf8_lossy(&got), reply, "{path}");
    }
    // Nothing more arrives (no second copy), and each request reached the origin once.
    let mut more = [0u8; 1];
    let extra = tokio::time::timeout(Duration::from_millis(300), tls.read(&mut more)).await;
    assert!(
        extra.is_err(),
        "unexpected bytes after the answers: {extra:?}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), THROTTLED.len(), "{seen:#?}");
    assert!(seen.iter().all(Seen::complete), "{seen:#?}");
    assert!(
        seen[0]
            .head
            .to_ascii_lowercase()
            .contains("authorization: bearer "),
        "the REST request was injected: {}",
        seen[0].head
    );
    assert_eq!(
        refresh_calls(&h),
        refreshes,
        "a throttling answer is no reason for a token call"
    );
}

/// FLT-10 against exosim's own throttling mode: its 429 with `Retry-After` and the `Rate-Limit-*`
/// family comes through the proxy unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flt_10_exosim_throttle_mode_reaches_the_client_unchanged() {
    let h = Harness::start(Options::default()).await;
    let tenant = tenant_host(&h).await;
    h.control()
        .update_exchange(|s| s.throttle = Some(Duration::from_secs(17)));
    let refreshes = refresh_calls(&h);
    let mut client = h.client(&tenant).await;
    let (status, headers, body) =
        send(&mut client, post_json(&tenant, REST_PATH, GET_MAILBOX)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "17");
    assert_eq!(headers["rate-limit-limit"], "100");
    assert_eq!(headers["rate-limit-remaining"], "0");
    assert_eq!(headers["rate-limit-reset"], "17");
    assert!(headers.get("x-localproxy-error").is_none(), "{headers:?}");
    assert!(body.contains("TooManyRequests"), "{body}");
    assert_eq!(refresh_calls(&h), refreshes);
}

// === FLT-9 ===

/// FLT-9: the client sends half of a 10 MiB POST on an injected path and goes away. The origin
/// sees one request that stops short (never a complete one, never a second copy), no token call
/// follows, and every task the exchange started ends. A body still inside the replay buffer
/// (under 1 MiB) never reaches the origin at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flt_9_client_gone_mid_body_leaves_a_truncated_request_and_no_retry() {
    const TOTAL: usize = 10 * 1024 * 1024;
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let ended = Arc::new(tokio::sync::Notify::new());
    let (recorded, ended_tx) = (seen.clone(), ended.clone());
    let origin = origin(Arc::new(move |mut tls: Tls| {
        let (seen, ended) = (recorded.clone(), ended_tx.clone());
        Box::pin(async move {
            if let Some(request) = read_request(&mut tls).await {
                let complete = request.complete();
                seen.lock().unwrap().push(request);
                if complete {
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            }
            ended.notify_one();
        })
    }))
    .await;
    let h = harness(&origin, Limits::default()).await;
    let refreshes = refresh_calls(&h);
    // A request first, so that the token and the pooled IdP connection are in the baseline.
    let mut warm = tunnel(&h).await;
    let head =
        format!("POST {REST_PATH} HTTP/1.1\r\nhost: {HOST}\r\ncontent-length: 2\r\n\r\n{{}}");
    warm.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = read_to_close(&mut warm, Duration::from_millis(500)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(warm);
    ended.notified().await;
    seen.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = tasks();

    for sent in [TOTAL / 2, 512 * 1024] {
        let mut tls = tunnel(&h).await;
        let head = format!(
            "POST {REST_PATH} HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n\
             content-length: {TOTAL}\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&vec![b'x'; sent]).await.unwrap();
        tls.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Gone without a word: the socket closes under the TLS session.
        drop(tls);
        if sent > 1024 * 1024 {
            tokio::time::timeout(Duration::from_secs(5), ended.notified())
                .await
                .expect("the origin's connection ends after the client left");
            let seen = seen.lock().unwrap().clone();
            assert_eq!(seen.len(), 1, "one request, no retry: {seen:#?}");
            assert_eq!(seen[0].length, TOTAL);
            assert!(
                seen[0].body > 1024 * 1024 && seen[0].body <= sent,
                "streamed, then cut: {} of {TOTAL} bytes",
                seen[0].body
            );
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let seen = seen.lock().unwrap().clone();
            assert_eq!(seen.len(), 1, "the buffered body never went out: {seen:#?}");
        }
        let left = tasks_back_to(baseline).await;
        assert!(
            left <= baseline,
            "{left} tasks alive, {baseline} before ({sent} bytes sent)"
        );
    }
    assert_eq!(
        refresh_calls(&h),
        refreshes,
        "no token call for a client that left"
    );
}

// === LOAD-8 ===

/// LOAD-8: a POST whose body comes at 1 byte a second is answered 400 and closed once the stream
/// idle limit (2 s here) passed without anything forwarded; the origin never sees it and every
/// task of the exchange ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_8_slow_post_body_is_closed_at_stream_idle() {
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let recorded = seen.clone();
    let origin = origin(Arc::new(move |mut tls: Tls| {
        let seen = recorded.clone();
        Box::pin(async move {
            while let Some(request) = read_request(&mut tls).await {
                seen.lock().unwrap().push(request);
                let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if tls.write_all(reply).await.is_err() {
                    return;
                }
            }
        })
    }))
    .await;
    let idle = Duration::from_secs(2);
    let limits = Limits {
        stream_idle: idle,
        ..Limits::default()
    };
    let h = harness(&origin, limits).await;
    // A whole request first: the token and the IdP connection belong to the baseline.
    let (status, _) = rest_once(&h, HOST).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = tasks();
    seen.lock().unwrap().clear();

    let tls = tunnel(&h).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let head = format!(
        "POST {REST_PATH} HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let trickle = async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(b"x").await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let (answer, closed) = tokio::select! {
        read = read_to_close(&mut reader, Duration::from_secs(10)) => read,
        () = trickle => unreachable!(),
    };
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(closed, "still open after {took:?}: {answer}");
    assert!(
        took >= idle && took < idle + Duration::from_secs(2),
        "closed after {took:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(header(&answer, "connection"), Some("close"), "{answer}");
    assert_eq!(
        header(&answer, "x-localproxy-error"),
        Some("bad_request"),
        "{answer}"
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing forwarded");
    let left = tasks_back_to(baseline).await;
    assert!(left <= baseline, "{left} tasks alive, {baseline} before");
}

// === FLT-15 ===

/// FLT-15's limits and the silence inside the stream: scaled down (2 s stream idle, 6 s streaming
/// idle, 4 s gap), or with `EXOPROXY_FLT15_LONG=1` the plan's long form: the default limits
/// (5 min, 35 min) and a 29 min gap.
fn flt_15_scale() -> (Limits, Duration) {
    if std::env::var_os("EXOPROXY_FLT15_LONG").is_some() {
        return (Limits::default(), Duration::from_secs(29 * 60));
    }
    let limits = Limits {
        stream_idle: Duration::from_secs(2),
        streaming_idle: Duration::from_secs(6),
        ..Limits::default()
    };
    (limits, Duration::from_secs(4))
}

/// FLT-15: a silence longer than the stream idle limit but shorter than the streaming one, inside
/// an EWS response (streaming notifications), is not cut and the first event is not held back;
/// the same silence on another path is cut at the stream idle limit. The origin sends a response
/// head, a first event, the silence, a second event, the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flt_15_ews_stream_with_a_long_silence_is_not_cut() {
    let (limits, gap) = flt_15_scale();
    let origin = origin(Arc::new(move |mut tls: Tls| {
        Box::pin(async move {
            if read_request(&mut tls).await.is_none() {
                return;
            }
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ntransfer-encoding: chunked\r\n\r\n";
            let _ = tls.write_all(head.as_bytes()).await;
            let _ = tls.write_all(b"5\r\nfirst\r\n").await;
            tokio::time::sleep(gap).await;
            let _ = tls.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await;
            let _ = tls.shutdown().await;
        })
    }))
    .await;
    let stream_idle = limits.stream_idle;
    let h = harness(&origin, limits).await;
    let stream = |path: &'static str| {
        let h = &h;
        async move {
            let mut client = http_client(tunnel(h).await).await;
            let request = http::Request::post(path)
                .header("host", HOST)
                .header("content-type", "text/xml")
                .body(Full::new(Bytes::from_static(b"<GetStreamingEvents/>")))
                .unwrap();
            let started = Instant::now();
            let response = client.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let mut body = response.into_body();
            let mut events = Vec::new();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Ok(data) = frame.into_data() {
                            events.push((started.elapsed(), data));
                        }
                    }
                    Err(e) => {
                        events.push((started.elapsed(), Bytes::from(format!("cut: {e}"))));
                        break;
                    }
                }
            }
            events
        }
    };
    let (ews, other) = tokio::join!(stream("/EWS/Exchange.asmx"), stream("/owa/service.svc"));
    let ews_text: Vec<_> = ews.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(ews_text, [&b"first"[..], b"second"], "{ews:?}");
    assert!(
        ews[0].0 < Duration::from_secs(1),
        "first event held back: {ews:?}"
    );
    assert!(ews[1].0 >= gap, "{ews:?}");
    assert_eq!(&other[0].1[..], b"first", "{other:?}");
    assert!(
        other.len() == 2 && other[1].1.starts_with(b"cut: ") && other[1].0 < gap,
        "the other path is cut at its limit: {other:?}"
    );
    assert!(other[1].0 >= stream_idle, "{other:?}");
}
