//! Unit tests for the matchers: rule patterns, IP ranges, wildcards, bypass lists.

use super::net::wildcard_match;
use super::*;
use crate::target::Target;

fn connect(authority: &str) -> Target {
    Target::parse_connect(authority).unwrap()
}

fn http(authority: &str) -> Target {
    Target::from_http_authority(authority).unwrap()
}

fn rule(pattern: &str) -> HostRule {
    HostRule::parse(pattern).unwrap()
}

fn bypass(list: &str) -> BypassList {
    BypassList::parse(&[list]).unwrap()
}

/// The entry text that matched, if any.
fn bypass_hit<'a>(list: &'a BypassList, target: &Target) -> Option<&'a str> {
    list.find(target).map(BypassEntry::as_str)
}

// === rule patterns ===

#[test]
fn exact_name_matches_only_itself_case_insensitively() {
    let r = rule("Outlook.Office365.com.");
    assert!(r.matches(&connect("outlook.office365.com:443")));
    assert!(r.matches(&connect("OUTLOOK.Office365.COM:443")));
    assert!(r.matches(&connect("outlook.office365.com.:443")));
    assert!(!r.matches(&connect("a.outlook.office365.com:443")));
    assert!(!r.matches(&connect("office365.com:443")));
}

#[test]
fn look_alikes_never_match_exact_or_suffix_rules_bad_27() {
    for pattern in [
        "outlook.office365.com",
        "*.outlook.office365.com",
        ".outlook.office365.com",
    ] {
        let r = rule(pattern);
        for evil in [
            "outlook.office365.com.evil.com:443",
            "evil-outlook.office365.com:443",
            "outlook.office365.comx:443",
            "xoutlook.office365.com:443",
            "outlook-office365.com:443",
        ] {
            assert!(
                !r.matches(&connect(evil)),
                "{pattern} must not match {evil}"
            );
        }
    }
    assert!(rule("*.outlook.office365.com").matches(&connect("A.OUTLOOK.Office365.COM:443")));
}

#[test]
fn star_dot_suffix_matches_strictly_below_on_label_boundaries() {
    let r = rule("*.outlook.office365.com");
    assert!(r.matches(&connect("nam12.outlook.office365.com:443")));
    assert!(r.matches(&connect("a.b.outlook.office365.com:443")));
    assert!(!r.matches(&connect("outlook.office365.com:443")));
}

#[test]
fn dot_suffix_matches_the_name_and_below() {
    let r = rule(".contoso.test");
    assert!(r.matches(&connect("contoso.test:443")));
    assert!(r.matches(&connect("sts.contoso.test:443")));
    assert!(!r.matches(&connect("evilcontoso.test:443")));
}

#[test]
fn port_suffix_limits_the_rule() {
    let r = rule("*.corp.example:8443");
    assert!(r.matches(&connect("a.corp.example:8443")));
    assert!(!r.matches(&connect("a.corp.example:443")));
    let v6 = rule("[::1]:8443");
    assert!(v6.matches(&connect("[::1]:8443")));
    assert!(!v6.matches(&connect("[::1]:443")));
    let cidr = rule("10.0.0.0/8:80");
    assert!(cidr.matches(&http("10.2.3.4")));
    assert!(!cidr.matches(&http("10.2.3.4:8080")));
}

#[test]
fn ip_rules_match_only_ip_literals() {
    let r = rule("10.0.0.0/8");
    assert!(r.matches(&connect("10.200.1.1:443")));
    assert!(!r.matches(&connect("11.0.0.1:443")));
    // A name that looks like it could be in the range is still a name.
    assert!(!r.matches(&connect("10.internal:443")));
    let single = rule("192.0.2.7");
    assert!(single.is_ip());
    assert!(single.matches(&connect("192.0.2.7:443")));
    assert!(!single.matches(&connect("192.0.2.8:443")));
}

#[test]
fn ipv6_rules_with_and_without_brackets() {
    for pattern in ["2001:db8::/32", "[2001:db8::]/32"] {
        let r = rule(pattern);
        assert!(r.matches(&connect("[2001:db8::5]:443")), "{pattern}");
        assert!(!r.matches(&connect("[2001:db9::5]:443")), "{pattern}");
        assert!(!r.matches(&connect("10.0.0.1:443")), "{pattern}");
    }
    assert!(rule("::1").matches(&connect("[::1]:443")));
    assert!(rule("[::1]").matches(&connect("[::1]:443")));
}

#[test]
fn ipv4_rules_match_ipv4_mapped_ipv6_literals() {
    let r = rule("127.0.0.0/8");
    assert!(r.matches(&connect("[::ffff:127.0.0.1]:443")));
    assert!(rule("::ffff:10.0.0.0/104").matches(&connect("10.9.9.9:443")));
}

