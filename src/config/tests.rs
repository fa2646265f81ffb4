use super::*;
use crate::route::UpstreamSource;

fn no_env(_: &str) -> Option<String> {
    None
}

fn check(text: &str) -> Result<Config, Vec<ConfigError>> {
    let file = parse(text).map_err(|e| vec![e])?;
    validate::validate(file, &Overrides::default(), Some(text), &no_env)
}

#[test]
fn example_config_parses() {
    let text = include_str!("../../config/exoproxy.toml");
    let env = |k: &str| (k == "EXOPROXY_PROXY_PASSWORD").then(|| "pw".to_string());
    let file = parse(text).unwrap();
    let cfg = validate::validate(file, &Overrides::default(), Some(text), &env).unwrap();
    assert_eq!(cfg.listen.len(), 2);
    assert!(matches!(&cfg.route.upstream, UpstreamSource::Static(p) if p.len() == 2));
    assert_eq!(cfg.upstream.credentials.len(), 1);
    assert!(
        !format!("{cfg:?}").contains("pw\""),
        "password must not show in Debug"
    );
}

#[test]
fn sec_1_defaults_need_no_file() {
    let cfg = validate::validate(Default::default(), &Overrides::default(), None, &no_env).unwrap();
    assert_eq!(cfg.listen[0].to_string(), "127.0.0.1:8765");
    assert_eq!(cfg.route.upstream, UpstreamSource::Direct);
    assert_eq!(cfg.max_connections, 1024);
}

#[test]
fn cfg_1_unknown_key_is_reported_with_its_line() {
    let err = check("[listen]\nadresses = [\"127.0.0.1:1\"]\n").unwrap_err();
    assert_eq!(err[0].line, Some(2), "{err:?}");
    assert!(err[0].message.contains("adresses"), "{err:?}");
}

#[test]
fn cfg_1_sec_5_every_error_is_reported_at_once() {
    let text = "[listen]\naddresses = [\"0.0.0.0:8765\"]\n\n[routing]\nconnect_ports = [70000]\n\n[upstream]\nsource = \"pac2\"\n";
    let errs = check(text).unwrap_err();
    let paths: Vec<_> = errs.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert!(paths.contains(&("listen.addresses", Some(2))), "{errs:?}");
    assert!(
        paths.contains(&("routing.connect_ports", Some(5))),
        "{errs:?}"
    );
    assert!(paths.contains(&("upstream.source", Some(8))), "{errs:?}");
}

#[test]
fn command_line_beats_file() {
    let text = "[listen]\naddresses = [\"127.0.0.1:1\"]\n";
    let o = Overrides {
        listen: vec!["127.0.0.1:2".into()],
        ..Default::default()
    };
    let cfg = validate::validate(parse(text).unwrap(), &o, Some(text), &no_env).unwrap();
    assert_eq!(cfg.listen[0].port(), 2);
}

#[test]
fn proxy_urls_carry_credentials_into_the_allow_list() {
    let o = Overrides {
        upstream: vec!["http://u%40corp:p%3Ass@proxy.corp:3128".into()],
        ..Default::default()
    };
    let cfg = validate::validate(Default::default(), &o, None, &no_env).unwrap();
    let (endpoint, cred) = &cfg.upstream.credentials[0];
    assert_eq!(endpoint.to_string(), "proxy.corp:3128");
    assert_eq!(cred.username, "u@corp");
    assert_eq!(cred.password.as_str(), "p:ss");
}

#[test]
fn tls_8_env_source_is_read_only_when_chosen() {
    let env = |k: &str| match k {
        "HTTPS_PROXY" => Some("http://envproxy:8080".to_string()),
        "NO_PROXY" => Some(".corp,localhost".to_string()),
        _ => None,
    };
    let cfg = validate::validate(Default::default(), &Overrides::default(), None, &env).unwrap();
    assert_eq!(cfg.route.upstream, UpstreamSource::Direct, "TLS-8");
    let text = "[upstream]\nsource = \"env\"\n";
    let cfg = validate::validate(parse(text).unwrap(), &Overrides::default(), None, &env).unwrap();
    assert!(
        matches!(&cfg.route.upstream, UpstreamSource::Static(p) if p[0].to_string() == "envproxy:8080")
    );
    // The environment's one NO_PROXY reading (`route::system::env`), in its order.
    assert_eq!(
        cfg.route.bypass,
        vec!["*.corp", "corp", "*.localhost", "localhost"]
    );
}

