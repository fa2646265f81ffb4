//! The PAC helper functions, one expression at a time (docs/PROTOCOL.md#pac-helpers), with a fixed clock
//! (Wednesday 2026-11-25 10:30:00 UTC), fixed local addresses and a table resolver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use exoproxy::route::pac::host_env::{FixedClock, FixedLocalAddrs, StaticDns};
use exoproxy::route::pac::{PacConfig, PacEnvironment, PacResolver, PacSource};

const WED_1030_UTC: f64 = 1_795_602_600_000.0;

const CASES: &[(&str, &str)] = &[
    ("isPlainHostName('www')", "true"),
    ("isPlainHostName('www.corp.example')", "false"),
    ("dnsDomainIs('www.corp.example', '.corp.example')", "true"),
    ("dnsDomainIs('www', '.corp.example')", "false"),
    ("dnsDomainIs('corp.example', '.corp.example')", "false"),
    (
        "localHostOrDomainIs('www.corp.example', 'www.corp.example')",
        "true",
    ),
    ("localHostOrDomainIs('www', 'www.corp.example')", "true"),
    (
        "localHostOrDomainIs('www.other.example', 'www.corp.example')",
        "false",
    ),
    (
        "localHostOrDomainIs('home.corp.example', 'www.corp.example')",
        "false",
    ),
    ("isResolvable('app.corp.test')", "true"),
    ("isResolvable('nowhere.test')", "false"),
    ("isResolvable('v6only.corp.test')", "false"),
    ("dnsResolve('app.corp.test')", "10.1.2.3"),
    ("dnsResolve('nowhere.test')", "null"),
    ("dnsResolve('v6only.corp.test')", "null"),
    ("dnsResolve('192.0.2.9')", "192.0.2.9"),
    ("isInNet('app.corp.test', '10.0.0.0', '255.0.0.0')", "true"),
    ("isInNet('10.1.2.3', '10.1.0.0', '255.255.0.0')", "true"),
    ("isInNet('10.2.2.3', '10.1.0.0', '255.255.0.0')", "false"),
    ("isInNet('300.1.2.3', '0.0.0.0', '0.0.0.0')", "false"),
    ("isInNet('nowhere.test', '0.0.0.0', '0.0.0.0')", "false"),
    ("convert_addr('104.16.41.2')", "1745889538"),
    ("myIpAddress()", "10.20.30.40"),
    ("dnsDomainLevels('www')", "0"),
    ("dnsDomainLevels('www.corp.example')", "2"),
    (
        "shExpMatch('http://home.netscape.com/people/ari/index.html', '*/ari/*')",
        "true",
    ),
    (
        "shExpMatch('http://home.netscape.com/people/montulli/index.html', '*/ari/*')",
        "false",
    ),
    ("shExpMatch('a.b', 'a?b')", "true"),
    ("shExpMatch('axb', 'a.b')", "false"),
    ("weekdayRange('WED')", "true"),
    ("weekdayRange('MON', 'FRI')", "true"),
    ("weekdayRange('SAT', 'SUN')", "false"),
    ("weekdayRange('FRI', 'MON')", "false"),
    ("weekdayRange('TUE', 'MON')", "true"),
    ("weekdayRange('WED', 'GMT')", "true"),
    ("weekdayRange('XYZ')", "false"),
    ("dateRange(25)", "true"),
    ("dateRange(24)", "false"),
    ("dateRange('NOV')", "true"),
    ("dateRange(2026)", "true"),
    ("dateRange(1, 25)", "true"),
    ("dateRange('OCT', 'DEC')", "true"),
    ("dateRange('DEC', 'FEB')", "false"),
    ("dateRange(1, 'NOV', 30, 'NOV')", "true"),
    ("dateRange('NOV', 2026, 'DEC', 2026)", "true"),
    ("dateRange(1, 'JAN', 2026, 24, 'NOV', 2026)", "false"),
    ("dateRange(1, 'JAN', 2026, 25, 'NOV', 2026)", "true"),
    ("dateRange('NOV', 'GMT')", "true"),
    ("timeRange(10)", "true"),
    ("timeRange(11)", "false"),
    ("timeRange(9, 10)", "true"),
    ("timeRange(11, 12)", "false"),
    ("timeRange(10, 30, 10, 30)", "true"),
    ("timeRange(10, 31, 11, 0)", "false"),
    ("timeRange(10, 29, 59, 10, 30, 0)", "true"),
    ("timeRange(22, 11)", "true"),
    ("timeRange(10, 'GMT')", "true"),
    (
        "(function () { try { timeRange(1, 2, 3); return 'no'; } catch (e) { return 'threw'; } })()",
        "threw",
    ),
    ("isResolvableEx('v6only.corp.test')", "true"),
    ("isResolvableEx('nowhere.test')", "false"),
    ("dnsResolveEx('dual.corp.test')", "2001:db8::7;10.7.7.7"),
    ("dnsResolveEx('nowhere.test')", ""),
    ("isInNetEx('2001:db8::7', '2001:db8::/32')", "true"),
    ("isInNetEx('dual.corp.test', '10.7.0.0/16')", "true"),
    ("isInNetEx('10.7.7.7', '10.8.0.0/16')", "false"),
    ("myIpAddressEx()", "10.20.30.40;2001:db8::40"),
    (
        "sortIpAddressList('10.0.0.2;2001:db8::1;10.0.0.1')",
        "2001:db8::1;10.0.0.1;10.0.0.2",
    ),
    ("sortIpAddressList('garbage')", ""),
    ("getClientVersion()", "1.0"),
    ("alert('hello')", "undefined"),
];

