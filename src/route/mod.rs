//! POLICY: turns a [`Target`] into a [`Decision`]. Never opens sockets to targets; `upstream` consumes
//! the decision.
//!
//! Contract:
//! - [`Router::new`] compiles a [`RouteConfig`] once; every invalid entry is reported, named by its
//!   field (`direct_hosts: "a*b": …`).
//! - [`Router::decide`] is the decision, and what the handler calls. Over compiled rules and fixed
//!   hops it is pure and completes without waiting (well under 1 µs; see `benches/route_decide.rs`);
//!   a PAC script or live system settings as the default route are looked up (I/O) for the targets
//!   that reach it.
//! - The proxy's own environment never changes routing unless `upstream.source = "env"` (TLS-8).
//! - [`Router::start`] builds the product router: it starts the [`source::SourceSpec`] (PAC or live
//!   system settings, with our listen addresses for loop detection, BAD-30) and attaches an
//!   [`StsDirectory`] (explicit `direct_hosts` plus discovered federation hosts, never the intercepted
//!   or authority hosts). [`discover_sts`] runs discovery for the configured domains.
//! - Default-route failures: a PAC that cannot be loaded fails closed (`pac_error`, 502) unless
//!   `pac_failure = "direct"`; a PAC still loading after 5 s is `pac_loading` (503, PAC-11); a PAC
//!   naming only this proxy is `proxy_loop` (502, BAD-30).
//!
//! # Precedence
//!
//! The first step that applies decides:
//!
//! 1. `block` rules → Block.
//! 2. CONNECT to a port not in `connect_ports`, or plain `http://` to a port not in `http_ports` →
//!    Block, naming the port and how to allow it (BAD-25).
//! 3. Local destinations (`localhost`, `*.localhost`, loopback/unspecified/link-local IP literals,
//!    IPv4-mapped too) → Block unless an `allow_local` rule matches (BAD-22, BAD-23, BAD-28).
//! 4. `direct_hosts`, then the STS directory (explicit and discovered federation hosts) → Tunnel via
//!    DIRECT: STS hosts are never intercepted and never proxied (a proxied ADFS shows a blank page).
//! 5. `intercept` rules → Intercept{profile} via the default hops (via DIRECT for an allowed local
//!    destination), for CONNECT only; plain `http://` to an intercepted host → Block telling the user
//!    to use https (BAD-34): a token is never sent over plaintext.
//! 6. `bypass` → Tunnel via DIRECT.
//! 7. A local destination allowed by `allow_local` → Tunnel via DIRECT (as WinINet and Chromium
//!    implicitly bypass loopback: a corporate proxy cannot reach our loopback).
//! 8. Otherwise → Tunnel via the default hops: the static proxies in order, then DIRECT if
//!    `fallback_direct`; DIRECT alone when no upstream is configured; what the PAC script answers; or
//!    what the current system settings say (their bypass list first).
//!
//! Every non-Block decision carries `allow_local = true` when an `allow_local` rule matches the
//! target, so `upstream` may connect to a local address it resolves to (BAD-26 otherwise).
//! `why` names the rule or source (`bypass rule "*.corp.example"`, `direct host "sts.contoso.test"`,
//! `static upstream`, `environment (HTTPS_PROXY/HTTP_PROXY)`, `no upstream configured`); explanations are built at compile time, so a decision
//! costs one small `Vec` of hops and a few reference-count increments (only the port and local
//! refusals format a message).

pub mod loops;
pub mod pac;
pub mod rules;
pub mod source;
pub mod sts;
pub mod system;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ProxyError;
use crate::target::{Action, Decision, Hop, ProxyEndpoint, Scheme, Target};
use pac::PacResolver;
use rules::{BypassList, HostRule, RuleList, RuleMatch};
use source::{DefaultHops, SourceSpec, SystemSource};
use sts::{FetchResponse, StsDirectory};

