//! RFC 7523 client assertion for certificate-based client credentials (docs/PROTOCOL.md#client-assertion).
//!
//! Contract: header `{"alg":"RS256"|"ES256","typ":"JWT","x5t":…,"x5t#S256":…}` (base64url SHA-1 and
//! SHA-256 thumbprints of the DER certificate); claims `aud` = token endpoint, `iss` = `sub` = client id,
//! `jti` unique, `nbf` = `iat` = now, `exp` = now + 10 min. Signed with ring from a PKCS#8 (or PKCS#1 RSA)
//! PEM key, or from the key and certificate of a PFX/PKCS#12 file (what `Export-PfxCertificate` and the
//! Entra portal's tooling produce; AES-256/PBKDF2 and legacy 3DES/SHA-1 protection are both read).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

/// How long an assertion is valid; Entra recommends keeping it short (5–10 min).
const ASSERTION_LIFETIME_SECS: i64 = 600;

/// A certificate credential: thumbprints for the header and the key that signs.
pub struct ClientCertificate {
    signer: Signer,
    /// base64url SHA-1 thumbprint (`x5t`).
    x5t: String,
    /// base64url SHA-256 thumbprint (`x5t#S256`).
    x5t_s256: String,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
}

/// Why a certificate credential could not be loaded or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// No certificate in the PEM.
    #[error("no certificate found in the certificate PEM")]
    NoCertificate,
    /// No usable key in the PEM.
    #[error("private key PEM: {0}")]
    BadKey(String),
    /// A PFX/PKCS#12 file that cannot be opened or holds no key with its certificate.
    #[error("PFX file: {0}")]
    BadPfx(String),
    /// Signing failed (RNG).
    #[error("signing the client assertion failed")]
    Sign,
}

// === impl ClientCertificate ===

impl ClientCertificate {
    /// Loads a certificate and its private key (RSA or ECDSA P-256) from PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, AssertionError> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| AssertionError::NoCertificate)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| AssertionError::BadKey(e.to_string()))?;
        Self::from_der(&cert, &key)
    }

    /// Loads the first private key and its certificate from a PFX/PKCS#12 file's bytes; `password`
    /// is empty for an unprotected file.
    pub fn from_pkcs12(pfx: &[u8], password: &str) -> Result<Self, AssertionError> {
        let store = p12_keystore::KeyStore::from_pkcs12(pfx, password).map_err(|e| {
            AssertionError::BadPfx(format!("cannot open it ({e}); is the password right?"))
        })?;
        let (_, chain) = store
            .private_key_chain()
            .ok_or_else(|| AssertionError::BadPfx("it holds no private key".into()))?;
        let cert = chain
            .chain()
            .first()
            .ok_or_else(|| AssertionError::BadPfx("its private key has no certificate".into()))?;
        let key_der = Zeroizing::new(chain.key().to_vec());
        let key = PrivateKeyDer::Pkcs8(key_der.as_slice().into());
        Self::from_der(&CertificateDer::from(cert.as_der()), &key)
    }

    fn from_der(
        cert: &CertificateDer<'_>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<Self, AssertionError> {
        let signer = Signer::from_key(key)?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
        let sha256 = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        Ok(Self {
            signer,
            x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
        })
    }

    /// The SHA-256 thumbprint, base64url (what Entra shows as `x5t#S256`).
    pub fn thumbprint_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// Builds and signs an assertion for `token_endpoint` at `now_unix`.
    pub fn assertion(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now_unix: i64,
        jti: &str,
    ) -> Result<Zeroizing<String>, AssertionError> {
        let header = serde_json::json!({
            "alg": self.signer.alg(),
            "typ": "JWT",
            "x5t": self.x5t,
            "x5t#S256": self.x5t_s256,
        });
        let claims = serde_json::json!({
            "aud": token_endpoint,
            "iss": client_id,
            "sub": client_id,
            "jti": jti,
            "nbf": now_unix,
            "iat": now_unix,
            "exp": now_unix + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.signer.sign(signing_input.as_bytes())?;
        Ok(Zeroizing::new(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )))
    }
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("alg", &self.signer.alg())
            .field("x5t#S256", &self.x5t_s256)
            .field("key", &"[redacted]")
            .finish()
    }
}

// === impl Signer ===

impl Signer {
    fn from_key(key: &PrivateKeyDer<'_>) -> Result<Self, AssertionError> {
        let rng = ring::rand::SystemRandom::new();
        let bad = |e: ring::error::KeyRejected| AssertionError::BadKey(e.to_string());
        match key {
            PrivateKeyDer::Pkcs8(der) => {
                if let Ok(rsa) = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()) {
                    return Ok(Signer::Rsa(rsa));
                }
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der.secret_pkcs8_der(),
                    &rng,
                )
                .map(Signer::Ecdsa)
                .map_err(bad)
            }
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
                .map(Signer::Rsa)
                .map_err(bad),
            _ => Err(AssertionError::BadKey(
                "unsupported key format: use PKCS#8 (RSA or P-256) or PKCS#1 RSA".into(),
            )),
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Rsa(_) => "RS256",
            Signer::Ecdsa(_) => "ES256",
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AssertionError> {
        let rng = ring::rand::SystemRandom::new();
        match self {
            Signer::Rsa(key) => {
                let mut sig = vec![0u8; key.public().modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| AssertionError::Sign)?;
                Ok(sig)
            }
            Signer::Ecdsa(key) => key
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| AssertionError::Sign),
        }
    }
}
