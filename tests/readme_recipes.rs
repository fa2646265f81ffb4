//! The README's Exchange Online recipes, taken from README.md itself so the text cannot drift from
//! what is tested (README.md, "What was verified where"):
//! - recipe B (`<!-- readme-recipe:rest -->`): the `Invoke-RestMethod` request, framed as PowerShell 7
//!   sends it (method, path, the script's headers, `-ContentType`, the JSON body; no Authorization),
//!   goes through exoproxy's interception to exosim, and `@odata.nextLink` is followed until the last
//!   page. exoproxy has no default account here, so the token it injects was chosen by
//!   `X-AnchorMailbox` alone.
//! - recipe C (`<!-- readme-recipe:token -->`): the real `exoproxy token` command prints a token whose
//!   audience is Exchange Online, and Exchange (exosim) accepts it as `Connect-ExchangeOnline
//!   -AccessToken` would send it.
//!
//! No PowerShell runs here: the requests are built from the README's values the way
//! `Invoke-RestMethod` frames them (docs/PROTOCOL.md#rest-adminapi).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intercept_support;

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use intercept_support::*;

const README: &str = include_str!("../README.md");

/// The body of the fenced block that follows `<!-- readme-recipe:<name>`.
fn recipe(name: &str) -> &'static str {
    let marker = format!("<!-- readme-recipe:{name} ");
    let after = &README[README.find(&marker).expect("recipe marker in README.md")..];
    let fence = after.find("```powershell\n").expect("a powershell block") + 14;
    let end = after[fence..].find("```").expect("closed block");
    &after[fence..fence + end]
}

/// A PowerShell string literal at the start of `text`: `'…'` verbatim, `"…"` with `$name`
/// expanded from `vars`.
fn literal(text: &str, vars: &BTreeMap<String, String>) -> String {
    let text = text.trim();
    let quote = text.chars().next().expect("a literal");
    let inner = &text[1..1 + text[1..].find(quote).expect("closing quote")];
    if quote == '\'' {
        return inner.to_string();
    }
    assert_eq!(quote, '"', "not a string literal: {text}");
    let mut out = inner.to_string();
    // Longest names first, so `$admin` never eats the start of `$administrator`.
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out.replace(&format!("${name}"), &vars[name]);
    }
    assert!(!out.contains('$'), "unexpanded variable in {text}");
    out
}

/// What recipe B sends: the script's variables, its header table and its Invoke-RestMethod flags.
struct RestRecipe {
    uri: String,
    headers: Vec<(String, String)>,
    body: String,
    method: String,
    content_type: String,
    proxy: String,
}

fn rest_recipe() -> RestRecipe {
    let block = recipe("rest");
    let mut vars = BTreeMap::new();
    let mut headers = Vec::new();
    let mut in_table = false;
    for line in block.lines().map(str::trim) {
        if in_table {
            if line == "}" {
                in_table = false;
            } else {
                let (name, value) = line.split_once('=').expect("'Name' = value");
                headers.push((literal(name, &vars), literal(value, &vars)));
            }
        } else if line.starts_with("$headers = @{") {
            in_table = true;
        } else if let Some((name, value)) = line.strip_prefix('$').and_then(|l| l.split_once('=')) {
            let value = value.trim();
            if value.starts_with('\'') || value.starts_with('"') {
                vars.insert(name.trim().to_string(), literal(value, &vars));
            }
        }
    }
    let flag = |name: &str| {
        let at = block.find(&format!("-{name} ")).expect(name) + name.len() + 2;
        block[at..].split_whitespace().next().unwrap().to_string()
    };
    let unquote = |v: String| literal(&v, &vars);
    RestRecipe {
        uri: vars["uri"].clone(),
        body: vars["body"].clone(),
        method: flag("Method"),
        content_type: unquote(flag("ContentType")),
        proxy: unquote(flag("Proxy")),
        headers,
    }
}

/// The request `Invoke-RestMethod` (PowerShell 7) makes for `uri`: the script's headers, then the
/// ones it adds itself. No Authorization: exoproxy supplies it.
fn invoke_rest_method(r: &RestRecipe, uri: &str) -> (String, http::Request<Full<Bytes>>) {
    let rest = uri.strip_prefix("https://").expect("an https URI");
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut req = http::Request::builder()
        .method(r.method.to_ascii_uppercase().as_str())
        .uri(path)
        .header("host", host);
    for (name, value) in &r.headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let req = req
        .header(
            "user-agent",
            "Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.19045; en-US) PowerShell/7.4.6",
        )
        .header("content-type", r.content_type.as_str())
        .header("content-length", r.body.len())
        .body(Full::new(Bytes::from(r.body.clone())))
        .unwrap();
    (host.to_string(), req)
}

