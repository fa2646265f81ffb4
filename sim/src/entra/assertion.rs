//! Client authentication at the token endpoint (docs/PROTOCOL.md#client-assertion): a `client_assertion`
//! JWT signed by a
//! registered certificate (RS256, PS256 or ES256; the certificate named by `x5t` or `x5t#S256`;
//! `aud` = this tenant's token URL; `iss` = `sub` = client id; `exp`/`nbf` in range), or a client
//! secret in the form or in `Authorization: Basic`. Public clients must send neither (AADSTS700025).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use webpki::EndEntityCert;

use super::errors::AadError;
use super::{Ctx, TenantSel};
use crate::config::{AUTHORITY_HOSTS, Client, ClientCredential};
use crate::jwt::{self, unix_now};
use crate::wire;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew Entra tolerates on assertion times.
const SKEW_SECS: u64 = 300;

/// Check that the request authenticates `client` the way its registration demands.
pub(super) fn authenticate(
    ctx: &Ctx<'_>,
    form: &HashMap<String, String>,
    client: &Client,
) -> Result<(), AadError> {
    let secret = form
        .get("client_secret")
        .cloned()
        .or_else(|| basic_secret(ctx, &client.id));
    let assertion = form.get("client_assertion");
    match (&client.credential, assertion, secret) {
        (ClientCredential::Public, None, None) => Ok(()),
        (ClientCredential::Public, _, _) => Err(AadError::invalid_client(
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
        )
        .status(http::StatusCode::BAD_REQUEST)),
        (ClientCredential::Secret(expected), None, Some(given)) if *expected == given => Ok(()),
        (ClientCredential::Secret(_), None, Some(_)) => Err(AadError::invalid_client(
            7000215,
            format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", client.id),
        )),
        (ClientCredential::Certificate(cert), Some(jwt), None) => {
            check_assertion_type(form)?;
            verify_assertion(ctx, jwt, &client.id, cert)
        }
        _ => Err(AadError::invalid_client(
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )),
    }
}

fn check_assertion_type(form: &HashMap<String, String>) -> Result<(), AadError> {
    match form.get("client_assertion_type").map(String::as_str) {
        Some(JWT_BEARER) => Ok(()),
        _ => Err(AadError::invalid_request(
            50027,
            "Invalid client_assertion_type; expected 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
        )),
    }
}

/// The secret half of `Authorization: Basic base64(client_id:secret)` (client_secret_basic).
fn basic_secret(ctx: &Ctx<'_>, client_id: &str) -> Option<String> {
    let value = wire::header_str(ctx.req, "authorization")?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    (wire::percent_decode(id.as_bytes()) == client_id)
        .then(|| wire::percent_decode(secret.as_bytes()))
}

fn verify_assertion(
    ctx: &Ctx<'_>,
    assertion: &str,
    client_id: &str,
    cert_der: &[u8],
) -> Result<(), AadError> {
    let malformed = || AadError::invalid_client(50027, "JWT token is invalid or malformed.");
    let decoded = jwt::decode(assertion).map_err(|_| malformed())?;
    if !names_certificate(&decoded.header, cert_der) {
        return Err(AadError::invalid_client(
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application.",
        ));
    }
    verify_signature(&decoded, cert_der)?;
    check_claims(ctx, &decoded.claims, client_id)
}

/// `x5t` (SHA-1) or `x5t#S256` (SHA-256) of the certificate, base64url (hex and padded base64 tolerated).
fn names_certificate(header: &Value, cert_der: &[u8]) -> bool {
    use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
    let matches = |name: &str, alg| {
        header
            .get(name)
            .and_then(Value::as_str)
            .and_then(thumbprint_bytes)
            .is_some_and(|given| given == digest(alg, cert_der).as_ref())
    };
    matches("x5t", &SHA1_FOR_LEGACY_USE_ONLY) || matches("x5t#S256", &SHA256)
}

