//! Tokens: sign-in flows, the on-disk cache, the refresh schedule and per-account state.
//!
//! # Layout
//!
//! - [`secret`]: redacting, zeroizing newtypes for tokens, codes and keys.
//! - [`oauth`]: sans-IO OAuth 2.0 / OIDC (build `http::Request`, parse `http::Response`).
//! - [`transport`]: the injected HTTP seam ([`Transport`]); the lead wires it over the upstream chain.
//! - [`account`]: account configuration, client ids, audiences.
//! - [`jwt`]: unverified claim reading (expiry, audience, user) of received tokens.
//! - [`schedule`]: pure refresh timing and retry backoff.
//! - [`cache`]: the owner-only, atomic, quarantining on-disk cache.
//! - [`loopback`]: the browser flow's redirect listener.
//! - [`manager`]: [`TokenManager`], the API the proxy and CLI call.
//! - [`error`]: [`TokenError`], convertible into the proxy's error catalogue.

pub mod account;
pub mod cache;
pub mod error;
pub mod jwt;
pub mod loopback;
pub mod manager;
pub mod oauth;
pub mod schedule;
pub mod secret;
pub mod transport;

pub use account::{AccountConfig, Audience, ClientKind, Cloud, Flow};
pub use error::{DevicePrompt, TokenError};
pub use manager::{
    AccountStatus, AccountSummary, LoginHandle, ManagerSettings, SignInPrompt, TokenManager,
};
pub use transport::{BoxFuture, Transport, TransportError};
