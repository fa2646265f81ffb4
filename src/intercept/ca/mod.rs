//! The per-install local CA: create once, load on every start, mint short-lived leaves, sign the CRL.
//!
//! Contract:
//! - [`LocalCa::load_or_create`] creates a CA only when **neither** file exists (first run). Any other
//!   state (one file missing, corrupt PEM, key that does not match the certificate, expired CA, name
//!   constraints that do not cover the configured hosts, a key readable by other users) is a
//!   [`CaError`] that names the file and the command to run ([`REGENERATE_COMMAND`]): never a silent
//!   new CA (CA-9). [`LocalCa::regenerate`] is the explicit admin action that replaces both files.
//! - Keys are ECDSA P-256 (ring). Every install gets a fresh key, a random serial and a random name
//!   suffix (CA-2).
//! - The CA is **name-constrained**: permitted DNS subtrees are exactly the intercepted domains given
//!   by the caller, and every IPv4/IPv6 address is excluded, so a leaked key cannot mint a certificate
//!   that a constraint-checking client (rustls/webpki, OpenSSL, Go, CryptoAPI) accepts for any other
//!   name (CA-3).
//! - Single level, by choice: the self-signed root carries the constraints itself. The CA-5
//!   root→intermediate scheme (root key destroyed after setup) would also need a CRL distribution
//!   point on the intermediate signed by a root whose key no longer exists, and a fixed CRL URL
//!   (port) baked in at setup time; for a per-user, name-constrained root on loopback the second
//!   level buys little and adds a revocation failure mode for WinRM (docs/PROTOCOL.md#winrm-revocation).
//! - The key file is owner-only: on Unix 0600 inside a 0700 directory, written through a sibling
//!   file in that same directory (never the system temp dir) and renamed into place; a key file
//!   that group or others can read, or that another user owns (Linux), is refused on load. On
//!   Windows the directory gets a protected owner-only DACL (the user and SYSTEM; nothing inherited
//!   from the profile) when the CA is created, and the key file holds the PEM's DPAPI blob for the
//!   current user: a key copied to another account or machine does not open (a [`CaError::Corrupt`]
//!   naming [`REGENERATE_COMMAND`]). A plain PEM key left by an older version is still loaded and
//!   rewritten protected, so the trusted root does not change.
//! - The key never appears in logs or `Debug` output; the PEM text read from disk is zeroized.
//! - Leaves ([`LocalCa::mint_leaf`]): one exact DNS SAN (no wildcard, no IP), EKU serverAuth only,
//!   `CA:FALSE`, validity 7 days including one hour of backdating for clock skew, random serial,
//!   optional CRL distribution point URL (CA-4). Caching and rate limiting live in
//!   [`crate::intercept::leaf_cache`].
//! - [`LocalCa::crl_der`] is a current, empty CRL signed by the CA, for the proxy to serve at the CRL
//!   URL so that a revocation-checking client (WinRM/SChannel) finds a definite "not revoked".

mod export;
mod files;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CidrSubnet,
    CrlDistributionPoint, DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, NameConstraints, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

pub use export::TrustInstructions;
pub use files::{CERT_FILE_NAME, CaFiles, KEY_FILE_NAME};

/// The command that replaces a broken or expired CA (wired by the CLI).
pub const REGENERATE_COMMAND: &str = "exoproxy ca regenerate";
/// How long a new CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(5 * 365);
/// Total validity of a leaf, backdating included (CA-4: ≤ 7 days).
pub const LEAF_VALIDITY: Duration = Duration::days(7);
/// How far `not_before` is backdated so a client whose clock is a little behind still accepts it.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::hours(1);
/// How long a served CRL stays current (its `nextUpdate`).
pub const CRL_VALIDITY: Duration = Duration::days(7);

/// Path at which the proxy serves [`LocalCa::crl_der`] (see [`crl_url`]).
pub const CRL_PATH: &str = "/exoproxy-ca.crl";
/// Media type of the served CRL (RFC 5280 §4.2.1.13 / RFC 2585).
pub const CRL_CONTENT_TYPE: &str = "application/pkix-crl";

/// The CRL distribution point URL for a proxy listening on loopback `port`.
pub fn crl_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}{CRL_PATH}")
}

