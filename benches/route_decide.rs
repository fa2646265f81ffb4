//! `Router::decide` over a realistic rule set: 50 bypass entries, 20 direct hosts, blocked CIDRs, two
//! intercept profiles and a static upstream with fallback. Target: ≤ 1 µs per decision, including the
//! worst case where a name misses every rule and takes the default route. With a static upstream the
//! decision never waits, so each one is polled once, without a runtime.
//!
//! Run: `cargo bench --bench route_decide`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use exoproxy::route::{InterceptRule, RouteConfig, Router, UpstreamSource};
use exoproxy::target::{Decision, ProxyEndpoint, Target};

fn realistic_config() -> RouteConfig {
    let mut bypass = vec!["<local>".to_string()];
    for i in 0..20 {
        bypass.push(format!("*.dept{i}.corp.example"));
        bypass.push(format!("app{i}.intranet.example"));
    }
    bypass.extend(
        [
            "10.*",
            "192.168.*",
            "172.16.0.0/12",
            "[fd00::]/8",
            "*-int.example",
            "https://*.secure.example",
        ]
        .map(String::from),
    );
    bypass.extend((0..3).map(|i| format!("host{i}.example:8080")));
    let direct_hosts = (0..20).map(|i| format!("sts{i}.contoso.test")).collect();
    RouteConfig {
        upstream: UpstreamSource::Static(vec![
            ProxyEndpoint::parse("proxy1.corp.example:8080").unwrap(),
            ProxyEndpoint::parse("proxy2.corp.example:8080").unwrap(),
        ]),
        fallback_direct: true,
        bypass,
        direct_hosts,
        block: vec![
            "203.0.113.0/24".into(),
            "2001:db8:bad::/48".into(),
            "*.tracker.example".into(),
        ],
        connect_ports: vec![443, 8443],
        allow_local: vec!["exosim.localhost".into()],
        intercept: vec![
            InterceptRule {
                profile: "exo".into(),
                hosts: vec![
                    "outlook.office365.com".into(),
                    "*.outlook.office365.com".into(),
                ],
            },
            InterceptRule {
                profile: "scc".into(),
                hosts: vec!["*.ps.compliance.protection.outlook.com".into()],
            },
        ],
        ..RouteConfig::default()
    }
}

/// `Router::decide` for a route without a lookup: ready on the first poll.
fn decide_now(router: &Router, target: &Target) -> Decision {
    let mut decision = std::pin::pin!(router.decide(target));
    match decision
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result.unwrap(),
        Poll::Pending => panic!("a static route waited for I/O"),
    }
}

fn bench_decide(c: &mut Criterion) {
    let router = Router::new(realistic_config()).unwrap();
    let cases = [
        ("intercept", "nam12.outlook.office365.com:443"),
        ("direct_host_last", "sts19.contoso.test:443"),
        ("bypass_wildcard_late", "a.dept19.corp.example:443"),
        ("default_route_miss_all", "www.example.org:443"),
        ("ip_literal_bypass_cidr", "172.20.1.1:443"),
        ("ip_literal_default", "198.51.100.7:443"),
        ("blocked_port", "www.example.org:22"),
    ];
    let mut group = c.benchmark_group("route_decide");
    for (name, authority) in cases {
        let target = Target::parse_connect(authority).unwrap();
        group.bench_function(name, |b| b.iter(|| decide_now(&router, black_box(&target))));
    }
    group.finish();
}

criterion_group!(benches, bench_decide);
criterion_main!(benches);
