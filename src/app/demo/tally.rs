//! Counts of the demo's requests, shared by every client task.
//!
//! Contract: every request the demo sends is recorded exactly once, as a success or a failure (any
//! non-2xx answer the client did not expect, or no answer at all). The first few failure messages are
//! kept for the report.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many failure messages the report shows.
const KEPT_FAILURES: usize = 3;

/// Which API a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `POST /adminapi/...` with a Bearer token.
    Rest,
    /// WS-Man (Remote PowerShell) with a Basic token.
    WsMan,
}

/// Request counters.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    rest: AtomicU64,
    wsman: AtomicU64,
    failures: AtomicU64,
    messages: Mutex<Vec<String>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) rest: u64,
    pub(crate) wsman: u64,
    pub(crate) failures: u64,
    /// The first few failure messages.
    pub(crate) messages: Vec<String>,
}

// === impl Tally ===

impl Tally {
    /// Records one request and its outcome.
    pub(crate) fn record(&self, api: Api, outcome: &Result<(), String>) {
        let counter = match api {
            Api::Rest => &self.rest,
            Api::WsMan => &self.wsman,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Err(message) = outcome {
            self.failures.fetch_add(1, Ordering::Relaxed);
            let mut messages = self
                .messages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if messages.len() < KEPT_FAILURES {
                messages.push(message.clone());
            }
        }
    }

    /// The counters now.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            rest: self.rest.load(Ordering::Relaxed),
            wsman: self.wsman.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            messages: self
                .messages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }
}
