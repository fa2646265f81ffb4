//! The token endpoint (v2 `/oauth2/v2.0/token`, v1 `/oauth2/token`): one function per grant type
//! (docs/PROTOCOL.md#token-responses, docs/PROTOCOL.md#emulator). Each grant resolves *who* (a
//! [`Subject`]) and *what*
//! (an [`Issue`]); [`issue::token_response`] mints the answer.

use std::collections::HashMap;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Response, StatusCode};
use ring::digest::{SHA256, digest};
use tokio::time::Instant;

use super::errors::AadError;
use super::issue::{self, Issue, Subject};
use super::scope::{ClaimsRequest, Scopes};
use super::{Ctx, TenantSel, assertion};
use crate::config::{Client, Tenant, User};
use crate::ids::b64url;
use crate::state::{DeviceStatus, GrantType};
use crate::wire;

const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

type Form = HashMap<String, String>;

/// `POST .../token`.
pub(super) fn handle(ctx: &Ctx<'_>, v1: bool) -> Response<Bytes> {
    let form = wire::form(ctx.req.body());
    let grant = grant_type(form.get("grant_type").map(String::as_str));
    ctx.shared.with(|s| {
        s.counters.token_requests += 1;
        s.count_grant(grant);
    });
    match run_grant(ctx, &form, grant, v1) {
        Ok(body) => wire::json(StatusCode::OK, &body),
        Err(e) => e.into_response(ctx.req),
    }
}

fn grant_type(value: Option<&str>) -> GrantType {
    match value {
        Some(DEVICE_CODE) | Some("device_code") => GrantType::DeviceCode,
        Some("refresh_token") => GrantType::RefreshToken,
        Some("client_credentials") => GrantType::ClientCredentials,
        Some("authorization_code") => GrantType::AuthorizationCode,
        _ => GrantType::Other,
    }
}

fn run_grant(
    ctx: &Ctx<'_>,
    form: &Form,
    grant: GrantType,
    v1: bool,
) -> Result<serde_json::Value, AadError> {
    if !v1 && form.contains_key("resource") {
        return Err(AadError::invalid_request(
            901002,
            "The 'resource' request parameter isn't supported.",
        ));
    }
    let tenant = ctx.tenant()?;
    let client = client(ctx, form)?;
    if grant != GrantType::Other {
        assertion::authenticate(ctx, form, &client)?;
    }
    let (subject, issue) = match grant {
        GrantType::DeviceCode => device_code(ctx, form, client, &tenant, v1)?,
        GrantType::RefreshToken => refresh_token(ctx, form, client, v1)?,
        GrantType::ClientCredentials => client_credentials(ctx, form, client, &tenant, v1)?,
        GrantType::AuthorizationCode => authorization_code(ctx, form, client, &tenant, v1)?,
        GrantType::Other => return Err(unsupported_grant(form)),
    };
    issue::token_response(ctx.shared, &subject, &issue)
}

fn unsupported_grant(form: &Form) -> AadError {
    match form.get("grant_type") {
        None => AadError::missing("grant_type"),
        Some(g) => AadError::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{g}'."),
        ),
    }
}

fn client(ctx: &Ctx<'_>, form: &Form) -> Result<Client, AadError> {
    let id = form
        .get("client_id")
        .ok_or_else(|| AadError::missing("client_id"))?;
    ctx.shared
        .client(id)
        .ok_or_else(|| AadError::unknown_client(id))
}

/// Build the [`Issue`] for a request's `scope`/`resource`, `claims` and friends.
fn issue_for(
    ctx: &Ctx<'_>,
    form: &Form,
    scope: Option<&str>,
    claims: Option<&str>,
    v1: bool,
) -> Result<Issue, AadError> {
    let scope_text = scope.unwrap_or_default().to_string();
    let scopes = if v1 {
        let resource = form
            .get("resource")
            .ok_or_else(|| AadError::missing("resource"))?;
        Scopes::v1(resource, scope)
    } else {
        Scopes::parse_v2(&scope_text)?
    };
    let refused = ctx.shared.with(|s| {
        s.scope_errors
            .get(&scopes.resource.trim_end_matches('/').to_ascii_lowercase())
            .copied()
    });
    if let Some(code) = refused {
        return Err(scope_error(code, &scopes.resource, &scope_text, form));
    }
    Ok(Issue {
        scopes,
        claims: ClaimsRequest::parse(claims)?,
        nonce: None,
        v1,
        rt_scope: scope_text,
        client_info: form.get("client_info").is_some_and(|v| v == "1"),
        authority: ctx.host.to_string(),
    })
}

