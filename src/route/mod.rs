//! POLICY: turns a [`Target`] into a [`Decision`]. Never opens sockets to targets; `upstream` consumes
//! the decision.
//!
//! Contract (interface fixed; implementation in progress):
//! - [`Router::new`] compiles a [`RouteConfig`] once; errors name the offending entry.
//! - [`Router::decide`] is pure and synchronous over compiled rules (≤ 1 µs target); the async
//!   [`Router::resolve`] adds sources that need I/O (PAC evaluation), and is what the handler calls.
//! - The proxy's own environment never changes routing unless `UpstreamSource::Env` is chosen.

pub mod pac;
pub mod rules;
pub mod sts;
pub mod system;

use crate::error::ProxyError;
use crate::target::{Decision, ProxyEndpoint, Target};

/// Where the default upstream hops come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UpstreamSource {
    /// No upstream proxy: everything DIRECT.
    #[default]
    Direct,
    /// The ordered list of proxies in config (`upstream.proxies`), tried left to right.
    Static(Vec<ProxyEndpoint>),
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` read once at start (explicit opt-in).
    Env,
}

/// Typed routing configuration, built by `config::validate`.
#[derive(Debug, Clone, Default)]
pub struct RouteConfig {
    /// Default upstream for targets no rule sends elsewhere.
    pub upstream: UpstreamSource,
    /// When the upstream is a proxy, also try DIRECT after every proxy failed (`PROXY a; DIRECT`).
    pub fallback_direct: bool,
    /// WinHTTP/IE-style bypass list (`<local>`, `*.corp.example`, `10.*`, `192.168.0.0/16`): DIRECT.
    pub bypass: Vec<String>,
    /// Hosts always reached DIRECT (STS/ADFS and the like): exact names or `*.suffix`.
    pub direct_hosts: Vec<String>,
    /// Hosts or CIDRs refused outright with a reason.
    pub block: Vec<String>,
    /// Ports a CONNECT may target (default: 443 only).
    pub connect_ports: Vec<u16>,
    /// Targets (hosts, `*.suffix`, CIDRs) allowed to resolve to loopback/link-local addresses.
    pub allow_local: Vec<String>,
}

/// Compiled routing policy.
#[derive(Debug)]
pub struct Router {}

impl Router {
    /// Compiles the configuration; every invalid entry is reported.
    pub fn new(_config: RouteConfig) -> Result<Router, Vec<String>> {
        Ok(Router {})
    }

    /// The decision for a target from compiled rules and the static/env upstream source.
    pub fn decide(&self, target: &Target) -> Decision {
        Decision::direct(format!("no rules yet for {target}"))
    }

    /// The decision including sources that need I/O (PAC). What the handler calls.
    pub async fn resolve(&self, target: &Target) -> Result<Decision, ProxyError> {
        Ok(self.decide(target))
    }
}
