//! Accept loop: connection limit, hyper HTTP/1 with upgrades, graceful drain.
//!
//! Contract: [`serve`] takes already-bound listeners (tests bind port 0) and runs until `shutdown`
//! completes; then it stops accepting and waits up to [`Limits::drain_timeout`] for connections in
//! flight. At most [`Limits::max_connections`] connections are served at once; excess connections get
//! a quick 503 `overloaded` and are closed, so overload never crashes or queues without bound.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::error::ProxyError;
use crate::handler::Proxy;
use crate::handler::rescue::Rescue;
use crate::limits::Limits;

/// Serves every listener until `shutdown` completes, then drains.
pub async fn serve(
    listeners: Vec<TcpListener>,
    state: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = state.limits().clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let (state, permits, stop_rx) = (state.clone(), permits.clone(), stop_rx.clone());
        accept_tasks.spawn(accept_loop(listener, state, permits, stop_rx));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    accept_tasks.shutdown().await;
    drain(&permits, &limits).await;
}

/// Waits until every connection returned its permit, or the drain timeout passed.
async fn drain(permits: &Semaphore, limits: &Limits) {
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.drain_timeout, permits.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!(
            open = limits.max_connections - permits.available_permits(),
            "drain timeout: closing connections still open"
        );
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<Proxy>,
    permits: Arc<Semaphore>,
    stop_rx: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let (state, stop_rx) = (state.clone(), stop_rx.clone());
                tokio::spawn(async move {
                    state.serve_connection(stream, peer, stop_rx).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tokio::spawn(refuse_overloaded(stream, peer));
            }
        }
    }
}

/// Answers 503 without reading the request, within a short bound.
async fn refuse_overloaded(mut stream: TcpStream, peer: SocketAddr) {
    let err = ProxyError::Overloaded("too many open connections".into());
    tracing::warn!(%peer, "connection limit reached: 503");
    let reply = Rescue::of(&err).to_http1();
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&reply)).await;
}
