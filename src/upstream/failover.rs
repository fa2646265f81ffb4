//! Bad-proxy memory and hop ordering (docs/PROTOCOL.md#pac-failover, Chromium semantics).
//!
//! Contract: a proxy that failed at connect level is remembered as bad for `ttl`, measured on tokio's
//! clock (so tests can pause time). Bad proxies are not removed: they move to the end of the list, in
//! their original order, and are still tried when everything else failed. A success forgets the mark.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::target::{Hop, ProxyEndpoint};

/// Proxies that recently failed, with the time they failed.
#[derive(Debug)]
pub(crate) struct BadProxies {
    ttl: Duration,
    failed_at: Mutex<HashMap<ProxyEndpoint, Instant>>,
}

// === impl BadProxies ===

impl BadProxies {
    pub(crate) fn new(ttl: Duration) -> BadProxies {
        BadProxies {
            ttl,
            failed_at: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn mark_bad(&self, proxy: &ProxyEndpoint) {
        crate::summary::upstream_connect_failed(&proxy.to_string());
        if let Ok(mut map) = self.failed_at.lock() {
            map.insert(proxy.clone(), Instant::now());
        }
    }

    pub(crate) fn mark_good(&self, proxy: &ProxyEndpoint) {
        if let Ok(mut map) = self.failed_at.lock() {
            map.remove(proxy);
        }
    }

    /// True while the proxy's failure is younger than the TTL; expired marks are dropped.
    pub(crate) fn is_bad(&self, proxy: &ProxyEndpoint) -> bool {
        let Ok(mut map) = self.failed_at.lock() else {
            return false;
        };
        match map.get(proxy) {
            Some(at) if at.elapsed() < self.ttl => true,
            Some(_) => {
                map.remove(proxy);
                false
            }
            None => false,
        }
    }

    /// The proxies remembered as bad now, each with the time left on its mark (status page).
    pub(crate) fn snapshot(&self) -> Vec<(ProxyEndpoint, Duration)> {
        let Ok(map) = self.failed_at.lock() else {
            return Vec::new();
        };
        let mut bad: Vec<(ProxyEndpoint, Duration)> = map
            .iter()
            .filter_map(|(proxy, at)| {
                let left = self.ttl.checked_sub(at.elapsed())?;
                Some((proxy.clone(), left))
            })
            .collect();
        bad.sort_by_key(|(proxy, _)| proxy.to_string());
        bad
    }

    /// Takes over `previous`'s marks, with their age (a configuration reload builds a new
    /// dialer; a proxy that just failed must not be tried first again). Nothing is counted anew.
    pub(crate) fn inherit(&self, previous: &BadProxies) {
        let marks = match previous.failed_at.lock() {
            Ok(map) => map.clone(),
            Err(_) => return,
        };
        if let Ok(mut map) = self.failed_at.lock() {
            map.extend(marks);
        }
    }

    /// The hops to try, in order: good hops as listed, then bad proxies as listed.
    pub(crate) fn order(&self, hops: &[Hop]) -> Vec<Hop> {
        let is_bad = |hop: &Hop| matches!(hop, Hop::Proxy(p) if self.is_bad(p));
        let (bad, mut good): (Vec<Hop>, Vec<Hop>) = hops.iter().cloned().partition(is_bad);
        good.extend(bad);
        good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(port: u16) -> Hop {
        Hop::Proxy(ProxyEndpoint::parse(&format!("proxy.test:{port}")).unwrap())
    }

    fn endpoint(hop: &Hop) -> &ProxyEndpoint {
        match hop {
            Hop::Proxy(p) => p,
            Hop::Direct => panic!("not a proxy"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bad_proxy_moves_last_until_ttl_expires() {
        let bad = BadProxies::new(Duration::from_secs(300));
        let hops = vec![proxy(1), proxy(2), Hop::Direct];
        bad.mark_bad(endpoint(&hops[0]));
        assert_eq!(bad.order(&hops), vec![proxy(2), Hop::Direct, proxy(1)]);
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(bad.order(&hops)[0], proxy(2));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(bad.order(&hops), hops);
    }

    #[tokio::test(start_paused = true)]
    async fn inherited_marks_keep_their_age() {
        let old = BadProxies::new(Duration::from_secs(300));
        let hops = vec![proxy(1), proxy(2)];
        old.mark_bad(endpoint(&hops[0]));
        tokio::time::advance(Duration::from_secs(200)).await;
        let new = BadProxies::new(Duration::from_secs(300));
        new.inherit(&old);
        assert_eq!(new.order(&hops), vec![proxy(2), proxy(1)]);
        tokio::time::advance(Duration::from_secs(101)).await;
        assert_eq!(
            new.order(&hops),
            hops,
            "the mark expires when the old one would have"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn success_forgets_the_mark() {
        let bad = BadProxies::new(Duration::from_secs(300));
        let p = proxy(1);
        bad.mark_bad(endpoint(&p));
        assert!(bad.is_bad(endpoint(&p)));
        bad.mark_good(endpoint(&p));
        assert!(!bad.is_bad(endpoint(&p)));
    }
}
