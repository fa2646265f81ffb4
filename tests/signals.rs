//! Signals to the running binary (issue row 4): SIGHUP never kills the proxy and says why nothing
//! was reloaded; SIGTERM still drains and exits 0.
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
        l.contains("SIGHUP: configuration reload is not supported yet; restart to apply changes")
    });
    assert!(logged, "no SIGHUP line: {seen:?}");
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
/// configuration: the proxy neither stops nor changes, and says it did not reload.
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
