//! Logging never stalls the proxy, and `info` stays small under load (issue rows 1 and 11).
//!
//! - A stderr pipe nobody reads (or a Windows console paused by QuickEdit): the proxy keeps
//!   answering, drops the log lines it has no room for, and says how many once the pipe is read.
//! - At `info` a request writes no line of its own; the activity summary counts it (interval
//!   shortened with `EXOPROXY_SUMMARY_SECS`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use binary::*;

/// Well beyond the log queue (4,096 lines) plus a pipe buffer (64 KiB): the proxy froze at ~4,300.
const REQUESTS: usize = 6_000;

#[test]
fn flt16_an_unread_stderr_pipe_never_stalls_requests_and_drops_are_reported() {
    let mut proxy = start(&[("EXOPROXY_LOG", "debug")]);
    let addr = proxy.addr;
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (next, failures) = (next.clone(), failures.clone());
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                    // Refused, so each one logs a line (at debug).
                    let answer = status_of(addr, &bad_request(), Duration::from_secs(5));
                    if answer != Ok(400) {
                        failures.lock().unwrap().push(answer);
                        return;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "requests stalled behind the unread log pipe after {} of {REQUESTS}: {failures:?}",
        next.load(Ordering::Relaxed).min(REQUESTS)
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{REQUESTS} requests took {:?}",
        started.elapsed()
    );

    // Now someone reads the pipe: what was queued is written, then how many lines were dropped.
    let lines = read_lines(proxy.child.stderr.take().unwrap());
    let (found, seen) = lines_until(&lines, Duration::from_secs(30), |l| {
        l.contains("log lines dropped: the log output was not being read")
    });
    assert!(
        found,
        "no dropped-lines notice in {} lines; last: {:?}",
        seen.len(),
        seen.last()
    );
    let notice = seen.last().unwrap();
    let dropped: u64 = notice
        .strip_prefix("exoproxy: ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {notice:?}"));
    assert!(dropped > 0, "{notice}");
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "the proxy exited"
    );
    assert_eq!(
        status_of(addr, &pac_request(addr), Duration::from_secs(5)),
        Ok(200)
    );
}

#[cfg(unix)]
#[test]
fn an_unread_stderr_pipe_does_not_hang_the_exit() {
    let mut proxy = start(&[("EXOPROXY_LOG", "debug")]);
    let addr = proxy.addr;
    for _ in 0..REQUESTS {
        assert_eq!(
            status_of(addr, &bad_request(), Duration::from_secs(5)),
            Ok(400)
        );
    }
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &proxy.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // Drain (no connection open) plus the bounded flush at exit (2 s), with room to spare.
    let deadline = Instant::now() + Duration::from_secs(15);
    while proxy.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the exit hangs on the unread log pipe"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn at_info_requests_write_no_lines_but_a_summary_counts_them() {
    let mut proxy = start(&[("EXOPROXY_SUMMARY_SECS", "1")]);
    let addr = proxy.addr;
    let lines = read_lines(proxy.child.stderr.take().unwrap());
    let (ready, _) = lines_until(&lines, Duration::from_secs(10), |l| l.contains("ready"));
    assert!(ready, "no ready line");
    for _ in 0..30 {
        assert_eq!(
            status_of(addr, &pac_request(addr), Duration::from_secs(5)),
            Ok(200)
        );
    }
    for _ in 0..20 {
        assert_eq!(
            status_of(addr, &bad_request(), Duration::from_secs(5)),
            Ok(400)
        );
    }

    // The requests may straddle an interval: add up the summaries until all 50 are counted.
    let mut total = (0, 0);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while total.0 < 50 && Instant::now() < deadline {
        let (_, more) = lines_until(&lines, Duration::from_millis(500), |l| {
            l.contains("activity in the last")
        });
        for line in more.iter().filter(|l| l.contains("activity in the last")) {
            total.0 += count(line, "requests=");
            total.1 += count(line, "errors=");
            assert!(line.contains("INFO"), "{line}");
            assert!(line.contains("token_refreshes=0"), "{line}");
        }
        seen.extend(more);
    }
    assert_eq!(total, (50, 20), "summaries:\n{}", seen.join("\n"));

    // Nothing happens now: no summary is written for an empty interval.
    let (idle_summary, after) = lines_until(&lines, Duration::from_millis(2_500), |l| {
        l.contains("activity in the last")
    });
    assert!(!idle_summary, "a summary for an idle interval: {after:?}");
    seen.extend(after);
    for per_request in ["proxy.pac", "/elsewhere", "refused", "status="] {
        assert!(
            !seen.iter().any(|l| l.contains(per_request)),
            "a per-request line at info ({per_request}):\n{}",
            seen.join("\n")
        );
    }
}

/// The number after `key` in a summary line.
fn count(line: &str, key: &str) -> u64 {
    line.split(key)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}