/// Why the CA could not be created, loaded or used. Every load error names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing a CA file failed.
    #[error("local CA file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Only one of the two CA files exists (interrupted setup, or a file was deleted).
    #[error(
        "local CA is incomplete: {} exists but {} is missing; run `{REGENERATE_COMMAND}` to create a new CA, then trust it again",
        present.display(), missing.display()
    )]
    Incomplete { present: PathBuf, missing: PathBuf },
    /// A CA file does not parse or is not a usable CA certificate/key.
    #[error(
        "local CA file {} is unusable ({detail}); run `{REGENERATE_COMMAND}` to create a new CA, then trust it again",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    /// The key file does not belong to the certificate file.
    #[error(
        "local CA key {} does not match certificate {}; run `{REGENERATE_COMMAND}` to create a new CA, then trust it again",
        key.display(), cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    /// The CA certificate is outside its validity period.
    #[error(
        "local CA certificate {} is not valid now ({detail}); run `{REGENERATE_COMMAND}` to create a new CA, then trust it again",
        path.display()
    )]
    Expired { path: PathBuf, detail: String },
    /// The CA's name constraints do not permit some configured intercepted domain.
    #[error(
        "local CA certificate {} does not cover the intercepted domain(s) {}; run `{REGENERATE_COMMAND}` to create a CA for the current configuration, then trust it again",
        path.display(), missing.join(", ")
    )]
    DomainsNotCovered { path: PathBuf, missing: Vec<String> },
    /// The key file can be read by other users (CA-1).
    #[error(
        "local CA key {} is accessible to other users (mode {mode:03o}); run `chmod 600` on it if nobody else could have copied it, otherwise `{REGENERATE_COMMAND}`",
        path.display()
    )]
    InsecureKeyFile { path: PathBuf, mode: u32 },
    /// The key file belongs to another user (CA-1).
    #[error(
        "local CA key {} is owned by another user (uid {owner}); run `{REGENERATE_COMMAND}` as the user who runs the proxy",
        path.display()
    )]
    ForeignKeyOwner { path: PathBuf, owner: u32 },
    /// A domain or host name cannot be used (wildcard, IP address, empty, not a DNS name).
    #[error("invalid host name {0:?} for the local CA")]
    InvalidName(String),
    /// The host is outside the CA's permitted domains: no leaf is minted for it.
    #[error("host {0} is not an intercepted domain of the local CA")]
    HostNotPermitted(String),
    /// More leaves were requested than the rate limit allows (CA-8).
    #[error("leaf certificate minting is rate-limited; try again shortly")]
    RateLimited,
    /// Key generation, signing or encoding failed.
    #[error("local CA crypto failure: {0}")]
    Crypto(String),
}

/// Whether [`LocalCa::load_or_create`] found an existing CA or made one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaOrigin {
    /// Both files existed and were valid.
    Loaded,
    /// First run: a new CA was generated and written.
    Created,
}

/// A freshly minted leaf: DER chain (leaf only) and its private key.
pub struct MintedLeaf {
    /// The leaf certificate.
    pub cert: CertificateDer<'static>,
    /// The leaf's PKCS#8 private key (in memory only).
    pub key: PrivateKeyDer<'static>,
    /// When the leaf stops being valid.
    pub not_after: OffsetDateTime,
}

/// The loaded local CA. Cheap to share behind an `Arc`; minting takes `&self`.
pub struct LocalCa {
    files: CaFiles,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    permitted: Vec<String>,
    not_after: OffsetDateTime,
}

// === impl LocalCa ===

impl LocalCa {
    /// First run creates the CA in `dir`; later runs load and validate it (CA-9: never a silent new CA).
    pub fn load_or_create(dir: &Path, domains: &[String]) -> Result<(Self, CaOrigin), CaError> {
        let files = CaFiles::in_dir(dir);
        match files.presence() {
            (false, false) => Ok((Self::create_in(files, domains)?, CaOrigin::Created)),
            _ => Ok((Self::load_from(files, domains)?, CaOrigin::Loaded)),
        }
    }

    /// Loads and validates an existing CA from `dir`; never creates one.
    pub fn load(dir: &Path, domains: &[String]) -> Result<Self, CaError> {
        Self::load_from(CaFiles::in_dir(dir), domains)
    }

    /// Explicit admin action: generate a new CA for `domains`, replacing any files in `dir`.
    pub fn regenerate(dir: &Path, domains: &[String]) -> Result<Self, CaError> {
        Self::create_in(CaFiles::in_dir(dir), domains)
    }

    /// The CA certificate (the trust anchor clients import).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Where the certificate and key live.
    pub fn files(&self) -> &CaFiles {
        &self.files
    }

