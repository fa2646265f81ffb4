//! Minting tokens: the access token (v1-style claims, as Exchange tokens carry), the refresh token
//! (opaque, remembered, rotated on every use), the id token, and the JSON answer of the token endpoint.
//!
//! Every issue is unique (`uti`); `exp` comes from the current token lifetime; a configured canary is
//! embedded in every access and refresh token (SEC-19).

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::errors::AadError;
use super::scope::{ClaimsRequest, Scopes};
use crate::config::{Client, ClientCredential, Tenant, User};
use crate::ids::{b64url, opaque};
use crate::jwt::{CLAIMS_SATISFIED, unix_now};
use crate::state::{RefreshRecord, Shared};

/// Who the token is for: a user (delegated) or the app itself (app-only).
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) user: Option<User>,
    pub(crate) client: Client,
    pub(crate) tenant: Tenant,
}

/// What to put in the answer besides the subject.
#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub(crate) scopes: Scopes,
    pub(crate) claims: ClaimsRequest,
    pub(crate) nonce: Option<String>,
    /// v1 endpoint: answer with `resource`, `expires_on` and friends.
    pub(crate) v1: bool,
    /// The scope string a new refresh token remembers (used when a refresh omits `scope`).
    pub(crate) rt_scope: String,
    /// The request asked for `client_info` (MSAL does).
    pub(crate) client_info: bool,
    /// The authority host the request came to (issuer of the id token).
    pub(crate) authority: String,
}

/// Mint everything the request earns and build the token endpoint's JSON answer.
pub(crate) fn token_response(
    shared: &Shared,
    subject: &Subject,
    issue: &Issue,
) -> Result<Value, AadError> {
    let lifetime = shared.with(|s| s.token_lifetime);
    let access_token = sign(shared, &access_claims(shared, subject, issue, lifetime))?;
    let expires_in = lifetime.as_secs();
    let mut body = if issue.v1 {
        let now = unix_now();
        json!({
            "token_type": "Bearer", "scope": issue.scopes.scp(), "expires_in": expires_in.to_string(),
            "ext_expires_in": expires_in.to_string(), "expires_on": (now + expires_in).to_string(),
            "not_before": now.to_string(), "resource": issue.scopes.resource, "access_token": access_token,
        })
    } else {
        json!({
            "token_type": "Bearer", "scope": issue.scopes.granted(), "expires_in": expires_in,
            "ext_expires_in": expires_in, "access_token": access_token,
        })
    };
    if let Some(user) = &subject.user {
        if issue.scopes.offline_access {
            body["refresh_token"] =
                json!(new_refresh_token(shared, user, subject, &issue.rt_scope));
        }
        if issue.scopes.openid {
            body["id_token"] = json!(sign(shared, &id_claims(subject, user, issue, lifetime))?);
        }
        if issue.client_info {
            let info = json!({"uid": user.object_id, "utid": subject.tenant.id});
            body["client_info"] = json!(b64url(info.to_string().as_bytes()));
        }
    }
    Ok(body)
}

fn sign(shared: &Shared, claims: &Value) -> Result<String, AadError> {
    shared.signer.sign(claims).map_err(|e| {
        AadError::new(
            "server_error",
            90033,
            format!("A transient error has occurred: {e}"),
        )
        .status(http::StatusCode::INTERNAL_SERVER_ERROR)
    })
}

fn access_claims(shared: &Shared, subject: &Subject, issue: &Issue, lifetime: Duration) -> Value {
    let now = unix_now();
    let tid = &subject.tenant.id;
    let mut claims = json!({
        "aud": issue.scopes.resource,
        "iss": format!("https://sts.windows.net/{tid}/"),
        "iat": now, "nbf": now, "exp": now + lifetime.as_secs(),
        "appid": subject.client.id, "appidacr": appidacr(&subject.client),
        "idp": format!("https://sts.windows.net/{tid}/"),
        "tid": tid, "uti": opaque(16), "ver": "1.0",
    });
    match &subject.user {
        Some(user) => {
            claims["oid"] = json!(user.object_id);
            claims["sub"] = json!(user.object_id);
            claims["upn"] = json!(user.upn);
            claims["unique_name"] = json!(user.upn);
            claims["name"] = json!(user.display_name);
            claims["scp"] = json!(issue.scopes.scp());
        }
        None => {
            claims["oid"] = json!(subject.client.object_id);
            claims["sub"] = json!(subject.client.object_id);
            claims["roles"] = json!(subject.client.app_roles);
        }
    }
    if issue.claims.cp1 {
        claims["xms_cc"] = json!(["cp1"]);
    }
    if issue.claims.challenge_answered {
        claims[CLAIMS_SATISFIED] = json!(true);
    }
    if let Some(canary) = &shared.config.canary {
        claims["exosim_canary"] = json!(canary);
    }
    claims
}

fn id_claims(subject: &Subject, user: &User, issue: &Issue, lifetime: Duration) -> Value {
    let now = unix_now();
    let mut claims = json!({
        "aud": subject.client.id,
        "iss": format!("https://{}/{}/v2.0", issue.authority, subject.tenant.id),
        "iat": now, "nbf": now, "exp": now + lifetime.as_secs(),
        "name": user.display_name, "oid": user.object_id, "preferred_username": user.upn,
        "sub": user.object_id, "tid": subject.tenant.id, "uti": opaque(16), "ver": "2.0",
    });
    if let Some(nonce) = &issue.nonce {
        claims["nonce"] = json!(nonce);
    }
    claims
}

/// `0` public client, `1` secret, `2` certificate (the v1 `appidacr` claim).
fn appidacr(client: &Client) -> &'static str {
    match client.credential {
        ClientCredential::Public => "0",
        ClientCredential::Secret(_) => "1",
        ClientCredential::Certificate(_) => "2",
    }
}

/// A fresh opaque refresh token, remembered so it can be redeemed (and revoked) later.
fn new_refresh_token(shared: &Shared, user: &User, subject: &Subject, scope: &str) -> String {
    let mut token = format!("1.exosim.{}", opaque(48));
    if let Some(canary) = &shared.config.canary {
        token.push('.');
        token.push_str(canary);
    }
    let now = SystemTime::now();
    let record = RefreshRecord {
        upn: user.upn.clone(),
        client_id: subject.client.id.clone(),
        scope: scope.to_string(),
        issued: now,
        expires: now + shared.config.refresh_token_lifetime,
    };
    shared.with(|s| s.refresh_tokens.insert(token.clone(), record));
    token
}