/// Where the default upstream hops come from.
#[derive(Debug, Clone, Default)]
#[allow(clippy::large_enum_variant)] // built once per router
pub enum UpstreamSource {
    /// No upstream proxy: everything DIRECT.
    #[default]
    Direct,
    /// The ordered list of proxies (from config, environment or Windows settings), tried left to right.
    Static(Vec<ProxyEndpoint>),
    /// A PAC script decides per target (fail closed unless its `on_failure` says DIRECT).
    Pac(Arc<PacResolver>),
    /// Live WinHTTP/IE/auto settings, re-evaluated whenever the watcher publishes (FLT-13).
    System(SystemSource),
}

/// STS discovery settings (`routing.discover_sts`, the account domains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsConfig {
    /// Ask Entra ID's home-realm endpoints for each domain's federation STS. Default: true.
    pub discover: bool,
    /// UPNs or domains to discover (the configured accounts, or `routing.sts_domains`).
    pub domains: Vec<String>,
    /// Realm endpoint base (`https://login.microsoftonline.com`; the emulator in tests).
    pub realm_base: String,
}

/// Ports a plain `http://` request may target by default (`routing.http_ports` replaces the list):
/// HTTP's own port 80, 443 (clients that send `http://host:443/`), and the alternative HTTP ports
/// that squid's stock `Safe_ports` lists by name or that are common for web servers (8000, 8008,
/// 8080, 8443, 8888). Squid also allows all of 1025-65535; we do not, so that a web page riding on
/// the proxy cannot reach arbitrary services (SSH on 22, SMTP on 25, databases): docs/TESTING.md#bad-25.
pub const DEFAULT_HTTP_PORTS: [u16; 7] = [80, 443, 8000, 8008, 8080, 8443, 8888];

/// Authority hosts that discovery may never send DIRECT (their traffic carries sign-ins we route).
pub const AUTHORITY_HOSTS: [&str; 5] = [
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.windows.net",
    "login.microsoftonline.us",
    "login.partner.microsoftonline.cn",
];

/// Hosts whose TLS is terminated locally and whose requests get a token, and the profile (audience
/// and injection scheme) that applies to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterceptRule {
    /// Name of the interception profile, as the `intercept`/`inject` modules know it.
    pub profile: String,
    /// Host patterns (`outlook.office365.com`, `*.outlook.office365.com`, optionally `:port`). Names
    /// only: the local CA mints certificates for names, never for IP addresses.
    pub hosts: Vec<String>,
}

/// Typed routing configuration, built by `config::validate`. Patterns follow the grammar in
/// [`rules`] (`host`, `*.suffix`, `.suffix`, IP, CIDR, optional `:port`); `bypass` follows WinINet.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Default upstream for targets no rule sends elsewhere. Default: DIRECT.
    pub upstream: UpstreamSource,
    /// Where a [`UpstreamSource::Static`] list came from; names it in every decision's `why`.
    /// Default: the config file.
    pub static_origin: StaticOrigin,
    /// With a static upstream, also try DIRECT after every proxy failed (`PROXY a; DIRECT`).
    /// Default: false (fail closed: a dead corporate proxy is an error, not a silent bypass).
    pub fallback_direct: bool,
    /// WinHTTP/IE-style bypass list (`<local>`, `*.corp.example`, `10.*`, `192.168.0.0/16`): DIRECT.
    /// Each item may hold several entries separated by `;`, `,` or whitespace. Default: empty.
    pub bypass: Vec<String>,
    /// Hosts always reached DIRECT and never intercepted (STS/ADFS and the like). Default: empty.
    pub direct_hosts: Vec<String>,
    /// Hosts, IPs or CIDRs refused outright. Default: empty.
    pub block: Vec<String>,
    /// Ports a CONNECT may target. Default: 443 only. Plain `http://` is not limited by this list.
    pub connect_ports: Vec<u16>,
    /// Ports a plain `http://` request may target. Default: [`DEFAULT_HTTP_PORTS`].
    pub http_ports: Vec<u16>,
    /// Targets (hosts, `*.suffix`, IPs, CIDRs) allowed to be, or resolve to, loopback/link-local
    /// addresses. Default: empty (local destinations refused).
    pub allow_local: Vec<String>,
    /// Interception rules, first match wins. Default: empty (nothing intercepted, BAD-33).
    pub intercept: Vec<InterceptRule>,
    /// A default route started at run time (PAC, live system settings); replaces `upstream` in
    /// [`Router::start`]. Default: `Ready` (use `upstream`).
    pub source: SourceSpec,
    /// Federation STS discovery. Default: on, no domains.
    pub sts: StsConfig,
}

