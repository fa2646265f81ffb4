//! System proxy settings: every parser fed with fixtures built from the documented layouts
//! (docs/PROTOCOL.md#wininet-settings, docs/PROTOCOL.md#winhttp-settings), source selection, and the
//! settings watcher on tokio's paused clock (FLT-13).
//! Nothing here reads the real environment or registry (TLS-8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exoproxy::route::system::blob::{ConnectionSettings, parse_winhttp_settings};
use exoproxy::route::system::env::{from_env, no_proxy_to_bypass};
use exoproxy::route::system::ie::{RegValue, RegValues, from_ie_values, from_ie_values_and_blob};
use exoproxy::route::system::netsh::{parse_show_advproxy, parse_show_proxy};
use exoproxy::route::system::regfile::{RegFile, ie_from_reg, winhttp_from_reg};
use exoproxy::route::system::watch::{parse_fib_trie, parse_if_inet6};
use exoproxy::route::system::{
    Selected, SettingsInputs, SettingsWatcher, Source, SystemProxy, select,
};
use exoproxy::target::{ProxyEndpoint, Scheme};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/windows")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

/// A `.hex` fixture: `#` comment lines, then whitespace-separated hex bytes.
fn hex_fixture(name: &str) -> Vec<u8> {
    fixture_text(name)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .map(|b| u8::from_str_radix(&b, 16).unwrap())
        .collect()
}

fn ep(s: &str) -> ProxyEndpoint {
    ProxyEndpoint::parse(s).unwrap()
}

fn eps(list: &[&str]) -> Vec<ProxyEndpoint> {
    list.iter().map(|s| ep(s)).collect()
}

// --- WinHTTP / DefaultConnectionSettings blob -------------------------------------------------

#[test]
fn winhttp_blob_after_netsh_reset_is_direct() {
    let settings = parse_winhttp_settings(&hex_fixture("winhttp_reset.hex")).unwrap();
    assert_eq!(settings, SystemProxy::empty("winhttp"));
}

#[test]
fn winhttp_blob_with_proxy_and_bypass() {
    let settings = parse_winhttp_settings(&hex_fixture("winhttp_set_proxy.hex")).unwrap();
    assert_eq!(settings.https, eps(&["proxy.corp.test:8080"]));
    assert_eq!(settings.http, eps(&["proxy.corp.test:8080"]));
    assert_eq!(settings.bypass, vec!["*.corp.test", "<local>"]);
    assert_eq!(settings.auto_config_url, None);
    assert!(!settings.auto_detect);
}

#[test]
fn connection_blob_flags_decide_what_counts() {
    let raw =
        ConnectionSettings::parse(&hex_fixture("ie_default_connection_pac.hex"), "t").unwrap();
    assert_eq!((raw.version, raw.counter, raw.flags), (0x46, 0x1c, 0x0d));
    let settings = raw.to_system_proxy("ie").unwrap();
    // The stale proxy string is ignored because flag 0x02 is off.
    assert!(!settings.has_proxy());
    assert_eq!(
        settings.auto_config_url.as_deref(),
        Some("http://pac.corp.test/proxy.pac")
    );
    assert!(settings.auto_detect);
}

#[test]
fn lying_or_truncated_blobs_are_clear_errors() {
    let good = hex_fixture("winhttp_set_proxy.hex");
    let mut huge_len = good.clone();
    huge_len[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut past_end = good.clone();
    past_end[12..16].copy_from_slice(&200u32.to_le_bytes());
    let mut non_ascii = good.clone();
    non_ascii[16] = 0xE9;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("empty", Vec::new(), "truncated at version"),
        ("header only", good[..11].to_vec(), "truncated at flags"),
        ("absurd length", huge_len, "exceeds"),
        ("length past the end", past_end, "truncated at proxy server"),
        ("non-ASCII proxy", non_ascii, "not ASCII"),
    ];
    for (what, bytes, expected) in cases {
        let err = parse_winhttp_settings(&bytes).unwrap_err();
        assert_eq!(err.what, "WinHttpSettings", "{what}");
        assert!(err.detail.contains(expected), "{what}: {err}");
    }
    // A URL length field cut in half (2 of its 4 bytes) is an error too.
    let mut half = good.clone();
    half.extend_from_slice(&[5, 0]);
    assert!(parse_winhttp_settings(&half).is_err());
}