#[test]
fn malformed_rules_are_errors() {
    for bad in [
        "",
        "  ",
        "a*b.example",
        "*",
        "*.10.0.0.1",
        "10.0.0.0/33",
        "fe80::/129",
        "10.0.0.0/x",
        "host:0",
        "host:65536",
        "host:https",
        "[::1",
        "bad host",
        "127.1",
    ] {
        assert!(HostRule::parse(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn rule_list_reports_first_match_with_explanation_and_index() {
    let list = RuleList::compile(
        "direct host",
        "direct_hosts",
        &["10.0.0.0/8", "sts.contoso.test", "*.contoso.test"],
    )
    .unwrap();
    assert_eq!(list.len(), 3);
    let m = list.find(&connect("sts.contoso.test:443")).unwrap();
    assert_eq!((m.index, &**m.why), (1, "direct host \"sts.contoso.test\""));
    let m = list.find(&connect("adfs.contoso.test:443")).unwrap();
    assert_eq!((m.index, &**m.why), (2, "direct host \"*.contoso.test\""));
    assert_eq!(list.find(&connect("10.1.1.1:443")).unwrap().index, 0);
    assert!(list.find(&connect("contoso.test:443")).is_none());
}

#[test]
fn rule_list_names_every_bad_entry() {
    let errors =
        RuleList::compile("block rule", "block", &["ok.example", "a*b", "x:0"]).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("block: \"a*b\""), "{errors:?}");
    assert!(errors[1].starts_with("block: \"x:0\""), "{errors:?}");
}

// === IP ranges, local destinations, wildcards ===

#[test]
fn ip_net_clears_host_bits_and_handles_extremes() {
    let net = IpNet::parse("192.168.1.77/16").unwrap();
    assert_eq!(net.to_string(), "192.168.0.0/16");
    assert!(net.contains("192.168.200.1".parse().unwrap()));
    let all = IpNet::parse("0.0.0.0/0").unwrap();
    assert!(all.contains("203.0.113.9".parse().unwrap()));
    assert!(!all.contains("::1".parse().unwrap()));
    assert!(
        IpNet::parse("::/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap())
    );
}

#[test]
fn wildcard_matching_table() {
    let cases = [
        ("*", "anything", true),
        ("*", "", true),
        ("10.*", "10.1.2.3", true),
        ("10.*", "110.1.2.3", false),
        ("*.corp", "a.corp", true),
        ("*.corp", "corp", false),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxbyy", false),
        ("*-int.corp", "app-int.corp", true),
        ("*ab", "aab", true),
        ("x*", "y", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
    ];
    for (pattern, text, expected) in cases {
        assert_eq!(
            wildcard_match(pattern.as_bytes(), text.as_bytes()),
            expected,
            "{pattern:?} vs {text:?}"
        );
    }
}

// === bypass lists ===

#[test]
fn bypass_local_token_matches_dotless_names_only() {
    let list = bypass("<local>");
    assert_eq!(bypass_hit(&list, &connect("intranet:443")), Some("<local>"));
    assert_eq!(bypass_hit(&list, &http("wiki")), Some("<local>"));
    assert_eq!(bypass_hit(&list, &connect("intranet.corp:443")), None);
    assert_eq!(bypass_hit(&list, &connect("[2001:db8::1]:443")), None);
    assert!(bypass("<LOCAL>").find(&connect("intranet:443")).is_some());
}

#[test]
fn bypass_wildcards_anywhere() {
    let list = bypass("*.corp.example;10.*;192.168.*;*-int.example");
    assert_eq!(
        bypass_hit(&list, &connect("a.corp.example:443")),
        Some("*.corp.example")
    );
    assert_eq!(
        bypass_hit(&list, &connect("A.B.CORP.EXAMPLE:443")),
        Some("*.corp.example")
    );
    assert_eq!(bypass_hit(&list, &connect("corp.example:443")), None);
    assert_eq!(bypass_hit(&list, &connect("evilcorp.example:443")), None);
    assert_eq!(bypass_hit(&list, &connect("10.1.2.3:443")), Some("10.*"));
    assert_eq!(bypass_hit(&list, &connect("110.1.2.3:443")), None);
    assert_eq!(
        bypass_hit(&list, &connect("192.168.7.1:443")),
        Some("192.168.*")
    );
    assert_eq!(bypass_hit(&list, &connect("192.169.7.1:443")), None);
    assert_eq!(
        bypass_hit(&list, &connect("app-int.example:443")),
        Some("*-int.example")
    );
    // Text wildcards see IPv4-mapped literals as IPv4, as the address they are.
    assert_eq!(
        bypass_hit(&list, &connect("[::ffff:10.0.0.1]:443")),
        Some("10.*")
    );
}

#[test]
fn bypass_star_dot_suffix_also_matches_ip_text() {
    let list = bypass("*.1");
    assert!(list.find(&connect("10.0.0.1:443")).is_some());
    assert!(list.find(&connect("10.0.0.11:443")).is_none());
}

#[test]
fn bypass_leading_dot_reads_as_star_dot() {
    let list = bypass(".corp.example");
    assert!(list.find(&connect("a.corp.example:443")).is_some());
    assert!(list.find(&connect("corp.example:443")).is_none());
}

#[test]
fn bypass_plain_name_is_exact_as_in_wininet() {
    let list = bypass("contoso.com");
    assert!(list.find(&connect("contoso.com:443")).is_some());
    assert!(list.find(&connect("CONTOSO.COM.:443")).is_some());
    assert!(list.find(&connect("www.contoso.com:443")).is_none());
}

#[test]
fn bypass_separators_semicolon_comma_whitespace() {
    let list = BypassList::parse(&[
        "a.example; b.example,c.example\td.example\n",
        "  e.example ;; ",
    ])
    .unwrap();
    let names: Vec<&str> = list.entries().iter().map(BypassEntry::as_str).collect();
    assert_eq!(
        names,
        [
            "a.example",
            "b.example",
            "c.example",
            "d.example",
            "e.example"
        ]
    );
}

#[test]
fn bypass_everything() {
    let list = bypass("*");
    assert!(list.find(&connect("anything.example:443")).is_some());
    assert!(list.find(&connect("[2001:db8::1]:443")).is_some());
}

#[test]
fn bypass_cidr_matches_ip_literals_only() {
    let list = bypass("10.0.0.0/8 [fd00::]/8 fe80::/10");
    assert_eq!(
        bypass_hit(&list, &connect("10.20.30.40:443")),
        Some("10.0.0.0/8")
    );
    assert_eq!(bypass_hit(&list, &connect("10.internal:443")), None);
    assert_eq!(
        bypass_hit(&list, &connect("[fd12::1]:443")),
        Some("[fd00::]/8")
    );
    assert_eq!(
        bypass_hit(&list, &connect("[fe80::9]:443")),
        Some("fe80::/10")
    );
    assert_eq!(bypass_hit(&list, &connect("[2001:db8::1]:443")), None);
}

#[test]
fn bypass_ip_literal_entries() {
    let list = bypass("192.0.2.1 [2001:db8::1] 2001:db8::2");
    assert!(list.find(&connect("192.0.2.1:443")).is_some());
    assert!(list.find(&connect("[2001:db8::1]:443")).is_some());
    assert!(list.find(&connect("[2001:db8::2]:443")).is_some());
    assert!(list.find(&connect("[2001:db8::3]:443")).is_none());
}

#[test]
fn bypass_scheme_prefix_limits_to_http_or_connect() {
    let list = bypass("https://*.secure.example http://*.plain.example ftp://*.any.example");
    assert!(list.find(&connect("a.secure.example:443")).is_some());
    assert!(list.find(&http("a.secure.example")).is_none());
    assert!(list.find(&http("a.plain.example")).is_some());
    assert!(list.find(&connect("a.plain.example:443")).is_none());
    assert!(list.find(&connect("a.any.example:443")).is_none());
    assert!(list.find(&http("a.any.example")).is_none());
}

#[test]
fn bypass_port_suffix_limits_the_entry() {
    let list = bypass("*.corp.example:8080 [::1]:8443 https://svc.example:443");
    assert!(list.find(&http("a.corp.example:8080")).is_some());
    assert!(list.find(&http("a.corp.example")).is_none());
    assert!(list.find(&connect("[::1]:8443")).is_some());
    assert!(list.find(&connect("[::1]:443")).is_none());
    assert!(list.find(&connect("svc.example:443")).is_some());
}

#[test]
fn bypass_explanations_cite_the_entry() {
    let list = bypass("*.corp.example");
    let entry = list.find(&connect("a.corp.example:443")).unwrap();
    assert_eq!(&**entry.why(), "bypass rule \"*.corp.example\"");
}

#[test]
fn bypass_strict_reports_and_lenient_skips_bad_entries() {
    let lists = ["good.example;<-loopback>;bad^host;10.0.0.0/40;x:0"];
    let errors = BypassList::parse(&lists).unwrap_err();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].contains("<-loopback>"), "{errors:?}");
    let (list, warnings) = BypassList::parse_lenient(&lists);
    assert_eq!(warnings, errors);
    assert_eq!(list.entries().len(), 1);
    assert!(list.find(&connect("good.example:443")).is_some());
}
