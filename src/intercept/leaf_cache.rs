//! Cache of minted leaf certificates, ready for rustls, with a minting rate limit (CA-8).
//!
//! Contract: at most [`CACHE_CAPACITY`] hosts are kept (least recently used is evicted); a cached
//! leaf is reused until it has less than [`RENEW_BEFORE`] of validity left; at most
//! [`MINTS_PER_SECOND`] leaves are minted in any one-second window, beyond that
//! [`CaError::RateLimited`] (a flood of CONNECTs to distinct hosts cannot burn CPU on signing).
//! The lock is held while minting so two connections to the same new host mint once.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

use super::ca::{CaError, LocalCa, normalise_dns_name};

/// Most hosts kept in the cache.
pub const CACHE_CAPACITY: usize = 100;
/// Most leaves minted per second.
pub const MINTS_PER_SECOND: usize = 10;
/// A cached leaf with less validity than this left is replaced.
pub const RENEW_BEFORE: time::Duration = time::Duration::days(1);

/// Shared cache of leaves signed by one CA.
pub struct LeafCache {
    ca: Arc<LocalCa>,
    crl_url: Option<String>,
    state: Mutex<CacheState>,
}

struct CacheState {
    leaves: LruCache<String, CachedLeaf>,
    recent_mints: VecDeque<Instant>,
}

#[derive(Clone)]
struct CachedLeaf {
    key: Arc<CertifiedKey>,
    not_after: OffsetDateTime,
}

// === impl LeafCache ===

impl LeafCache {
    /// A cache whose leaves carry `crl_url` as their CRL distribution point (when given).
    pub fn new(ca: Arc<LocalCa>, crl_url: Option<String>) -> Self {
        let capacity = NonZeroUsize::new(CACHE_CAPACITY).unwrap_or(NonZeroUsize::MIN);
        Self {
            ca,
            crl_url,
            state: Mutex::new(CacheState {
                leaves: LruCache::new(capacity),
                recent_mints: VecDeque::with_capacity(MINTS_PER_SECOND),
            }),
        }
    }

    /// The CA this cache mints with.
    pub fn ca(&self) -> &Arc<LocalCa> {
        &self.ca
    }

    /// The certificate and key for `host`: cached, or minted now.
    pub fn get(&self, host: &str) -> Result<Arc<CertifiedKey>, CaError> {
        self.get_at(host, Instant::now(), OffsetDateTime::now_utc())
    }

    /// [`Self::get`] with explicit clocks: `tick` drives the rate limit, `now` the validity.
    pub fn get_at(
        &self,
        host: &str,
        tick: Instant,
        now: OffsetDateTime,
    ) -> Result<Arc<CertifiedKey>, CaError> {
        let host = normalise_dns_name(host)?;
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(leaf) = state.leaves.get(&host)
            && leaf.not_after - now > RENEW_BEFORE
        {
            return Ok(leaf.key.clone());
        }
        state.take_mint_slot(tick)?;
        let leaf = self.mint(&host, now)?;
        state.leaves.put(host, leaf.clone());
        Ok(leaf.key)
    }

    /// Number of cached hosts.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .leaves
            .len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn mint(&self, host: &str, now: OffsetDateTime) -> Result<CachedLeaf, CaError> {
        let minted = self.ca.mint_leaf_at(host, self.crl_url.as_deref(), now)?;
        let signer = rustls::crypto::ring::sign::any_ecdsa_type(&minted.key)
            .map_err(|e| CaError::Crypto(e.to_string()))?;
        tracing::debug!(host, "minted a leaf certificate");
        Ok(CachedLeaf {
            key: Arc::new(CertifiedKey::new(vec![minted.cert], signer)),
            not_after: minted.not_after,
        })
    }
}

impl std::fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCache")
            .field("ca", &self.ca)
            .field("crl_url", &self.crl_url)
            .field("cached", &self.len())
            .finish()
    }
}

// === impl CacheState ===

impl CacheState {
    /// Sliding one-second window over the last mints.
    fn take_mint_slot(&mut self, tick: Instant) -> Result<(), CaError> {
        let window = Duration::from_secs(1);
        while let Some(&oldest) = self.recent_mints.front() {
            if tick.saturating_duration_since(oldest) >= window {
                self.recent_mints.pop_front();
            } else {
                break;
            }
        }
        if self.recent_mints.len() >= MINTS_PER_SECOND {
            return Err(CaError::RateLimited);
        }
        self.recent_mints.push_back(tick);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
