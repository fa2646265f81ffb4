//! Unit tests for [`Router`] decisions: precedence, each rule kind, refusals and explanations.

use super::*;
use crate::target::{Host, ProxyEndpoint};

/// The product's decision ([`Router::decide`]) where no lookup is needed (rules, fixed hops): it
/// must be ready on the first poll, since the rules never wait.
trait DecideNow {
    fn decide_now(&self, target: &Target) -> Decision;
}

impl DecideNow for Router {
    fn decide_now(&self, target: &Target) -> Decision {
        let mut decision = std::pin::pin!(self.decide(target));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(decision.as_mut(), &mut cx) {
            std::task::Poll::Ready(result) => result.unwrap(),
            std::task::Poll::Pending => panic!("a decision without a lookup waited for I/O"),
        }
    }
}

fn connect(authority: &str) -> Target {
    Target::parse_connect(authority).unwrap()
}

fn http(authority: &str) -> Target {
    Target::from_http_authority(authority).unwrap()
}

fn proxy(s: &str) -> ProxyEndpoint {
    ProxyEndpoint::parse(s).unwrap()
}

fn via(proxies: &[&str]) -> Vec<Hop> {
    proxies.iter().map(|p| Hop::Proxy(proxy(p))).collect()
}

fn exo_rule() -> InterceptRule {
    InterceptRule {
        profile: "exo".into(),
        hosts: vec![
            "outlook.office365.com".into(),
            "*.outlook.office365.com".into(),
        ],
    }
}

/// A realistic configuration: a corporate proxy, STS hosts DIRECT, Exchange intercepted.
fn corporate() -> RouteConfig {
    RouteConfig {
        upstream: UpstreamSource::Static(vec![proxy("proxy.corp.example:8080")]),
        bypass: vec!["<local>;*.corp.example;10.*".into()],
        direct_hosts: vec!["sts.contoso.test".into(), "*.adfs.contoso.test".into()],
        intercept: vec![
            exo_rule(),
            InterceptRule {
                profile: "scc".into(),
                hosts: vec!["*.ps.compliance.protection.outlook.com".into()],
            },
        ],
        ..RouteConfig::default()
    }
}

fn router(config: RouteConfig) -> Router {
    Router::new(config).unwrap()
}

fn tunnel(hops: Vec<Hop>, allow_local: bool, why: &str) -> Decision {
    Decision {
        action: Action::Tunnel,
        hops,
        allow_local,
        why: why.into(),
    }
}

fn intercept(profile: &str, hops: Vec<Hop>, why: &str) -> Decision {
    Decision {
        action: Action::Intercept {
            profile: profile.into(),
        },
        hops,
        allow_local: false,
        why: why.into(),
    }
}

fn block_reason(decision: &Decision) -> &str {
    match &decision.action {
        Action::Block { reason } => reason,
        other => panic!("expected Block, got {other:?} ({decision})"),
    }
}

// === defaults and upstream sources ===

#[test]
fn default_config_goes_direct_and_allows_only_443() {
    let config = RouteConfig::default();
    assert_eq!(config.connect_ports, [443]);
    assert!(!config.fallback_direct);
    let r = router(config);
    assert_eq!(
        r.decide_now(&connect("example.com:443")),
        tunnel(vec![Hop::Direct], false, "no upstream configured")
    );
    assert_eq!(
        r.decide_now(&http("example.com")),
        tunnel(vec![Hop::Direct], false, "no upstream configured")
    );
}

#[test]
fn static_upstream_hops_in_order() {
    let r = router(RouteConfig {
        upstream: UpstreamSource::Static(vec![proxy("a.corp:8080"), proxy("[2001:db8::1]:3128")]),
        ..RouteConfig::default()
    });
    assert_eq!(
        r.decide_now(&connect("example.com:443")),
        tunnel(
            via(&["a.corp:8080", "[2001:db8::1]:3128"]),
            false,
            "static upstream"
        )
    );
}

#[test]
fn fallback_direct_appends_direct_after_the_proxies() {
    let r = router(RouteConfig {
        upstream: UpstreamSource::Static(vec![proxy("a.corp:8080")]),
        fallback_direct: true,
        ..RouteConfig::default()
    });
    let mut hops = via(&["a.corp:8080"]);
    hops.push(Hop::Direct);
    assert_eq!(
        r.decide_now(&connect("example.com:443")),
        tunnel(hops, false, "static upstream, then DIRECT")
    );
}

