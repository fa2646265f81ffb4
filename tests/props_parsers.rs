//! Property tests of the three sans-IO parsers that read what a client or a PAC script sends: the
//! request-head guard (`handler::head::check_head`), the CONNECT target parser (`Target`,
//! `ProxyEndpoint`) and the PAC directive parser (`route::pac::directive::parse_directives`).
//! docs/TESTING.md#fuzz-1 and #fuzz-2; the `cargo fuzz` targets in `fuzz/` drive the same entry
//! points without a case limit.
//!
//! Two properties for each, on arbitrary input and on near-valid input built by the strategies below
//! (valid heads with one byte changed, `host:port` with odd spellings, directive lists with odd
//! spacing and case):
//! - it never panics;
//! - whatever it accepts round-trips: parse → display → parse gives the same value.
//!
//! 256 cases per property (CI-sized); `PROPTEST_CASES=100000` for a longer run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use exoproxy::handler::head::{RequestHead, check_head};
use exoproxy::limits::Limits;
use exoproxy::route::pac::directive::{MAX_ENTRIES, parse_directives};
use exoproxy::target::{Hop, Host, ProxyEndpoint, Target};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

// === Strategies shared by the three parsers ===

/// One DNS label, sometimes upper case, sometimes with `-` or `_`.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,10}",
        "[A-Za-z0-9][A-Za-z0-9_-]{0,8}[A-Za-z0-9]",
        Just("xn--bcher-kva".to_string()),
        "[a-z0-9]{63,64}",
    ]
}

/// Host spellings, valid and odd: names (trailing dot, mixed case), IPv4, IPv6 in and out of
/// brackets, zone ids, the numeric IPv4 forms resolvers disagree on, stray characters.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(label(), 1..4).prop_map(|l| l.join(".")),
        1 => prop::collection::vec(label(), 1..4).prop_map(|l| l.join(".") + "."),
        2 => any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        2 => any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
        1 => any::<[u16; 8]>().prop_map(|s| std::net::Ipv6Addr::from(s).to_string()),
        1 => Just("[::1%eth0]".to_string()),
        1 => Just("[::ffff:127.0.0.1]".to_string()),
        1 => odd_ipv4(),
        1 => "[a-z.]{0,3}[%@/?#\\\\ \t][a-z.]{0,3}",
        1 => Just(String::new()),
    ]
}

/// The IPv4 spellings that are not four decimal octets (BAD-22): always refused.
fn odd_ipv4() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u32>().prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| format!("0x{n:x}")),
        any::<u32>().prop_map(|n| format!("0X{n:X}")),
        any::<(u8, u16)>().prop_map(|(a, b)| format!("{a}.{b}")),
        any::<(u8, u8, u16)>().prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        any::<(u8, u8)>().prop_map(|(a, b)| format!("0{a:o}.0.0.{b}")),
        any::<u8>().prop_map(|a| format!("0x{a:x}.0.0.1")),
    ]
}

/// Port spellings: plain, leading zeros, out of range, signed, hex, empty, padded.
fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1u16..).prop_map(|p| p.to_string()),
        1 => (1u16..10000).prop_map(|p| format!("0{p}")),
        1 => (65536u32..100_000).prop_map(|p| p.to_string()),
        1 => prop_oneof![Just("0"), Just("00000"), Just(""), Just("+443"), Just("-1"), Just("0x1bb"), Just(" 443"), Just("443 "), Just("4 43"), Just("１２３")].prop_map(str::to_string),
    ]
}

/// `host:port` and its near misses: no port, two colons, junk appended.
fn authority() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (host(), port()).prop_map(|(h, p)| format!("{h}:{p}")),
        1 => host(),
        1 => (host(), port(), port()).prop_map(|(h, p, q)| format!("{h}:{p}:{q}")),
        1 => (host(), port(), "[/?#@ ]{1}[a-z]{0,3}").prop_map(|(h, p, j)| format!("{h}:{p}{j}")),
    ]
}

/// Mixed-case spelling of an ASCII keyword, `mask` choosing which letters go lower case.
fn mixed_case(word: &str, mask: u32) -> String {
    word.chars()
        .enumerate()
        .map(|(i, c)| match (mask >> (i % 32)) & 1 {
            1 => c.to_ascii_lowercase(),
            _ => c,
        })
        .collect()
}

// === FUZZ-1: the CONNECT-authority parser and normaliser ===

