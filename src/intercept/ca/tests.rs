use time::{Duration, OffsetDateTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;

const DOMAINS: [&str; 4] = [
    "outlook.office365.com",
    "ps.outlook.com",
    "ps.compliance.protection.outlook.com",
    "office365.us",
];

fn domains() -> Vec<String> {
    DOMAINS.iter().map(|d| d.to_string()).collect()
}

fn new_ca() -> (tempfile::TempDir, LocalCa) {
    let dir = tempfile::tempdir().unwrap();
    let (ca, origin) = LocalCa::load_or_create(&dir.path().join("state"), &domains()).unwrap();
    assert_eq!(origin, CaOrigin::Created);
    (dir, ca)
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

#[cfg(unix)]
#[test]
fn ca1_key_is_owner_only_in_owner_only_dir() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, ca) = new_ca();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ca.files().key), 0o600);
    assert_eq!(mode(&ca.files().dir), 0o700);
    let leftovers: Vec<_> = std::fs::read_dir(&ca.files().dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging files left behind: {leftovers:?}"
    );
}

#[cfg(unix)]
#[test]
fn ca1_existing_wide_dir_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    LocalCa::load_or_create(&dir, &domains()).unwrap();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[cfg(unix)]
#[test]
fn ca1_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, ca) = new_ca();
    std::fs::set_permissions(&ca.files().key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = LocalCa::load(&ca.files().dir, &domains()).unwrap_err();
    assert!(
        matches!(err, CaError::InsecureKeyFile { mode: 0o644, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&ca.files().key.display().to_string())
    );
}

#[cfg(target_os = "linux")]
#[test]
fn ca1_key_owned_by_another_user_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let (_tmp, ca) = new_ca();
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("not root: cannot chown to another user, skipping");
        return;
    }
    std::os::unix::fs::chown(&ca.files().key, Some(4242), None).unwrap();
    let err = LocalCa::load(&ca.files().dir, &domains()).unwrap_err();
    assert!(
        matches!(err, CaError::ForeignKeyOwner { owner: 4242, .. }),
        "{err}"
    );
}

#[test]
fn ca1_key_never_in_debug() {
    let (_tmp, ca) = new_ca();
    let leaf = ca.mint_leaf("outlook.office365.com", None).unwrap();
    let debug = format!("{ca:?} {leaf:?} {:?}", ca.files());
    let key_pem = std::fs::read_to_string(&ca.files().key).unwrap();
    for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!debug.contains(line), "key material in Debug");
    }
    assert!(debug.contains("[redacted]"));
}

#[test]
fn ca2_two_installs_differ() {
    let (_a, first) = new_ca();
    let (_b, second) = new_ca();
    let (x, y) = (parse(first.cert_der()), parse(second.cert_der()));
    assert_ne!(x.public_key().raw, y.public_key().raw);
    assert_ne!(x.raw_serial(), y.raw_serial());
    assert_ne!(x.subject().to_string(), y.subject().to_string());
}

#[test]
fn ca_certificate_is_name_constrained_ca() {
    let (_tmp, ca) = new_ca();
    let cert = parse(ca.cert_der());
    assert!(cert.is_ca());
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert_eq!(bc.path_len_constraint, Some(0));
    let nc = cert.name_constraints().unwrap().unwrap();
    assert!(nc.critical);
    let permitted: Vec<String> = nc
        .value
        .permitted_subtrees
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| match &s.base {
            GeneralName::DNSName(d) => d.to_string(),
            other => panic!("unexpected permitted subtree {other:?}"),
        })
        .collect();
    assert_eq!(permitted, DOMAINS);
    let excluded = nc.value.excluded_subtrees.as_ref().unwrap();
    assert_eq!(excluded.len(), 2, "all IPv4 and IPv6 excluded");
}

#[test]
fn load_returns_the_same_ca_and_its_leaves_verify() {
    let (_tmp, created) = new_ca();
    let (loaded, origin) = LocalCa::load_or_create(&created.files().dir, &domains()).unwrap();
    assert_eq!(origin, CaOrigin::Loaded);
    assert_eq!(loaded.cert_der(), created.cert_der());
    assert_eq!(loaded.permitted_domains(), created.permitted_domains());
    let leaf = loaded.mint_leaf("ps.outlook.com", None).unwrap();
    let cert = parse(&leaf.cert);
    assert_eq!(cert.issuer(), parse(created.cert_der()).subject());
    assert!(
        cert.verify_signature(Some(parse(created.cert_der()).public_key()))
            .is_ok()
    );
}

