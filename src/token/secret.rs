//! Secret newtypes: tokens, codes, client secrets and keys.
//!
//! Contract: `Debug` and `Display` print `[redacted]`; the bytes are zeroized on drop (TOK-10). The only
//! way to read a secret is [`expose`](AccessToken::expose), so every use is greppable.

use zeroize::Zeroize;

macro_rules! secret_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret itself: only for building a request or writing the cache.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "([redacted])"))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("[redacted]")
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.zeroize();
            }
        }
    };
}

secret_string!(
    /// An OAuth 2.0 access token (RFC 6749 §1.4), usually a JWT.
    AccessToken
);
secret_string!(
    /// An OAuth 2.0 refresh token (RFC 6749 §1.5); Entra rotates it on every use.
    RefreshToken
);
secret_string!(
    /// An OpenID Connect ID token.
    IdToken
);
secret_string!(
    /// A confidential client's secret (RFC 6749 §2.3.1).
    ClientSecret
);
secret_string!(
    /// The device code of RFC 8628 §3.2 (not the user code, which is shown to the user).
    DeviceCode
);
secret_string!(
    /// An authorization code (RFC 6749 §4.1.2).
    AuthorizationCode
);
secret_string!(
    /// A PKCE code verifier (RFC 7636 §4.1).
    PkceVerifier
);
secret_string!(
    /// A PEM-encoded private key (PKCS#8).
    PrivateKeyPem
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tok10_debug_and_display_are_redacted() {
        let token = AccessToken::new("eyJ-very-secret");
        assert_eq!(format!("{token}"), "[redacted]");
        assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
        assert!(!format!("{:?}", RefreshToken::new("rt-secret")).contains("rt-secret"));
        assert_eq!(token.expose(), "eyJ-very-secret");
    }
}