#[test]
fn random_blobs_never_panic() {
    // Deterministic xorshift noise, plus mutations of a valid blob.
    let good = hex_fixture("ie_default_connection_pac.hex");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut bytes = good.clone();
        let len = (next() % (good.len() as u64 + 8)) as usize;
        bytes.resize(len, 0);
        for _ in 0..(next() % 4) {
            if !bytes.is_empty() {
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = next() as u8;
            }
        }
        let _ = ConnectionSettings::parse(&bytes, "fuzz").and_then(|s| s.to_system_proxy("x"));
    }
}

// --- IE per-user values -----------------------------------------------------------------------

fn ie_values(entries: &[(&str, RegValue)]) -> RegValues {
    let mut values = RegValues::new();
    for (name, value) in entries {
        values.insert(name, value.clone());
    }
    values
}

fn sz(s: &str) -> RegValue {
    RegValue::String(s.into())
}

#[test]
fn ie_per_scheme_proxy_map_and_override() {
    let values = ie_values(&[
        ("ProxyEnable", RegValue::Dword(1)),
        (
            "proxyserver",
            sz("http=p1.corp.test:80;https=p2.corp.test:443;ftp=p3.corp.test:21"),
        ),
        ("ProxyOverride", sz("*.corp.test;<local>")),
    ]);
    let settings = from_ie_values(&values).unwrap();
    assert_eq!(
        settings.proxies_for(Scheme::Http),
        eps(&["p1.corp.test:80"])
    );
    assert_eq!(
        settings.proxies_for(Scheme::Connect),
        eps(&["p2.corp.test:443"])
    );
    assert_eq!(settings.bypass, vec!["*.corp.test", "<local>"]);
    assert_eq!(settings.source, "ie");
}

#[test]
fn ie_bare_proxy_means_all_schemes_and_disabled_proxy_is_ignored() {
    let on = ie_values(&[
        ("ProxyEnable", sz("1")),
        ("ProxyServer", sz("proxy.corp.test:3128")),
    ]);
    let settings = from_ie_values(&on).unwrap();
    assert_eq!(settings.http, eps(&["proxy.corp.test:3128"]));
    assert_eq!(settings.https, eps(&["proxy.corp.test:3128"]));

    let off = ie_values(&[
        ("ProxyEnable", RegValue::Dword(0)),
        ("ProxyServer", sz("proxy.corp.test:3128")),
        ("AutoConfigURL", sz(" http://pac.corp.test/p.pac ")),
        ("AutoDetect", RegValue::Dword(1)),
    ]);
    let settings = from_ie_values(&off).unwrap();
    assert!(!settings.has_proxy());
    assert_eq!(
        settings.auto_config_url.as_deref(),
        Some("http://pac.corp.test/p.pac")
    );
    assert!(settings.auto_detect);
}

#[test]
fn ie_values_of_the_wrong_type_are_errors() {
    for values in [
        ie_values(&[("ProxyEnable", RegValue::Binary(vec![1]))]),
        ie_values(&[("ProxyEnable", sz("yes"))]),
        ie_values(&[
            ("ProxyEnable", RegValue::Dword(1)),
            ("ProxyServer", RegValue::Dword(1)),
        ]),
        ie_values(&[
            ("ProxyEnable", RegValue::Dword(1)),
            ("ProxyServer", sz("socks5://s:1080")),
        ]),
    ] {
        assert!(from_ie_values(&values).is_err(), "{values:?}");
    }
}

#[test]
fn connection_blob_overrides_stale_ie_values() {
    let values = ie_values(&[
        ("ProxyEnable", RegValue::Dword(1)),
        ("ProxyServer", sz("manual.corp.test:8080")),
    ]);
    let settings =
        from_ie_values_and_blob(&values, &hex_fixture("ie_default_connection_pac.hex")).unwrap();
    assert!(!settings.has_proxy(), "blob says the manual proxy is off");
    assert_eq!(
        settings.auto_config_url.as_deref(),
        Some("http://pac.corp.test/proxy.pac")
    );
}

#[test]
fn raw_registry_values_decode_like_the_windows_api_returns_them() {
    let utf16: Vec<u8> = "proxy:80\0"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert_eq!(RegValue::from_raw(1, &utf16).unwrap(), sz("proxy:80"));
    assert_eq!(
        RegValue::from_raw(4, &[1, 0, 0, 0]).unwrap(),
        RegValue::Dword(1)
    );
    assert!(RegValue::from_raw(4, &[1, 0]).is_err());
    assert!(RegValue::from_raw(1, &[0x41]).is_err());
}

