//! The CLI's line to the proxy running for the same state dir: `status`, and `login` / `logout`
//! while a proxy runs (so a new sign-in is used at once and a sign-out is final).
//!
//! Contract: [`Running::find`] trusts only the state dir's instance lock (`platform::running`) for
//! "a proxy is up" and its pid file for where it listens; it then speaks HTTP/1.1 to that listener
//! with origin-form requests, `Host` set to the address dialled (the admin paths' Host gate). The
//! actions carry the admin token read from `<state dir>/admin-token` in `X-Admin-Token`: reading
//! that owner-only file is the same-user proof, and the proxy checks the socket's user as well.
//! A proxy that holds the lock but does not answer is an error, never a silent fall back to the
//! cache (which the running proxy would overwrite).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::admin::action::{AdminToken, PREFIX, TOKEN_HEADER};

/// Connecting to our own loopback listener is immediate or never.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A `renew` or a `signin` may wait for the IdP (the token manager's own limit is 15 s per call).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// The proxy running for a state dir.
#[derive(Debug)]
pub struct Running {
    /// Where to dial (a loopback address for a wildcard listener).
    pub addr: SocketAddr,
    state_dir: std::path::PathBuf,
}

// === impl Running ===

impl Running {
    /// The proxy holding `state_dir`'s instance lock, if any.
    pub fn find(state_dir: &Path) -> Option<Running> {
        let addrs = crate::platform::running(state_dir)?;
        let addr = (addrs.iter())
            .find(|a| a.ip().is_loopback())
            .or_else(|| addrs.first())
            .copied()
            .map(dialable)
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 8765)));
        Some(Running {
            addr,
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// `GET path`: the status code and body.
    pub async fn get(&self, path: &str) -> Result<(u16, String), String> {
        let request = self.request("GET", path).body(Full::new(Bytes::new()));
        self.send(request.map_err(|e| e.to_string())?).await
    }

    /// `POST /action/<name>` with `fields`, asking for JSON: the parsed reply.
    pub async fn action(
        &self,
        name: &str,
        fields: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let token = AdminToken::read(&self.state_dir).map_err(|e| {
            format!(
                "cannot read the running proxy's admin token in {}: {e}",
                self.state_dir.display()
            )
        })?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = self
            .request("POST", &format!("{PREFIX}{name}"))
            .header(TOKEN_HEADER, token.expose())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let (status, body) = self.send(request).await?;
        serde_json::from_str(&body)
            .map_err(|_| format!("the proxy answered {status} to `{name}`: {}", body.trim()))
    }

    fn request(&self, method: &str, path: &str) -> http::request::Builder {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
    }

    async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<(u16, String), String> {
        let unreachable = |e: String| {
            format!(
                "an exoproxy holds the state dir {} but does not answer at {}: {e}",
                self.state_dir.display(),
                self.addr
            )
        };
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(self.addr))
                .await
                .map_err(|_| unreachable("connect timed out".into()))?
                .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(REPLY_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {REPLY_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))
    }
}

/// A wildcard listen address is dialled on the loopback of its family.
fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_dialled_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:8765".parse().unwrap();
        let v6: SocketAddr = "[::]:8765".parse().unwrap();
        let own: SocketAddr = "127.0.0.2:9".parse().unwrap();
        assert_eq!(dialable(v4), "127.0.0.1:8765".parse().unwrap());
        assert_eq!(dialable(v6), "[::1]:8765".parse().unwrap());
        assert_eq!(dialable(own), own);
    }
}
