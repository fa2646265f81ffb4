//! The REST ("V3 module") endpoint: `POST /adminapi/{beta,v1.0}/{tenant}/InvokeCommand` with a
//! `CmdletInput` JSON body (PROTOCOL.md §1.9, §6 item 10).
//!
//! Order of checks: Bearer authentication (401) → throttle mode (429 + Retry-After + Rate-Limit-*) →
//! front door 302 to the tenant host (same path and query; clients re-POST), except that the Exchange
//! front door answers a request naming its mailbox in `X-AnchorMailbox` itself, routing by that
//! header, as scripts POSTing there rely on (S&C always redirects; docs/PROTOCOL.md#rest-adminapi)
//! → the cmdlet.
//! Answers are `{"value":[...]}` with `@odata.nextLink` while more pages remain; the link carries
//! `$skiptoken` and is POSTed again with the same body. Errors use the `{"error":{...}}` shape.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::auth::{self, Scheme};
use super::hosts::{self, HostInfo, Service};
use super::{Exchange, TokenCheck};

/// A parsed `/adminapi/{version}/{tenant}/{operation}` path.
#[derive(Debug)]
struct AdminPath {
    version: String,
    tenant: String,
    operation: String,
}

/// An error answer: status and the `{"error":{...}}` body.
#[derive(Debug)]
struct RestError {
    status: StatusCode,
    body: Value,
}

/// What a cmdlet produced: all its objects (paging slices them) or an error.
type CmdletResult = Result<Vec<Value>, RestError>;

/// Handle one request under `/adminapi/`.
pub(crate) fn handle(
    ex: &Exchange,
    info: &HostInfo,
    req: Request<Bytes>,
    tokens: &dyn TokenCheck,
) -> Response<Bytes> {
    let settings = ex.settings();
    if let Err(failure) = auth::authenticate_bearer(&req, info.audience(), tokens, settings.cae) {
        return auth::unauthorized(&failure, Scheme::Rest);
    }
    if let Some(retry_after) = settings.throttle {
        return throttled(retry_after.as_secs().max(1));
    }
    if info.front_door && !(info.service == Service::Exo && has_anchor(&req)) {
        return redirect(info, &req);
    }
    let Some(path) = AdminPath::parse(req.uri().path()) else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "No such adminapi resource.",
        );
    };
    if !path.operation.eq_ignore_ascii_case("InvokeCommand") {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "Only InvokeCommand is emulated.",
        );
    }
    if req.method() != http::Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "InvokeCommand takes POST.",
        );
    }
    let objects = match cmdlet_input(req.body()).and_then(|(name, params)| {
        run_cmdlet(info.service, &name, &params, &path, settings.mailboxes)
    }) {
        Ok(objects) => objects,
        Err(e) => return json_response(e.status, &e.body),
    };
    let page_size = max_page_size(&req)
        .unwrap_or(settings.page_size)
        .min(settings.page_size)
        .max(1);
    page(&req, info, &path, objects, page_size)
}

/// 429 as EXO's throttling answers: Retry-After plus the Rate-Limit-* family (values in seconds).
fn throttled(retry_after: u64) -> Response<Bytes> {
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "The request was throttled. Retry after the interval in the Retry-After header.",
    );
    let h = resp.headers_mut();
    h.insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
    h.insert("Rate-Limit-Limit", HeaderValue::from_static("100"));
    h.insert("Rate-Limit-Remaining", HeaderValue::from_static("0"));
    h.insert("Rate-Limit-Reset", HeaderValue::from(retry_after));
    resp
}

/// `X-AnchorMailbox` present and non-empty (`UPN:…`, `APP:SystemMailbox{…}@…`, a bare address): the
/// routing key that lets the front door proxy to the mailbox's server instead of redirecting.
fn has_anchor(req: &Request<Bytes>) -> bool {
    req.headers()
        .get("x-anchormailbox")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty())
}

fn redirect(info: &HostInfo, req: &Request<Bytes>) -> Response<Bytes> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = format!(
        "https://{}{}{path_and_query}",
        info.tenant_host(),
        hosts::port_suffix(req)
    );
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

// === impl AdminPath ===

impl AdminPath {
    fn parse(path: &str) -> Option<AdminPath> {
        let mut parts = path.trim_start_matches('/').split('/');
        if !parts.next()?.eq_ignore_ascii_case("adminapi") {
            return None;
        }
        let version = parts.next()?.to_ascii_lowercase();
        if version != "beta" && version != "v1.0" {
            return None;
        }
        let tenant = parts.next().filter(|t| !t.is_empty())?.to_owned();
        let operation = parts.next()?.to_owned();
        parts.next().is_none().then_some(AdminPath {
            version,
            tenant,
            operation,
        })
    }

    /// Domain for generated addresses: the tenant segment when it is a domain name.
    fn domain(&self) -> String {
        if self.tenant.contains('.') {
            self.tenant.to_ascii_lowercase()
        } else {
            "contoso.onmicrosoft.com".to_owned()
        }
    }
}