// --- netsh ------------------------------------------------------------------------------------

#[test]
fn netsh_direct_access() {
    let settings = parse_show_proxy(&fixture_text("netsh_direct.txt")).unwrap();
    assert_eq!(settings, SystemProxy::empty("winhttp"));
}

#[test]
fn netsh_proxy_with_bypass_and_crlf() {
    let settings = parse_show_proxy(&fixture_text("netsh_proxy.txt")).unwrap();
    assert_eq!(settings.https, eps(&["proxy.corp.test:8080"]));
    assert_eq!(settings.bypass, vec!["*.corp.test", "<local>", "10.*"]);
}

#[test]
fn netsh_per_scheme_proxy_and_no_bypass() {
    let settings = parse_show_proxy(&fixture_text("netsh_per_scheme_no_bypass.txt")).unwrap();
    assert_eq!(settings.http, eps(&["web.corp.test:80"]));
    assert_eq!(settings.https, eps(&["secure.corp.test:8443"]));
    assert!(settings.bypass.is_empty());
}

#[test]
fn netsh_in_another_language_is_an_error_not_direct() {
    let err = parse_show_proxy(&fixture_text("netsh_german.txt")).unwrap_err();
    assert!(err.detail.contains("non-English"), "{err}");
}

#[test]
fn netsh_advproxy_json() {
    let settings = parse_show_advproxy(&fixture_text("netsh_advproxy.txt")).unwrap();
    assert_eq!(settings.https, eps(&["proxy.corp.test:8080"]));
    assert_eq!(settings.bypass, vec!["<local>"]);
    assert_eq!(
        settings.auto_config_url.as_deref(),
        Some("http://pac.corp.test/wpad.dat")
    );
    assert!(parse_show_advproxy("Current WinHTTP advanced proxy settings:\r\n{oops").is_err());
}

// --- .reg exports -----------------------------------------------------------------------------

