//! Admin actions: `POST /action/<name>` on the proxy's own listener (docs/STATUS.md, "Actions"),
//! used by the status page's forms and by `exoproxy login` / `logout` while a proxy runs.
//!
//! Contract (the handler has already applied the status surface's gates: `Host` names our listen
//! address, else 400; the socket belongs to our OS user, else 403):
//! - [`gate`] is pure and runs before anything changes: a method other than `POST` is 405 with
//!   `Allow: POST` (SEC-11); a body that is not `application/x-www-form-urlencoded` (`text/plain`
//!   included) is 403; an `Origin` other than `http://<Host>` is 403, and without `Origin` the
//!   [`TOKEN_HEADER`] is required, so a cross-site form can never act (SEC-12); the admin token,
//!   from that header or the form field `token`, is compared in constant time and a missing or
//!   wrong one is 401 (SEC-9, SEC-14). No reply carries an `Access-Control-Allow-*` header.
//! - The admin token is 256 random bits in hex, written owner-only to `<state dir>/`[`TOKEN_FILE`]
//!   at every start ([`AdminToken::create`]); reading that file is the CLI's same-user proof.
//! - Actions are one line each in [`ACTIONS`]: `signin` starts (or reuses) the account's ONE
//!   pending device-code sign-in and answers its code, URL and expiry; `signout` is final until a
//!   new sign-in (`TokenManager::sign_out`); `renew` renews the account's tokens now; `reload`
//!   reads the configuration file again (the same reload as SIGHUP and a file change, one at a
//!   time; docs/ARCHITECTURE.md, "Live configuration").
//! - The reply is JSON when the client accepts `application/json`, else `303 See Other` to `/`,
//!   whose page shows the last outcome ([`Actions::last`], also in `/status.json`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use subtle::ConstantTimeEq;

use super::status::{ReloadResult, Sources, rfc3339, unix_now};
use crate::token::{Flow, SignInPrompt, TokenManager};

/// Path prefix of the actions.
pub const PREFIX: &str = "/action/";
/// The admin token's file in the state dir.
pub const TOKEN_FILE: &str = "admin-token";
/// The header that carries the admin token (CLI, scripts).
pub const TOKEN_HEADER: &str = "x-admin-token";
/// The largest action body read.
pub const MAX_BODY: usize = 8 * 1024;

/// A boxed action future (the dispatch table holds plain function pointers).
pub type ActionFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;
/// One action: what it does with the checked form.
pub type Run = for<'a> fn(&'a Sources, &'a Form) -> ActionFuture<'a>;

/// The actions by name. Adding one is one line here and its function.
pub const ACTIONS: &[(&str, Run)] = &[
    ("signin", |s, f| Box::pin(signin(s, f))),
    ("signout", |s, f| Box::pin(signout(s, f))),
    ("renew", |s, f| Box::pin(renew(s, f))),
    ("reload", |s, f| Box::pin(reload(s, f))),
];

/// The per-start admin token. Never printed: `Debug` shows nothing of it.
pub struct AdminToken(String);

/// The action state the status page and `/status.json` show: the token the page's forms embed and
/// the last outcome.
#[derive(Debug)]
pub struct Actions {
    token: AdminToken,
    last: Mutex<Option<Outcome>>,
}

/// What [`gate`] looks at, taken from the request by the handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActionRequest<'a> {
    pub method: &'a str,
    /// The `Host` header (already checked to name us).
    pub host: &'a str,
    pub origin: Option<&'a str>,
    /// The [`TOKEN_HEADER`] value.
    pub token_header: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// The form fields an action reads.
#[derive(Default, PartialEq, Eq)]
pub struct Form {
    token: Option<String>,
    /// The account (`signin`, `signout`, `renew`).
    pub account: Option<String>,
    /// `signin` only: `device-code` or `browser` instead of the configured flow.
    pub flow: Option<String>,
}

/// Why an action was refused before anything changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not `POST` (405, SEC-11).
    Method,
    /// The body is not a URL-encoded form (403, SEC-12).
    ContentType,
    /// `Origin` is not this page's origin (403, SEC-12).
    Origin,
    /// Neither `Origin` nor the token header (403, SEC-12).
    NoOrigin,
    /// The admin token is missing or wrong (401, SEC-9).
    Token,
    /// The body is larger than [`MAX_BODY`] (413).
    TooLarge,
    /// No such action (404).
    Unknown,
}