fn user_subject(ctx: &Ctx<'_>, upn: &str, client: Client) -> Result<Subject, AadError> {
    let user: User = ctx.shared.config.user(upn).cloned().ok_or_else(|| {
        AadError::invalid_grant(
            50034,
            format!("The user account {upn} does not exist in the directory."),
        )
    })?;
    let tenant: Tenant = ctx
        .shared
        .config
        .tenant_by_id(&user.tenant_id)
        .cloned()
        .ok_or_else(|| AadError::tenant_not_found(&user.tenant_id))?;
    Ok(Subject {
        user: Some(user),
        client,
        tenant,
    })
}

// --- device_code (RFC 8628 §3.4-3.5) ---

fn device_code(
    ctx: &Ctx<'_>,
    form: &Form,
    client: Client,
    _tenant: &TenantSel,
    v1: bool,
) -> Result<(Subject, Issue), AadError> {
    let code = form
        .get("device_code")
        .or_else(|| form.get("code"))
        .ok_or_else(|| AadError::missing("device_code"))?;
    let grant = ctx.shared.with(|s| poll_device(s, code, &client.id))?;
    // ADAL repeats `resource` when polling; without it the stored request decides.
    let v1 = v1 && form.contains_key("resource");
    let mut issue = issue_for(ctx, form, Some(&grant.scope), grant.claims.as_deref(), v1)?;
    issue.rt_scope = grant.scope.clone();
    let subject = user_subject(ctx, &grant.upn, client)?;
    Ok((subject, issue))
}

/// An approved device code's user and request.
struct ApprovedDevice {
    upn: String,
    scope: String,
    claims: Option<String>,
}

fn poll_device(
    s: &mut crate::state::State,
    code: &str,
    client_id: &str,
) -> Result<ApprovedDevice, AadError> {
    let slow_down = s.slow_down_polls > 0;
    let Some(grant) = s
        .devices
        .iter_mut()
        .find(|d| d.device_code == code && d.client_id == client_id)
    else {
        return Err(device_error(DeviceError::BadCode));
    };
    if slow_down {
        s.slow_down_polls -= 1;
        return Err(device_error(DeviceError::SlowDown));
    }
    if grant.status != DeviceStatus::Redeemed && Instant::now() >= grant.expires {
        return Err(device_error(DeviceError::Expired));
    }
    match grant.status.clone() {
        DeviceStatus::Pending => Err(device_error(DeviceError::Pending)),
        DeviceStatus::Declined => Err(device_error(DeviceError::Declined)),
        DeviceStatus::Redeemed => Err(device_error(DeviceError::Redeemed)),
        DeviceStatus::Approved(upn) => {
            grant.status = DeviceStatus::Redeemed;
            Ok(ApprovedDevice {
                upn,
                scope: grant.scope.clone(),
                claims: grant.claims.clone(),
            })
        }
    }
}

/// Why a device-code poll gets no tokens (RFC 8628 §3.5 errors with Entra's codes).
enum DeviceError {
    BadCode,
    SlowDown,
    Expired,
    Pending,
    Declined,
    Redeemed,
}

fn device_error(e: DeviceError) -> AadError {
    match e {
        DeviceError::BadCode => AadError::new(
            "bad_verification_code",
            70018,
            "Invalid verification code due to User typing in wrong user code for device code flow.",
        ),
        DeviceError::SlowDown => AadError::new(
            "slow_down",
            70016,
            "Polling too frequently; increase the interval by 5 seconds.",
        ),
        DeviceError::Expired => AadError::new("expired_token", 70019, "Verification code expired."),
        DeviceError::Pending => AadError::new(
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        ),
        DeviceError::Declined => AadError::new(
            "authorization_declined",
            65004,
            "User declined to consent to access the app.",
        ),
        DeviceError::Redeemed => {
            AadError::invalid_grant(54005, "The device code was already redeemed.")
        }
    }
}

