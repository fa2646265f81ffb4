//! `GET /{tenant}/oauth2/v2.0/authorize` (RFC 6749 §4.1.1, PKCE RFC 7636, docs/PROTOCOL.md#authorize):
//! signs in
//! without a page and 302s to the loopback `redirect_uri` with `code` and `state`.
//!
//! Who signs in: the control plane's "sign in as" override, else a known `login_hint`, else the
//! configured default user. Redirect URIs allowed: `http://localhost[:port]/...`,
//! `http://127.0.0.1[:port]/...`, the `nativeclient` page of an authority host, and the OOB URN.

use std::collections::HashMap;

use bytes::Bytes;
use http::{Response, StatusCode};
use tokio::time::Instant;

use super::Ctx;
use super::errors::AadError;
use crate::config::AUTHORITY_HOSTS;
use crate::ids::{guid, opaque};
use crate::state::AuthCode;
use crate::wire::{self, percent_encode};

pub(super) fn handle(ctx: &Ctx<'_>) -> Response<Bytes> {
    ctx.shared.with(|s| s.counters.authorize_requests += 1);
    let q = wire::query(ctx.req);
    let (client_id, redirect_uri) = match trusted_client_and_redirect(ctx, &q) {
        Ok(pair) => pair,
        Err(e) => return error_page(&e),
    };
    let get = |k: &str| q.get(k).cloned();
    let state = get("state");
    let challenge = get("code_challenge");
    let refusal = if get("response_type").as_deref() != Some("code") {
        Some((
            "unsupported_response_type",
            "AADSTS700054: response_type must be 'code'.",
        ))
    } else if challenge.is_some() && get("code_challenge_method").as_deref() != Some("S256") {
        Some((
            "invalid_request",
            "AADSTS501491: code_challenge_method must be 'S256'.",
        ))
    } else {
        None
    };
    if let Some((error, description)) = refusal {
        return redirect_error(&redirect_uri, error, description, state.as_deref());
    }
    let auth = AuthCode {
        client_id,
        redirect_uri: redirect_uri.clone(),
        code_challenge: challenge,
        upn: signed_in_user(ctx, get("login_hint").as_deref()),
        scope: get("scope").unwrap_or_default(),
        claims: get("claims"),
        nonce: get("nonce"),
        expires: Instant::now() + ctx.shared.config.auth_code_lifetime,
        redeemed: false,
    };
    let code = format!("1.exosim.{}", opaque(48));
    ctx.shared.with(|s| s.auth_codes.insert(code.clone(), auth));
    let mut params = vec![("code", code), ("session_state", guid())];
    if let Some(state) = state {
        params.push(("state", state));
    }
    wire::redirect(&with_query(&redirect_uri, &params))
}

/// Errors here show a page instead of redirecting: the redirect target cannot be trusted yet.
fn trusted_client_and_redirect(
    ctx: &Ctx<'_>,
    q: &HashMap<String, String>,
) -> Result<(String, String), AadError> {
    ctx.tenant()?;
    let client_id = q.get("client_id").cloned().unwrap_or_default();
    let client = ctx
        .shared
        .client(&client_id)
        .ok_or_else(|| AadError::unknown_client(&client_id))?;
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    if !redirect_allowed(&redirect_uri) {
        return Err(AadError::invalid_request(
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'.",
                client.id
            ),
        ));
    }
    Ok((client.id, redirect_uri))
}

/// The override, else a known hint, else the default user.
fn signed_in_user(ctx: &Ctx<'_>, hint: Option<&str>) -> String {
    let config = &ctx.shared.config;
    let forced = ctx.shared.with(|s| s.sign_in_as.clone());
    forced
        .or_else(|| hint.and_then(|h| config.user(h)).map(|u| u.upn.clone()))
        .unwrap_or_else(|| config.default_user.clone())
}

fn redirect_allowed(uri: &str) -> bool {
    let loopback = ["http://localhost", "http://127.0.0.1", "http://[::1]"]
        .iter()
        .any(|prefix| {
            uri.strip_prefix(prefix).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with(':') || rest.starts_with('/')
            })
        });
    let native = AUTHORITY_HOSTS.iter().any(|h| {
        uri.strip_prefix("https://")
            .and_then(|r| r.strip_prefix(h))
            .is_some_and(|p| p.ends_with("/oauth2/nativeclient"))
    });
    loopback || native || uri == "urn:ietf:wg:oauth:2.0:oob"
}

fn with_query(uri: &str, params: &[(&str, String)]) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    format!("{uri}{sep}{}", query.join("&"))
}

fn redirect_error(
    uri: &str,
    error: &str,
    description: &str,
    state: Option<&str>,
) -> Response<Bytes> {
    let mut params = vec![
        ("error", error.to_string()),
        ("error_description", description.to_string()),
    ];
    if let Some(state) = state {
        params.push(("state", state.to_string()));
    }
    wire::redirect(&with_query(uri, &params))
}

/// Entra shows an error page (no redirect) when the client or redirect URI cannot be trusted.
fn error_page(e: &AadError) -> Response<Bytes> {
    let body = format!(
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body><h1>Sorry, but we're having trouble signing you in.</h1><p>AADSTS{}: {}</p></body></html>",
        e.code,
        wire::html_escape(&e.message)
    );
    wire::html(StatusCode::BAD_REQUEST, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_native_and_oob_redirects_are_allowed() {
        assert!(redirect_allowed("http://localhost:53124/"));
        assert!(redirect_allowed("http://127.0.0.1:8400"));
        assert!(redirect_allowed(
            "https://login.microsoftonline.com/common/oauth2/nativeclient"
        ));
        assert!(redirect_allowed("urn:ietf:wg:oauth:2.0:oob"));
        assert!(!redirect_allowed("http://localhost.evil.test/"));
        assert!(!redirect_allowed("https://evil.test/cb"));
    }
}