/// Where a static list of upstream proxies came from (`upstream.source`), so `exoproxy route` and
/// the logs name the real source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StaticOrigin {
    /// `upstream.proxies` or `--upstream`.
    #[default]
    Config,
    /// `HTTPS_PROXY`/`HTTP_PROXY` of the proxy's own process (`upstream.source = "env"`).
    Environment,
}

impl StaticOrigin {
    /// The decision's `why` for this origin, with or without the DIRECT fallback.
    fn why(self, fallback_direct: bool) -> &'static str {
        match (self, fallback_direct) {
            (StaticOrigin::Config, false) => "static upstream",
            (StaticOrigin::Config, true) => "static upstream, then DIRECT",
            (StaticOrigin::Environment, false) => "environment (HTTPS_PROXY/HTTP_PROXY)",
            (StaticOrigin::Environment, true) => {
                "environment (HTTPS_PROXY/HTTP_PROXY), then DIRECT"
            }
        }
    }
}

/// Compiled routing policy. Cheap to share behind an `Arc`; immutable once built.
#[derive(Debug)]
pub struct Router {
    block: RuleList,
    /// Sorted, deduplicated.
    connect_ports: Vec<u16>,
    /// `443` or `443, 8443`, for the BAD-25 message.
    connect_ports_text: Box<str>,
    /// Sorted, deduplicated.
    http_ports: Vec<u16>,
    http_ports_text: Box<str>,
    allow_local: RuleList,
    direct_hosts: RuleList,
    intercept_hosts: RuleList,
    /// Per entry of `intercept_hosts` (by index): its profile and messages.
    intercept_targets: Vec<InterceptTarget>,
    bypass: BypassList,
    default_route: DefaultRoute,
    /// `[DIRECT]`, cloned into DIRECT decisions.
    direct_hops: Vec<Hop>,
    /// Explicit and discovered STS hosts (step 4), when attached.
    sts: Option<Arc<StsDirectory>>,
    /// This proxy's listen addresses (served PAC `Host` check).
    own_addrs: Vec<SocketAddr>,
    /// Raw entries, for the served PAC.
    patterns: Patterns,
}

/// The config entries as written, for generating the served PAC.
#[derive(Debug, Default, Clone)]
pub struct Patterns {
    pub intercept: Vec<String>,
    pub direct_hosts: Vec<String>,
    pub bypass: Vec<String>,
}

/// What an intercept host pattern leads to (its explanation lives in the host list).
#[derive(Debug)]
struct InterceptTarget {
    profile: Arc<str>,
    /// BAD-34 refusal for plain `http://` to this host pattern.
    plain_http_refusal: Arc<str>,
}

/// Where targets that no rule routes go; the last two variants need a lookup (I/O).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per router, never moved on the hot path
enum DefaultRoute {
    /// Fixed hops: DIRECT, or static proxies (plus DIRECT when falling back).
    Fixed { hops: Vec<Hop>, why: Arc<str> },
    /// A PAC script's answer per target.
    Pac {
        resolver: Arc<PacResolver>,
        why: Arc<str>,
    },
    /// Whatever the current system settings say.
    System(SystemSource),
}

/// A read-only view of the default route for the status page (docs/STATUS.md, `upstream`); taking
/// it never waits, fetches or evaluates anything.
#[derive(Debug, Clone)]
pub struct DefaultRouteView {
    /// Where the default hops come from, one line: `no upstream configured`, `static upstream`,
    /// `PAC <url>`, or the live settings as [`system::Selected::describe`] says (`ie: PAC <url>`,
    /// `winhttp: https via [...]`, `direct (why)`).
    pub source: String,
    /// The proxies the default route names, in order (none for DIRECT; a PAC names its proxies
    /// per target, so none for a PAC either).
    pub proxies: Vec<ProxyEndpoint>,
    /// The PAC in use: source, state, loaded at, last error; `None` without a PAC.
    pub pac: Option<pac::PacStatus>,
}

