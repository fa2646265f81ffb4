//! TLS interception: the local CA, leaf minting and the TLS configs for both sides.
//!
//! - [`ca`]: the per-install, name-constrained local CA (create/load/regenerate, leaves, CRL, export).
//! - [`leaf_cache`]: bounded LRU of minted leaves with a minting rate limit (CA-8).
//! - [`tls`]: the client-facing `ServerConfig` for one CONNECT host (BAD-15), the upstream
//!   `ClientConfig` (system roots + extra roots, never insecure: TLS-3, TLS-5), and the mapping of
//!   handshake failures to stable `upstream_tls_<kind>` names (FLT-8).
//! - [`rewind`]: peek at the first bytes inside a CONNECT to see a TLS ClientHello, then replay them.

pub mod ca;
pub mod leaf_cache;
pub mod rewind;
pub mod tls;

pub use ca::{CaError, CaFiles, CaOrigin, LocalCa, TrustInstructions, crl_url};
pub use leaf_cache::LeafCache;
pub use rewind::{Peeked, Rewind, peek_client_hello};
pub use tls::{TlsFailureKind, classify_tls_error, server_config_for_host, upstream_client_config};
