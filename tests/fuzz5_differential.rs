//! FUZZ-5 (docs/TESTING.md#fuzz-5): the smuggling corpus through the proxy to three origin
//! implementations, the HTTP Garden idea: hyper (in process), Python's `http.server` and nginx
//! (each skipped with a message when not installed). For every corpus entry the proxy either
//! refuses it (its own error, `X-LocalProxy-Error`: nothing may reach the origin) or forwards one
//! request; every origin must then have seen exactly that many requests (a request it parsed or
//! one it refused as malformed both count). An origin that saw two requests got bytes smuggled past
//! the proxy's framing; one that saw any after a refusal got a request the proxy said it refused.
//!
//! Each entry is sent on its own client connection, as the proxy serves one plain request per
//! connection; the origins are stopped by their own pid when the test ends.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use support::*;
use tokio::net::TcpListener;

/// The corpus: near-valid framings a proxy and an origin might read differently. Each is sent to
/// `http://origin.test/`.
fn corpus() -> Vec<(&'static str, String)> {
    let url = "http://origin.test";
    let head = |method: &str, extra: &str| {
        format!("{method} {url}/ HTTP/1.1\r\nHost: origin.test\r\n{extra}\r\n")
    };
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: origin.test\r\n\r\n";
    vec![
        ("plain GET", head("GET", "")),
        (
            "GET with Content-Length 0",
            head("GET", "Content-Length: 0\r\n"),
        ),
        (
            "Content-Length body",
            head("POST", "Content-Length: 5\r\n") + "hello",
        ),
        (
            "chunked body",
            head("POST", "Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk extension",
            head("POST", "Transfer-Encoding: chunked\r\n") + "5;a=b\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk size with leading zeros",
            head("POST", "Transfer-Encoding: chunked\r\n") + "005\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "upper-case hex size",
            head("POST", "Transfer-Encoding: chunked\r\n") + "A\r\n0123456789\r\n0\r\n\r\n",
        ),
        (
            "trailer",
            head("POST", "Transfer-Encoding: chunked\r\n")
                + "5\r\nhello\r\n0\r\nX-Trailer: a\r\n\r\n",
        ),
        (
            "Chunked in other case",
            head("POST", "Transfer-Encoding: Chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n",
        ),
        ("pipelined second request", head("GET", "") + smuggled),
        (
            "bytes after a Content-Length body",
            head("POST", "Content-Length: 5\r\n") + "hello" + smuggled,
        ),
        (
            "bytes after the last chunk",
            head("POST", "Transfer-Encoding: chunked\r\n") + "5\r\nhello\r\n0\r\n\r\n" + smuggled,
        ),
        (
            "CL and TE",
            head(
                "POST",
                "Content-Length: 48\r\nTransfer-Encoding: chunked\r\n",
            ) + "0\r\n\r\n"
                + smuggled,
        ),
        (
            "TE and CL",
            head(
                "POST",
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            ) + "0\r\n\r\n"
                + smuggled,
        ),
        (
            "two Content-Lengths",
            head("POST", "Content-Length: 5\r\nContent-Length: 48\r\n") + "hello" + smuggled,
        ),
        (
            "Content-Length list",
            head("POST", "Content-Length: 5, 5\r\n") + "hello",
        ),
        (
            "Content-Length with sign",
            head("POST", "Content-Length: +5\r\n") + "hello",
        ),
        (
            "TE chunked, identity",
            head("POST", "Transfer-Encoding: chunked, identity\r\n") + "0\r\n\r\n",
        ),
        (
            "TE with space before colon",
            head("POST", "Transfer-Encoding : chunked\r\n") + "0\r\n\r\n" + smuggled,
        ),
        (
            "TE by obs-fold",
            head("POST", "X: y\r\n Transfer-Encoding: chunked\r\n") + "0\r\n\r\n",
        ),
        (
            "chunk size overflow",
            head("POST", "Transfer-Encoding: chunked\r\n")
                + "ffffffffffffffffff1\r\nx\r\n0\r\n\r\n",
        ),
        (
            "no CRLF after chunk data",
            head("POST", "Transfer-Encoding: chunked\r\n") + "5\r\nhelloXX0\r\n\r\n",
        ),
        (
            "bare LF chunk line",
            head("POST", "Transfer-Encoding: chunked\r\n") + "5\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk size with a space",
            head("POST", "Transfer-Encoding: chunked\r\n") + "5 \r\nhello\r\n0\r\n\r\n",
        ),
        (
            "bare LF in the head",
            format!("GET {url}/ HTTP/1.1\nHost: origin.test\n\n"),
        ),
        (
            "HTTP/1.0 with chunked",
            format!("POST {url}/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "Expect 100-continue",
            head("POST", "Content-Length: 5\r\nExpect: 100-continue\r\n") + "hello",
        ),
        ("NUL in a header", head("GET", "X-A: a\0b\r\n")),
        (
            "absolute-form with a fragment",
            format!("GET {url}/#frag HTTP/1.1\r\nHost: origin.test\r\n\r\n"),
        ),
    ]
}

/// An origin server and how many requests it saw.
trait Counting {
    fn name(&self) -> &'static str;
    fn addr(&self) -> SocketAddr;
    fn seen(&self) -> usize;
}

// === hyper ===

struct HyperOrigin {
    addr: SocketAddr,
    count: Arc<AtomicUsize>,
}

impl HyperOrigin {
    async fn start() -> HyperOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let origin = HyperOrigin {
            addr: listener.local_addr().unwrap(),
            count: count.clone(),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let count = count.clone();
                        async move {
                            count.fetch_add(1, Ordering::SeqCst);
                            let _ = req.into_body().collect().await;
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        origin
    }
}

impl Counting for HyperOrigin {
    fn name(&self) -> &'static str {
        "hyper"
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn seen(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

// === Python http.server ===

/// A keep-alive `http.server` that decodes Content-Length and chunked bodies and prints one line
/// per request it parsed (`REQ`) or refused (`ERR`).
const PYTHON_ORIGIN: &str = r#"
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def send_error(self, code, message=None, explain=None):
        print("ERR", code, flush=True)
        super().send_error(code, message, explain)
    def any(self):
        print("REQ", self.command, self.path, flush=True)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                self.rfile.read(size)
                self.rfile.readline(65537)
        else:
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = any
socketserver.ThreadingTCPServer.daemon_threads = True
server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
print("PORT", server.server_address[1], flush=True)
server.serve_forever()
"#;

struct PythonOrigin {
    child: Child,
    addr: SocketAddr,
    count: Arc<Mutex<usize>>,
}

impl PythonOrigin {
    fn start() -> Option<PythonOrigin> {
        let mut child = Command::new("python3")
            .args(["-c", PYTHON_ORIGIN])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let port: u16 = lines.next()?.ok()?.strip_prefix("PORT ")?.parse().ok()?;
        let count = Arc::new(Mutex::new(0));
        let counted = count.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.starts_with("REQ") || line.starts_with("ERR") {
                    *counted.lock().unwrap() += 1;
                }
            }
        });
        Some(PythonOrigin {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            count,
        })
    }
}

impl Drop for PythonOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Counting for PythonOrigin {
    fn name(&self) -> &'static str {
        "python http.server"
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn seen(&self) -> usize {
        *self.count.lock().unwrap()
    }
}

// === nginx ===

/// nginx in the foreground, one process, everything under a temp dir; one access-log line per
/// request (malformed ones included).
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start() -> Option<Nginx> {
        let status = Command::new("nginx")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let user = if is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}daemon off;\nmaster_process off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n    location / {{ return 200 \"ok\"; }}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .args(["-p", &d.to_string(), "-c", "nginx.conf", "-e", "error.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let nginx = Nginx { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(nginx)
    }
}

/// True when the test runs as root (nginx then needs `user root`, its default user may not exist).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Counting for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn seen(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .map(|log| log.lines().count())
            .unwrap_or(0)
    }
}

// === the test ===

/// Waits until `origin` saw `expected` more than `before` requests (or a bound passed), then a
/// little longer for anything smuggled behind them; returns how many it saw.
async fn settled(origin: &dyn Counting, before: usize, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(3);
    while origin.seen() - before < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    origin.seen() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz5_smuggling_corpus_reaches_every_origin_as_the_proxy_counted() {
    let mut origins: Vec<Box<dyn Counting>> = vec![Box::new(HyperOrigin::start().await)];
    match PythonOrigin::start() {
        Some(python) => origins.push(Box::new(python)),
        None => eprintln!("SKIP the python origin: python3 is not installed"),
    }
    match Nginx::start() {
        Some(nginx) => origins.push(Box::new(nginx)),
        None => eprintln!("SKIP the nginx origin: nginx is not installed or did not start"),
    }
    let mut failures = Vec::new();
    let mut forwarded_total = 0;
    for origin in &origins {
        let proxy = start_proxy(direct(), direct_config(origin.addr().port()), test_limits()).await;
        for (what, request) in corpus() {
            let before = origin.seen();
            let response = raw(proxy.addr, request.as_bytes()).await;
            let refused = response.header("x-localproxy-error").is_some();
            let expected = usize::from(!refused);
            forwarded_total += expected;
            let seen = settled(origin.as_ref(), before, expected).await;
            if seen != expected {
                failures.push(format!(
                    "{}: {what}: the proxy {} it, the origin saw {seen} requests; proxy answered {:?}",
                    origin.name(),
                    if refused { "refused" } else { "forwarded" },
                    response.text.lines().next().unwrap_or_default()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The corpus is not all refusals: the accepted framings reached every origin.
    assert!(forwarded_total >= 10 * origins.len(), "{forwarded_total}");
}
