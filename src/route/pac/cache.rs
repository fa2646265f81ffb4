//! Per-URL cache of PAC decisions: bounded, 60 s by default, tied to one script hash (PAC-12).
//!
//! Contract: an entry is served only while it is younger than the TTL and was computed by the script
//! that is current now; [`ResultCache::flush`] drops everything when the script changes. Uses tokio's
//! clock, so a paused-clock test controls expiry.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::target::Hop;

type Answer = Result<Vec<Hop>, ProxyError>;

/// Bounded LRU of decisions keyed by the URL shown to the script (which contains the host).
#[derive(Debug)]
pub(crate) struct ResultCache {
    entries: Mutex<LruCache<String, Entry>>,
    ttl: Duration,
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    script_hash: String,
    answer: Answer,
}

// === impl ResultCache ===

impl ResultCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> ResultCache {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        ResultCache {
            entries: Mutex::new(LruCache::new(capacity)),
            ttl,
        }
    }

    pub(crate) fn get(&self, key: &str, script_hash: &str) -> Option<Answer> {
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get(key)?;
        if entry.script_hash == script_hash && entry.at.elapsed() < self.ttl {
            return Some(entry.answer.clone());
        }
        entries.pop(key);
        None
    }

    pub(crate) fn put(&self, key: String, script_hash: &str, answer: Answer) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            let entry = Entry {
                at: Instant::now(),
                script_hash: script_hash.to_string(),
                answer,
            };
            entries.put(key, entry);
        }
    }

    pub(crate) fn flush(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_expire_and_follow_the_script() {
        let cache = ResultCache::new(2, Duration::from_millis(50));
        cache.put("https://a/".into(), "h1", Ok(vec![Hop::Direct]));
        assert_eq!(cache.get("https://a/", "h1"), Some(Ok(vec![Hop::Direct])));
        assert_eq!(cache.get("https://a/", "h2"), None, "other script");
        cache.put("https://a/".into(), "h1", Ok(vec![Hop::Direct]));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(cache.get("https://a/", "h1"), None, "expired");
        for k in ["a", "b", "c"] {
            cache.put(k.into(), "h1", Ok(vec![]));
        }
        assert_eq!(cache.len(), 2, "bounded");
        cache.flush();
        assert_eq!(cache.len(), 0);
    }
}
