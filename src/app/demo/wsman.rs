//! WS-Man through the proxy, the way Exchange Remote PowerShell speaks it: Create a shell at the
//! front door (following its 302 to the tenant host, keeping the `MS-WSMAN` affinity cookie), run a
//! command, Receive its output, Delete the shell.
//!
//! Contract: the client sends `Basic base64(upn:placeholder)` like PowerShell with
//! `BasicAuthToOAuthConversion=true`; exoproxy replaces the placeholder with a token. Every request
//! is recorded in the [`Tally`]; a non-2xx answer is a failure, except a redirect during Create,
//! which is followed (at most [`MAX_REDIRECTS`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::client::{Conn, Dialer, Reply};
use super::tally::{Api, Tally};

/// The Remote PowerShell endpoint, as PowerShell 5.1 asks for it.
pub(crate) const RPS_PATH: &str =
    "/PowerShell-LiveID?BasicAuthToOAuthConversion=true;PSVersion=5.1.19041.1";

/// Redirects followed while opening a shell.
const MAX_REDIRECTS: usize = 3;

/// Receive calls before a command counts as stuck.
const MAX_RECEIVES: usize = 20;

const SHELL_NS: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
const TRANSFER_NS: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer";
const COOKIE_NAME: &str = "MS-WSMAN";

/// What one `whoami` session produced.
#[derive(Debug, Clone)]
pub(crate) struct Whoami {
    /// The command's stdout, trimmed.
    pub(crate) output: String,
    /// The host the shell ran on (after the front door's redirect).
    pub(crate) tenant_host: String,
    /// The affinity cookie to send next time.
    pub(crate) cookie: Option<String>,
}

/// An open remote shell.
struct Shell<'a> {
    conn: Conn,
    tally: &'a Tally,
    auth: String,
    cookie: Option<String>,
    id: String,
}

/// Opens a shell on `host` as `upn`, runs `whoami`, deletes the shell.
pub(crate) async fn whoami(
    dialer: &Dialer,
    tally: &Tally,
    upn: &str,
    host: &str,
    cookie: Option<String>,
) -> Result<Whoami, String> {
    let mut shell = Shell::open(dialer, tally, upn, host, cookie).await?;
    let output = shell.run("whoami").await;
    let tenant_host = shell.conn.host().to_string();
    let cookie = shell.cookie.clone();
    let deleted = shell.delete().await;
    let output = output?;
    deleted?;
    Ok(Whoami {
        output: output.trim().to_string(),
        tenant_host,
        cookie,
    })
}

// === impl Shell ===

impl<'a> Shell<'a> {
    /// Create, following the front door's redirect to the tenant host.
    async fn open(
        dialer: &Dialer,
        tally: &'a Tally,
        upn: &str,
        host: &str,
        cookie: Option<String>,
    ) -> Result<Shell<'a>, String> {
        let auth = format!("Basic {}", STANDARD.encode(format!("{upn}:placeholder")));
        let mut conn = connect(dialer, tally, host).await?;
        let mut cookie = cookie;
        for _ in 0..=MAX_REDIRECTS {
            let reply = send(
                &mut conn,
                tally,
                &auth,
                cookie.as_deref(),
                create_body(),
                true,
            )
            .await?;
            if let Some(value) = set_cookie(&reply) {
                cookie = Some(value);
            }
            if reply.status.is_redirection() {
                let next = redirect_host(&reply)?;
                conn = connect(dialer, tally, &next).await?;
                continue;
            }
            let id = element_text(&reply.body, "ShellId")
                .ok_or_else(|| format!("Create on {}: no ShellId in the answer", conn.host()))?;
            return Ok(Shell {
                conn,
                tally,
                auth,
                cookie,
                id,
            });
        }
        Err(format!("Create: more than {MAX_REDIRECTS} redirects"))
    }

    /// Command + Receive until Done; returns stdout.
    async fn run(&mut self, command: &str) -> Result<String, String> {
        let reply = self.post(command_body(&self.id, command)).await?;
        let command_id = element_text(&reply.body, "CommandId")
            .ok_or_else(|| format!("Command {command:?}: no CommandId in the answer"))?;
        let mut stdout = String::new();
        for _ in 0..MAX_RECEIVES {
            let reply = self.post(receive_body(&self.id, &command_id)).await?;
            stdout.push_str(&stdout_of(&reply.body));
            if reply.body.contains("CommandState/Done") {
                return Ok(stdout);
            }
        }
        Err(format!(
            "{command:?} still running after {MAX_RECEIVES} Receive calls"
        ))
    }

    /// Delete: closes the shell on the server.
    async fn delete(mut self) -> Result<(), String> {
        self.post(delete_body(&self.id)).await.map(drop)
    }

    async fn post(&mut self, body: String) -> Result<Reply, String> {
        let cookie = self.cookie.as_deref();
        send(&mut self.conn, self.tally, &self.auth, cookie, body, false).await
    }
}

/// Opens a connection; a failure counts as a failed WS-Man request.
async fn connect(dialer: &Dialer, tally: &Tally, host: &str) -> Result<Conn, String> {
    let conn = dialer.connect(host).await;
    if let Err(e) = &conn {
        tally.record(Api::WsMan, &Err(e.clone()));
    }
    conn
}