#[tokio::test]
async fn decide_is_ready_at_once_without_a_lookup() {
    let r = router(corporate());
    for t in [
        connect("example.com:443"),
        connect("outlook.office365.com:443"),
        connect("localhost:443"),
        http("intranet"),
    ] {
        assert_eq!(r.decide(&t).await.unwrap(), r.decide_now(&t), "{t:?}");
    }
}

// === configuration errors ===

#[test]
fn every_bad_entry_is_reported_with_its_field() {
    let errors = Router::new(RouteConfig {
        upstream: UpstreamSource::Static(Vec::new()),
        bypass: vec!["ok.example;<bogus>".into()],
        direct_hosts: vec!["a*b.example".into()],
        block: vec!["10.0.0.0/99".into()],
        allow_local: vec!["host:0".into()],
        connect_ports: Vec::new(),
        intercept: vec![InterceptRule {
            profile: " ".into(),
            hosts: vec!["10.0.0.1".into(), "*.x*.example".into()],
        }],
        ..RouteConfig::default()
    })
    .unwrap_err();
    let prefixes = [
        "block:",
        "allow_local:",
        "direct_hosts:",
        "intercept[0]: profile",
        "intercept[0].hosts: \"10.0.0.1\"",
        "intercept[0].hosts: \"*.x*.example\"",
        "bypass: \"<bogus>\": unknown token",
        "connect_ports:",
        "upstream:",
    ];
    assert_eq!(errors.len(), prefixes.len(), "{errors:#?}");
    for p in prefixes {
        assert!(
            errors.iter().any(|e| e.starts_with(p)),
            "no error starting {p:?}: {errors:#?}"
        );
    }
}

#[test]
fn port_zero_in_connect_ports_is_an_error() {
    let errors = Router::new(RouteConfig {
        connect_ports: vec![0, 443],
        ..RouteConfig::default()
    })
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
}

// === precedence ===

#[test]
fn block_rules_come_first() {
    let mut config = corporate();
    config.block = vec!["*.outlook.office365.com".into(), "sts.contoso.test".into()];
    let r = router(config);
    for t in ["nam1.outlook.office365.com:443", "sts.contoso.test:443"] {
        let d = r.decide_now(&connect(t));
        assert!(block_reason(&d).starts_with("block rule \""), "{d}");
        assert!(d.hops.is_empty());
    }
    let d = r.decide_now(&connect("nam1.outlook.office365.com:443"));
    assert_eq!(block_reason(&d), "block rule \"*.outlook.office365.com\"");
    assert_eq!(&*d.why, "block rule \"*.outlook.office365.com\"");
}

#[test]
fn block_rules_on_ip_ranges() {
    let r = router(RouteConfig {
        block: vec!["203.0.113.0/24".into()],
        ..RouteConfig::default()
    });
    block_reason(&r.decide_now(&connect("203.0.113.9:443")));
    assert_eq!(
        r.decide_now(&connect("203.0.114.9:443")).action,
        Action::Tunnel
    );
}

#[test]
fn direct_hosts_beat_intercept_and_are_never_proxied() {
    let mut config = corporate();
    config
        .direct_hosts
        .push("login.outlook.office365.com".into());
    let r = router(config);
    assert_eq!(
        r.decide_now(&connect("login.outlook.office365.com:443")),
        tunnel(
            vec![Hop::Direct],
            false,
            "direct host \"login.outlook.office365.com\""
        )
    );
    assert_eq!(
        r.decide_now(&connect("sts.contoso.test:443")),
        tunnel(vec![Hop::Direct], false, "direct host \"sts.contoso.test\"")
    );
    assert_eq!(
        r.decide_now(&http("x.adfs.contoso.test")),
        tunnel(
            vec![Hop::Direct],
            false,
            "direct host \"*.adfs.contoso.test\""
        )
    );
}

