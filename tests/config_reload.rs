//! Live configuration against the real binary (issue 11, deliverable 6): editing the config file,
//! or SIGHUP, moves new requests to the new routing while every open tunnel keeps flowing; an
//! invalid edit is refused and shown, and a setting only a restart can apply is reported as such.
//! The upstream proxies and the server are small loopback stand-ins run by the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use binary::*;

/// How many tunnels stay open across the reload (the acceptance line).
const OPEN_TUNNELS: usize = 20;

/// A server that echoes every byte back, one thread per connection.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
            });
        }
    });
    addr
}

/// A CONNECT proxy that counts the tunnels it opened.
struct UpstreamProxy {
    addr: SocketAddr,
    tunnels: Arc<AtomicUsize>,
}

impl UpstreamProxy {
    fn start() -> UpstreamProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let counted = tunnels.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counted = counted.clone();
                std::thread::spawn(move || relay_connect(stream, &counted));
            }
        });
        UpstreamProxy { addr, tunnels }
    }

    fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

/// Reads a CONNECT head, dials its target, answers 200 and relays both ways.
fn relay_connect(client: TcpStream, tunnels: &AtomicUsize) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
    }
    // Every name resolves to the loopback echo server.
    let target = request_line.split_whitespace().nth(1).unwrap();
    let port = target.rsplit_once(':').unwrap().1;
    let server = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    tunnels.fetch_add(1, Ordering::SeqCst);
    let mut client_w = client;
    client_w
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .unwrap();
    let mut server_r = server.try_clone().unwrap();
    let mut server_w = server;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_r, &mut client_w);
    });
    // The reader holds whatever followed the head, then reads the client to its end.
    let _ = std::io::copy(&mut reader, &mut server_w);
}

/// The config file: loopback address, state dir, the echo server's port allowed, `upstream` lines.
fn config_text(addr: SocketAddr, state: &str, echo: SocketAddr, upstream: &str) -> String {
    format!(
        "state_dir = {state:?}\n[listen]\naddresses = [\"{addr}\"]\n\
         [routing]\nconnect_ports = [{}]\n[upstream]\n{upstream}\n",
        echo.port()
    )
}

fn via(proxy: &UpstreamProxy) -> String {
    format!("proxies = [\"http://{}\"]", proxy.addr)
}

/// An open tunnel through exoproxy and an upstream proxy to the echo server.
struct Tunnel(TcpStream);

