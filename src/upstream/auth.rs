//! Proxy authentication, sans-IO: parse `Proxy-Authenticate` challenges (RFC 9110 §11.6.1, §11.7.1),
//! pick a scheme, build a Basic `Proxy-Authorization` value (RFC 7617) and drive the token exchange of
//! the connection-oriented schemes (`Session`: NTLM, and Negotiate through SSPI on Windows).
//!
//! Contract:
//! - Credentials are only used for a proxy that has an entry (the allow-list, PAC-14); the caller
//!   looks them up by endpoint and calls [`choose`] only with that entry.
//! - Preference is Negotiate → NTLM → Basic among the schemes the proxy offered *and* the entry
//!   allows. Basic is only ever sent after the proxy offered it (never unasked).
//! - Negotiate needs SSPI (Windows, the signed-in user). Elsewhere it is skipped in favour of NTLM:
//!   NTLM wrapped in SPNEGO would need DER and MIC plumbing for no proxy we know that offers
//!   Negotiate without NTLM.

use base64::Engine as _;

use super::ntlm::{NtSecret, NtlmClient, NtlmIdentity};
use super::{ProxyAuthorization, ProxyCredentials};

/// The schemes we speak, in order of preference (the type lives in the shared vocabulary, `target`).
pub use crate::target::ProxyAuthScheme as Scheme;

/// One connection-oriented handshake in progress.
#[derive(Debug)]
pub(crate) enum Session {
    /// NTLMv2 with configured credentials; `done` after the Type 3 was produced.
    Ntlm { client: NtlmClient, done: bool },
    /// Negotiate (Kerberos or NTLM) as the signed-in Windows user.
    #[cfg(windows)]
    Sspi(super::sspi::SspiContext),
}

/// One challenge of a `Proxy-Authenticate` header: the scheme and its raw parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme as sent (`Basic`, `NTLM`, `Negotiate`, ...); compare case-insensitively.
    pub scheme: String,
    /// The rest of the challenge (auth-params or token68), unparsed; only used for diagnostics.
    pub params: String,
}

// === impl Challenge ===

impl Challenge {
    /// True when the scheme is `name`, compared ASCII case-insensitively as RFC 9110 §11.1 requires.
    pub fn is(&self, name: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(name)
    }
}

/// Parses every `Proxy-Authenticate` value into challenges. One value may hold several challenges
/// separated by commas (`Basic realm="a, b", Negotiate, NTLM`), and parameters also use commas, so an
/// element starts a new challenge only when its first word is not followed by `=`.
pub fn parse_proxy_authenticate<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut challenges: Vec<Challenge> = Vec::new();
    for value in values {
        for element in split_outside_quotes(value) {
            let element = element.trim();
            if element.is_empty() {
                continue;
            }
            let word_end = element
                .find(|c: char| c == '=' || c.is_ascii_whitespace())
                .unwrap_or(element.len());
            let is_param = element[word_end..].trim_start().starts_with('=');
            match challenges.last_mut() {
                Some(last) if is_param => {
                    if !last.params.is_empty() {
                        last.params.push_str(", ");
                    }
                    last.params.push_str(element);
                }
                _ => challenges.push(Challenge {
                    scheme: element[..word_end].to_string(),
                    params: element[word_end..].trim().to_string(),
                }),
            }
        }
    }
    challenges
}