/// What the served PAC should say for targets that reach the default route.
#[derive(Debug, Clone)]
pub enum ServedDefault {
    /// A fixed list (`PROXY a:1; DIRECT`), plus bypass entries from system settings.
    Hops { hops: Vec<Hop>, bypass: Vec<String> },
    /// The corporate script (embedded renamed), plus bypass entries from system settings.
    Script { text: Arc<str>, bypass: Vec<String> },
    /// The PAC is not loaded: the served PAC answers what the failure policy says.
    Unavailable { direct: bool },
}

/// The outcome of the rules before the default hops are known: either final, or an action that
/// travels the default route.
enum Verdict {
    Final(Decision),
    ViaDefault {
        action: Action,
        allow_local: bool,
        /// The rule that chose the action; `None` lets the default route explain itself.
        why: Option<Arc<str>>,
    },
}

// === impl RouteConfig ===

impl Default for RouteConfig {
    fn default() -> RouteConfig {
        RouteConfig {
            upstream: UpstreamSource::Direct,
            static_origin: StaticOrigin::Config,
            fallback_direct: false,
            bypass: Vec::new(),
            direct_hosts: Vec::new(),
            block: Vec::new(),
            connect_ports: vec![443],
            http_ports: DEFAULT_HTTP_PORTS.to_vec(),
            allow_local: Vec::new(),
            intercept: Vec::new(),
            source: SourceSpec::Ready,
            sts: StsConfig::default(),
        }
    }
}

// === impl StsConfig ===

impl Default for StsConfig {
    fn default() -> StsConfig {
        StsConfig {
            discover: true,
            domains: Vec::new(),
            realm_base: "https://login.microsoftonline.com".into(),
        }
    }
}

// === impl UpstreamSource ===

impl PartialEq for UpstreamSource {
    /// Values compare equal; running sources only to themselves.
    fn eq(&self, other: &UpstreamSource) -> bool {
        match (self, other) {
            (UpstreamSource::Direct, UpstreamSource::Direct) => true,
            (UpstreamSource::Static(a), UpstreamSource::Static(b)) => a == b,
            (UpstreamSource::Pac(a), UpstreamSource::Pac(b)) => Arc::ptr_eq(a, b),
            (UpstreamSource::System(a), UpstreamSource::System(b)) => a.same_as(b),
            _ => false,
        }
    }
}

impl Eq for UpstreamSource {}

impl std::fmt::Display for UpstreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamSource::Direct => f.write_str("DIRECT"),
            UpstreamSource::Static(list) => {
                let list: Vec<String> = list.iter().map(|p| format!("PROXY {p}")).collect();
                f.write_str(&list.join(", "))
            }
            UpstreamSource::Pac(resolver) => write!(f, "PAC {}", resolver.status().source),
            UpstreamSource::System(_) => f.write_str("system proxy settings (live)"),
        }
    }
}

// === impl Router ===

impl Router {
    /// Compiles the configuration; every invalid entry is reported.
    pub fn new(config: RouteConfig) -> Result<Router, Vec<String>> {
        let mut errors = Vec::new();
        let mut collect = |r: Result<RuleList, Vec<String>>| {
            r.unwrap_or_else(|e| {
                errors.extend(e);
                RuleList::default()
            })
        };
        let block = collect(RuleList::compile("block rule", "block", &config.block));
        let allow_local = collect(RuleList::compile(
            "allow_local rule",
            "allow_local",
            &config.allow_local,
        ));
        let direct_hosts = collect(RuleList::compile(
            "direct host",
            "direct_hosts",
            &config.direct_hosts,
        ));
        let (intercept_hosts, intercept_targets) =
            compile_intercept(&config.intercept, &mut errors);
        let bypass = BypassList::parse(&config.bypass).unwrap_or_else(|e| {
            errors.extend(e.into_iter().map(|m| format!("bypass: {m}")));
            BypassList::default()
        });
        let connect_ports = compile_ports("connect_ports", &config.connect_ports, &mut errors);
        let http_ports = compile_ports("http_ports", &config.http_ports, &mut errors);
        let default_route = compile_default_route(&config, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Router {
            block,
            connect_ports_text: ports_text(&connect_ports).into(),
            connect_ports,
            http_ports_text: ports_text(&http_ports).into(),
            http_ports,
            allow_local,
            direct_hosts,
            intercept_hosts,
            intercept_targets,
            bypass,
            default_route,
            direct_hops: vec![Hop::Direct],
            sts: None,
            own_addrs: Vec::new(),
            patterns: Patterns {
                intercept: config
                    .intercept
                    .iter()
                    .flat_map(|r| r.hosts.iter().cloned())
                    .collect(),
                direct_hosts: config.direct_hosts.clone(),
                bypass: config.bypass.clone(),
            },
        })
    }

