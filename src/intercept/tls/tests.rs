use std::io;

use rustls::{CertificateError, Error};

use super::*;

#[test]
fn certificate_errors_map_to_stable_kinds() {
    let cases = [
        (CertificateError::Expired, TlsFailureKind::Expired),
        (CertificateError::NotValidYet, TlsFailureKind::Expired),
        (CertificateError::NotValidForName, TlsFailureKind::WrongHost),
        (CertificateError::UnknownIssuer, TlsFailureKind::Untrusted),
        (CertificateError::BadSignature, TlsFailureKind::Untrusted),
        (CertificateError::Revoked, TlsFailureKind::Untrusted),
    ];
    for (cert_err, kind) in cases {
        let err = io::Error::new(
            io::ErrorKind::InvalidData,
            Error::InvalidCertificate(cert_err),
        );
        assert_eq!(classify_tls_error(&err), kind);
    }
}

#[test]
fn other_failures_are_handshake() {
    let alert = io::Error::new(
        io::ErrorKind::InvalidData,
        Error::AlertReceived(rustls::AlertDescription::ProtocolVersion),
    );
    assert_eq!(classify_tls_error(&alert), TlsFailureKind::Handshake);
    let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    assert_eq!(classify_tls_error(&reset), TlsFailureKind::Handshake);
}

#[test]
fn kinds_have_stable_names() {
    for (kind, name) in [
        (TlsFailureKind::Expired, "expired"),
        (TlsFailureKind::WrongHost, "wrong_host"),
        (TlsFailureKind::Untrusted, "untrusted"),
        (TlsFailureKind::Handshake, "handshake"),
    ] {
        assert_eq!(kind.as_str(), name);
    }
    let err = io::Error::new(
        io::ErrorKind::InvalidData,
        Error::InvalidCertificate(CertificateError::Expired),
    );
    let proxy_error = upstream_tls_error("outlook.office365.com", &err);
    assert!(matches!(
        proxy_error,
        ProxyError::UpstreamTls {
            kind: "expired",
            ..
        }
    ));
}
