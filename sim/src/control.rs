//! The control plane tests (and `exoproxy demo`) drive: a cloneable [`Control`] handle in the library,
//! and the same operations over HTTPS on the control host (`control.exosim.test` by default).
//!
//! HTTP (parameters in the query string or a form body; answers are JSON):
//! `GET /counters`, `GET /devices`, `GET /exchange`,
//! `POST /device/approve?user_code=&upn=` (no user_code: the latest), `POST /device/decline?user_code=`,
//! `POST /device/expire?user_code=`, `POST /device/slow-down?count=`, `POST /auto-approve?enabled=`,
//! `POST /sign-in-as?upn=` (empty clears), `POST /token-lifetime?secs=`, `POST /revoke?upn=`,
//! `POST /refresh-error?code=` (empty clears), `POST /scope-error?resource=&code=` (empty code clears),
//! `POST /fault?kind=none|status|throttle|refuse|badcert&code=&secs=&times=`, `POST /delay?ms=` (0 clears),
//! `POST /exchange?cae=&throttle_secs=&operation_timeout_secs=&max_shells=&mailboxes=&page_size=`,
//! `POST /proxied?port=&addr=`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::Error;
use crate::config::Client;
use crate::exchange::{Exchange, ExchangeSettings, TokenCheck, TokenClaims, TokenRejection};
use crate::state::{Counters, DeviceStatus, FaultPlan, GrantType, LoginFault, Shared};
use crate::wire::{self, Request};

/// Handle on a running emulator's knobs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

// === impl Control ===

impl Control {
    pub(crate) fn new(shared: Arc<Shared>) -> Control {
        Control { shared }
    }

    /// Approve a pending device code (`None`: the latest) as the "sign in as" user or the default user.
    /// Returns the user code approved.
    pub fn approve_device(&self, user_code: Option<&str>) -> Result<String, Error> {
        let upn = self
            .shared
            .with(|s| s.sign_in_as.clone())
            .unwrap_or_else(|| self.shared.config.default_user.clone());
        self.approve_device_as(user_code, &upn)
    }

    /// Approve a pending device code (`None`: the latest) as `upn`.
    pub fn approve_device_as(&self, user_code: Option<&str>, upn: &str) -> Result<String, Error> {
        let user = self
            .shared
            .config
            .user(upn)
            .ok_or_else(|| Error::Control(format!("unknown user {upn}")))?;
        let upn = user.upn.clone();
        self.set_device_status(user_code, DeviceStatus::Approved(upn))
    }

    /// The user declines the sign-in (`authorization_declined`).
    pub fn decline_device(&self, user_code: Option<&str>) -> Result<String, Error> {
        self.set_device_status(user_code, DeviceStatus::Declined)
    }

    /// Expire a device code now (`expired_token`).
    pub fn expire_device(&self, user_code: Option<&str>) -> Result<String, Error> {
        self.with_device(user_code, |d| d.expires = Instant::now())
    }

    /// The user codes still pending, oldest first.
    pub fn pending_devices(&self) -> Vec<String> {
        self.shared.with(|s| {
            s.devices
                .iter()
                .filter(|d| d.status == DeviceStatus::Pending)
                .map(|d| d.user_code.clone())
                .collect()
        })
    }

    /// Answer the next `polls` device-code polls with `slow_down`.
    pub fn slow_down(&self, polls: u32) {
        self.shared.with(|s| s.slow_down_polls = polls);
    }

    /// Approve every device code as soon as it is issued (for `exoproxy demo`).
    pub fn set_auto_approve(&self, enabled: bool) {
        self.shared.with(|s| s.auto_approve = enabled);
    }

    /// Sign in as this user whatever the login hint says (`None` clears).
    pub fn sign_in_as(&self, upn: Option<&str>) {
        self.shared.with(|s| s.sign_in_as = upn.map(String::from));
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.with(|s| s.token_lifetime = lifetime);
    }

