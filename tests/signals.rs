//! Signals to the running binary (issue row 4): SIGHUP never kills the proxy, it reloads the
//! configuration file (`tests/config_reload.rs` checks what a reload changes); SIGTERM still drains
//! and exits 0.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;

use std::process::Command;
use std::time::{Duration, Instant};

use binary::*;

fn send(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

#[test]
fn rel_2_sighup_keeps_the_proxy_running_and_logs_why() {
    let mut proxy = start(&[]);
    let addr = proxy.addr;
    let lines = read_lines(proxy.child.stderr.take().unwrap());
    let (ready, _) = lines_until(&lines, Duration::from_secs(10), |l| l.contains("ready"));
    assert!(ready, "no ready line");
    let pid = proxy.child.id();

    send("-HUP", pid);
    let (logged, seen) = lines_until(&lines, Duration::from_secs(5), |l| {
        l.contains("SIGHUP: reading the configuration from")
    });
    assert!(logged, "no SIGHUP line: {seen:?}");
    let (reloaded, seen) = lines_until(&lines, Duration::from_secs(5), |l| {
        l.contains("configuration reloaded from")
    });
    assert!(
        reloaded,
        "the unchanged file was not applied again: {seen:?}"
    );
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the proxy"
    );
    assert_eq!(
        status_of(addr, &pac_request(addr), Duration::from_secs(5)),
        Ok(200)
    );
    send("-HUP", pid);
    let (again, _) = lines_until(&lines, Duration::from_secs(5), |l| l.contains("SIGHUP"));
    assert!(again, "a second SIGHUP is handled the same way");

    send("-TERM", pid);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the proxy");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let (drained, rest) = lines_until(&lines, Duration::from_secs(5), |l| {
        l.contains("SIGTERM: shutting down")
    });
    assert!(drained, "{rest:?}");
}

/// CFG-2 (docs/TESTING.md#cfg-2): a SIGHUP after the file was broken keeps the running
/// configuration: the proxy neither stops nor changes, and says it refused the file and why.
#[test]
fn cfg_2_sighup_with_an_invalid_config_keeps_the_running_configuration() {
    let mut proxy = start(&[]);
    let addr = proxy.addr;
    let lines = read_lines(proxy.child.stderr.take().unwrap());
    let (ready, _) = lines_until(&lines, Duration::from_secs(10), |l| l.contains("ready"));
    assert!(ready, "no ready line");
    std::fs::write(proxy.config(), "listen = 12\n[[[ not toml\n").unwrap();

    send("-HUP", proxy.child.id());
    let (logged, seen) = lines_until(&lines, Duration::from_secs(5), |l| l.contains("SIGHUP"));
    assert!(logged, "no SIGHUP line: {seen:?}");
    let (refused, seen) = lines_until(&lines, Duration::from_secs(5), |l| {
        l.contains("configuration reload refused")
    });
    assert!(refused, "no refusal: {seen:?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("config error") && l.contains("line 2")),
        "the error is not logged with its line: {seen:?}"
    );
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "SIGHUP with a broken file stopped the proxy"
    );
    assert_eq!(
        status_of(addr, &pac_request(addr), Duration::from_secs(5)),
        Ok(200),
        "the proxy no longer serves on its configured address"
    );
}

/// What one request saw while the proxy was stopping.
#[derive(Debug, PartialEq)]
enum Seen {
    Complete,
    /// Refused, reset or closed before any byte of a response.
    Nothing,
    /// A whole error response: only a 503 that says the proxy is stopping is allowed (a
    /// connection accepted just before the signal, when the drain already holds every free slot).
    Refused(String),
    /// Some bytes of a response, but not all of it: never allowed.
    Half(String),
}

/// One `GET /proxy.pac` on a fresh connection, read to the end.
fn one_request(addr: std::net::SocketAddr) -> Seen {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return Seen::Nothing;
    };
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    if stream.write_all(&pac_request(addr)).is_err() {
        return Seen::Nothing;
    }
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    if got.is_empty() {
        return Seen::Nothing;
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let whole = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
        head.starts_with("HTTP/1.1 ")
            && head.lines().any(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    == Some(body.len())
            })
    });
    match (whole, text.starts_with("HTTP/1.1 200")) {
        (true, true) => Seen::Complete,
        (true, false) => Seen::Refused(text),
        (false, _) => Seen::Half(text),
    }
}

/// REL-3 (docs/TESTING.md#rel-3), the stopping half: SIGTERM while clients keep sending
/// requests: each one gets its whole response or nothing (refused or closed), never part of one.
#[test]
fn rel_3_sigterm_under_load_gives_whole_responses_or_none() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut proxy = start(&[]);
    let addr = proxy.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    seen.push(one_request(addr));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    send("-TERM", proxy.child.id());
    let deadline = Instant::now() + Duration::from_secs(15);
    while proxy.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "SIGTERM did not stop the proxy");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let complete = seen.iter().filter(|s| **s == Seen::Complete).count();
    let half: Vec<_> = seen.iter().filter(|s| matches!(s, Seen::Half(_))).collect();
    assert!(complete > 0, "no request was served before the signal");
    assert!(
        seen.contains(&Seen::Nothing),
        "no request was refused after the exit"
    );
    let wrong_refusals: Vec<_> = seen
        .iter()
        .filter(|s| match s {
            Seen::Refused(text) => {
                !(text.starts_with("HTTP/1.1 503") && text.contains("the proxy is shutting down"))
            }
            _ => false,
        })
        .collect();
    assert!(
        wrong_refusals.is_empty(),
        "refused for another reason than stopping: {:?}",
        wrong_refusals.first()
    );
    assert!(
        half.is_empty(),
        "{} half responses: {:?}",
        half.len(),
        half.first()
    );
}
