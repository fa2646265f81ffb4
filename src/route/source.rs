//! Default-route sources that need a runtime: a PAC script ([`PacResolver`]) and live system settings
//! ([`SystemSource`], fed by a `SettingsWatcher`).
//!
//! Contract:
//! - [`SourceSpec`] is what `config::validate` produces for `upstream.source = "pac" | "winhttp" | "ie"
//!   | "auto"`; [`start`] turns it into an [`UpstreamSource`] once the listen addresses are known (they
//!   go into `PacConfig::own_addrs` for loop detection, BAD-30).
//! - `SystemSource::current` compiles the latest snapshot at most once per generation: static
//!   proxies plus bypass, a PAC (a fresh [`PacResolver`] per generation, so a network change re-fetches
//!   the script, FLT-13), or DIRECT. A request always sees one consistent snapshot.
//! - WPAD selected by the settings (only when `allow_wpad`) is not implemented: it is reported in `why`
//!   and fails closed, never silently DIRECT.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::UpstreamSource;
use super::pac::{PacConfig, PacResolver};
use super::rules::BypassList;
use super::system::{LiveConfig, Selected, SettingsSnapshot, SettingsWatcher, live_watcher};
use crate::error::ProxyError;
use crate::target::{Hop, Scheme, Target};

/// A default-route source that is started at run time.
#[derive(Debug, Clone, Default)]
#[allow(clippy::large_enum_variant)] // config data, built once
pub enum SourceSpec {
    /// `RouteConfig::upstream` is final (direct, static, env).
    #[default]
    Ready,
    /// `upstream.source = "pac"`: this script, fetched DIRECT.
    Pac(Box<PacConfig>),
    /// `upstream.source = "winhttp" | "ie" | "auto"`: live settings; PACs they name use `pac` as a
    /// template (limits, failure policy).
    System {
        live: LiveConfig,
        pac: Box<PacConfig>,
    },
}

/// Live system settings as a default route.
#[derive(Debug, Clone)]
pub struct SystemSource {
    inner: Arc<SystemInner>,
}

#[derive(Debug)]
struct SystemInner {
    snapshots: watch::Receiver<Arc<SettingsSnapshot>>,
    pac: PacConfig,
    fallback_direct: bool,
    current: Mutex<Option<Arc<Compiled>>>,
}

/// One snapshot, compiled.
#[derive(Debug)]
pub(crate) struct Compiled {
    generation: u64,
    bypass: BypassList,
    route: LiveRoute,
}

#[derive(Debug)]
enum LiveRoute {
    Proxies {
        http: Vec<Hop>,
        https: Vec<Hop>,
        why: Arc<str>,
    },
    Pac {
        resolver: Arc<PacResolver>,
        why: Arc<str>,
    },
    Direct {
        why: Arc<str>,
    },
    Refuse {
        why: Arc<str>,
    },
}

/// The hops of the default route for one target, and why.
pub(crate) struct DefaultHops {
    pub(crate) hops: Vec<Hop>,
    pub(crate) why: Arc<str>,
    /// True when a live bypass entry decided (its explanation beats a rule's).
    pub(crate) bypassed: bool,
}

// === impl SourceSpec ===

impl SourceSpec {
    /// Hands `tls`, the proxy's one outbound TLS configuration, to every PAC download this source
    /// may make, so an https PAC server is verified like every other server (`tls.extra_roots`).
    pub fn set_pac_tls(&mut self, tls: Arc<rustls::ClientConfig>) {
        match self {
            SourceSpec::Ready => {}
            SourceSpec::Pac(pac) | SourceSpec::System { pac, .. } => pac.tls = Some(tls),
        }
    }
}

/// Starts what `spec` needs; `own_addrs` are this proxy's listen addresses. `Ready` returns `ready`.
pub async fn start(
    spec: &SourceSpec,
    ready: &UpstreamSource,
    fallback_direct: bool,
    own_addrs: &[SocketAddr],
) -> UpstreamSource {
    match spec {
        SourceSpec::Ready => ready.clone(),
        SourceSpec::Pac(config) => {
            let config = with_own_addrs(config, own_addrs);
            UpstreamSource::Pac(Arc::new(PacResolver::start(config).await))
        }
        SourceSpec::System { live, pac } => {
            let (snapshots, _task) = live_watcher(live.clone()).spawn();
            let pac = with_own_addrs(pac, own_addrs);
            UpstreamSource::System(SystemSource::new(snapshots, pac, fallback_direct))
        }
    }
}

