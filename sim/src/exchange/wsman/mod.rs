//! The RPS endpoint: WS-Man over HTTPS at `/PowerShell-LiveID` (docs/PROTOCOL.md#basic-to-oauth,
//! docs/PROTOCOL.md#redirects, docs/PROTOCOL.md#affinity-cookie, docs/PROTOCOL.md#wsman-framing,
//! docs/PROTOCOL.md#wsman-timeouts, docs/PROTOCOL.md#token-rejection, docs/PROTOCOL.md#rps-limits).
//!
//! Order of checks, as a client meets them:
//! 1. authentication (`auth::authenticate_rps`) → 401 on any failure, also on front doors;
//! 2. a front door answers every authenticated POST with 302 to the tenant host, keeping the query,
//!    and sets an `MS-WSMAN` cookie (host-only, so a browser-like jar keeps it for the front door; a
//!    client or proxy that carries it to the tenant host is accepted there too);
//! 3. on the tenant host a Create without a valid `MS-WSMAN` cookie starts a new affinity (the response
//!    sets the cookie); any other action without it fails with the InvalidSelectors fault, like the
//!    real load balancer sending the request to a server that does not know the shell;
//! 4. the WS-Man action runs against the shell model; Receive long-polls and answers the w:TimedOut
//!    fault (HTTP 500) after min(OperationTimeout, `operation_timeout_cap`).

mod shell;
mod soap;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};

use super::auth::{self, Identity, Scheme};
use super::hosts::{self, HostInfo};
use super::{Exchange, TokenCheck, lock};
pub(crate) use shell::State;
use soap::{Envelope, Fault};

const ACTION_CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
const ACTION_DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
const ACTION_COMMAND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command";
const ACTION_RECEIVE: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive";
const ACTION_SEND: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send";
const ACTION_SIGNAL: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal";
const STATE_DONE: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done";
const STATE_RUNNING: &str =
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running";
/// Path of the affinity cookie, spelled as EXO spells it (cookie jars match paths case-sensitively).
const COOKIE_PATH: &str = "/PowerShell-LiveID";
const COOKIE_NAME: &str = "MS-WSMAN";
/// OperationTimeout when a client sends none (wsman.h WSMAN_DEFAULT_TIMEOUT_MS).
const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// One authenticated WS-Man request on a tenant host.
struct Call<'a> {
    ex: &'a Exchange,
    who: Identity,
    env: Envelope,
    body: &'a str,
    machine: &'a str,
}

/// Handle one request on the RPS path.
pub(crate) async fn handle(
    ex: &Exchange,
    info: &HostInfo,
    req: Request<Bytes>,
    tokens: &dyn TokenCheck,
) -> Response<Bytes> {
    if req.method() != http::Method::POST {
        return status_only(StatusCode::METHOD_NOT_ALLOWED);
    }
    let settings = ex.settings();
    let who = match auth::authenticate_rps(&req, info.audience(), tokens, settings.cae) {
        Ok(who) => who,
        Err(failure) => return auth::unauthorized(&failure, Scheme::Rps),
    };
    if info.front_door {
        let cookie = lock(&ex.state).issue_cookie(&who.user_key);
        let mut resp = redirect(info, &req);
        set_cookie(&mut resp, &cookie);
        return resp;
    }
    let Ok(body) = std::str::from_utf8(req.body()) else {
        return fault_response(&Fault::unsupported("body is not UTF-8"), "", &info.name);
    };
    let Some(env) = Envelope::parse(body) else {
        return fault_response(&Fault::unsupported("not a WS-Man envelope"), "", &info.name);
    };
    let cookie = request_cookie(&req);
    let call = Call {
        ex,
        who,
        env,
        body,
        machine: &info.name,
    };
    call.run(cookie, &settings).await
}

