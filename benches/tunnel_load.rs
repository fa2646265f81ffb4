//! Whole-proxy CONNECT tunnel load: bulk throughput and tunnel rate through several paths (direct and
//! any number of HTTP proxies) measured in ONE run, interleaved round by round, so that drift on a noisy
//! 2-core machine hits every path alike. Reported as medians over the rounds and as ratios against the
//! first path named `direct`.
//!
//! The origin runs in-process on `127.0.0.1:--origin-port` (the proxies under test must allow CONNECT
//! to that port). It speaks a minimal HTTP/1.1: `GET /bytes/N` streams N bytes, `GET /small` answers
//! 2 bytes; both keep the connection open until the client closes. Inside the tunnel the bytes are
//! plain (no TLS): a tunnel is opaque to the proxy, so this measures the proxy's own cost, not crypto.
//!
//! Measurements per path and round:
//! - bulk: `--bulk-conns` tunnels are opened first; then each pulls `--bulk-mib` MiB at once; MB/s is
//!   total bytes / time from the start signal to the last byte (MB = 10^6 bytes).
//! - rate: `--rate-conc` workers, each looping for `--rate-secs`: connect → CONNECT → 200 → one small
//!   request/response → close. Tunnels/s, and p50/p99 setup latency (TCP connect to `200` received;
//!   for the direct path, the TCP connect).
//!
//! Loopback only; every loop is bounded by a byte count or a deadline.
//!
//! Run (see scripts/bench-load.sh, which also starts exoproxy and squid):
//! `cargo bench --bench tunnel_load -- --origin-port 40000 --proxy exoproxy=127.0.0.1:40001`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

/// Bytes written per `write_all` by the origin, and read per `read` by the clients.
const CHUNK: usize = 256 * 1024;
/// Any single step (connect, CONNECT reply, response head) slower than this fails the run.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
struct Args {
    origin_port: u16,
    /// `(name, proxy address)`; `None` = direct to the origin.
    paths: Vec<(String, Option<SocketAddr>)>,
    rounds: usize,
    bulk_conns: usize,
    bulk_mib: u64,
    rate_conc: usize,
    rate_secs: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    bulk_mb_s: f64,
    rate_per_s: f64,
    setup_p50_us: f64,
    setup_p99_us: f64,
    rate_errors: u64,
}

// === main ===

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<(), BoxError> {
    let origin = start_origin(args.origin_port).await?;
    eprintln!(
        "origin on {origin}; {} rounds; bulk {}×{} MiB; rate {} workers × {} s",
        args.rounds, args.bulk_conns, args.bulk_mib, args.rate_conc, args.rate_secs
    );
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); args.paths.len()];
    for round in 1..=args.rounds {
        for (i, (name, proxy)) in args.paths.iter().enumerate() {
            let sample = measure(&args, origin, *proxy).await?;
            eprintln!("round {round} {name:>9}: {sample:?}");
            samples[i].push(sample);
        }
    }
    print_report(&args, &samples);
    Ok(())
}

async fn measure(
    args: &Args,
    origin: SocketAddr,
    proxy: Option<SocketAddr>,
) -> Result<Sample, BoxError> {
    let bulk_mb_s = bulk(args, origin, proxy).await?;
    // Let the kernel settle sockets of the bulk phase before the rate phase starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rate_per_s, mut setups, rate_errors) = rate(args, origin, proxy).await?;
    setups.sort_unstable();
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(Sample {
        bulk_mb_s,
        rate_per_s,
        setup_p50_us: percentile(&setups, 0.50),
        setup_p99_us: percentile(&setups, 0.99),
        rate_errors,
    })
}

// === Origin ===

async fn start_origin(port: u16) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let payload: Arc<[u8]> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve_origin(stream, payload.clone()));
        }
    });
    Ok(addr)
}

/// Answers requests on one connection until the client closes it.
async fn serve_origin(mut stream: TcpStream, payload: Arc<[u8]>) -> Result<(), BoxError> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let (head, _) = match read_head(&mut stream, &mut buf).await? {
            Some(h) => h,
            None => return Ok(()),
        };
        let path = head.split_whitespace().nth(1).unwrap_or("");
        let len: u64 = match path.strip_prefix("/bytes/") {
            Some(n) => n.parse()?,
            None => 2,
        };
        let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
        if len == 2 {
            stream.write_all(format!("{header}ok").as_bytes()).await?;
            continue;
        }
        stream.write_all(header.as_bytes()).await?;
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            stream.write_all(&payload[..n]).await?;
            left -= n as u64;
        }
    }
}