    /// Revoke every refresh token issued to `upn` so far (later grants: `invalid_grant` AADSTS50173).
    pub fn revoke_user(&self, upn: &str) {
        // Strictly after every token issued so far, even within the clock's resolution.
        let now = SystemTime::now() + Duration::from_millis(1);
        self.shared
            .with(|s| s.valid_from.insert(upn.to_ascii_lowercase(), now));
    }

    /// Answer every refresh_token grant with `invalid_grant` and this AADSTS code (`None` clears).
    /// 700082, 50173, 70043, 50076, 53003 and 65001 get Entra's texts and sub-errors.
    pub fn set_refresh_error(&self, code: Option<u32>) {
        self.shared.with(|s| s.refresh_error = code);
    }

    /// Refuse every token for `resource` (any grant) the way Entra does when the scope or resource cannot
    /// be granted: 70011 `invalid_scope`, 650057 `invalid_client` (resource not in the app's
    /// permissions), 500011 `invalid_resource`. `None` clears.
    pub fn set_scope_error(&self, resource: &str, code: Option<u32>) {
        let key = resource.trim_end_matches('/').to_ascii_lowercase();
        self.shared.with(|s| match code {
            Some(code) => s.scope_errors.insert(key, code),
            None => s.scope_errors.remove(&key),
        });
    }

    /// Delay token and devicecode answers (`None` clears).
    pub fn set_token_delay(&self, delay: Option<Duration>) {
        self.shared.with(|s| s.token_delay = delay);
    }

    /// Fault the login host until cleared (`None` clears).
    pub fn set_login_fault(&self, fault: Option<LoginFault>) {
        self.shared.with(|s| {
            s.fault = fault.map(|fault| FaultPlan {
                fault,
                remaining: None,
            })
        });
    }

    /// Fault the login host for the next `times` requests (or connections, for `Refuse`).
    pub fn set_login_fault_times(&self, fault: LoginFault, times: u32) {
        self.shared.with(|s| {
            s.fault = Some(FaultPlan {
                fault,
                remaining: Some(times),
            })
        });
    }

    pub fn counters(&self) -> Counters {
        self.shared.with(|s| s.counters.clone())
    }

    /// Token endpoint calls with this grant type.
    pub fn grant_count(&self, grant: GrantType) -> u64 {
        let c = self.counters();
        match grant {
            GrantType::DeviceCode => c.device_code_grants,
            GrantType::RefreshToken => c.refresh_token_grants,
            GrantType::ClientCredentials => c.client_credentials_grants,
            GrantType::AuthorizationCode => c.authorization_code_grants,
            GrantType::Other => c.other_grants,
        }
    }

    /// The Exchange side (settings, request count).
    pub fn exchange(&self) -> &Exchange {
        &self.shared.exchange
    }

    /// Change Exchange knobs (CAE mode, throttling, timeouts...).
    pub fn update_exchange(&self, f: impl FnOnce(&mut ExchangeSettings)) {
        self.shared.exchange.update(f);
    }

    /// Connections from this peer port count as proxied at the STS.
    pub fn treat_port_as_proxied(&self, port: u16) {
        self.shared.with(|s| s.proxied.ports.push(port));
    }

    /// Connections from this peer address count as proxied at the STS.
    pub fn treat_addr_as_proxied(&self, addr: IpAddr) {
        self.shared.with(|s| s.proxied.addrs.push(addr));
    }

    /// Connections for which `predicate(peer)` holds count as proxied at the STS (e.g. a stub proxy
    /// recording the local ports of its upstream sockets).
    pub fn treat_as_proxied(&self, predicate: impl Fn(SocketAddr) -> bool + Send + Sync + 'static) {
        self.shared
            .with(|s| s.proxied.predicate = Some(Arc::new(predicate)));
    }

    /// Register a client at run time.
    pub fn register_client(&self, client: Client) {
        self.shared.with(|s| s.extra_clients.push(client));
    }

