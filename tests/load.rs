//! LOAD-1, LOAD-2, LOAD-5 and LOAD-7 (docs/TESTING.md#load) in their CI-sized form: real loopback
//! sockets through the in-process proxy, bounded to a few seconds. `EXOPROXY_SOAK_SECS` (the soak
//! knob of `tests/e2e_soak.rs`, docs/TESTING.md#running) stretches the timed loops of LOAD-1 and
//! LOAD-2 to the plan's long form, e.g. `EXOPROXY_SOAK_SECS=600 cargo test --release --test load`.
//!
//! The plan's latency targets are for release builds on an idle machine; here the added p99 is
//! printed and asserted only against a stall bound, so a shared CI core does not make it flaky.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exoproxy::limits::Limits;
use exoproxy::upstream::UpstreamConfig;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The tests here measure latency, descriptors and memory of the whole process: they run one at a
/// time (each holds this while it runs), so that one's burst is not another's p99.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// No single request or tunnel setup may take longer than this, loaded debug build included.
const STALL: Duration = Duration::from_millis(500);

/// The timed loops run this long: `EXOPROXY_SOAK_SECS`, else `default`.
fn run_for(default: u64) -> Duration {
    let secs = std::env::var("EXOPROXY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    Duration::from_secs(secs)
}

/// An origin that answers every request on a connection `200 ok`, keeping it alive.
async fn origin_keeping_alive() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                while read_head(&mut stream).await.is_some() {
                    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if stream.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// An origin that echoes whatever a tunnel sends.
async fn echo_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// One keep-alive GET: the status and how long it took.
async fn get(stream: &mut TcpStream, request: &[u8]) -> (u16, Duration) {
    let started = Instant::now();
    stream.write_all(request).await.unwrap();
    let (head, mut body) = tokio::time::timeout(STALL * 4, read_head(stream))
        .await
        .expect("a response in time")
        .expect("a response");
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .expect("a Content-Length");
    while body.len() < len {
        let mut chunk = [0u8; 64];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    let status = head[9..12].parse().unwrap();
    (status, started.elapsed())
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// `connections` clients send `request` to `to`, one connection per request, until `until`;
/// every status and time (connect included).
async fn request_load(
    to: SocketAddr,
    request: &'static [u8],
    connections: usize,
    until: Instant,
) -> Vec<(u16, Duration)> {
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(async move {
                let mut out = Vec::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    let mut stream = TcpStream::connect(to).await.unwrap();
                    let (status, _) = get(&mut stream, request).await;
                    out.push((status, started.elapsed()));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.unwrap());
    }
    all
}

/// DIRECT to `origin.test` on `port`, with the product's default timeouts: under load a loopback
/// connect may wait longer than the short test timeouts of `support`.
fn load_upstream(port: u16) -> UpstreamConfig {
    UpstreamConfig {
        connect_to: direct_config(port).connect_to,
        ..UpstreamConfig::default()
    }
}

/// LOAD-1: absolute-form GETs from 16 clients at once: every one answered 2xx, none stalls, RSS
/// steady (< 10 % growth after the first third; this binary's other tests run beside it, so the
/// figure is the whole process's). The
/// proxy serves one plain request per client connection (every request passes the guard,
/// `src/handler/mod.rs`), so each GET is a new connection; the origin keeps its side alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_1_absolute_form_gets_from_16_clients_all_succeed() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let origin = origin_keeping_alive().await;
    let proxy = start_proxy(direct(), load_upstream(origin.port()), test_limits()).await;
    let direct_request = b"GET /load HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n";
    let baseline = request_load(
        origin,
        direct_request,
        16,
        Instant::now() + Duration::from_secs(1),
    )
    .await;

    let request =
        b"GET http://origin.test/load HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n";
    let duration = run_for(3);
    let started = Instant::now();
    let warmed = tokio::spawn(async move {
        tokio::time::sleep_until((started + duration / 3).into()).await;
        rss_kib()
    });
    let results = request_load(proxy.addr, request, 16, started + duration).await;
    let (rss_warmed, rss_end) = (warmed.await.unwrap(), rss_kib());
    let failed: Vec<_> = results
        .iter()
        .filter(|(s, _)| !(200..300).contains(s))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} not 2xx: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        results.len() >= 16 * 10,
        "only {} requests answered",
        results.len()
    );
    let (through, direct) = (
        p99(results.iter().map(|r| r.1).collect()),
        p99(baseline.iter().map(|r| r.1).collect()),
    );
    println!(
        "LOAD-1: {} requests, p99 {through:?} through the proxy, {direct:?} direct",
        results.len()
    );
    assert!(through < STALL, "p99 {through:?}");
    // RSS steady: no growth beyond 10 % after the first third of the run.
    if let (Some(warmed), Some(end)) = (rss_warmed, rss_end) {
        println!("LOAD-1: RSS {warmed} KiB after a third, {end} KiB at the end");
        assert!(
            end as f64 <= warmed as f64 * 1.10,
            "RSS grew from {warmed} KiB to {end} KiB"
        );
    }
}

/// VmRSS of this process in KiB (Linux), or none where `/proc` is missing.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// LOAD-2: CONNECT tunnels opened at 300 per second, each held about 0.67 s, so that about 200
/// are open at once (the plan's rate and concurrency): every one set up and carrying bytes both
/// ways, none stalls. Opened at a rate rather than all at once: a burst of SYNs overflows the
/// kernel's accept queue and measures its 1 s retransmission, not the proxy (LOAD-5 is the burst).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_2_connect_tunnels_at_300_per_second_200_open_all_succeed() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const EVERY: Duration = Duration::from_micros(3_333);
    const HOLD: Duration = Duration::from_millis(667);
    let echo = echo_origin().await;
    let proxy = start_proxy(direct(), load_upstream(echo.port()), test_limits()).await;
    let addr = proxy.addr;
    let authority: Arc<str> = format!("{ORIGIN_HOST}:443").into();
    let until = Instant::now() + run_for(2);
    let mut ticks = tokio::time::interval(EVERY);
    let mut tasks = Vec::new();
    while Instant::now() < until {
        ticks.tick().await;
        let (authority, i) = (authority.clone(), tasks.len());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let (head, rest, mut tunnel) = connect(addr, &authority).await;
            let setup = started.elapsed();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(rest.is_empty());
            let ping = format!("tunnel {i:06}");
            tunnel.write_all(ping.as_bytes()).await.unwrap();
            let mut pong = vec![0u8; ping.len()];
            tokio::time::timeout(STALL * 4, tunnel.read_exact(&mut pong))
                .await
                .expect("echo in time")
                .unwrap();
            assert_eq!(pong, ping.as_bytes());
            tokio::time::sleep(HOLD).await;
            setup
        }));
    }
    let tunnels = tasks.len();
    let mut setups = Vec::new();
    for task in tasks {
        setups.push(task.await.unwrap());
    }
    let setup = p99(setups);
    println!("LOAD-2: {tunnels} tunnels at 300/s, p99 setup {setup:?}");
    assert!(tunnels >= 300, "only {tunnels} tunnels opened");
    assert!(setup < STALL, "p99 setup {setup:?}");
    proxy.shutdown().await;
}

