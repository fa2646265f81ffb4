//! The `info`-level activity summary. Per-request lines are logged at `debug`; at `info` the proxy
//! writes one line per interval (a minute by default) with what happened in it, and nothing for an
//! interval in which nothing happened, so a week-long run at `info` writes at most ~10,000 lines
//! however busy it is.
//!
//! Contract:
//! - The request path and the token manager feed process-wide atomic counters ([`request`],
//!   [`token_refresh`]): one relaxed add each, nothing else on the hot path.
//! - [`run`] logs the counts every [`interval`] and resets them, and once more for the partial
//!   interval when `stop` completes (the proxy is shutting down).
//! - `EXOPROXY_SUMMARY_SECS` ([`INTERVAL_ENV`]) sets the interval in seconds (tests, troubleshooting).
//! - The same home keeps what the status page (docs/STATUS.md) shows of activity: gauges of open
//!   client connections and tunnels ([`Open`], held for as long as the thing is open) and the last
//!   [`RECENT_ERRORS`] errors answered ([`error_answered`], [`recent_errors`]): time, target host,
//!   stable code and hint from the rescue table; never a header value or a token.
//! - The same events also feed monotonic Prometheus metrics ([`metrics_text`], `GET /metrics`,
//!   `exoproxy_` prefix): requests by status, errors by rescue code, token calls by result, bytes
//!   relayed by direction, requests and tunnels by routing decision and status class ([`routed`]),
//!   PAC evaluations by result ([`pac_evaluated`]), open connections and tunnels. The summary's counts reset every interval;
//!   these never do. Beside them, process gauges read when `/metrics` is asked for: live tokio
//!   tasks, and on Linux open file descriptors and resident memory (REL-1: every gauge comes back
//!   to its baseline after load, docs/TESTING.md#rel-1).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

/// Environment variable overriding the interval, in whole seconds (at least 1).
pub const INTERVAL_ENV: &str = "EXOPROXY_SUMMARY_SECS";

/// The interval without the override.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
static REFRESHES: AtomicU64 = AtomicU64::new(0);
static REFRESH_FAILURES: AtomicU64 = AtomicU64::new(0);

static OPEN_CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static OPEN_TUNNELS: AtomicU64 = AtomicU64::new(0);
static ERRORS_RECENT: Mutex<VecDeque<ErrorAnswered>> = Mutex::new(VecDeque::new());

type Labels = Vec<(&'static str, String)>;

/// The Prometheus side of the counters above (never reset).
struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    token_calls: Family<Labels, Counter>,
    relayed: Family<Labels, Counter>,
    idp_latency: Family<Labels, Histogram>,
    upstream_failures: Family<Labels, Counter>,
    routed_requests: Family<Labels, Counter>,
    tunnels: Family<Labels, Counter>,
    pac_evaluations: Family<Labels, Counter>,
    open_connections: Gauge,
    open_tunnels: Gauge,
    tasks: Gauge,
    open_fds: Gauge,
    resident_memory: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("exoproxy");
    let metrics = Metrics {
        requests: Family::default(),
        errors: Family::default(),
        token_calls: Family::default(),
        relayed: Family::default(),
        idp_latency: Family::new_with_constructor(idp_histogram),
        upstream_failures: Family::default(),
        routed_requests: Family::default(),
        tunnels: Family::default(),
        pac_evaluations: Family::default(),
        open_connections: Gauge::default(),
        open_tunnels: Gauge::default(),
        tasks: Gauge::default(),
        open_fds: Gauge::default(),
        resident_memory: Gauge::default(),
        registry: Registry::default(),
    };
    registry.register(
        "requests",
        "Client requests answered, by HTTP status",
        metrics.requests.clone(),
    );
    registry.register(
        "errors",
        "Errors answered, by X-LocalProxy-Error code",
        metrics.errors.clone(),
    );
    registry.register(
        "token_calls",
        "Token calls to the identity provider, by result",
        metrics.token_calls.clone(),
    );
    registry.register(
        "relayed_bytes",
        "Bytes relayed through tunnels, by direction (up: client to server)",
        metrics.relayed.clone(),
    );
    registry.register_with_unit(
        "idp_request_duration",
        "HTTP exchanges with the identity provider, by outcome",
        prometheus_client::registry::Unit::Seconds,
        metrics.idp_latency.clone(),
    );
    registry.register(
        "upstream_connect_failures",
        "Connect-level failures of upstream proxies, by proxy",
        metrics.upstream_failures.clone(),
    );
    registry.register(
        "routed_requests",
        "Plain http:// requests and requests inside intercepted tunnels, by routing decision and \
         status class",
        metrics.routed_requests.clone(),
    );
    registry.register(
        "tunnels",
        "CONNECT requests answered, by routing decision and status class",
        metrics.tunnels.clone(),
    );
    registry.register(
        "pac_evaluations",
        "PAC lookups that were not answered from the cache, by result",
        metrics.pac_evaluations.clone(),
    );
    registry.register(
        "open_connections",
        "Client connections open now",
        metrics.open_connections.clone(),
    );
    registry.register(
        "open_tunnels",
        "CONNECT tunnels and intercepted sessions open now",
        metrics.open_tunnels.clone(),
    );
    registry.register(
        "tasks",
        "Live tasks of the proxy's runtime",
        metrics.tasks.clone(),
    );
    if cfg!(target_os = "linux") {
        registry.register(
            "open_fds",
            "Open file descriptors of the process",
            metrics.open_fds.clone(),
        );
        registry.register_with_unit(
            "resident_memory",
            "Resident memory of the process",
            prometheus_client::registry::Unit::Bytes,
            metrics.resident_memory.clone(),
        );
    }
    Metrics {
        registry,
        ..metrics
    }
});

