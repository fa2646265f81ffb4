//! PAC engine: fetch, sandboxed evaluation, strict result grammar, per-host cache
//! (docs/PROTOCOL.md#pac-arguments,
//! docs/PROTOCOL.md#pac-result, docs/PROTOCOL.md#pac-helpers, docs/PROTOCOL.md#pac-download).
//!
//! Contract:
//! - [`PacResolver::start`] returns at once and loads the script in the background (fetch → compile in
//!   the sandbox → publish), then refreshes it every 12 h; a failed load is retried with backoff
//!   (8 s, 32 s, 2 min, then every 10 min). A failed refresh keeps the last good script (reported in
//!   [`PacStatus::last_error`]).
//! - [`PacResolver::hops_for`] turns a [`Target`] into hops. The script sees `https://host/` for tunnels
//!   (no path, PAC-13) and the lower-cased host ([`script_args`], shared with `exoproxy pac eval`).
//!   Answers are cached per URL for 60 s and flushed when the script's SHA-256 changes (PAC-12).
//!   Every lookup that is not a cache hit counts in `exoproxy_pac_evaluations_total{result}`
//!   (`ok`, `failed`: the script threw, timed out or answered badly, `unavailable`: no script to
//!   run), docs/STATUS.md.
//!   While the script is loading a request waits ≤ 5 s, then fails with
//!   `ProxyError::Pac("pac_loading: …")` (PAC-11). A missing or broken script fails closed
//!   (`ProxyError::Pac`) unless [`OnFailure::Direct`] (PAC-9, PAC-10); that policy covers loading only: an
//!   evaluation error of a loaded script (timeout, exception, bad result) is always an error.
//! - Results go through the strict grammar of [`directive`] (PAC-6 → `ProxyError::PacInvalidResult`);
//!   a proxy naming one of our own listen addresses is dropped, and if nothing is left the answer is
//!   `ProxyError::ProxyLoop` (BAD-30).
//! - Evaluation runs on dedicated worker threads (`worker.rs`), never on the tokio runtime (LOAD-12), in a
//!   budgeted QuickJS sandbox (`engine.rs`: 250 ms, 32 MiB heap, stack cap, no eval/Function, PAC-1…4, 7).
//! - DNS, local addresses, time and `alert` come from [`PacEnvironment`], injectable for tests (PAC-5).
//!
//! Credentials are not the PAC's business: `upstream` decides which proxies may receive them (PAC-14).

mod cache;
pub mod directive;
mod engine;
pub mod fetch;
pub mod glob;
pub mod host_env;
mod worker;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::error::ProxyError;
use crate::target::{Hop, Target};

use cache::ResultCache;
use engine::EvalError;
pub use engine::SandboxLimits;
pub use fetch::PacSource;
use fetch::{FetchLimits, fetch_script};
use host_env::{AlertSink, BoundedDns, DnsBudget, HostEnv};
use host_env::{LocalAddrs, PacClock, PacDns, SystemClock, SystemDns, SystemLocalAddrs};
use worker::{RunError, Script, WorkerPool};

/// What to do when no usable script could be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Refuse requests with `pac_error` (fail closed, the default).
    #[default]
    Fail,
    /// Go DIRECT (explicit opt-in, `on_pac_error = "direct"`).
    Direct,
}

/// Typed PAC configuration, built by `config::validate`.
#[derive(Debug, Clone)]
pub struct PacConfig {
    pub source: PacSource,
    pub on_failure: OnFailure,
    /// Sandbox limits: CPU budget per call (250 ms), heap (32 MiB), stack.
    pub limits: SandboxLimits,
    /// DNS per call (2 s), per evaluation (4 s) and number of uncached lookups per evaluation.
    pub dns_budget: DnsBudget,
    /// Whole download, redirects included (10 s; docs/TESTING.md#pac-8).
    pub fetch_timeout: Duration,
    /// Largest script accepted (1 MiB).
    pub max_script_bytes: usize,
    /// How long a loaded script is used before it is fetched again (12 h).
    pub refresh_every: Duration,
    /// Waits between failed loads; the last one repeats.
    pub retry_backoff: Vec<Duration>,
    /// How long a request waits for a script that is still loading (5 s, PAC-11).
    pub loading_wait: Duration,
    /// How long a decision is reused (60 s) and how many are kept.
    pub cache_ttl: Duration,
    pub cache_entries: usize,
    /// JS worker threads.
    pub workers: usize,
    /// The proxy's own listen addresses, for loop detection (BAD-30).
    pub own_addrs: Vec<SocketAddr>,
    /// TLS for an https PAC server: the proxy's one outbound configuration (`tls_client`, wired by
    /// `app`); `None` uses the shared system-roots configuration.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// DNS, local addresses, clock and alert sink.
    pub env: PacEnvironment,
}

