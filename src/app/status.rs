//! `exoproxy status [--json]`: what the running proxy's `/status.json` says (docs/STATUS.md), as
//! readable text or as the raw JSON.
//!
//! Contract: the text is derived from the JSON only (so it can never say more than the page, and
//! never a secret); missing fields are skipped, not errors, so an older or newer proxy still
//! prints. Exit 0 with an answer, 1 when no proxy runs for the state dir or it does not answer.

use std::fmt::Write;
use std::process::ExitCode;

use serde_json::Value;

use super::running::Running;
use crate::config::Config;

/// Runs the command.
pub async fn status(config: &Config, json: bool) -> ExitCode {
    let Some(running) = Running::find(&config.state_dir) else {
        eprintln!(
            "no exoproxy is running for the state dir {}: start it with `exoproxy run` \
             (`exoproxy accounts` shows the token cache without it)",
            config.state_dir.display()
        );
        return ExitCode::FAILURE;
    };
    let body = match running.get("/status.json").await {
        Ok((200, body)) => body,
        Ok((status, body)) => {
            eprintln!("error: the proxy answered {status}: {}", body.trim());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{}", body.trim_end());
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<Value>(&body) {
        Ok(value) => {
            print!("{}", text(&value, &running.addr.to_string()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: /status.json is not JSON: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The readable report of a `/status.json` document.
pub fn text(s: &Value, addr: &str) -> String {
    let mut out = String::new();
    let now = s["now"].as_i64().unwrap_or_default();
    let _ = writeln!(
        out,
        "exoproxy {} at http://{addr}/, up {}",
        s["version"].as_str().unwrap_or("?"),
        duration(s["uptime_seconds"].as_i64().unwrap_or_default())
    );
    if let Some(last) = s["last_action"].as_object() {
        let _ = writeln!(
            out,
            "last action: {} {}: {}",
            last.get("action").and_then(Value::as_str).unwrap_or("?"),
            if last.get("ok") == Some(&Value::Bool(true)) {
                "ok"
            } else {
                "failed"
            },
            last.get("message").and_then(Value::as_str).unwrap_or("")
        );
    }
    out.push_str("accounts:\n");
    let accounts = s["accounts"].as_array().cloned().unwrap_or_default();
    if accounts.is_empty() {
        out.push_str("  none\n");
    }
    for a in &accounts {
        account(&mut out, a, now);
    }
    let list = |v: &Value| -> String {
        let items: Vec<String> = (v.as_array().into_iter().flatten())
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect();
        if items.is_empty() {
            "none".into()
        } else {
            items.join(", ")
        }
    };
    let _ = writeln!(out, "intercepted hosts: {}", list(&s["intercepted_hosts"]));
    upstream(&mut out, &s["upstream"], now);
    for d in s["sts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "sts {}: {}{}",
            d["domain"].as_str().unwrap_or("?"),
            list(&d["hosts"]),
            d["last_error"]
                .as_str()
                .map_or(String::new(), |e| format!(" (last error: {e})"))
        );
    }
    match s["ca"].as_object() {
        Some(ca) => {
            let _ = writeln!(
                out,
                "local CA: SHA-256 {}, expires in {}",
                ca.get("fingerprint_sha256")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                duration(
                    ca.get("not_after")
                        .and_then(Value::as_i64)
                        .unwrap_or_default()
                        - now
                )
            );
        }
        None => out.push_str("local CA: none (interception is off)\n"),
    }
    let _ = writeln!(
        out,
        "open: {} connections, {} tunnels",
        s["open"]["connections"], s["open"]["tunnels"]
    );
    let errors = s["recent_errors"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "recent errors: {}", errors.len());
    for e in errors.iter().take(5) {
        let _ = writeln!(
            out,
            "  {} ago {} {} {}: {}",
            duration(now - e["at"].as_i64().unwrap_or(now)),
            e["host"].as_str().unwrap_or(""),
            e["status"],
            e["code"].as_str().unwrap_or(""),
            e["hint"].as_str().unwrap_or("")
        );
    }
    out
}

/// The upstream source, the proxies with their health, and the PAC's state.
fn upstream(out: &mut String, u: &Value, now: i64) {
    if let Some(source) = u["source"].as_str() {
        let _ = writeln!(out, "upstream: {source}");
    }
    let proxies: Vec<String> = (u["proxies"].as_array().into_iter().flatten())
        .map(|p| {
            let name = p["proxy"].as_str().unwrap_or("?");
            match (p["health"].as_str(), p["seconds_left"].as_u64()) {
                (Some("bad"), Some(left)) => format!("{name} bad, tried last for {left} s"),
                (Some(health), _) => format!("{name} {health}"),
                (None, _) => name.to_string(),
            }
        })
        .collect();
    if !proxies.is_empty() {
        let _ = writeln!(out, "proxies: {}", proxies.join(", "));
    }
    let bad: Vec<String> = (u["bad_proxies"].as_array().into_iter().flatten())
        .map(|b| {
            format!(
                "{} ({} s left)",
                b["proxy"].as_str().unwrap_or("?"),
                b["seconds_left"]
            )
        })
        .collect();
    let bad = if bad.is_empty() {
        "none".into()
    } else {
        bad.join(", ")
    };
    let _ = writeln!(out, "bad proxies: {bad}");
    if let Some(pac) = u["pac"].as_object() {
        let field = |k: &str| pac.get(k).and_then(Value::as_str);
        let loaded = pac
            .get("loaded_at")
            .and_then(Value::as_i64)
            .map_or(String::new(), |at| {
                format!(", loaded {} ago", duration(now - at))
            });
        let error = field("last_error").map_or(String::new(), |e| format!(", last error: {e}"));
        let _ = writeln!(
            out,
            "pac {}: {}{loaded}{error} (without a script: {})",
            field("source").unwrap_or("?"),
            field("state").unwrap_or("?"),
            field("on_failure").unwrap_or("?")
        );
    }
}

fn account(out: &mut String, a: &Value, now: i64) {
    let upn = a["upn"].as_str().unwrap_or("?");
    let state = a["state"].as_str().unwrap_or("?");
    let _ = writeln!(out, "  {upn}: {}", state_words(state, upn));
    let known = |k: &str| a[k].as_str().map(|v| format!("{k} {v}"));
    let about: Vec<String> = [known("tenant"), known("flow")]
        .into_iter()
        .flatten()
        .collect();
    if !about.is_empty() {
        let _ = writeln!(out, "    {}", about.join(", "));
    }
    if let Some(next) = a["next_renewal_at"].as_i64() {
        let _ = writeln!(out, "    next renewal in {}", duration(next - now));
    }
    if let Some(sign_in) = a["sign_in"].as_object() {
        let _ = writeln!(
            out,
            "    sign-in: open {} and enter {} ({} left)",
            sign_in
                .get("verification_uri")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            sign_in
                .get("user_code")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            duration(
                sign_in
                    .get("expires_at")
                    .and_then(Value::as_i64)
                    .unwrap_or(now)
                    - now
            )
        );
    }
    for t in a["tokens"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "    token {}: expires in {}",
            t["audience"].as_str().unwrap_or("?"),
            duration(t["expires_in_seconds"].as_i64().unwrap_or_default())
        );
    }
    if let Some(r) = a["last_renewal"].as_object() {
        let ok = r.get("ok") == Some(&Value::Bool(true));
        let _ = writeln!(
            out,
            "    last renewal: {} ago, {}",
            duration(now - r.get("at").and_then(Value::as_i64).unwrap_or(now)),
            if ok {
                "ok".to_string()
            } else {
                format!(
                    "failed: {}",
                    r.get("detail").and_then(Value::as_str).unwrap_or("")
                )
            }
        );
    }
    if let Some(e) = a["last_error"].as_str() {
        let _ = writeln!(out, "    last error: {e}");
    }
}

/// The account's state in words; a suggested command is complete, ready to paste.
fn state_words(state: &str, upn: &str) -> String {
    match state {
        "ready" => "ready".into(),
        "failing" => "token calls failing; retrying".into(),
        "sign_in_pending" => "waiting for the sign-in below".into(),
        "sign_in_required" => format!("sign-in required: run `exoproxy login {upn}`"),
        "signed_out" => format!("signed out: run `exoproxy login {upn}`"),
        other => other.into(),
    }
}

/// `1824d 23h` / `1h 02m 03s` / `4m 05s` for seconds (negative: `0m 00s`).
fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h >= 48 {
        format!("{}d {}h", h / 24, h % 24)
    } else if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else {
        format!("{m}m {s:02}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_what_the_json_says() {
        let json = serde_json::json!({
            "schema": 1, "version": "9.9.9", "now": 1000, "uptime_seconds": 3725,
            "accounts": [{
                "upn": "admin@contoso.com", "state": "sign_in_pending", "tenant": "contoso.onmicrosoft.com",
                "flow": "device-code", "next_renewal_at": 1120,
                "sign_in": {"user_code": "ABCD-EFGH", "verification_uri": "https://login.example/device", "expires_at": 1300},
                "tokens": [{"audience": "https://outlook.office365.com", "expires_at": 1600, "expires_in_seconds": 600}],
                "last_renewal": {"at": 940, "ok": false, "detail": "invalid_grant"},
                "last_error": "revoked"
            }],
            "upstream": {"source": "PAC http://wpad.corp.example/proxy.pac", "bad_proxies": [{"proxy": "p2.corp:8080", "seconds_left": 30}],
                "proxies": [{"proxy": "p1.corp:8080", "health": "healthy", "seconds_left": null},
                            {"proxy": "p2.corp:8080", "health": "bad", "seconds_left": 30}],
                "pac": {"source": "http://wpad.corp.example/proxy.pac", "state": "loaded", "loaded_at": 880, "last_error": null, "on_failure": "fail"}},
            "sts": [], "intercepted_hosts": ["outlook.office365.com"],
            "ca": null, "recent_errors": [], "open": {"connections": 2, "tunnels": 1},
            "last_action": {"ok": true, "action": "signin", "account": "admin@contoso.com", "message": "to sign in", "at": 990}
        });
        let out = text(&json, "127.0.0.1:8765");
        for expected in [
            "exoproxy 9.9.9 at http://127.0.0.1:8765/, up 1h 02m 05s",
            "last action: signin ok: to sign in",
            "admin@contoso.com: waiting for the sign-in below",
            "open https://login.example/device and enter ABCD-EFGH (5m 00s left)",
            "token https://outlook.office365.com: expires in 10m 00s",
            "last renewal: 1m 00s ago, failed: invalid_grant",
            "intercepted hosts: outlook.office365.com",
            "tenant contoso.onmicrosoft.com, flow device-code",
            "next renewal in 2m 00s",
            "upstream: PAC http://wpad.corp.example/proxy.pac",
            "proxies: p1.corp:8080 healthy, p2.corp:8080 bad, tried last for 30 s",
            "bad proxies: p2.corp:8080 (30 s left)",
            "pac http://wpad.corp.example/proxy.pac: loaded, loaded 2m 00s ago (without a script: fail)",
            "local CA: none",
            "open: 2 connections, 1 tunnels",
        ] {
            assert!(out.contains(expected), "{expected:?} in:\n{out}");
        }
        assert_eq!(duration(5 * 365 * 86_400), "1825d 0h");
    }
}
