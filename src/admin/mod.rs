//! Admin endpoints served on the proxy's own port: `GET /proxy.pac`, and the status surface
//! (docs/STATUS.md): `GET /` (the page), `/status.json`, `/status.js`, `/exoproxy-ca.pem`,
//! `/metrics` (Prometheus), `/healthz` (liveness: `ok`, docs/TESTING.md#rel-4), `/favicon.ico` (a
//! browser asks for it on every page; a refusal would be an error in the page's console), and the
//! actions `POST /action/<name>` ([`action`]).
//!
//! Contract for the status surface ([`status_reply`]):
//! - Origin-form `GET` only, and only when `Host` names our listen address ([`is_our_host`]): a
//!   DNS-rebinding page gets a 400 and no data. The handler also requires the connecting socket to
//!   belong to our own OS user (as token injection does, docs/ARCHITECTURE.md security model).
//! - Every reply carries [`SECURITY_HEADERS`]: `no-store`, a CSP of `default-src 'self'`, no
//!   framing, no sniffing.
//!
//! Contract for the served PAC ([`served_pac`]):
//! - Only origin-form `GET /proxy.pac` whose `Host` is one of our listen addresses (or `localhost`
//!   with our port) is answered ([`is_our_host`]); anything else origin-form stays 400.
//! - Content type [`PAC_CONTENT_TYPE`]. The script says, in the router's order: STS/direct hosts
//!   (explicit and discovered) → `DIRECT`; intercepted hosts → `PROXY <our address>`; bypass entries
//!   of the settings in use → `DIRECT`; everything else → what the corporate PAC says (embedded with
//!   its `FindProxyForURL` renamed to `__corp_FindProxyForURL`), or the static upstream list, or
//!   `DIRECT`. While the corporate PAC is not loaded, the rest goes to `PROXY <our address>` (so
//!   the client sees our `pac_error`/`pac_loading` answer: fail closed), or `DIRECT` when
//!   `pac_failure = "direct"`.
//! - Patterns are emitted as JSON string literals (valid JS), matched with `shExpMatch` on the
//!   lower-cased host; IP ranges (CIDR) are left to the proxy itself (a browser would need DNS).

pub mod action;
pub mod page;
pub mod status;

use std::net::SocketAddr;

use crate::route::rules::split_port;
use crate::route::{Router, ServedDefault};
use crate::target::Hop;

/// The PAC media type browsers expect.
pub const PAC_CONTENT_TYPE: &str = "application/x-ns-proxy-autoconfig";
/// Path of the served PAC.
pub const PAC_PATH: &str = "/proxy.pac";
/// What the corporate `FindProxyForURL` is renamed to.
pub const CORP_FUNCTION: &str = "__corp_FindProxyForURL";

/// Headers on every status-surface reply.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("cache-control", "no-store"),
    ("content-security-policy", "default-src 'self'"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
];

/// The status-surface paths.
pub const STATUS_PATHS: [&str; 7] = [
    "/",
    "/status.json",
    "/status.js",
    "/exoproxy-ca.pem",
    "/metrics",
    "/favicon.ico",
    "/healthz",
];

/// One status-surface reply: media type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub content_type: &'static str,
    pub body: String,
}

/// The reply for `path` (one of [`STATUS_PATHS`]), or `None` (the CA is asked for while
/// interception is off, or the path is not ours).
pub fn status_reply(path: &str, sources: &status::Sources) -> Option<Reply> {
    let (content_type, body) = match path {
        "/" => (
            "text/html; charset=utf-8",
            page::render(&sources.status(), sources.actions.token().expose()),
        ),
        "/status.json" => (
            "application/json",
            serde_json::to_string_pretty(&sources.status()).ok()?,
        ),
        "/status.js" => ("text/javascript; charset=utf-8", page::SCRIPT.to_string()),
        "/exoproxy-ca.pem" => ("application/x-pem-file", sources.ca_pem()?),
        "/metrics" => (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            crate::summary::metrics_text(),
        ),
        "/favicon.ico" => ("image/svg+xml", page::ICON.to_string()),
        // Liveness for a watchdog: answered from our state alone, never waiting for the PAC worker,
        // the IdP or an upstream (docs/TESTING.md#rel-4). Degraded states are in /status.json.
        "/healthz" => ("text/plain; charset=utf-8", "ok\n".to_string()),
        _ => return None,
    };
    Some(Reply { content_type, body })
}

