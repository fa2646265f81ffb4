//! exoproxy: a local authenticating forward proxy for Exchange Online administration.
//!
//! It intercepts TLS only to the Exchange and Security & Compliance hosts, injects an Entra ID token
//! into every request there and renews it ahead of expiry, chains all other traffic to the corporate
//! proxy, and sends the company's STS hosts DIRECT.
//!
//! # Layout
//!
//! - [`target`]: shared vocabulary (`Target`, `Host`, `Decision`, `Hop`, `ProxyEndpoint`).
//! - [`error`]: the catalogue of conditions reported to clients; [`handler::rescue`] renders them.
//! - [`config`]: TOML mirror → validated, typed configuration.
//! - [`route`]: POLICY, `Target` → `Decision` ([`route::Router::decide`]: rules, PAC, system
//!   settings, STS discovery).
//! - [`upstream`]: MECHANISM, dial through hops (direct, CONNECT chain, proxy auth, failover).
//! - The request path: [`listener`] (accept loop, connection limit, drain) → [`handler`]
//!   (per-connection flow: head guard, decide, dial, then [`tunnel`], [`forward`] or the
//!   intercepted session), with [`limits`] (the client-side limits all of them read) and [`io`]
//!   (the stream adapters: rewind, idle timeout).
//! - [`intercept`]: what an intercepted connection stands on: the local CA and leaves, the
//!   client-facing TLS config, ClientHello peek, the shared [`intercept::InterceptState`], the
//!   verified connection to the real host ([`intercept::Origin`]) and replayable request bodies.
//! - [`inject`], [`token`]: which requests get a token, which account, how it is written, when the
//!   host rejected it; acquiring and renewing tokens.
//! - [`client`], [`tls_client`]: the proxy's own outbound HTTP(S) client and its one TLS configuration.
//! - [`admin`]: status page and served PAC.
//! - [`summary`]: the per-minute activity line at `info` (per-request lines are `debug`).
//! - [`cli`], [`app`]: command line and wiring.
//!
//! # Request flow
//!
//! ```text
//! client → listener → handler: head guard → route::Router::decide → Block: 403
//!        → upstream::connect (dial first, then 200)
//!        → tunnel (blind) | forward (http://)
//!        | intercept: peek ClientHello, TLS both sides (intercept::Origin), per request:
//!          inject::classify (once) → token → intercept::Origin::send → 401/claims: replay once
//! any error → handler::rescue → status + X-LocalProxy-Error + a message the user can act on
//! ```

pub mod admin;
pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod desktop;
pub mod doctor;
pub mod error;
pub mod forward;
pub mod handler;
pub mod inject;
pub mod intercept;
pub mod io;
pub mod limits;
pub mod listener;
pub mod peer;
mod platform;
pub mod route;
pub mod summary;
pub mod target;
pub mod tls_client;
pub mod token;
pub mod tunnel;
pub mod upstream;