    /// The product router: starts the configured source with our listen addresses (BAD-30) and
    /// attaches an STS directory guarded by the intercepted and authority hosts. Discovery itself is
    /// [`discover_sts`] / [`StsDirectory::run_refresher`] (they need a fetch).
    pub async fn start(
        mut config: RouteConfig,
        own_addrs: &[SocketAddr],
    ) -> Result<Router, Vec<String>> {
        config.upstream = source::start(
            &config.source,
            &config.upstream,
            config.fallback_direct,
            own_addrs,
        )
        .await;
        if let UpstreamSource::Static(list) = &config.upstream {
            let (kept, ours) = loops::split_own(list, own_addrs);
            for finding in loops::findings("static", &ours, &kept) {
                tracing::warn!("{finding}");
            }
            if !ours.is_empty() {
                config.upstream = if kept.is_empty() {
                    UpstreamSource::Direct
                } else {
                    UpstreamSource::Static(kept)
                };
            }
        }
        let sts = sts_directory(&config)?;
        Ok(Router::new(config)?
            .with_sts(Arc::new(sts))
            .with_own_addrs(own_addrs))
    }

    /// Consults `sts` (explicit and discovered STS hosts) at step 4.
    pub fn with_sts(mut self, sts: Arc<StsDirectory>) -> Router {
        self.sts = Some(sts);
        self
    }

    /// Records this proxy's listen addresses (the served PAC answers only on them).
    pub fn with_own_addrs(mut self, own_addrs: &[SocketAddr]) -> Router {
        self.own_addrs = own_addrs.to_vec();
        self
    }

    /// The STS directory, when attached.
    pub fn sts(&self) -> Option<&Arc<StsDirectory>> {
        self.sts.as_ref()
    }

    /// This proxy's listen addresses.
    pub fn own_addrs(&self) -> &[SocketAddr] {
        &self.own_addrs
    }

    /// The config entries as written (served PAC).
    pub fn patterns(&self) -> &Patterns {
        &self.patterns
    }

    /// What the default route (step 8) is now, for the status page.
    pub fn default_route_view(&self) -> DefaultRouteView {
        match &self.default_route {
            DefaultRoute::Fixed { hops, why } => DefaultRouteView {
                source: why.to_string(),
                proxies: proxies_of(hops),
                pac: None,
            },
            DefaultRoute::Pac { resolver, why } => DefaultRouteView {
                source: why.to_string(),
                proxies: Vec::new(),
                pac: Some(resolver.status()),
            },
            DefaultRoute::System(system) => system.view(),
        }
    }

    /// The decision for a target: the rules (steps 1-7), then the default route (step 8). What the
    /// handler calls. Rules and fixed hops need no I/O and are ready on the first poll; a PAC
    /// script or live system settings are looked up.
    pub async fn decide(&self, target: &Target) -> Result<Decision, ProxyError> {
        let verdict = self.classify(target);
        if let Verdict::Final(decision) = verdict {
            return Ok(decision);
        }
        let default = match &self.default_route {
            DefaultRoute::Fixed { hops, why } => return Ok(verdict.finish(hops, why)),
            DefaultRoute::Pac { resolver, why } => DefaultHops {
                hops: source::pac_hops(resolver, target).await?,
                why: why.clone(),
                bypassed: false,
            },
            DefaultRoute::System(system) => system.current().await.hops_for(target).await?,
        };
        Ok(verdict.finish_with(default))
    }