/// What an action did; kept as the last outcome and sent as the JSON reply.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub action: String,
    pub account: Option<String>,
    pub message: String,
    /// Unix seconds.
    pub at: i64,
    /// `signin`: the pending sign-in the user must finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<SignInOffer>,
}

/// The ONE pending sign-in of an account: where to go, what to enter, until when.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SignInOffer {
    pub verification_uri: String,
    /// `None` for the browser flow (there is no code to enter).
    pub user_code: Option<String>,
    /// Unix seconds; `None` for the browser flow.
    pub expires_at: Option<i64>,
}

/// An action's reply, without HTTP types: the handler adds the security headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: String,
}

// === impl AdminToken ===

impl AdminToken {
    /// A new random token, written owner-only to `<state_dir>/admin-token` (replacing the last
    /// start's, so a token read from an old file stops working).
    pub fn create(state_dir: &Path) -> std::io::Result<AdminToken> {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| std::io::Error::other("no randomness for the admin token"))?;
        let token = AdminToken(hex::encode(bytes));
        crate::platform::write_private_atomic(&token_path(state_dir), token.0.as_bytes())?;
        Ok(token)
    }

    /// The token a running proxy wrote for `state_dir` (the CLI's same-user proof).
    pub fn read(state_dir: &Path) -> std::io::Result<AdminToken> {
        let text = std::fs::read_to_string(token_path(state_dir))?;
        Ok(AdminToken(text.trim().to_string()))
    }

    /// True when `presented` is this token, compared in constant time (SEC-14): the time taken
    /// depends only on the lengths, and every valid token has the same length.
    pub fn matches(&self, presented: &str) -> bool {
        !self.0.is_empty() && bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }

    /// The token itself, for the page's hidden form fields and the CLI's header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// `<state_dir>/admin-token`.
pub fn token_path(state_dir: &Path) -> PathBuf {
    state_dir.join(TOKEN_FILE)
}

// === impl Actions ===

impl Actions {
    pub fn new(token: AdminToken) -> Actions {
        Actions {
            token,
            last: Mutex::new(None),
        }
    }

    pub fn token(&self) -> &AdminToken {
        &self.token
    }

    /// The last action's outcome.
    pub fn last(&self) -> Option<Outcome> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, outcome: &Outcome) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome.clone());
    }
}

// === impl Form ===

impl Form {
    /// The URL-encoded body's fields (unknown fields are ignored, the first of a repeated one wins).
    pub fn parse(body: &[u8]) -> Form {
        let mut form = Form::default();
        for (name, value) in form_urlencoded::parse(body) {
            let field = match name.as_ref() {
                "token" => &mut form.token,
                "account" => &mut form.account,
                "flow" => &mut form.flow,
                _ => continue,
            };
            if field.is_none() {
                *field = Some(value.trim().to_string()).filter(|v| !v.is_empty());
            }
        }
        form
    }
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Form")
            .field("account", &self.account)
            .field("flow", &self.flow)
            .finish_non_exhaustive()
    }
}

// === impl Refusal ===

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Method => 405,
            Refusal::ContentType | Refusal::Origin | Refusal::NoOrigin => 403,
            Refusal::Token => 401,
            Refusal::TooLarge => 413,
            Refusal::Unknown => 404,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::Method => "actions are POST only".into(),
            Refusal::ContentType => "send the action as application/x-www-form-urlencoded".into(),
            Refusal::Origin => "the request comes from another origin than this page".into(),
            Refusal::NoOrigin => {
                format!("a request without Origin must carry the admin token in {TOKEN_HEADER}")
            }
            Refusal::Token => format!(
                "missing or wrong admin token (the page's forms carry it; the CLI reads <state dir>/{TOKEN_FILE})"
            ),
            Refusal::TooLarge => format!("the action body is larger than {MAX_BODY} bytes"),
            Refusal::Unknown => {
                let names: Vec<&str> = ACTIONS.iter().map(|(name, _)| *name).collect();
                format!("no such action; there are: {}", names.join(", "))
            }
        }
    }
}

/// The checks every action passes before anything changes (module contract, in this order).
pub fn gate(req: &ActionRequest<'_>, token: &AdminToken) -> Result<Form, Refusal> {
    if req.method != "POST" {
        return Err(Refusal::Method);
    }
    if !is_form(req.content_type) {
        return Err(Refusal::ContentType);
    }
    match req.origin {
        Some(origin) if !origin.eq_ignore_ascii_case(&format!("http://{}", req.host)) => {
            return Err(Refusal::Origin);
        }
        None if req.token_header.is_none() => return Err(Refusal::NoOrigin),
        _ => {}
    }
    let form = Form::parse(req.body);
    let presented = req.token_header.or(form.token.as_deref());
    if !presented.is_some_and(|p| token.matches(p)) {
        return Err(Refusal::Token);
    }
    Ok(form)
}