/// True when `host` has the shape [`is_our_host`] can accept (an IP literal with a port, or
/// `localhost:<port>`): the head guard's early filter, before the listen addresses are known.
pub fn may_name_us(host: &str) -> bool {
    host.parse::<SocketAddr>().is_ok()
        || host.rsplit_once(':').is_some_and(|(name, port)| {
            name.eq_ignore_ascii_case("localhost") && port.parse::<u16>().is_ok()
        })
}

/// True when `host` (a `Host` header value) names one of `own` addresses.
pub fn is_our_host(host: &str, own: &[SocketAddr]) -> bool {
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return own.contains(&addr)
            || own
                .iter()
                .any(|o| o.port() == addr.port() && o.ip().is_unspecified());
    }
    match host.rsplit_once(':') {
        Some((name, port)) if name.eq_ignore_ascii_case("localhost") => own
            .iter()
            .any(|o| o.ip().is_loopback() && port.parse() == Ok(o.port())),
        _ => false,
    }
}

/// The served PAC for clients that reach us at `our_addr` (the `Host` they used).
pub async fn served_pac(router: &Router, our_addr: &str) -> String {
    let patterns = router.patterns();
    let mut direct: Vec<String> = patterns
        .direct_hosts
        .iter()
        .flat_map(|p| rule_globs(p))
        .collect();
    if let Some(sts) = router.sts() {
        direct.extend(sts.domains().into_values().flat_map(|d| d.hosts));
    }
    let intercept: Vec<String> = patterns
        .intercept
        .iter()
        .flat_map(|p| rule_globs(p))
        .collect();
    let mut bypass: Vec<String> = patterns.bypass.clone();
    let (corp, fallback) = match router.served_default().await {
        ServedDefault::Hops { hops, bypass: b } => {
            bypass.extend(b);
            (None, js_string(&hops_text(&hops)))
        }
        ServedDefault::Script { text, bypass: b } => {
            bypass.extend(b);
            let call = format!("{CORP_FUNCTION}(url, host)");
            (Some(rename_find_proxy(&text)), call)
        }
        ServedDefault::Unavailable { direct } => {
            let answer = if direct {
                "DIRECT".to_string()
            } else {
                format!("PROXY {our_addr}")
            };
            (None, js_string(&answer))
        }
    };
    render(
        &direct,
        &intercept,
        &bypass,
        corp.as_deref(),
        our_addr,
        &fallback,
    )
}

fn render(
    direct: &[String],
    intercept: &[String],
    bypass: &[String],
    corp: Option<&str>,
    our_addr: &str,
    fallback: &str,
) -> String {
    let (local, bypass_globs) = bypass_globs(bypass);
    let mut out =
        String::from("// Generated by exoproxy: intercepted hosts via exoproxy, STS DIRECT.\n");
    if let Some(corp) = corp {
        out.push_str("// --- corporate PAC, FindProxyForURL renamed ---\n");
        out.push_str(corp);
        out.push_str("\n// --- end of corporate PAC ---\n");
    }
    out.push_str(&format!(
        "var __exo_direct = {};\nvar __exo_intercept = {};\nvar __exo_bypass = {};\n",
        js_array(direct),
        js_array(intercept),
        js_array(&bypass_globs),
    ));
    out.push_str(
        "function __exo_in(h, list) {\n  for (var i = 0; i < list.length; i++) {\n    \
         if (shExpMatch(h, list[i])) return true;\n  }\n  return false;\n}\n",
    );
    out.push_str(&format!(
        "function FindProxyForURL(url, host) {{\n  var h = host.toLowerCase();\n  \
         if (__exo_in(h, __exo_direct)) return \"DIRECT\";\n  \
         if (__exo_in(h, __exo_intercept)) return {proxy};\n  \
         if ({local}__exo_in(h, __exo_bypass)) return \"DIRECT\";\n  \
         return {fallback};\n}}\n",
        proxy = js_string(&format!("PROXY {our_addr}")),
        local = if local { "isPlainHostName(h) || " } else { "" },
    ));
    out
}

