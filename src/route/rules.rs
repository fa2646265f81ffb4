//! Host, IP/CIDR and port matchers compiled once from config, and WinHTTP/IE bypass-list semantics.
//!
//! Two grammars live here:
//!
//! - **Rule patterns** ([`HostRule`]), used by the proxy's own lists (`block`, `direct_hosts`,
//!   `intercept`, `allow_local`). Strict, so that a typo is an error and a look-alike never matches
//!   (BAD-27):
//!   - `host.example`: exactly that name;
//!   - `*.host.example`: names strictly below it, on a label boundary (`a.host.example`,
//!     `a.b.host.example`; not `host.example`, not `evil-host.example`, not `host.example.evil`);
//!   - `.host.example`: the name itself and every name below it;
//!   - `10.1.2.3`, `::1`, `[::1]`: that IP literal; `10.0.0.0/8`, `fe80::/10`, `[fe80::]/10`: a range.
//!     Addresses match IP literals only, never a host name;
//!   - any of the above followed by `:port` limits the rule to one port (IPv6 needs brackets then).
//!
//!   Names compare case-insensitively and without a trailing dot (targets arrive normalised).
//! - **Bypass lists** ([`BypassList`]), WinINet/WinHTTP `ProxyOverride` semantics, for lists that come
//!   from Windows settings, `NO_PROXY` or config; see the `bypass` submodule.
//!
//! Matching never allocates, and a list scans only the entries of the target's kind (names or IPs).

mod bypass;
mod net;

use std::sync::Arc;

use crate::target::{Host, Target};

pub use bypass::{BypassEntry, BypassList};
pub use net::IpNet;

/// One compiled rule pattern (see the module doc for the grammar).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRule {
    /// The entry as written in config, for explanations.
    text: Arc<str>,
    pattern: HostPattern,
    /// Only this port, when the entry named one.
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// `name`: exactly this name.
    Exact(Box<str>),
    /// `*.suffix`: strictly below `suffix`.
    Below(Box<str>),
    /// `.suffix`: `suffix` itself or below it.
    AtOrBelow(Box<str>),
    /// An IP literal or range.
    Net(IpNet),
}

/// An ordered list of [`HostRule`]s; the first matching entry wins. Each entry carries a precomputed
/// explanation (`direct host "sts.contoso.test"`) so a decision can cite it without formatting.
#[derive(Clone, Debug, Default)]
pub struct RuleList {
    /// Entries for host names, in config order.
    names: Vec<ListedRule>,
    /// Entries for IP literals, in config order.
    ips: Vec<ListedRule>,
}

/// A rule that matched, with its position in the original list.
#[derive(Clone, Copy, Debug)]
pub struct RuleMatch<'a> {
    /// Position of the entry in the list given to [`RuleList::compile`].
    pub index: usize,
    pub rule: &'a HostRule,
    /// `<kind> "<entry>"`, e.g. `direct host "sts.contoso.test"`.
    pub why: &'a Arc<str>,
}

#[derive(Clone, Debug)]
struct ListedRule {
    index: usize,
    rule: HostRule,
    why: Arc<str>,
}

// === impl HostRule ===

impl HostRule {
    /// Parses one rule pattern; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<HostRule, String> {
        let trimmed = entry.trim();
        if trimmed.is_empty() {
            return Err("empty entry".into());
        }
        let (host, port) = split_port(trimmed)?;
        Ok(HostRule {
            text: trimmed.into(),
            pattern: parse_host_pattern(host)?,
            port,
        })
    }

    /// The entry as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the rule names an IP literal or range rather than host names.
    pub fn is_ip(&self) -> bool {
        matches!(self.pattern, HostPattern::Net(_))
    }

    /// True when the target's host (and port, if the rule names one) match.
    pub fn matches(&self, target: &Target) -> bool {
        self.port.is_none_or(|p| p == target.port) && self.matches_host(&target.host)
    }

    fn matches_host(&self, host: &Host) -> bool {
        match (&self.pattern, host) {
            (HostPattern::Exact(n), Host::Name(h)) => **h == **n,
            (HostPattern::Below(s), Host::Name(h)) => is_below(h, s),
            (HostPattern::AtOrBelow(s), Host::Name(h)) => **h == **s || is_below(h, s),
            (HostPattern::Net(net), Host::Ip(ip)) => net.contains(*ip),
            _ => false,
        }
    }
}

