//! WinINet/WinHTTP bypass lists (`ProxyOverride`, `netsh winhttp set proxy bypass-list=`), compiled
//! once and matched without allocating. docs/PROTOCOL.md#wininet-settings,
//! docs/PROTOCOL.md#winhttp-settings; Chromium `net/docs/proxy.md` for the
//! corner cases Microsoft does not document.
//!
//! Grammar, one list = entries separated by `;`, `,` or whitespace (empty entries are skipped):
//!
//! - `<local>`: any host *name* without a dot (`intranet`, not `intranet.corp`); a naive test,
//!   unrelated to `localhost`. IP literals are not names and never match it.
//! - `*`: everything.
//! - `[scheme://]pattern[:port]`: `http://` limits the entry to plain-HTTP targets, `https://` to
//!   CONNECT targets; any other scheme (`ftp://`, `socks://`) is accepted and never matches, since the
//!   proxy carries neither. `:port` limits the entry to that port.
//! - `pattern` without `*`: an exact host name, or an exact IP literal (`10.1.2.3`, `[::1]`, `::1`).
//!   WinINet does not extend a plain name to its subdomains: `contoso.com` does not match
//!   `www.contoso.com` (a `NO_PROXY` converter must emit `contoso.com;*.contoso.com`).
//! - `pattern` with `*` anywhere (`*.corp.example`, `10.*`, `192.168.*`, `*-int.corp`): a wildcard over
//!   the host text (IP literals as dotted quad or RFC 5952 text without brackets), case-insensitive.
//!   A leading `.` reads as `*.` (Chromium does the same): `.corp.example` = `*.corp.example`.
//! - `addr/len` (`10.0.0.0/8`, `fe80::/10`, `[fe80::]/10`): an IP range; matches IP literals only,
//!   never a name that might resolve into it.

use std::net::IpAddr;
use std::sync::Arc;

use super::net::{IpNet, IpText, wildcard_match};
use super::{is_below, split_port};
use crate::target::{Host, Scheme, Target};

/// A compiled bypass list; the first matching entry explains the decision.
#[derive(Clone, Debug, Default)]
pub struct BypassList {
    entries: Vec<BypassEntry>,
}

