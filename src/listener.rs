//! Accept loop: connection limit, hyper HTTP/1 with upgrades, graceful drain.
//!
//! Contract: [`serve`] takes already-bound listeners (tests bind port 0) and runs until `shutdown`
//! completes; then it stops accepting and waits up to [`Limits::drain_timeout`] for connections in
//! flight. At most [`Limits::max_connections`] connections are served at once. At the limit, the
//! oldest *idle* connection (accepted at least [`Limits::evict_idle_after`] ago and still waiting
//! for its request head: no request in flight, no tunnel) is closed to admit the new one, so a
//! client holding many idle keep-alive connections
//! cannot lock everyone else out (docs/TESTING.md#load-5). When every connection is
//! busy, the new one gets a quick 503 `overloaded` and is closed, so overload never crashes or
//! queues without bound.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

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
    let idle = Arc::new(IdleConnections::new(limits.evict_idle_after));
    let trim = Arc::new(Trim {
        low: limits.max_connections.into(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let slots = Slots {
            permits: permits.clone(),
            idle: idle.clone(),
            trim: trim.clone(),
        };
        accept_tasks.spawn(accept_loop(listener, state.clone(), slots, stop_rx.clone()));
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

/// The connection slots: the permits of the limit, and the connections that could give theirs up.
#[derive(Clone)]
struct Slots {
    permits: Arc<Semaphore>,
    idle: Arc<IdleConnections>,
    trim: Arc<Trim>,
}

/// Gives freed heap back to the OS after many connections closed. glibc keeps the memory of closed
/// connections (interleaved with live ones) in its arenas: 2 000 idle tunnels that closed left RSS
/// at twice the baseline and more (BENCHMARKS.md, idle tunnels). `malloc_trim` returns the free
/// pages; it runs once the number of free slots rose by [`Trim::EVERY`] since the last trim.
#[derive(Default)]
struct Trim {
    /// Free slots at the last trim (or the lowest seen since).
    low: std::sync::atomic::AtomicUsize,
}

// === impl Trim ===

impl Trim {
    const EVERY: usize = 256;

    fn connection_closed(&self, free: usize) {
        use std::sync::atomic::Ordering;
        let low = self.low.fetch_min(free, Ordering::Relaxed).min(free);
        if free >= low + Self::EVERY
            && self
                .low
                .compare_exchange(low, free, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tokio::task::spawn_blocking(release_free_heap);
        }
    }

    /// Called on accept: the free-slot count only matters relative to its lowest point.
    fn connection_opened(&self, free: usize) {
        self.low
            .fetch_min(free, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `malloc_trim(0)`: glibc returns whole free pages of every arena to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // documented exception (Cargo.toml [lints.rust]): a libc call with no pointers
fn release_free_heap() {
    // SAFETY: malloc_trim takes a size and touches only the allocator's own state, under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}

/// Every open connection in accept order, with the handle that closes it while it waits for its
/// request head and when it was accepted. The handle's receiver is dropped once the head arrived
/// (`serve_connection`), so a closed handle marks a busy connection.
struct IdleConnections {
    next: std::sync::atomic::AtomicU64,
    open: Mutex<BTreeMap<u64, (oneshot::Sender<()>, Instant)>>,
    /// Only connections silent this long are idle; a younger one is still sending its request.
    min_age: Duration,
}

// === impl IdleConnections ===

impl IdleConnections {
    fn new(min_age: Duration) -> Self {
        IdleConnections {
            next: 0.into(),
            open: Mutex::default(),
            min_age,
        }
    }

    fn register(&self) -> (u64, oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, (tx, Instant::now()));
        }
        (id, rx)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }

    /// Closes the oldest connection that has waited for its head at least `min_age`; false when
    /// none is idle.
    fn evict_oldest(&self) -> bool {
        let Ok(mut open) = self.open.lock() else {
            return false;
        };
        let idle = open
            .iter()
            .find(|(_, (tx, since))| !tx.is_closed() && since.elapsed() >= self.min_age)
            .map(|(id, _)| *id);
        match idle.and_then(|id| open.remove(&id)) {
            Some((tx, _)) => tx.send(()).is_ok(),
            None => false,
        }
    }
}

/// One connection's hold on its slot, released when the connection's task ends, also by a panic
/// (docs/TESTING.md#sec-20): a panicked connection must not stay listed as open.
struct Slot {
    slots: Slots,
    id: u64,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.idle.remove(self.id);
        drop(self.permit.take());
        self.slots
            .trim
            .connection_closed(self.slots.permits.available_permits());
    }
}

// === impl Slots ===

impl Slots {
    /// A permit at once, or after closing the oldest idle connection (which returns its permit as
    /// soon as its task sees the signal); `None` when every connection is busy.
    async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        while self.idle.evict_oldest() {
            let wait =
                tokio::time::timeout(Duration::from_secs(1), self.permits.clone().acquire_owned());
            if let Ok(Ok(permit)) = wait.await {
                return Some(permit);
            }
        }
        None
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<Proxy>,
    slots: Slots,
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
        let (state, stop_rx, slots) = (state.clone(), stop_rx.clone(), slots.clone());
        // Spawned: waiting for an evicted connection's permit must not hold up the accept loop.
        tokio::spawn(async move {
            let Some(permit) = slots.acquire().await else {
                // Stopping: the drain holds every free permit, so this is not an overload.
                let why = match *stop_rx.borrow() {
                    true => "the proxy is shutting down",
                    false => "too many open connections",
                };
                return refuse_overloaded(stream, peer, why).await;
            };
            slots
                .trim
                .connection_opened(slots.permits.available_permits());
            let (id, evict) = slots.idle.register();
            let _slot = Slot {
                slots,
                id,
                permit: Some(permit),
            };
            state.serve_connection(stream, peer, stop_rx, evict).await;
        });
    }
}

/// Answers 503 without reading the request, within a short bound.
async fn refuse_overloaded(mut stream: TcpStream, peer: SocketAddr, why: &str) {
    let err = ProxyError::Overloaded(why.into());
    tracing::warn!(%peer, reason = why, "connection refused: 503");
    let rescue = Rescue::of(&err);
    crate::summary::request(rescue.status.as_u16());
    let reply = rescue.to_http1();
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&reply)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection task that panics gives back its permit and leaves the idle list
    /// (docs/TESTING.md#sec-20); before the guard, its entry stayed listed forever.
    #[tokio::test]
    async fn sec_20_a_panicking_connection_releases_its_slot() {
        let slots = Slots {
            permits: Arc::new(Semaphore::new(1)),
            idle: Arc::new(IdleConnections::new(Duration::ZERO)),
            trim: Arc::new(Trim::default()),
        };
        let permit = slots.permits.clone().try_acquire_owned().unwrap();
        let (id, _evict) = slots.idle.register();
        let held = slots.clone();
        let task = tokio::spawn(async move {
            let _slot = Slot {
                slots: held,
                id,
                permit: Some(permit),
            };
            panic!("injected");
        });
        assert!(task.await.unwrap_err().is_panic());
        assert_eq!(slots.permits.available_permits(), 1);
        assert!(slots.idle.open.lock().unwrap().is_empty());
    }
}