/// Read `{"CmdletInput":{"CmdletName":..., "Parameters":{...}}}`.
fn cmdlet_input(body: &[u8]) -> Result<(String, serde_json::Map<String, Value>), RestError> {
    let bad = || {
        RestError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The request body is not a valid CmdletInput.",
        )
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let input = v.get("CmdletInput").ok_or_else(bad)?;
    let name = input
        .get("CmdletName")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_owned();
    let params = input
        .get("Parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Ok((name, params))
}

fn run_cmdlet(
    service: Service,
    name: &str,
    params: &serde_json::Map<String, Value>,
    path: &AdminPath,
    mailboxes: usize,
) -> CmdletResult {
    let domain = path.domain();
    match (service, name.to_ascii_lowercase().as_str()) {
        (Service::Exo, "get-mailbox") => get_mailbox(params, &domain, mailboxes),
        (Service::Exo, "get-organizationconfig") => Ok(vec![organization_config(&domain)]),
        (Service::Exo, "get-accepteddomain") => Ok(accepted_domains(&domain)),
        (Service::Scc, "get-label") => Ok(labels()),
        (Service::Scc, "get-compliancesearch") => Ok(Vec::new()),
        _ => Err(unknown_cmdlet(name)),
    }
}

fn get_mailbox(
    params: &serde_json::Map<String, Value>,
    domain: &str,
    count: usize,
) -> CmdletResult {
    let all = (1..=count).map(|n| mailbox(n, domain));
    if let Some(identity) = params.get("Identity").and_then(Value::as_str) {
        let wanted = identity.to_ascii_lowercase();
        let found: Vec<Value> = all
            .filter(|m| {
                [
                    "Identity",
                    "Alias",
                    "PrimarySmtpAddress",
                    "UserPrincipalName",
                    "Name",
                ]
                .iter()
                .any(|k| {
                    m[*k]
                        .as_str()
                        .is_some_and(|v| v.eq_ignore_ascii_case(&wanted))
                })
            })
            .collect();
        if found.is_empty() {
            return Err(RestError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!(
                    "The operation couldn't be performed because object '{identity}' couldn't be found on '{domain}'."
                ),
            ));
        }
        return Ok(found);
    }
    let limit = match params.get("ResultSize") {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
        Some(Value::String(s)) if !s.eq_ignore_ascii_case("Unlimited") => s.parse().ok(),
        _ => None,
    };
    Ok(all.take(limit.unwrap_or(usize::MAX)).collect())
}

/// Mailbox number `n` of the generated set.
fn mailbox(n: usize, domain: &str) -> Value {
    let alias = format!("user{n:04}");
    let address = format!("{alias}@{domain}");
    json!({
        "Identity": alias,
        "Name": alias,
        "Alias": alias,
        "DisplayName": format!("User {n:04}"),
        "PrimarySmtpAddress": address,
        "UserPrincipalName": address,
        "RecipientTypeDetails": "UserMailbox",
        "ExchangeGuid": format!("00000000-0000-4000-8000-{n:012}"),
    })
}

fn organization_config(domain: &str) -> Value {
    json!({
        "Identity": domain,
        "Name": domain,
        "DisplayName": "Contoso",
        "OAuth2ClientProfileEnabled": true,
        "IsDehydrated": false,
    })
}

fn accepted_domains(domain: &str) -> Vec<Value> {
    vec![
        json!({"Identity": domain, "DomainName": domain, "DomainType": "Authoritative", "Default": true}),
    ]
}

fn labels() -> Vec<Value> {
    ["General", "Confidential"]
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"Name": name, "DisplayName": name, "Priority": i}))
        .collect()
}

/// The error EXO's REST front end returns for a cmdlet the session does not know.
fn unknown_cmdlet(name: &str) -> RestError {
    let message = format!(
        "The term '{name}' is not recognized as a name of a cmdlet, function, script file, or executable program."
    );
    let body = json!({"error": {
        "code": "BadRequest",
        "message": message,
        "details": [{"code": "Context", "target": "", "message": message}],
        "innererror": {
            "message": message,
            "type": "System.Management.Automation.CommandNotFoundException",
            "internalException": {"message": message},
        },
    }});
    RestError {
        status: StatusCode::BAD_REQUEST,
        body,
    }
}

/// `Prefer: odata.maxpagesize=N`.
fn max_page_size(req: &Request<Bytes>) -> Option<usize> {
    req.headers()
        .get_all("prefer")
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .filter_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
        .find_map(|n| n.trim().parse().ok())
}

/// `$skiptoken` from the query (also percent-encoded as `%24skiptoken`).
fn skip_token(req: &Request<Bytes>) -> usize {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| {
            k.eq_ignore_ascii_case("$skiptoken") || k.eq_ignore_ascii_case("%24skiptoken")
        })
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// One page of `objects`, with `@odata.nextLink` when more remain.
fn page(
    req: &Request<Bytes>,
    info: &HostInfo,
    path: &AdminPath,
    objects: Vec<Value>,
    size: usize,
) -> Response<Bytes> {
    let start = skip_token(req).min(objects.len());
    let end = start.saturating_add(size).min(objects.len());
    let mut body = json!({
        "@odata.context": format!("https://{}/adminapi/{}/{}/$metadata#Collection(Exchange.GenericHashTable)", info.name, path.version, path.tenant),
        "value": objects[start..end].to_vec(),
    });
    if end < objects.len() {
        body["@odata.nextLink"] = Value::String(format!(
            "https://{}{}/adminapi/{}/{}/InvokeCommand?%24skiptoken={end}",
            info.name,
            hosts::port_suffix(req),
            path.version,
            path.tenant
        ));
    }
    json_response(StatusCode::OK, &body)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Bytes> {
    let e = RestError::new(status, code, message);
    json_response(e.status, &e.body)
}

// === impl RestError ===

impl RestError {
    fn new(status: StatusCode, code: &str, message: &str) -> RestError {
        RestError {
            status,
            body: json!({"error": {"code": code, "message": message, "details": [], "innererror": {}}}),
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/json;odata.metadata=minimal;odata.streaming=true;charset=utf-8",
        ),
    );
    resp
}
