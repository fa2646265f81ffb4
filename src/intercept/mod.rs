//! TLS interception: the local CA, leaf minting, the client-facing TLS config, and the parts of an
//! intercepted connection below the handler's per-connection flow (`handler::intercept`).
//!
//! - [`ca`]: the per-install, name-constrained local CA (create/load/regenerate, leaves, CRL, export).
//! - [`leaf_cache`]: bounded LRU of minted leaves with a minting rate limit (CA-8).
//! - [`tls`]: the client-facing `ServerConfig` for one CONNECT host (BAD-15) and the mapping of
//!   handshake failures to stable `upstream_tls_<kind>` names (FLT-8). The upstream side uses the
//!   proxy's one outbound configuration, [`crate::tls_client`].
//! - [`peek`]: peek at the first bytes inside a CONNECT to see a TLS ClientHello, then replay them
//!   (with [`crate::io::Rewind`]).
//! - [`state`]: [`InterceptState`], what every intercepted connection shares (leaves, upstream TLS
//!   config, token manager, default account, cloud profiles).
//! - [`origin`]: the verified HTTP/1.1 connection to the real host, redialled once (FLT-7).
//! - [`body`]: request bodies buffered for one replay up to [`body::REPLAY_LIMIT`], streamed above.
//!
//! # Wiring (the handler's side)
//!
//! ```text
//! startup:  let (ca, _) = LocalCa::load_or_create(&state_dir, &intercepted_domains)?;   // CaError → exit with its message
//!           let leaves = Arc::new(LeafCache::new(Arc::new(ca), Some(crl_url(listen_port))));
//!           let upstream = tls_client::upstream_client_config(cfg.tls.extra_roots.as_deref())?;
//! CONNECT:  dial upstream, answer 200, then
//!           let peeked = peek_client_hello(client_io).await?;          // under the first-byte timeout
//!           if !peeked.is_client_hello { refuse: not TLS }
//!           let config = server_config_for_host(&leaves, connect_host)?; // CaError → ProxyError via From
//!           let tls = TlsAcceptor::from(config).accept(peeked.stream).await?;
//! upstream: let origin = Origin::new(upstream, state.upstream_tls, target, decision, limits);
//!           let driver = origin.open(tcp).await?;  // TLS verified; 502 upstream_tls_<kind>
//! request:  body::prepare(body, stream_idle) → origin.send(req) → inject::rejection(..) → replay once
//! CRL:      GET {CRL_PATH} → 200, Content-Type {CRL_CONTENT_TYPE}, body ca.crl_der()
//! ```

pub mod body;
pub mod ca;
pub mod leaf_cache;
pub mod origin;
pub mod peek;
pub mod state;
pub mod tls;

pub use ca::{CaError, CaFiles, CaOrigin, LocalCa, TrustInstructions, crl_url};
pub use leaf_cache::LeafCache;
pub use origin::Origin;
pub use peek::{Peeked, peek_client_hello};
pub use state::InterceptState;
pub use tls::{TlsFailureKind, classify_tls_error, server_config_for_host};