    /// The permitted DNS subtrees of this CA (normalised, lower case).
    pub fn permitted_domains(&self) -> &[String] {
        &self.permitted
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// True when `host` is one of the permitted domains or below one.
    pub fn permits(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.permitted.iter().any(|d| within_domain(&host, d))
    }

    /// Mints a leaf for exactly `host`, valid from now (backdated) for [`LEAF_VALIDITY`] (CA-4).
    pub fn mint_leaf(&self, host: &str, crl_url: Option<&str>) -> Result<MintedLeaf, CaError> {
        self.mint_leaf_at(host, crl_url, OffsetDateTime::now_utc())
    }

    /// [`Self::mint_leaf`] at an explicit time (tests, and callers that already read the clock).
    pub fn mint_leaf_at(
        &self,
        host: &str,
        crl_url: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<MintedLeaf, CaError> {
        let host = normalise_dns_name(host)?;
        if !self.permits(&host) {
            return Err(CaError::HostNotPermitted(host));
        }
        let params = leaf_params(&host, crl_url, now)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(crypto)?;
        let key_der = PrivatePkcs8KeyDer::from(key.serialize_der());
        Ok(MintedLeaf {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(key_der),
            not_after: params.not_after,
        })
    }

    /// A current, empty CRL signed by the CA (DER), to serve at the leaves' CRL URL.
    pub fn crl_der(&self) -> Result<Vec<u8>, CaError> {
        self.crl_der_at(OffsetDateTime::now_utc())
    }

    /// [`Self::crl_der`] at an explicit time. The CRL number is the Unix time, so it only grows.
    pub fn crl_der_at(&self, now: OffsetDateTime) -> Result<Vec<u8>, CaError> {
        let number = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let params = CertificateRevocationListParams {
            this_update: now - CLOCK_SKEW_ALLOWANCE,
            next_update: now + CRL_VALIDITY,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).map_err(crypto)?;
        Ok(crl.der().to_vec())
    }

    /// Writes the CA certificate (PEM) to `path` and returns the commands that trust it.
    pub fn export(&self, path: &Path) -> Result<TrustInstructions, CaError> {
        export::export_pem(&self.cert_pem, path)
    }

    fn create_in(files: CaFiles, domains: &[String]) -> Result<Self, CaError> {
        let permitted = normalise_domains(domains)?;
        let now = OffsetDateTime::now_utc();
        let params = ca_params(&permitted, now)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
        let cert = params.self_signed(&key).map_err(crypto)?;
        let key_pem = Zeroizing::new(key.serialize_pem());
        files.write_new(cert.pem().as_bytes(), key_pem.as_bytes())?;
        tracing::info!(cert = %files.cert.display(), "created a new local CA");
        Ok(Self {
            not_after: params.not_after,
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            permitted,
            files,
        })
    }

    fn load_from(files: CaFiles, domains: &[String]) -> Result<Self, CaError> {
        let wanted = normalise_domains(domains)?;
        let (cert_pem, key_pem) = files.read_both()?;
        let loaded = files::parse_ca(&files, &cert_pem, &key_pem, OffsetDateTime::now_utc())?;
        let missing: Vec<String> = wanted
            .iter()
            .filter(|d| !loaded.permitted.iter().any(|p| within_domain(d, p)))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(CaError::DomainsNotCovered {
                path: files.cert.clone(),
                missing,
            });
        }
        let ca = Self {
            files,
            cert_der: loaded.cert_der,
            cert_pem,
            issuer: loaded.issuer,
            permitted: loaded.permitted,
            not_after: loaded.not_after,
        };
        ca.self_check()?;
        Ok(ca)
    }

    /// Mints a probe leaf and verifies it against the CA certificate with webpki: proves that the
    /// key signs for this certificate's name and that the constraints admit the domains.
    fn self_check(&self) -> Result<(), CaError> {
        let Some(domain) = self.permitted.first() else {
            return Err(self.corrupt("no permitted DNS name constraints"));
        };
        let leaf = self.mint_leaf(domain, None)?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| self.corrupt(&format!("not a usable trust anchor: {e}")))?;
        // Only the trait that exposes `verify_server_cert` on rustls' standard, fully verifying
        // WebPki verifier; no custom (dangerous) verifier is involved (TLS-3).
        use rustls::client::danger::ServerCertVerifier as _;
        let provider = crate::tls_client::ring_provider();
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| self.corrupt(&e.to_string()))?;
        let name = rustls_pki_types::ServerName::try_from(domain.clone())
            .map_err(|_| CaError::InvalidName(domain.clone()))?;
        let now = rustls_pki_types::UnixTime::now();
        match verifier.verify_server_cert(&leaf.cert, &[], &name, &[], now) {
            Ok(_) => Ok(()),
            Err(_) => Err(CaError::Mismatch {
                cert: self.files.cert.clone(),
                key: self.files.key.clone(),
            }),
        }
    }

    fn corrupt(&self, detail: &str) -> CaError {
        CaError::Corrupt {
            path: self.files.cert.clone(),
            detail: detail.to_owned(),
        }
    }
}