#[test]
fn intercept_uses_the_default_hops_and_names_profile_and_rule() {
    let r = router(corporate());
    assert_eq!(
        r.decide_now(&connect("outlook.office365.com:443")),
        intercept(
            "exo",
            via(&["proxy.corp.example:8080"]),
            "intercept rule \"outlook.office365.com\" (profile \"exo\")"
        )
    );
    assert_eq!(
        r.decide_now(&connect("NAM12.Outlook.Office365.COM.:443")),
        intercept(
            "exo",
            via(&["proxy.corp.example:8080"]),
            "intercept rule \"*.outlook.office365.com\" (profile \"exo\")"
        )
    );
    assert_eq!(
        r.decide_now(&connect("eur.ps.compliance.protection.outlook.com:443")),
        intercept(
            "scc",
            via(&["proxy.corp.example:8080"]),
            "intercept rule \"*.ps.compliance.protection.outlook.com\" (profile \"scc\")"
        )
    );
}

#[test]
fn first_intercept_rule_wins() {
    let r = router(RouteConfig {
        intercept: vec![
            InterceptRule {
                profile: "first".into(),
                hosts: vec!["*.office365.com".into()],
            },
            exo_rule(),
        ],
        ..RouteConfig::default()
    });
    let d = r.decide_now(&connect("outlook.office365.com:443"));
    assert_eq!(
        d.action,
        Action::Intercept {
            profile: "first".into()
        }
    );
}

#[test]
fn intercept_beats_bypass() {
    let mut config = corporate();
    config.bypass.push("*.office365.com".into());
    let d = router(config).decide_now(&connect("outlook.office365.com:443"));
    assert_eq!(
        d.action,
        Action::Intercept {
            profile: "exo".into()
        }
    );
}

#[test]
fn plain_http_to_an_intercepted_host_is_refused_bad_34() {
    let r = router(corporate());
    for t in ["outlook.office365.com", "nam1.outlook.office365.com:80"] {
        let d = r.decide_now(&http(t));
        let reason = block_reason(&d);
        assert!(reason.contains("use https://"), "{reason}");
        assert!(reason.contains("outlook.office365.com"), "{reason}");
    }
}

#[test]
fn without_intercept_rules_exchange_is_tunnelled_blind_bad_33() {
    let mut config = corporate();
    config.intercept.clear();
    assert_eq!(
        router(config).decide_now(&connect("outlook.office365.com:443")),
        tunnel(via(&["proxy.corp.example:8080"]), false, "static upstream")
    );
}

#[test]
fn look_alikes_are_not_intercepted_bad_27() {
    let r = router(corporate());
    for evil in [
        "outlook.office365.com.evil.com:443",
        "evil-outlook.office365.com:443",
        "outlook.office365.comx:443",
    ] {
        assert_eq!(
            r.decide_now(&connect(evil)),
            tunnel(via(&["proxy.corp.example:8080"]), false, "static upstream"),
            "{evil}"
        );
    }
    let d = r.decide_now(&connect("OUTLOOK.Office365.COM:443"));
    assert_eq!(
        d.action,
        Action::Intercept {
            profile: "exo".into()
        }
    );
}

#[test]
fn bypass_goes_direct_and_says_which_entry() {
    let r = router(corporate());
    assert_eq!(
        r.decide_now(&connect("wiki.corp.example:443")),
        tunnel(vec![Hop::Direct], false, "bypass rule \"*.corp.example\"")
    );
    assert_eq!(
        r.decide_now(&http("intranet")),
        tunnel(vec![Hop::Direct], false, "bypass rule \"<local>\"")
    );
    assert_eq!(
        r.decide_now(&connect("10.1.2.3:443")),
        tunnel(vec![Hop::Direct], false, "bypass rule \"10.*\"")
    );
    // Not bypassed: the name has a dot, and a CIDR-free wildcard on text does not see `11.`.
    assert_eq!(
        r.decide_now(&connect("11.1.2.3:443")).hops,
        via(&["proxy.corp.example:8080"])
    );
    assert_eq!(
        r.decide_now(&connect("corp.example:443")).hops,
        via(&["proxy.corp.example:8080"])
    );
}