#[test]
fn load_accepts_a_subset_of_the_domains() {
    let (_tmp, ca) = new_ca();
    let fewer = vec![
        "outlook.office365.com".to_string(),
        "eu.office365.us".to_string(),
    ];
    assert!(LocalCa::load(&ca.files().dir, &fewer).is_ok());
}

#[test]
fn ca9_new_domain_not_covered_is_a_clear_error() {
    let (_tmp, ca) = new_ca();
    let mut more = domains();
    more.push("outlook.office.de".into());
    let err = LocalCa::load(&ca.files().dir, &more).unwrap_err();
    assert!(
        matches!(&err, CaError::DomainsNotCovered { missing, .. } if missing == &["outlook.office.de"])
    );
    assert!(err.to_string().contains(REGENERATE_COMMAND));
}

#[test]
fn ca9_missing_key_is_incomplete_never_a_new_ca() {
    let (_tmp, ca) = new_ca();
    std::fs::remove_file(&ca.files().key).unwrap();
    let before = std::fs::read(&ca.files().cert).unwrap();
    let err = LocalCa::load_or_create(&ca.files().dir, &domains()).unwrap_err();
    assert!(matches!(err, CaError::Incomplete { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&ca.files().key.display().to_string()) && msg.contains(REGENERATE_COMMAND)
    );
    assert_eq!(
        std::fs::read(&ca.files().cert).unwrap(),
        before,
        "certificate untouched"
    );
    assert!(!ca.files().key.exists(), "no key silently generated");
}

#[test]
fn ca9_corrupt_certificate_names_the_file() {
    let (_tmp, ca) = new_ca();
    std::fs::write(
        &ca.files().cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = LocalCa::load_or_create(&ca.files().dir, &domains()).unwrap_err();
    assert!(
        matches!(&err, CaError::Corrupt { path, .. } if path == &ca.files().cert),
        "{err}"
    );
    assert!(err.to_string().contains(REGENERATE_COMMAND));
}

#[test]
fn ca9_corrupt_key_names_the_file() {
    let (_tmp, ca) = new_ca();
    std::fs::write(&ca.files().key, "garbage").unwrap();
    let err = LocalCa::load(&ca.files().dir, &domains()).unwrap_err();
    assert!(
        matches!(&err, CaError::Corrupt { path, .. } if path == &ca.files().key),
        "{err}"
    );
}

#[test]
fn ca9_key_of_another_ca_is_a_mismatch() {
    let (_a, first) = new_ca();
    let (_b, second) = new_ca();
    std::fs::copy(&second.files().key, &first.files().key).unwrap();
    let err = LocalCa::load(&first.files().dir, &domains()).unwrap_err();
    assert!(matches!(err, CaError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains(REGENERATE_COMMAND));
}

#[test]
fn ca9_expired_ca_is_refused() {
    let (_tmp, ca) = new_ca();
    let (cert, key) = ca.files().read_both().unwrap();
    let later = OffsetDateTime::now_utc() + CA_VALIDITY + Duration::days(1);
    let err = files::parse_ca(ca.files(), &cert, &key, later)
        .err()
        .unwrap();
    assert!(
        matches!(&err, CaError::Expired { path, .. } if path == &ca.files().cert),
        "{err}"
    );
    assert!(err.to_string().contains(REGENERATE_COMMAND));
}

#[test]
fn regenerate_replaces_the_ca() {
    let (_tmp, ca) = new_ca();
    let fresh = LocalCa::regenerate(&ca.files().dir, &domains()).unwrap();
    assert_ne!(fresh.cert_der(), ca.cert_der());
    let loaded = LocalCa::load(&ca.files().dir, &domains()).unwrap();
    assert_eq!(loaded.cert_der(), fresh.cert_der());
}

#[test]
fn ca4_leaf_profile() {
    let (_tmp, ca) = new_ca();
    let now = OffsetDateTime::now_utc();
    let url = "http://127.0.0.1:8080/exoproxy-ca.crl";
    let leaf = ca
        .mint_leaf_at("Outlook.Office365.com.", Some(url), now)
        .unwrap();
    let cert = parse(&leaf.cert);
    assert!(!cert.is_ca());
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(!bc.ca);
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        san.general_names,
        vec![GeneralName::DNSName("outlook.office365.com")]
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth);
    assert!(!eku.client_auth && !eku.code_signing && !eku.any && eku.other.is_empty());
    let validity = cert.validity();
    let span = validity.not_after.timestamp() - validity.not_before.timestamp();
    assert!(span <= 7 * 24 * 3600, "validity {span}s");
    assert!(
        validity.not_before.timestamp() < now.unix_timestamp(),
        "backdated for skew"
    );
    let cdp = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => Some(format!("{points:?}")),
            _ => None,
        })
        .unwrap();
    assert!(cdp.contains(url), "{cdp}");
}

