use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::*;

fn cache() -> (tempfile::TempDir, LeafCache) {
    let dir = tempfile::tempdir().unwrap();
    let domains = vec![
        "outlook.office365.com".to_string(),
        "office365.us".to_string(),
    ];
    let (ca, _) = LocalCa::load_or_create(dir.path(), &domains).unwrap();
    (
        dir,
        LeafCache::new(
            Arc::new(ca),
            Some("http://127.0.0.1:1/exoproxy-ca.crl".into()),
        ),
    )
}

fn host(i: usize) -> String {
    format!("h{i}.office365.us")
}

#[test]
fn ca8_cache_is_bounded_and_lru() {
    let (_tmp, cache) = cache();
    let start = Instant::now();
    let now = OffsetDateTime::now_utc();
    // 150 hosts, 100 ms apart: the rate limit never trips, the capacity does.
    let first = cache.get_at(&host(0), start, now).unwrap();
    for i in 1..150 {
        let tick = start + Duration::from_millis(100 * i as u64);
        cache.get_at(&host(i), tick, now).unwrap();
        if i % 50 == 0 {
            // Keep host 0 recently used; LRU must not evict it.
            let again = cache.get_at(&host(0), tick, now).unwrap();
            assert!(Arc::ptr_eq(&first, &again), "host 0 served from cache");
        }
    }
    assert_eq!(cache.len(), CACHE_CAPACITY);
    let tick = start + Duration::from_secs(100);
    let again = cache.get_at(&host(0), tick, now).unwrap();
    assert!(Arc::ptr_eq(&first, &again), "recently used entry kept");
    let evicted = cache.get_at(&host(1), tick, now).unwrap();
    assert_eq!(
        cache.len(),
        CACHE_CAPACITY,
        "re-minting an evicted host keeps the bound"
    );
    drop(evicted);
}

#[test]
fn ca8_minting_is_rate_limited_but_cache_hits_are_not() {
    let (_tmp, cache) = cache();
    let tick = Instant::now();
    let now = OffsetDateTime::now_utc();
    for i in 0..MINTS_PER_SECOND {
        cache.get_at(&host(i), tick, now).unwrap();
    }
    let over = cache.get_at(&host(99), tick + Duration::from_millis(900), now);
    assert!(matches!(over, Err(CaError::RateLimited)));
    for i in 0..MINTS_PER_SECOND {
        cache
            .get_at(&host(i), tick + Duration::from_millis(950), now)
            .unwrap();
    }
    assert!(
        cache
            .get_at(&host(99), tick + Duration::from_secs(1), now)
            .is_ok(),
        "window slid"
    );
}

#[test]
fn leaf_is_renewed_before_it_expires() {
    let (_tmp, cache) = cache();
    let tick = Instant::now();
    let now = OffsetDateTime::now_utc();
    let first = cache.get_at("outlook.office365.com", tick, now).unwrap();
    let day5 = cache
        .get_at("OUTLOOK.office365.com", tick, now + time::Duration::days(5))
        .unwrap();
    assert!(
        Arc::ptr_eq(&first, &day5),
        "still fresh: cached, names normalised"
    );
    let day6 = cache
        .get_at("outlook.office365.com", tick, now + time::Duration::days(6))
        .unwrap();
    assert!(!Arc::ptr_eq(&first, &day6), "less than a day left: renewed");
}

#[test]
fn hosts_outside_the_ca_are_refused() {
    let (_tmp, cache) = cache();
    assert!(matches!(
        cache.get("www.google.com"),
        Err(CaError::HostNotPermitted(_))
    ));
    assert!(cache.is_empty());
}
