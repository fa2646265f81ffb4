//! POLICY: turns a [`Target`] into a [`Decision`]. Never opens sockets to targets; `upstream` consumes
//! the decision.
//!
//! Contract:
//! - [`Router::new`] compiles a [`RouteConfig`] once; every invalid entry is reported, named by its
//!   field (`direct_hosts: "a*b": …`).
//! - [`Router::decide`] is pure and synchronous over compiled rules (well under 1 µs; see
//!   `benches/route_decide.rs`); the async [`Router::resolve`] adds sources that need I/O (PAC, later),
//!   and is what the handler calls.
//! - The proxy's own environment never changes routing: whoever builds the config turns environment,
//!   WinHTTP or IE settings into [`UpstreamSource::Static`] plus `bypass` entries first.
//!
//! # Precedence
//!
//! The first step that applies decides:
//!
//! 1. `block` rules → Block.
//! 2. CONNECT to a port not in `connect_ports` → Block, naming the port and how to allow it (BAD-25).
//! 3. Local destinations (`localhost`, `*.localhost`, loopback/unspecified/link-local IP literals,
//!    IPv4-mapped too) → Block unless an `allow_local` rule matches (BAD-22, BAD-23, BAD-28).
//! 4. `direct_hosts` → Tunnel via DIRECT: STS hosts are never intercepted and never proxied.
//! 5. `intercept` rules → Intercept{profile} via the default hops (via DIRECT for an allowed local
//!    destination), for CONNECT only; plain `http://` to an intercepted host → Block telling the user
//!    to use https (BAD-34): a token is never sent over plaintext.
//! 6. `bypass` → Tunnel via DIRECT.
//! 7. A local destination allowed by `allow_local` → Tunnel via DIRECT (as WinINet and Chromium
//!    implicitly bypass loopback: a corporate proxy cannot reach our loopback).
//! 8. Otherwise → Tunnel via the default hops: the static proxies in order, then DIRECT if
//!    `fallback_direct`; DIRECT alone when no upstream is configured.
//!
//! Every non-Block decision carries `allow_local = true` when an `allow_local` rule matches the
//! target, so `upstream` may connect to a local address it resolves to (BAD-26 otherwise).
//! `why` names the rule or source (`bypass rule "*.corp.example"`, `direct host "sts.contoso.test"`,
//! `static upstream`, `no upstream configured`); explanations are built at compile time, so a decision
//! costs one small `Vec` of hops and a few reference-count increments (only the port and local
//! refusals format a message).

pub mod pac;
pub mod rules;
pub mod sts;
pub mod system;

use std::sync::Arc;

use crate::error::ProxyError;
use crate::target::{Action, Decision, Hop, Host, ProxyEndpoint, Scheme, Target};
use rules::{BypassList, HostRule, RuleList, RuleMatch, is_local_ip, is_local_name};

/// Where the default upstream hops come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UpstreamSource {
    /// No upstream proxy: everything DIRECT.
    #[default]
    Direct,
    /// The ordered list of proxies (from config, environment or Windows settings), tried left to right.
    Static(Vec<ProxyEndpoint>),
}

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
    /// Targets (hosts, `*.suffix`, IPs, CIDRs) allowed to be, or resolve to, loopback/link-local
    /// addresses. Default: empty (local destinations refused).
    pub allow_local: Vec<String>,
    /// Interception rules, first match wins. Default: empty (nothing intercepted, BAD-33).
    pub intercept: Vec<InterceptRule>,
}

/// Compiled routing policy. Cheap to share behind an `Arc`; immutable once built.
#[derive(Debug)]
pub struct Router {
    block: RuleList,
    /// Sorted, deduplicated.
    connect_ports: Vec<u16>,
    /// `443` or `443, 8443`, for the BAD-25 message.
    connect_ports_text: Box<str>,
    allow_local: RuleList,
    direct_hosts: RuleList,
    intercept_hosts: RuleList,
    /// Per entry of `intercept_hosts` (by index): its profile and messages.
    intercept_targets: Vec<InterceptTarget>,
    bypass: BypassList,
    default_route: DefaultRoute,
    /// `[DIRECT]`, cloned into DIRECT decisions.
    direct_hops: Vec<Hop>,
}