/// One WS-Man POST, recorded; `redirect_ok` accepts a 3xx (Create at the front door).
async fn send(
    conn: &mut Conn,
    tally: &Tally,
    auth: &str,
    cookie: Option<&str>,
    body: String,
    redirect_ok: bool,
) -> Result<Reply, String> {
    let cookie_header = cookie.map(|c| format!("{COOKIE_NAME}={c}"));
    let mut headers = vec![
        ("content-type", "application/soap+xml;charset=UTF-8"),
        ("authorization", auth),
    ];
    if let Some(c) = &cookie_header {
        headers.push(("cookie", c.as_str()));
    }
    let outcome = conn.post(RPS_PATH, &headers, body).await.and_then(|reply| {
        let ok = reply.status.is_success() || (redirect_ok && reply.status.is_redirection());
        if ok {
            Ok(reply)
        } else {
            Err(describe_failure(conn.host(), &reply))
        }
    });
    tally.record(
        Api::WsMan,
        &outcome.as_ref().map(drop).map_err(Clone::clone),
    );
    outcome
}

/// `WS-Man HTTP 401 from host: <start of the body>`.
pub(crate) fn describe_failure(host: &str, reply: &Reply) -> String {
    let body: String = reply.body.chars().take(200).collect();
    format!("HTTP {} from {host}: {body}", reply.status)
}

/// The host of a redirect's `Location`.
fn redirect_host(reply: &Reply) -> Result<String, String> {
    let location = reply
        .headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("a redirect without Location")?;
    let uri: http::Uri = location
        .parse()
        .map_err(|e| format!("redirect to {location:?}: {e}"))?;
    uri.host()
        .map(str::to_string)
        .ok_or_else(|| format!("redirect to {location:?} names no host"))
}

/// The `MS-WSMAN` value of the first `Set-Cookie` that sets it.
fn set_cookie(reply: &Reply) -> Option<String> {
    reply
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find_map(|pair| pair.trim().strip_prefix("MS-WSMAN="))
        .map(str::to_string)
}

// === envelopes ===

/// A WS-Man envelope in WinRM's prefix style.
fn envelope(action: &str, shell_id: Option<&str>, body: &str) -> String {
    let selector = shell_id
        .map(|id| {
            format!("<w:SelectorSet><w:Selector Name=\"ShellId\">{id}</w:Selector></w:SelectorSet>")
        })
        .unwrap_or_default();
    format!(
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" \
         xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" xmlns:rsp=\"{SHELL_NS}\"><s:Header>\
         <a:Action s:mustUnderstand=\"true\">{action}</a:Action><a:MessageID>uuid:exoproxy-demo</a:MessageID>\
         <w:ResourceURI s:mustUnderstand=\"true\">{SHELL_NS}/cmd</w:ResourceURI>\
         <w:OperationTimeout>PT20S</w:OperationTimeout>{selector}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
}

fn create_body() -> String {
    envelope(
        &format!("{TRANSFER_NS}/Create"),
        None,
        "<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams>\
         <rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>",
    )
}

fn command_body(shell: &str, command: &str) -> String {
    envelope(
        &format!("{SHELL_NS}/Command"),
        Some(shell),
        &format!("<rsp:CommandLine><rsp:Command>{command}</rsp:Command></rsp:CommandLine>"),
    )
}

fn receive_body(shell: &str, command_id: &str) -> String {
    envelope(
        &format!("{SHELL_NS}/Receive"),
        Some(shell),
        &format!(
            "<rsp:Receive><rsp:DesiredStream CommandId=\"{command_id}\">stdout stderr</rsp:DesiredStream></rsp:Receive>"
        ),
    )
}

fn delete_body(shell: &str) -> String {
    envelope(&format!("{TRANSFER_NS}/Delete"), Some(shell), "")
}

// === answers ===

/// Text of the first `<prefix:local>` element (attributes allowed), or `None`.
fn element_text(xml: &str, local: &str) -> Option<String> {
    elements(xml, local)
        .next()
        .map(|(_, text)| text.to_string())
}

/// The decoded `stdout` streams of a Receive answer, concatenated.
fn stdout_of(xml: &str) -> String {
    elements(xml, "Stream")
        .filter(|(attrs, _)| attrs.contains("Name=\"stdout\""))
        .filter_map(|(_, text)| STANDARD.decode(text.trim()).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .collect()
}

/// Every `<prefix:local ATTRS>TEXT<` in `xml`: (attributes, text). Self-closing tags have no text.
fn elements<'x>(xml: &'x str, local: &str) -> impl Iterator<Item = (&'x str, &'x str)> {
    let needle = format!(":{local}");
    xml.match_indices('<').filter_map(move |(at, _)| {
        let tag = xml.get(at + 1..)?;
        let name_end = tag.find(|c: char| c == '>' || c.is_whitespace())?;
        let name = &tag[..name_end];
        if !name.ends_with(needle.as_str()) || name.starts_with('/') {
            return None;
        }
        let close = tag.find('>')?;
        if tag[..close].ends_with('/') {
            return None;
        }
        let attrs = &tag[name_end..close];
        let rest = &tag[close + 1..];
        Some((attrs, &rest[..rest.find('<')?]))
    })
}

#[cfg(test)]
mod tests;