#[test]
fn the_rest_recipe_is_what_the_readme_says() {
    let r = rest_recipe();
    assert_eq!(
        r.uri,
        "https://outlook.office365.com/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand"
    );
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["X-AnchorMailbox", "X-ResponseFormat", "Prefer"]);
    assert_eq!(r.headers[0].1, format!("UPN:{ADMIN}"));
    assert!(
        !names
            .iter()
            .any(|n| n.eq_ignore_ascii_case("authorization"))
    );
    assert_eq!(
        r.proxy, "http://127.0.0.1:8765",
        "exoproxy's default listener"
    );
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["CmdletInput"]["CmdletName"], "Get-Mailbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_recipe_pages_through_every_mailbox() {
    let recipe = rest_recipe();
    // No default account: only the recipe's X-AnchorMailbox can name the account.
    let h = Harness::start(Options {
        default_account: None,
        ..Options::default()
    })
    .await;
    let expected = h.control().exchange().settings().mailboxes;
    let mut uri = recipe.uri.clone();
    let (mut mailboxes, mut pages) = (Vec::new(), 0);
    let mut client: Option<(String, _)> = None;
    loop {
        let (host, req) = invoke_rest_method(&recipe, &uri);
        if client.as_ref().is_none_or(|(h, _)| *h != host) {
            client = Some((host.clone(), h.client(&host).await));
        }
        let (_, sender) = client.as_mut().unwrap();
        let (status, _, body) = send(sender, req).await;
        assert_eq!(status, 200, "{uri}: {body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        pages += 1;
        mailboxes.extend(page["value"].as_array().unwrap().iter().cloned());
        match page["@odata.nextLink"].as_str() {
            Some(next) => uri = next.to_string(),
            None => break,
        }
        assert!(pages < 100, "nextLink never ends");
    }
    assert!(
        pages > 1,
        "the emulator's page size must make the loop page"
    );
    assert_eq!(mailboxes.len(), expected);
    let mut addresses: Vec<&str> = mailboxes
        .iter()
        .map(|m| m["PrimarySmtpAddress"].as_str().unwrap())
        .collect();
    addresses.dedup();
    assert_eq!(addresses.len(), expected, "a page repeated or skipped");
}

/// `( exoproxy token … )` and `-Organization …` of recipe C.
fn token_recipe() -> (Vec<String>, String) {
    let line = recipe("token");
    let start = line.find("(exoproxy ").expect("(exoproxy token …)") + 10;
    let end = start + line[start..].find(')').unwrap();
    let args = line[start..end]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let org = line[line.find("-Organization ").unwrap() + 14..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (args, org)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_recipe_gives_an_exchange_token_that_exchange_accepts() {
    let (args, org) = token_recipe();
    assert_eq!(args[..2], ["token".to_string(), ADMIN.to_string()]);
    let sim = exosim::Sim::start(exosim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auto_approve: true,
        ..exosim::SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sim_ca = dir.path().join("exosim-ca.pem");
    std::fs::write(&sim_ca, sim.ca_pem()).unwrap();
    let config = dir.path().join("exoproxy.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\nconnect_to = [\"::127.0.0.1:{port}\"]\n\n[tls]\nextra_roots = {ca:?}\n\n[[account]]\nupn = \"{ADMIN}\"\n",
            state = dir.path().join("state").display().to_string(),
            port = sim.addr().port(),
            ca = sim_ca.display().to_string(),
        ),
    )
    .unwrap();
    let run = |args: Vec<String>| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_exoproxy"))
                .arg("--config")
                .arg(config)
                .args(args)
                .env_remove("EXOPROXY_LOG")
                .output()
                .unwrap()
        })
    };
    let login = run(vec!["login".into(), ADMIN.into()]).await.unwrap();
    assert!(login.status.success(), "{login:?}");
    let out = run(args).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let jwt = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["aud"], "https://outlook.office365.com",
        "Connect-ExchangeOnline -AccessToken needs Exchange's audience"
    );
    assert_eq!(claims["upn"], ADMIN);
    // Exchange accepts it as the module would send it, straight to exosim (no proxy).
    let stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let tls = tls_client(stream, EXO, &[sim.ca_pem()]).await;
    let mut sender = http_client(tls).await;
    let mut req = post_json(
        EXO,
        &format!("/adminapi/beta/{org}/InvokeCommand"),
        GET_MAILBOX,
    );
    let headers = req.headers_mut();
    headers.insert("authorization", format!("Bearer {jwt}").parse().unwrap());
    headers.insert("x-anchormailbox", format!("UPN:{ADMIN}").parse().unwrap());
    let (status, _, body) = send(&mut sender, req).await;
    assert_eq!(status, 200, "{body}");
}