#[test]
fn bypass_cidr_matches_literals_not_names() {
    let r = router(RouteConfig {
        upstream: UpstreamSource::Static(vec![proxy("p.corp:8080")]),
        bypass: vec!["192.168.0.0/16 [fd00::]/8".into()],
        ..RouteConfig::default()
    });
    assert_eq!(
        r.decide_now(&connect("192.168.3.4:443")).hops,
        [Hop::Direct]
    );
    assert_eq!(r.decide_now(&connect("[fd00::7]:443")).hops, [Hop::Direct]);
    assert_eq!(
        r.decide_now(&connect("printer.lan:443")).hops,
        via(&["p.corp:8080"])
    );
}

// === BAD-25: CONNECT ports ===

#[test]
fn connect_to_ports_outside_the_list_is_refused_bad_25() {
    let r = router(corporate());
    for port in [22, 25, 3389, 445, 6379, 9200, 80] {
        let d = r.decide_now(&connect(&format!("outlook.office365.com:{port}")));
        assert_eq!(
            block_reason(&d),
            format!(
                "CONNECT to port {port} is not allowed (allowed: 443); add {port} to connect_ports to allow it"
            )
        );
    }
}

#[test]
fn connect_ports_can_be_widened_and_do_not_limit_plain_http() {
    let r = router(RouteConfig {
        connect_ports: vec![8443, 443, 443],
        ..RouteConfig::default()
    });
    assert_eq!(
        r.decide_now(&connect("example.com:8443")).action,
        Action::Tunnel
    );
    let reason = r.decide_now(&connect("example.com:22"));
    assert!(
        block_reason(&reason).contains("(allowed: 443, 8443)"),
        "{reason}"
    );
    assert_eq!(
        r.decide_now(&http("example.com:8080")).action,
        Action::Tunnel
    );
}

#[test]
fn port_check_precedes_direct_hosts() {
    let d = router(corporate()).decide_now(&connect("sts.contoso.test:22"));
    assert!(block_reason(&d).contains("port 22"), "{d}");
}

// === BAD-22/23: local destinations ===

#[test]
fn local_destinations_are_refused_bad_22_bad_23() {
    let r = router(corporate());
    for t in [
        "localhost:443",
        "LOCALHOST.:443",
        "foo.localhost:443",
        "127.0.0.1:443",
        "127.9.9.9:443",
        "[::1]:443",
        "[::ffff:127.0.0.1]:443",
        "0.0.0.0:443",
        "[::]:443",
        "169.254.169.254:443",
        "[fe80::1]:443",
    ] {
        let d = r.decide_now(&connect(t));
        assert!(
            block_reason(&d).contains("add it to allow_local"),
            "{t}: {d}"
        );
    }
    // Plain http too (BAD-28: the admin API through the proxy).
    block_reason(&r.decide_now(&http("127.0.0.1:9000")));
    block_reason(&r.decide_now(&http("169.254.169.254")));
}

#[test]
fn odd_ipv4_spellings_never_reach_the_router_bad_22() {
    for t in [
        "127.1:443",
        "2130706433:443",
        "0x7f000001:443",
        "0177.0.0.1:443",
    ] {
        assert!(Target::parse_connect(t).is_err(), "{t}");
    }
}

#[test]
fn allowed_local_destinations_go_direct_even_with_an_upstream() {
    let mut config = corporate();
    config.allow_local = vec!["localhost".into(), "127.0.0.0/8".into(), "[::1]:443".into()];
    // `<local>` would match `localhost` first (no dot) and explain the decision as a bypass.
    config.bypass = vec!["*.corp.example".into()];
    // Plain http:// to 9000 needs the port allowed too (BAD-25, `http_ports`).
    config.http_ports.push(9000);
    let r = router(config);
    assert_eq!(
        r.decide_now(&connect("localhost:443")),
        tunnel(vec![Hop::Direct], true, "allow_local rule \"localhost\"")
    );
    assert_eq!(
        r.decide_now(&http("127.0.0.1:9000")),
        tunnel(vec![Hop::Direct], true, "allow_local rule \"127.0.0.0/8\"")
    );
    assert_eq!(
        r.decide_now(&connect("[::1]:443")),
        tunnel(vec![Hop::Direct], true, "allow_local rule \"[::1]:443\"")
    );
    // Not covered by the rules: still refused.
    block_reason(&r.decide_now(&connect("foo.localhost:443")));
    block_reason(&r.decide_now(&connect("[::]:443")));
}

