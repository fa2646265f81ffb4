//! Fetching a PAC script from a file or an `http(s)` URL, defensively (PAC-8).
//!
//! Contract: [`fetch_script`] returns the script text or an error naming what was wrong. The download goes
//! DIRECT (Chromium does the same: the PAC is what tells us about proxies), requires status 200, refuses
//! a body above the size cap (whether announced or streamed), any `Content-Encoding` (no gzip bombs:
//! we ask for `identity`), redirects to anything but http/https, https→http downgrades and more than
//! [`MAX_REDIRECTS`] hops. The whole fetch, redirects included, must finish within the timeout (10 s by
//! default, docs/TESTING.md#pac-8: a 1 byte/s server is cut off). The body must be UTF-8; a BOM is dropped.
//! An https server is verified with the proxy's one outbound TLS configuration (`crate::tls_client`,
//! roots loaded once per process, never per fetch).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::tls_client;

/// Redirect hops followed before giving up.
pub const MAX_REDIRECTS: usize = 5;

/// Limits and trust for one fetch.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    pub timeout: Duration,
    pub max_bytes: usize,
    /// TLS for an https PAC server; `None` is the shared system-roots configuration. Either way the
    /// roots were loaded once, not per fetch (`tls_client`).
    pub tls: Option<Arc<ClientConfig>>,
}

/// Where the script comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacSource {
    /// A local file (also `file:///…` in config).
    File(std::path::PathBuf),
    /// An `http://` or `https://` URL, fetched DIRECT.
    Url(String),
    /// The script itself (tests, `exoproxy pac eval` with inline text).
    Inline(String),
}

// === impl PacSource ===

impl PacSource {
    /// Reads a config value: `http(s)://…` is a URL, `file://…` or anything else a path.
    pub fn parse(s: &str) -> PacSource {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            PacSource::Url(s.to_string())
        } else if let Some(path) = s.strip_prefix("file://") {
            PacSource::File(path.into())
        } else {
            PacSource::File(s.into())
        }
    }
}

impl std::fmt::Display for PacSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PacSource::File(p) => write!(f, "{}", p.display()),
            PacSource::Url(u) => f.write_str(u),
            PacSource::Inline(_) => f.write_str("(inline script)"),
        }
    }
}

/// Fetches and decodes the script.
pub async fn fetch_script(source: &PacSource, limits: &FetchLimits) -> Result<String, String> {
    let bytes = match source {
        PacSource::Inline(text) => return Ok(text.clone()),
        PacSource::File(path) => read_file(path, limits.max_bytes).await?,
        PacSource::Url(url) => tokio::time::timeout(limits.timeout, fetch_url(url, limits))
            .await
            .map_err(|_| format!("PAC download did not finish within {:?}", limits.timeout))??,
    };
    decode_script(&bytes)
}

/// UTF-8 only; one leading BOM is dropped (PAC-8).
pub fn decode_script(bytes: &[u8]) -> Result<String, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_string()),
        Err(e) => Err(format!(
            "PAC script is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        )),
    }
}

