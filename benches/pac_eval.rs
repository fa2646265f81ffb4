//! PAC evaluation cost on a 220-line corporate script (tests/pac_corpus/11_big_corporate.pac):
//! - `uncached_eval`: one `FindProxyForURL` call through the worker thread (target ≤ 1 ms);
//! - `cached_decision`: `hops_for` answered from the per-URL cache (target ≤ 5 µs).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use exoproxy::route::pac::host_env::{FixedLocalAddrs, StaticDns};
use exoproxy::route::pac::{PacConfig, PacEnvironment, PacResolver, PacSource};
use exoproxy::target::Target;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/pac_corpus/11_big_corporate.pac"
    );
    let pac = runtime.block_on(PacResolver::start(PacConfig {
        source: PacSource::File(path.into()),
        workers: 1,
        env: PacEnvironment {
            dns: Arc::new(StaticDns::default()),
            local: Arc::new(FixedLocalAddrs(vec!["10.20.1.5".parse().unwrap()])),
            ..PacEnvironment::default()
        },
        ..PacConfig::default()
    }));
    // Wait for the load, and check the script answers as the corpus says.
    let first = runtime.block_on(pac.eval("https://www.example.com/", "www.example.com"));
    assert_eq!(
        first.unwrap(),
        "PROXY proxy-a.corp.example:8080; PROXY proxy-b.corp.example:8080"
    );

    c.bench_function("uncached_eval", |b| {
        b.iter(|| runtime.block_on(pac.eval("https://www.example.com/", "www.example.com")))
    });
    let target = Target::parse_connect("www.example.com:443").unwrap();
    runtime.block_on(pac.hops_for(&target)).unwrap();
    c.bench_function("cached_decision", |b| {
        b.iter(|| runtime.block_on(pac.hops_for(&target)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