/// What the script may observe of the world; system sources by default, fixed ones in tests.
#[derive(Clone)]
pub struct PacEnvironment {
    pub dns: Arc<dyn PacDns>,
    pub local: Arc<dyn LocalAddrs>,
    pub clock: Arc<dyn PacClock>,
    pub alert: Option<AlertSink>,
}

/// Where the loader is, as [`PacResolver::status`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacState {
    Loading,
    Loaded,
    Failed,
}

/// A snapshot of the PAC's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacStatus {
    pub source: String,
    pub state: PacState,
    /// SHA-256 (hex) of the script in use.
    pub hash: Option<String>,
    pub loaded_at: Option<SystemTime>,
    /// The latest load or refresh failure; kept while a previous script stays in use.
    pub last_error: Option<String>,
    pub on_failure: OnFailure,
}

/// The running PAC engine: background loader, worker threads and the decision cache.
#[derive(Debug)]
pub struct PacResolver {
    inner: Arc<Inner>,
    loader: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
enum ScriptState {
    Loading,
    Ready(Arc<Script>),
    Failed(String),
}

#[derive(Debug)]
struct Inner {
    config: PacConfig,
    pool: WorkerPool,
    state: watch::Sender<ScriptState>,
    status: Mutex<PacStatus>,
    cache: ResultCache,
}

// === impl PacConfig ===

impl Default for PacConfig {
    fn default() -> Self {
        PacConfig {
            source: PacSource::Inline(String::new()),
            on_failure: OnFailure::Fail,
            limits: SandboxLimits::default(),
            dns_budget: DnsBudget::default(),
            fetch_timeout: Duration::from_secs(10),
            max_script_bytes: 1 << 20,
            refresh_every: Duration::from_secs(12 * 3600),
            retry_backoff: [8, 32, 120, 600].map(Duration::from_secs).to_vec(),
            loading_wait: Duration::from_secs(5),
            cache_ttl: Duration::from_secs(60),
            cache_entries: 8192,
            workers: 2,
            own_addrs: Vec::new(),
            tls: None,
            env: PacEnvironment::default(),
        }
    }
}

// === impl PacEnvironment ===

impl Default for PacEnvironment {
    fn default() -> Self {
        PacEnvironment {
            dns: Arc::new(SystemDns),
            local: Arc::new(SystemLocalAddrs),
            clock: Arc::new(SystemClock),
            alert: None,
        }
    }
}

impl std::fmt::Debug for PacEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacEnvironment").finish_non_exhaustive()
    }
}

// === impl PacResolver ===

impl PacResolver {
    /// Starts the workers and the background loader; returns before the script is loaded.
    pub async fn start(config: PacConfig) -> PacResolver {
        let env = HostEnv {
            dns: Arc::new(BoundedDns::new(config.env.dns.clone(), config.dns_budget)),
            local: config.env.local.clone(),
            clock: config.env.clock.clone(),
            alert: config.env.alert.clone(),
        };
        let status = PacStatus {
            source: config.source.to_string(),
            state: PacState::Loading,
            hash: None,
            loaded_at: None,
            last_error: None,
            on_failure: config.on_failure,
        };
        let inner = Arc::new(Inner {
            pool: WorkerPool::start(config.workers, config.limits, env),
            state: watch::Sender::new(ScriptState::Loading),
            status: Mutex::new(status),
            cache: ResultCache::new(config.cache_entries, config.cache_ttl),
            config,
        });
        let loader = tokio::spawn(load_forever(inner.clone()));
        PacResolver { inner, loader }
    }

