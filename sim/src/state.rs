//! The emulator's mutable state: pending device codes, authorization codes, refresh tokens, per-user
//! revocation times, fault plans, counters and who counts as "a proxy". One `std::sync::Mutex`, never held
//! across an `.await`; handlers take it briefly through [`Shared::with`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::{Client, SimConfig};
use crate::exchange::Exchange;
use crate::jwt::Signer;

/// Everything a request handler needs: immutable config, the signer, Exchange and the mutable state.
/// Its `Debug` leaves the state out: it holds live refresh tokens and codes (SEC-19).
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) signer: Signer,
    pub(crate) exchange: Exchange,
    state: Mutex<State>,
}

/// Mutable state behind the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) token_lifetime: Duration,
    pub(crate) auto_approve: bool,
    /// Sign in as this user whatever the hint says (wrong-user guard tests).
    pub(crate) sign_in_as: Option<String>,
    /// Device codes in issue order: the last one is "the latest".
    pub(crate) devices: Vec<DeviceGrant>,
    pub(crate) auth_codes: HashMap<String, AuthCode>,
    pub(crate) refresh_tokens: HashMap<String, RefreshRecord>,
    /// Lower-cased UPN → refresh tokens issued before this instant are revoked (Entra's TokensValidFrom).
    pub(crate) valid_from: HashMap<String, SystemTime>,
    /// Answer every refresh_token grant with `invalid_grant` and this AADSTS code.
    pub(crate) refresh_error: Option<u32>,
    /// Lower-cased resource → refuse every token for it with this AADSTS code (70011, 650057, 500011).
    pub(crate) scope_errors: HashMap<String, u32>,
    /// Answer the next polls with `slow_down`.
    pub(crate) slow_down_polls: u32,
    pub(crate) fault: Option<FaultPlan>,
    pub(crate) token_delay: Option<Duration>,
    pub(crate) counters: Counters,
    pub(crate) proxied: ProxiedPeers,
    /// Clients registered at run time, looked up after the configured ones.
    pub(crate) extra_clients: Vec<Client>,
}

/// One device authorization (RFC 8628).
#[derive(Debug, Clone)]
pub(crate) struct DeviceGrant {
    pub(crate) device_code: String,
    pub(crate) user_code: String,
    pub(crate) client_id: String,
    pub(crate) scope: String,
    pub(crate) claims: Option<String>,
    pub(crate) expires: Instant,
    pub(crate) status: DeviceStatus,
}

/// Where a device code stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Pending,
    Approved(String),
    Declined,
    /// Tokens were issued; the code cannot be used again.
    Redeemed,
}

/// An authorization code waiting to be redeemed (RFC 6749 §4.1, PKCE RFC 7636).
#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: Option<String>,
    pub(crate) upn: String,
    pub(crate) scope: String,
    pub(crate) claims: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) expires: Instant,
    pub(crate) redeemed: bool,
}

/// What a refresh token stands for. Refresh tokens are bound to user + client, not to a resource.
#[derive(Debug, Clone)]
pub(crate) struct RefreshRecord {
    pub(crate) upn: String,
    pub(crate) client_id: String,
    pub(crate) scope: String,
    pub(crate) issued: SystemTime,
    pub(crate) expires: SystemTime,
}

/// A fault on the login host's POST endpoints (token, devicecode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFault {
    /// Answer with this HTTP status (5xx) and an Entra-shaped `temporarily_unavailable` body.
    Status(u16),
    /// 429 with `Retry-After` in whole seconds.
    Throttle(Duration),
    /// Close the connection right after the TLS ClientHello for every login host.
    Refuse,
    /// Present a self-signed certificate (not from the emulator CA) on the login hosts (TLS-2).
    UntrustedCertificate,
}

/// A fault and how many more times it fires (`None`: until cleared).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FaultPlan {
    pub(crate) fault: LoginFault,
    pub(crate) remaining: Option<u32>,
}

/// The token endpoint grant types, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    DeviceCode,
    RefreshToken,
    ClientCredentials,
    AuthorizationCode,
    /// Anything else (answered `unsupported_grant_type`).
    Other,
}

/// Calls seen, for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub devicecode_requests: u64,
    pub token_requests: u64,
    pub device_code_grants: u64,
    pub refresh_token_grants: u64,
    pub client_credentials_grants: u64,
    pub authorization_code_grants: u64,
    pub other_grants: u64,
    pub authorize_requests: u64,
    pub userrealm_requests: u64,
    pub sts_direct: u64,
    pub sts_proxied: u64,
    /// Login-host connections closed by [`LoginFault::Refuse`].
    pub refused_connections: u64,
    /// Token/devicecode requests answered by a fault instead of the endpoint.
    pub faults_served: u64,
}