/// Buckets from 50 ms to ~100 s: token calls take a fraction of a second, a timeout tens.
fn idp_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

/// The metrics in the OpenMetrics text format (which Prometheus reads), for `GET /metrics`.
pub fn metrics_text() -> String {
    let metrics = &*METRICS;
    metrics
        .open_connections
        .set(i64::try_from(Open::Connection.count()).unwrap_or(i64::MAX));
    metrics
        .open_tunnels
        .set(i64::try_from(Open::Tunnel.count()).unwrap_or(i64::MAX));
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let tasks = runtime.metrics().num_alive_tasks();
        metrics.tasks.set(i64::try_from(tasks).unwrap_or(i64::MAX));
    }
    if let Some((fds, rss)) = process_usage() {
        metrics.open_fds.set(fds);
        metrics.resident_memory.set(rss);
    }
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &metrics.registry).is_err() {
        out.clear();
    }
    out
}

/// Open file descriptors and resident bytes of this process (Linux: `/proc/self`).
fn process_usage() -> Option<(i64, i64)> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((i64::try_from(fds).unwrap_or(i64::MAX), kib * 1024))
}

/// Times one HTTP exchange with the identity provider (token, discovery, device polling);
/// `answered`: a response came back (whatever its status), else a transport failure or timeout.
pub fn idp_call(took: Duration, answered: bool) {
    let outcome = if answered { "answered" } else { "failed" };
    METRICS
        .idp_latency
        .get_or_create(&vec![("outcome", outcome.into())])
        .observe(took.as_secs_f64());
}

/// Counts one connect-level failure of an upstream proxy (it is then remembered as bad).
pub fn upstream_connect_failed(proxy: &str) {
    METRICS
        .upstream_failures
        .get_or_create(&vec![("proxy", proxy.to_string())])
        .inc();
}

/// What a request was routed to, as `exoproxy_routed_requests_total` and
/// `exoproxy_tunnels_total` label it (`decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Straight to the target (the decision's first hop is DIRECT).
    Direct,
    /// Through an upstream proxy (its first hop).
    Proxy,
    /// TLS terminated here and a token injected.
    Intercept,
    /// Refused by a rule (403).
    Block,
}

impl Routed {
    fn label(self) -> &'static str {
        match self {
            Routed::Direct => "direct",
            Routed::Proxy => "proxy",
            Routed::Intercept => "intercept",
            Routed::Block => "block",
        }
    }
}

/// Counts one answered request that got a routing decision: a CONNECT (`tunnel`) or a plain
/// `http://` request or one inside an intercepted tunnel, by decision and status class.
pub fn routed(tunnel: bool, decision: Routed, status: u16) {
    let family = if tunnel {
        &METRICS.tunnels
    } else {
        &METRICS.routed_requests
    };
    family
        .get_or_create(&vec![
            ("decision", decision.label().into()),
            ("outcome", status_class(status).into()),
        ])
        .inc();
}