fn script() -> String {
    let bodies: Vec<String> = CASES
        .iter()
        .map(|(expr, _)| format!("  function () {{ return {expr}; }}"))
        .collect();
    format!(
        "var cases = [\n{}\n];\nfunction FindProxyForURL(url, host) {{ return String(cases[parseInt(host, 10)]()); }}\n",
        bodies.join(",\n")
    )
}

#[tokio::test]
async fn helpers_follow_the_reference_semantics() {
    let mut dns = HashMap::new();
    dns.insert(
        "app.corp.test".to_string(),
        vec!["10.1.2.3".parse().unwrap()],
    );
    dns.insert(
        "v6only.corp.test".to_string(),
        vec!["2001:db8::5".parse().unwrap()],
    );
    dns.insert(
        "dual.corp.test".to_string(),
        vec!["10.7.7.7".parse().unwrap(), "2001:db8::7".parse().unwrap()],
    );
    let local = [
        "127.0.0.1",
        "169.254.1.1",
        "10.20.30.40",
        "fe80::1",
        "2001:db8::40",
    ];
    let pac = PacResolver::start(PacConfig {
        source: PacSource::Inline(script()),
        workers: 1,
        env: PacEnvironment {
            dns: Arc::new(StaticDns(dns)),
            local: Arc::new(FixedLocalAddrs(
                local.iter().map(|s| s.parse().unwrap()).collect(),
            )),
            clock: Arc::new(FixedClock {
                millis: WED_1030_UTC,
                utc_offset_minutes: Some(0),
            }),
            alert: None,
        },
        ..PacConfig::default()
    })
    .await;
    let mut failures = Vec::new();
    for (i, (expr, want)) in CASES.iter().enumerate() {
        let got = pac.eval("https://x/", &i.to_string()).await;
        if got.as_deref() != Ok(*want) {
            failures.push(format!("{expr}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "helper mismatches:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn local_time_uses_the_injected_offset() {
    // 10:30 UTC is 12:30 at UTC+2 and still Wednesday; at UTC-11 it is 23:30 on Tuesday.
    for (offset, want) in [(120, "12 true"), (-660, "23 false")] {
        let pac = PacResolver::start(PacConfig {
            source: PacSource::Inline(
                "function FindProxyForURL(u, h) { return (timeRange(12) ? '12' : timeRange(23) ? '23' : '?') + ' ' + weekdayRange('WED'); }".into(),
            ),
            workers: 1,
            env: PacEnvironment {
                clock: Arc::new(FixedClock {
                    millis: WED_1030_UTC,
                    utc_offset_minutes: Some(offset),
                }),
                ..PacEnvironment::default()
            },
            ..PacConfig::default()
        })
        .await;
        assert_eq!(
            pac.eval("https://x/", "x").await.unwrap(),
            want,
            "offset {offset}"
        );
    }
}
