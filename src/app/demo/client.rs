//! The demo's client: reaches an intercepted host the way PowerShell does, with `CONNECT host:443`
//! to exoproxy, TLS trusting exoproxy's local CA, then HTTP/1.1 keep-alive.
//!
//! Contract: every step has a time limit ([`STEP_TIMEOUT`]) so a stuck proxy makes the demo fail
//! with a message instead of hanging; errors are short strings for the report.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest one step (connect, handshake, one request and its body) may take.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest CONNECT response head we read.
const MAX_HEAD: usize = 8 * 1024;

/// Opens tunnels through the proxy and TLS sessions trusting exoproxy's CA.
#[derive(Clone)]
pub(crate) struct Dialer {
    proxy: SocketAddr,
    tls: TlsConnector,
}

/// One keep-alive HTTP/1.1 connection to `host` through the proxy.
pub(crate) struct Conn {
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

// === impl Dialer ===

impl Dialer {
    /// A dialer for the proxy at `proxy`, trusting only the CA certificates in `ca_pem`.
    pub(crate) fn new(proxy: SocketAddr, ca_pem: &str) -> Result<Dialer, String> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("exoproxy CA PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("exoproxy CA certificate: {e}"))?;
        }
        let config = crate::tls_client::client_config_with_roots(roots)
            .map_err(|e| format!("TLS client: {e}"))?;
        Ok(Dialer {
            proxy,
            tls: TlsConnector::from(config),
        })
    }

    /// `CONNECT host:443`, TLS for `host`, HTTP/1.1.
    pub(crate) async fn connect(&self, host: &str) -> Result<Conn, String> {
        timed(&format!("connecting to {host}"), self.connect_now(host)).await
    }

    async fn connect_now(&self, host: &str) -> Result<Conn, String> {
        let tunnel = connect_tunnel(self.proxy, host).await?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host:?} is not a host name: {e}"))?;
        let tls = self
            .tls
            .connect(name, tunnel)
            .await
            .map_err(|e| format!("TLS to {host} through exoproxy: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/1.1 to {host}: {e}"))?;
        tokio::spawn(connection);
        Ok(Conn {
            host: host.to_string(),
            sender,
        })
    }
}

/// Sends `CONNECT host:443` and checks for a 200.
async fn connect_tunnel(proxy: SocketAddr, host: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("cannot reach exoproxy at {proxy}: {e}"))?;
    let request = format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("CONNECT {host}: {e}"))?;
    let head = read_head(&mut stream)
        .await
        .map_err(|e| format!("CONNECT {host}: {e}"))?;
    if head.starts_with("HTTP/1.1 200") {
        Ok(stream)
    } else {
        let status = head.lines().next().unwrap_or_default();
        Err(format!("CONNECT {host}: the proxy answered {status:?}"))
    }
}

/// Reads byte by byte up to the blank line, so no tunnel byte is consumed.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < MAX_HEAD {
        if stream.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

// === impl Conn ===

impl Conn {
    /// The host this connection reaches.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// POSTs `body` to `path` with the given extra headers; reads the whole response.
    pub(crate) async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> Result<Reply, String> {
        let what = format!("POST https://{}{path}", self.host);
        let mut builder = Request::post(path).header(http::header::HOST, self.host.as_str());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("{what}: {e}"))?;
        timed(&what, self.send(request)).await
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Reply, String> {
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection closed: {e}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("host", &self.host).finish()
    }
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// Runs `step` within [`STEP_TIMEOUT`]; `what` names it in the error.
async fn timed<T>(what: &str, step: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    match tokio::time::timeout(STEP_TIMEOUT, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {STEP_TIMEOUT:?}")),
    }
}