/// `PROXY a:1; PROXY b:2; DIRECT`.
fn hops_text(hops: &[Hop]) -> String {
    let hops: Vec<String> = hops.iter().map(Hop::to_string).collect();
    hops.join("; ")
}

/// `shExpMatch` globs for a rule pattern (`host`, `*.suffix`, `.suffix`, optional `:port`); none for
/// IP ranges.
fn rule_globs(pattern: &str) -> Vec<String> {
    let p = pattern.trim().to_ascii_lowercase();
    let host = match split_port(&p) {
        Ok((host, _)) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        Err(_) => return Vec::new(),
    };
    if host.contains('/') || host.is_empty() {
        return Vec::new();
    }
    match host.strip_prefix('.') {
        Some(name) => vec![name.to_string(), format!("*.{name}")],
        None => vec![host],
    }
}

/// WinINet bypass entries as globs; `<local>` becomes `isPlainHostName`. Schemes and ports are
/// dropped, CIDR ranges skipped.
fn bypass_globs(lists: &[String]) -> (bool, Vec<String>) {
    let mut local = false;
    let mut globs = Vec::new();
    let separators = |c: char| c == ';' || c == ',' || c.is_whitespace();
    for entry in lists
        .iter()
        .flat_map(|l| l.split(separators))
        .filter(|e| !e.is_empty())
    {
        let entry = entry.to_ascii_lowercase();
        if entry == "<local>" {
            local = true;
            continue;
        }
        let entry = entry
            .split_once("://")
            .map_or(entry.as_str(), |(_, rest)| rest);
        if entry.contains('/') {
            continue;
        }
        let host = match entry.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => entry,
        };
        globs.push(host.to_string());
    }
    (local, globs)
}

/// Renames every `FindProxyForURL` identifier (not `FindProxyForURLEx`, not `xFindProxyForURL`).
pub fn rename_find_proxy(script: &str) -> String {
    const NAME: &str = "FindProxyForURL";
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
    let mut out = String::with_capacity(script.len() + 64);
    let mut rest = script;
    while let Some(i) = rest.find(NAME) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + NAME.len()..].chars().next();
        out.push_str(&rest[..i]);
        if ident(before) || ident(after) {
            out.push_str(NAME);
        } else {
            out.push_str(CORP_FUNCTION);
        }
        rest = &rest[i + NAME.len()..];
    }
    out.push_str(rest);
    out
}

fn js_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn js_array(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_only_the_identifier() {
        let s = "function FindProxyForURL(u,h){return xFindProxyForURL(u)+FindProxyForURLEx;}";
        assert_eq!(
            rename_find_proxy(s),
            "function __corp_FindProxyForURL(u,h){return xFindProxyForURL(u)+FindProxyForURLEx;}"
        );
    }

    #[test]
    fn our_host_only() {
        let own: Vec<SocketAddr> = vec!["127.0.0.1:8765".parse().unwrap()];
        assert!(is_our_host("127.0.0.1:8765", &own));
        assert!(is_our_host("localhost:8765", &own));
        assert!(!is_our_host("127.0.0.1:8766", &own));
        assert!(!is_our_host("evil.example:8765", &own));
        assert!(!is_our_host("127.0.0.1", &own));
        assert!(
            may_name_us("127.0.0.1:8765") && may_name_us("[::1]:1") && may_name_us("LOCALHOST:2")
        );
        assert!(
            !may_name_us("x") && !may_name_us("evil.example:8765") && !may_name_us("localhost")
        );
    }

    #[test]
    fn globs_for_rules_and_bypass() {
        assert_eq!(rule_globs(".adfs.test"), vec!["adfs.test", "*.adfs.test"]);
        assert_eq!(rule_globs("*.x.test:443"), vec!["*.x.test"]);
        assert!(rule_globs("10.0.0.0/8").is_empty());
        let (local, globs) = bypass_globs(&["<local>;*.corp 10.0.0.0/8 http://a.b:80".into()]);
        assert!(local);
        assert_eq!(globs, vec!["*.corp", "a.b"]);
    }
}
