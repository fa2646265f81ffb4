//! The upstream-source keys: `upstream.source/pac/pac_failure/wpad`, `routing.discover_sts/sts_domains`.

use super::*;
use crate::config::parse;
use crate::route::pac::{OnFailure, PacSource};
use crate::route::source::SourceSpec;
use crate::route::system::Source;

/// A PAC file that exists (a local PAC path must, paths are relative to the working directory).
const PAC_FILE: &str = "tests/pac_corpus/01_bypass_list.pac";

fn check(text: &str) -> Result<Config, Vec<ConfigError>> {
    let file = parse(text).map_err(|e| vec![e])?;
    validate(file, &Overrides::default(), Some(text), &|_| None)
}

#[test]
fn pac_key_implies_the_pac_source_and_fails_closed_by_default() {
    let cfg = check("[upstream]\npac = \"http://wpad.corp.example/proxy.pac\"\n").unwrap();
    match &cfg.route.source {
        SourceSpec::Pac(pac) => {
            assert_eq!(
                pac.source,
                PacSource::Url("http://wpad.corp.example/proxy.pac".into())
            );
            assert_eq!(pac.on_failure, OnFailure::Fail);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cfg.route.upstream, UpstreamSource::Direct);
}

#[test]
fn pac_failure_direct_is_an_explicit_opt_in() {
    let cfg = check(&format!(
        "[upstream]\nsource = \"pac\"\npac = \"{PAC_FILE}\"\npac_failure = \"direct\"\n"
    ))
    .unwrap();
    assert!(matches!(&cfg.route.source, SourceSpec::Pac(p) if p.on_failure == OnFailure::Direct));
    let err = check(&format!(
        "[upstream]\npac = \"{PAC_FILE}\"\npac_failure = \"maybe\"\n"
    ))
    .unwrap_err();
    assert_eq!(err[0].path, "upstream.pac_failure");
    assert_eq!(err[0].line, Some(3));
}

#[test]
fn pac_source_without_a_script_is_an_error() {
    let err = check("[upstream]\nsource = \"pac\"\n").unwrap_err();
    assert_eq!(err[0].path, "upstream.pac", "{err:?}");
}

#[test]
fn live_sources_carry_wpad_and_the_config_pac() {
    for (name, source) in [
        ("winhttp", Source::WinHttp),
        ("ie", Source::Ie),
        ("auto", Source::Auto),
    ] {
        let text = format!("[upstream]\nsource = \"{name}\"\nwpad = true\npac = \"{PAC_FILE}\"\n");
        match check(&text).unwrap().route.source {
            SourceSpec::System { live, .. } => {
                assert_eq!(live.source, source);
                assert!(live.config.allow_wpad);
                assert_eq!(live.config.pac_url.as_deref(), Some(PAC_FILE));
                assert!(!live.env_in_auto, "TLS-8");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let err = check("[upstream]\nsource = \"wpad\"\n").unwrap_err();
    assert!(err[0].message.contains("winhttp"), "{err:?}");
}

#[test]
fn sts_keys() {
    let cfg = check(
        "[routing]\ndiscover_sts = false\nsts_domains = [\"fed@contoso.test\", \"corp.example\"]\n",
    )
    .unwrap();
    assert!(!cfg.route.sts.discover);
    assert_eq!(cfg.route.sts.domains.len(), 2);
    let defaults = check("").unwrap();
    assert!(defaults.route.sts.discover);
    assert!(defaults.route.sts.domains.is_empty());
    let err = check("[routing]\nsts_domains = [\"@\"]\n").unwrap_err();
    assert_eq!(err[0].path, "routing.sts_domains");
}
