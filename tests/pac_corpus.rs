//! The corpus of realistic corporate PAC files (tests/pac_corpus/*.pac) against the expected results in
//! tests/pac_corpus/cases.toml, with injected DNS, local address and clock.
//!
//! `cargo test --test pac_corpus -- --ignored --nocapture print_interop_cases` prints our answers for the
//! interop cases; scripts/pac-interop.sh compares them with pacparser's pactester.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use exoproxy::route::pac::host_env::{FixedClock, FixedLocalAddrs, StaticDns};
use exoproxy::route::pac::{PacConfig, PacEnvironment, PacResolver, PacSource};
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    defaults: Defaults,
    dns: HashMap<String, Vec<IpAddr>>,
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Defaults {
    my_ip: IpAddr,
    now: String,
}

#[derive(Deserialize)]
struct Case {
    pac: String,
    url: String,
    host: Option<String>,
    expect: String,
    now: Option<String>,
    utc_offset_minutes: Option<i32>,
    my_ip: Option<IpAddr>,
    #[serde(default)]
    interop: bool,
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pac_corpus")
}

fn load_corpus() -> Corpus {
    let text = std::fs::read_to_string(corpus_dir().join("cases.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) → milliseconds since the epoch (days-from-civil, H. Hinnant).
fn parse_utc_millis(s: &str) -> f64 {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (hh, mm, ss) = (n(11, 13), n(14, 16), n(17, 19));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) as f64
}

/// The URL's host, as browsers pass it (no brackets, no port).
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_string();
    }
    authority.split(':').next().unwrap_or(authority).to_string()
}

async fn evaluate(corpus: &Corpus, case: &Case) -> String {
    let now = case.now.as_deref().unwrap_or(&corpus.defaults.now);
    let env = PacEnvironment {
        dns: Arc::new(StaticDns(corpus.dns.clone())),
        local: Arc::new(FixedLocalAddrs(vec![
            case.my_ip.unwrap_or(corpus.defaults.my_ip),
        ])),
        clock: Arc::new(FixedClock {
            millis: parse_utc_millis(now),
            utc_offset_minutes: Some(case.utc_offset_minutes.unwrap_or(0)),
        }),
        alert: None,
    };
    let pac = PacResolver::start(PacConfig {
        source: PacSource::File(corpus_dir().join(&case.pac)),
        workers: 1,
        env,
        ..PacConfig::default()
    })
    .await;
    let host = case.host.clone().unwrap_or_else(|| host_of(&case.url));
    pac.eval(&case.url, &host)
        .await
        .unwrap_or_else(|e| format!("ERROR {e}"))
}

#[tokio::test]
async fn corpus_matches_expected_results() {
    let corpus = load_corpus();
    let files: std::collections::HashSet<&str> =
        corpus.case.iter().map(|c| c.pac.as_str()).collect();
    assert!(files.len() >= 10, "corpus has {} PAC files", files.len());
    let mut failures = Vec::new();
    for case in &corpus.case {
        let got = evaluate(&corpus, case).await;
        if got != case.expect {
            failures.push(format!(
                "{} {}: got {got:?}, want {:?}",
                case.pac, case.url, case.expect
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "corpus mismatches:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn corpus_results_parse_into_hops() {
    let corpus = load_corpus();
    for case in &corpus.case {
        let hops = exoproxy::route::pac::directive::parse_directives(&case.expect);
        assert!(hops.is_ok(), "{} {}: {hops:?}", case.pac, case.url);
    }
}

#[tokio::test]
#[ignore = "prints our results for scripts/pac-interop.sh"]
async fn print_interop_cases() {
    let corpus = load_corpus();
    for case in corpus.case.iter().filter(|c| c.interop) {
        let got = evaluate(&corpus, case).await;
        let my_ip = case.my_ip.unwrap_or(corpus.defaults.my_ip);
        let host = case.host.clone().unwrap_or_else(|| host_of(&case.url));
        let path = corpus_dir().join(&case.pac);
        println!(
            "INTEROP\t{}\t{}\t{host}\t{my_ip}\t{got}",
            path.display(),
            case.url
        );
    }
}