/// The process's open file descriptors (Linux), or none where `/proc` is missing.
fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// LOAD-5: a burst of connections against the connection cap: the ones beyond it get a quick 503
/// `overloaded`, nothing crashes, the descriptors come back and a new client is served within 2 s.
/// CI-sized: a cap of 64 and a burst of 600 (the plan: 1 024 and 3 000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_5_burst_against_the_connection_cap_is_refused_quickly_and_recovers() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const CAP: usize = 64;
    const BURST: usize = 600;
    let echo = echo_origin().await;
    let limits = Limits {
        max_connections: CAP,
        ..test_limits()
    };
    let proxy = start_proxy(direct(), load_upstream(echo.port()), limits).await;
    let addr = proxy.addr;
    let authority = format!("{ORIGIN_HOST}:443");
    let fds_before = open_fds();

    let burst: Vec<_> = (0..BURST)
        .map(|_| {
            let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
            tokio::spawn(async move {
                // Timed from the accept: a burst of SYNs can wait for the kernel's 1 s
                // retransmission before the proxy ever sees the connection.
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let started = Instant::now();
                // A refused client may already be closed when it writes; the answer is what counts.
                let _ = stream.write_all(request.as_bytes()).await;
                let head = tokio::time::timeout(Duration::from_secs(2), read_head(&mut stream))
                    .await
                    .expect("an answer within 2 s")
                    .map(|(head, _)| head);
                (head, started.elapsed(), stream)
            })
        })
        .collect();
    let (mut tunnels, mut refused, mut held) = (0, 0, Vec::new());
    for task in burst {
        let (head, took, stream) = task.await.unwrap();
        let head = head.expect("every client gets an answer");
        assert!(took < Duration::from_secs(2), "answered after {took:?}");
        if head.starts_with("HTTP/1.1 200") {
            tunnels += 1;
        } else {
            assert!(head.starts_with("HTTP/1.1 503"), "{head}");
            assert_eq!(
                header(&head, "x-localproxy-error").as_deref(),
                Some("overloaded"),
                "{head}"
            );
            refused += 1;
        }
        held.push(stream);
    }
    assert!(
        tunnels <= CAP,
        "{tunnels} tunnels admitted over a cap of {CAP}"
    );
    assert!(
        tunnels > 0 && refused > 0,
        "{tunnels} admitted, {refused} refused"
    );
    drop(held);

    // Recovery: within 2 s a new client gets its tunnel and the descriptors are back.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (head, _, _tunnel) = connect(addr, &authority).await;
        let fds_back = match (fds_before, open_fds()) {
            // The new tunnel holds three descriptors (client, proxy side, origin side) here.
            (Some(before), Some(now)) => now <= before + 4,
            _ => true,
        };
        if head.starts_with("HTTP/1.1 200") && fds_back {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not recovered in 2 s: {head}, {:?} descriptors, {:?} before",
            open_fds(),
            fds_before
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.shutdown().await;
}