#[test]
fn reg_v5_utf16_ie_settings() {
    let file = RegFile::parse(&fixture("ie_settings_v5_utf16.reg")).unwrap();
    let settings = ie_from_reg(&file).unwrap().unwrap();
    assert_eq!(settings.http, eps(&["web.corp.test:8080"]));
    assert_eq!(settings.https, eps(&["secure.corp.test:8443"]));
    assert_eq!(settings.bypass, vec!["*.corp.test", "10.*", "<local>"]);
    let key = file
        .key(r"hkcu\software\microsoft\windows\currentversion\internet settings")
        .unwrap();
    assert_eq!(
        key.get("SomePath"),
        Some(&sz(r#"C:\Program Files\x "quoted""#))
    );
    assert_eq!(
        key.binary("ZonesSecurityUpgrade"),
        Some(&[0, 1, 2, 3, 4, 5, 6, 7][..])
    );
    assert!(winhttp_from_reg(&file).unwrap().is_none());
}

#[test]
fn regedit4_ie_settings_with_pac() {
    let file = RegFile::parse(&fixture("ie_settings_regedit4_pac.reg")).unwrap();
    let settings = ie_from_reg(&file).unwrap().unwrap();
    assert!(!settings.has_proxy(), "ProxyEnable is 0");
    assert_eq!(
        settings.auto_config_url.as_deref(),
        Some("http://pac.corp.test/proxy.pac")
    );
    assert!(settings.auto_detect);
}

#[test]
fn reg_with_connections_blob_prefers_the_blob() {
    let file = RegFile::parse(&fixture("ie_with_connections_v5_utf16.reg")).unwrap();
    let settings = ie_from_reg(&file).unwrap().unwrap();
    assert!(!settings.has_proxy());
    assert_eq!(
        settings.auto_config_url.as_deref(),
        Some("http://pac.corp.test/proxy.pac")
    );
}

#[test]
fn reg_winhttp_blob_with_continuation_lines_utf16_and_utf8() {
    for name in ["winhttp_v5_utf16.reg", "winhttp_utf8.reg"] {
        let file = RegFile::parse(&fixture(name)).unwrap();
        let settings = winhttp_from_reg(&file).unwrap().unwrap();
        assert_eq!(settings.https, eps(&["proxy.corp.test:8080"]), "{name}");
        assert_eq!(settings.bypass, vec!["*.corp.test", "<local>"], "{name}");
        assert!(ie_from_reg(&file).unwrap().is_none(), "{name}");
    }
}

#[test]
fn reg_files_for_another_user_and_deletions() {
    let text = "Windows Registry Editor Version 5.00\r\n\r\n\
        [HKEY_USERS\\S-1-5-21-1-2-3-1001\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings]\r\n\
        \"ProxyEnable\"=dword:00000001\r\n\
        \"ProxyServer\"=\"old:80\"\r\n\
        \"ProxyServer\"=-\r\n\
        \"ProxyServer\"=\"new.corp.test:8080\"\r\n\
        [-HKEY_CURRENT_USER\\Software\\Gone]\r\n\
        \"Ignored\"=\"x\"\r\n";
    let file = RegFile::parse(text.as_bytes()).unwrap();
    let settings = ie_from_reg(&file).unwrap().unwrap();
    assert_eq!(settings.https, eps(&["new.corp.test:8080"]));
}

#[test]
fn malformed_reg_files_name_the_line() {
    let cases = [
        ("Windows Registry Editor Version 6.00\n", "header"),
        ("REGEDIT4\n[HKEY_CURRENT_USER\\X\n", "line 2"),
        (
            "REGEDIT4\n\n[HKEY_CURRENT_USER\\X]\n\"a\"=dword:123456789\n",
            "line 4",
        ),
        (
            "REGEDIT4\n[HKEY_CURRENT_USER\\X]\n\"a\"=hex:1,zz\n",
            "bad hex byte",
        ),
        ("REGEDIT4\n[HKEY_CURRENT_USER\\X]\n\"a=\"b\"\n", "line 3"),
        (
            "REGEDIT4\n[HKEY_CURRENT_USER\\X]\n\"a\"=\"b\\q\"\n",
            "escape",
        ),
        ("REGEDIT4\n[HKEY_CURRENT_USER\\X]\nnonsense\n", "line 3"),
    ];
    for (text, expected) in cases {
        let err = RegFile::parse(text.as_bytes()).unwrap_err();
        assert!(err.detail.contains(expected), "{text:?}: {err}");
    }
    assert!(RegFile::parse(&[0xFF, 0xFE, 0x41]).is_err(), "odd UTF-16");
}

// --- environment ------------------------------------------------------------------------------

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn env_lower_case_wins_and_all_proxy_fills_gaps() {
    let settings = from_env(env_of(&[
        ("HTTPS_PROXY", "http://upper.corp.test:1"),
        ("https_proxy", "http://lower.corp.test:2"),
        ("ALL_PROXY", "all.corp.test:3"),
        ("http_proxy", ""),
    ]))
    .unwrap();
    assert_eq!(settings.https, eps(&["lower.corp.test:2"]));
    assert_eq!(
        settings.http,
        eps(&["all.corp.test:3"]),
        "empty counts as unset"
    );
    assert_eq!(settings.source, "env");
}

#[test]
fn env_default_port_is_curls_1080_and_ipv6_works() {
    let settings = from_env(env_of(&[
        ("HTTPS_PROXY", "http://proxy.corp.test/"),
        ("HTTP_PROXY", "http://[::1]:3128"),
    ]))
    .unwrap();
    assert_eq!(settings.https, eps(&["proxy.corp.test:1080"]));
    assert_eq!(settings.http, eps(&["[::1]:3128"]));
}

#[test]
fn env_credentials_are_returned_redacted_and_never_in_errors() {
    let settings = from_env(env_of(&[(
        "https_proxy",
        "http://alice%40corp:s3cr%3At@proxy.corp.test:3128",
    )]))
    .unwrap();
    let (endpoint, creds) = &settings.credentials[0];
    assert_eq!(endpoint, &ep("proxy.corp.test:3128"));
    assert_eq!(creds.username, "alice@corp");
    assert_eq!(creds.password.as_str(), "s3cr:t");
    let printed = format!("{settings:?}");
    assert!(!printed.contains("s3cr"), "{printed}");
    assert!(printed.contains("[redacted]"));

    let err = from_env(env_of(&[("https_proxy", "https://bob:hunter2@proxy:443")])).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn env_rejects_proxies_we_cannot_chain() {
    for value in [
        "https://p:443",
        "socks5://p:1080",
        "socks5h://p",
        "http://p:99999",
        "http://",
    ] {
        assert!(
            from_env(env_of(&[("https_proxy", value)])).is_err(),
            "{value} accepted"
        );
    }
}

#[test]
fn no_proxy_follows_curl() {
    assert_eq!(
        no_proxy_to_bypass("Example.com, .corp.test,10.0.0.0/8,192.168.1.5,,[::1]"),
        vec![
            "*.example.com",
            "example.com",
            "*.corp.test",
            "corp.test",
            "10.0.0.0/8",
            "192.168.1.5",
            "[::1]"
        ]
    );
    assert_eq!(no_proxy_to_bypass("a.test,*"), vec!["*"]);
    let settings = from_env(env_of(&[("NO_PROXY", "localhost")])).unwrap();
    assert_eq!(settings.bypass, vec!["*.localhost", "localhost"]);
}

#[test]
fn env_reader_only_sees_what_the_closure_gives() {
    // TLS-8: with an empty lookup the result has no proxy, whatever the test process has set.
    assert_eq!(from_env(|_: &str| None).unwrap(), SystemProxy::empty("env"));
}

// --- source selection -------------------------------------------------------------------------

fn proxy_settings(source: &'static str, proxy: &str) -> SystemProxy {
    SystemProxy {
        http: eps(&[proxy]),
        https: eps(&[proxy]),
        ..SystemProxy::empty(source)
    }
}

fn pac_settings(source: &'static str, url: &str) -> SystemProxy {
    SystemProxy {
        auto_config_url: Some(url.into()),
        ..SystemProxy::empty(source)
    }
}

fn chosen(selected: &Selected) -> String {
    match selected {
        Selected::Proxies(p) => format!("{} {}", p.source, p.https[0]),
        Selected::Pac { url, source, .. } => format!("{source} pac {url}"),
        Selected::Wpad { source } => format!("{source} wpad"),
        Selected::Direct { .. } => "direct".into(),
    }
}

#[test]
fn auto_precedence_ie_pac_then_ie_proxy_then_winhttp_then_env() {
    let all = SettingsInputs {
        ie: Some(SystemProxy {
            auto_config_url: Some("http://pac.corp.test/ie.pac".into()),
            ..proxy_settings("ie", "ie.corp.test:80")
        }),
        winhttp: Some(proxy_settings("winhttp", "wh.corp.test:80")),
        env: Some(proxy_settings("env", "env.corp.test:80")),
        ..SettingsInputs::default()
    };
    assert_eq!(
        chosen(&select(Source::Auto, &all)),
        "ie pac http://pac.corp.test/ie.pac"
    );
    let mut no_ie_pac = all.clone();
    no_ie_pac.ie = Some(proxy_settings("ie", "ie.corp.test:80"));
    assert_eq!(
        chosen(&select(Source::Auto, &no_ie_pac)),
        "ie ie.corp.test:80"
    );
    let mut no_ie = all.clone();
    no_ie.ie = Some(SystemProxy::empty("ie"));
    assert_eq!(
        chosen(&select(Source::Auto, &no_ie)),
        "winhttp wh.corp.test:80"
    );
    no_ie.winhttp = Some(pac_settings("winhttp", "http://pac.corp.test/wh.pac"));
    assert_eq!(
        chosen(&select(Source::Auto, &no_ie)),
        "winhttp pac http://pac.corp.test/wh.pac"
    );
    no_ie.winhttp = None;
    assert_eq!(
        chosen(&select(Source::Auto, &no_ie)),
        "env env.corp.test:80"
    );
    no_ie.env = None;
    assert_eq!(chosen(&select(Source::Auto, &no_ie)), "direct");
}

#[test]
fn wpad_is_off_unless_explicitly_allowed() {
    let mut inputs = SettingsInputs {
        ie: Some(SystemProxy {
            auto_detect: true,
            ..SystemProxy::empty("ie")
        }),
        env: Some(proxy_settings("env", "env.corp.test:80")),
        ..SettingsInputs::default()
    };
    // Auto skips WPAD and falls through to env; an explicit `ie` source explains why it is direct.
    assert_eq!(
        chosen(&select(Source::Auto, &inputs)),
        "env env.corp.test:80"
    );
    match select(Source::Ie, &inputs) {
        Selected::Direct { why } => assert!(why.contains("WPAD"), "{why}"),
        other => panic!("{other:?}"),
    }
    inputs.allow_wpad = true;
    assert_eq!(chosen(&select(Source::Auto, &inputs)), "ie wpad");
    assert_eq!(chosen(&select(Source::Ie, &inputs)), "ie wpad");
}

#[test]
fn explicit_sources_use_only_their_input() {
    let inputs = SettingsInputs {
        static_proxies: eps(&["s1.corp.test:8080", "s2.corp.test:8080"]),
        static_bypass: vec!["*.corp.test".into()],
        pac_url: Some("http://pac.corp.test/cfg.pac".into()),
        ie: Some(proxy_settings("ie", "ie.corp.test:80")),
        winhttp: None,
        env: Some(proxy_settings("env", "env.corp.test:80")),
        allow_wpad: false,
    };
    match select(Source::Static, &inputs) {
        Selected::Proxies(p) => {
            assert_eq!(p.https, eps(&["s1.corp.test:8080", "s2.corp.test:8080"]));
            assert_eq!(p.bypass, vec!["*.corp.test"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        chosen(&select(Source::Pac, &inputs)),
        "pac pac http://pac.corp.test/cfg.pac"
    );
    assert_eq!(
        chosen(&select(Source::Env, &inputs)),
        "env env.corp.test:80"
    );
    assert_eq!(chosen(&select(Source::Ie, &inputs)), "ie ie.corp.test:80");
    match select(Source::WinHttp, &inputs) {
        Selected::Direct { why } => assert!(why.contains("not available"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!("WinHTTP".parse::<Source>().unwrap(), Source::WinHttp);
    assert!("wpad".parse::<Source>().is_err());
}

// --- watcher (FLT-13) -------------------------------------------------------------------------

type Shared<T> = Arc<Mutex<T>>;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A watcher whose settings and addresses the test controls; counts settings reads.
fn controlled_watcher(
    settings: Shared<Result<Selected, String>>,
    addresses: Shared<Vec<IpAddr>>,
    reads: Arc<AtomicUsize>,
) -> SettingsWatcher {
    SettingsWatcher::new(
        Box::new(move || {
            reads.fetch_add(1, Ordering::SeqCst);
            settings
                .lock()
                .unwrap()
                .clone()
                .map_err(|e| exoproxy::route::system::SettingsError {
                    what: "test",
                    detail: e,
                })
        }),
        Box::new(move || addresses.lock().unwrap().clone()),
    )
}

fn direct() -> Selected {
    Selected::Direct { why: "none".into() }
}

fn pac(url: &str) -> Selected {
    Selected::Pac {
        url: url.into(),
        bypass: Vec::new(),
        source: "ie",
    }
}

#[tokio::test(start_paused = true)]
async fn network_change_publishes_new_settings_within_five_seconds() {
    let settings = Arc::new(Mutex::new(Ok(direct())));
    let addresses = Arc::new(Mutex::new(vec![ip("192.168.1.20")]));
    let reads = Arc::new(AtomicUsize::new(0));
    let watcher = controlled_watcher(settings.clone(), addresses.clone(), reads.clone());
    let (mut rx, task) = watcher.spawn();
    assert_eq!(rx.borrow().selected, direct());
    assert_eq!(rx.borrow().reason, "start");
    rx.borrow_and_update();

    // Nothing changes for a while: no new snapshot, settings re-read only on their interval.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!rx.has_changed().unwrap());
    assert_eq!(reads.load(Ordering::SeqCst), 1);

    // VPN comes up: a new address, and the VPN client set a PAC.
    *addresses.lock().unwrap() = vec![ip("192.168.1.20"), ip("10.8.0.2")];
    *settings.lock().unwrap() = Ok(pac("http://pac.corp.test/vpn.pac"));
    let started = tokio::time::Instant::now();
    rx.changed().await.unwrap();
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let snapshot = rx.borrow_and_update().clone();
    assert_eq!(snapshot.selected, pac("http://pac.corp.test/vpn.pac"));
    assert_eq!(snapshot.reason, "network changed");
    assert_eq!(snapshot.generation, 1);
    assert_eq!(snapshot.addresses, vec![ip("10.8.0.2"), ip("192.168.1.20")]);

    // VPN goes down, settings unchanged: still a new generation so PAC caches re-fetch.
    *addresses.lock().unwrap() = vec![ip("192.168.1.20")];
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow_and_update().generation, 2);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn settings_change_without_network_change_is_seen_on_the_interval() {
    let settings = Arc::new(Mutex::new(Ok(direct())));
    let addresses = Arc::new(Mutex::new(vec![ip("192.168.1.20")]));
    let reads = Arc::new(AtomicUsize::new(0));
    let watcher = controlled_watcher(settings.clone(), addresses, reads);
    let (mut rx, task) = watcher.spawn();
    rx.borrow_and_update();
    *settings.lock().unwrap() = Ok(pac("http://pac.corp.test/new.pac"));
    let started = tokio::time::Instant::now();
    rx.changed().await.unwrap();
    assert!(started.elapsed() <= Duration::from_secs(32));
    assert_eq!(rx.borrow().reason, "settings changed");

    // A failing read keeps the last good settings (no flip to direct).
    *settings.lock().unwrap() = Err("registry locked".into());
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert!(!rx.has_changed().unwrap());
    assert_eq!(rx.borrow().selected, pac("http://pac.corp.test/new.pac"));
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn watcher_stops_when_nobody_listens_and_first_failure_is_explained() {
    let settings = Arc::new(Mutex::new(Err("no registry".to_string())));
    let addresses = Arc::new(Mutex::new(Vec::new()));
    let watcher = controlled_watcher(settings, addresses, Arc::new(AtomicUsize::new(0)));
    let (rx, task) = watcher.spawn();
    match &rx.borrow().selected {
        Selected::Direct { why } => assert!(why.contains("no registry"), "{why}"),
        other => panic!("{other:?}"),
    }
    drop(rx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("watcher task ended")
        .unwrap();
}

#[test]
fn linux_address_sources_parse_proc_files() {
    let fib_trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     \
        +-- 10.8.0.0/24 2 0 2\n        |-- 10.8.0.0\n           /24 link UNICAST\n        \
        |-- 10.8.0.2\n           /32 host LOCAL\nLocal:\n  |-- 10.8.0.2\n     /32 host LOCAL\n  \
        |-- 127.0.0.1\n     /32 host LOCAL\n";
    assert_eq!(
        parse_fib_trie(fib_trie),
        vec![ip("10.8.0.2"), ip("127.0.0.1")]
    );
    let if_inet6 = "00000000000000000000000000000001 01 80 10 80       lo\n\
        fe800000000000000000000000000001 02 40 20 80     eth0\n\
        20010db8000000001111222233334444 02 40 00 01     eth0\nbogus line\n";
    assert_eq!(parse_if_inet6(if_inet6), vec![ip("::1"), ip("fe80::1")]);
}

#[test]
fn tls_8_live_reader_consults_env_only_when_chosen() {
    use exoproxy::route::system::{LiveConfig, read_and_select};
    let env = env_of(&[("https_proxy", "http://env.corp.test:3128")]);
    let mut live = LiveConfig {
        source: Source::Auto,
        ..LiveConfig::default()
    };
    // TLS-8: auto ignores the proxy's own environment unless env_in_auto is set.
    assert_eq!(chosen(&read_and_select(&live, &env).unwrap()), "direct");
    live.env_in_auto = true;
    assert_eq!(
        chosen(&read_and_select(&live, &env).unwrap()),
        "env env.corp.test:3128"
    );
    live.source = Source::Env;
    live.env_in_auto = false;
    assert_eq!(
        chosen(&read_and_select(&live, &env).unwrap()),
        "env env.corp.test:3128"
    );
    let bad = env_of(&[("https_proxy", "socks5://s:1080")]);
    assert!(read_and_select(&live, &bad).is_err());
    live.source = Source::Static;
    live.config.static_proxies = eps(&["s.corp.test:8080"]);
    assert_eq!(
        chosen(&read_and_select(&live, &bad).unwrap()),
        "static s.corp.test:8080"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn linux_system_addresses_include_loopback_when_the_kernel_lists_it() {
    let fib = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let addresses = exoproxy::route::system::watch::system_addresses();
    if fib.contains("|-- 127.0.0.1") {
        assert!(addresses.contains(&ip("127.0.0.1")), "{addresses:?}");
    }
    let mut sorted = addresses.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(addresses, sorted, "sorted and de-duplicated");
}