/// Which peers count as "the request came through a proxy" at the STS.
#[derive(Default)]
pub(crate) struct ProxiedPeers {
    pub(crate) ports: Vec<u16>,
    pub(crate) addrs: Vec<IpAddr>,
    pub(crate) predicate: Option<Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>>,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(config: SimConfig, signer: Signer) -> Shared {
        let state = State::new(&config);
        let exchange = Exchange::new(config.exchange.clone());
        Shared {
            config,
            signer,
            exchange,
            state: Mutex::new(state),
        }
    }

    /// Run `f` with the state locked. A poisoned lock is recovered: the state stays usable for tests.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        match self.state.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// A registered client: configured first, then those added at run time.
    pub(crate) fn client(&self, id: &str) -> Option<Client> {
        let id = id.trim().to_ascii_lowercase();
        if let Some(c) = self.config.clients.iter().find(|c| c.id == id) {
            return Some(c.clone());
        }
        self.with(|s| s.extra_clients.iter().find(|c| c.id == id).cloned())
    }

    /// Whether a connection from `peer` counts as proxied.
    pub(crate) fn peer_is_proxy(&self, peer: SocketAddr) -> bool {
        self.with(|s| {
            let p = &s.proxied;
            p.ports.contains(&peer.port())
                || p.addrs.contains(&peer.ip())
                || p.predicate.as_ref().is_some_and(|f| f(peer))
        })
    }
}

// === impl State ===

impl State {
    fn new(config: &SimConfig) -> State {
        State {
            token_lifetime: config.token_lifetime,
            auto_approve: config.auto_approve,
            sign_in_as: None,
            devices: Vec::new(),
            auth_codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            valid_from: HashMap::new(),
            refresh_error: None,
            scope_errors: HashMap::new(),
            slow_down_polls: 0,
            fault: None,
            token_delay: None,
            counters: Counters::default(),
            proxied: ProxiedPeers {
                ports: config.proxy_source_ports.clone(),
                addrs: config.proxy_source_addrs.clone(),
                predicate: None,
            },
            extra_clients: Vec::new(),
        }
    }

    /// Take one firing of the current fault, if there is one and `wanted` accepts it.
    pub(crate) fn take_fault(
        &mut self,
        wanted: impl Fn(&LoginFault) -> bool,
    ) -> Option<LoginFault> {
        let plan = self.fault.as_mut()?;
        let fault = plan.fault;
        if !wanted(&fault) {
            return None;
        }
        match plan.remaining.as_mut() {
            Some(0) => {
                self.fault = None;
                return None;
            }
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.fault = None;
                }
            }
            None => {}
        }
        Some(fault)
    }

    pub(crate) fn count_grant(&mut self, grant: GrantType) {
        let c = &mut self.counters;
        match grant {
            GrantType::DeviceCode => c.device_code_grants += 1,
            GrantType::RefreshToken => c.refresh_token_grants += 1,
            GrantType::ClientCredentials => c.client_credentials_grants += 1,
            GrantType::AuthorizationCode => c.authorization_code_grants += 1,
            GrantType::Other => c.other_grants += 1,
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ProxiedPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxiedPeers")
            .field("ports", &self.ports)
            .field("addrs", &self.addrs)
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(&SimConfig::default())
    }

    #[test]
    fn counted_fault_fires_exactly_that_many_times() {
        let mut s = state();
        s.fault = Some(FaultPlan {
            fault: LoginFault::Status(503),
            remaining: Some(2),
        });
        let any = |_: &LoginFault| true;
        assert_eq!(s.take_fault(any), Some(LoginFault::Status(503)));
        assert_eq!(s.take_fault(any), Some(LoginFault::Status(503)));
        assert_eq!(s.take_fault(any), None);
    }

    #[test]
    fn a_fault_of_another_kind_is_left_in_place() {
        let mut s = state();
        s.fault = Some(FaultPlan {
            fault: LoginFault::Refuse,
            remaining: None,
        });
        assert_eq!(s.take_fault(|f| *f != LoginFault::Refuse), None);
        assert_eq!(
            s.take_fault(|f| *f == LoginFault::Refuse),
            Some(LoginFault::Refuse)
        );
        assert!(s.fault.is_some(), "an uncounted fault stays until cleared");
    }
}
