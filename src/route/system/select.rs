//! Which settings source decides the default upstream: `static`, `env`, `pac`, `winhttp`, `ie` or
//! `auto`, and what that source yields ([`Selected`]: static hops plus bypass, a PAC URL, WPAD, or
//! direct).
//!
//! Precedence for `auto`, first match wins:
//!
//! 1. IE `AutoConfigURL` (a PAC): what the user's browser uses and what group policy usually pushes;
//!    a PAC also carries per-destination rules that a static proxy cannot.
//! 2. IE manual proxy (`ProxyEnable` + `ProxyServer`) with its `ProxyOverride` bypass list.
//! 3. WinHTTP machine settings (PAC URL first, then manual proxy): what WinRM uses by default, but
//!    frequently left at "Direct access" on machines whose browsers are configured, hence below IE.
//! 4. Environment variables, when given in [`SettingsInputs::env`]: the live reader fills them for
//!    `auto` only with `LiveConfig::env_in_auto`, which the configuration never sets (TLS-8: the
//!    proxy's own `HTTPS_PROXY` must not silently change where traffic goes; `source = "env"` reads it).
//! 5. Direct.
//!
//! WPAD auto-detection (IE `AutoDetect`, blob flag 0x08) is skipped unless `allow_wpad` is set, in
//! `auto` and in the explicit sources alike: WPAD is resolved by DNS/DHCP on whatever network the
//! laptop happens to be on, so a hotel or hostile network can hand out a PAC that routes all traffic
//! through its proxy (the classic WPAD hijack), and a failed lookup costs seconds per start. When
//! WPAD is the only setting and it is not allowed, the result is direct with an explanation.

use std::fmt;
use std::str::FromStr;

use crate::route::system::SystemProxy;
use crate::target::ProxyEndpoint;