/// 302 to the tenant host, same query; WinRM follows it with -AllowRedirection (§1.3).
fn redirect(info: &HostInfo, req: &Request<Bytes>) -> Response<Bytes> {
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let location = format!(
        "https://{}{}{COOKIE_PATH}{query}",
        info.tenant_host(),
        hosts::port_suffix(req)
    );
    let mut resp = status_only(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

/// `Set-Cookie: MS-WSMAN=<value>; path=/PowerShell-LiveID; secure; HttpOnly` (§1.4).
fn set_cookie(resp: &mut Response<Bytes>, value: &str) {
    let cookie = format!("{COOKIE_NAME}={value}; path={COOKIE_PATH}; secure; HttpOnly");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(http::header::SET_COOKIE, v);
    }
}

/// The `MS-WSMAN` cookie value, if the client sent one.
fn request_cookie(req: &Request<Bytes>) -> Option<String> {
    req.headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
}

// === impl Call ===

impl Call<'_> {
    async fn run(
        self,
        cookie: Option<String>,
        settings: &super::ExchangeSettings,
    ) -> Response<Bytes> {
        let user = self.who.user_key.clone();
        let has_affinity = cookie
            .as_deref()
            .is_some_and(|c| lock(&self.ex.state).cookie_valid(c, &user));
        let new_cookie = match (has_affinity, self.env.action.as_str()) {
            (true, _) => None,
            (false, ACTION_CREATE) => Some(lock(&self.ex.state).issue_cookie(&user)),
            (false, _) => {
                let shell = self.env.shell_id.clone().unwrap_or_default();
                return self.fault(&Fault::shell_not_found(&shell));
            }
        };
        let mut resp = match self.dispatch(settings).await {
            Ok(resp) => resp,
            Err(fault) => self.fault(&fault),
        };
        if let Some(value) = new_cookie {
            set_cookie(&mut resp, &value);
        }
        resp
    }

    async fn dispatch(&self, settings: &super::ExchangeSettings) -> Result<Response<Bytes>, Fault> {
        match self.env.action.as_str() {
            ACTION_CREATE => self.create(settings.max_shells_per_user),
            ACTION_COMMAND => self.command(),
            ACTION_RECEIVE => self.receive(settings.operation_timeout_cap).await,
            ACTION_SEND => self.send(),
            ACTION_SIGNAL => self.signal(),
            ACTION_DELETE => self.delete(),
            other => Err(Fault::unsupported(other)),
        }
    }

    fn shell_id(&self) -> Result<&str, Fault> {
        self.env
            .shell_id
            .as_deref()
            .ok_or_else(|| Fault::shell_not_found(""))
    }

    fn create(&self, max_shells: usize) -> Result<Response<Bytes>, Fault> {
        let requested = soap::first(self.body, "Shell").and_then(|e| e.attr("ShellId"));
        let output_streams = soap::first(self.body, "OutputStreams")
            .map(|e| e.text())
            .unwrap_or_else(|| "stdout stderr".to_owned());
        let id = lock(&self.ex.state).create(
            &self.who.user_key,
            &self.who.display,
            requested,
            max_shells,
        )?;
        let (id, uri) = (soap::escape(&id), soap::escape(&self.env.resource_uri));
        let body = format!(
            "<x:ResourceCreated><a:Address>https://{machine}{COOKIE_PATH}</a:Address><a:ReferenceParameters>\
             <w:ResourceURI>{uri}</w:ResourceURI><w:SelectorSet><w:Selector Name=\"ShellId\">{id}</w:Selector>\
             </w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>\
             <rsp:Shell><rsp:ShellId>{id}</rsp:ShellId><rsp:ResourceUri>{uri}</rsp:ResourceUri>\
             <rsp:Owner>{owner}</rsp:Owner><rsp:ClientIP>127.0.0.1</rsp:ClientIP><rsp:IdleTimeOut>PT900.000S</rsp:IdleTimeOut>\
             <rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>{streams}</rsp:OutputStreams>\
             <rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity></rsp:Shell>",
            machine = soap::escape(self.machine),
            owner = soap::escape(&self.who.display),
            streams = soap::escape(&output_streams),
        );
        Ok(self.ok(ACTION_CREATE, &body))
    }

    fn command(&self) -> Result<Response<Bytes>, Fault> {
        let mut words: Vec<String> = soap::first(self.body, "Command")
            .map(|e| e.text())
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        words.extend(
            soap::elements(self.body, "Arguments")
                .iter()
                .map(|e| e.text()),
        );
        let id = lock(&self.ex.state).command(&self.who.user_key, self.shell_id()?, &words)?;
        let body = format!(
            "<rsp:CommandResponse><rsp:CommandId>{}</rsp:CommandId></rsp:CommandResponse>",
            soap::escape(&id)
        );
        Ok(self.ok(ACTION_COMMAND, &body))
    }

    /// Long-poll: answer as soon as there is output or a state change, else time out.
    async fn receive(&self, cap: Duration) -> Result<Response<Bytes>, Fault> {
        let shell_id = self.shell_id()?;
        let command_id = soap::first(self.body, "DesiredStream").and_then(|e| e.attr("CommandId"));
        let limit = self
            .env
            .operation_timeout
            .unwrap_or(DEFAULT_OPERATION_TIMEOUT)
            .min(cap);
        let user = &self.who.user_key;
        let wait = async {
            loop {
                let notify = lock(&self.ex.state).notifier(user, shell_id)?;
                let notified = notify.notified();
                tokio::pin!(notified);
                // Register before looking, so output produced in between still wakes us.
                notified.as_mut().enable();
                let polled =
                    lock(&self.ex.state).take_output(user, shell_id, command_id.as_deref());
                if let Some(output) = polled? {
                    return Ok(output);
                }
                notified.await;
            }
        };
        let output = tokio::time::timeout(limit, wait)
            .await
            .map_err(|_elapsed| Fault::timed_out())??;
        Ok(self.ok(ACTION_RECEIVE, &receive_body(&output)))
    }

    fn send(&self) -> Result<Response<Bytes>, Fault> {
        let stream = soap::first(self.body, "Stream")
            .ok_or_else(|| Fault::unsupported("Send without Stream"))?;
        let data = STANDARD
            .decode(stream.text())
            .map_err(|_| Fault::unsupported("Send stream is not base64"))?;
        let end = stream
            .attr("End")
            .is_some_and(|e| e.eq_ignore_ascii_case("true"));
        let command_id = stream.attr("CommandId");
        lock(&self.ex.state).send(
            &self.who.user_key,
            self.shell_id()?,
            command_id.as_deref(),
            &data,
            end,
        )?;
        Ok(self.ok(ACTION_SEND, "<rsp:SendResponse/>"))
    }

    fn signal(&self) -> Result<Response<Bytes>, Fault> {
        let command_id = soap::first(self.body, "Signal")
            .and_then(|e| e.attr("CommandId"))
            .unwrap_or_default();
        let code = soap::first(self.body, "Code")
            .map(|e| e.text())
            .unwrap_or_default();
        lock(&self.ex.state).signal(&self.who.user_key, self.shell_id()?, &command_id, &code)?;
        Ok(self.ok(ACTION_SIGNAL, "<rsp:SignalResponse/>"))
    }

    fn delete(&self) -> Result<Response<Bytes>, Fault> {
        lock(&self.ex.state).delete(&self.who.user_key, self.shell_id()?)?;
        Ok(self.ok(ACTION_DELETE, ""))
    }

    /// 200 with the response action `<request action>Response`.
    fn ok(&self, action: &str, body: &str) -> Response<Bytes> {
        let xml = soap::response(&format!("{action}Response"), &self.env.message_id, body);
        soap_response(StatusCode::OK, xml)
    }

    fn fault(&self, fault: &Fault) -> Response<Bytes> {
        fault_response(fault, &self.env.message_id, self.machine)
    }
}