/// True when `host` ends with `.suffix`: strictly below it, on a label boundary.
pub(crate) fn is_below(host: &str, suffix: &str) -> bool {
    host.len() > suffix.len()
        && host.ends_with(suffix)
        && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
}

fn parse_host_pattern(host: &str) -> Result<HostPattern, String> {
    if host.contains('/') {
        return IpNet::parse(host).map(HostPattern::Net);
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        return parse_name(suffix).map(HostPattern::Below);
    }
    if let Some(suffix) = host.strip_prefix('.') {
        return parse_name(suffix).map(HostPattern::AtOrBelow);
    }
    if host.contains('*') {
        return Err("'*' is only allowed as a leading \"*.\" label".into());
    }
    if let Ok(ip) = host.parse() {
        return Ok(HostPattern::Net(IpNet::single(ip)));
    }
    match Host::parse(host).map_err(|e| e.0)? {
        Host::Name(name) => Ok(HostPattern::Exact(name.as_ref().into())),
        Host::Ip(ip) => Ok(HostPattern::Net(IpNet::single(ip))),
    }
}

/// A DNS name as it appears after `*.` or `.`, normalised like a target host.
fn parse_name(name: &str) -> Result<Box<str>, String> {
    match Host::parse(name).map_err(|e| e.0)? {
        Host::Name(n) => Ok(n.as_ref().into()),
        Host::Ip(_) => Err(format!(
            "{name:?} is an IP address: write a range like 10.0.0.0/8 instead of a wildcard"
        )),
    }
}

/// Splits an optional `:port` off a pattern. IPv6 needs brackets to carry a port (`[::1]:8443`,
/// `[fe80::]/10:443`); a bare IPv6 address or range (two or more colons) has none.
pub(crate) fn split_port(entry: &str) -> Result<(&str, Option<u16>), String> {
    let split_at = if entry.starts_with('[') {
        let close = entry
            .find(']')
            .ok_or_else(|| "unterminated '[' in IPv6 literal".to_string())?;
        entry[close..].find(':').map(|i| close + i)
    } else if entry.matches(':').count() == 1 {
        entry.find(':')
    } else {
        None
    };
    match split_at {
        None => Ok((entry, None)),
        Some(i) => Ok((&entry[..i], Some(parse_port(&entry[i + 1..])?))),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("port {p:?} is not a number from 1 to 65535")),
    }
}

// === impl RuleList ===

impl RuleList {
    /// Compiles `entries` in order. `kind` starts each explanation (`direct host` gives
    /// `direct host "sts.contoso.test"`) and each error (`direct_hosts: "a*b": …`).
    pub fn compile<S: AsRef<str>>(
        kind: &str,
        field: &str,
        entries: &[S],
    ) -> Result<RuleList, Vec<String>> {
        let mut list = RuleList::default();
        let mut errors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match HostRule::parse(entry.as_ref()) {
                Ok(rule) => {
                    let why = format!("{kind} \"{}\"", rule.as_str());
                    list.push(index, rule, why.into());
                }
                Err(e) => errors.push(format!("{field}: {:?}: {e}", entry.as_ref())),
            }
        }
        if errors.is_empty() {
            Ok(list)
        } else {
            Err(errors)
        }
    }

    /// Appends a parsed rule; `index` is what [`RuleMatch::index`] reports for it, `why` what a
    /// decision cites.
    pub(crate) fn push(&mut self, index: usize, rule: HostRule, why: Arc<str>) {
        let slot = if rule.is_ip() {
            &mut self.ips
        } else {
            &mut self.names
        };
        slot.push(ListedRule { index, rule, why });
    }

    /// The first entry matching the target, if any.
    pub fn find(&self, target: &Target) -> Option<RuleMatch<'_>> {
        let candidates = match target.host {
            Host::Name(_) => &self.names,
            Host::Ip(_) => &self.ips,
        };
        candidates
            .iter()
            .find(|r| r.rule.matches(target))
            .map(|r| RuleMatch {
                index: r.index,
                rule: &r.rule,
                why: &r.why,
            })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.names.len() + self.ips.len()
    }

    /// True when the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