/// `application/x-www-form-urlencoded`, parameters allowed.
fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| {
            ct.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The action's name in `path` (`/action/<name>`), if the path is an action path.
pub fn name_of(path: &str) -> Option<&str> {
    path.strip_prefix(PREFIX)
}

/// Gates, runs and answers one action request (`path` is under [`PREFIX`]).
pub async fn handle(
    sources: &Sources,
    path: &str,
    req: &ActionRequest<'_>,
    wants_json: bool,
) -> Answer {
    let name = name_of(path).unwrap_or_default();
    let form = match gate(req, sources.actions.token()) {
        Ok(form) => form,
        Err(refusal) => return refused(&refusal, name, wants_json),
    };
    let Some((_, run)) = ACTIONS.iter().find(|(n, _)| *n == name) else {
        return refused(&Refusal::Unknown, name, wants_json);
    };
    let outcome = run(sources, &form).await;
    tracing::info!(action = %outcome.action, account = ?outcome.account, ok = outcome.ok,
        message = %outcome.message, "admin action");
    sources.actions.record(&outcome);
    answer(&outcome, wants_json)
}

/// The reply for a refusal: JSON or text, with `Allow: POST` on a 405.
pub fn refused(refusal: &Refusal, action: &str, wants_json: bool) -> Answer {
    let headers = match refusal {
        Refusal::Method => vec![("allow", "POST".to_string())],
        _ => Vec::new(),
    };
    let message = refusal.message();
    let (content_type, body) = match wants_json {
        true => (
            "application/json",
            serde_json::json!({"ok": false, "action": action, "message": message}).to_string(),
        ),
        false => ("text/plain; charset=utf-8", format!("{message}\n")),
    };
    Answer {
        status: refusal.status(),
        headers,
        content_type,
        body,
    }
}

/// JSON with the outcome (and the sign-in's fields at top level), or a 303 to the page.
fn answer(outcome: &Outcome, wants_json: bool) -> Answer {
    if !wants_json {
        return Answer {
            status: 303,
            headers: vec![("location", "/".to_string())],
            content_type: "text/plain; charset=utf-8",
            body: format!("{}\n", outcome.message),
        };
    }
    let mut json = serde_json::json!({
        "ok": outcome.ok,
        "action": outcome.action,
        "account": outcome.account,
        "message": outcome.message,
    });
    if let Some(offer) = &outcome.sign_in {
        json["verification_uri"] = offer.verification_uri.clone().into();
        json["user_code"] = offer.user_code.clone().into();
        json["expires_at"] = offer.expires_at.map(rfc3339).into();
    }
    Answer {
        status: 200,
        headers: Vec::new(),
        content_type: "application/json",
        body: json.to_string(),
    }
}

// === the actions ===

async fn signin(sources: &Sources, form: &Form) -> Outcome {
    let (tokens, upn) = match target(sources, form, "signin", false) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    let flow = match form.flow.as_deref() {
        None => None,
        Some("device-code") => Some(Flow::DeviceCode),
        Some("browser") => Some(Flow::Browser),
        Some(other) => {
            let message = format!("flow {other:?}: choose device-code or browser");
            return outcome("signin", Some(&upn), Err(message));
        }
    };
    let handle = match tokens.begin_login(&upn, flow).await {
        Ok(handle) => handle,
        Err(e) => return outcome("signin", Some(&upn), Err(e.to_string())),
    };
    // The sign-in goes on in the background; dropping the handle only stops us waiting for it.
    let (message, offer) = match &handle.prompt {
        SignInPrompt::Device(prompt) => (
            format!(
                "to sign in {upn}, open {} and enter the code {} (valid for {} s)",
                prompt.verification_uri,
                prompt.user_code,
                prompt.remaining().as_secs()
            ),
            Some(SignInOffer {
                verification_uri: prompt.verification_uri.clone(),
                user_code: Some(prompt.user_code.clone()),
                expires_at: Some(unix_now().saturating_add(secs(prompt.remaining()))),
            }),
        ),
        SignInPrompt::Browser { url } => (
            format!("finish signing in {upn} in the browser that opened, or open {url}"),
            Some(SignInOffer {
                verification_uri: url.clone(),
                user_code: None,
                expires_at: None,
            }),
        ),
        SignInPrompt::None => (format!("{upn}: signed in"), None),
    };
    let mut done = outcome("signin", Some(&upn), Ok(message));
    done.sign_in = offer;
    done
}

async fn signout(sources: &Sources, form: &Form) -> Outcome {
    let (tokens, upn) = match target(sources, form, "signout", true) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    let result = tokens
        .sign_out(&upn)
        .map(|()| {
            format!(
                "{upn}: signed out; its tokens are deleted and nothing renews them until `exoproxy login {upn}`"
            )
        })
        .map_err(|e| format!("could not delete the tokens of {upn}: {e}"));
    outcome("signout", Some(&upn), result)
}

async fn renew(sources: &Sources, form: &Form) -> Outcome {
    let (tokens, upn) = match target(sources, form, "renew", true) {
        Ok(found) => found,
        Err(outcome) => return *outcome,
    };
    let result = match tokens.renew_now(&upn).await {
        Ok(audiences) => {
            let names: Vec<String> = audiences.iter().map(ToString::to_string).collect();
            Ok(format!("{upn}: renewed {}", names.join(", ")))
        }
        Err(e) => Err(e.to_string()),
    };
    outcome("renew", Some(&upn), result)
}

/// The token manager and the form's account; with `known`, the account must be configured or
/// cached (signing in may add one, as `exoproxy login` does).
fn target<'a>(
    sources: &'a Sources,
    form: &Form,
    action: &str,
    known: bool,
) -> Result<(&'a TokenManager, String), Box<Outcome>> {
    let fail = |message: String| Box::new(outcome(action, form.account.as_deref(), Err(message)));
    let Some(state) = &sources.intercept else {
        return Err(fail("interception is off: there are no accounts".into()));
    };
    let Some(upn) = form.account.clone() else {
        return Err(fail("the form names no account".into()));
    };
    let tokens = state.tokens();
    let exists =
        || (tokens.accounts().iter()).any(|a| a.upn.trim().eq_ignore_ascii_case(upn.trim()));
    if known && !exists() {
        return Err(fail(format!("{upn} is not a known account")));
    }
    Ok((tokens, upn))
}

