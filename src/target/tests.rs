use super::*;

#[test]
fn connect_authorities_that_must_be_rejected() {
    // BAD-20, BAD-21, and the odd IPv4 spellings of BAD-22.
    for bad in [
        "example.com",
        "example.com:0",
        "example.com:65536",
        "example.com:443abc",
        "::1:443",
        "[::1]",
        "user:pass@host:443",
        "host:443/x",
        "host:443?q",
        "host:443#f",
        "ho%73t:443",
        "ho st:443",
        "127.1:443",
        "2130706433:443",
        "0x7f000001:443",
        "[fe80::1%25eth0]:443",
        ":443",
        "b\u{fc}cher.de:443",
    ] {
        assert!(
            Target::parse_connect(bad).is_err(),
            "{bad} should be rejected"
        );
    }
}

#[test]
fn connect_authorities_are_normalised() {
    let t = Target::parse_connect("OUTLOOK.Office365.COM.:443").unwrap();
    assert_eq!(t.host, Host::Name("outlook.office365.com".into()));
    assert_eq!(t.port, 443);
    let t = Target::parse_connect("[::1]:8443").unwrap();
    assert_eq!(t.host, Host::Ip("::1".parse().unwrap()));
    assert_eq!(t.to_string(), "[::1]:8443");
    let t = Target::parse_connect("0177.0.0.1:443");
    assert!(t.is_err(), "octal-looking dotted quads are refused");
}

#[test]
fn http_authority_defaults_to_port_80() {
    let t = Target::from_http_authority("example.test").unwrap();
    assert_eq!((t.port, t.scheme), (80, Scheme::Http));
}

#[test]
fn pac_url_never_carries_a_path() {
    let t = Target::parse_connect("outlook.office365.com:443").unwrap();
    assert_eq!(t.pac_url(), "https://outlook.office365.com/");
}

#[test]
fn decision_displays_hops_and_reason() {
    let d = Decision {
        action: Action::Tunnel,
        hops: vec![
            Hop::Proxy(ProxyEndpoint::parse("proxy.corp:8080").unwrap()),
            Hop::Direct,
        ],
        allow_local: false,
        why: "static upstream".into(),
    };
    assert_eq!(
        d.to_string(),
        "TUNNEL via PROXY proxy.corp:8080, DIRECT (static upstream)"
    );
}