    /// The hops for a target, from the cache or a fresh evaluation.
    pub async fn hops_for(&self, target: &Target) -> Result<Vec<Hop>, ProxyError> {
        let (url, host) = script_args(target);
        let script = match self.current_script(self.inner.config.on_failure).await {
            Ok(Some(script)) => script,
            Ok(None) => {
                crate::summary::pac_evaluated("unavailable");
                return Ok(vec![Hop::Direct]);
            }
            Err(e) => {
                crate::summary::pac_evaluated("unavailable");
                return Err(e);
            }
        };
        if let Some(hit) = self.inner.cache.get(&url, &script.hash) {
            return hit;
        }
        let answer = match self.inner.evaluate(&script, &url, &host).await {
            Err(RunError::Unavailable(msg)) => {
                crate::summary::pac_evaluated("unavailable");
                return Err(ProxyError::Pac(msg));
            }
            Err(RunError::Eval(e)) => Err(eval_error(e)),
            Ok(result) => self.inner.to_hops(&result),
        };
        crate::summary::pac_evaluated(if answer.is_ok() { "ok" } else { "failed" });
        self.inner.cache.put(url, &script.hash, answer.clone());
        answer
    }

    /// The raw string the script returns for `url`/`host`, uncached (`exoproxy pac eval`, pactester).
    pub async fn eval(&self, url: &str, host: &str) -> Result<String, ProxyError> {
        let script = self
            .current_script(OnFailure::Fail)
            .await?
            .ok_or_else(|| ProxyError::Pac("no PAC script".into()))?;
        let host = host.to_ascii_lowercase();
        match self.inner.evaluate(&script, url, &host).await {
            Ok(result) => Ok(result),
            Err(RunError::Unavailable(msg)) => Err(ProxyError::Pac(msg)),
            Err(RunError::Eval(e)) => Err(eval_error(e)),
        }
    }

    /// The text of the script in use, if one is loaded (the served PAC embeds it).
    pub fn script_text(&self) -> Option<Arc<str>> {
        match &*self.inner.state.borrow() {
            ScriptState::Ready(script) => Some(script.text.clone()),
            ScriptState::Loading | ScriptState::Failed(_) => None,
        }
    }

    /// Waits until the first load settled (loaded or failed), at most `wait`; true when loaded.
    pub async fn wait_loaded(&self, wait: Duration) -> bool {
        let mut state = self.inner.state.subscribe();
        let settled = state.wait_for(|s| !matches!(s, ScriptState::Loading));
        matches!(
            tokio::time::timeout(wait, settled).await,
            Ok(Ok(s)) if matches!(&*s, ScriptState::Ready(_))
        )
    }

