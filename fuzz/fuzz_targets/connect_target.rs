//! The CONNECT-authority parser and normaliser (docs/TESTING.md#fuzz-1): never panics; an accepted
//! authority displays as one that parses to the same target (and the same for proxy endpoints).
#![no_main]

use exoproxy::target::{ProxyEndpoint, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(t) = Target::parse_connect(s) {
        let shown = t.to_string();
        assert_eq!(Target::parse_connect(&shown), Ok(t), "{shown:?}");
    }
    if let Ok(t) = Target::from_http_authority(s) {
        assert_eq!(Target::from_http_authority(&t.to_string()), Ok(t));
    }
    if let Ok(p) = ProxyEndpoint::parse(s) {
        assert_eq!(ProxyEndpoint::parse(&p.to_string()), Ok(p));
    }
});