impl fmt::Debug for LocalCa {
    // Hand-written so the signing key can never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert", &self.files.cert)
            .field("key", &"[redacted]")
            .field("permitted", &self.permitted)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl fmt::Debug for MintedLeaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedLeaf")
            .field("cert_len", &self.cert.len())
            .field("key", &"[redacted]")
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl From<CaError> for crate::error::ProxyError {
    /// How the handler reports a CA failure during an intercepted CONNECT.
    fn from(err: CaError) -> Self {
        use crate::error::ProxyError;
        match err {
            CaError::RateLimited => ProxyError::Overloaded(err.to_string()),
            CaError::InvalidName(_) => ProxyError::BadRequest(err.to_string()),
            // Routing chose to intercept a host the CA cannot sign for: a configuration bug.
            other => ProxyError::Internal(other.to_string()),
        }
    }
}

// === helpers ===

fn crypto(e: rcgen::Error) -> CaError {
    CaError::Crypto(e.to_string())
}

/// 16 random bytes with the top bit clear: a positive INTEGER that fits the 20-byte limit.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::Crypto("no randomness for a serial number".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // never a leading zero byte, so the encoded length is stable
    Ok(SerialNumber::from_slice(&bytes))
}

fn random_suffix() -> Result<String, CaError> {
    let mut bytes = [0u8; 4];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::Crypto("no randomness for the CA name".into()))?;
    Ok(hex::encode(bytes))
}

fn ca_params(permitted: &[String], now: OffsetDateTime) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "exoproxy");
    name.push(
        DnType::CommonName,
        format!("exoproxy local CA {}", random_suffix()?),
    );
    params.distinguished_name = name;
    params.serial_number = Some(random_serial()?);
    params.not_before = now - CLOCK_SKEW_ALLOWANCE;
    params.not_after = now + CA_VALIDITY;
    // Path length 0: this CA signs leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: permitted
            .iter()
            .map(|d| GeneralSubtree::DnsName(d.clone()))
            .collect(),
        // Permitting DNS subtrees leaves other name types unconstrained (RFC 5280 §4.2.1.10):
        // exclude every IP address so no IP SAN can be minted either.
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
        ],
    });
    Ok(params)
}

fn leaf_params(
    host: &str,
    crl_url: Option<&str>,
    now: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let dns = host
        .to_owned()
        .try_into()
        .map_err(|_| CaError::InvalidName(host.to_owned()))?;
    params.subject_alt_names = vec![SanType::DnsName(dns)];
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, host);
    params.distinguished_name = name;
    params.serial_number = Some(random_serial()?);
    params.not_before = now - CLOCK_SKEW_ALLOWANCE;
    params.not_after = params.not_before + LEAF_VALIDITY;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Windows chain building matches issuers by key identifier.
    params.use_authority_key_identifier_extension = true;
    if let Some(url) = crl_url {
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![url.to_owned()],
        }];
    }
    Ok(params)
}

/// `host` is `domain` or a name below it (the DNS name-constraint rule).
fn within_domain(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Lower case, no trailing dot, a plain DNS name: no wildcard, no IP literal, no empty label.
pub(crate) fn normalise_dns_name(name: &str) -> Result<String, CaError> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let invalid = || CaError::InvalidName(name.clone());
    if name.is_empty() || name.len() > 253 || name.parse::<std::net::IpAddr>().is_ok() {
        return Err(invalid());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return Err(invalid());
    }
    Ok(name)
}

fn normalise_domains(domains: &[String]) -> Result<Vec<String>, CaError> {
    let mut out = Vec::with_capacity(domains.len());
    for d in domains {
        let d = normalise_dns_name(d)?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    if out.is_empty() {
        return Err(CaError::InvalidName(String::new()));
    }
    Ok(out)
}