/// `2xx`, `4xx`, ...: the `outcome` label (a status class keeps the label set small).
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Counts one PAC lookup not answered from the cache: `ok` (the script answered usable hops),
/// `failed` (it threw, timed out or answered badly), `unavailable` (no script to run).
pub fn pac_evaluated(result: &'static str) {
    METRICS
        .pac_evaluations
        .get_or_create(&vec![("result", result.into())])
        .inc();
}

/// Counts bytes relayed by one tunnel: `up` from the client, `down` to it.
pub fn relayed(up: u64, down: u64) {
    let relayed = &METRICS.relayed;
    relayed
        .get_or_create(&vec![("direction", "up".into())])
        .inc_by(up);
    relayed
        .get_or_create(&vec![("direction", "down".into())])
        .inc_by(down);
}

/// How many answered errors the status page keeps.
pub const RECENT_ERRORS: usize = 50;

/// What is open right now: a gauge that counts up while a guard lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// A client connection (accepted, not yet closed).
    Connection,
    /// A CONNECT tunnel or intercepted session after its 200.
    Tunnel,
}

/// Counts one open [`Open`] thing until dropped.
#[derive(Debug)]
#[must_use = "the gauge goes down when the guard is dropped"]
pub struct OpenGuard(Open);

impl Open {
    fn gauge(self) -> &'static AtomicU64 {
        match self {
            Open::Connection => &OPEN_CONNECTIONS,
            Open::Tunnel => &OPEN_TUNNELS,
        }
    }

    /// Counts one more open thing, until the guard is dropped.
    pub fn guard(self) -> OpenGuard {
        self.gauge().fetch_add(1, Ordering::Relaxed);
        OpenGuard(self)
    }

    /// How many are open now.
    pub fn count(self) -> u64 {
        self.gauge().load(Ordering::Relaxed)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.gauge().fetch_sub(1, Ordering::Relaxed);
    }
}

/// One error the proxy answered, as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ErrorAnswered {
    /// Unix seconds.
    pub at: i64,
    /// The target host (no port, path or query), or empty when the request named none.
    pub host: String,
    /// HTTP status.
    pub status: u16,
    /// The stable `X-LocalProxy-Error` code.
    pub code: String,
    /// What to do about it (the rescue table's message).
    pub hint: String,
}

/// Remembers an answered error; the oldest is dropped beyond [`RECENT_ERRORS`].
pub fn error_answered(error: ErrorAnswered) {
    METRICS
        .errors
        .get_or_create(&vec![("code", error.code.clone())])
        .inc();
    let mut ring = ERRORS_RECENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if ring.len() == RECENT_ERRORS {
        ring.pop_front();
    }
    ring.push_back(error);
}

/// The last answered errors, newest first.
pub fn recent_errors() -> Vec<ErrorAnswered> {
    let ring = ERRORS_RECENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ring.iter().rev().cloned().collect()
}

/// Counts one answered client request (a CONNECT, a plain request, a request inside an intercepted
/// tunnel, a refused head); a status of 400 and above is also an error.
pub fn request(status: u16) {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    METRICS
        .requests
        .get_or_create(&vec![("status", status.to_string())])
        .inc();
    if status >= 400 {
        ERRORS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one token call to the identity provider for `upn`: a token obtained, or a call that
/// failed.
pub fn token_refresh(upn: &str, ok: bool) {
    let counter = if ok { &REFRESHES } else { &REFRESH_FAILURES };
    let result = if ok { "ok" } else { "failed" };
    METRICS
        .token_calls
        .get_or_create(&vec![
            ("account", upn.to_string()),
            ("result", result.into()),
        ])
        .inc();
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What happened since the counts were last taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Client requests answered.
    pub requests: u64,
    /// Of those, answered with a status of 400 or above.
    pub errors: u64,
    /// Tokens obtained from the identity provider.
    pub token_refreshes: u64,
    /// Token calls that failed.
    pub token_refresh_failures: u64,
}

impl Counts {
    /// Takes the counts and resets them to zero.
    pub fn take() -> Counts {
        Counts {
            requests: REQUESTS.swap(0, Ordering::Relaxed),
            errors: ERRORS.swap(0, Ordering::Relaxed),
            token_refreshes: REFRESHES.swap(0, Ordering::Relaxed),
            token_refresh_failures: REFRESH_FAILURES.swap(0, Ordering::Relaxed),
        }
    }

    fn is_empty(&self) -> bool {
        *self == Counts::default()
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests={} errors={} token_refreshes={} token_refresh_failures={}",
            self.requests, self.errors, self.token_refreshes, self.token_refresh_failures
        )
    }
}

/// The interval: [`INTERVAL_ENV`] when it is a whole number of seconds ≥ 1, else a minute.
pub fn interval() -> Duration {
    parse_interval(std::env::var(INTERVAL_ENV).ok().as_deref())
}

fn parse_interval(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|secs| *secs >= 1)
        .map_or(DEFAULT_INTERVAL, Duration::from_secs)
}