#[test]
fn ca4_leaf_serials_are_random() {
    let (_tmp, ca) = new_ca();
    let a = ca.mint_leaf("outlook.office365.com", None).unwrap();
    let b = ca.mint_leaf("outlook.office365.com", None).unwrap();
    assert_ne!(parse(&a.cert).raw_serial(), parse(&b.cert).raw_serial());
    assert!(parse(&a.cert).raw_serial().len() >= 16);
}

#[test]
fn leaves_only_for_permitted_exact_dns_names() {
    let (_tmp, ca) = new_ca();
    for host in [
        "www.google.com",
        "outlook.com",
        "xoutlook.office365.com",
        "office365.us.evil.com",
    ] {
        assert!(
            matches!(ca.mint_leaf(host, None), Err(CaError::HostNotPermitted(_))),
            "{host}"
        );
    }
    for host in ["*.office365.us", "127.0.0.1", "::1", "", "a..office365.us"] {
        assert!(
            matches!(ca.mint_leaf(host, None), Err(CaError::InvalidName(_))),
            "{host:?}"
        );
    }
    assert!(
        ca.mint_leaf("eu.ps.compliance.protection.outlook.com", None)
            .is_ok()
    );
}

#[test]
fn crl_is_empty_current_and_signed_by_the_ca() {
    let (_tmp, ca) = new_ca();
    let now = OffsetDateTime::now_utc();
    let der = ca.crl_der_at(now).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
    let ca_cert = parse(ca.cert_der());
    assert_eq!(crl.issuer(), ca_cert.subject());
    assert_eq!(crl.iter_revoked_certificates().count(), 0);
    assert!(crl.last_update().timestamp() <= now.unix_timestamp());
    assert!(crl.next_update().unwrap().timestamp() > now.unix_timestamp());
    assert!(crl.verify_signature(ca_cert.public_key()).is_ok());
    let later = ca.crl_der_at(now + Duration::seconds(5)).unwrap();
    let (_, later) = x509_parser::parse_x509_crl(&later).unwrap();
    assert!(
        later.crl_number().unwrap() > crl.crl_number().unwrap(),
        "CRL number grows"
    );
}

#[test]
fn export_writes_pem_and_trust_lines() {
    let (tmp, ca) = new_ca();
    let path = tmp.path().join("exoproxy ca.pem");
    let instructions = ca.export(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), ca.cert_pem());
    assert!(instructions.path.is_absolute());
    let text = instructions.to_string();
    let shown = instructions.path.display().to_string();
    assert!(text.contains(&format!(
        "Import-Certificate -FilePath '{shown}' -CertStoreLocation Cert:\\CurrentUser\\Root"
    )));
    assert!(text.contains(&format!("certutil -user -addstore Root \"{shown}\"")));
    assert!(text.contains(&format!("curl --cacert '{shown}'")));
    assert!(text.contains("update-ca-certificates"));
}

#[test]
fn within_domain_respects_label_boundaries() {
    assert!(within_domain(
        "outlook.office365.com",
        "outlook.office365.com"
    ));
    assert!(within_domain(
        "a.outlook.office365.com",
        "outlook.office365.com"
    ));
    assert!(!within_domain(
        "xoutlook.office365.com",
        "outlook.office365.com"
    ));
    assert!(!within_domain("office365.com", "outlook.office365.com"));
}

