//! When to refresh and when to retry: pure functions and a small backoff state machine.
//!
//! Contract: [`refresh_at`] renews ahead of expiry by max(5 min, 20 % of the lifetime), never earlier
//! than half the lifetime (short test tokens). [`Backoff`] gives 1 s → 60 s exponential delays with full
//! jitter, never sooner than a `Retry-After`, and reports the circuit open after 5 failures in a row (FLT-6).

use std::time::Duration;

use ring::rand::SecureRandom as _;
use tokio::time::Instant;

/// Minimum head start before expiry.
pub const MIN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// First retry delay ceiling.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Largest retry delay ceiling.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Consecutive failures after which on-demand requests stop calling the IdP.
pub const CIRCUIT_THRESHOLD: u32 = 5;
/// A `Retry-After` longer than this is treated as this (a broken header must not park us for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// How retry delays are randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// "Full jitter": uniform in [0, ceiling] (AWS architecture blog), spreads many clients apart.
    #[default]
    Full,
    /// Always the ceiling: deterministic, for schedule tests.
    None,
}

/// Consecutive-failure state of one account's token calls.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
    jitter: Jitter,
}

/// The moment to renew a token issued at `issued` that expires at `expires`, seen at `now`.
pub fn refresh_at(issued: Instant, expires: Instant, now: Instant) -> Instant {
    let lifetime = expires.saturating_duration_since(issued);
    let margin = MIN_REFRESH_MARGIN.max(lifetime / 5);
    let ahead = expires.checked_sub(margin).unwrap_or(issued);
    let floor = issued + lifetime / 2;
    ahead.max(floor).max(now.min(expires))
}

/// The delay ceiling after `failures` consecutive failures: 1, 2, 4, … 60 s.
pub fn backoff_ceiling(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_CAP)
}

// === impl Backoff ===

impl Backoff {
    /// A fresh state with the given jitter.
    pub fn new(jitter: Jitter) -> Self {
        Self {
            failures: 0,
            jitter,
        }
    }

    /// Records a failure; returns how long to wait before the next attempt.
    pub fn record_failure(&mut self, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = backoff_ceiling(self.failures);
        let delay = match self.jitter {
            Jitter::Full => ceiling.mul_f64(random_fraction()),
            Jitter::None => ceiling,
        };
        delay.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
    }

    /// Records a success: the next failure starts again at 1 s.
    pub fn record_success(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// True once [`CIRCUIT_THRESHOLD`] calls failed in a row.
    pub fn circuit_open(&self) -> bool {
        self.failures >= CIRCUIT_THRESHOLD
    }
}

/// Uniform in [0, 1]; falls back to 1 (the ceiling) if the RNG fails, which is merely less spread.
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;

    #[test]
    fn refresh_at_table() {
        let t0 = Instant::now();
        // (lifetime s, expected refresh offset from issue s)
        let table: &[(u64, u64)] = &[
            (75 * MIN, 60 * MIN), // 20 % = 15 min > 5 min
            (60 * MIN, 48 * MIN), // 12 min margin
            (90 * MIN, 72 * MIN),
            (24 * 60 * MIN, 24 * 60 * MIN * 4 / 5), // CAE long-lived token
            (20 * MIN, 15 * MIN),                   // 5 min floor on the margin
            (10 * MIN, 5 * MIN),                    // margin = half: both rules agree
            (6 * MIN, 3 * MIN),                     // 5 min margin would be at 1 min: clamp to 50 %
            (60, 30),                               // short test token
            (2, 1),
            (0, 0),
        ];
        for &(lifetime, expected) in table {
            let expires = t0 + Duration::from_secs(lifetime);
            let at = refresh_at(t0, expires, t0);
            assert_eq!(
                at.duration_since(t0),
                Duration::from_secs(expected),
                "lifetime {lifetime}s"
            );
        }
    }

    #[test]
    fn refresh_at_is_never_in_the_past_nor_after_expiry() {
        let t0 = Instant::now();
        let expires = t0 + Duration::from_secs(3600);
        let late = t0 + Duration::from_secs(3500);
        assert_eq!(refresh_at(t0, expires, late), late);
        let after = t0 + Duration::from_secs(4000);
        assert_eq!(refresh_at(t0, expires, after), expires);
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_honours_retry_after() {
        let mut backoff = Backoff::new(Jitter::None);
        let delays: Vec<u64> = (0..8)
            .map(|_| backoff.record_failure(None).as_secs())
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(backoff.circuit_open());
        backoff.record_success();
        assert!(!backoff.circuit_open());
        assert_eq!(
            backoff.record_failure(Some(Duration::from_secs(20))),
            Duration::from_secs(20)
        );
        assert_eq!(
            backoff.record_failure(Some(Duration::from_secs(86_400))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling() {
        let mut backoff = Backoff::new(Jitter::Full);
        for n in 1..=10 {
            let delay = backoff.record_failure(None);
            assert!(delay <= backoff_ceiling(n), "failure {n}: {delay:?}");
        }
    }
}
