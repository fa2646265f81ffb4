//! Proxy authentication, sans-IO: parse `Proxy-Authenticate` challenges (RFC 9110 §11.6.1, §11.7.1) and
//! build a Basic `Proxy-Authorization` value (RFC 7617).
//!
//! Contract: Basic is only ever offered after the proxy asked for it with a 407 that lists `Basic`
//! (never unasked), and only with credentials configured for that exact proxy endpoint.

use base64::Engine as _;

use super::{ProxyAuthorization, ProxyCredentials};

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
