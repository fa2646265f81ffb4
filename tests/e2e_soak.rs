//! Soak (docs/TESTING.md#load-6, CI-sized): a WS-Man client (pypsrp, one whole session per run: 302,
//! MS-WSMAN cookie, shell,
//! command, delete), a REST client (one keep-alive connection plus periodic front-door 302 checks)
//! and blind tunnels churning (one opened and closed every 500 ms) run together for `EXOPROXY_SOAK_SECS` (default 60) with 5-second tokens. Pass: 0 failed requests;
//! token calls equal the rollovers (one refresh per token generation, never two close together),
//! within the range the refresh schedule allows; resident memory grows less than 10 % after the
//! first third (the plan's first hour, scaled), and once both clients stopped, open file
//! descriptors come back within 5 of the baseline and the runtime's live tasks to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use std::sync::Arc;
use std::time::Duration;

use intercept_support::*;
use tokio::time::Instant;

const TOKEN_LIFETIME: Duration = Duration::from_secs(5);

fn soak_duration() -> Duration {
    let secs = std::env::var("EXOPROXY_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failed: Vec<String>,
}

async fn rest_loop(h: Arc<Harness>, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let tenant = tenant_host(&h).await;
    let mut client = h.client(&tenant).await;
    let mut round = 0u64;
    while Instant::now() < until {
        round += 1;
        let (status, _, body) = send(&mut client, post_json(&tenant, REST_PATH, GET_MAILBOX)).await;
        let value_ok = status == 200 && body.contains("\"value\"");
        match value_ok {
            true => tally.ok += 1,
            false => tally.failed.push(format!("REST {status}: {body}")),
        }
        if round.is_multiple_of(20) {
            let mut front = h.client(EXO).await;
            let (status, headers, _) =
                send(&mut front, post_json(EXO, REST_PATH, GET_MAILBOX)).await;
            let location = headers.get("location").and_then(|v| v.to_str().ok());
            let redirect_ok = status == 302
                && location.is_some_and(|l| l == format!("https://{tenant}{REST_PATH}"));
            match redirect_ok {
                true => tally.ok += 1,
                false => tally
                    .failed
                    .push(format!("front door {status}: {location:?}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tally
}

/// Opens and closes a blind (not intercepted) tunnel every 500 ms: the plan's tunnel churn.
async fn tunnel_loop(h: Arc<Harness>, until: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < until {
        let (stream, head) = try_connect(h.proxy, "blind.test").await;
        match head.starts_with("HTTP/1.1 200") {
            true => tally.ok += 1,
            false => tally.failed.push(format!("CONNECT blind.test: {head}")),
        }
        drop(stream);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tally
}

/// VmRSS of this process (proxy, emulator and clients), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn live_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

async fn wsman_loop(h: Arc<Harness>, until: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < until {
        let out = whoami(&h, ADMIN).await;
        let ok = out.status.success() && String::from_utf8_lossy(&out.stdout).contains(ADMIN);
        match ok {
            true => tally.ok += 1,
            false => tally.failed.push(describe(&out)),
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_4_6_wsman_and_rest_together_with_short_tokens() {
    let duration = soak_duration();
    let h = Arc::new(
        Harness::start(Options {
            token_lifetime: TOKEN_LIFETIME,
            ..Options::default()
        })
        .await,
    );
    // One round of each first: the token, the IdP connection and the leaves are in the baseline.
    let (status, body) = rest_once(&h, &tenant_host(&h).await).await;
    assert_eq!(status, 200, "{body}");
    let out = whoami(&h, ADMIN).await;
    assert!(out.status.success(), "{}", describe(&out));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds_before, tasks_before) = (open_fds(), live_tasks());

    let started = Instant::now();
    let calls_before = refresh_calls(&h);
    let until = started + duration;
    let warmed = tokio::spawn(async move {
        tokio::time::sleep_until(started + duration / 3).await;
        rss_kib()
    });
    let rest = tokio::spawn(rest_loop(h.clone(), until));
    let wsman = tokio::spawn(wsman_loop(h.clone(), until));
    let tunnels = tokio::spawn(tunnel_loop(h.clone(), until));
    let (rest, wsman) = (rest.await.unwrap(), wsman.await.unwrap());
    let tunnels = tunnels.await.unwrap();
    let elapsed = started.elapsed();
    let calls = refresh_calls(&h) - calls_before;
    let (rss_warmed, rss_end) = (warmed.await.unwrap(), rss_kib());

    assert!(rest.failed.is_empty(), "REST failures: {:#?}", rest.failed);
    assert!(
        wsman.failed.is_empty(),
        "WS-Man failures: {:#?}",
        wsman.failed
    );
    assert!(
        tunnels.failed.is_empty(),
        "tunnel failures: {:#?}",
        tunnels.failed
    );
    assert!(
        rest.ok > 0 && wsman.ok > 0 && tunnels.ok > 0,
        "rest {rest:?} wsman {wsman:?} tunnels {tunnels:?}"
    );

    // Rollovers: each refresh the proxy sent is a new token generation; two sent close together
    // would be a duplicate (a storm), so the gaps must be about a token's renewal period.
    let refreshes: Vec<Instant> = h
        .refreshes
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|t| *t >= started)
        .collect();
    let rollovers = refreshes.len() as u64;
    assert!(
        calls.abs_diff(rollovers) <= 1,
        "token calls {calls} vs rollovers {rollovers}"
    );
    let min_gap = refreshes
        .windows(2)
        .map(|w| w[1] - w[0])
        .min()
        .unwrap_or(Duration::MAX);
    assert!(
        min_gap >= Duration::from_millis(1500),
        "refreshes {min_gap:?} apart"
    );
    // The schedule renews at half-life (the wall-clock expiry has 1 s resolution): between one
    // call per lifetime and one per (lifetime − 1 s) / 2.
    let secs = elapsed.as_secs_f64();
    let (low, high) = (secs / 5.0 - 1.0, secs / 2.0 + 1.0);
    assert!(
        (low..=high).contains(&(calls as f64)),
        "{calls} token calls in {secs:.1} s, expected {low:.0}..{high:.0}"
    );
    eprintln!(
        "soak {secs:.1} s: REST ok {}, WS-Man sessions ok {}, tunnels ok {}, token calls {calls}",
        rest.ok, wsman.ok, tunnels.ok
    );

    // LOAD-6's resource checks.
    assert!(
        rss_end as f64 <= rss_warmed as f64 * 1.10,
        "RSS grew from {rss_warmed} KiB (after a third) to {rss_end} KiB"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let (fds, tasks) = loop {
        let (fds, tasks) = (open_fds(), live_tasks());
        if (fds <= fds_before + 5 && tasks <= tasks_before) || Instant::now() > deadline {
            break (fds, tasks);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        fds <= fds_before + 5,
        "{fds} descriptors open, {fds_before} before"
    );
    assert!(
        tasks <= tasks_before,
        "{tasks} live tasks, {tasks_before} before"
    );
    eprintln!(
        "soak resources: RSS {rss_warmed} → {rss_end} KiB, descriptors {fds_before} → {fds}, tasks {tasks_before} → {tasks}"
    );
}
