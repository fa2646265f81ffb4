use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::directive::{MAX_ENTRIES, parse_directives};
use super::engine::{is_in_net_ex, join_v6_first, my_ip_address, sort_ip_address_list};
use super::host_from_url;
use crate::route::loops::names_this_proxy;
use crate::target::{Hop, ProxyEndpoint};

fn proxy(s: &str) -> Hop {
    Hop::Proxy(ProxyEndpoint::parse(s).unwrap())
}

#[test]
fn directive_grammar_accepts_the_standard_forms() {
    assert_eq!(parse_directives("DIRECT").unwrap(), vec![Hop::Direct]);
    assert_eq!(
        parse_directives("  proxy a.corp:8080 ;HTTP 10.0.0.1:3128;  direct; ").unwrap(),
        vec![proxy("a.corp:8080"), proxy("10.0.0.1:3128"), Hop::Direct]
    );
    assert_eq!(
        parse_directives("PROXY [::1]:8080").unwrap(),
        vec![proxy("[::1]:8080")]
    );
    assert_eq!(
        parse_directives("SOCKS5 s:1080; PROXY b:2").unwrap(),
        vec![proxy("b:2")],
        "unsupported entries are dropped when something usable remains"
    );
}

/// PAC-6: every hostile or malformed result is refused as a whole.
#[test]
fn directive_grammar_refuses_pac_6_cases() {
    let many = vec!["PROXY a:1"; 10_000].join("; ");
    let cases = [
        "",
        " ; ; ",
        "PROXY",
        "PROXY host",
        "PROXY user:pw@h:1",
        "SOCKS5 s:1080",
        "HTTPS secure.corp:443",
        "junk PROXY evil:8080",
        "PROXY evil:8080 junk",
        "NULL",
        "STARPROXY a:1",
        "DIRECT now",
        "PROXY a:0",
        "PROXY a:99999",
        "PROXY a:1/path",
        many.as_str(),
    ];
    for case in cases {
        assert!(
            parse_directives(case).is_err(),
            "{case:.40?} should be refused"
        );
    }
    let at_cap = vec!["PROXY a:1"; MAX_ENTRIES].join(";");
    assert_eq!(parse_directives(&at_cap).unwrap().len(), MAX_ENTRIES);
}

#[test]
fn ex_helpers_follow_the_microsoft_semantics() {
    let none = |_: &str| -> Arc<[IpAddr]> { Arc::from([]) };
    assert!(is_in_net_ex("10.1.2.3", "10.0.0.0/8", &none));
    assert!(!is_in_net_ex("11.1.2.3", "10.0.0.0/8", &none));
    assert!(is_in_net_ex("2001:db8::1", "2001:db8::/32", &none));
    assert!(!is_in_net_ex("2001:db8::1", "10.0.0.0/8", &none));
    assert!(
        !is_in_net_ex("10.1.2.3", "10.0.0.0", &none),
        "prefix length required"
    );
    assert!(is_in_net_ex("0.0.0.0", "0.0.0.0/0", &none));
    let resolver =
        |_: &str| -> Arc<[IpAddr]> { Arc::from(["192.0.2.7".parse::<IpAddr>().unwrap()]) };
    assert!(is_in_net_ex("app.corp", "192.0.2.0/24", &resolver));

    assert_eq!(
        sort_ip_address_list("10.0.0.2;2001:db8::1;10.0.0.1"),
        "2001:db8::1;10.0.0.1;10.0.0.2"
    );
    assert_eq!(sort_ip_address_list("10.0.0.1;nonsense"), "");
    let ips: Vec<IpAddr> = ["192.0.2.1", "2001:db8::5"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(join_v6_first(&ips), "2001:db8::5;192.0.2.1");
    assert_eq!(my_ip_address(&[]), "127.0.0.1");
    assert_eq!(my_ip_address(&ips[..]), "192.0.2.1");
}

#[test]
fn loop_detection_knows_our_own_spellings() {
    let own: Vec<SocketAddr> = vec!["127.0.0.1:3128".parse().unwrap()];
    let is_own = |s: &str| names_this_proxy(&ProxyEndpoint::parse(s).unwrap(), &own);
    assert!(is_own("127.0.0.1:3128"));
    assert!(is_own("localhost:3128"));
    assert!(is_own("127.0.0.2:3128"));
    assert!(!is_own("127.0.0.1:8080"));
    assert!(!is_own("proxy.corp:3128"));
}

#[test]
fn host_from_url_is_what_browsers_pass() {
    let host = |u: &str| host_from_url(u);
    assert_eq!(
        host("https://WWW.Example.com/").as_deref(),
        Some("www.example.com")
    );
    assert_eq!(
        host("http://a.example:8080/x?y#z").as_deref(),
        Some("a.example")
    );
    assert_eq!(
        host("https://[2001:db8::1]:8443/").as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(
        host("http://user:pw@h.example/").as_deref(),
        Some("h.example")
    );
    assert_eq!(host("no-scheme"), None);
    assert_eq!(host("http:///path"), None);
}