/// Splits on commas that are not inside a quoted string (backslash escapes honoured).
fn split_outside_quotes(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut in_quotes, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// The scheme names offered, for messages: `Basic, NTLM`, or `no scheme offered`.
pub fn offered_schemes(challenges: &[Challenge]) -> String {
    if challenges.is_empty() {
        return "no scheme offered".to_string();
    }
    let names: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
    format!("offered: {}", names.join(", "))
}

/// The best scheme the proxy offered that `credentials` allow and can serve; `None` when nothing fits.
pub fn choose(challenges: &[Challenge], credentials: &ProxyCredentials) -> Option<Scheme> {
    [Scheme::Negotiate, Scheme::Ntlm, Scheme::Basic]
        .into_iter()
        .filter(|s| credentials.schemes.is_empty() || credentials.schemes.contains(s))
        .filter(|s| can_serve(*s, credentials))
        .find(|s| challenges.iter().any(|c| c.is(s.name())))
}

fn can_serve(scheme: Scheme, credentials: &ProxyCredentials) -> bool {
    match scheme {
        // SSPI signs in as the current user: only when the entry names no other user, or asks for it.
        Scheme::Negotiate => {
            cfg!(windows)
                && (credentials.username.is_empty()
                    || credentials.schemes.contains(&Scheme::Negotiate))
        }
        Scheme::Ntlm => !credentials.username.is_empty(),
        Scheme::Basic => !credentials.username.is_empty() && credentials.nt_hash.is_none(),
    }
}

// === impl Session ===

impl Session {
    /// Starts a handshake of `scheme` for the proxy host `proxy_host` (the Kerberos SPN's host).
    pub(crate) fn start(
        scheme: Scheme,
        credentials: &ProxyCredentials,
        proxy_host: &str,
    ) -> Result<Session, String> {
        let _ = proxy_host;
        match scheme {
            Scheme::Ntlm => {
                let secret = match &credentials.nt_hash {
                    Some(hash) => NtSecret::NtHash(hash.clone()),
                    None => NtSecret::Password(credentials.password.clone()),
                };
                let identity =
                    NtlmIdentity::new(&credentials.username, credentials.domain.as_deref(), secret);
                Ok(Session::Ntlm {
                    client: NtlmClient::new(identity),
                    done: false,
                })
            }
            #[cfg(windows)]
            Scheme::Negotiate => {
                super::sspi::SspiContext::new(&format!("HTTP/{proxy_host}")).map(Session::Sspi)
            }
            other => Err(format!("{} is not a handshake scheme here", other.name())),
        }
    }

    /// The scheme this session speaks.
    pub(crate) fn scheme(&self) -> Scheme {
        match self {
            Session::Ntlm { .. } => Scheme::Ntlm,
            #[cfg(windows)]
            Session::Sspi(_) => Scheme::Negotiate,
        }
    }

    /// The first `Proxy-Authorization` value (NTLM Type 1, or the first SPNEGO token).
    pub(crate) fn first_token(&mut self) -> Result<ProxyAuthorization, String> {
        let bytes = match self {
            Session::Ntlm { client, .. } => zeroize::Zeroizing::new(client.negotiate().to_vec()),
            #[cfg(windows)]
            Session::Sspi(ctx) => ctx.step(None)?,
        };
        Ok(self.header(&bytes))
    }

    /// The next value after a 407: `None` when the 407 carries no token for our scheme or the
    /// exchange is over (the proxy rejected the final token).
    pub(crate) fn next_token(
        &mut self,
        challenges: &[Challenge],
    ) -> Option<Result<ProxyAuthorization, String>> {
        let scheme = self.scheme();
        let token = challenges
            .iter()
            .find(|c| c.is(scheme.name()) && !c.params.is_empty())?;
        let bytes = match base64::engine::general_purpose::STANDARD.decode(token.params.trim()) {
            Ok(bytes) => bytes,
            Err(_) => {
                return Some(Err(format!(
                    "the {} challenge is not base64",
                    scheme.name()
                )));
            }
        };
        let next = match self {
            Session::Ntlm { done: true, .. } => return None,
            Session::Ntlm { client, done } => {
                *done = true;
                client.authenticate(&bytes).map_err(|e| e.to_string())
            }
            #[cfg(windows)]
            Session::Sspi(ctx) => ctx.step(Some(&bytes)),
        };
        Some(next.map(|b| self.header(&b)))
    }

    fn header(&self, token: &[u8]) -> ProxyAuthorization {
        let encoded = base64::engine::general_purpose::STANDARD.encode(token);
        ProxyAuthorization(zeroize::Zeroizing::new(format!(
            "{} {encoded}",
            self.scheme().name()
        )))
    }
}

/// `Basic base64(user:password)` for a `Proxy-Authorization` header.
pub fn basic_authorization(credentials: &ProxyCredentials) -> ProxyAuthorization {
    let plain = zeroize::Zeroizing::new(format!(
        "{}:{}",
        credentials.username,
        credentials.password.as_str()
    ));
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
    ProxyAuthorization(zeroize::Zeroizing::new(format!("Basic {encoded}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_basic_challenge() {
        let c = parse_proxy_authenticate(["Basic realm=\"corp\""]);
        assert_eq!(c.len(), 1);
        assert!(c[0].is("basic"));
        assert_eq!(c[0].params, "realm=\"corp\"");
    }

    #[test]
    fn several_challenges_in_one_value_with_commas_in_quotes() {
        let c =
            parse_proxy_authenticate(["Negotiate, Basic realm=\"a, b\", charset=\"UTF-8\", NTLM"]);
        let schemes: Vec<&str> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Negotiate", "Basic", "NTLM"]);
        assert_eq!(c[1].params, "realm=\"a, b\", charset=\"UTF-8\"");
    }

    #[test]
    fn several_header_lines_and_token68() {
        let c = parse_proxy_authenticate(["NTLM", "Negotiate abc==", "Basic"]);
        let schemes: Vec<&str> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["NTLM", "Negotiate", "Basic"]);
        assert_eq!(c[1].params, "abc==");
    }

    #[test]
    fn empty_and_garbage_values() {
        assert!(parse_proxy_authenticate(["", " , ,"]).is_empty());
        assert_eq!(offered_schemes(&[]), "no scheme offered");
    }

    #[test]
    fn basic_value_is_rfc7617() {
        let creds = ProxyCredentials {
            username: "Aladdin".into(),
            password: zeroize::Zeroizing::new("open sesame".into()),
            ..ProxyCredentials::default()
        };
        assert_eq!(
            basic_authorization(&creds).0.as_str(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(
            format!("{:?}", basic_authorization(&creds)),
            "ProxyAuthorization([redacted])"
        );
    }
}