/// Reads until `\r\n\r\n`; returns the head and the bytes already read past it. `None` on a clean EOF
/// before any byte.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<(String, Vec<u8>)>, BoxError> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Ok(Some((head, buf[end + 4..].to_vec())));
        }
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("EOF inside a head".into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

// === Client side ===

/// Opens a connection to the origin, through `proxy` when given (a CONNECT that must answer `200` with
/// nothing after the head). Returns the stream and the setup time.
async fn open(
    origin: SocketAddr,
    proxy: Option<SocketAddr>,
) -> Result<(TcpStream, Duration), BoxError> {
    let start = Instant::now();
    let Some(proxy) = proxy else {
        let s = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(origin)).await??;
        s.set_nodelay(true)?;
        return Ok((s, start.elapsed()));
    };
    let mut s = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(proxy)).await??;
    s.set_nodelay(true)?;
    let req = format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let (head, rest) = tokio::time::timeout(STEP_TIMEOUT, read_head(&mut s, &mut buf))
        .await??
        .ok_or("proxy closed before answering CONNECT")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" || !rest.is_empty() {
        return Err(format!("CONNECT via {proxy}: {}", head.lines().next().unwrap_or("")).into());
    }
    Ok((s, start.elapsed()))
}

/// Sends `GET path` and reads the whole response body; returns the body length.
async fn fetch(s: &mut TcpStream, path: &str, buf: &mut [u8]) -> Result<u64, BoxError> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: origin\r\n\r\n").as_bytes())
        .await?;
    let mut head_buf = Vec::with_capacity(256);
    let (head, rest) = tokio::time::timeout(STEP_TIMEOUT, read_head(s, &mut head_buf))
        .await??
        .ok_or("origin closed before answering")?;
    let len: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .ok_or("no Content-Length")?
        .trim()
        .parse()?;
    let mut got = rest.len() as u64;
    while got < len {
        let n = tokio::time::timeout(STEP_TIMEOUT, s.read(buf)).await??;
        if n == 0 {
            return Err(format!("EOF after {got} of {len} bytes").into());
        }
        got += n as u64;
    }
    if got != len {
        return Err(format!("read {got} bytes, want {len}").into());
    }
    Ok(len)
}