fn thumbprint_bytes(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
        .or_else(|| STANDARD.decode(text).ok())
        .filter(|b| b.len() == 20 || b.len() == 32)
        .or_else(|| hex_bytes(text))
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn verify_signature(decoded: &jwt::Decoded, cert_der: &[u8]) -> Result<(), AadError> {
    let bad =
        || AadError::invalid_client(700027, "Client assertion contains an invalid signature.");
    let cert_der = CertificateDer::from(cert_der);
    let cert = EndEntityCert::try_from(&cert_der).map_err(|_| bad())?;
    let alg = decoded
        .header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (algorithm, signature) = match alg {
        "RS256" => (
            webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            decoded.signature.clone(),
        ),
        "PS256" => (
            webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            decoded.signature.clone(),
        ),
        "ES256" => (
            webpki::ring::ECDSA_P256_SHA256,
            ecdsa_fixed_to_der(&decoded.signature).ok_or_else(bad)?,
        ),
        _ => return Err(bad()),
    };
    cert.verify_signature(algorithm, decoded.signed.as_bytes(), &signature)
        .map_err(|_| bad())
}

/// JWS ES256 signatures are `r || s`; webpki wants an ASN.1 `SEQUENCE { INTEGER r, INTEGER s }`.
fn ecdsa_fixed_to_der(sig: &[u8]) -> Option<Vec<u8>> {
    if sig.len() != 64 {
        return None;
    }
    let integer = |half: &[u8]| {
        let trimmed: Vec<u8> = half.iter().copied().skip_while(|b| *b == 0).collect();
        let mut body = if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
            vec![0]
        } else {
            vec![]
        };
        body.extend(if trimmed.is_empty() { vec![0] } else { trimmed });
        let mut out = vec![0x02, body.len() as u8];
        out.extend(body);
        out
    };
    let mut seq = integer(&sig[..32]);
    seq.extend(integer(&sig[32..]));
    let mut out = vec![0x30, seq.len() as u8];
    out.extend(seq);
    Some(out)
}

fn check_claims(ctx: &Ctx<'_>, claims: &Value, client_id: &str) -> Result<(), AadError> {
    let str_claim = |n: &str| jwt::str_claim(claims, n).unwrap_or_default();
    if str_claim("iss") != client_id || str_claim("sub") != client_id {
        return Err(AadError::invalid_client(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ));
    }
    check_audience(ctx, claims.get("aud"))?;
    let now = unix_now();
    let time = |n: &str| jwt::numeric_date(claims, n);
    let expired = time("exp").is_none_or(|exp| exp + SKEW_SECS <= now);
    let early = time("nbf").is_some_and(|nbf| nbf > now + SKEW_SECS);
    if expired || early {
        return Err(AadError::invalid_client(
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(())
}

/// One audience (a string or a one-element array; Entra refuses more with AADSTS5002741) that names
/// this tenant's token endpoint (else AADSTS50012, as Entra words it).
fn check_audience(ctx: &Ctx<'_>, aud: Option<&Value>) -> Result<(), AadError> {
    let values: Vec<&str> = match aud {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if values.len() > 1 {
        return Err(AadError::invalid_client(
            5002741,
            format!(
                "Number of audience values in the provided client credential exceed maximum allowed. {} audience values provided, maximum allowed is 1.",
                values.len()
            ),
        ));
    }
    match values.first() {
        Some(aud) if audience_ok(ctx, aud) => Ok(()),
        _ => Err(AadError::invalid_client(
            50012,
            "Client assertion audience claim does not match Realm issuer.",
        )),
    }
}

/// `aud` must be a token endpoint (v1 or v2) of an authority host, for this tenant (id or domain).
fn audience_ok(ctx: &Ctx<'_>, aud: &str) -> bool {
    let Some(rest) = aud.strip_prefix("https://") else {
        return false;
    };
    let Some((host, path)) = rest.split_once('/') else {
        return false;
    };
    if !AUTHORITY_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return false;
    }
    let Some((tenant, endpoint)) = path.split_once('/') else {
        return false;
    };
    if endpoint != "oauth2/v2.0/token" && endpoint != "oauth2/token" {
        return false;
    }
    match ctx.tenant() {
        Ok(TenantSel::Specific(t)) => ctx
            .shared
            .config
            .tenant(tenant)
            .is_some_and(|named| named.id == t.id),
        Ok(TenantSel::Multi(_)) => tenant.eq_ignore_ascii_case(ctx.tenant_path),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signature_becomes_der_with_sign_padding() {
        let mut sig = vec![0x80u8; 32];
        sig.extend(vec![0x01u8; 32]);
        let der = ecdsa_fixed_to_der(&sig).unwrap();
        assert_eq!(&der[..4], &[0x30, 2 + 33 + 2 + 32, 0x02, 33]);
        assert_eq!(der[4], 0);
    }

    #[test]
    fn thumbprints_accept_base64url_and_hex() {
        assert_eq!(thumbprint_bytes(&"ab".repeat(20)).unwrap(), vec![0xab; 20]);
        assert_eq!(
            thumbprint_bytes(&URL_SAFE_NO_PAD.encode([7u8; 32])).unwrap(),
            vec![7u8; 32]
        );
    }
}
