//! An ADFS-like STS host (e.g. `sts.contoso.test`): the sign-in page at `/adfs/ls/`, federation
//! metadata at `/adfs/services/trust/mex` and `/FederationMetadata/2007-06/FederationMetadata.xml`.
//!
//! The sign-in page is the probe for "was the STS reached DIRECT?": a request that came through a proxy
//! (a `Via` or `X-Forwarded-For` header, or a peer the control plane marked as a proxy, which is how a
//! CONNECT tunnel shows up) gets a **blank page** (200, empty body), like a real STS behind a corporate
//! proxy that strips the session; a direct request gets the HTML form. Counters record both.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::state::Shared;
use crate::wire::{self, Request, html_escape};

pub(crate) fn handle(
    shared: &Shared,
    host: &str,
    peer: SocketAddr,
    req: &Request,
) -> Response<Bytes> {
    let path = req.uri().path().to_ascii_lowercase();
    match path.trim_end_matches('/') {
        "/adfs/ls" | "" => sign_in(shared, host, peer, req),
        "/adfs/services/trust/mex" | "/federationmetadata/2007-06/federationmetadata.xml" => {
            wire::xml(StatusCode::OK, metadata(host))
        }
        _ => wire::not_found(),
    }
}

fn sign_in(shared: &Shared, host: &str, peer: SocketAddr, req: &Request) -> Response<Bytes> {
    let proxied = came_through_proxy(req) || shared.peer_is_proxy(peer);
    shared.with(|s| {
        if proxied {
            s.counters.sts_proxied += 1;
        } else {
            s.counters.sts_direct += 1;
        }
    });
    if proxied {
        return wire::html(StatusCode::OK, String::new());
    }
    let username = wire::query(req)
        .get("username")
        .cloned()
        .unwrap_or_default();
    wire::html(StatusCode::OK, form_page(host, &username))
}

fn came_through_proxy(req: &Request) -> bool {
    req.headers().contains_key("via") || req.headers().contains_key("x-forwarded-for")
}

fn form_page(host: &str, username: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><title>Sign In</title></head><body>\
<h1>{host}</h1><form method=\"post\" id=\"loginForm\" action=\"/adfs/ls/\">\
<input id=\"userNameInput\" name=\"UserName\" type=\"email\" value=\"{}\"/>\
<input id=\"passwordInput\" name=\"Password\" type=\"password\"/>\
<input id=\"submitButton\" type=\"submit\" value=\"Sign in\"/></form></body></html>",
        html_escape(username)
    )
}

fn metadata(host: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<EntityDescriptor ID=\"_exosim\" entityID=\"http://{host}/adfs/services/trust\" xmlns=\"urn:oasis:names:tc:SAML:2.0:metadata\">\
<RoleDescriptor xsi:type=\"fed:SecurityTokenServiceType\" protocolSupportEnumeration=\"http://docs.oasis-open.org/wsfed/federation/200706\" \
xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:fed=\"http://docs.oasis-open.org/wsfed/federation/200706\">\
<fed:PassiveRequestorEndpoint><EndpointReference xmlns=\"http://www.w3.org/2005/08/addressing\">\
<Address>https://{host}/adfs/ls/</Address></EndpointReference></fed:PassiveRequestorEndpoint>\
</RoleDescriptor></EntityDescriptor>"
    )
}