async fn bulk(args: &Args, origin: SocketAddr, proxy: Option<SocketAddr>) -> Result<f64, BoxError> {
    let bytes = args.bulk_mib * 1024 * 1024;
    let go = Arc::new(Barrier::new(args.bulk_conns + 1));
    let mut tasks = Vec::new();
    for _ in 0..args.bulk_conns {
        let go = go.clone();
        tasks.push(tokio::spawn(async move {
            let opened = open(origin, proxy).await;
            go.wait().await;
            let (mut s, _) = opened?;
            let mut buf = vec![0u8; CHUNK];
            fetch(&mut s, &format!("/bytes/{bytes}"), &mut buf).await
        }));
    }
    go.wait().await;
    let start = Instant::now();
    let mut total = 0u64;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// Returns tunnels/s, the sorted setup latencies in µs, and the number of failed tunnels.
async fn rate(
    args: &Args,
    origin: SocketAddr,
    proxy: Option<SocketAddr>,
) -> Result<(f64, Vec<u64>, u64), BoxError> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.rate_secs);
    let mut tasks = Vec::new();
    for _ in 0..args.rate_conc {
        tasks.push(tokio::spawn(async move {
            let mut setups = Vec::new();
            let mut errors = 0u64;
            let mut buf = vec![0u8; 64];
            while Instant::now() < deadline {
                match one_tunnel(origin, proxy, &mut buf).await {
                    Ok(setup) => setups.push(setup.as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (setups, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (s, e) = t.await?;
        all.extend(s);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if errors > all.len() as u64 / 100 {
        return Err(format!("{errors} of {} tunnels failed", all.len() as u64 + errors).into());
    }
    Ok((all.len() as f64 / elapsed, all, errors))
}

async fn one_tunnel(
    origin: SocketAddr,
    proxy: Option<SocketAddr>,
    buf: &mut [u8],
) -> Result<Duration, BoxError> {
    let (mut s, setup) = open(origin, proxy).await?;
    fetch(&mut s, "/small", buf).await?;
    Ok(setup)
}

// === Report ===

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Markdown on stdout: raw medians per path, then ratios against `direct` and between proxies.
fn print_report(args: &Args, samples: &[Vec<Sample>]) {
    let med = |i: usize, f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
    println!(
        "| path | bulk MB/s | tunnels/s | setup p50 µs | setup p99 µs | failed tunnels | bulk per round | rate per round |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    for (i, (name, _)) in args.paths.iter().enumerate() {
        let rounds = |f: fn(&Sample) -> f64| {
            samples[i]
                .iter()
                .map(|s| format!("{:.0}", f(s)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let errors: u64 = samples[i].iter().map(|s| s.rate_errors).sum();
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {errors} | {} | {} |",
            med(i, |s| s.bulk_mb_s),
            med(i, |s| s.rate_per_s),
            med(i, |s| s.setup_p50_us),
            med(i, |s| s.setup_p99_us),
            rounds(|s| s.bulk_mb_s),
            rounds(|s| s.rate_per_s),
        );
    }
    println!();
    println!(
        "| ratio | bulk (per-round median) | tunnels/s (per-round median) | bulk (of medians) | tunnels/s (of medians) |"
    );
    println!("|---|---:|---:|---:|---:|");
    let names: Vec<&str> = args.paths.iter().map(|(n, _)| n.as_str()).collect();
    // Per-round ratios compare paths measured seconds apart, so drift between rounds cancels out.
    let per_round = |a: usize, b: usize, f: fn(&Sample) -> f64| {
        median(
            samples[a]
                .iter()
                .zip(&samples[b])
                .map(|(x, y)| f(x) / f(y))
                .collect(),
        )
    };
    for (a, b) in ratio_pairs(&names) {
        println!(
            "| {} / {} | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
            names[a],
            names[b],
            per_round(a, b, |s| s.bulk_mb_s),
            per_round(a, b, |s| s.rate_per_s),
            med(a, |s| s.bulk_mb_s) / med(b, |s| s.bulk_mb_s),
            med(a, |s| s.rate_per_s) / med(b, |s| s.rate_per_s),
        );
    }
}

/// Every proxy against `direct`, then the first proxy against each other proxy.
fn ratio_pairs(names: &[&str]) -> Vec<(usize, usize)> {
    let direct = names.iter().position(|n| *n == "direct");
    let proxies: Vec<usize> = (0..names.len()).filter(|i| Some(*i) != direct).collect();
    let mut pairs: Vec<(usize, usize)> =
        direct.map_or(Vec::new(), |d| proxies.iter().map(|p| (*p, d)).collect());
    if let Some((first, rest)) = proxies.split_first() {
        pairs.extend(rest.iter().map(|r| (*first, *r)));
    }
    pairs
}

// === Arguments ===

const USAGE: &str = "tunnel_load --origin-port PORT [--proxy NAME=HOST:PORT]... [--no-direct] \
[--rounds 3] [--bulk-conns 8] [--bulk-mib 256] [--rate-conc 64] [--rate-secs 10]";

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        origin_port: 0,
        paths: vec![("direct".into(), None)],
        rounds: 3,
        bulk_conns: 8,
        bulk_mib: 256,
        rate_conc: 64,
        rate_secs: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value; usage: {USAGE}"))
        };
        match flag.as_str() {
            // `cargo bench` passes `--bench` to harness-less benches.
            "--bench" => {}
            "--origin-port" => args.origin_port = value()?.parse()?,
            "--proxy" => {
                let v = value()?;
                let (name, addr) = v.split_once('=').ok_or("--proxy takes NAME=HOST:PORT")?;
                args.paths.push((name.into(), Some(addr.parse()?)));
            }
            "--no-direct" => args.paths.retain(|(_, p)| p.is_some()),
            "--rounds" => args.rounds = value()?.parse()?,
            "--bulk-conns" => args.bulk_conns = value()?.parse()?,
            "--bulk-mib" => args.bulk_mib = value()?.parse()?,
            "--rate-conc" => args.rate_conc = value()?.parse()?,
            "--rate-secs" => args.rate_secs = value()?.parse()?,
            _ => return Err(format!("unknown argument {flag}; usage: {USAGE}").into()),
        }
    }
    if args.origin_port == 0 {
        return Err(format!(
            "--origin-port is required (the proxies must allow CONNECT to it); usage: {USAGE}"
        )
        .into());
    }
    Ok(args)
}
