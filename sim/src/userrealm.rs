//! Home-realm discovery on the authority hosts (docs/PROTOCOL.md#home-realm): `GET /common/userrealm/{upn}`
//! (api-version 1.0 shape, or 2.1 with `?user=`) and the legacy `GET /getuserrealm.srf?login=..&json=1`.
//! A federated domain points at its STS host (AuthURL, metadata and active-auth URLs); the client
//! under test learns from these which hosts to send DIRECT.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::config::Domain;
use crate::entra::errors::AadError;
use crate::state::Shared;
use crate::wire::{self, Request, percent_encode};

/// Answer a home-realm request, or `None` when the path is not one.
pub(crate) fn handle(
    shared: &Shared,
    host: &str,
    req: &Request,
    segments: &[&str],
) -> Option<Response<Bytes>> {
    let q = wire::query(req);
    let (login, legacy) = match segments {
        ["getuserrealm.srf"] => (q.get("login").cloned(), true),
        ["common", "userrealm", ""] | ["common", "userrealm"] => (q.get("user").cloned(), true),
        ["common", "userrealm", upn] => (Some(wire::percent_decode(upn.as_bytes())), false),
        _ => return None,
    };
    shared.with(|s| s.counters.userrealm_requests += 1);
    let Some(login) = login.filter(|l| l.contains('@')) else {
        return Some(AadError::missing("login").into_response(req));
    };
    let domain_name = login
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let domain = shared.config.domain(&domain_name).map(|(_, d)| d.clone());
    let cloud = crate::entra::cloud_instance_name(host);
    let body = if legacy {
        legacy_shape(&login, &domain_name, domain.as_ref(), cloud)
    } else {
        v1_shape(&domain_name, domain.as_ref(), cloud)
    };
    Some(wire::json(StatusCode::OK, &body))
}

/// `api-version=1.0`: `account_type` Managed / Federated / Unknown.
fn v1_shape(domain_name: &str, domain: Option<&Domain>, cloud: &str) -> Value {
    let account_type = match domain {
        None => "Unknown",
        Some(d) if d.federated_sts.is_some() => "Federated",
        Some(_) => "Managed",
    };
    let mut body = json!({
        "ver": "1.0", "account_type": account_type, "domain_name": domain_name,
        "cloud_instance_name": cloud, "cloud_audience_urn": "urn:federation:MicrosoftOnline",
    });
    if let Some(sts) = domain.and_then(|d| d.federated_sts.as_deref()) {
        body["federation_protocol"] = json!("WSTrust");
        body["federation_metadata_url"] = json!(metadata_url(sts));
        body["federation_active_auth_url"] = json!(format!(
            "https://{sts}/adfs/services/trust/2005/usernamemixed"
        ));
    }
    body
}

/// `getuserrealm.srf` / api-version 2.1: `NameSpaceType`, `AuthURL` for federated domains.
fn legacy_shape(login: &str, domain_name: &str, domain: Option<&Domain>, cloud: &str) -> Value {
    let (ns_type, state, user_state) = match domain {
        None => ("Unknown", 4, 1),
        Some(d) if d.federated_sts.is_some() => ("Federated", 3, 2),
        Some(_) => ("Managed", 4, 1),
    };
    let mut body = json!({
        "State": state, "UserState": user_state, "Login": login, "NameSpaceType": ns_type,
        "DomainName": domain_name, "FederationBrandName": "Contoso", "CloudInstanceName": cloud,
        "CloudInstanceIssuerUri": "urn:federation:MicrosoftOnline",
    });
    if let Some(sts) = domain.and_then(|d| d.federated_sts.as_deref()) {
        body["federation_protocol"] = json!("WSTrust");
        body["AuthURL"] = json!(format!(
            "https://{sts}/adfs/ls/?username={}&wa=wsignin1.0&wtrealm=urn%3afederation%3aMicrosoftOnline&wctx=",
            percent_encode(login)
        ));
        body["MEXURL"] = json!(metadata_url(sts));
        body["FederationActiveAuthUrl"] = json!(format!(
            "https://{sts}/adfs/services/trust/2005/usernamemixed"
        ));
        body["FederationGlobalVersion"] = json!(-1);
    }
    body
}

fn metadata_url(sts: &str) -> String {
    format!("https://{sts}/adfs/services/trust/mex")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn federated_domain_points_at_its_sts() {
        let d = Domain {
            name: "contoso.test".into(),
            federated_sts: Some("sts.contoso.test".into()),
        };
        let v1 = v1_shape("contoso.test", Some(&d), "microsoftonline.com");
        assert_eq!(v1["account_type"], "Federated");
        assert_eq!(
            v1["federation_metadata_url"],
            "https://sts.contoso.test/adfs/services/trust/mex"
        );
        let legacy = legacy_shape(
            "fed@contoso.test",
            "contoso.test",
            Some(&d),
            "microsoftonline.com",
        );
        assert!(
            legacy["AuthURL"]
                .as_str()
                .unwrap()
                .starts_with("https://sts.contoso.test/adfs/ls/?username=fed%40contoso.test")
        );
        assert_eq!(
            v1_shape("nowhere.test", None, "x")["account_type"],
            "Unknown"
        );
    }
}