/// Reads the configuration file again through the proxy's watcher and says what happened.
async fn reload(sources: &Sources, _form: &Form) -> Outcome {
    outcome("reload", None, reload_result(sources).await)
}

async fn reload_result(sources: &Sources) -> Result<String, String> {
    let requests = sources.reload.as_ref().ok_or(
        "this proxy was started without a configuration file it can read again; restart it to \
         change its configuration",
    )?;
    let (reply, outcome) = tokio::sync::oneshot::channel();
    requests
        .send(reply)
        .map_err(|_| "the configuration watcher has stopped; restart the proxy")?;
    let outcome = outcome
        .await
        .map_err(|_| "the reload was abandoned; see the proxy's log")?;
    let restart = match outcome.restart_needed.is_empty() {
        true => String::new(),
        false => format!(
            "; needs a restart to apply: {}",
            outcome.restart_needed.join(", ")
        ),
    };
    match outcome.result {
        ReloadResult::Applied => Ok(format!("configuration reloaded{restart}")),
        ReloadResult::Refused => Err(format!(
            "configuration refused, the running one stays: {}",
            outcome.errors.join("; ")
        )),
    }
}

fn outcome(action: &str, account: Option<&str>, result: Result<String, String>) -> Outcome {
    let (ok, message) = match result {
        Ok(message) => (true, message),
        Err(message) => (false, message),
    };
    Outcome {
        ok,
        action: action.to_string(),
        account: account.map(str::to_string),
        message,
        at: unix_now(),
        sign_in: None,
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "127.0.0.1:8765";
    const FORM: &str = "application/x-www-form-urlencoded";

    fn token() -> AdminToken {
        AdminToken("ab".repeat(32))
    }

    fn post<'a>(body: &'a str) -> ActionRequest<'a> {
        ActionRequest {
            method: "POST",
            host: HOST,
            origin: Some("http://127.0.0.1:8765"),
            token_header: None,
            content_type: Some(FORM),
            body: body.as_bytes(),
        }
    }

    #[test]
    fn sec_11_only_post_acts() {
        let body = format!("token={}&account=a@b.c", token().0);
        for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"] {
            let req = ActionRequest {
                method,
                ..post(&body)
            };
            assert_eq!(gate(&req, &token()), Err(Refusal::Method));
        }
        let answer = refused(&Refusal::Method, "signout", false);
        assert_eq!(answer.status, 405);
        assert!(answer.headers.contains(&("allow", "POST".to_string())));
    }

    #[test]
    fn sec_12_origin_header_and_content_type() {
        let body = format!("token={}&account=a@b.c", token().0);
        let t = token();
        let foreign = ActionRequest {
            origin: Some("http://evil.example"),
            ..post(&body)
        };
        assert_eq!(gate(&foreign, &t), Err(Refusal::Origin));
        let null = ActionRequest {
            origin: Some("null"),
            ..post(&body)
        };
        assert_eq!(gate(&null, &t), Err(Refusal::Origin));
        // A form post without Origin can never act, even with the right token in the form.
        let bare = ActionRequest {
            origin: None,
            ..post(&body)
        };
        assert_eq!(gate(&bare, &t), Err(Refusal::NoOrigin));
        let plain = ActionRequest {
            content_type: Some("text/plain"),
            ..post(&body)
        };
        assert_eq!(gate(&plain, &t), Err(Refusal::ContentType));
        let none = ActionRequest {
            content_type: None,
            ..post(&body)
        };
        assert_eq!(gate(&none, &t), Err(Refusal::ContentType));
        let header = ActionRequest {
            origin: None,
            token_header: Some(&t.0),
            content_type: Some("application/x-www-form-urlencoded; charset=UTF-8"),
            ..post("account=a%40b.c")
        };
        assert_eq!(gate(&header, &t).unwrap().account.as_deref(), Some("a@b.c"));
        assert!(gate(&post(&body), &t).is_ok());
    }

    #[test]
    fn sec_9_token_missing_or_wrong_is_401() {
        let t = token();
        assert_eq!(gate(&post("account=a@b.c"), &t), Err(Refusal::Token));
        let wrong = format!("token={}&account=a@b.c", "cd".repeat(32));
        assert_eq!(gate(&post(&wrong), &t), Err(Refusal::Token));
        let short = format!("token={}", &t.0[..63]);
        assert_eq!(gate(&post(&short), &t), Err(Refusal::Token));
        let header = ActionRequest {
            token_header: Some("nope"),
            ..post("")
        };
        assert_eq!(gate(&header, &t), Err(Refusal::Token));
        assert_eq!(Refusal::Token.status(), 401);
        assert!(!AdminToken(String::new()).matches(""));
    }

    #[test]
    fn sec_14_token_is_256_random_bits_owner_only_and_new_each_start() {
        let dir = tempfile::tempdir().unwrap();
        let first = AdminToken::create(dir.path()).unwrap();
        assert_eq!(first.expose().len(), 64);
        assert!(first.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(
            AdminToken::read(dir.path())
                .unwrap()
                .matches(first.expose())
        );
        let second = AdminToken::create(dir.path()).unwrap();
        assert_ne!(first.expose(), second.expose());
        assert!(
            !AdminToken::read(dir.path())
                .unwrap()
                .matches(first.expose())
        );
        assert_eq!(format!("{second:?}"), "AdminToken(..)");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(token_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn answers_json_or_redirect() {
        let done = outcome("renew", Some("a@b.c"), Ok("renewed".into()));
        let redirect = answer(&done, false);
        assert_eq!(redirect.status, 303);
        assert!(redirect.headers.contains(&("location", "/".to_string())));
        let mut signin = outcome("signin", Some("a@b.c"), Ok("go".into()));
        signin.sign_in = Some(SignInOffer {
            verification_uri: "https://login.example/device".into(),
            user_code: Some("ABC-123".into()),
            expires_at: Some(0),
        });
        let json: serde_json::Value = serde_json::from_str(&answer(&signin, true).body).unwrap();
        assert_eq!(json["ok"], true);
        assert_eq!(json["user_code"], "ABC-123");
        assert_eq!(json["expires_at"], "1970-01-01T00:00:00Z");
        assert_eq!(refused(&Refusal::Unknown, "x", true).status, 404);
    }

    #[test]
    fn form_debug_hides_the_token() {
        let form = Form::parse(b"token=secret-canary&account=a%40b.c&flow=browser&x=1");
        assert_eq!(form.account.as_deref(), Some("a@b.c"));
        assert!(!format!("{form:?}").contains("secret-canary"));
    }
}