async fn read_file(path: &Path, max_bytes: usize) -> Result<Vec<u8>, String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot open PAC file {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("cannot read PAC file {}: {e}", path.display()))?;
    if bytes.len() > max_bytes {
        return Err(format!(
            "PAC file {} is larger than {max_bytes} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

/// GET with manual redirect handling.
async fn fetch_url(url: &str, limits: &FetchLimits) -> Result<Vec<u8>, String> {
    let mut uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid PAC URL {url:?}: {e}"))?;
    for _ in 0..=MAX_REDIRECTS {
        let response = get_once(&uri, limits).await?;
        if !response.status().is_redirection() {
            return read_response(response, limits.max_bytes).await;
        }
        uri = redirect_target(&uri, &response)?;
    }
    Err(format!(
        "more than {MAX_REDIRECTS} redirects fetching the PAC"
    ))
}

/// The next URL of a redirect, refusing other schemes and https→http.
fn redirect_target(from: &Uri, response: &hyper::Response<Incoming>) -> Result<Uri, String> {
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("redirect without a usable Location")?;
    next_location(from, location)
}

/// Resolves a `Location` against the current URL and applies the scheme rules.
pub(crate) fn next_location(from: &Uri, location: &str) -> Result<Uri, String> {
    let lower = location.to_ascii_lowercase();
    if !(location.starts_with('/') || lower.starts_with("http://") || lower.starts_with("https://"))
    {
        return Err(format!(
            "refused redirect to {location:?}: only absolute http(s) URLs or absolute paths"
        ));
    }
    let next: Uri = if location.starts_with('/') {
        let authority = from.authority().ok_or("redirect from a URL without host")?;
        let scheme = from.scheme_str().unwrap_or("http");
        format!("{scheme}://{authority}{location}")
            .parse()
            .map_err(|e| format!("bad redirect {location:?}: {e}"))?
    } else {
        location
            .parse()
            .map_err(|e| format!("bad redirect {location:?}: {e}"))?
    };
    match (from.scheme_str(), next.scheme_str()) {
        (Some("https"), Some("http")) => Err(format!(
            "refused redirect from https to plain http ({location})"
        )),
        (_, Some("http" | "https")) => Ok(next),
        _ => Err(format!("refused redirect to {location:?}: only http(s)")),
    }
}

async fn get_once(uri: &Uri, limits: &FetchLimits) -> Result<hyper::Response<Incoming>, String> {
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("PAC URL {uri} must be http or https")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("PAC URL {uri} has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to PAC server {host}:{port}: {e}"))?;
    let request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, uri.authority().map_or(host, |a| a.as_str()))
        .header(
            header::USER_AGENT,
            concat!("exoproxy/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::ACCEPT_ENCODING, "identity")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build PAC request: {e}"))?;
    if https {
        let tls = tls_connect(tcp, host, tls_config(limits)?).await?;
        send(TokioIo::new(tls), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

async fn send<T>(io: T, request: Request<Empty<Bytes>>) -> Result<hyper::Response<Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("PAC server handshake failed: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("PAC request failed: {e}"))
}

/// The configuration for an https download: the injected one, else the shared system one.
fn tls_config(limits: &FetchLimits) -> Result<Arc<ClientConfig>, String> {
    match &limits.tls {
        Some(config) => Ok(config.clone()),
        None => tls_client::system_client_config().map_err(|e| format!("TLS setup: {e}")),
    }
}

async fn tls_connect(
    tcp: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("invalid TLS name {host:?}: {e}"))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS to PAC server {host} failed: {e}"))
}

/// Status 200, no content coding, body within the cap (announced or streamed).
async fn read_response(
    response: hyper::Response<Incoming>,
    max_bytes: usize,
) -> Result<Vec<u8>, String> {
    if response.status() != StatusCode::OK {
        return Err(format!("PAC server answered {}", response.status()));
    }
    if let Some(coding) = response.headers().get(header::CONTENT_ENCODING)
        && !coding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(format!(
            "PAC server sent Content-Encoding {coding:?}: refused"
        ));
    }
    let announced = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max_bytes as u64) {
        return Err(format!("PAC is larger than {max_bytes} bytes"));
    }
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("PAC download failed: {e}"))?;
        if let Some(data) = frame.data_ref() {
            if bytes.len() + data.len() > max_bytes {
                return Err(format!("PAC is larger than {max_bytes} bytes"));
            }
            bytes.extend_from_slice(data);
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{FetchLimits, decode_script, next_location, tls_config};

    #[test]
    fn every_fetch_shares_one_tls_config() {
        let limits = FetchLimits {
            timeout: Duration::from_secs(1),
            max_bytes: 1,
            tls: None,
        };
        // Without system roots (a bare container) there is no shared config to compare.
        if let (Ok(first), Ok(second)) = (tls_config(&limits), tls_config(&limits)) {
            assert!(Arc::ptr_eq(&first, &second), "roots reloaded per fetch");
        }
        let injected =
            crate::tls_client::client_config_with_roots(rustls::RootCertStore::empty()).unwrap();
        let limits = FetchLimits {
            tls: Some(injected.clone()),
            ..limits
        };
        assert!(Arc::ptr_eq(&tls_config(&limits).unwrap(), &injected));
    }

    #[test]
    fn redirects_keep_to_http_without_downgrade() {
        let https: http::Uri = "https://pac.corp/proxy.pac".parse().unwrap();
        let http: http::Uri = "http://pac.corp/proxy.pac".parse().unwrap();
        assert!(
            next_location(&https, "http://pac.corp/x.pac").is_err(),
            "downgrade"
        );
        assert!(next_location(&http, "file:///etc/passwd").is_err());
        assert!(next_location(&http, "ftp://pac.corp/x").is_err());
        assert_eq!(
            next_location(&https, "/other.pac").unwrap().to_string(),
            "https://pac.corp/other.pac"
        );
        assert!(
            next_location(&http, "https://pac.corp/x.pac").is_ok(),
            "upgrade is fine"
        );
    }

    #[test]
    fn bodies_are_utf8_with_an_optional_bom() {
        assert_eq!(decode_script(b"\xEF\xBB\xBFfunction").unwrap(), "function");
        assert!(decode_script(b"function \xFF").is_err());
    }
}
