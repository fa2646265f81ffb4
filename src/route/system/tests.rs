use super::blob::ConnectionSettings;
use super::proxy_list::{parse_bypass_list, parse_proxy_list};
use crate::target::ProxyEndpoint;

fn ep(s: &str) -> ProxyEndpoint {
    ProxyEndpoint::parse(s).unwrap()
}

#[test]
fn bare_proxy_applies_to_both_schemes_with_port_80_default() {
    let list = parse_proxy_list("proxy.corp", "t").unwrap();
    assert_eq!(list.http, vec![ep("proxy.corp:80")]);
    assert_eq!(list.https, vec![ep("proxy.corp:80")]);
}

#[test]
fn per_scheme_map_ignores_ftp_and_socks() {
    let list = parse_proxy_list("http=p1:80;https=p2:443;ftp=p3:21 socks=p4:1080", "t").unwrap();
    assert_eq!(list.http, vec![ep("p1:80")]);
    assert_eq!(list.https, vec![ep("p2:443")]);
}

#[test]
fn proxy_list_rejects_non_http_proxy_schemes_and_garbage() {
    for bad in [
        "https://p:443",
        "socks5://p:1080",
        "http=p:notaport",
        "http=",
        "[::1",
    ] {
        assert!(parse_proxy_list(bad, "t").is_err(), "{bad:?} accepted");
    }
    let ok = parse_proxy_list("http://p:3128/ [::1]:8080", "t").unwrap();
    assert_eq!(ok.https, vec![ep("p:3128"), ep("[::1]:8080")]);
}

#[test]
fn credentials_in_a_proxy_list_are_refused_with_where_to_put_them() {
    let err = parse_proxy_list("http=alice:hunter2@p1:8080", "ie").unwrap_err();
    assert!(err.detail.contains("[[upstream.credentials]]"), "{err}");
    assert!(err.detail.contains("p1:8080"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn bypass_list_splits_on_semicolons_and_whitespace() {
    assert_eq!(
        parse_bypass_list(" *.corp;;<local> 10.*\t192.168.0.0/16;"),
        vec!["*.corp", "<local>", "10.*", "192.168.0.0/16"]
    );
}

#[test]
fn blob_round_trips_and_every_truncation_is_an_error() {
    let settings = ConnectionSettings {
        version: 0x46,
        counter: 7,
        flags: 0x0f,
        proxy_server: "proxy:8080".into(),
        bypass: "<local>".into(),
        auto_config_url: "http://pac/p.pac".into(),
    };
    let bytes = settings.to_bytes();
    assert_eq!(ConnectionSettings::parse(&bytes, "t").unwrap(), settings);
    // Every cut inside the header or a string is an error; cuts at the end of the bypass string
    // (no URL field, as netsh writes) or in the padding are not.
    let bypass_end = 12 + 4 + 10 + 4 + 7;
    let url_end = bypass_end + 4 + 16;
    for cut in 0..bytes.len() {
        let result = ConnectionSettings::parse(&bytes[..cut], "t");
        let ok = cut == bypass_end || cut >= url_end;
        assert_eq!(result.is_ok(), ok, "cut at {cut}: {result:?}");
    }
}
