//! Shared test helpers: an HTTPS client that trusts the emulator CA and dials the emulator for any
//! host name (like `curl --connect-to`), a client-assertion builder, and JWT claim decoding.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use exosim::{Sim, SimConfig};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use ring::signature::RsaKeyPair;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const OUTLOOK: &str = "https://outlook.office365.com";

/// A started emulator with a client for it.
pub struct Harness {
    pub sim: Sim,
    pub client: Client,
}

/// An HTTPS client that sends every host to the emulator's address.
#[derive(Clone)]
pub struct Client {
    addr: std::net::SocketAddr,
    tls: TlsConnector,
}

/// A buffered answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with(SimConfig::default()).await
    }

    pub async fn with(config: SimConfig) -> Harness {
        let sim = Sim::start(config).await.expect("sim starts");
        let client = Client::new(&sim);
        Harness { sim, client }
    }

    pub fn token_url(&self) -> String {
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
    }
}

impl Client {
    pub fn new(sim: &Sim) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(sim.ca_pem().as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA added");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Client {
            addr: sim.addr(),
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    /// Send `req` (absolute URI) over a fresh TLS connection to the emulator.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> std::io::Result<Answer> {
        let host = req.uri().host().expect("absolute URI").to_string();
        let tcp = TcpStream::connect(self.addr).await?;
        let name = ServerName::try_from(host.clone()).expect("server name");
        let tls = self.tls.connect(name, tcp).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        parts
            .headers
            .insert(http::header::HOST, host.parse().expect("host header"));
        parts.uri = parts
            .uri
            .path_and_query()
            .expect("path")
            .as_str()
            .parse()
            .expect("origin form");
        let resp = sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(std::io::Error::other)?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&self, url: &str) -> Answer {
        self.get_with(url, &[]).await
    }

    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Answer {
        let mut builder = Request::get(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        self.send(builder.body(Full::new(Bytes::new())).expect("request"))
            .await
            .expect("GET answered")
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Answer {
        let body = form_body(form);
        let req = Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("client-request-id", "11111111-2222-4333-8444-555555555555")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        self.send(req).await.expect("POST answered")
    }

    pub async fn post(&self, url: &str) -> Answer {
        self.post_form(url, &[]).await
    }
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {:?}", self.body))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn form_body(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The claims of a JWT (no verification).
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

/// Assert an Entra error body: `error`, AADSTS code first in the description, ids and timestamp.
pub fn assert_aad_error(answer: &Answer, error: &str, code: u64) {
    let body = answer.json();
    assert_eq!(body["error"], error, "body: {body}");
    assert_eq!(body["error_codes"][0], code, "body: {body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}:")),
        "{description}"
    );
    assert!(description.contains("Trace ID:") && description.contains("Correlation ID:"));
    for field in ["trace_id", "correlation_id", "timestamp"] {
        assert!(body[field].is_string(), "{field} missing: {body}");
    }
}

/// Which certificate header names the certificate.
#[derive(Clone, Copy)]
pub enum Thumbprint {
    Sha1,
    Sha256,
}

/// A client assertion (RS256) for the certificate app, signed with `sim/keys/app-client.key`.
pub fn client_assertion(aud: &str, thumbprint: Thumbprint, exp_offset: i64) -> String {
    let cert =
        CertificateDer::from_pem_slice(exosim::config::APP_CLIENT_CERT_PEM.as_bytes()).unwrap();
    let header = match thumbprint {
        Thumbprint::Sha1 => json!({"alg": "RS256", "typ": "JWT",
            "x5t": URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert))}),
        Thumbprint::Sha256 => json!({"alg": "RS256", "typ": "JWT",
            "x5t#S256": URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &cert))}),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let id = exosim::config::CERT_APP_CLIENT_ID;
    let claims = json!({"aud": aud, "iss": id, "sub": id, "jti": format!("{now}-{exp_offset}"),
        "nbf": now - 10, "iat": now - 10, "exp": now + exp_offset});
    sign_rs256(&header, &claims)
}

pub fn sign_rs256(header: &Value, claims: &Value) -> String {
    let key = PrivateKeyDer::from_pem_slice(exosim::config::APP_CLIENT_KEY_PEM.as_bytes()).unwrap();
    let key = RsaKeyPair::from_pkcs8(key.secret_der()).unwrap();
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Ask for a device code for the RPS client and Exchange.
pub async fn device_code(h: &Harness) -> Value {
    let url = format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/devicecode");
    let answer = h
        .client
        .post_form(
            &url,
            &[
                ("client_id", exosim::config::RPS_CLIENT_ID),
                (
                    "scope",
                    "https://outlook.office365.com/.default offline_access openid",
                ),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

pub async fn poll(h: &Harness, device_code: &str) -> Answer {
    h.client
        .post_form(
            &h.token_url(),
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", exosim::config::RPS_CLIENT_ID),
                ("device_code", device_code),
            ],
        )
        .await
}

/// Device code → approve → tokens (the JSON answer).
pub async fn sign_in(h: &Harness) -> Value {
    let dc = device_code(h).await;
    h.sim
        .control()
        .approve_device(dc["user_code"].as_str())
        .unwrap();
    let answer = poll(h, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

pub async fn refresh(h: &Harness, refresh_token: &str) -> Answer {
    h.client
        .post_form(
            &h.token_url(),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", exosim::config::RPS_CLIENT_ID),
                ("refresh_token", refresh_token),
                (
                    "scope",
                    "https://outlook.office365.com/.default offline_access",
                ),
            ],
        )
        .await
}