impl Tunnel {
    /// CONNECT to a name only the upstream proxies resolve (loopback targets would go DIRECT).
    fn open(proxy: SocketAddr, echo: SocketAddr) -> Tunnel {
        let mut stream = TcpStream::connect(proxy).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let target = format!("echo.test:{}", echo.port());
        write!(
            stream,
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        Tunnel(stream)
    }

    /// Sends `text` and reads the echo back; an error when the tunnel was closed.
    fn echo(&mut self, text: &str) -> Result<(), String> {
        self.0
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut back = vec![0u8; text.len()];
        self.0.read_exact(&mut back).map_err(|e| e.to_string())?;
        match back == text.as_bytes() {
            true => Ok(()),
            false => Err(format!("got {:?}", String::from_utf8_lossy(&back))),
        }
    }
}

/// `/status.json`, parsed.
fn status_json(addr: SocketAddr) -> serde_json::Value {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /status.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

/// Waits for the log line that ends a reload (applied or refused); returns every line read.
fn reload_ended(lines: &Receiver<String>) -> Vec<String> {
    let (ended, seen) = lines_until(lines, Duration::from_secs(15), |l| {
        l.contains("configuration reloaded from") || l.contains("configuration reload refused")
    });
    assert!(ended, "no reload within 15 s: {seen:?}");
    seen
}

/// The running proxy with its stderr lines, once it said it is ready.
fn ready(proxy: &mut Running) -> Receiver<String> {
    let lines = read_lines(proxy.child.stderr.take().unwrap());
    let (ready, seen) = lines_until(&lines, Duration::from_secs(10), |l| l.contains("ready"));
    assert!(ready, "no ready line: {seen:?}");
    lines
}

/// What `change` does to a proxy with 20 tunnels open through the first upstream proxy: new tunnels
/// go through the second one, and every one of the 20 still carries bytes both ways.
fn moves_new_tunnels_and_keeps_the_open_ones(change: impl FnOnce(&Running)) -> Running {
    let echo = echo_server();
    let (first, second) = (UpstreamProxy::start(), UpstreamProxy::start());
    let mut proxy = start_from_file(|addr, state| config_text(addr, state, echo, &via(&first)));
    let lines = ready(&mut proxy);
    let mut open: Vec<Tunnel> = (0..OPEN_TUNNELS)
        .map(|_| Tunnel::open(proxy.addr, echo))
        .collect();
    for (i, tunnel) in open.iter_mut().enumerate() {
        tunnel.echo(&format!("before {i}\n")).unwrap();
    }
    assert_eq!(first.tunnels(), OPEN_TUNNELS);

    let state = proxy.config().parent().unwrap().join("state");
    let text = config_text(proxy.addr, state.to_str().unwrap(), echo, &via(&second));
    std::fs::write(proxy.config(), text).unwrap();
    change(&proxy);
    let seen = reload_ended(&lines);
    assert!(
        seen.iter()
            .any(|l| l.contains("configuration reloaded from")),
        "{seen:?}"
    );

    let mut fresh = Tunnel::open(proxy.addr, echo);
    fresh.echo("after the reload\n").unwrap();
    assert_eq!(
        second.tunnels(),
        1,
        "the new tunnel did not take the new route"
    );
    assert_eq!(
        first.tunnels(),
        OPEN_TUNNELS,
        "the old route got a new tunnel"
    );
    let closed: Vec<String> = (open.iter_mut().enumerate())
        .filter_map(|(i, t)| t.echo(&format!("after {i}\n")).err())
        .collect();
    assert!(
        closed.is_empty(),
        "tunnels broken by the reload: {closed:?}"
    );
    proxy
}

#[test]
fn editing_the_file_moves_new_tunnels_and_closes_none_of_20_open() {
    let started = Instant::now();
    let proxy = moves_new_tunnels_and_keeps_the_open_ones(|_| {});
    assert!(started.elapsed() < Duration::from_secs(30));
    let config = &status_json(proxy.addr)["config"];
    assert_eq!(config["file"], proxy.config().display().to_string());
    assert_eq!(config["last_reload"]["result"], "applied");
    assert_eq!(config["last_reload"]["trigger"], "file_changed");
    assert_eq!(
        config["last_reload"]["restart_needed"],
        serde_json::json!([])
    );
    assert!(config["loaded_at"].as_i64().unwrap() > 0);
}

#[cfg(unix)]
#[test]
fn sighup_reloads_like_an_edit_and_closes_none_of_20_open() {
    let proxy = moves_new_tunnels_and_keeps_the_open_ones(|proxy| {
        let pid = proxy.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    });
    // The edit may be noticed by the file check first; the SIGHUP reloads (again) either way.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let last = &status_json(proxy.addr)["config"]["last_reload"];
        if last["trigger"] == "sighup" {
            assert_eq!(last["result"], "applied");
            break;
        }
        assert!(Instant::now() < deadline, "no SIGHUP reload: {last}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CFG-2 (docs/TESTING.md#cfg-2): an invalid edit is refused, its errors are logged and shown on
/// `/status.json`, and new tunnels keep the old route.
#[test]
fn cfg_2_an_invalid_edit_keeps_the_old_routing_and_shows_the_errors() {
    let echo = echo_server();
    let (first, second) = (UpstreamProxy::start(), UpstreamProxy::start());
    let mut proxy = start_from_file(|addr, state| config_text(addr, state, echo, &via(&first)));
    let lines = ready(&mut proxy);
    let state = proxy.config().parent().unwrap().join("state");
    let broken = config_text(
        proxy.addr,
        state.to_str().unwrap(),
        echo,
        &format!("{}\nno_such_key = 1", via(&second)),
    );
    std::fs::write(proxy.config(), broken).unwrap();
    let seen = reload_ended(&lines);
    assert!(
        seen.iter()
            .any(|l| l.contains("config error") && l.contains("upstream.no_such_key")),
        "the error is not logged with its key: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("the running configuration stays")),
        "{seen:?}"
    );

    Tunnel::open(proxy.addr, echo)
        .echo("still the old route\n")
        .unwrap();
    assert_eq!((first.tunnels(), second.tunnels()), (1, 0));
    let last = &status_json(proxy.addr)["config"]["last_reload"];
    assert_eq!(last["result"], "refused");
    let errors = last["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("upstream.no_such_key")),
        "{errors:?}"
    );
}

#[test]
fn a_changed_listen_address_is_reported_as_needing_a_restart() {
    let echo = echo_server();
    let (first, second) = (UpstreamProxy::start(), UpstreamProxy::start());
    let mut proxy = start_from_file(|addr, state| config_text(addr, state, echo, &via(&first)));
    let lines = ready(&mut proxy);
    let other = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let state = proxy.config().parent().unwrap().join("state");
    let moved = config_text(other, state.to_str().unwrap(), echo, &via(&second));
    std::fs::write(proxy.config(), moved).unwrap();
    reload_ended(&lines);
    let needs_restart = format!("listen ({} → {other})", proxy.addr);
    let (logged, seen) = lines_until(&lines, Duration::from_secs(5), |l| {
        l.contains(&needs_restart) && l.contains("needs a restart")
    });
    assert!(logged, "{seen:?}");

    // Still on the running address; the rest of the file (the second proxy) applies.
    Tunnel::open(proxy.addr, echo)
        .echo("second proxy\n")
        .unwrap();
    assert_eq!((first.tunnels(), second.tunnels()), (0, 1));
    assert!(TcpStream::connect(other).is_err(), "bound the new address");
    let last = &status_json(proxy.addr)["config"]["last_reload"];
    assert_eq!(last["result"], "applied");
    assert_eq!(last["restart_needed"], serde_json::json!([needs_restart]));
}

/// `POST /action/reload` (the status page's button; docs/STATUS.md, "Actions") with the admin token:
/// the same reload as an edit, answered with its outcome; without the token nothing is reloaded.
fn post_reload(addr: SocketAddr, token: Option<&str>) -> (String, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let token = token.map_or(String::new(), |t| format!("X-Admin-Token: {t}\r\n"));
    write!(
        stream,
        "POST /action/reload HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n{token}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), serde_json::from_str(body).unwrap())
}

#[test]
fn the_reload_action_applies_an_edit_or_says_why_not() {
    let echo = echo_server();
    let (first, second) = (UpstreamProxy::start(), UpstreamProxy::start());
    let mut proxy = start_from_file(|addr, state| config_text(addr, state, echo, &via(&first)));
    let _lines = ready(&mut proxy);
    let state = proxy.config().parent().unwrap().join("state");
    let token = std::fs::read_to_string(state.join("admin-token")).unwrap();

    let (head, _) = post_reload(proxy.addr, Some("not-the-token"));
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(status_json(proxy.addr)["config"]["last_reload"].is_null());

    let text = config_text(proxy.addr, state.to_str().unwrap(), echo, &via(&second));
    std::fs::write(proxy.config(), text).unwrap();
    let (head, reply) = post_reload(proxy.addr, Some(token.trim()));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["action"], "reload");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .starts_with("configuration reloaded"),
        "{reply}"
    );
    let last = &status_json(proxy.addr)["config"]["last_reload"];
    assert_eq!(
        (&last["trigger"], &last["result"]),
        (&"admin".into(), &"applied".into()),
        "{last}"
    );
    Tunnel::open(proxy.addr, echo).echo("new route\n").unwrap();
    assert_eq!(second.tunnels(), 1, "the action did not apply the edit");

    let broken = config_text(
        proxy.addr,
        state.to_str().unwrap(),
        echo,
        &format!("{}\nno_such_key = 1", via(&first)),
    );
    std::fs::write(proxy.config(), broken).unwrap();
    let (_, reply) = post_reload(proxy.addr, Some(token.trim()));
    assert_eq!(reply["ok"], false, "{reply}");
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains("the running one stays") && message.contains("upstream.no_such_key"),
        "{reply}"
    );
    Tunnel::open(proxy.addr, echo).echo("still new\n").unwrap();
    assert_eq!((first.tunnels(), second.tunnels()), (0, 2));
}