/// Logs a summary every `every` until `stop` completes, then one for the partial interval.
pub async fn run(every: Duration, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(last + every) => {
                last = Instant::now();
                log_counts(every);
            }
            () = &mut stop => return log_counts(last.elapsed()),
        }
    }
}

/// Logs what happened since the last summary, if anything; `period` is how long that was.
fn log_counts(period: Duration) {
    let counts = Counts::take();
    if !counts.is_empty() {
        let secs = period.as_secs().max(1);
        tracing::info!("activity in the last {secs} s: {counts}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_a_minute_unless_overridden_with_whole_seconds() {
        assert_eq!(parse_interval(None), DEFAULT_INTERVAL);
        assert_eq!(parse_interval(Some("2")), Duration::from_secs(2));
        for bad in ["0", "-1", "1.5", "soon", ""] {
            assert_eq!(parse_interval(Some(bad)), DEFAULT_INTERVAL, "{bad:?}");
        }
    }

    #[test]
    fn outcomes_are_status_classes_and_decisions_their_names() {
        assert_eq!(status_class(101), "1xx");
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(303), "3xx");
        assert_eq!(status_class(407), "4xx");
        assert_eq!(status_class(502), "5xx");
        routed(true, Routed::Proxy, 502);
        routed(false, Routed::Intercept, 200);
        pac_evaluated("failed");
        let text = metrics_text();
        for line in [
            "exoproxy_tunnels_total{decision=\"proxy\",outcome=\"5xx\"}",
            "exoproxy_routed_requests_total{decision=\"intercept\",outcome=\"2xx\"}",
            "exoproxy_pac_evaluations_total{result=\"failed\"}",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn counts_say_what_they_count() {
        let counts = Counts {
            requests: 5,
            errors: 2,
            token_refreshes: 1,
            token_refresh_failures: 0,
        };
        assert_eq!(
            counts.to_string(),
            "requests=5 errors=2 token_refreshes=1 token_refresh_failures=0"
        );
        assert!(Counts::default().is_empty());
    }

    #[test]
    fn gauges_follow_their_guards() {
        let guard = Open::Tunnel.guard();
        assert!(Open::Tunnel.count() >= 1);
        drop(guard);
        let _connection = Open::Connection.guard();
        assert!(Open::Connection.count() >= 1);
    }

    #[test]
    fn recent_errors_keep_the_last_fifty_newest_first() {
        for i in 0..(RECENT_ERRORS + 5) {
            error_answered(ErrorAnswered {
                at: i as i64,
                host: format!("h{i}.test"),
                status: 502,
                code: "upstream_unreachable".into(),
                hint: "check".into(),
            });
        }
        let recent = recent_errors();
        assert_eq!(recent.len(), RECENT_ERRORS);
        assert_eq!(recent[0].host, format!("h{}.test", RECENT_ERRORS + 4));
        upstream_connect_failed("corp-proxy.test:8080");
        idp_call(Duration::from_millis(70), true);
        let text = metrics_text();
        assert!(
            text.contains(
                "exoproxy_upstream_connect_failures_total{proxy=\"corp-proxy.test:8080\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "exoproxy_idp_request_duration_seconds_bucket{le=\"0.1\",outcome=\"answered\"}"
            ) || text.contains(
                "exoproxy_idp_request_duration_seconds_bucket{outcome=\"answered\",le=\"0.1\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains("exoproxy_errors_total{code=\"upstream_unreachable\"}"),
            "{text}"
        );
    }
}
