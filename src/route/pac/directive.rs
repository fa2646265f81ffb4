//! Sans-IO parser for the string `FindProxyForURL` returns (docs/PROTOCOL.md#pac-result), strict by
//! design (docs/TESTING.md#pac-6).
//!
//! Contract: [`parse_directives`] accepts `DIRECT`, `PROXY host:port` and `HTTP host:port` entries separated
//! by `;` (keywords case-insensitive, whitespace and a trailing `;` tolerated) and returns them in order.
//! Everything else is an error that names the offending entry: an empty result, a missing port, userinfo,
//! trailing junk, unknown keywords, more than [`MAX_ENTRIES`] entries. `HTTPS`, `SOCKS*` and `QUIC` are
//! well formed but unsupported (no TLS to proxies, no SOCKS): they are dropped, and a result made only of
//! them is an error, so the proxy never silently goes DIRECT instead.
//!
//! Browsers silently drop malformed entries; we refuse the whole result instead, because a half-understood
//! answer from a script we do not control is a poor basis for sending traffic somewhere.

use crate::target::{Hop, ProxyEndpoint};

/// The longest list the proxy will try; longer results are treated as hostile (PAC-6, 10 000 entries).
pub const MAX_ENTRIES: usize = 32;

/// Results longer than this are refused before any parsing.
pub const MAX_RESULT_LEN: usize = 8 * 1024;

/// Why a PAC result could not be used; the text is shown in the `pac_invalid_result` response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DirectiveError(pub String);

// === impl parsing ===

/// Parses a PAC result into hops, left to right.
pub fn parse_directives(result: &str) -> Result<Vec<Hop>, DirectiveError> {
    if result.len() > MAX_RESULT_LEN {
        return Err(DirectiveError(format!(
            "result is {} bytes long (limit {MAX_RESULT_LEN})",
            result.len()
        )));
    }
    let entries: Vec<&str> = result
        .split(';')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(DirectiveError("empty result".into()));
    }
    if entries.len() > MAX_ENTRIES {
        return Err(DirectiveError(format!(
            "{} entries (limit {MAX_ENTRIES})",
            entries.len()
        )));
    }
    let mut hops = Vec::with_capacity(entries.len());
    let mut unsupported = Vec::new();
    for entry in entries {
        match parse_entry(entry)? {
            Entry::Hop(hop) => hops.push(hop),
            Entry::Unsupported(keyword) => unsupported.push(keyword),
        }
    }
    if hops.is_empty() {
        return Err(DirectiveError(format!(
            "only unsupported entries ({}): exoproxy chains to HTTP proxies only",
            unsupported.join(", ")
        )));
    }
    Ok(hops)
}

/// One parsed entry: usable, or well formed but of a kind we do not speak.
enum Entry {
    Hop(Hop),
    Unsupported(String),
}

fn parse_entry(entry: &str) -> Result<Entry, DirectiveError> {
    let mut words = entry.split_ascii_whitespace();
    let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
    let argument = words.next();
    if let Some(junk) = words.next() {
        return Err(DirectiveError(format!(
            "unexpected {junk:?} in entry {entry:?}"
        )));
    }
    match (keyword.as_str(), argument) {
        ("DIRECT", None) => Ok(Entry::Hop(Hop::Direct)),
        ("DIRECT", Some(arg)) => Err(DirectiveError(format!(
            "DIRECT takes no argument, got {arg:?}"
        ))),
        ("PROXY" | "HTTP", Some(arg)) => parse_endpoint(arg).map(|p| Entry::Hop(Hop::Proxy(p))),
        ("HTTPS" | "SOCKS" | "SOCKS4" | "SOCKS5" | "QUIC", Some(_)) => {
            Ok(Entry::Unsupported(keyword))
        }
        ("PROXY" | "HTTP" | "HTTPS" | "SOCKS" | "SOCKS4" | "SOCKS5" | "QUIC", None) => Err(
            DirectiveError(format!("{keyword} without host:port in entry {entry:?}")),
        ),
        _ => Err(DirectiveError(format!("unknown entry {entry:?}"))),
    }
}

fn parse_endpoint(arg: &str) -> Result<ProxyEndpoint, DirectiveError> {
    if arg.contains('@') {
        return Err(DirectiveError(
            "proxy with userinfo refused: credentials never come from a PAC".into(),
        ));
    }
    ProxyEndpoint::parse(arg).map_err(|e| DirectiveError(e.0))
}