// --- refresh_token (RFC 6749 §6; Entra rotates on every use and keeps the old one valid) ---

fn refresh_token(
    ctx: &Ctx<'_>,
    form: &Form,
    client: Client,
    v1: bool,
) -> Result<(Subject, Issue), AadError> {
    let token = form
        .get("refresh_token")
        .ok_or_else(|| AadError::missing("refresh_token"))?;
    let record = ctx.shared.with(|s| -> Result<_, AadError> {
        if let Some(code) = s.refresh_error {
            return Err(forced_refresh_error(code));
        }
        let record = s.refresh_tokens.get(token).cloned().ok_or_else(|| {
            AadError::invalid_grant(9002313, "Invalid request. Request is malformed or invalid.")
        })?;
        let revoked_after = s.valid_from.get(&record.upn.to_ascii_lowercase()).copied();
        Ok((record, revoked_after))
    });
    let (record, valid_from) = record?;
    if record.client_id != client.id {
        return Err(AadError::invalid_grant(
            70000,
            "The refresh token was issued to a different client.",
        ));
    }
    if let Some(valid_from) = valid_from.filter(|vf| record.issued < *vf) {
        return Err(revoked(record.issued, valid_from));
    }
    if SystemTime::now() >= record.expires {
        return Err(AadError::invalid_grant(
            700082,
            "The refresh token has expired due to inactivity. The token was issued on a date more than 90 days ago and was inactive.",
        ));
    }
    let scope = form.get("scope").cloned().unwrap_or(record.scope.clone());
    let mut issue = issue_for(
        ctx,
        form,
        Some(&scope),
        form.get("claims").map(String::as_str),
        v1,
    )?;
    // Refreshing always rotates: the answer carries a new refresh token.
    issue.scopes.offline_access = true;
    Ok((user_subject(ctx, &record.upn, client)?, issue))
}

fn revoked(issued: SystemTime, valid_from: SystemTime) -> AadError {
    let stamp = |t: SystemTime| time::OffsetDateTime::from(t).unix_timestamp();
    AadError::invalid_grant(
        50173,
        format!(
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '{}' and the TokensValidFrom date (before which tokens are not valid) for this user is '{}'.",
            stamp(issued),
            stamp(valid_from)
        ),
    )
}

