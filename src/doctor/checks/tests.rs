#![allow(clippy::unwrap_used)]

use super::*;
use crate::doctor::Verdict;
use crate::target::ProxyEndpoint;

fn own() -> Vec<SocketAddr> {
    vec!["127.0.0.1:8765".parse().unwrap()]
}

fn endpoint(s: &str) -> ProxyEndpoint {
    ProxyEndpoint::parse(s).unwrap()
}

/// A self-signed CA; `constrained` adds the name constraints exoproxy's CA carries.
fn ca_der(constrained: bool, days: i64) -> Vec<u8> {
    use rcgen::{
        BasicConstraints, CertificateParams, CidrSubnet, GeneralSubtree, IsCa, KeyPair,
        NameConstraints,
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    if constrained {
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName("outlook.office365.com".into())],
            excluded_subtrees: vec![
                GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
                GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
            ],
        });
    }
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[test]
fn config_errors_fail_with_the_check_command_and_warnings_only_warn() {
    let f = config(
        "x.toml",
        &["x.toml: line 3: upstream.proxies: bad".into()],
        &[],
    );
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(f.detail.contains("line 3"), "{f:?}");
    assert!(f.fix.unwrap().contains("exoproxy config check"));
    assert_eq!(
        config("x.toml", &[], &["PW not set".into()]).verdict,
        Verdict::Warn
    );
    assert_eq!(config("x.toml", &[], &[]).verdict, Verdict::Pass);
}

#[test]
fn no_running_proxy_warns_and_one_that_does_not_answer_fails() {
    let none = proxy("/s", None);
    assert_eq!(none.verdict, Verdict::Warn);
    assert!(none.fix.unwrap().contains("exoproxy run"));
    let addr: SocketAddr = "127.0.0.1:8765".parse().unwrap();
    let ok = Running {
        addrs: vec![addr],
        answer: Ok(addr),
    };
    let f = proxy("/s", Some(&ok));
    assert_eq!(f.verdict, Verdict::Pass);
    assert!(
        f.detail.contains("answering on http://127.0.0.1:8765/"),
        "{f:?}"
    );
    let silent = Running {
        answer: Err("timed out".into()),
        ..ok
    };
    assert_eq!(proxy("/s", Some(&silent)).verdict, Verdict::Fail);
}

#[test]
fn the_ca_must_be_name_constrained_and_not_near_expiry() {
    let good = ca_facts(&ca_der(true, 400)).unwrap();
    assert!(good.is_ca && good.excludes_ips);
    assert_eq!(good.permitted, ["outlook.office365.com"]);
    let f = ca(&CaState::Loaded(good.clone()), now());
    assert_eq!(f.verdict, Verdict::Pass, "{f:?}");
    assert!(
        f.detail
            .contains("name-constrained to outlook.office365.com")
    );

    let open = ca_facts(&ca_der(false, 400)).unwrap();
    let f = ca(&CaState::Loaded(open), now());
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(f.detail.contains("not a name-constrained CA"), "{f:?}");
    assert!(f.fix.unwrap().contains("exoproxy ca regenerate"));

    let soon = ca_facts(&ca_der(true, 10)).unwrap();
    assert_eq!(
        ca(&CaState::Loaded(soon.clone()), now()).verdict,
        Verdict::Warn
    );
    let f = ca(&CaState::Loaded(soon), now() + 11 * 86_400);
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(f.detail.contains("expired"), "{f:?}");

    assert_eq!(ca(&CaState::Off, now()).verdict, Verdict::Skip);
    assert_eq!(ca(&CaState::NotCreated, now()).verdict, Verdict::Warn);
    assert_eq!(
        ca(&CaState::Unusable("bad".into()), now()).verdict,
        Verdict::Fail
    );
    assert!(ca_facts(b"junk").is_err());
}

#[test]
fn trust_is_not_applicable_off_windows_and_a_missing_root_fails_with_the_import_line() {
    let f = ca_trust(&Trust::NotApplicable);
    assert_eq!(f.verdict, Verdict::Skip);
    assert!(f.detail.contains("does not apply"), "{f:?}");
    let f = ca_trust(&Trust::NotTrusted);
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(f.fix.unwrap().contains("Cert:\\CurrentUser\\Root"));
    assert_eq!(ca_trust(&Trust::Trusted).verdict, Verdict::Pass);
}

#[test]
fn desktop_settings_pointing_at_us_pass_and_others_warn_with_install() {
    let f = desktop(&Setting::NotOnThisOs, &Setting::NotOnThisOs, &own());
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].verdict, Verdict::Skip);
    assert!(f[0].detail.contains("does not apply"));

    let ie = SystemProxy {
        auto_config_url: Some("http://127.0.0.1:8765/proxy.pac".into()),
        ..SystemProxy::empty("ie")
    };
    let winhttp = SystemProxy {
        https: vec![endpoint("proxy.corp:8080")],
        ..SystemProxy::empty("winhttp")
    };
    let f = desktop(&Setting::Read(ie), &Setting::Read(winhttp), &own());
    assert_eq!(f[0].verdict, Verdict::Pass, "{f:?}");
    assert!(
        f[0].detail
            .contains("AutoConfigURL http://127.0.0.1:8765/proxy.pac")
    );
    assert_eq!(
        f[1].verdict,
        Verdict::Pass,
        "WinHTTP is said, not judged: {f:?}"
    );
    assert!(
        f[1].detail
            .contains("does not point at exoproxy (proxy proxy.corp:8080)")
    );

    let f = desktop(
        &Setting::Read(SystemProxy::empty("ie")),
        &Setting::Unreadable("access denied".into()),
        &own(),
    );
    assert_eq!(f[0].verdict, Verdict::Warn);
    assert!(f[0].fix.as_ref().unwrap().contains("exoproxy install"));
    assert!(f[1].detail.contains("access denied"));
}

