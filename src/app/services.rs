//! The shared services built from a [`Config`]: router, upstream dialer, the proxy's own outbound
//! client, the token manager and (when interception is on) the local CA and its leaf cache.
//!
//! Contract: [`Services::build`] is the one place that wires them, for the running proxy and for
//! the CLI commands that need tokens (`login`, `token`, `accounts`), so a token call from the CLI
//! takes exactly the route (corporate proxy, credentials, extra roots) the proxy would. A CA or
//! extra-roots problem is a [`StartError::Config`] naming the file and the fix.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ClientConfig;

use super::StartError;
use crate::client::OutboundClient;
use crate::config::Config;
use crate::intercept::{CaOrigin, InterceptState, LeafCache, LocalCa, crl_url};
use crate::route::Router;
use crate::tls_client::upstream_client_config;
use crate::token::{ManagerSettings, TokenManager};
use crate::upstream::Upstream;

/// Everything the request path and the token commands share.
pub struct Services {
    pub router: Arc<Router>,
    pub upstream: Arc<Upstream>,
    /// Verifying TLS towards real servers (system roots plus `tls.extra_roots`): the one outbound
    /// configuration, shared by interception, [`Services::client`] and PAC downloads.
    pub upstream_tls: Arc<ClientConfig>,
    /// The proxy's own HTTP(S) client (token calls, STS discovery).
    pub client: OutboundClient,
    pub tokens: TokenManager,
    /// The TLS-terminating side; `None` when interception is off.
    pub intercept: Option<Arc<InterceptState>>,
}

// === impl Services ===

impl Services {
    /// Wires everything for a proxy bound to `bound` (the CLI passes the configured addresses).
    pub async fn build(config: &Config, bound: &[SocketAddr]) -> Result<Services, StartError> {
        // One outbound TLS configuration for interception, the outbound client and PAC downloads.
        let upstream_tls = upstream_client_config(config.intercept.extra_roots.as_deref())
            .map_err(|e| StartError::Config(vec![format!("tls.extra_roots: {e}")]))?;
        let (router, upstream) = routing_parts(config, bound, &upstream_tls)
            .await
            .map_err(StartError::Config)?;
        let client = OutboundClient::new(router.clone(), upstream.clone(), upstream_tls.clone());
        let tokens = token_manager(config, &client)?;
        let intercept = if config.intercept.enabled {
            let port = bound.first().map_or(0, SocketAddr::port);
            let leaves = leaf_cache(config, port)?;
            Some(intercept_state(config, leaves, &upstream_tls, &tokens))
        } else {
            None
        };
        Ok(Services {
            router,
            upstream,
            upstream_tls,
            client,
            tokens,
            intercept,
        })
    }
}

/// The router and upstream dialer of `config` for a proxy bound to `bound` (start and reload).
pub(super) async fn routing_parts(
    config: &Config,
    bound: &[SocketAddr],
    upstream_tls: &Arc<ClientConfig>,
) -> Result<(Arc<Router>, Arc<Upstream>), Vec<String>> {
    let mut route = config.route.clone();
    route.source.set_pac_tls(upstream_tls.clone());
    let router = Arc::new(Router::start(route, bound).await?);
    let mut upstream_config = config.upstream.clone();
    upstream_config.own_addrs = bound.to_vec();
    Ok((router, Arc::new(Upstream::new(upstream_config))))
}

/// Interception over the CA's `leaves` and the running `tokens`, with `config`'s profiles and
/// default account (start and reload).
pub(super) fn intercept_state(
    config: &Config,
    leaves: Arc<LeafCache>,
    upstream_tls: &Arc<ClientConfig>,
    tokens: &TokenManager,
) -> Arc<InterceptState> {
    let state = InterceptState::new(leaves, upstream_tls.clone(), tokens.clone())
        .with_default_account(config.intercept.default_account.clone())
        .with_profiles(config.intercept.profiles.clone());
    Arc::new(state)
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("intercept", &self.intercept.is_some())
            .finish_non_exhaustive()
    }
}

/// The token manager over the outbound client, with every configured account registered.
fn token_manager(config: &Config, client: &OutboundClient) -> Result<TokenManager, StartError> {
    let tokens = TokenManager::new(
        Arc::new(client.clone()),
        Some(&config.state_dir),
        ManagerSettings::default(),
    )
    .map_err(|e| {
        StartError::Runtime(format!(
            "cannot open the token cache in {}: {e}",
            config.state_dir.display()
        ))
    })?;
    for account in &config.intercept.accounts {
        tokens.add_account(account.clone());
    }
    Ok(tokens)
}

/// Loads (or on first run creates) the local CA and tells the user where to find it.
fn leaf_cache(config: &Config, port: u16) -> Result<Arc<LeafCache>, StartError> {
    let domains = config.intercept.ca_domains();
    let (ca, origin) = LocalCa::load_or_create(&config.state_dir, &domains)
        .map_err(|e| StartError::Config(vec![e.to_string()]))?;
    if matches!(origin, CaOrigin::Created) {
        tracing::warn!(
            cert = %ca.files().cert.display(),
            "created a new local CA for the intercepted hosts; trust it once: `exoproxy ca export exoproxy-ca.pem` prints how"
        );
    }
    let crl = (port != 0).then(|| crl_url(port));
    Ok(Arc::new(LeafCache::new(Arc::new(ca), crl)))
}