#[test]
fn crl_url_points_at_loopback() {
    assert_eq!(crl_url(8080), "http://127.0.0.1:8080/exoproxy-ca.crl");
}

#[test]
fn ca_errors_map_to_proxy_errors() {
    use crate::error::ProxyError;
    assert!(matches!(
        ProxyError::from(CaError::RateLimited),
        ProxyError::Overloaded(_)
    ));
    assert!(matches!(
        ProxyError::from(CaError::InvalidName("*.x".into())),
        ProxyError::BadRequest(_)
    ));
    let not_permitted = CaError::HostNotPermitted("www.google.com".into());
    assert!(matches!(
        ProxyError::from(not_permitted),
        ProxyError::Internal(_)
    ));
}

// --- the key protector seam (DPAPI on Windows), exercised with a stand-in ---

fn fake_dpapi(user: u8) -> crate::platform::test_support::FakeDpapi {
    crate::platform::test_support::FakeDpapi { user }
}

/// A fresh CA's files written again, key protected for stand-in user 1: (temp dir, files, PEMs).
fn protected_for_user_1() -> (tempfile::TempDir, CaFiles, String, Zeroizing<String>) {
    let (tmp, ca) = new_ca();
    let (cert, key) = ca.files().read_both().unwrap();
    let files = CaFiles::in_dir(&tmp.path().join("protected"));
    files
        .write_new_with(cert.as_bytes(), key.as_bytes(), &fake_dpapi(1))
        .unwrap();
    (tmp, files, cert, key)
}

#[test]
fn ca1_protected_key_is_never_stored_in_clear_and_round_trips() {
    let (_tmp, files, cert, key) = protected_for_user_1();
    let stored = std::fs::read(&files.key).unwrap();
    assert!(stored.starts_with(b"FAKEDPAPI:"));
    assert!(!String::from_utf8_lossy(&stored).contains("PRIVATE KEY"));
    let (cert_again, key_again) = files.read_both_with(&fake_dpapi(1)).unwrap();
    assert_eq!((&cert_again, &*key_again), (&cert, &*key));
    files::parse_ca(&files, &cert_again, &key_again, OffsetDateTime::now_utc()).unwrap();
}

#[test]
fn ca9_key_protected_for_another_user_is_corrupt_with_the_fix() {
    let (_tmp, files, _, _) = protected_for_user_1();
    let stored = std::fs::read(&files.key).unwrap();
    let err = files.read_both_with(&fake_dpapi(2)).err().unwrap();
    assert!(
        matches!(&err, CaError::Corrupt { path, .. } if path == &files.key),
        "{err}"
    );
    assert!(err.to_string().contains("another user"), "{err}");
    assert!(err.to_string().contains(REGENERATE_COMMAND), "{err}");
    // Refusing is all it does: the file is left as it was.
    assert_eq!(std::fs::read(&files.key).unwrap(), stored);
}

#[test]
fn ca9_unprotectable_junk_key_is_corrupt() {
    let (_tmp, ca) = new_ca();
    std::fs::write(&ca.files().key, b"\x01\x02 not a blob, not a PEM").unwrap();
    let err = ca.files().read_both_with(&fake_dpapi(1)).err().unwrap();
    assert!(matches!(err, CaError::Corrupt { .. }), "{err}");
}

#[test]
fn ca1_plain_key_from_before_protection_is_used_and_protected() {
    let (_tmp, ca) = new_ca();
    let (cert, plain) = ca.files().read_both().unwrap();
    // The same install read by the protecting version: the plain PEM is accepted and rewritten.
    let (cert_read, key_read) = ca.files().read_both_with(&fake_dpapi(1)).unwrap();
    assert_eq!((&cert_read, &*key_read), (&cert, &*plain));
    let stored = std::fs::read(&ca.files().key).unwrap();
    assert!(stored.starts_with(b"FAKEDPAPI:"), "rewritten protected");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ca.files().key)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let (_, key_again) = ca.files().read_both_with(&fake_dpapi(1)).unwrap();
    assert_eq!(&*key_again, &*plain);
    // The certificate (what clients trust) did not change.
    assert_eq!(std::fs::read_to_string(&ca.files().cert).unwrap(), cert);
}
