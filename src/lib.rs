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
//! - [`route`]: POLICY, `Target` → `Decision` (rules, PAC, system settings, STS discovery).
//! - [`upstream`]: MECHANISM, dial through hops (direct, CONNECT chain, proxy auth, failover).
//! - [`listener`], [`handler`], [`tunnel`], [`forward`]: the request path.
//! - [`intercept`], [`inject`], [`token`]: TLS interception and token injection.
//! - [`admin`]: status page and served PAC.
//! - [`summary`]: the per-minute activity line at `info` (per-request lines are `debug`).
//! - [`cli`], [`app`]: command line and wiring.
//!
//! # Request flow
//!
//! ```text
//! client → listener → handler: parse → route::decide → upstream::dial (dial first, then 200)
//!        → tunnel (blind) | forward (http://) | intercept → inject token → forward over TLS
//! any error → handler::rescue → status + X-LocalProxy-Error + a message the user can act on
//! ```

pub mod admin;
pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod forward;
pub mod handler;
pub mod inject;
pub mod intercept;
pub mod listener;
pub mod peer;
mod platform;
pub mod route;
pub mod summary;
pub mod target;
pub mod token;
pub mod tunnel;
pub mod upstream;
