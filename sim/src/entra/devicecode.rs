//! `POST /{tenant}/oauth2/v2.0/devicecode` (RFC 8628 §3.1-3.2, docs/PROTOCOL.md#device-code): issues a
//! device code
//! and a user code. Approval comes from the control plane (or at once in auto-approve mode).
//! The v1 endpoint (`/oauth2/devicecode`, ADAL era) takes `resource=` and answers `verification_url`.

use std::collections::HashMap;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::json;
use tokio::time::Instant;

use super::Ctx;
use super::errors::AadError;
use super::scope::{ClaimsRequest, Scopes};
use crate::ids::{opaque, user_code};
use crate::state::{DeviceGrant, DeviceStatus};
use crate::wire;

/// Entra's own verification page; the emulator never serves it (approval is a control call).
const VERIFICATION_URI: &str = "https://microsoft.com/devicelogin";

pub(super) fn handle(ctx: &Ctx<'_>, v1: bool) -> Response<Bytes> {
    ctx.shared.with(|s| s.counters.devicecode_requests += 1);
    match issue(ctx, v1) {
        Ok(body) => wire::json(StatusCode::OK, &body),
        Err(e) => e.into_response(ctx.req),
    }
}

fn issue(ctx: &Ctx<'_>, v1: bool) -> Result<serde_json::Value, AadError> {
    let form = wire::form(ctx.req.body());
    let (client_id, scope) = validate(ctx, &form, v1)?;
    let config = &ctx.shared.config;
    let mut grant = DeviceGrant {
        device_code: format!("DAQABAAEAAAD{}", opaque(96)),
        user_code: user_code(),
        client_id,
        scope,
        claims: form.get("claims").cloned(),
        expires: Instant::now() + config.device_code_lifetime,
        status: DeviceStatus::Pending,
    };
    let body = answer(ctx, &grant, v1);
    ctx.shared.with(|s| {
        if s.auto_approve {
            let upn = s
                .sign_in_as
                .clone()
                .unwrap_or_else(|| config.default_user.clone());
            grant.status = DeviceStatus::Approved(upn);
        }
        s.devices.push(grant);
    });
    Ok(body)
}

/// Check the request; returns the client id and the scope to remember (v1: built from `resource`).
fn validate(
    ctx: &Ctx<'_>,
    form: &HashMap<String, String>,
    v1: bool,
) -> Result<(String, String), AadError> {
    if !v1 && form.contains_key("resource") {
        return Err(AadError::invalid_request(
            901002,
            "The 'resource' request parameter isn't supported.",
        ));
    }
    ctx.tenant()?;
    let client_id = form
        .get("client_id")
        .ok_or_else(|| AadError::missing("client_id"))?;
    let client = ctx
        .shared
        .client(client_id)
        .ok_or_else(|| AadError::unknown_client(client_id))?;
    if !client.is_public() {
        return Err(AadError::invalid_client(
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    }
    let scope = match (v1, form.get("resource")) {
        (true, Some(resource)) => {
            format!("{}/.default offline_access", resource.trim_end_matches('/'))
        }
        (true, None) => return Err(AadError::missing("resource")),
        (false, _) => form
            .get("scope")
            .cloned()
            .ok_or_else(|| AadError::missing("scope"))?,
    };
    Scopes::parse_v2(&scope)?;
    ClaimsRequest::parse(form.get("claims").map(String::as_str))?;
    Ok((client.id, scope))
}

fn answer(ctx: &Ctx<'_>, grant: &DeviceGrant, v1: bool) -> serde_json::Value {
    let config = &ctx.shared.config;
    let mut body = json!({
        "user_code": grant.user_code,
        "device_code": grant.device_code,
        "verification_uri": VERIFICATION_URI,
        "expires_in": config.device_code_lifetime.as_secs(),
        "interval": config.device_code_interval.as_secs().max(1),
        "message": format!("To sign in, use a web browser to open the page {VERIFICATION_URI} and enter the code {} to authenticate.", grant.user_code),
    });
    if v1 {
        body["verification_url"] = json!(VERIFICATION_URI);
    }
    body
}
