//! REL-1 (docs/TESTING.md#rel-1): the gauges of `/metrics` (open connections, tunnels, live tasks,
//! file descriptors, resident memory) and the token state of `/status.json` follow a burst of
//! intercepted requests and blind tunnels up, and come back to their baseline once it is over.
//!
//! One test in its own binary: the connection and tunnel gauges are process-wide, so no other test
//! may run beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use intercept_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Intercepted connections and blind tunnels held open at the peak.
const BURST: usize = 40;

/// GET `path` from the proxy's own pages; the body.
async fn own_page(proxy: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {proxy}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The gauges of `/metrics` (name without `exoproxy_` → value), plus the token state.
#[derive(Debug, Clone)]
struct Reading {
    gauges: HashMap<String, f64>,
    token_state: String,
    /// `/proc/self/fd` counted by the test itself, beside the proxy's own gauge.
    fds: usize,
}

impl Reading {
    fn get(&self, name: &str) -> f64 {
        *self
            .gauges
            .get(name)
            .unwrap_or_else(|| panic!("no gauge {name} in {:?}", self.gauges))
    }
}

async fn read(proxy: SocketAddr) -> Reading {
    let metrics = own_page(proxy, "/metrics").await;
    let gauges = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            let name = name.strip_prefix("exoproxy_")?;
            let value: f64 = value.parse().ok()?;
            (!name.contains('{')).then(|| (name.to_string(), value))
        })
        .collect();
    let status: serde_json::Value =
        serde_json::from_str(&own_page(proxy, "/status.json").await).unwrap();
    let token_state = status["accounts"][0]["state"].as_str().unwrap().to_string();
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    Reading {
        gauges,
        token_state,
        fds,
    }
}

/// Reads until every gauge is back within its slack of `base` or 10 s passed; the last reading.
async fn settled(proxy: SocketAddr, base: &Reading) -> Reading {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = read(proxy).await;
        if back(base, &now).is_empty() || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The gauges of `now` that are not back to `base`: connections and tunnels exactly, tasks exactly
/// (the runtime is the test's own), descriptors within 5 (the plan's LOAD-6 slack), resident memory
/// within 32 MiB (the allocator may keep freed pages; `tests/idle_tunnels.rs` holds it to 2× the
/// baseline at scale), the token state unchanged.
fn back(base: &Reading, now: &Reading) -> Vec<String> {
    let mut off = Vec::new();
    for (name, slack) in [
        ("open_connections", 0.0),
        ("open_tunnels", 0.0),
        ("tasks", 0.0),
        ("open_fds", 5.0),
        ("resident_memory_bytes", 32.0 * 1024.0 * 1024.0),
    ] {
        if now.get(name) > base.get(name) + slack {
            off.push(format!(
                "{name}: {} > {} + {slack}",
                now.get(name),
                base.get(name)
            ));
        }
    }
    if now.fds > base.fds + 5 {
        off.push(format!("/proc/self/fd: {} > {} + 5", now.fds, base.fds));
    }
    if now.token_state != base.token_state {
        off.push(format!(
            "token state {} ≠ {}",
            now.token_state, base.token_state
        ));
    }
    off
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rel_1_gauges_come_back_to_baseline_after_a_burst() {
    let h = Harness::start(Options::default()).await;
    let tenant = tenant_host(&h).await;
    // A first request, so that the token and the pooled connection to the IdP are in the baseline.
    let (status, body) = rest_once(&h, &tenant).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = settled(h.proxy, &read(h.proxy).await).await;
    assert_eq!(base.get("open_tunnels"), 0.0, "{base:?}");
    assert_eq!(base.token_state, "ready", "{base:?}");

    let mut intercepted = Vec::new();
    let mut blind = Vec::new();
    for _ in 0..BURST {
        let mut client = h.client(&tenant).await;
        let (status, _, body) = send(&mut client, post_json(&tenant, REST_PATH, GET_MAILBOX)).await;
        assert_eq!(status, 200, "{body}");
        intercepted.push(client);
        blind.push(connect_tunnel(h.proxy, "blind.test").await);
    }
    let peak = read(h.proxy).await;
    let tunnels = (2 * BURST) as f64;
    assert!(peak.get("open_tunnels") >= tunnels, "{peak:?}");
    assert!(peak.get("open_connections") >= tunnels, "{peak:?}");
    assert!(peak.get("tasks") > base.get("tasks"), "{peak:?}");
    assert!(
        peak.get("open_fds") >= base.get("open_fds") + tunnels,
        "{peak:?}"
    );
    assert!(peak.fds >= base.fds + 2 * BURST, "{peak:?}");
    assert!(peak.get("resident_memory_bytes") > 0.0, "{peak:?}");

    drop(intercepted);
    drop(blind);
    let after = settled(h.proxy, &base).await;
    let off = back(&base, &after);
    assert!(
        off.is_empty(),
        "not back to baseline: {off:?}\nbefore: {base:?}\nafter: {after:?}"
    );
}