    /// Health snapshot: `exoproxy route` names the PAC's source and failure policy from it.
    pub fn status(&self) -> PacStatus {
        match self.inner.status.lock() {
            Ok(status) => status.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Waits (≤ `loading_wait`) for a loaded script; `None` means "go DIRECT" under that policy.
    async fn current_script(&self, policy: OnFailure) -> Result<Option<Arc<Script>>, ProxyError> {
        let mut state = self.inner.state.subscribe();
        let wait = self.inner.config.loading_wait;
        let settled =
            tokio::time::timeout(wait, state.wait_for(|s| !matches!(s, ScriptState::Loading)))
                .await;
        let state = match settled {
            Err(_) => {
                return Err(ProxyError::Pac(format!(
                    "pac_loading: the PAC script is still loading after {wait:?}"
                )));
            }
            Ok(Err(_)) => return Err(ProxyError::Pac("PAC loader stopped".into())),
            Ok(Ok(state)) => state,
        };
        match (&*state, policy) {
            (ScriptState::Ready(script), _) => Ok(Some(script.clone())),
            (ScriptState::Failed(_), OnFailure::Direct) => Ok(None),
            (ScriptState::Failed(e), OnFailure::Fail) => Err(ProxyError::Pac(e.clone())),
            (ScriptState::Loading, _) => Err(ProxyError::Pac("pac_loading".into())),
        }
    }
}

impl Drop for PacResolver {
    fn drop(&mut self) {
        self.loader.abort();
    }
}

fn eval_error(e: EvalError) -> ProxyError {
    match e {
        EvalError::NotAString(_) => ProxyError::PacInvalidResult(e.to_string()),
        EvalError::Script(_) | EvalError::Runtime(_) => ProxyError::Pac(e.to_string()),
    }
}

// === impl Inner ===

impl Inner {
    /// Longest a caller waits for a worker: queueing behind other calls plus one call's budgets.
    fn job_wait(&self) -> Duration {
        Duration::from_secs(5) + self.config.limits.eval_budget + self.config.dns_budget.per_eval
    }

    async fn evaluate(
        &self,
        script: &Arc<Script>,
        url: &str,
        host: &str,
    ) -> Result<String, RunError> {
        let call = Some((url.to_string(), host.to_string()));
        self.pool.run(script.clone(), call, self.job_wait()).await
    }

    /// Strict grammar, then loop removal (BAD-30).
    fn to_hops(&self, result: &str) -> Result<Vec<Hop>, ProxyError> {
        let hops = directive::parse_directives(result).map_err(|e| {
            ProxyError::PacInvalidResult(format!("{e} (result {:?})", clip(result)))
        })?;
        let (own, hops): (Vec<Hop>, Vec<Hop>) = hops.into_iter().partition(
            |hop| matches!(hop, Hop::Proxy(p) if super::loops::names_this_proxy(p, &self.config.own_addrs)),
        );
        if hops.is_empty() {
            let named: Vec<String> = own.iter().map(ToString::to_string).collect();
            return Err(ProxyError::ProxyLoop(named.join(", ")));
        }
        if !own.is_empty() {
            tracing::warn!(?own, "PAC named this proxy itself: entry dropped");
        }
        Ok(hops)
    }

    /// Fetches and compiles; unchanged content keeps the current script.
    async fn load_once(&self) -> Result<Arc<Script>, String> {
        let limits = FetchLimits {
            timeout: self.config.fetch_timeout,
            max_bytes: self.config.max_script_bytes,
            tls: self.config.tls.clone(),
        };
        let text = fetch_script(&self.config.source, &limits).await?;
        let script = Arc::new(Script::new(text));
        if let ScriptState::Ready(current) = &*self.state.borrow()
            && current.hash == script.hash
        {
            return Ok(current.clone());
        }
        match self.pool.run(script.clone(), None, self.job_wait()).await {
            Ok(_) => Ok(script),
            Err(RunError::Eval(e)) => Err(format!("PAC script rejected: {e}")),
            Err(RunError::Unavailable(msg)) => Err(msg),
        }
    }

    fn install(&self, script: Arc<Script>) {
        let changed =
            !matches!(&*self.state.borrow(), ScriptState::Ready(s) if s.hash == script.hash);
        if changed {
            tracing::info!(source = %self.config.source, hash = script.short_hash(), "PAC script loaded");
            self.cache.flush();
        }
        self.update_status(|s| {
            s.state = PacState::Loaded;
            s.hash = Some(script.hash.clone());
            s.last_error = None;
            if changed {
                s.loaded_at = Some(SystemTime::now());
            }
        });
        if changed {
            self.state.send_replace(ScriptState::Ready(script));
        }
    }

    fn record_failure(&self, error: String) {
        let keeps_old = matches!(&*self.state.borrow(), ScriptState::Ready(_));
        tracing::warn!(source = %self.config.source, keeps_old, "PAC load failed: {error}");
        self.update_status(|s| {
            s.last_error = Some(error.clone());
            if !keeps_old {
                s.state = PacState::Failed;
            }
        });
        if !keeps_old {
            self.state.send_replace(ScriptState::Failed(error));
        }
    }

    fn update_status(&self, change: impl FnOnce(&mut PacStatus)) {
        match self.status.lock() {
            Ok(mut status) => change(&mut status),
            Err(poisoned) => change(&mut poisoned.into_inner()),
        }
    }
}

/// The loader task: load, then refresh; back off after failures.
async fn load_forever(inner: Arc<Inner>) {
    let mut failures = 0usize;
    loop {
        let wait = match inner.load_once().await {
            Ok(script) => {
                failures = 0;
                inner.install(script);
                if matches!(inner.config.source, PacSource::Inline(_)) {
                    return;
                }
                inner.config.refresh_every
            }
            Err(error) => {
                inner.record_failure(error);
                let backoff = &inner.config.retry_backoff;
                let wait = backoff
                    .get(failures.min(backoff.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(Duration::from_secs(600));
                failures += 1;
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// What `FindProxyForURL(url, host)` is called with for a target: the URL reduced to
/// `scheme://host[:port]/` (a CONNECT carries no path, and for https Chromium strips path and query
/// too, PAC-13) and the host. The one reduction, for the proxy ([`PacResolver::hops_for`]) and for
/// `exoproxy pac eval`, so the command shows what the running proxy would get.
pub fn script_args(target: &Target) -> (String, String) {
    (target.pac_url(), target.host.as_str_for_lookup())
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests;
