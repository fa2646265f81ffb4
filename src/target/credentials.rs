//! Credentials for an upstream proxy: what configuration and system settings produce (`config`,
//! `route::system`) and what `upstream` answers a 407 with.
//!
//! Contract: plain data with a redacting `Debug`; the password and NT hash never appear in logs or
//! errors. Which scheme is actually used, and when, is `upstream::auth`'s business.

/// The proxy authentication schemes we speak, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyAuthScheme {
    Negotiate,
    Ntlm,
    Basic,
}

/// Proxy credentials for Basic, NTLM and Negotiate; `Debug` never shows the password or hash.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ProxyCredentials {
    /// `user`, `DOMAIN\user` or `user@realm`; empty means "the signed-in Windows user" (Negotiate).
    pub username: String,
    pub password: zeroize::Zeroizing<String>,
    /// NTLM domain; when `None`, taken from a `DOMAIN\user` user name.
    pub domain: Option<String>,
    /// The NT hash (MD4 of the UTF-16LE password) instead of the password: NTLM only, never Basic.
    pub nt_hash: Option<zeroize::Zeroizing<[u8; 16]>>,
    /// Schemes these credentials may be used with; empty means any (Negotiate → NTLM → Basic).
    pub schemes: Vec<ProxyAuthScheme>,
}

// === impl ProxyAuthScheme ===

impl ProxyAuthScheme {
    /// The scheme name as it appears in headers.
    pub fn name(self) -> &'static str {
        match self {
            Self::Negotiate => "Negotiate",
            Self::Ntlm => "NTLM",
            Self::Basic => "Basic",
        }
    }

    /// Parses a config hint (`negotiate`, `ntlm`, `basic`), case-insensitively.
    pub fn parse(name: &str) -> Option<ProxyAuthScheme> {
        [Self::Negotiate, Self::Ntlm, Self::Basic]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// True for the schemes that authenticate a connection in several round trips.
    pub fn is_handshake(self) -> bool {
        !matches!(self, Self::Basic)
    }
}

// === impl ProxyCredentials ===

impl std::fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyCredentials({}, [redacted])", self.username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let creds = ProxyCredentials {
            username: "CORP\\svc".into(),
            password: zeroize::Zeroizing::new("hunter2".into()),
            nt_hash: Some(zeroize::Zeroizing::new([0xab; 16])),
            ..ProxyCredentials::default()
        };
        let shown = format!("{creds:?}");
        assert_eq!(shown, "ProxyCredentials(CORP\\svc, [redacted])");
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn scheme_names_round_trip() {
        for scheme in [
            ProxyAuthScheme::Negotiate,
            ProxyAuthScheme::Ntlm,
            ProxyAuthScheme::Basic,
        ] {
            assert_eq!(ProxyAuthScheme::parse(scheme.name()), Some(scheme));
            assert_eq!(
                ProxyAuthScheme::parse(&scheme.name().to_ascii_lowercase()),
                Some(scheme)
            );
        }
        assert_eq!(ProxyAuthScheme::parse("digest"), None);
        assert!(!ProxyAuthScheme::Basic.is_handshake());
        assert!(ProxyAuthScheme::Ntlm.is_handshake());
    }
}
