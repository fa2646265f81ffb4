//! Intercepted keep-alive load: requests/s and latency of REST `InvokeCommand` requests sent to an
//! in-process exosim (`exosim::Sim::start`) directly, and through one or more running exoproxies,
//! measured in ONE run, interleaved round by round. Targets (issue 4): interception ≥ 0.7× direct
//! requests/s, and the latency the proxy adds at p99 ≤ 1 ms with 64 concurrent clients.
//!
//! How the paths differ, and nothing else:
//! - direct: TLS to the sim (trusting the sim's CA), SNI `nam12b.outlook.office365.com`;
//! - each proxy: `CONNECT nam12b.outlook.office365.com:443` to its address, then TLS trusting its CA
//!   file (exoproxy's interception CA, or the sim's CA for a blind tunnel).
//!
//! All send the same bytes: `POST /adminapi/beta/contoso.onmicrosoft.com/InvokeCommand` with a
//! sim-minted bearer token for admin@contoso.com (an intercepting exoproxy replaces it with its own).
//!
//! Three phases per path and round, each on fresh keep-alive HTTP/1.1 connections:
//! - saturated: `--conc` clients (default 64) send back to back for `--secs`: requests/s, and latency
//!   that is mostly queueing once the cores are busy;
//! - paced: `--conc` clients together offer `--paced-rps` requests/s (each on its own fixed schedule)
//!   for `--paced-secs`: the latency a proxy adds at that concurrency while the cores are not
//!   saturated;
//! - one client back to back for `--quiet-secs`: the proxy's own latency.
//!
//! The proxies must route `nam12b.outlook.office365.com:443` to this process's sim: the sim listens
//! on `--sim-port` and its CA is written to `--sim-ca-out`, so the caller can start exoproxy with a
//! `connect_to` entry and that CA as an upstream trust root once this harness is running; the
//! harness waits (bounded) for each CA file and a first 200 through each proxy (which may need a
//! sign-in the sim auto-approves). Without `--proxy`, only the direct path is measured.
//!
//! `--reverse ADDR --ca FILE --label NAME` adds a path that dials ADDR without CONNECT: a reverse
//! proxy such as nginx standing in for the host (TLS trusting FILE). For measuring a proxy's CPU per
//! request (scripts/bench-load.sh), `--token-out` writes the bearer token the clients send (so that a
//! reverse proxy can set the same `Authorization`), `--ready-out` is written once every path answered
//! its warm-up request, and the number of answered requests per path is printed to stderr
//! (`requests <label> <n>`).
//!
//! Run: `cargo bench --bench intercept_load -- --sim-port P --sim-ca-out sim-ca.pem
//! --proxy 127.0.0.1:Q --ca exoproxy-ca.pem --label exoproxy [--proxy … --ca … --label …]`
//! (scripts/bench-load.sh does this).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const HOST: &str = "nam12b.outlook.office365.com";
const PATH: &str = "/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand";
const BODY: &str = r#"{"CmdletInput":{"CmdletName":"Get-Mailbox","Parameters":{}}}"#;
const UPN: &str = "admin@contoso.com";
/// How long the harness waits for the proxy to come up and answer a first 200.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
struct Args {
    sim_port: u16,
    sim_ca_out: Option<PathBuf>,
    /// `--proxy` (or `--reverse`), `--ca` and `--label`, given in that order per proxy.
    proxies: Vec<ProxyArg>,
    token_out: Option<PathBuf>,
    ready_out: Option<PathBuf>,
    rounds: usize,
    conc: usize,
    secs: u64,
    /// Requests/s offered by all clients together in the paced phase.
    paced_rps: u32,
    paced_secs: u64,
    /// Seconds of the single-client phase (the proxy's own latency, without queueing).
    quiet_secs: u64,
}

#[derive(Debug, Clone)]
struct ProxyArg {
    addr: SocketAddr,
    ca: Option<PathBuf>,
    /// Name of the path in the report (`exoproxy`, or e.g. `exoproxy-tunnel` for a blind tunnel).
    label: String,
    /// False for `--reverse`: dial and speak TLS at once, no CONNECT.
    connect: bool,
}

/// The phases of one round, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Saturated,
    Paced,
    OneClient,
}