    /// Verify an access token the way Exchange does (signature, time, audience).
    pub fn check_token(&self, jwt: &str, audience: &str) -> Result<TokenClaims, TokenRejection> {
        self.shared.signer.check(jwt, audience)
    }

    /// Tokens for `upn` and `client_id` with a v2 `scope`, as the token endpoint would answer (access,
    /// refresh and, with `openid`, id token), without running a flow.
    pub fn mint_tokens(&self, upn: &str, client_id: &str, scope: &str) -> Result<Value, Error> {
        crate::entra::mint(&self.shared, upn, client_id, scope)
            .map_err(|e| Error::Control(format!("AADSTS{}: {}", e.code, e.message)))
    }

    fn set_device_status(
        &self,
        user_code: Option<&str>,
        status: DeviceStatus,
    ) -> Result<String, Error> {
        self.with_device(user_code, |d| d.status = status)
    }

    /// Apply `f` to the named pending device code, or to the latest pending one.
    fn with_device(
        &self,
        user_code: Option<&str>,
        f: impl FnOnce(&mut crate::state::DeviceGrant),
    ) -> Result<String, Error> {
        self.shared.with(|s| {
            let wanted = |d: &&mut crate::state::DeviceGrant| match user_code {
                Some(code) => d.user_code.eq_ignore_ascii_case(code.trim()),
                None => d.status == DeviceStatus::Pending,
            };
            let device = s.devices.iter_mut().rev().find(wanted);
            let device = device.ok_or_else(|| {
                Error::Control(format!(
                    "no pending device code {}",
                    user_code.unwrap_or("(latest)")
                ))
            })?;
            f(device);
            Ok(device.user_code.clone())
        })
    }
}

// === HTTP on the control host ===