    /// What the served PAC says for targets reaching the default route.
    pub async fn served_default(&self) -> ServedDefault {
        match &self.default_route {
            DefaultRoute::Fixed { hops, .. } => ServedDefault::Hops {
                hops: hops.clone(),
                bypass: Vec::new(),
            },
            DefaultRoute::Pac { resolver, .. } => served_script(resolver, Vec::new()).await,
            DefaultRoute::System(system) => {
                let compiled = system.current().await;
                let bypass: Vec<String> = compiled
                    .bypass()
                    .entries()
                    .iter()
                    .map(|e| e.as_str().to_string())
                    .collect();
                match (compiled.static_hops(), system.pac().await) {
                    (Some(hops), _) => ServedDefault::Hops {
                        hops: hops.to_vec(),
                        bypass,
                    },
                    (None, Some(resolver)) => served_script(&resolver, bypass).await,
                    (None, None) => ServedDefault::Unavailable { direct: false },
                }
            }
        }
    }

    /// Steps 1-7 of the precedence in the module doc.
    fn classify(&self, target: &Target) -> Verdict {
        let allowed_local = self.allow_local.find(target);
        let allow_local = allowed_local.is_some();
        let local = target.host.is_local();
        if let Some(refusal) = self.refusal(target, allow_local, local) {
            return Verdict::Final(refusal);
        }
        if let Some(m) = self.direct_hosts.find(target) {
            return Verdict::Final(self.direct(Action::Tunnel, m.why, allow_local));
        }
        if let Some(why) = self.sts.as_ref().and_then(|s| s.explain_host(&target.host)) {
            return Verdict::Final(self.direct(Action::Tunnel, &why, allow_local));
        }
        if let Some(m) = self.intercept_hosts.find(target) {
            return self.intercept(target, m, allow_local, local);
        }
        if let Some(entry) = self.bypass.find(target) {
            return Verdict::Final(self.direct(Action::Tunnel, entry.why(), allow_local));
        }
        if let Some(m) = allowed_local.filter(|_| local) {
            return Verdict::Final(self.direct(Action::Tunnel, m.why, true));
        }
        Verdict::ViaDefault {
            action: Action::Tunnel,
            allow_local,
            why: None,
        }
    }

    /// Steps 1-3: block rules, CONNECT and plain-http ports, local destinations not allowed.
    fn refusal(&self, target: &Target, allow_local: bool, local: bool) -> Option<Decision> {
        if let Some(m) = self.block.find(target) {
            return Some(Decision::block(m.why.clone()));
        }
        if target.scheme == Scheme::Connect
            && self.connect_ports.binary_search(&target.port).is_err()
        {
            return Some(Decision::block(format!(
                "CONNECT to port {port} is not allowed (allowed: {allowed}); add {port} to connect_ports to allow it",
                port = target.port,
                allowed = self.connect_ports_text,
            )));
        }
        if target.scheme == Scheme::Http && self.http_ports.binary_search(&target.port).is_err() {
            return Some(Decision::block(format!(
                "http:// to port {port} is not allowed (allowed: {allowed}); add {port} to http_ports to allow it",
                port = target.port,
                allowed = self.http_ports_text,
            )));
        }
        if local && !allow_local {
            return Some(Decision::block(format!(
                "{host} is a local destination (loopback, link-local or localhost); add it to allow_local to allow it",
                host = target.host,
            )));
        }
        None
    }

    fn direct(&self, action: Action, why: &Arc<str>, allow_local: bool) -> Decision {
        Decision {
            action,
            hops: self.direct_hops.clone(),
            allow_local,
            why: why.clone(),
        }
    }

    /// Step 5. A local destination (allowed, or step 3 had refused it) is intercepted DIRECT: no
    /// corporate proxy can reach this machine's loopback.
    fn intercept(
        &self,
        target: &Target,
        m: RuleMatch<'_>,
        allow_local: bool,
        local: bool,
    ) -> Verdict {
        let Some(rule) = self.intercept_targets.get(m.index) else {
            // Unreachable by construction (one target per compiled host entry); refuse rather than
            // guess a profile.
            return Verdict::Final(Decision::block(
                "internal error: intercept rule without profile",
            ));
        };
        if target.scheme == Scheme::Http {
            return Verdict::Final(Decision::block(rule.plain_http_refusal.clone()));
        }
        let action = Action::Intercept {
            profile: rule.profile.clone(),
        };
        if local {
            return Verdict::Final(self.direct(action, m.why, allow_local));
        }
        Verdict::ViaDefault {
            action,
            allow_local,
            why: Some(m.why.clone()),
        }
    }
}