const PHASES: [Phase; 3] = [Phase::Saturated, Phase::Paced, Phase::OneClient];

/// One way to reach the sim: where to dial, whether to CONNECT first, and whom to trust.
#[derive(Clone)]
struct Route {
    name: String,
    dial: SocketAddr,
    connect: bool,
    tls: TlsConnector,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    /// Requests answered with 200.
    count: u64,
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
    let config = exosim::SimConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], args.sim_port)),
        auto_approve: true,
        ..exosim::SimConfig::default()
    };
    let sim = exosim::Sim::start(config).await?;
    if let Some(out) = &args.sim_ca_out {
        std::fs::write(out, sim.ca_pem())?;
    }
    let minted = sim.control().mint_tokens(
        UPN,
        exosim::config::RPS_CLIENT_ID,
        "https://outlook.office365.com/.default",
    )?;
    let token = minted["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_string();
    if let Some(out) = &args.token_out {
        std::fs::write(out, &token)?;
    }
    let mut routes = vec![Route {
        name: "direct".into(),
        dial: sim.addr(),
        connect: false,
        tls: connector(sim.ca_pem().as_bytes())?,
    }];
    for proxy in &args.proxies {
        let ca_file = proxy.ca.as_ref().ok_or("each --proxy needs a --ca")?;
        let ca = wait_for_file(ca_file).await?;
        routes.push(Route {
            name: proxy.label.clone(),
            dial: proxy.addr,
            connect: proxy.connect,
            tls: connector(&ca)?,
        });
    }
    for route in &routes {
        warm_up(route, &token).await?;
    }
    if let Some(out) = &args.ready_out {
        std::fs::write(out, "ready")?;
    }
    // samples[phase][route][round]
    let mut samples = vec![vec![Vec::new(); routes.len()]; PHASES.len()];
    for round in 1..=args.rounds {
        for (i, route) in routes.iter().enumerate() {
            for (p, phase) in PHASES.iter().enumerate() {
                let sample = match phase {
                    Phase::Saturated => measure(route, &token, args.conc, args.secs, None).await?,
                    Phase::Paced => {
                        let each =
                            Duration::from_secs_f64(args.conc as f64 / args.paced_rps as f64);
                        measure(route, &token, args.conc, args.paced_secs, Some(each)).await?
                    }
                    Phase::OneClient => measure(route, &token, 1, args.quiet_secs, None).await?,
                };
                eprintln!("round {round} {:>16} {phase:?}: {sample:?}", route.name);
                samples[p][i].push(sample);
            }
        }
    }
    for (i, route) in routes.iter().enumerate() {
        let count: u64 = samples.iter().flat_map(|p| &p[i]).map(|s| s.count).sum();
        eprintln!("requests {} {count}", route.name);
    }
    print_report(&routes, &samples, &args);
    sim.shutdown().await;
    Ok(())
}

// === Connections ===

fn connector(ca_pem: &[u8]) -> Result<TlsConnector, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A keep-alive HTTP/1.1 connection to the sim's tenant host over `route`.
async fn connect(route: &Route) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let mut tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(route.dial)).await??;
    tcp.set_nodelay(true)?;
    if route.connect {
        tokio::time::timeout(STEP_TIMEOUT, connect_tunnel(&mut tcp)).await??;
    }
    let name = ServerName::try_from(HOST)?.to_owned();
    let tls = tokio::time::timeout(STEP_TIMEOUT, route.tls.connect(name, tcp)).await??;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `CONNECT HOST:443`, reading the reply byte by byte so that no TLS byte is consumed.
async fn connect_tunnel(tcp: &mut TcpStream) -> Result<(), BoxError> {
    let req = format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err("CONNECT reply head over 16 KiB".into());
        }
        head.push(tcp.read_u8().await?);
    }
    let head = String::from_utf8_lossy(&head);
    match head.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("CONNECT refused: {}", head.lines().next().unwrap_or("")).into()),
    }
}

/// One request; returns its status after the whole body was read.
async fn request(sender: &mut SendRequest<Full<Bytes>>, token: &str) -> Result<u16, BoxError> {
    let req = http::Request::post(PATH)
        .header("host", HOST)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("prefer", "odata.maxpagesize=1")
        .header("x-anchormailbox", format!("UPN:{UPN}"))
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))?;
    sender.ready().await?;
    let resp = tokio::time::timeout(STEP_TIMEOUT, sender.send_request(req)).await??;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