/// A refusal of the requested resource in Entra's shapes (`/scope-error`).
fn scope_error(code: u32, resource: &str, scope: &str, form: &Form) -> AadError {
    let client = form
        .get("client_id")
        .map(String::as_str)
        .unwrap_or_default();
    match code {
        650057 => AadError::new(
            "invalid_client",
            code,
            format!(
                "Invalid resource. The client has requested access to a resource which is not listed in the requested permissions in the client's application registration. Client app ID: {client}. Resource value from request: {resource}. Resource app ID: 00000002-0000-0ff1-ce00-000000000000. List of valid resources from app registration: 00000003-0000-0000-c000-000000000000."
            ),
        ),
        500011 => AadError::new(
            "invalid_resource",
            code,
            format!(
                "The resource principal named {resource} was not found in the tenant named contoso. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        ),
        _ => AadError::new(
            "invalid_scope",
            code,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        ),
    }
}

/// The scenario switch: `invalid_grant` (or `interaction_required`) with a chosen AADSTS code.
fn forced_refresh_error(code: u32) -> AadError {
    match code {
        50076 | 50079 => AadError::invalid_grant(code, "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource.").suberror("basic_action"),
        65001 => AadError::invalid_grant(code, "The user or administrator has not consented to use the application.").suberror("consent_required"),
        70043 => AadError::invalid_grant(code, "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access."),
        53003 => AadError::invalid_grant(code, "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."),
        700082 => AadError::invalid_grant(code, "The refresh token has expired due to inactivity."),
        _ => AadError::invalid_grant(code, "The provided grant has expired due to it being revoked, a fresh auth token is needed."),
    }
}

// --- client_credentials (app-only, docs/PROTOCOL.md#client-assertion) ---

fn client_credentials(
    ctx: &Ctx<'_>,
    form: &Form,
    client: Client,
    tenant: &TenantSel,
    v1: bool,
) -> Result<(Subject, Issue), AadError> {
    let tenant = match tenant {
        TenantSel::Multi(name @ ("common" | "consumers")) => {
            return Err(AadError::invalid_request(
                9001023,
                format!(
                    "The grant type isn't supported over the /{name} or /consumers endpoints. Please use the /organizations or tenant-specific endpoint."
                ),
            ));
        }
        TenantSel::Multi(_) => home_tenant(ctx, &client)?,
        TenantSel::Specific(t) => t.clone(),
    };
    let scope = form.get("scope").cloned().unwrap_or_default();
    if !v1 && !scope.trim().ends_with("/.default") {
        return Err(AadError::invalid_request(
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    let mut issue = issue_for(
        ctx,
        form,
        Some(&scope),
        form.get("claims").map(String::as_str),
        v1,
    )?;
    issue.scopes.offline_access = false;
    issue.scopes.openid = false;
    Ok((
        Subject {
            user: None,
            client,
            tenant,
        },
        issue,
    ))
}

fn home_tenant(ctx: &Ctx<'_>, client: &Client) -> Result<Tenant, AadError> {
    client
        .home_tenant
        .as_deref()
        .and_then(|id| ctx.shared.config.tenant_by_id(id))
        .cloned()
        .ok_or_else(|| AadError::tenant_not_found("organizations"))
}

// --- authorization_code with PKCE (RFC 6749 §4.1.3, RFC 7636 §4.6) ---

fn authorization_code(
    ctx: &Ctx<'_>,
    form: &Form,
    client: Client,
    _tenant: &TenantSel,
    v1: bool,
) -> Result<(Subject, Issue), AadError> {
    let code = form.get("code").ok_or_else(|| AadError::missing("code"))?;
    let auth = ctx.shared.with(|s| -> Result<_, AadError> {
        let auth = s.auth_codes.get_mut(code).ok_or_else(|| {
            AadError::invalid_grant(9002313, "Invalid request. Request is malformed or invalid.")
        })?;
        if auth.redeemed {
            return Err(AadError::invalid_grant(54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token."));
        }
        auth.redeemed = true;
        Ok(auth.clone())
    })?;
    if Instant::now() >= auth.expires {
        return Err(AadError::invalid_grant(
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        ));
    }
    if auth.client_id != client.id || form.get("redirect_uri") != Some(&auth.redirect_uri) {
        return Err(AadError::invalid_grant(
            70000,
            "The provided value for the 'redirect_uri' or 'client_id' does not match the authorization request.",
        ));
    }
    check_pkce(
        auth.code_challenge.as_deref(),
        form.get("code_verifier").map(String::as_str),
    )?;
    let mut issue = issue_for(ctx, form, Some(&auth.scope), auth.claims.as_deref(), v1)?;
    issue.nonce = auth.nonce.clone();
    Ok((user_subject(ctx, &auth.upn, client)?, issue))
}

/// `BASE64URL(SHA256(code_verifier)) == code_challenge` (S256).
fn check_pkce(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), AadError> {
    let Some(challenge) = challenge else {
        return Ok(());
    };
    let computed = verifier.map(|v| b64url(digest(&SHA256, v.as_bytes()).as_ref()));
    if computed.as_deref() == Some(challenge) {
        Ok(())
    } else {
        Err(AadError::invalid_grant(
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(
            check_pkce(
                Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
                Some(verifier)
            )
            .is_ok()
        );
        assert_eq!(
            check_pkce(
                Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
                Some("wrong")
            )
            .unwrap_err()
            .code,
            501481
        );
        assert!(check_pkce(None, None).is_ok());
    }

    #[test]
    fn grant_types_are_recognised() {
        assert_eq!(grant_type(Some(DEVICE_CODE)), GrantType::DeviceCode);
        assert_eq!(grant_type(Some("password")), GrantType::Other);
    }
}