// === impl Verdict ===

impl Verdict {
    /// The decision with a looked-up default route; a live bypass entry explains a tunnel itself.
    fn finish_with(self, default: DefaultHops) -> Decision {
        match self {
            Verdict::ViaDefault {
                action: Action::Tunnel,
                allow_local,
                ..
            } if default.bypassed => Decision {
                action: Action::Tunnel,
                hops: default.hops,
                allow_local,
                why: default.why,
            },
            verdict => verdict.finish(&default.hops, &default.why),
        }
    }

    /// The decision, given the default route's hops and explanation for this target.
    fn finish(self, default_hops: &[Hop], default_why: &Arc<str>) -> Decision {
        match self {
            Verdict::Final(decision) => decision,
            Verdict::ViaDefault {
                action,
                allow_local,
                why,
            } => Decision {
                action,
                hops: default_hops.to_vec(),
                allow_local,
                why: why.unwrap_or_else(|| default_why.clone()),
            },
        }
    }
}

/// Flattens the intercept rules into one host list (first match wins) plus, per host entry, what it
/// leads to. IP patterns are refused: certificates are minted for names only.
fn compile_intercept(
    rules: &[InterceptRule],
    errors: &mut Vec<String>,
) -> (RuleList, Vec<InterceptTarget>) {
    let mut list = RuleList::default();
    let mut targets = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if rule.profile.trim().is_empty() {
            errors.push(format!("intercept[{i}]: profile name is empty"));
        }
        let profile: Arc<str> = rule.profile.as_str().into();
        for host in &rule.hosts {
            let parsed = match HostRule::parse(host) {
                Ok(parsed) if parsed.is_ip() => {
                    Err("intercept rules take host names, not IP addresses".into())
                }
                other => other,
            };
            match parsed {
                Ok(parsed) => {
                    let why = format!(
                        "intercept rule \"{}\" (profile \"{profile}\")",
                        parsed.as_str()
                    );
                    targets.push(intercept_target(&profile, parsed.as_str()));
                    list.push(targets.len() - 1, parsed, why.into());
                }
                Err(e) => errors.push(format!("intercept[{i}].hosts: {host:?}: {e}")),
            }
        }
    }
    (list, targets)
}

fn intercept_target(profile: &Arc<str>, host: &str) -> InterceptTarget {
    InterceptTarget {
        profile: profile.clone(),
        plain_http_refusal: format!(
            "plain http:// to hosts matching \"{host}\" is refused: their requests carry tokens, \
             which are never sent unencrypted; use https://"
        )
        .into(),
    }
}

fn compile_ports(key: &str, ports: &[u16], errors: &mut Vec<String>) -> Vec<u16> {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        let (what, usual) = match key {
            "connect_ports" => ("CONNECT", "[443]".to_string()),
            _ => ("plain http:// request", format!("{DEFAULT_HTTP_PORTS:?}")),
        };
        errors.push(format!(
            "{key}: empty, so every {what} would be refused (the usual value is {usual})"
        ));
    }
    if ports.first() == Some(&0) {
        errors.push(format!("{key}: port 0 is not a valid destination"));
    }
    ports
}

fn ports_text(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    ports.join(", ")
}

