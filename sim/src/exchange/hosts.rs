//! Which Exchange host a request reached: service (EXO or S&C), front door or tenant host, the audience
//! the host demands, and the tenant host a front door redirects to (docs/PROTOCOL.md#exchange-hosts,
//! docs/PROTOCOL.md#redirects).

/// Audience of Exchange Online tokens.
pub(crate) const EXO_AUDIENCE: &str = "https://outlook.office365.com";
/// Audience of Security & Compliance tokens.
pub(crate) const SCC_AUDIENCE: &str = "https://ps.compliance.protection.outlook.com";

/// Forest prefix of the emulated tenant hosts (real ones look like `nam12b`, `nam04b`).
const TENANT_PREFIX: &str = "nam12b";
const EXO_SUFFIX: &str = "outlook.office365.com";
const SCC_SUFFIX: &str = "ps.compliance.protection.outlook.com";

/// The two services this module emulates; each has its own audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Exo,
    Scc,
}

/// A classified request host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostInfo {
    pub(crate) service: Service,
    /// Global entry host: answers authenticated requests with a 302 to the tenant host.
    pub(crate) front_door: bool,
    /// The host name as the client spelled it (lower case, no port).
    pub(crate) name: String,
}

/// Which of the two endpoints a path addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointKind {
    /// WS-Man `/PowerShell-LiveID` or `/PowerShell` (case-insensitive).
    Rps,
    /// `/adminapi/...`.
    Rest,
}

// === impl HostInfo ===

impl HostInfo {
    /// Classify a lower-cased host name without port; `None` for hosts this module does not serve.
    pub(crate) fn classify(host: &str) -> Option<HostInfo> {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let (service, front_door) = if name == EXO_SUFFIX || name == "ps.outlook.com" {
            (Service::Exo, true)
        } else if name == SCC_SUFFIX {
            (Service::Scc, true)
        } else if is_subdomain(&name, SCC_SUFFIX) {
            (Service::Scc, false)
        } else if is_subdomain(&name, EXO_SUFFIX) {
            (Service::Exo, false)
        } else {
            return None;
        };
        Some(HostInfo {
            service,
            front_door,
            name,
        })
    }

    /// The audience a token must carry on this host.
    pub(crate) fn audience(&self) -> &'static str {
        match self.service {
            Service::Exo => EXO_AUDIENCE,
            Service::Scc => SCC_AUDIENCE,
        }
    }

    /// The tenant host a front door redirects to.
    pub(crate) fn tenant_host(&self) -> String {
        match self.service {
            Service::Exo => format!("{TENANT_PREFIX}.{EXO_SUFFIX}"),
            Service::Scc => format!("{TENANT_PREFIX}.{SCC_SUFFIX}"),
        }
    }
}

/// `name` is a (possibly multi-label) subdomain of `suffix`.
fn is_subdomain(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix)
        .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
}

// === impl EndpointKind ===

impl EndpointKind {
    /// Classify a request path (query excluded). Matching is case-insensitive like the real service.
    pub(crate) fn of(path: &str) -> Option<EndpointKind> {
        let lower = path.to_ascii_lowercase();
        let trimmed = lower.trim_end_matches('/');
        if trimmed == "/powershell-liveid" || trimmed == "/powershell" {
            Some(EndpointKind::Rps)
        } else if trimmed.starts_with("/adminapi/") {
            Some(EndpointKind::Rest)
        } else {
            None
        }
    }
}

/// The `:port` suffix to keep in absolute URLs we hand out (Location, nextLink): the port the client
/// used when it is not 443, so redirects work against an emulator on an ephemeral port.
pub(crate) fn port_suffix<B>(req: &http::Request<B>) -> String {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    let port = authority
        .as_deref()
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok());
    match port {
        Some(p) if p != 443 => format!(":{p}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_front_doors_and_tenant_hosts() {
        let exo = HostInfo::classify("outlook.office365.com").unwrap();
        assert!(exo.front_door && exo.service == Service::Exo);
        assert!(HostInfo::classify("ps.outlook.com").unwrap().front_door);
        let tenant = HostInfo::classify("nam12b.outlook.office365.com").unwrap();
        assert!(!tenant.front_door && tenant.service == Service::Exo);
        let scc = HostInfo::classify("ps.compliance.protection.outlook.com").unwrap();
        assert!(scc.front_door && scc.audience() == SCC_AUDIENCE);
        let scc_t = HostInfo::classify("nam04b.ps.compliance.protection.outlook.com").unwrap();
        assert!(!scc_t.front_door && scc_t.service == Service::Scc);
        assert!(HostInfo::classify("login.microsoftonline.com").is_none());
        assert!(HostInfo::classify("evil-outlook.office365.com").is_none());
    }

    #[test]
    fn classifies_paths_case_insensitively() {
        assert_eq!(
            EndpointKind::of("/PowerShell-LiveID"),
            Some(EndpointKind::Rps)
        );
        assert_eq!(EndpointKind::of("/powershell/"), Some(EndpointKind::Rps));
        assert_eq!(
            EndpointKind::of("/AdminApi/beta/x/InvokeCommand"),
            Some(EndpointKind::Rest)
        );
        assert_eq!(EndpointKind::of("/owa"), None);
    }
}
