//! The loopback redirect of the browser flow (RFC 8252 §7.3): a one-shot HTTP listener on 127.0.0.1
//! port 0, and a small helper that opens the system browser.
//!
//! Contract: only requests whose query carries our `state` end the wait (others, like `/favicon.ico`,
//! get a 404 and are ignored); the code is returned only if `state` matches.

use std::io;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::token::oauth::{OAuthError, parse_redirect_query};
use crate::token::secret::AuthorizationCode;

/// Largest request head we read from the browser.
const MAX_HEAD: usize = 16 * 1024;

/// A bound loopback listener waiting for the authorization redirect.
#[derive(Debug)]
pub struct LoopbackRedirect {
    listener: TcpListener,
    port: u16,
}

// === impl LoopbackRedirect ===

impl LoopbackRedirect {
    /// Binds 127.0.0.1 on an ephemeral port.
    pub async fn bind() -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        Ok(Self { listener, port })
    }

    /// The `redirect_uri` to register in the authorize request.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Serves redirects until one carries `expected_state`; returns its code or the IdP's error.
    pub async fn wait(self, expected_state: &str) -> Result<AuthorizationCode, OAuthError> {
        loop {
            let (mut stream, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| OAuthError::malformed(0, &format!("loopback accept: {e}")))?;
            let Some(query) = read_query(&mut stream).await else {
                let _ = respond(&mut stream, "404 Not Found", "Not found.").await;
                continue;
            };
            if !query.split('&').any(|p| p.starts_with("state=")) {
                let _ = respond(&mut stream, "404 Not Found", "Not found.").await;
                continue;
            }
            let result = parse_redirect_query(&query, expected_state);
            let page = match &result {
                Ok(_) => "Sign-in complete. You can close this window and return to exoproxy.",
                Err(_) => "Sign-in failed. Return to exoproxy for details.",
            };
            let status = if result.is_ok() {
                "200 OK"
            } else {
                "400 Bad Request"
            };
            let _ = respond(&mut stream, status, page).await;
            return result;
        }
    }
}

/// Reads the request head and returns the query of a `GET` request target.
async fn read_query(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = std::str::from_utf8(&head).ok()?.lines().next()?.to_string();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    if method != "GET" {
        return None;
    }
    target.split_once('?').map(|(_, q)| q.to_string())
}

async fn respond(stream: &mut tokio::net::TcpStream, status: &str, text: &str) -> io::Result<()> {
    let body = format!("<!doctype html><title>exoproxy</title><p>{text}</p>");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Opens `url` in the user's browser (Windows `rundll32`, macOS `open`, elsewhere `xdg-open`).
pub fn open_browser(url: &str) -> io::Result<()> {
    browser_command(url).spawn().map(drop)
}

/// The browser command for `url`: no secret variable of the configuration in its environment
/// (docs/TESTING.md#sec-21), no console streams.
fn browser_command(url: &str) -> std::process::Command {
    let mut command = if cfg!(windows) {
        let mut c = crate::platform::secret_env::command("rundll32");
        c.arg("url.dll,FileProtocolHandler");
        c
    } else if cfg!(target_os = "macos") {
        crate::platform::secret_env::command("open")
    } else {
        crate::platform::secret_env::command("xdg-open")
    };
    command
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The browser never inherits a variable the configuration names as a secret.
    #[test]
    fn sec_21_the_browser_gets_no_secret_variable() {
        crate::platform::secret_env::remember("EXO_SEC21_BROWSER_SECRET");
        let command = browser_command("https://login.example/");
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        assert!(
            removed.iter().any(|n| n == "EXO_SEC21_BROWSER_SECRET"),
            "{removed:?}"
        );
    }

    async fn get(port: u16, target: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn redirect_with_matching_state_yields_the_code() {
        let redirect = LoopbackRedirect::bind().await.unwrap();
        let uri = redirect.redirect_uri();
        assert!(uri.starts_with("http://127.0.0.1:") && uri.ends_with('/'));
        let port: u16 = uri
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let waiter = tokio::spawn(async move { redirect.wait("st").await });
        assert!(get(port, "/favicon.ico").await.starts_with("HTTP/1.1 404"));
        assert!(
            get(port, "/?code=the-code&state=st")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert_eq!(waiter.await.unwrap().unwrap().expose(), "the-code");
    }

    #[tokio::test]
    async fn redirect_with_wrong_state_is_refused() {
        let redirect = LoopbackRedirect::bind().await.unwrap();
        let port: u16 = redirect
            .redirect_uri()
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let waiter = tokio::spawn(async move { redirect.wait("st").await });
        assert!(
            get(port, "/?code=c&state=forged")
                .await
                .starts_with("HTTP/1.1 400")
        );
        assert!(waiter.await.unwrap().is_err());
    }
}