/// `rsp:ReceiveResponse` with base64 streams and the command state.
fn receive_body(output: &shell::Output) -> String {
    let id = soap::escape(&output.command_id);
    let mut body = String::from("<rsp:ReceiveResponse>");
    for (name, data) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        if !data.is_empty() {
            body.push_str(&format!(
                "<rsp:Stream Name=\"{name}\" CommandId=\"{id}\">{}</rsp:Stream>",
                STANDARD.encode(data)
            ));
        }
    }
    match output.exit_code {
        Some(code) => body.push_str(&format!(
            "<rsp:CommandState CommandId=\"{id}\" State=\"{STATE_DONE}\"><rsp:ExitCode>{code}</rsp:ExitCode></rsp:CommandState>"
        )),
        None => body.push_str(&format!("<rsp:CommandState CommandId=\"{id}\" State=\"{STATE_RUNNING}\"/>")),
    }
    body.push_str("</rsp:ReceiveResponse>");
    body
}

/// WinRM sends every fault as HTTP 500 (a TimedOut Receive included: clients treat it as normal).
fn fault_response(fault: &Fault, relates_to: &str, machine: &str) -> Response<Bytes> {
    soap_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        fault.to_xml(relates_to, machine),
    )
}

fn soap_response(status: StatusCode, xml: String) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(xml));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/soap+xml;charset=UTF-8"),
    );
    resp
}

fn status_only(status: StatusCode) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = status;
    resp
}
