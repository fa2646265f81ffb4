//! What a PAC script may learn about the world: DNS answers, local addresses and the time, each behind a
//! trait so tests inject fixed answers (no real DNS, no real interfaces, fixed dates).
//!
//! Contract: everything here is called synchronously from the JS worker thread, so each call is bounded:
//! - DNS ([`BoundedDns`]): every lookup runs on its own short-lived thread and is abandoned after the
//!   per-call timeout (≤ 2 s, PAC-5); answers, including failures, are cached; at most
//!   [`MAX_INFLIGHT_LOOKUPS`] abandoned lookups may linger, beyond that a lookup fails at once; each
//!   evaluation has a DNS budget (time and number of uncached lookups), after which lookups fail at once.
//!   Why threads and not pre-resolution: `getaddrinfo` cannot be cancelled and PAC scripts decide at run
//!   time what to resolve; a detached thread with a deadline is the only bounded way to call it.
//! - local addresses ([`LocalAddrs`]): Chromium's rule for `myIpAddress`: the address of the interface
//!   that routes to a public address (a UDP "connect" sends no packet), then anything non-loopback.
//! - time ([`PacClock`]): milliseconds since the epoch and an optional fixed UTC offset.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Abandoned (timed-out) lookups allowed to keep running in the background.
pub const MAX_INFLIGHT_LOOKUPS: usize = 16;
/// How long a DNS answer (or failure) is reused.
const DNS_CACHE_TTL: Duration = Duration::from_secs(300);
/// Bound on cached names; the cache is cleared when full (cheap, and hostile scripts cannot grow it).
const DNS_CACHE_MAX: usize = 4096;

/// A blocking name resolver. Implementations may block; [`BoundedDns`] bounds them.
pub trait PacDns: Send + Sync + 'static {
    /// All addresses of `host`, in resolver order; an empty list or an error means "not resolvable".
    fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The source of `myIpAddress` / `myIpAddressEx`.
pub trait LocalAddrs: Send + Sync + 'static {
    /// Local addresses, best first; loopback and link-local are filtered by the caller.
    fn local_addrs(&self) -> Vec<IpAddr>;
}

/// The clock of `weekdayRange`, `dateRange`, `timeRange`.
pub trait PacClock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> f64;
    /// Minutes east of UTC for "local" time; `None` lets the JS engine use the host time zone.
    fn utc_offset_minutes(&self) -> Option<i32>;
}

/// The operating system resolver (`getaddrinfo`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemDns;

/// Chromium's `myIpAddress` rules over the real interfaces.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemLocalAddrs;

/// The wall clock, local time zone from the host.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// A fixed instant, for tests and for `exoproxy pac eval --at`.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock {
    pub millis: f64,
    pub utc_offset_minutes: Option<i32>,
}

/// Fixed local addresses (tests: never a real interface).
#[derive(Debug, Clone, Default)]
pub struct FixedLocalAddrs(pub Vec<IpAddr>);

/// A resolver answering from a table (tests, corpus); unknown names do not resolve.
#[derive(Debug, Clone, Default)]
pub struct StaticDns(pub HashMap<String, Vec<IpAddr>>);

/// Per-evaluation DNS allowance (PAC-5 "overall evaluation cap").
#[derive(Debug, Clone, Copy)]
pub struct DnsBudget {
    /// Upper bound of one lookup.
    pub per_call: Duration,
    /// Total time one evaluation may spend waiting for DNS.
    pub per_eval: Duration,
    /// Uncached lookups one evaluation may start.
    pub max_lookups: usize,
}

/// Receives `alert()` messages (besides the debug log); tests use it to see what a script saw (PAC-13).
pub type AlertSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The host environment one worker's sandbox sees.
#[derive(Clone)]
pub struct HostEnv {
    pub dns: Arc<BoundedDns>,
    pub local: Arc<dyn LocalAddrs>,
    pub clock: Arc<dyn PacClock>,
    pub alert: Option<AlertSink>,
}

/// When a name was resolved, and its addresses (empty: not resolvable).
type CachedAnswer = (Instant, Arc<[IpAddr]>);

/// A resolver wrapped with timeouts, a cache and a per-evaluation budget.
pub struct BoundedDns {
    inner: Arc<dyn PacDns>,
    budget: DnsBudget,
    cache: Mutex<HashMap<String, CachedAnswer>>,
    inflight: Arc<AtomicUsize>,
    /// Spent during the current evaluation: (time waited, uncached lookups).
    spent: Mutex<(Duration, usize)>,
}

// === impl DnsBudget ===

impl Default for DnsBudget {
    fn default() -> Self {
        DnsBudget {
            per_call: Duration::from_secs(2),
            per_eval: Duration::from_secs(4),
            max_lookups: 32,
        }
    }
}

// === impl BoundedDns ===

impl BoundedDns {
    pub fn new(inner: Arc<dyn PacDns>, budget: DnsBudget) -> Self {
        BoundedDns {
            inner,
            budget,
            cache: Mutex::new(HashMap::new()),
            inflight: Arc::new(AtomicUsize::new(0)),
            spent: Mutex::new((Duration::ZERO, 0)),
        }
    }

    /// Starts a new evaluation's budget.
    pub fn reset_budget(&self) {
        if let Ok(mut spent) = self.spent.lock() {
            *spent = (Duration::ZERO, 0);
        }
    }