/// LOAD-9: a client that never reads a 50 MiB download through a tunnel: the proxy takes only
/// what the socket buffers and its own capped buffer hold (it never buffers the rest), and the
/// stalled tunnel is closed at the tunnel idle limit, which the origin sees as a failed write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_9_unread_50_mib_download_is_bounded_and_closed_at_idle() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const DOWNLOAD: usize = 50 << 20;
    // Loopback socket buffers on both sides of the proxy (up to ~20 MiB with Linux autotuning)
    // plus the tunnel's 128 KiB cap; far below the download.
    const BOUND: usize = 24 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let chunk = vec![b'x'; 64 << 10];
        let mut written = 0;
        while written < DOWNLOAD {
            match stream.write(&chunk).await {
                Ok(n) if n > 0 => written += n,
                _ => break,
            }
        }
        let _ = done_tx.send((written, Instant::now()));
    });
    let idle = Duration::from_secs(1);
    let limits = Limits {
        tunnel_idle: idle,
        stream_idle: idle,
        ..test_limits()
    };
    let proxy = start_proxy(direct(), load_upstream(origin.port()), limits).await;
    let (head, _, _unread) = connect(proxy.addr, &format!("{ORIGIN_HOST}:443")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let opened = Instant::now();

    let (written, ended) = tokio::time::timeout(idle * 10, done_rx)
        .await
        .expect("the stalled tunnel was never closed")
        .unwrap();
    println!(
        "LOAD-9: the origin wrote {written} bytes, stopped after {:?}",
        ended - opened
    );
    assert!(
        written < BOUND,
        "the proxy took {written} bytes from the origin"
    );
    proxy.shutdown().await;
}

/// LOAD-7, CI-sized: 300 slowloris connections (a request head trickling in a byte every 200 ms)
/// against a 2 s header timeout, while 16 clients keep sending absolute-form GETs. Every slow
/// connection is closed at the timeout without an answer; every GET succeeds, with a p99 at most
/// twice that of the same load without them (with a 50 ms floor: on a shared 2-core machine the
/// scheduler alone moves a millisecond-sized p99 by more than 2×). The slow connections are opened
/// at a rate, before the GETs start: a burst of SYNs measures the kernel's 1 s retransmission, not
/// the proxy (LOAD-5 is the burst). The plan: 900 connections at a byte every 10 s against 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_7_slowloris_is_closed_at_the_head_timeout_while_gets_go_on() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const SLOW: usize = 300;
    let head_timeout = Duration::from_secs(2);
    let origin = origin_keeping_alive().await;
    let limits = Limits {
        header_read_timeout: head_timeout,
        ..test_limits()
    };
    let proxy = start_proxy(direct(), load_upstream(origin.port()), limits).await;
    let request =
        b"GET http://origin.test/load HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n";
    let quiet = request_load(
        proxy.addr,
        request,
        16,
        Instant::now() + Duration::from_secs(1),
    )
    .await;

    let addr = proxy.addr;
    let mut slow = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    for _ in 0..SLOW {
        ticks.tick().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        slow.push(tokio::spawn(async move {
            let started = Instant::now();
            let head = b"GET http://origin.test/slow HTTP/1.1\r\nHost: origin.test\r\nX-Slow: ";
            let mut answer = Vec::new();
            for byte in head.iter().chain(std::iter::repeat(&b'a')) {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                let mut buf = [0u8; 256];
                let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf));
                match read.await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                    Err(_) if started.elapsed() > Duration::from_secs(10) => break,
                    Err(_) => {}
                }
            }
            (started.elapsed(), answer)
        }));
    }
    // All slow heads are open and trickling; the GETs run beside them until the first is closed.
    let loaded = request_load(
        proxy.addr,
        request,
        16,
        Instant::now() + Duration::from_millis(1500),
    )
    .await;
    let mut closed_after = Vec::new();
    for task in slow {
        let (took, answer) = task.await.unwrap();
        assert!(
            answer.is_empty(),
            "a slow head got an answer: {}",
            String::from_utf8_lossy(&answer)
        );
        closed_after.push(took);
    }
    closed_after.sort();
    let (first, last) = (closed_after[0], closed_after[SLOW - 1]);
    assert!(
        first >= head_timeout && last < head_timeout + STALL * 2,
        "slow heads closed after {first:?} to {last:?} (timeout {head_timeout:?})"
    );
    let failed = loaded
        .iter()
        .filter(|(s, _)| !(200..300).contains(s))
        .count();
    assert_eq!(failed, 0, "{failed} of {} GETs not 2xx", loaded.len());
    let (quiet, loaded) = (
        p99(quiet.iter().map(|r| r.1).collect()),
        p99(loaded.iter().map(|r| r.1).collect()),
    );
    println!(
        "LOAD-7: {SLOW} slow heads closed after {first:?}..{last:?}; GET p99 {loaded:?} beside them, {quiet:?} without"
    );
    assert!(
        loaded <= (quiet * 2).max(quiet + Duration::from_millis(50)),
        "GET p99 {loaded:?} beside slowloris, {quiet:?} without"
    );
}
