//! What the interception path shares across all connections: the leaf cache of the local CA, the
//! verifying TLS config for the real hosts, the token manager, the default account and the cloud
//! profiles.
//!
//! Contract: built once at start-up (`app::services`) and never changed; every intercepted
//! connection holds an `Arc` of it. It holds no per-connection state. Its `Debug` names the leaf
//! cache and the default account only, never a token.

use std::sync::Arc;

use rustls::ClientConfig;

use super::LeafCache;
use crate::inject::{self, Profile};
use crate::token::{Audience, Cloud, TokenManager};

/// What the interception path needs, built once in `app.rs` and shared by every connection.
pub struct InterceptState {
    /// Minted leaves for the client side.
    leaves: Arc<LeafCache>,
    /// Verifying TLS config for the real hosts (system roots plus extra roots).
    upstream_tls: Arc<ClientConfig>,
    /// Where tokens come from.
    tokens: TokenManager,
    /// Account for requests that name none (no Basic user, anchor or bearer UPN).
    default_account: Option<String>,
    /// Cloud profiles: host → audience (TOK-11).
    profiles: Vec<Profile>,
}

// === impl InterceptState ===

impl InterceptState {
    /// `leaves`: the local CA's leaf cache; `upstream_tls`: from
    /// [`crate::tls_client::upstream_client_config`]; `tokens`: the token manager.
    pub fn new(
        leaves: Arc<LeafCache>,
        upstream_tls: Arc<ClientConfig>,
        tokens: TokenManager,
    ) -> InterceptState {
        InterceptState {
            leaves,
            upstream_tls,
            tokens,
            default_account: None,
            profiles: inject::profiles(),
        }
    }

    /// The account used when a request names none.
    pub fn with_default_account(mut self, upn: Option<String>) -> InterceptState {
        self.default_account = upn;
        self
    }

    /// Replaces the built-in cloud profiles (configured names and hosts).
    pub fn with_profiles(mut self, profiles: Vec<Profile>) -> InterceptState {
        self.profiles = profiles;
        self
    }

    /// The leaf cache (for the admin page and tests: minted-certificate counts).
    pub fn leaves(&self) -> &Arc<LeafCache> {
        &self.leaves
    }

    /// The verifying TLS config for the real hosts.
    pub(crate) fn upstream_tls(&self) -> &Arc<ClientConfig> {
        &self.upstream_tls
    }

    /// The token manager.
    pub(crate) fn tokens(&self) -> &TokenManager {
        &self.tokens
    }

    /// The account for requests that name none.
    pub(crate) fn default_account(&self) -> Option<&str> {
        self.default_account.as_deref()
    }

    /// The token audience for `host` under `profile`; the named profile first, then any cloud.
    pub(crate) fn audience_for(&self, profile: &str, host: &str) -> Option<Audience> {
        let named = self.profiles.iter().find(|p| p.name == profile);
        let from_profiles = named
            .and_then(|p| p.audience_for(host))
            .or_else(|| self.profiles.iter().find_map(|p| p.audience_for(host)));
        from_profiles
            .map(Audience::new)
            .or_else(|| Cloud::Global.audience_for_host(host))
    }
}

impl std::fmt::Debug for InterceptState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterceptState")
            .field("leaves", &self.leaves)
            .field("default_account", &self.default_account)
            .finish_non_exhaustive()
    }
}