    /// Addresses of `host` (IP literals answer themselves); empty when unresolvable, timed out or over
    /// budget. Returns how long the caller waited, so the JS deadline can discount it.
    pub fn resolve(&self, host: &str) -> (Arc<[IpAddr]>, Duration) {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Some(ip) = parse_ip_literal(&host) {
            return (Arc::from([ip]), Duration::ZERO);
        }
        if host.is_empty() || host.len() > 253 {
            return (Arc::from([]), Duration::ZERO);
        }
        if let Some(hit) = self.cached(&host) {
            return (hit, Duration::ZERO);
        }
        let Some(timeout) = self.take_budget() else {
            return (Arc::from([]), Duration::ZERO);
        };
        let started = Instant::now();
        let answer: Arc<[IpAddr]> = self.lookup_bounded(&host, timeout).into();
        let waited = started.elapsed();
        if let Ok(mut spent) = self.spent.lock() {
            spent.0 += waited;
        }
        self.store(host, answer.clone());
        (answer, waited)
    }

    fn cached(&self, host: &str) -> Option<Arc<[IpAddr]>> {
        let cache = self.cache.lock().ok()?;
        let (at, answer) = cache.get(host)?;
        (at.elapsed() < DNS_CACHE_TTL).then(|| answer.clone())
    }

    fn store(&self, host: String, answer: Arc<[IpAddr]>) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= DNS_CACHE_MAX {
                cache.clear();
            }
            cache.insert(host, (Instant::now(), answer));
        }
    }

    /// Reserves one uncached lookup; returns its timeout, or `None` when the evaluation's budget is spent.
    fn take_budget(&self) -> Option<Duration> {
        let mut spent = self.spent.lock().ok()?;
        let left = self.budget.per_eval.checked_sub(spent.0)?;
        if spent.1 >= self.budget.max_lookups || left.is_zero() {
            return None;
        }
        spent.1 += 1;
        Some(left.min(self.budget.per_call))
    }

    /// Runs the lookup on its own thread and stops waiting at `timeout`.
    fn lookup_bounded(&self, host: &str, timeout: Duration) -> Vec<IpAddr> {
        if self.inflight.fetch_add(1, Ordering::SeqCst) >= MAX_INFLIGHT_LOOKUPS {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(
                host,
                "PAC DNS: too many slow lookups in flight, not resolving"
            );
            return Vec::new();
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let inner = self.inner.clone();
        let inflight = self.inflight.clone();
        let name = host.to_owned();
        let spawned = std::thread::Builder::new()
            .name("pac-dns".into())
            .spawn(move || {
                let answer = inner.lookup(&name).unwrap_or_default();
                inflight.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(answer);
            });
        if spawned.is_err() {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            return Vec::new();
        }
        rx.recv_timeout(timeout).unwrap_or_else(|_| {
            tracing::warn!(host, ?timeout, "PAC DNS lookup timed out");
            Vec::new()
        })
    }
}

impl fmt::Debug for BoundedDns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedDns")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for HostEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostEnv")
            .field("dns", &self.dns)
            .finish_non_exhaustive()
    }
}

/// An IP literal, IPv6 with or without brackets.
pub fn parse_ip_literal(s: &str) -> Option<IpAddr> {
    let bare = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse().ok()
}

// === impl system sources ===

impl PacDns for SystemDns {
    fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok((host, 0).to_socket_addrs()?.map(|sa| sa.ip()).collect())
    }
}

impl LocalAddrs for SystemLocalAddrs {
    /// The source address the kernel would pick toward Google's public resolvers (Chromium's rule). A
    /// UDP `connect` only selects a route: no packet is sent.
    fn local_addrs(&self) -> Vec<IpAddr> {
        let probes: [(IpAddr, IpAddr); 2] = [
            (
                Ipv4Addr::UNSPECIFIED.into(),
                Ipv4Addr::new(8, 8, 8, 8).into(),
            ),
            (
                Ipv6Addr::UNSPECIFIED.into(),
                Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888).into(),
            ),
        ];
        probes
            .iter()
            .filter_map(|(bind, public)| {
                let socket = UdpSocket::bind(SocketAddr::new(*bind, 0)).ok()?;
                socket.connect(SocketAddr::new(*public, 53)).ok()?;
                socket.local_addr().ok().map(|a| a.ip())
            })
            .collect()
    }
}

impl PacClock for SystemClock {
    fn now_millis(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as f64)
            .unwrap_or(0.0)
    }

    fn utc_offset_minutes(&self) -> Option<i32> {
        None
    }
}

impl PacClock for FixedClock {
    fn now_millis(&self) -> f64 {
        self.millis
    }

    fn utc_offset_minutes(&self) -> Option<i32> {
        self.utc_offset_minutes
    }
}

impl LocalAddrs for FixedLocalAddrs {
    fn local_addrs(&self) -> Vec<IpAddr> {
        self.0.clone()
    }
}

impl PacDns for StaticDns {
    fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(self.0.get(host).cloned().unwrap_or_default())
    }
}

/// Local addresses usable as `myIpAddress`: no loopback, link-local or unspecified, best first.
pub fn usable_local_addrs(local: &dyn LocalAddrs) -> Vec<IpAddr> {
    local
        .local_addrs()
        .into_iter()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified() && !is_link_local(ip))
        .collect()
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}