fn with_own_addrs(config: &PacConfig, own_addrs: &[SocketAddr]) -> PacConfig {
    let mut config = config.clone();
    for addr in own_addrs {
        if !config.own_addrs.contains(addr) {
            config.own_addrs.push(*addr);
        }
    }
    config
}

/// A watcher's channel as a source (tests inject a watcher with fake readers).
pub fn system_source(
    watcher: SettingsWatcher,
    pac: PacConfig,
    fallback_direct: bool,
) -> UpstreamSource {
    let (snapshots, _task) = watcher.spawn();
    UpstreamSource::System(SystemSource::new(snapshots, pac, fallback_direct))
}

// === impl SystemSource ===

impl SystemSource {
    pub fn new(
        snapshots: watch::Receiver<Arc<SettingsSnapshot>>,
        pac: PacConfig,
        fallback_direct: bool,
    ) -> SystemSource {
        SystemSource {
            inner: Arc::new(SystemInner {
                snapshots,
                pac,
                fallback_direct,
                current: Mutex::new(None),
            }),
        }
    }

    /// True when both handles share one compiled state.
    pub fn same_as(&self, other: &SystemSource) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The PAC resolver of the current snapshot, if the settings name a PAC.
    pub async fn pac(&self) -> Option<Arc<PacResolver>> {
        match &self.current().await.route {
            LiveRoute::Pac { resolver, .. } => Some(resolver.clone()),
            _ => None,
        }
    }

    /// The status page's view of the latest settings ([`Selected::describe`]) and, once a request
    /// compiled them, the PAC they name; never waits or compiles.
    pub(crate) fn view(&self) -> super::DefaultRouteView {
        let snapshot = self.inner.snapshots.borrow().clone();
        let proxies = match &snapshot.selected {
            Selected::Proxies(p) => {
                let mut all = p.https.clone();
                all.extend(p.http.iter().filter(|e| !p.https.contains(e)).cloned());
                all
            }
            _ => Vec::new(),
        };
        let pac = self
            .cached()
            .filter(|c| c.generation == snapshot.generation)
            .and_then(|c| match &c.route {
                LiveRoute::Pac { resolver, .. } => Some(resolver.status()),
                _ => None,
            });
        super::DefaultRouteView {
            source: snapshot.selected.describe(),
            proxies,
            pac,
        }
    }

    /// The compiled current snapshot; compiles when the watcher published a new generation.
    pub(crate) async fn current(&self) -> Arc<Compiled> {
        let snapshot = self.inner.snapshots.borrow().clone();
        if let Some(c) = self
            .cached()
            .filter(|c| c.generation == snapshot.generation)
        {
            return c;
        }
        let compiled = Arc::new(self.compile(&snapshot).await);
        let mut slot = self
            .inner
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*slot {
            // Another request compiled a newer or equal generation meanwhile: use that one.
            Some(c) if c.generation >= compiled.generation => c.clone(),
            _ => {
                tracing::info!(generation = snapshot.generation, reason = snapshot.reason,
                    route = %compiled.route.why(), "upstream settings changed");
                *slot = Some(compiled.clone());
                compiled
            }
        }
    }

