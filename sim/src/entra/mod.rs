//! Entra ID on the authority hosts: discovery, JWKS, device code, token (v2 and v1), authorize, and
//! home-realm discovery. Routes by path; the login-host faults of the control plane apply to the POST
//! endpoints here.
//!
//! Paths (tenant = `common`, `organizations`, `consumers`, a tenant GUID or one of its domains):
//! `GET /{tenant}/v2.0/.well-known/openid-configuration`, `GET /{tenant}/discovery/v2.0/keys`,
//! `POST /{tenant}/oauth2/v2.0/devicecode`, `POST /{tenant}/oauth2/v2.0/token`,
//! `GET /{tenant}/oauth2/v2.0/authorize`, `POST /{tenant}/oauth2/token` (v1, `resource=`),
//! `GET /common/userrealm/{upn}`, `GET /getuserrealm.srf`, `GET /common/discovery/instance`.

mod assertion;
mod authorize;
mod devicecode;
mod discovery;
pub(crate) mod errors;
mod issue;
mod scope;
mod token;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};

use crate::config::Tenant;
use crate::state::{LoginFault, Shared};
use crate::wire::{self, Request};
use errors::AadError;

pub(crate) use discovery::cloud_instance_name;

/// Per-request context for the Entra handlers.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    /// The authority host the request came to (lower case, no port).
    pub(crate) host: &'a str,
    /// The tenant path segment as sent.
    pub(crate) tenant_path: &'a str,
    pub(crate) req: &'a Request,
}

/// The tenant a path segment names.
#[derive(Debug, Clone)]
pub(crate) enum TenantSel {
    /// `common`, `organizations` or `consumers`: the user decides.
    Multi(&'static str),
    Specific(Tenant),
}

/// Route one request to an authority host.
pub(crate) async fn handle(shared: &Shared, host: &str, req: Request) -> Response<Bytes> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let Some(resp) = crate::userrealm::handle(shared, host, &req, &segments) {
        return resp;
    }
    let Some((tenant_path, rest)) = segments.split_first() else {
        return wire::not_found();
    };
    let ctx = Ctx {
        shared,
        host,
        tenant_path,
        req: &req,
    };
    let is_post = req.method() == Method::POST;
    match (rest, is_post) {
        (["v2.0", ".well-known", "openid-configuration"], false) => {
            discovery::openid_configuration(&ctx, true)
        }
        ([".well-known", "openid-configuration"], false) => {
            discovery::openid_configuration(&ctx, false)
        }
        (["discovery", "v2.0", "keys"] | ["discovery", "keys"], false) => discovery::jwks(&ctx),
        (["discovery", "instance"], false) => discovery::instance(&ctx),
        (["oauth2", "v2.0", "devicecode"], true) => {
            faulted(&ctx, |c| devicecode::handle(c, false)).await
        }
        (["oauth2", "devicecode"], true) => faulted(&ctx, |c| devicecode::handle(c, true)).await,
        (["oauth2", "v2.0", "token"], true) => faulted(&ctx, |c| token::handle(c, false)).await,
        (["oauth2", "token"], true) => faulted(&ctx, |c| token::handle(c, true)).await,
        (["oauth2", "v2.0", "authorize"] | ["oauth2", "authorize"], false) => {
            authorize::handle(&ctx)
        }
        (["oauth2", "nativeclient"], false) => wire::html(StatusCode::OK, String::new()),
        _ => wire::not_found(),
    }
}

/// Mint the token endpoint's answer for `upn` + `client_id` + v2 `scope` without any flow (tests that
/// pre-seed a token cache). The refresh token is remembered like any other.
pub(crate) fn mint(
    shared: &Shared,
    upn: &str,
    client_id: &str,
    scope: &str,
) -> Result<serde_json::Value, AadError> {
    let client = shared
        .client(client_id)
        .ok_or_else(|| AadError::unknown_client(client_id))?;
    let user = shared.config.user(upn).cloned().ok_or_else(|| {
        AadError::invalid_grant(
            50034,
            format!("The user account {upn} does not exist in the directory."),
        )
    })?;
    let tenant = shared
        .config
        .tenant_by_id(&user.tenant_id)
        .cloned()
        .ok_or_else(|| AadError::tenant_not_found(&user.tenant_id))?;
    let issue = issue::Issue {
        scopes: scope::Scopes::parse_v2(scope)?,
        claims: scope::ClaimsRequest::default(),
        nonce: None,
        v1: false,
        rt_scope: scope.to_string(),
        client_info: false,
        authority: crate::config::AUTHORITY_HOSTS[0].to_string(),
    };
    issue::token_response(
        shared,
        &issue::Subject {
            user: Some(user),
            client,
            tenant,
        },
        &issue,
    )
}

/// Apply the delay and the 5xx/429 faults of the control plane before the endpoint runs.
async fn faulted(
    ctx: &Ctx<'_>,
    endpoint: impl FnOnce(&Ctx<'_>) -> Response<Bytes>,
) -> Response<Bytes> {
    let (delay, fault) = ctx.shared.with(|s| {
        let fault = s.take_fault(|f| matches!(f, LoginFault::Status(_) | LoginFault::Throttle(_)));
        if fault.is_some() {
            s.counters.faults_served += 1;
        }
        (s.token_delay, fault)
    });
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    match fault {
        Some(LoginFault::Status(code)) => fault_status(ctx, code),
        Some(LoginFault::Throttle(retry_after)) => throttled(ctx, retry_after),
        _ => endpoint(ctx),
    }
}

fn fault_status(ctx: &Ctx<'_>, code: u16) -> Response<Bytes> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    AadError::new(
        "temporarily_unavailable",
        90033,
        "A transient error has occurred. Please try again.",
    )
    .status(status)
    .into_response(ctx.req)
}

fn throttled(ctx: &Ctx<'_>, retry_after: Duration) -> Response<Bytes> {
    let mut resp = AadError::new(
        "temporarily_unavailable",
        90055,
        "The request was throttled. Please try again later.",
    )
    .status(StatusCode::TOO_MANY_REQUESTS)
    .into_response(ctx.req);
    if let Ok(value) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
        resp.headers_mut().insert(http::header::RETRY_AFTER, value);
    }
    resp
}

// === impl Ctx ===

impl Ctx<'_> {
    /// Resolve the tenant path segment.
    pub(crate) fn tenant(&self) -> Result<TenantSel, AadError> {
        match self.tenant_path.to_ascii_lowercase().as_str() {
            "common" => Ok(TenantSel::Multi("common")),
            "organizations" => Ok(TenantSel::Multi("organizations")),
            "consumers" => Ok(TenantSel::Multi("consumers")),
            other => self
                .shared
                .config
                .tenant(other)
                .cloned()
                .map(TenantSel::Specific)
                .ok_or_else(|| AadError::tenant_not_found(self.tenant_path)),
        }
    }

    /// `https://{host}` of this authority.
    pub(crate) fn authority(&self) -> String {
        format!("https://{}", self.host)
    }
}