// === Measurement ===

async fn wait_for_file(path: &PathBuf) -> Result<Vec<u8>, BoxError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match std::fs::read(path) {
            Ok(bytes) if !bytes.is_empty() => return Ok(bytes),
            _ if Instant::now() > deadline => {
                return Err(format!("{} never appeared", path.display()).into());
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Retries until one request answers 200: the proxy may still be starting, or signing in.
async fn warm_up(route: &Route, token: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let outcome = match connect(route).await {
            Ok(mut sender) => request(&mut sender, token)
                .await
                .map(|s| format!("HTTP {s}")),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(s) if s == "HTTP 200" => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "{}: no 200 within {READY_TIMEOUT:?}: {outcome:?}",
                    route.name
                )
                .into());
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// `conc` clients on fresh connections for `secs`; with `interval`, each client sends on a fixed
/// schedule of one request per interval (a late request goes at once, the schedule does not slip),
/// else back to back.
async fn measure(
    route: &Route,
    token: &str,
    conc: usize,
    secs: u64,
    interval: Option<Duration>,
) -> Result<Sample, BoxError> {
    let mut senders = Vec::new();
    for _ in 0..conc {
        senders.push(connect(route).await?);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(n, mut sender)| {
            let token = token.to_string();
            // Paced clients start spread over one interval, so the offered load is even.
            let mut next = interval.map(|i| start + i.mul_f64(n as f64 / conc as f64));
            tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    if let (Some(at), Some(every)) = (next.as_mut(), interval) {
                        tokio::time::sleep_until((*at).into()).await;
                        *at += every;
                    }
                    let t0 = Instant::now();
                    match request(&mut sender, &token).await {
                        Ok(200) => lat.push(t0.elapsed().as_micros() as u64),
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if errors > 0 {
        return Err(format!(
            "{}: {errors} of {} requests failed",
            route.name,
            all.len() as u64 + errors
        )
        .into());
    }
    all.sort_unstable();
    Ok(Sample {
        rps: all.len() as f64 / elapsed,
        p50_us: pct(&all, 0.5),
        p99_us: pct(&all, 0.99),
        errors,
        count: all.len() as u64,
    })
}

// === Report ===

fn pct(sorted: &[u64], q: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * q).round() as usize)
        .map_or(f64::NAN, |v| *v as f64)
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

fn print_report(routes: &[Route], samples: &[Vec<Vec<Sample>>], args: &Args) {
    let [saturated, paced, one] = [0, 1, 2].map(|p| &samples[p]);
    let med = |set: &[Vec<Sample>], i: usize, f: fn(&Sample) -> f64| {
        median(set[i].iter().map(f).collect())
    };
    println!(
        "Per path and round: {conc} keep-alive clients back to back for {} s (saturated); {conc} clients \
         offering {} requests/s together for {} s (paced); 1 client back to back for {} s. \
         {} rounds, interleaved; medians over the rounds.",
        args.secs,
        args.paced_rps,
        args.paced_secs,
        args.quiet_secs,
        args.rounds,
        conc = args.conc,
    );
    println!();
    println!(
        "| path | saturated: requests/s | p50 µs | p99 µs | paced: p50 µs | p99 µs | 1 client: p50 µs | p99 µs | failed | saturated requests/s per round |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (i, r) in routes.iter().enumerate() {
        let per_round: Vec<String> = saturated[i]
            .iter()
            .map(|s| format!("{:.0}", s.rps))
            .collect();
        let errors: u64 = samples.iter().flat_map(|p| &p[i]).map(|s| s.errors).sum();
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {errors} | {} |",
            r.name,
            med(saturated, i, |s| s.rps),
            med(saturated, i, |s| s.p50_us),
            med(saturated, i, |s| s.p99_us),
            med(paced, i, |s| s.p50_us),
            med(paced, i, |s| s.p99_us),
            med(one, i, |s| s.p50_us),
            med(one, i, |s| s.p99_us),
            per_round.join(" / ")
        );
    }
    for (i, route) in routes.iter().enumerate().skip(1) {
        // Per-round differences compare paths measured seconds apart, so drift between rounds cancels.
        let vs_direct = |set: &[Vec<Sample>], f: &dyn Fn(&Sample, &Sample) -> f64| {
            median(set[i].iter().zip(&set[0]).map(|(p, d)| f(p, d)).collect())
        };
        let ratio = vs_direct(saturated, &|p, d| p.rps / d.rps);
        let added =
            |set: &[Vec<Sample>], f: fn(&Sample) -> f64| vs_direct(set, &|p, d| f(p) - f(d));
        let p50 = |s: &Sample| s.p50_us;
        let p99 = |s: &Sample| s.p99_us;
        let (conc, rps) = (args.conc, args.paced_rps);
        println!();
        println!(
            "| {} vs direct (median of per-round figures) | value | target |",
            route.name
        );
        println!("|---|---:|---|");
        println!("| requests/s ratio, saturated | {ratio:.2}× | ≥ 0.7× |");
        println!(
            "| added p50, {conc} clients saturated (mostly queueing) | {:.0} µs | |",
            added(saturated, p50)
        );
        println!(
            "| added p99, {conc} clients saturated (mostly queueing) | {:.0} µs | |",
            added(saturated, p99)
        );
        println!(
            "| added p50, {conc} clients at {rps} requests/s | {:.0} µs | |",
            added(paced, p50)
        );
        println!(
            "| added p99, {conc} clients at {rps} requests/s | {:.0} µs | ≤ 1000 µs |",
            added(paced, p99)
        );
        println!("| added p50, 1 client | {:.0} µs | |", added(one, p50));
        println!("| added p99, 1 client | {:.0} µs | |", added(one, p99));
    }
}

// === Arguments ===

const USAGE: &str = "intercept_load [--sim-port 0] [--sim-ca-out FILE] [--token-out FILE] [--ready-out FILE] \
[--proxy|--reverse HOST:PORT --ca FILE [--label NAME]]... [--rounds 3] [--conc 64] [--secs 10] \
[--paced-rps 2000] [--paced-secs 5] [--quiet-secs 3]";

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        sim_port: 0,
        sim_ca_out: None,
        proxies: Vec::new(),
        token_out: None,
        ready_out: None,
        rounds: 3,
        conc: 64,
        secs: 10,
        paced_rps: 2000,
        paced_secs: 5,
        quiet_secs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value; usage: {USAGE}"))
        };
        let last = |proxies: &mut Vec<ProxyArg>| -> Result<usize, BoxError> {
            match proxies.len() {
                0 => Err(format!("{flag} comes after its --proxy; usage: {USAGE}").into()),
                n => Ok(n - 1),
            }
        };
        match flag.as_str() {
            // `cargo bench` passes `--bench` to harness-less benches.
            "--bench" => {}
            "--sim-port" => args.sim_port = value()?.parse()?,
            "--sim-ca-out" => args.sim_ca_out = Some(value()?.into()),
            "--proxy" | "--reverse" => args.proxies.push(ProxyArg {
                addr: value()?.parse()?,
                ca: None,
                label: "exoproxy".into(),
                connect: flag == "--proxy",
            }),
            "--token-out" => args.token_out = Some(value()?.into()),
            "--ready-out" => args.ready_out = Some(value()?.into()),
            "--ca" => {
                let ca = value()?;
                let n = last(&mut args.proxies)?;
                args.proxies[n].ca = Some(ca.into());
            }
            "--label" => {
                let label = value()?;
                let n = last(&mut args.proxies)?;
                args.proxies[n].label = label;
            }
            "--rounds" => args.rounds = value()?.parse()?,
            "--conc" => args.conc = value()?.parse()?,
            "--secs" => args.secs = value()?.parse()?,
            "--paced-rps" => args.paced_rps = value()?.parse()?,
            "--paced-secs" => args.paced_secs = value()?.parse()?,
            "--quiet-secs" => args.quiet_secs = value()?.parse()?,
            _ => return Err(format!("unknown argument {flag}; usage: {USAGE}").into()),
        }
    }
    if args.paced_rps == 0 || args.conc == 0 {
        return Err(format!("--conc and --paced-rps must be above 0; usage: {USAGE}").into());
    }
    Ok(args)
}