#[test]
fn an_upstream_source_naming_exoproxy_is_a_loop_with_the_loops_fix() {
    let ie = SystemProxy {
        https: vec![endpoint("127.0.0.1:8765")],
        http: vec![endpoint("127.0.0.1:8765")],
        ..SystemProxy::empty("winhttp")
    };
    let f = upstream_loop(Some(&Selected::Proxies(ie)), &own());
    assert_eq!(f.len(), 1, "one finding per setting, not per scheme: {f:?}");
    assert_eq!(f[0].verdict, Verdict::Warn);
    assert!(f[0].detail.contains("exoproxy itself"), "{f:?}");
    assert!(
        f[0].fix
            .as_ref()
            .unwrap()
            .contains("netsh winhttp reset proxy")
    );

    let pac = Selected::Pac {
        url: "http://localhost:8765/proxy.pac".into(),
        bypass: vec![],
        source: "ie",
    };
    let f = upstream_loop(Some(&pac), &own());
    assert_eq!(f[0].verdict, Verdict::Warn);
    assert!(f[0].detail.contains("the PAC"), "{f:?}");

    let other = Selected::Proxies(SystemProxy {
        https: vec![endpoint("proxy.corp:8080")],
        ..SystemProxy::empty("static")
    });
    assert_eq!(
        upstream_loop(Some(&other), &own())[0].verdict,
        Verdict::Pass
    );
    assert_eq!(upstream_loop(None, &own())[0].verdict, Verdict::Pass);
}

#[test]
fn a_407_is_named_as_a_wrong_proxy_password_with_the_credentials_fix() {
    let failure = ReachFailure::ProxyAuth {
        proxy: "127.0.0.1:3128".into(),
        had_credentials: true,
    };
    let f = reach(
        "the identity provider",
        "login.microsoftonline.com",
        "PROXY 127.0.0.1:3128",
        &Err(failure),
    );
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(f.detail.contains("407"), "{f:?}");
    assert!(
        f.fix
            .unwrap()
            .contains("wrong proxy password: fix [[upstream.credentials]]")
    );
    let f = reach(
        "x",
        "h",
        "PROXY p:1",
        &Err(ReachFailure::ProxyAuth {
            proxy: "p:1".into(),
            had_credentials: false,
        }),
    );
    assert!(f.fix.unwrap().contains("add [[upstream.credentials]]"));
    assert_eq!(reach("x", "h", "DIRECT", &Ok(())).verdict, Verdict::Pass);
    let f = reach(
        "x",
        "h",
        "DIRECT",
        &Err(ReachFailure::Other("connection refused".into())),
    );
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(f.detail.contains("connection refused"));
}

#[test]
fn an_account_needing_a_sign_in_fails_with_the_login_command() {
    let f = account("a@b.c", "ready", &TokenCheck::NotSignedIn);
    assert_eq!(f.verdict, Verdict::Fail);
    assert_eq!(f.fix.unwrap(), "run `exoproxy login a@b.c`");
    let revoked = TokenCheck::Failed {
        error: "AADSTS50173".into(),
        sign_in: true,
    };
    let f = account("a@b.c", "ready", &revoked);
    assert!(f.detail.contains("AADSTS50173"));
    assert!(f.fix.unwrap().contains("exoproxy login a@b.c"));
    let down = TokenCheck::Failed {
        error: "connect".into(),
        sign_in: false,
    };
    assert!(
        !account("a@b.c", "ready", &down)
            .fix
            .unwrap()
            .contains("login")
    );
    let f = account("a@b.c", "ready", &TokenCheck::Renewed { valid_for: 3600 });
    assert_eq!(f.verdict, Verdict::Pass);
    assert!(f.detail.contains("60m"));
}

#[test]
fn sts_hosts_must_be_direct() {
    assert_eq!(sts(false, &[])[0].verdict, Verdict::Skip);
    assert_eq!(sts(true, &[])[0].verdict, Verdict::Skip);
    let direct = StsDomain {
        domain: "contoso.com".into(),
        hosts: vec![("sts.contoso.com".into(), "DIRECT".into(), true)],
        error: None,
    };
    let f = sts(true, std::slice::from_ref(&direct));
    assert_eq!(f[0].verdict, Verdict::Pass);
    assert!(f[0].detail.contains("sts.contoso.com DIRECT"));
    let proxied = StsDomain {
        hosts: vec![("sts.contoso.com".into(), "PROXY p:1".into(), false)],
        ..direct.clone()
    };
    assert_eq!(sts(true, &[proxied])[0].verdict, Verdict::Fail);
    let failed = StsDomain {
        hosts: vec![],
        error: Some("the IdP is unreachable".into()),
        ..direct
    };
    assert_eq!(sts(true, &[failed])[0].verdict, Verdict::Warn);
}

#[test]
fn clock_skew_over_five_minutes_warns() {
    let f = clock("login", &Ok(1000), 1000 + 301);
    assert_eq!(f.verdict, Verdict::Warn);
    assert!(f.detail.contains("301s ahead of login"), "{f:?}");
    assert_eq!(clock("login", &Ok(1000), 1000 - 299).verdict, Verdict::Pass);
    assert_eq!(clock("login", &Ok(1000), 1000 - 400).verdict, Verdict::Warn);
    assert_eq!(
        clock("login", &Err("down".into()), 0).verdict,
        Verdict::Warn
    );
}