/// Serve one control request.
pub(crate) fn http(shared: &Arc<Shared>, req: Request) -> Response<Bytes> {
    let control = Control::new(shared.clone());
    let mut params = wire::query(&req);
    params.extend(wire::form(req.body()));
    let p = Params(params);
    let post = req.method() == Method::POST;
    let result = match (req.uri().path().trim_end_matches('/'), post) {
        ("/counters", false) => Ok(serde_json::to_value(control.counters()).unwrap_or_default()),
        ("/devices", false) => Ok(json!({"pending": control.pending_devices()})),
        ("/exchange", false) => Ok(exchange_json(&control.exchange().settings())),
        ("/device/approve", true) => match p.get("upn") {
            Some(upn) => control.approve_device_as(p.get("user_code"), upn),
            None => control.approve_device(p.get("user_code")),
        }
        .map(|code| json!({"approved": code})),
        ("/device/decline", true) => control
            .decline_device(p.get("user_code"))
            .map(|c| json!({"declined": c})),
        ("/device/expire", true) => control
            .expire_device(p.get("user_code"))
            .map(|c| json!({"expired": c})),
        (path, true) => post_setting(&control, path, &p),
        _ => return wire::not_found(),
    };
    match result {
        Ok(body) => wire::json(StatusCode::OK, &body),
        Err(e) => wire::json(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
    }
}

/// The POST endpoints that set a knob and answer `{"ok": true}`.
fn post_setting(control: &Control, path: &str, p: &Params) -> Result<Value, Error> {
    match path {
        "/device/slow-down" => control.slow_down(p.num("count")?.unwrap_or(1) as u32),
        "/auto-approve" => control.set_auto_approve(p.flag("enabled")?.unwrap_or(true)),
        "/sign-in-as" => control.sign_in_as(p.get("upn").filter(|u| !u.is_empty())),
        "/token-lifetime" => {
            control.set_token_lifetime(Duration::from_secs(p.required_num("secs")?))
        }
        "/revoke" => control.revoke_user(
            p.get("upn")
                .ok_or_else(|| Error::Control("missing upn".into()))?,
        ),
        "/refresh-error" => control.set_refresh_error(p.num("code")?.map(|c| c as u32)),
        "/scope-error" => control.set_scope_error(
            p.get("resource")
                .ok_or_else(|| Error::Control("missing resource".into()))?,
            p.num("code")?.map(|c| c as u32),
        ),
        "/delay" => {
            control.set_token_delay(p.num("ms")?.filter(|ms| *ms > 0).map(Duration::from_millis))
        }
        "/fault" => set_fault(control, p)?,
        "/exchange" => update_exchange(control, p)?,
        "/proxied" => {
            if let Some(port) = p.num("port")? {
                control.treat_port_as_proxied(port as u16);
            }
            if let Some(addr) = p.get("addr") {
                control.treat_addr_as_proxied(
                    addr.parse()
                        .map_err(|_| Error::Control(format!("bad addr {addr}")))?,
                );
            }
        }
        other => return Err(Error::Control(format!("unknown control endpoint {other}"))),
    }
    Ok(json!({"ok": true}))
}

fn set_fault(control: &Control, p: &Params) -> Result<(), Error> {
    let fault = match p.get("kind").unwrap_or("none") {
        "none" => None,
        "status" => Some(LoginFault::Status(p.num("code")?.unwrap_or(503) as u16)),
        "throttle" => Some(LoginFault::Throttle(Duration::from_secs(
            p.num("secs")?.unwrap_or(5),
        ))),
        "refuse" => Some(LoginFault::Refuse),
        "badcert" => Some(LoginFault::UntrustedCertificate),
        other => return Err(Error::Control(format!("unknown fault kind {other}"))),
    };
    match (fault, p.num("times")?) {
        (Some(fault), Some(times)) => control.set_login_fault_times(fault, times as u32),
        (fault, _) => control.set_login_fault(fault),
    }
    Ok(())
}

fn update_exchange(control: &Control, p: &Params) -> Result<(), Error> {
    let cae = p.flag("cae")?;
    let throttle = p.num("throttle_secs")?;
    let timeout = p.num("operation_timeout_secs")?;
    let max_shells = p.num("max_shells")?;
    let mailboxes = p.num("mailboxes")?;
    let page_size = p.num("page_size")?;
    control.update_exchange(|s| {
        if let Some(cae) = cae {
            s.cae = cae;
        }
        if let Some(secs) = throttle {
            s.throttle = (secs > 0).then(|| Duration::from_secs(secs));
        }
        if let Some(secs) = timeout {
            s.operation_timeout_cap = Duration::from_secs(secs);
        }
        if let Some(n) = max_shells {
            s.max_shells_per_user = n as usize;
        }
        if let Some(n) = mailboxes {
            s.mailboxes = n as usize;
        }
        if let Some(n) = page_size {
            s.page_size = n as usize;
        }
    });
    Ok(())
}

fn exchange_json(s: &ExchangeSettings) -> Value {
    json!({
        "operation_timeout_cap_secs": s.operation_timeout_cap.as_secs_f64(),
        "max_shells_per_user": s.max_shells_per_user,
        "cae": s.cae,
        "throttle_secs": s.throttle.map(|t| t.as_secs_f64()),
        "mailboxes": s.mailboxes,
        "page_size": s.page_size,
    })
}

/// Control parameters with typed getters.
struct Params(HashMap<String, String>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn num(&self, key: &str) -> Result<Option<u64>, Error> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::Control(format!("{key}: not a number: {v}"))),
        }
    }

    fn required_num(&self, key: &str) -> Result<u64, Error> {
        self.num(key)?
            .ok_or_else(|| Error::Control(format!("missing {key}")))
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some("true" | "1" | "on" | "yes") => Ok(Some(true)),
            Some("false" | "0" | "off" | "no") => Ok(Some(false)),
            Some(v) => Err(Error::Control(format!("{key}: not a boolean: {v}"))),
        }
    }
}