fn compile_default_route(config: &RouteConfig, errors: &mut Vec<String>) -> DefaultRoute {
    match &config.upstream {
        UpstreamSource::Pac(resolver) => DefaultRoute::Pac {
            why: format!("PAC {}", resolver.status().source).into(),
            resolver: resolver.clone(),
        },
        UpstreamSource::System(system) => DefaultRoute::System(system.clone()),
        UpstreamSource::Direct => DefaultRoute::Fixed {
            hops: vec![Hop::Direct],
            why: "no upstream configured".into(),
        },
        UpstreamSource::Static(proxies) => {
            if proxies.is_empty() {
                errors.push(
                    "upstream: the static proxy list is empty (use Direct for no proxy)".into(),
                );
            }
            let mut hops: Vec<Hop> = proxies.iter().cloned().map(Hop::Proxy).collect();
            if config.fallback_direct {
                hops.push(Hop::Direct);
            }
            DefaultRoute::Fixed {
                hops,
                why: config.static_origin.why(config.fallback_direct).into(),
            }
        }
    }
}

/// The proxies among `hops`, in order, each once.
fn proxies_of(hops: &[Hop]) -> Vec<ProxyEndpoint> {
    let mut proxies: Vec<ProxyEndpoint> = Vec::new();
    for hop in hops {
        if let Hop::Proxy(p) = hop
            && !proxies.contains(p)
        {
            proxies.push(p.clone());
        }
    }
    proxies
}

/// The served-PAC view of a PAC resolver: its script once loaded (≤ 5 s), else the failure policy.
async fn served_script(resolver: &PacResolver, bypass: Vec<String>) -> ServedDefault {
    resolver.wait_loaded(Duration::from_secs(5)).await;
    match resolver.script_text() {
        Some(text) => ServedDefault::Script { text, bypass },
        None => ServedDefault::Unavailable {
            direct: resolver.status().on_failure == pac::OnFailure::Direct,
        },
    }
}

/// The STS directory for a config: explicit `direct_hosts` names, guarded by the intercepted and
/// authority hosts (a realm answer must never switch off token injection).
fn sts_directory(config: &RouteConfig) -> Result<StsDirectory, Vec<String>> {
    let names_only = |patterns: &mut dyn Iterator<Item = &String>| -> Vec<String> {
        patterns.filter_map(|p| sts_pattern(p)).collect()
    };
    let explicit = names_only(&mut config.direct_hosts.iter());
    let mut never = names_only(&mut config.intercept.iter().flat_map(|r| r.hosts.iter()));
    never.extend(AUTHORITY_HOSTS.iter().map(|h| h.to_string()));
    if let Ok(host) = sts::url_host(&config.sts.realm_base) {
        never.push(host);
    }
    Ok(StsDirectory::new(&explicit, &never)?.with_realm_base(config.sts.realm_base.clone()))
}

/// A rule pattern in the STS directory's grammar (`name`, `*.suffix`); IPs, CIDRs and port-limited
/// entries stay with the rule lists only.
fn sts_pattern(pattern: &str) -> Option<String> {
    let p = pattern.trim();
    let rule = HostRule::parse(p).ok()?;
    if rule.is_ip() || rules::split_port(p).ok()?.1.is_some() {
        return None;
    }
    match p.strip_prefix('.') {
        // `.suffix` = the name and everything below it.
        Some(name) => Some(name.to_string()),
        None => Some(p.to_string()),
    }
}

/// Discovers the federation STS of every configured domain, each within `timeout`; returns one line
/// per domain (`contoso.test: sts.contoso.test` or the error). Does nothing when discovery is off.
pub async fn discover_sts<F, Fut>(
    router: &Router,
    config: &StsConfig,
    fetch: F,
    timeout: Duration,
) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<FetchResponse, String>>,
{
    let Some(sts) = router.sts().filter(|_| config.discover) else {
        return Vec::new();
    };
    let mut report = Vec::new();
    for domain in &config.domains {
        let line = match tokio::time::timeout(timeout, sts.discover(domain, &fetch)).await {
            Ok(Ok(hosts)) if hosts.is_empty() => format!("{domain}: no federation STS"),
            Ok(Ok(hosts)) => format!("{domain}: {}", hosts.join(", ")),
            Ok(Err(e)) => format!("{domain}: {e}"),
            Err(_) => format!("{domain}: STS discovery timed out after {timeout:?}"),
        };
        report.push(line);
    }
    report
}

// Router tests live under rules/ (this module's test file is kept beside the matcher tests).
#[cfg(test)]
#[path = "rules/router_tests.rs"]
mod tests;