/// The normal form is a fixed point: what parses displays as something that parses to the same value
/// and displays the same way.
fn assert_target_round_trips(t: &Target) {
    let shown = t.to_string();
    let again = Target::parse_connect(&shown)
        .unwrap_or_else(|e| panic!("{shown:?} (display of an accepted target) refused: {e}"));
    assert_eq!(&again, t, "round trip through {shown:?}");
    assert_eq!(again.to_string(), shown);
}

/// What an accepted host looks like: names lower case, no trailing dot, only label characters;
/// never a numeric-looking last label.
fn assert_normalised(host: &Host) {
    if let Host::Name(name) = host {
        assert!(!name.is_empty() && !name.ends_with('.'), "{name:?}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)),
            "{name:?}"
        );
        let last = name.rsplit('.').next().unwrap_or_default();
        assert!(!last.bytes().all(|b| b.is_ascii_digit()), "{name:?}");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz1_arbitrary_authorities_never_panic_and_round_trip(s in any::<String>()) {
        if let Ok(t) = Target::parse_connect(&s) {
            assert_target_round_trips(&t);
        }
        if let Ok(t) = Target::from_http_authority(&s) {
            prop_assert_eq!(Target::from_http_authority(&t.to_string()), Ok(t));
        }
        if let Ok(p) = ProxyEndpoint::parse(&s) {
            prop_assert_eq!(ProxyEndpoint::parse(&p.to_string()), Ok(p));
        }
    }

    #[test]
    fn fuzz1_odd_host_port_spellings_round_trip_when_accepted(s in authority()) {
        let parsed = Target::parse_connect(&s);
        if let Ok(t) = &parsed {
            assert_normalised(&t.host);
            assert_target_round_trips(t);
            prop_assert!(t.port >= 1);
            // The proxy-endpoint parser (PAC, settings) reads an authority exactly as CONNECT does.
            let endpoint = ProxyEndpoint::parse(&s).expect("CONNECT accepted it");
            prop_assert_eq!((&endpoint.host, endpoint.port), (&t.host, t.port));
        } else {
            prop_assert!(ProxyEndpoint::parse(&s).is_err(), "{:?}", s);
        }
        // Case never changes the meaning (names are normalised, hex digits of IPv6 are hex).
        prop_assert_eq!(Target::parse_connect(&s.to_ascii_uppercase()).ok(), parsed.ok());
    }

    #[test]
    fn fuzz1_trailing_dot_and_case_are_one_name(labels in prop::collection::vec(label(), 1..4), p in 1u16.., mask: u32) {
        let name = labels.join(".");
        let plain = Target::parse_connect(&format!("{name}:{p}")).ok();
        prop_assert_eq!(Target::parse_connect(&format!("{name}.:{p}")).ok(), plain.clone());
        prop_assert_eq!(Target::parse_connect(&format!("{}:{p}", mixed_case(&name, mask))).ok(), plain);
    }

    #[test]
    fn fuzz1_numeric_ipv4_spellings_are_always_refused(h in odd_ipv4(), p in 1u16..) {
        prop_assert!(Target::parse_connect(&format!("{h}:{p}")).is_err(), "{}", h);
        prop_assert!(Host::parse(&h).is_err(), "{}", h);
    }
}

// === FUZZ-2: the PAC-result parser ===

/// One PAC entry as a script may write it; `Some(hop)` when it is a usable hop.
fn pac_entry() -> impl Strategy<Value = (String, Option<Hop>)> {
    let endpoint = || {
        (label(), label(), 1u16..).prop_map(|(a, b, p)| {
            let e = ProxyEndpoint::parse(&format!("{a}.{b}:{p}"));
            (format!("{a}.{b}:{p}"), e.ok())
        })
    };
    let ws = "[ \t]{1,3}";
    prop_oneof![
        4 => any::<u32>().prop_map(|m| (mixed_case("DIRECT", m), Some(Hop::Direct))),
        4 => (prop_oneof![Just("PROXY"), Just("HTTP")], any::<u32>(), ws, endpoint())
            .prop_map(|(k, m, w, (text, e))| (format!("{}{w}{text}", mixed_case(k, m)), e.map(Hop::Proxy))),
        1 => (prop_oneof![Just("HTTPS"), Just("SOCKS"), Just("SOCKS5"), Just("QUIC")], endpoint())
            .prop_map(|(k, (text, _))| (format!("{k} {text}"), None)),
    ]
}

/// The hops a parser that dropped unsupported entries must return; `None` when the list is
/// refused as a whole (an entry that is not a hop, no hop at all, too many entries).
fn expected_hops(entries: &[(String, Option<Hop>)]) -> Option<Vec<Hop>> {
    let unsupported = |text: &str| {
        ["HTTPS ", "SOCKS ", "SOCKS5 ", "QUIC "]
            .iter()
            .any(|k| text.starts_with(k))
    };
    let mut hops = Vec::new();
    for (text, hop) in entries {
        match hop {
            Some(h) => hops.push(h.clone()),
            None if unsupported(text) => {}
            None => return None,
        }
    }
    (!hops.is_empty() && entries.len() <= MAX_ENTRIES).then_some(hops)
}

fn assert_directives_round_trip(hops: &[Hop]) {
    let shown = hops
        .iter()
        .map(Hop::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    assert_eq!(
        parse_directives(&shown).as_deref(),
        Ok(hops),
        "round trip through {shown:?}"
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz2_arbitrary_pac_results_never_panic_and_round_trip(s in any::<String>()) {
        if let Ok(hops) = parse_directives(&s) {
            prop_assert!(!hops.is_empty() && hops.len() <= MAX_ENTRIES);
            assert_directives_round_trip(&hops);
        }
    }

    #[test]
    fn fuzz2_pac_shaped_text_never_panics(s in "([A-Za-z]{0,7}[ \t]{0,2}[a-z0-9.:\\[\\]@%]{0,12}[ \t]{0,2};?){0,6}") {
        if let Ok(hops) = parse_directives(&s) {
            assert_directives_round_trip(&hops);
        }
    }

    #[test]
    fn fuzz2_directive_lists_with_odd_spacing_parse_as_written(
        entries in prop::collection::vec(pac_entry(), 0..40),
        seps in prop::collection::vec("[ \t\n]{0,2};[ \t\n;]{0,3}", 40),
        lead in "[ \t\n;]{0,3}",
    ) {
        let mut text = lead;
        for (i, (entry, _)) in entries.iter().enumerate() {
            text.push_str(entry);
            text.push_str(&seps[i]);
        }
        let parsed = parse_directives(&text);
        prop_assert_eq!(parsed.clone().ok(), expected_hops(&entries), "{:?}", text);
        if let Ok(hops) = parsed {
            assert_directives_round_trip(&hops);
        }
    }
}

// === The request-head guard ===

/// A head the guard accepts: CONNECT or absolute-form, a few ordinary fields, maybe a body framing.
fn valid_head() -> impl Strategy<Value = Vec<u8>> {
    let connect = (host(), 1u16..).prop_filter_map("a valid CONNECT target", |(h, p)| {
        let t = Target::parse_connect(&format!("{h}:{p}")).ok()?;
        Some((format!("CONNECT {t} HTTP/1.1\r\nHost: {t}\r\n"), false))
    });
    let absolute = (
        prop_oneof![
            Just("GET"),
            Just("POST"),
            Just("PUT"),
            Just("DELETE"),
            Just("PATCH"),
            Just("M-SEARCH")
        ],
        prop::collection::vec(label(), 1..3),
        prop::option::of(1u16..),
        "(/[a-zA-Z0-9._~-]{0,8}){0,3}(\\?[a-z]=[a-z0-9]{0,4})?",
        0u8..2,
    )
        .prop_map(|(m, labels, port, path, version)| {
            let host = labels.join(".");
            let authority = port.map_or(host.clone(), |p| format!("{host}:{p}"));
            let path = if path.is_empty() {
                "/".to_string()
            } else {
                path
            };
            let line =
                format!("{m} http://{authority}{path} HTTP/1.{version}\r\nHost: {authority}\r\n");
            (line, version == 1)
        });
    let fields = prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,12}", "[ -~]{0,24}"), 0..6);
    let framing = prop_oneof![
        Just(String::new()),
        (0u64..100_000).prop_map(|n| format!("Content-Length: {n}\r\n")),
        Just("Transfer-Encoding: chunked\r\n".to_string()),
    ];
    (prop_oneof![connect, absolute], fields, framing).prop_map(
        |((line, chunked_ok), fields, framing)| {
            let mut head = line;
            for (name, value) in fields {
                head.push_str(&format!("X-{name}: {}\r\n", value.trim()));
            }
            let connect = head.starts_with("CONNECT");
            let chunked = framing.starts_with("Transfer");
            if !connect && (chunked_ok || !chunked) {
                head.push_str(&framing);
            }
            head.push_str("\r\n");
            head.into_bytes()
        },
    )
}

/// What the guard promises about a head it accepted, and that it is stable: rebuilt from the parsed
/// request line plus the same header block it is accepted again with the same result, and no strict
/// prefix of it is refused (a client trickling a valid head byte by byte is never turned away).
fn assert_accepted_head(buf: &[u8], head: &RequestHead, limits: &Limits) {
    assert!(head.head_len <= buf.len() && head.head_len <= limits.max_head_bytes);
    assert!(buf[..head.head_len].ends_with(b"\r\n\r\n"));
    assert!(head.version <= 1);
    if head.is_connect() {
        assert!(Target::parse_connect(&head.target).is_ok(), "{head:?}");
    } else {
        let admin = head.method == "GET"
            && ["/proxy.pac", "/exoproxy-ca.crl"].contains(&head.target.as_str());
        let absolute = head.target.len() >= 7 && head.target[..7].eq_ignore_ascii_case("http://");
        assert!(admin || absolute, "{head:?}");
    }
    let line_end = buf
        .iter()
        .position(|&b| b == b'\n')
        .expect("a complete head has a line")
        + 1;
    let mut rebuilt = format!(
        "{} {} HTTP/1.{}\r\n",
        head.method, head.target, head.version
    )
    .into_bytes();
    rebuilt.extend_from_slice(&buf[line_end..head.head_len]);
    assert_eq!(
        check_head(&rebuilt, limits),
        Ok(Some(head.clone())),
        "rebuilt {:?}",
        String::from_utf8_lossy(&rebuilt)
    );
    for cut in [
        0,
        1,
        line_end - 1,
        line_end,
        head.head_len / 2,
        head.head_len - 2,
        head.head_len - 1,
    ] {
        let cut = cut.min(head.head_len - 1);
        assert_eq!(
            check_head(&buf[..cut], limits),
            Ok(None),
            "prefix of {cut} bytes"
        );
    }
}

fn guard(buf: &[u8]) {
    let limits = Limits::default();
    if let Ok(Some(head)) = check_head(buf, &limits) {
        assert_accepted_head(buf, &head, &limits);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn head_guard_arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..2048)) {
        guard(&buf);
    }

    #[test]
    fn head_guard_head_shaped_text_never_panics(s in "[A-Z]{1,8} [ -~]{0,40} HTTP/1\\.[0-9]\r?\n([A-Za-z-]{1,16}:[ \t]?[ -~]{0,20}\r?\n){0,5}\r?\n[ -~]{0,8}") {
        guard(s.as_bytes());
    }

    #[test]
    fn head_guard_accepts_valid_heads_and_their_prefixes_only_ask_for_more(head in valid_head(), body in prop::collection::vec(any::<u8>(), 0..16)) {
        let limits = Limits::default();
        let parsed = check_head(&head, &limits);
        let Ok(Some(accepted)) = parsed else {
            panic!("{:?} refused: {parsed:?}", String::from_utf8_lossy(&head));
        };
        prop_assert_eq!(accepted.head_len, head.len());
        assert_accepted_head(&head, &accepted, &limits);
        // Body bytes after a framed (or HTTP/1.1) head do not change the verdict.
        let mut with_body = head.clone();
        with_body.extend_from_slice(&body);
        if accepted.version == 1 {
            prop_assert_eq!(check_head(&with_body, &limits), Ok(Some(accepted)));
        }
    }

    #[test]
    fn head_guard_valid_heads_with_one_byte_changed_never_panic(head in valid_head(), at: prop::sample::Index, byte: u8) {
        let mut buf = head;
        let i = at.index(buf.len());
        buf[i] = byte;
        guard(&buf);
    }

    #[test]
    fn head_guard_valid_heads_with_bytes_inserted_or_removed_never_panic(head in valid_head(), at: prop::sample::Index, insert in prop::collection::vec(any::<u8>(), 0..4), remove in 0usize..4) {
        let mut buf = head;
        let i = at.index(buf.len());
        let end = (i + remove).min(buf.len());
        buf.splice(i..end, insert);
        guard(&buf);
    }
}
