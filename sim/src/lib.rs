//! exosim: an emulator of Entra ID, Exchange Online (WS-Man and REST) and an ADFS-like STS, for
//! exoproxy's tests and demo.
//!
//! Tests start it in-process: [`Sim::start`] binds one HTTPS listener (127.0.0.1, port 0 by default)
//! that answers for every emulated host, routed by `Host`/SNI; clients reach it with
//! `--connect-to`-style address overrides and trust [`Sim::ca_pem`]. [`Sim::control`] drives the
//! scenarios (approve device codes, revoke, faults, CAE...). The `exosim` binary wraps the same library.
//!
//! # Layout
//! - `server`: listener, TLS (SNI peek for the "refuse" fault), routing by host.
//! - `ca`: the emulator CA and its leaf. `jwt`: RS256 tokens with a fixed key (`keys/`).
//! - `entra/`: discovery, JWKS, devicecode, token grants, authorize, client assertions, errors.
//! - `userrealm`: home-realm discovery. `sts`: the federated STS host.
//! - `control`: the [`Control`] handle and its HTTP mirror on the control host.
//! - `state`: mutable state behind one lock. `config`: [`SimConfig`] and its defaults;
//!   `config_file`: the binary's optional TOML additions.
//! - `exchange/`: the Exchange Online side.

mod ca;
pub mod config;
pub mod config_file;
mod control;
mod entra;
pub mod exchange;
mod ids;
mod jwt;
mod server;
mod state;
mod sts;
mod userrealm;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Client, ClientCredential, Domain, SimConfig, Tenant, User};
pub use control::Control;
pub use jwt::Signer;
pub use state::{Counters, GrantType, LoginFault};

/// Errors starting or driving the emulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("certificate: {0}")]
    Cert(String),
    #[error("key: {0}")]
    Key(String),
    #[error("config: {0}")]
    Config(String),
    #[error("control: {0}")]
    Control(String),
}

/// A running emulator.
#[derive(Debug)]
pub struct Sim {
    addr: SocketAddr,
    ca_pem: String,
    control: Control,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

// === impl Sim ===

impl Sim {
    /// Generate the CA, bind `config.listen`, and serve until [`Sim::shutdown`] (or drop).
    pub async fn start(config: SimConfig) -> Result<Sim, Error> {
        let authority = ca::generate(&config.cert_names())?;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(state::Shared::new(config, Signer::new()?));
        let (shutdown, watch) = watch::channel(false);
        let tls = server::Tls {
            trusted: authority.server_config,
            untrusted: authority.untrusted_config,
        };
        let task = tokio::spawn(server::run(listener, tls, shared.clone(), watch));
        Ok(Sim {
            addr,
            ca_pem: authority.ca_pem,
            control: Control::new(shared),
            shutdown,
            task: Some(task),
        })
    }

    /// The address the listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the emulator CA (trust it to reach any emulated host).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The control handle.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Stop accepting, close every connection, and wait until the server task has ended.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let Some(task) = self.task.take() else { return };
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "exosim server task failed");
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // A test that forgets shutdown() still frees the port.
        let _ = self.shutdown.send(true);
    }
}
