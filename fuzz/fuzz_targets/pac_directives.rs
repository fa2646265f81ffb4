//! The PAC-result parser (docs/TESTING.md#fuzz-2): never panics; accepted hops, written back as
//! `DIRECT` / `PROXY host:port` entries, parse to the same hops.
#![no_main]

use exoproxy::route::pac::directive::parse_directives;
use exoproxy::target::Hop;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(hops) = parse_directives(s) {
        let shown = hops.iter().map(Hop::to_string).collect::<Vec<_>>().join("; ");
        assert_eq!(parse_directives(&shown), Ok(hops), "{shown:?}");
    }
});
