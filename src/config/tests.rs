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
fn defaults_need_no_file() {
    let cfg = validate::validate(Default::default(), &Overrides::default(), None, &no_env).unwrap();
    assert_eq!(cfg.listen[0].to_string(), "127.0.0.1:8765");
    assert_eq!(cfg.route.upstream, UpstreamSource::Direct);
    assert_eq!(cfg.max_connections, 1024);
}

#[test]
fn unknown_key_is_reported_with_its_line() {
    let err = check("[listen]\nadresses = [\"127.0.0.1:1\"]\n").unwrap_err();
    assert_eq!(err[0].line, Some(2), "{err:?}");
    assert!(err[0].message.contains("adresses"), "{err:?}");
}

#[test]
fn every_error_is_reported_at_once() {
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
fn env_source_is_read_only_when_chosen() {
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
    assert_eq!(
        cfg.route.bypass,
        vec!["corp", "*.corp", "localhost", "*.localhost"]
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
                client_id = \"app\"\ncertificate = \"app.pfx\"\npfx_password_env = \"PFX_PW\"\n";
    let env = |k: &str| (k == "PFX_PW").then(|| "pfx-secret".to_string());
    let file = parse(text).unwrap();
    let cfg = validate::validate(file, &Overrides::default(), Some(text), &env).unwrap();
    match &cfg.intercept.accounts[0].flow {
        Flow::CertificatePfx { pfx, password } => {
            assert_eq!(pfx, &std::path::PathBuf::from("app.pfx"));
            assert_eq!(password.expose(), "pfx-secret");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !format!("{cfg:?}").contains("pfx-secret"),
        "the password is redacted"
    );

    let err = check(text).unwrap_err();
    assert!(
        err.iter()
            .any(|e| e.path == "account[0].pfx_password_env" && e.message.contains("PFX_PW")),
        "{err:?}"
    );
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