/// What an intercept host pattern leads to (its explanation lives in the host list).
#[derive(Debug)]
struct InterceptTarget {
    profile: Arc<str>,
    /// BAD-34 refusal for plain `http://` to this host pattern.
    plain_http_refusal: Arc<str>,
}

/// Where targets that no rule routes go. Adding PAC later is one more variant whose hops
/// [`Router::resolve`] awaits from an evaluator.
#[derive(Debug)]
enum DefaultRoute {
    /// Fixed hops: DIRECT, or static proxies (plus DIRECT when falling back).
    Fixed { hops: Vec<Hop>, why: Arc<str> },
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
            fallback_direct: false,
            bypass: Vec::new(),
            direct_hosts: Vec::new(),
            block: Vec::new(),
            connect_ports: vec![443],
            allow_local: Vec::new(),
            intercept: Vec::new(),
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
        let connect_ports = compile_ports(&config.connect_ports, &mut errors);
        let default_route = compile_default_route(&config, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Router {
            block,
            connect_ports_text: ports_text(&connect_ports).into(),
            connect_ports,
            allow_local,
            direct_hosts,
            intercept_hosts,
            intercept_targets,
            bypass,
            default_route,
            direct_hops: vec![Hop::Direct],
        })
    }

    /// The decision for a target from compiled rules and the static upstream source.
    pub fn decide(&self, target: &Target) -> Decision {
        let DefaultRoute::Fixed { hops, why } = &self.default_route;
        self.classify(target).finish(hops, why)
    }

    /// The decision including sources that need I/O (PAC, to come). What the handler calls.
    pub async fn resolve(&self, target: &Target) -> Result<Decision, ProxyError> {
        let verdict = self.classify(target);
        // A PAC source adds an arm here: only for `Verdict::ViaDefault`, await the evaluator for
        // this target's hops (and its explanation), then `finish` the verdict with them.
        let DefaultRoute::Fixed { hops, why } = &self.default_route;
        Ok(verdict.finish(hops, why))
    }

    /// Steps 1-7 of the precedence in the module doc.
    fn classify(&self, target: &Target) -> Verdict {
        let allowed_local = self.allow_local.find(target);
        let allow_local = allowed_local.is_some();
        let local = is_local(target);
        if let Some(refusal) = self.refusal(target, allow_local, local) {
            return Verdict::Final(refusal);
        }
        if let Some(m) = self.direct_hosts.find(target) {
            return Verdict::Final(self.direct(Action::Tunnel, m.why, allow_local));
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

    /// Steps 1-3: block rules, CONNECT ports, local destinations not allowed.
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

/// True for `localhost` names and loopback, unspecified or link-local IP literals.
fn is_local(target: &Target) -> bool {
    match &target.host {
        Host::Name(name) => is_local_name(name),
        Host::Ip(ip) => is_local_ip(*ip),
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

fn compile_ports(ports: &[u16], errors: &mut Vec<String>) -> Vec<u16> {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        errors.push(
            "connect_ports: empty, so every CONNECT would be refused (the usual value is [443])"
                .into(),
        );
    }
    if ports.first() == Some(&0) {
        errors.push("connect_ports: port 0 is not a valid destination".into());
    }
    ports
}

fn ports_text(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    ports.join(", ")
}

fn compile_default_route(config: &RouteConfig, errors: &mut Vec<String>) -> DefaultRoute {
    match &config.upstream {
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
            let why = if config.fallback_direct {
                hops.push(Hop::Direct);
                "static upstream, then DIRECT"
            } else {
                "static upstream"
            };
            DefaultRoute::Fixed {
                hops,
                why: why.into(),
            }
        }
    }
}

// Router tests live under rules/ (this module's test file is kept beside the matcher tests).
#[cfg(test)]
#[path = "rules/router_tests.rs"]
mod tests;
