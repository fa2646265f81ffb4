//! `netsh winhttp show proxy` output (English Windows), e.g.
//!
//! ```text
//! Current WinHTTP proxy settings:
//!
//!     Proxy Server(s) :  proxy.corp.example:8080
//!     Bypass List     :  *.corp.example;<local>
//! ```
//!
//! or `Direct access (no proxy server).`. CRLF line ends and any indentation are tolerated. Output in
//! another language is an error that says so, rather than "direct": a misread proxy setting would
//! send traffic around the corporate proxy. `netsh winhttp show advproxy` (JSON, Windows 11) is read
//! by [`parse_show_advproxy`].

use crate::route::system::proxy_list::{parse_bypass_list, parse_proxy_list};
use crate::route::system::{SettingsError, SystemProxy};

const WHAT: &str = "netsh winhttp show proxy";

/// Parses the text of `netsh winhttp show proxy` (source `"winhttp"`).
pub fn parse_show_proxy(text: &str) -> Result<SystemProxy, SettingsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = SystemProxy::empty("winhttp");
    let mut recognised = false;
    for line in text.lines().map(str::trim) {
        if line.to_ascii_lowercase().starts_with("direct access") {
            recognised = true;
        } else if let Some(value) = field(line, "proxy server") {
            let list = parse_proxy_list(value, WHAT)?;
            out.http = list.http;
            out.https = list.https;
            recognised = true;
        } else if let Some(value) = field(line, "bypass list")
            && !value.eq_ignore_ascii_case("(none)")
        {
            out.bypass = parse_bypass_list(value);
        }
    }
    if !recognised {
        return Err(SettingsError::new(
            WHAT,
            "neither \"Direct access\" nor \"Proxy Server(s)\" found (non-English Windows? read the registry instead)",
        ));
    }
    Ok(out)
}

/// `Label :  value` when the line's label starts with `label` (case-insensitive).
fn field<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let (name, value) = line.split_once(':')?;
    name.trim()
        .to_ascii_lowercase()
        .starts_with(label)
        .then(|| value.trim())
}

/// Parses `netsh winhttp show advproxy` output: a heading line, then a JSON object with
/// `ProxyIsEnabled`, `Proxy`, `ProxyBypass`, `AutoconfigUrl`, `AutoDetect`.
pub fn parse_show_advproxy(text: &str) -> Result<SystemProxy, SettingsError> {
    const WHAT_ADV: &str = "netsh winhttp show advproxy";
    let start = text
        .find('{')
        .ok_or_else(|| SettingsError::new(WHAT_ADV, "no JSON object in the output"))?;
    let json: serde_json::Value = serde_json::from_str(text[start..].trim())
        .map_err(|e| SettingsError::new(WHAT_ADV, format!("invalid JSON: {e}")))?;
    let text_of = |key: &str| json.get(key).and_then(|v| v.as_str()).map(str::trim);
    let flag = |key: &str| json.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    let mut out = SystemProxy::empty("winhttp");
    if flag("ProxyIsEnabled") {
        let list = parse_proxy_list(text_of("Proxy").unwrap_or(""), WHAT_ADV)?;
        out.http = list.http;
        out.https = list.https;
        out.bypass = parse_bypass_list(text_of("ProxyBypass").unwrap_or(""));
    }
    out.auto_config_url = text_of("AutoconfigUrl")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    out.auto_detect = flag("AutoDetect");
    Ok(out)
}