/// The configured upstream source: `upstream.source` in the config file, decoded here and nowhere
/// else (`config::validate` parses the key with [`FromStr`] and builds the route from the variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Source {
    /// No upstream proxy.
    Direct,
    /// The proxies listed in the config file.
    Static,
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` of the proxy's own process.
    Env,
    /// The PAC URL in the config file.
    Pac,
    /// Machine WinHTTP settings (`netsh winhttp`).
    WinHttp,
    /// The current user's IE/WinINet settings.
    Ie,
    /// The precedence in the module doc.
    #[default]
    Auto,
}

/// Everything [`select`] may choose from; a reader that failed or does not exist on this platform
/// leaves its field `None`.
#[derive(Clone, Debug, Default)]
pub struct SettingsInputs {
    /// `upstream.proxies` from config, in order (used for http and https alike).
    pub static_proxies: Vec<ProxyEndpoint>,
    /// `upstream.bypass` from config, for the static source.
    pub static_bypass: Vec<String>,
    /// `upstream.pac_url` from config.
    pub pac_url: Option<String>,
    pub ie: Option<SystemProxy>,
    pub winhttp: Option<SystemProxy>,
    pub env: Option<SystemProxy>,
    /// Honour WPAD auto-detection flags (off by default, see the module doc).
    pub allow_wpad: bool,
}

/// The outcome of source selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selected {
    /// Static per-scheme hops plus raw bypass entries (and any credentials the source carried).
    Proxies(SystemProxy),
    /// Evaluate this PAC; `bypass` entries (if any) are applied before the script.
    Pac {
        url: String,
        bypass: Vec<String>,
        source: &'static str,
    },
    /// WPAD discovery was requested by `source` and allowed.
    Wpad { source: &'static str },
    /// No proxy; `why` says which source decided and how.
    Direct { why: String },
}

// === impl Source ===

impl FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Source, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "direct" => Source::Direct,
            "static" => Source::Static,
            "env" => Source::Env,
            "pac" => Source::Pac,
            "winhttp" => Source::WinHttp,
            "ie" => Source::Ie,
            "auto" => Source::Auto,
            other => {
                return Err(format!(
                    "unknown source {other:?}: use \"direct\", \"static\", \"env\", \"pac\", \
                     \"winhttp\", \"ie\" or \"auto\""
                ));
            }
        })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Direct => "direct",
            Source::Static => "static",
            Source::Env => "env",
            Source::Pac => "pac",
            Source::WinHttp => "winhttp",
            Source::Ie => "ie",
            Source::Auto => "auto",
        })
    }
}

// === impl Selected ===

impl Selected {
    /// One line for logs and the status page (no credentials: `SystemProxy` redacts them).
    pub fn describe(&self) -> String {
        match self {
            Selected::Proxies(p) => {
                let list = |l: &[ProxyEndpoint]| {
                    l.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "{}: https via [{}], http via [{}], {} bypass entries",
                    p.source,
                    list(&p.https),
                    list(&p.http),
                    p.bypass.len()
                )
            }
            Selected::Pac { url, source, .. } => format!("{source}: PAC {url}"),
            Selected::Wpad { source } => format!("{source}: WPAD auto-detection"),
            Selected::Direct { why } => format!("direct ({why})"),
        }
    }
}

/// Picks the settings the router should use for `source`.
pub fn select(source: Source, inputs: &SettingsInputs) -> Selected {
    match source {
        Source::Direct => direct("source direct chosen"),
        Source::Static => select_static(inputs),
        Source::Pac => match &inputs.pac_url {
            Some(url) => Selected::Pac {
                url: url.clone(),
                bypass: inputs.static_bypass.clone(),
                source: "pac",
            },
            None => direct("source pac chosen but no pac_url is configured"),
        },
        Source::Env => from_system(inputs.env.as_ref(), "env", inputs.allow_wpad),
        Source::WinHttp => from_system(inputs.winhttp.as_ref(), "winhttp", inputs.allow_wpad),
        Source::Ie => from_system(inputs.ie.as_ref(), "ie", inputs.allow_wpad),
        Source::Auto => select_auto(inputs),
    }
}

fn select_static(inputs: &SettingsInputs) -> Selected {
    if inputs.static_proxies.is_empty() {
        return direct("source static chosen with no proxies configured");
    }
    Selected::Proxies(SystemProxy {
        http: inputs.static_proxies.clone(),
        https: inputs.static_proxies.clone(),
        bypass: inputs.static_bypass.clone(),
        ..SystemProxy::empty("static")
    })
}

fn select_auto(inputs: &SettingsInputs) -> Selected {
    let ie = inputs.ie.as_ref();
    let winhttp = inputs.winhttp.as_ref();
    let steps = [
        ie.and_then(pac_of),
        ie.and_then(proxies_of),
        ie.and_then(|p| wpad_of(p, inputs.allow_wpad)),
        winhttp.and_then(pac_of),
        winhttp.and_then(proxies_of),
        winhttp.and_then(|p| wpad_of(p, inputs.allow_wpad)),
        inputs.env.as_ref().and_then(proxies_of),
    ];
    steps.into_iter().flatten().next().unwrap_or_else(|| {
        let wpad_skipped = [ie, winhttp].into_iter().flatten().any(|p| p.auto_detect);
        direct(if wpad_skipped {
            "auto: no PAC or proxy configured (WPAD auto-detection is set but disabled)"
        } else {
            "auto: no PAC or proxy configured in IE, WinHTTP or the environment"
        })
    })
}

/// One explicit system source: its PAC, else its proxies, else WPAD if allowed, else direct.
fn from_system(settings: Option<&SystemProxy>, name: &'static str, allow_wpad: bool) -> Selected {
    let Some(settings) = settings else {
        return direct(format!("{name} settings are not available on this system"));
    };
    pac_of(settings)
        .or_else(|| proxies_of(settings))
        .or_else(|| wpad_of(settings, allow_wpad))
        .unwrap_or_else(|| {
            direct(if settings.auto_detect {
                format!("{name}: only WPAD auto-detection is set, and it is disabled")
            } else {
                format!("{name}: no proxy configured")
            })
        })
}

fn pac_of(settings: &SystemProxy) -> Option<Selected> {
    settings.auto_config_url.as_ref().map(|url| Selected::Pac {
        url: url.clone(),
        bypass: Vec::new(),
        source: settings.source,
    })
}

fn proxies_of(settings: &SystemProxy) -> Option<Selected> {
    settings.has_proxy().then(|| {
        let mut p = settings.clone();
        p.auto_config_url = None;
        p.auto_detect = false;
        Selected::Proxies(p)
    })
}

fn wpad_of(settings: &SystemProxy, allow_wpad: bool) -> Option<Selected> {
    (allow_wpad && settings.auto_detect).then_some(Selected::Wpad {
        source: settings.source,
    })
}

fn direct(why: impl Into<String>) -> Selected {
    Selected::Direct { why: why.into() }
}