    fn cached(&self) -> Option<Arc<Compiled>> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    async fn compile(&self, snapshot: &SettingsSnapshot) -> Compiled {
        let (bypass_raw, route) = match &snapshot.selected {
            Selected::Proxies(p) => {
                let own = &self.inner.pac.own_addrs;
                let hops = |list: &[crate::target::ProxyEndpoint]| {
                    // Never a loop: our own listener is dropped, the rest applies (loops.rs).
                    let (kept, ours) = super::loops::split_own(list, own);
                    for finding in super::loops::findings(p.source, &ours, &kept) {
                        tracing::warn!("{finding}");
                    }
                    let mut hops: Vec<Hop> = kept.into_iter().map(Hop::Proxy).collect();
                    if hops.is_empty() || self.inner.fallback_direct {
                        hops.push(Hop::Direct);
                    }
                    hops
                };
                let why = format!("{} proxy settings", p.source);
                let route = LiveRoute::Proxies {
                    http: hops(&p.http),
                    https: hops(&p.https),
                    why: why.into(),
                };
                (p.bypass.clone(), route)
            }
            Selected::Pac {
                url,
                bypass,
                source,
            } if super::loops::pac_url_is_ours(url, &self.inner.pac.own_addrs) => {
                let finding = super::loops::SelfReference {
                    source: (*source).to_string(),
                    value: format!("the PAC {url}"),
                    instead: "DIRECT".into(),
                };
                tracing::warn!("{finding}");
                let why = format!("DIRECT ({source} settings name exoproxy's own PAC)").into();
                let route = LiveRoute::Proxies {
                    http: vec![Hop::Direct],
                    https: vec![Hop::Direct],
                    why,
                };
                (bypass.clone(), route)
            }
            Selected::Pac {
                url,
                bypass,
                source,
            } => {
                let mut config = self.inner.pac.clone();
                config.source = super::pac::PacSource::parse(url);
                let resolver = Arc::new(PacResolver::start(config).await);
                let why = format!("PAC {url} (from {source} settings)").into();
                (bypass.clone(), LiveRoute::Pac { resolver, why })
            }
            Selected::Wpad { source } => {
                let why = format!(
                    "{source} settings ask for WPAD auto-detection, which exoproxy does not perform; \
                     configure upstream.pac instead"
                );
                (Vec::new(), LiveRoute::Refuse { why: why.into() })
            }
            Selected::Direct { why } => (
                Vec::new(),
                LiveRoute::Direct {
                    why: why.as_str().into(),
                },
            ),
        };
        let (bypass, skipped) = BypassList::parse_lenient(&bypass_raw);
        if !skipped.is_empty() {
            tracing::warn!(?skipped, "system bypass entries skipped");
        }
        Compiled {
            generation: snapshot.generation,
            bypass,
            route,
        }
    }
}

// === impl Compiled ===

impl Compiled {
    /// The default hops for `target` under this snapshot.
    pub(crate) async fn hops_for(&self, target: &Target) -> Result<DefaultHops, ProxyError> {
        if let Some(entry) = self.bypass.find(target) {
            return Ok(DefaultHops {
                hops: vec![Hop::Direct],
                why: entry.why().clone(),
                bypassed: true,
            });
        }
        let (hops, why) = match &self.route {
            LiveRoute::Proxies { http, https, why } => match target.scheme {
                Scheme::Http => (http.clone(), why.clone()),
                Scheme::Connect => (https.clone(), why.clone()),
            },
            LiveRoute::Pac { resolver, why } => (pac_hops(resolver, target).await?, why.clone()),
            LiveRoute::Direct { why } => (vec![Hop::Direct], why.clone()),
            LiveRoute::Refuse { why } => return Err(ProxyError::Pac(why.to_string())),
        };
        Ok(DefaultHops {
            hops,
            why,
            bypassed: false,
        })
    }

    /// Static proxies of this snapshot for the served PAC (`None` for a PAC or a refusal).
    pub(crate) fn static_hops(&self) -> Option<&[Hop]> {
        match &self.route {
            LiveRoute::Proxies { https, .. } => Some(https),
            LiveRoute::Direct { .. } => Some(&[Hop::Direct]),
            LiveRoute::Pac { .. } | LiveRoute::Refuse { .. } => None,
        }
    }

    /// The raw bypass entries, for the served PAC.
    pub(crate) fn bypass(&self) -> &BypassList {
        &self.bypass
    }
}

// === impl LiveRoute ===

impl LiveRoute {
    fn why(&self) -> &str {
        match self {
            LiveRoute::Proxies { why, .. }
            | LiveRoute::Pac { why, .. }
            | LiveRoute::Direct { why }
            | LiveRoute::Refuse { why } => why,
        }
    }
}

/// PAC hops, with "still loading" told apart from other PAC failures (503 vs 502, PAC-11).
pub(crate) async fn pac_hops(
    resolver: &PacResolver,
    target: &Target,
) -> Result<Vec<Hop>, ProxyError> {
    resolver.hops_for(target).await.map_err(|e| match e {
        ProxyError::Pac(msg) if msg.starts_with("pac_loading") => ProxyError::PacLoading(msg),
        other => other,
    })
}

#[cfg(test)]
mod tests;
