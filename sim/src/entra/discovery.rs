//! OpenID Connect discovery, the JWKS, and MSAL's instance discovery (docs/PROTOCOL.md#entra-endpoints,
//! docs/PROTOCOL.md#emulator).

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::json;

use super::{Ctx, TenantSel};
use crate::wire;

/// `/{tenant}/v2.0/.well-known/openid-configuration` (or the v1 document without `v2.0`).
pub(super) fn openid_configuration(ctx: &Ctx<'_>, v2: bool) -> Response<Bytes> {
    let tenant = match ctx.tenant() {
        Ok(t) => t,
        Err(e) => return e.into_response(ctx.req),
    };
    // Multi-tenant documents carry the `{tenantid}` placeholder, as Entra's do.
    let tid = match &tenant {
        TenantSel::Specific(t) => t.id.clone(),
        TenantSel::Multi(_) => "{tenantid}".to_string(),
    };
    let base = format!("{}/{}", ctx.authority(), ctx.tenant_path);
    let (oauth, issuer) = if v2 {
        (
            format!("{base}/oauth2/v2.0"),
            format!("{}/{tid}/v2.0", ctx.authority()),
        )
    } else {
        (
            format!("{base}/oauth2"),
            format!("https://sts.windows.net/{tid}/"),
        )
    };
    let cloud = cloud_instance_name(ctx.host);
    let body = json!({
        "token_endpoint": format!("{oauth}/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/discovery/{}keys", if v2 { "v2.0/" } else { "" }),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{oauth}/authorize"),
        "device_authorization_endpoint": format!("{oauth}/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{oauth}/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{base}/kerberos"),
        "tenant_region_scope": "NA",
        "cloud_instance_name": cloud,
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    });
    wire::json(StatusCode::OK, &body)
}

/// `/{tenant}/discovery/v2.0/keys`.
pub(super) fn jwks(ctx: &Ctx<'_>) -> Response<Bytes> {
    let issuer = format!("{}/{{tenantid}}/v2.0", ctx.authority());
    wire::json(StatusCode::OK, &ctx.shared.signer.jwks(&issuer))
}

/// `/common/discovery/instance?api-version=1.1&authorization_endpoint=...` (MSAL instance discovery).
pub(super) fn instance(ctx: &Ctx<'_>) -> Response<Bytes> {
    let body = json!({
        "tenant_discovery_endpoint": format!("{}/{}/v2.0/.well-known/openid-configuration", ctx.authority(), ctx.tenant_path),
        "api-version": "1.1",
        "metadata": [{"preferred_network": ctx.host, "preferred_cache": ctx.host, "aliases": [ctx.host]}],
    });
    wire::json(StatusCode::OK, &body)
}

/// `microsoftonline.com`, `microsoftonline.us` or `partner.microsoftonline.cn` by authority host.
pub(crate) fn cloud_instance_name(host: &str) -> &'static str {
    if host.ends_with(".us") {
        "microsoftonline.us"
    } else if host.ends_with(".cn") {
        "partner.microsoftonline.cn"
    } else {
        "microsoftonline.com"
    }
}