#[test]
fn allow_local_does_not_bypass_ports_or_block_rules() {
    let mut config = corporate();
    config.allow_local = vec!["localhost".into()];
    config.block = vec!["localhost:8443".into()];
    config.connect_ports = vec![443, 8443];
    let r = router(config);
    assert!(block_reason(&r.decide_now(&connect("localhost:22"))).contains("port 22"));
    assert_eq!(
        block_reason(&r.decide_now(&connect("localhost:8443"))),
        "block rule \"localhost:8443\""
    );
}

#[test]
fn allow_local_on_a_name_keeps_the_normal_route_and_sets_the_flag() {
    // A test setup maps outlook.office365.com to a loopback emulator: the name is not local itself,
    // so it is still intercepted, and upstream may connect to the loopback address it resolves to.
    let mut config = corporate();
    config.allow_local = vec!["*.office365.com".into(), ".contoso.test".into()];
    let r = router(config);
    let mut expected = intercept(
        "exo",
        via(&["proxy.corp.example:8080"]),
        "intercept rule \"outlook.office365.com\" (profile \"exo\")",
    );
    expected.allow_local = true;
    assert_eq!(
        r.decide_now(&connect("outlook.office365.com:443")),
        expected
    );
    assert_eq!(
        r.decide_now(&connect("sts.contoso.test:443")),
        tunnel(vec![Hop::Direct], true, "direct host \"sts.contoso.test\"")
    );
    assert!(!r.decide_now(&connect("example.com:443")).allow_local);
}

#[test]
fn an_allowed_local_intercepted_host_is_intercepted_direct() {
    // The emulator setup: exosim on loopback under a localhost name, intercepted like Exchange.
    let mut config = corporate();
    config.allow_local = vec!["exo.localhost".into()];
    config.intercept.push(InterceptRule {
        profile: "sim".into(),
        hosts: vec!["exo.localhost".into()],
    });
    let r = router(config);
    let mut expected = intercept(
        "sim",
        vec![Hop::Direct],
        "intercept rule \"exo.localhost\" (profile \"sim\")",
    );
    expected.allow_local = true;
    assert_eq!(r.decide_now(&connect("exo.localhost:443")), expected);
}

#[test]
fn router_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Router>();
}

// === IPv6 ===

#[test]
fn ipv6_targets_through_every_rule_kind() {
    let r = router(RouteConfig {
        upstream: UpstreamSource::Static(vec![proxy("[2001:db8::100]:3128")]),
        block: vec!["2001:db8:bad::/48".into()],
        direct_hosts: vec!["[2001:db8:5::5]".into()],
        bypass: vec!["2001:db8:1::/48".into()],
        ..RouteConfig::default()
    });
    block_reason(&r.decide_now(&connect("[2001:db8:bad::1]:443")));
    assert_eq!(
        r.decide_now(&connect("[2001:db8:5::5]:443")),
        tunnel(vec![Hop::Direct], false, "direct host \"[2001:db8:5::5]\"")
    );
    assert_eq!(
        r.decide_now(&connect("[2001:db8:1::9]:443")),
        tunnel(vec![Hop::Direct], false, "bypass rule \"2001:db8:1::/48\"")
    );
    assert_eq!(
        r.decide_now(&connect("[2001:db8:2::9]:443")),
        tunnel(via(&["[2001:db8::100]:3128"]), false, "static upstream")
    );
}

// === explanations ===

#[test]
fn display_of_decisions_reads_well() {
    let r = router(corporate());
    assert_eq!(
        r.decide_now(&connect("wiki.corp.example:443")).to_string(),
        "TUNNEL via DIRECT (bypass rule \"*.corp.example\")"
    );
    assert_eq!(
        r.decide_now(&connect("outlook.office365.com:443"))
            .to_string(),
        "INTERCEPT [exo] via PROXY proxy.corp.example:8080 (intercept rule \"outlook.office365.com\" (profile \"exo\"))"
    );
    let target = Target {
        host: Host::Name("example.org".into()),
        port: 443,
        scheme: Scheme::Connect,
    };
    assert_eq!(
        r.decide_now(&target).to_string(),
        "TUNNEL via PROXY proxy.corp.example:8080 (static upstream)"
    );
}
