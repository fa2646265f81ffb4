use super::*;

fn ep(s: &str) -> ProxyEndpoint {
    ProxyEndpoint::parse(s).unwrap()
}

#[test]
fn scheme_is_optional_and_http_only() {
    for ok in ["http://p.corp:3128", "HTTP://p.corp:3128/", "p.corp:3128"] {
        assert_eq!(
            ProxyUrl::parse(ok, None).unwrap().endpoint,
            ep("p.corp:3128"),
            "{ok}"
        );
    }
    for bad in [
        "https://p:443",
        "socks5://p:1080",
        "socks5h://p",
        "ftp://p:21",
    ] {
        let err = ProxyUrl::parse(bad, Some(1080)).unwrap_err();
        assert!(err.0.contains("HTTP proxies only"), "{bad}: {err}");
    }
}

#[test]
fn the_port_is_required_unless_the_source_has_a_default() {
    let err = ProxyUrl::parse("http://proxy.corp", None).unwrap_err();
    assert!(err.0.contains("no port"), "{err}");
    // curl's default for the environment, WinINet's for the Windows settings.
    let url = ProxyUrl::parse("http://proxy.corp.test/", Some(1080)).unwrap();
    assert_eq!(url.endpoint, ep("proxy.corp.test:1080"));
    let url = ProxyUrl::parse("proxy.corp", Some(80)).unwrap();
    assert_eq!(url.endpoint, ep("proxy.corp:80"));
    let url = ProxyUrl::parse("http://[::1]:3128", Some(1080)).unwrap();
    assert_eq!(url.endpoint, ep("[::1]:3128"));
    let url = ProxyUrl::parse("[::1]", Some(80)).unwrap();
    assert_eq!(url.endpoint, ep("[::1]:80"));
}

#[test]
fn garbage_is_refused() {
    for bad in [
        "http://",
        "http://p:99999",
        "http://p:notaport",
        "http://p:3128/path",
        "http://p:3128//",
        "http://p:1/a@b",
        "http://p:3128?q",
        "[::1",
        "",
    ] {
        assert!(ProxyUrl::parse(bad, Some(80)).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn credentials_are_percent_decoded_once_the_same_way_for_every_source() {
    let url = ProxyUrl::parse("http://u%40corp:p%3Ass@proxy.corp:3128", None).unwrap();
    assert_eq!(url.endpoint, ep("proxy.corp:3128"));
    let info = url.userinfo.unwrap();
    assert_eq!(info.username, "u@corp");
    assert_eq!(info.password.as_str(), "p:ss");

    let info = ProxyUrl::parse("http://alice%40corp:s3cr%3At@proxy.corp.test:3128", None)
        .unwrap()
        .userinfo
        .unwrap();
    assert_eq!(
        (info.username.as_str(), info.password.as_str()),
        ("alice@corp", "s3cr:t")
    );

    // `+` is not a space in a URL; a user without a password has an empty one.
    let info = ProxyUrl::parse("http://a+b@p:1", None)
        .unwrap()
        .userinfo
        .unwrap();
    assert_eq!(
        (info.username.as_str(), info.password.as_str()),
        ("a+b", "")
    );
    assert_eq!(ProxyUrl::parse("http://p:1", None).unwrap().userinfo, None);
}

#[test]
fn bad_credentials_are_errors_that_never_echo_them() {
    for bad in [
        "http://bob:hunter2%zz@p:1",
        "http://bob:hunter2%4@p:1",
        "http://bob:hunter2%FF@p:1",
        "http://:hunter2@p:1",
        "https://bob:hunter2@proxy:443",
        "http://bob:hunter2@p:99999",
        "http://bob:hunter2/x@p:1",
    ] {
        let err = ProxyUrl::parse(bad, None).unwrap_err();
        assert!(!err.0.contains("hunter2"), "{bad}: {err}");
    }
}

#[test]
fn debug_redacts_the_password() {
    let url = ProxyUrl::parse("http://alice:s3cret@p:1", None).unwrap();
    let printed = format!("{url:?}");
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(printed.contains("[redacted]"), "{printed}");
}