#[test]
fn connect_to_follows_curl() {
    let c = validate::parse_connect_to("outlook.office365.com:443:127.0.0.1:8443").unwrap();
    assert_eq!(
        (c.host.as_str(), c.port, c.to_host.as_str(), c.to_port),
        ("outlook.office365.com", Some(443), "127.0.0.1", 8443)
    );
    let c = validate::parse_connect_to("::[::1]:9000").unwrap();
    assert_eq!(
        (c.host.as_str(), c.port, c.to_host.as_str()),
        ("", None, "::1")
    );
    assert!(validate::parse_connect_to("a:443:b").is_err());
    assert!(validate::parse_connect_to("a:x:b:1").is_err());
}

#[test]
fn a_certificate_without_key_is_a_pfx_with_its_password_from_the_environment() {
    use crate::token::account::Flow;
    let text = "[[account]]\nupn = \"OAuthUser@contoso.com\"\nflow = \"certificate\"\n\
                client_id = \"app\"\ncertificate = \"src/token/testdata/rsa_aes.pfx\"\n\
                pfx_password_env = \"PFX_PW\"\n";
    let env = |k: &str| (k == "PFX_PW").then(|| "pfx-secret".to_string());
    let file = parse(text).unwrap();
    let cfg = validate::validate(file, &Overrides::default(), Some(text), &env).unwrap();
    match &cfg.intercept.accounts[0].flow {
        Flow::CertificatePfx { pfx, password } => {
            assert_eq!(
                pfx,
                &std::path::PathBuf::from("src/token/testdata/rsa_aes.pfx")
            );
            assert_eq!(password.expose(), "pfx-secret");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !format!("{cfg:?}").contains("pfx-secret"),
        "the password is redacted"
    );

    // Without the variable: a warning for `config check`, an error for the commands using it.
    let cfg = check(text).unwrap();
    let err: Vec<ConfigError> = cfg
        .missing_secrets
        .iter()
        .map(|m| m.error.clone())
        .collect();
    assert!(
        err.iter()
            .any(|e| e.path == "account[0].pfx_password_env" && e.message.contains("PFX_PW")),
        "{err:?}"
    );
    let refused = cfg
        .require_secrets(SecretUse::Account("oauthuser@contoso.com"))
        .unwrap_err();
    assert!(refused[0].contains("PFX_PW"), "{refused:?}");
}

// --- `config check` tells the whole truth ---------------------------------------------------

fn paths_and_lines(errs: &[ConfigError]) -> Vec<(&str, Option<usize>)> {
    errs.iter().map(|e| (e.path.as_str(), e.line)).collect()
}

#[test]
fn two_unknown_keys_and_three_wrong_types_are_reported_at_once() {
    let text = "\
[listen]
adresses = [\"127.0.0.1:1\"]
max_connections = \"many\"

[upstream]
fallback_direct = \"yes\"
proxy = \"http://p:1\"

[[account]]
upn = \"a@contoso.com\"
cloud = 3
";
    let errs = check(text).unwrap_err();
    let found = paths_and_lines(&errs);
    for expected in [
        ("listen.adresses", Some(2)),
        ("listen.max_connections", Some(3)),
        ("upstream.fallback_direct", Some(6)),
        ("upstream.proxy", Some(7)),
        ("account[0].cloud", Some(11)),
    ] {
        assert!(
            found.contains(&expected),
            "{expected:?} missing in {errs:?}"
        );
    }
    assert_eq!(errs.len(), 5, "{errs:?}");
    let wrong_type = errs.iter().find(|e| e.path == "account[0].cloud").unwrap();
    assert!(
        wrong_type.message.contains("invalid type"),
        "{wrong_type:?}"
    );
    assert!(
        wrong_type
            .to_string()
            .starts_with("line 11: account[0].cloud: "),
        "{wrong_type}"
    );
}

#[test]
fn schema_errors_and_value_errors_come_together_in_file_order() {
    let text = "[listen]\naddresses = [\"0.0.0.0:1\"]\ncolour = 1\n\n[log]\nlevel = \"verbose\"\n";
    let errs = check(text).unwrap_err();
    assert_eq!(
        paths_and_lines(&errs),
        vec![
            ("listen.addresses", Some(2)),
            ("listen.colour", Some(3)),
            ("log.level", Some(6))
        ],
        "{errs:?}"
    );
}

#[test]
fn an_account_with_a_bad_upn_still_has_its_flow_checked() {
    let text =
        "[[account]]\nupn = \"a@x.test\"\n\n[[account]]\nupn = \"nobody\"\nflow = \"magic\"\n";
    let errs = check(text).unwrap_err();
    let found = paths_and_lines(&errs);
    assert!(found.contains(&("account[1].upn", Some(5))), "{errs:?}");
    assert!(found.contains(&("account[1].flow", Some(6))), "{errs:?}");
}

#[test]
fn log_levels_are_checked() {
    let err = check("[log]\nlevel = \"verbose\"\n").unwrap_err();
    assert_eq!(err[0].path, "log.level");
    assert!(err[0].message.contains("verbose"), "{err:?}");
    for ok in ["info", "exoproxy=debug,warn", "WARN", "off"] {
        let cfg = check(&format!("[log]\nlevel = \"{ok}\"\n")).unwrap();
        assert_eq!(cfg.log_level, ok);
    }
    for bad in ["", "exoproxy=loud", "exoproxy"] {
        assert!(
            check(&format!("[log]\nlevel = \"{bad}\"\n")).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn urls_are_parsed_and_an_authority_must_be_https() {
    let account = |authority: &str, allow: &str| {
        format!("[tls]\n{allow}\n[[account]]\nupn = \"a@x.test\"\nauthority = \"{authority}\"\n")
    };
    assert!(check(&account("https://login.test", "")).is_ok());
    let err = check(&account("http://127.0.0.1:9", "")).unwrap_err();
    assert_eq!(err[0].path, "account[0].authority");
    assert!(err[0].message.contains("allow_http_authority"), "{err:?}");
    // The explicit opt-in for tests against a local emulator.
    assert!(
        check(&account(
            "http://127.0.0.1:9",
            "allow_http_authority = true"
        ))
        .is_ok()
    );
    for bad in [
        "login.test",
        "https://",
        "ftp://login.test",
        "https://login.test/?x=1",
    ] {
        let err = check(&account(bad, "")).unwrap_err();
        assert_eq!(err[0].path, "account[0].authority", "{bad}: {err:?}");
    }
    let profile = "[[intercept.profile]]\nname = \"graph\"\nauthority = \"http://idp\"\n\
                   hosts = { \"graph.microsoft.com\" = \"https://graph.microsoft.com\" }\n";
    let err = check(profile).unwrap_err();
    assert_eq!(err[0].path, "intercept.profile[0].authority", "{err:?}");
    let audience = "[[intercept.profile]]\nname = \"graph\"\n\
                    hosts = { \"graph.microsoft.com\" = \"https://\" }\n";
    assert_eq!(
        check(audience).unwrap_err()[0].path,
        "intercept.profile[0].hosts"
    );

    let err = check("[upstream]\npac = \"http://\"\n").unwrap_err();
    assert_eq!(err[0].path, "upstream.pac", "{err:?}");
}

#[test]
fn files_that_must_exist() {
    let missing = "/nonexistent/exoproxy-test/file.pem";
    let err = check(&format!("[tls]\nextra_roots = \"{missing}\"\n")).unwrap_err();
    assert_eq!(
        (err[0].path.as_str(), err[0].line),
        ("tls.extra_roots", Some(2))
    );
    let o = Overrides {
        upstream_ca: Some(missing.into()),
        ..Default::default()
    };
    let err = validate::validate(Default::default(), &o, None, &no_env).unwrap_err();
    assert_eq!(err[0].path, "--upstream-ca");

    let err = check(&format!("[upstream]\npac = \"file://{missing}\"\n")).unwrap_err();
    assert_eq!(err[0].path, "upstream.pac");

    let pem = format!(
        "[[account]]\nupn = \"OAuthUser@x.test\"\nflow = \"certificate\"\nclient_id = \"app\"\n\
         certificate = \"{missing}\"\nkey = \"{missing}\"\n"
    );
    let errs = check(&pem).unwrap_err();
    let found = paths_and_lines(&errs);
    assert!(
        found.contains(&("account[0].certificate", Some(5))),
        "{errs:?}"
    );
    assert!(found.contains(&("account[0].key", Some(6))), "{errs:?}");
}

#[test]
fn a_pfx_with_a_password_but_no_pfx_password_env_names_that_key() {
    let pfx = |file: &str| {
        format!(
            "[[account]]\nupn = \"OAuthUser@x.test\"\nflow = \"certificate\"\nclient_id = \"app\"\n\
             certificate = \"src/token/testdata/{file}\"\n"
        )
    };
    let err = check(&pfx("rsa_aes.pfx")).unwrap_err();
    assert_eq!(err[0].path, "account[0].certificate", "{err:?}");
    assert!(err[0].message.contains("pfx_password_env"), "{err:?}");
    assert!(!err[0].message.contains("exoproxy-test"), "{err:?}");
    // A PFX without a password needs no variable.
    assert!(check(&pfx("rsa_nopass.pfx")).is_ok());
}

#[test]
fn missing_secret_variables_are_warnings_until_a_command_uses_them() {
    let text = "\
[[upstream.credentials]]
proxy = \"proxy.corp:8080\"
username = \"svc\"
password_env = \"EXO_TEST_PROXY_PW\"

[[account]]
upn = \"app@x.test\"
flow = \"secret\"
client_id = \"app\"
secret_env = \"EXO_TEST_SECRET\"

[[account]]
upn = \"admin@x.test\"
";
    let cfg = check(text).unwrap();
    let warned: Vec<(&str, Option<usize>)> = cfg
        .missing_secrets
        .iter()
        .map(|m| (m.error.path.as_str(), m.error.line))
        .collect();
    assert_eq!(
        warned,
        vec![
            ("upstream.credentials[0].password_env", Some(4)),
            ("account[0].secret_env", Some(10))
        ]
    );
    // The credentials without their password are not used; both accounts are listed.
    assert!(cfg.upstream.credentials.is_empty());
    assert_eq!(cfg.intercept.accounts.len(), 2);
    // Serving needs everything; an account needs the proxy's and its own.
    assert_eq!(cfg.require_secrets(SecretUse::Serve).unwrap_err().len(), 2);
    let admin = cfg
        .require_secrets(SecretUse::Account("admin@x.test"))
        .unwrap_err();
    assert_eq!(admin.len(), 1);
    assert!(admin[0].contains("EXO_TEST_PROXY_PW"), "{admin:?}");
    assert_eq!(
        cfg.require_secrets(SecretUse::Account("app@x.test"))
            .unwrap_err()
            .len(),
        2
    );

    let env = |k: &str| k.starts_with("EXO_TEST_").then(|| "v".to_string());
    let cfg = validate::validate(parse(text).unwrap(), &Overrides::default(), None, &env).unwrap();
    assert!(cfg.missing_secrets.is_empty());
    assert!(cfg.require_secrets(SecretUse::Serve).is_ok());
}

#[test]
fn the_example_config_passes_without_its_variables() {
    let text = include_str!("../../config/exoproxy.toml");
    let cfg = check(text).unwrap();
    assert_eq!(cfg.missing_secrets.len(), 1, "{:?}", cfg.missing_secrets);
    assert!(cfg.require_secrets(SecretUse::Serve).is_err());
}

#[test]
fn credentials_in_every_proxy_url_reach_the_upstream_credentials_decoded_alike() {
    // The same user:pass@ from --upstream and from HTTPS_PROXY.
    let url = "http://u%40corp:p%3Ass@proxy.corp:3128";
    let o = Overrides {
        upstream: vec![url.into()],
        ..Default::default()
    };
    let from_flag = validate::validate(Default::default(), &o, None, &no_env).unwrap();
    let env = |k: &str| (k == "HTTPS_PROXY").then(|| url.to_string());
    let text = "[upstream]\nsource = \"env\"\n";
    let from_env =
        validate::validate(parse(text).unwrap(), &Overrides::default(), None, &env).unwrap();
    for cfg in [&from_flag, &from_env] {
        let (endpoint, cred) = &cfg.upstream.credentials[0];
        assert_eq!(endpoint.to_string(), "proxy.corp:3128");
        assert_eq!(cred.username, "u@corp");
        assert_eq!(cred.password.as_str(), "p:ss");
    }
    // A malformed escape is an error everywhere (it used to be kept as is on one path).
    let o = Overrides {
        upstream: vec!["http://u:p%zz@proxy.corp:3128".into()],
        ..Default::default()
    };
    let err = validate::validate(Default::default(), &o, None, &no_env).unwrap_err();
    assert_eq!(err[0].path, "--upstream");
    assert!(!err[0].message.contains("p%zz"), "{err:?}");
}

#[test]
fn the_source_name_is_decoded_once_for_every_source() {
    for (name, upstream_is_static) in [("direct", false), ("Static", true), ("ENV", false)] {
        let text = format!("[upstream]\nsource = \"{name}\"\nproxies = [\"http://p:1\"]\n");
        let cfg = check(&text).unwrap();
        assert_eq!(
            matches!(cfg.route.upstream, UpstreamSource::Static(_)),
            upstream_is_static,
            "{name}"
        );
    }
}

#[test]
fn log_file_is_a_switch_or_a_path_under_the_state_dir() {
    use super::LogFile;
    let state = "state_dir = \"/s\"\n[log]\n";
    let file = |line: &str| check(&format!("{state}{line}")).map(|c| c.log_file);
    assert_eq!(file(""), Ok(LogFile::Auto("/s/logs/exoproxy.log".into())));
    assert_eq!(
        file("file = true"),
        Ok(LogFile::At("/s/logs/exoproxy.log".into()))
    );
    assert_eq!(file("file = false"), Ok(LogFile::Off));
    assert_eq!(
        file("file = \"l/p.log\""),
        Ok(LogFile::At("/s/l/p.log".into()))
    );
    assert_eq!(
        file("file = \"/v/p.log\""),
        Ok(LogFile::At("/v/p.log".into()))
    );
    let err = file("file = \"logs/\"").unwrap_err();
    assert!(err[0].message.contains("names no file"), "{err:?}");
    assert!(file("file = 3").is_err());
}

/// FLT-15: `[timeouts] streaming_idle_secs` sets the EWS stream-idle limit (35 min unless set);
/// a value outside (0, 86400] is an error at its line.
#[test]
fn flt_15_streaming_idle_is_configured_and_checked() {
    let cfg = check("").unwrap();
    assert_eq!(cfg.streaming_idle, crate::limits::DEFAULT_STREAMING_IDLE);
    let cfg = check("[timeouts]\nstreaming_idle_secs = 3600\n").unwrap();
    assert_eq!(cfg.streaming_idle, std::time::Duration::from_secs(3600));
    for bad in ["0", "-5", "100000"] {
        let err = check(&format!("[timeouts]\n\nstreaming_idle_secs = {bad}\n")).unwrap_err();
        assert_eq!(
            paths_and_lines(&err),
            vec![("timeouts.streaming_idle_secs", Some(3))],
            "{bad}"
        );
    }
}

/// Every variable the file names as holding a secret, set or not, is kept from child processes
/// (docs/TESTING.md#sec-21).
#[test]
fn sec_21_secret_variables_are_remembered_for_child_processes() {
    let text = "[upstream]\nproxies = [\"http://p.test:8080\"]\n\n\
                [[upstream.credentials]]\nproxy = \"p.test:8080\"\nusername = \"u\"\n\
                password_env = \"EXO_SEC21_CFG_PASSWORD\"\n\n\
                [[account]]\nupn = \"app@contoso.test\"\nflow = \"secret\"\nclient_id = \"app\"\n\
                secret_env = \"EXO_SEC21_CFG_SECRET\"\n";
    let _ = check(text);
    let names = crate::platform::secret_env::names();
    for var in ["EXO_SEC21_CFG_PASSWORD", "EXO_SEC21_CFG_SECRET"] {
        assert!(names.iter().any(|n| n == var), "{var} not in {names:?}");
    }
}