/// One compiled bypass entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BypassEntry {
    /// The entry as written.
    text: Arc<str>,
    /// `bypass rule "<entry>"`, precomputed for decisions.
    why: Arc<str>,
    scheme: SchemeFilter,
    port: Option<u16>,
    pattern: BypassPattern,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SchemeFilter {
    Any,
    Only(Scheme),
    /// A scheme this proxy never carries (`ftp://`): the entry can never match.
    Never,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum BypassPattern {
    /// `*`
    Everything,
    /// `<local>`
    DotlessName,
    /// A name without wildcards.
    Exact(Box<str>),
    /// `*.suffix` with no other `*`: the common case, matched without the general wildcard walk.
    Below(Box<str>),
    /// Any other pattern with `*`.
    Wildcard(Box<str>),
    /// An IP literal or range.
    Net(IpNet),
}

// === impl BypassList ===

impl BypassList {
    /// Compiles a list strictly: every malformed entry is reported as `"<entry>": <what is wrong>`
    /// (callers add their own context, such as the config key). Each item of `lists`
    /// may itself hold several entries (`"<local>;*.corp.example 10.*"`).
    pub fn parse<S: AsRef<str>>(lists: &[S]) -> Result<BypassList, Vec<String>> {
        let (list, errors) = BypassList::parse_lenient(lists);
        if errors.is_empty() {
            Ok(list)
        } else {
            Err(errors)
        }
    }

    /// Compiles a list, skipping malformed entries and returning one message per skipped entry: for
    /// lists read from the system, where one odd entry should not stop the proxy.
    pub fn parse_lenient<S: AsRef<str>>(lists: &[S]) -> (BypassList, Vec<String>) {
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        let separators = |c: char| c == ';' || c == ',' || c.is_whitespace();
        for list in lists {
            for entry in list.as_ref().split(separators).filter(|e| !e.is_empty()) {
                match BypassEntry::parse(entry) {
                    Ok(e) => entries.push(e),
                    Err(why) => errors.push(format!("{entry:?}: {why}")),
                }
            }
        }
        (BypassList { entries }, errors)
    }

    /// The first entry matching the target, if any.
    pub fn find(&self, target: &Target) -> Option<&BypassEntry> {
        // Only wildcard entries need an IP literal as text; format it once, on the stack, if at all.
        let mut ip_text = None;
        self.entries
            .iter()
            .find(|e| e.matches_with(target, &mut ip_text))
    }

    /// The compiled entries, in order.
    pub fn entries(&self) -> &[BypassEntry] {
        &self.entries
    }

    /// True when the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

// === impl BypassEntry ===

impl BypassEntry {
    /// Parses a single entry (no separators).
    pub fn parse(entry: &str) -> Result<BypassEntry, String> {
        let entry = entry.trim();
        let (scheme, rest) = split_scheme(entry);
        let (host, port) = if rest.eq_ignore_ascii_case("<local>") {
            (rest, None)
        } else {
            split_port(rest)?
        };
        Ok(BypassEntry {
            text: entry.into(),
            why: format!("bypass rule \"{entry}\"").into(),
            scheme,
            port,
            pattern: parse_pattern(host)?,
        })
    }

    /// The entry as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `bypass rule "<entry>"`: the explanation a decision cites.
    pub fn why(&self) -> &Arc<str> {
        &self.why
    }

    /// True when the entry matches the target.
    pub fn matches(&self, target: &Target) -> bool {
        self.matches_with(target, &mut None)
    }

    fn matches_with(&self, target: &Target, ip_text: &mut Option<IpText>) -> bool {
        let scheme_ok = match self.scheme {
            SchemeFilter::Any => true,
            SchemeFilter::Only(s) => s == target.scheme,
            SchemeFilter::Never => false,
        };
        scheme_ok
            && self.port.is_none_or(|p| p == target.port)
            && self.pattern.matches(&target.host, ip_text)
    }
}

/// Splits `scheme://` off an entry. `http` means plain-HTTP targets, `https` CONNECT targets.
fn split_scheme(entry: &str) -> (SchemeFilter, &str) {
    match entry.split_once("://") {
        None => (SchemeFilter::Any, entry),
        Some((scheme, rest)) => {
            let filter = if scheme.eq_ignore_ascii_case("http") {
                SchemeFilter::Only(Scheme::Http)
            } else if scheme.eq_ignore_ascii_case("https") {
                SchemeFilter::Only(Scheme::Connect)
            } else {
                SchemeFilter::Never
            };
            (filter, rest)
        }
    }
}

fn parse_pattern(host: &str) -> Result<BypassPattern, String> {
    if host.eq_ignore_ascii_case("<local>") {
        return Ok(BypassPattern::DotlessName);
    }
    if host.starts_with('<') {
        return Err("unknown token: only <local> is supported".into());
    }
    if host == "*" {
        return Ok(BypassPattern::Everything);
    }
    if host.contains('/') {
        return IpNet::parse(host).map(BypassPattern::Net);
    }
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let host = match host.strip_prefix('.') {
        Some(rest) => format!("*.{rest}"),
        None => host,
    };
    if host.contains('*') {
        return parse_wildcard(&host);
    }
    if let Ok(ip) = host.parse() {
        return Ok(BypassPattern::Net(IpNet::single(ip)));
    }
    match Host::parse(&host).map_err(|e| e.0)? {
        Host::Name(name) => Ok(BypassPattern::Exact(name.as_ref().into())),
        Host::Ip(ip) => Ok(BypassPattern::Net(IpNet::single(ip))),
    }
}

fn parse_wildcard(pattern: &str) -> Result<BypassPattern, String> {
    let pattern = pattern
        .strip_prefix('[')
        .and_then(|p| p.strip_suffix(']'))
        .unwrap_or(pattern);
    let allowed =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'*');
    if let Some(bad) = pattern.bytes().find(|&b| !allowed(b)) {
        return Err(format!(
            "character {:?} cannot appear in a host",
            bad as char
        ));
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
            Ok(BypassPattern::Below(suffix.into()))
        }
        _ => Ok(BypassPattern::Wildcard(pattern.into())),
    }
}

// === impl BypassPattern ===

impl BypassPattern {
    fn matches(&self, host: &Host, ip_text: &mut Option<IpText>) -> bool {
        match (self, host) {
            (BypassPattern::Everything, _) => true,
            (BypassPattern::DotlessName, Host::Name(n)) => !n.contains('.'),
            (BypassPattern::Exact(x), Host::Name(n)) => **n == **x,
            (BypassPattern::Below(s), Host::Name(n)) => is_below(n, s),
            (BypassPattern::Wildcard(w), Host::Name(n)) => {
                wildcard_match(w.as_bytes(), n.as_bytes())
            }
            (BypassPattern::Below(s), Host::Ip(ip)) => {
                is_below_bytes(text_of(*ip, ip_text), s.as_bytes())
            }
            (BypassPattern::Wildcard(w), Host::Ip(ip)) => {
                wildcard_match(w.as_bytes(), text_of(*ip, ip_text))
            }
            (BypassPattern::Net(net), Host::Ip(ip)) => net.contains(*ip),
            _ => false,
        }
    }
}

/// The IP literal as text (IPv4-mapped IPv6 as IPv4), formatted at most once per lookup.
fn text_of(ip: IpAddr, cache: &mut Option<IpText>) -> &[u8] {
    cache
        .get_or_insert_with(|| IpText::new(ip.to_canonical()))
        .as_bytes()
}

/// [`is_below`] for IP text: `*.1` is a text pattern that matches `10.0.0.1` in WinINet.
fn is_below_bytes(text: &[u8], suffix: &[u8]) -> bool {
    text.len() > suffix.len()
        && text.ends_with(suffix)
        && text[text.len() - suffix.len() - 1] == b'.'
}
