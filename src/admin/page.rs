//! The status page (`GET /`): server-rendered HTML of the [`Status`] snapshot, complete without
//! JavaScript. `/status.js` ([`SCRIPT`]) only turns the `data-expires` (token and code expiry) and
//! `data-due` (next renewal) times into live countdowns;
//! it is served from our own path because the page's CSP is `default-src 'self'` (no inline script,
//! no inline style, nothing from elsewhere). Every value is HTML-escaped.
//!
//! Actions (docs/STATUS.md, "Actions") are plain `<form method="post">`s, one per action and
//! account, each with the admin token as a hidden `token` field: they work without JavaScript, the
//! browser sends our own `Origin`, and the reply is a 303 back here, where the `last-action`
//! paragraph shows the outcome. The token is in the page because the page is readable only by the
//! same OS user and only same-origin (the `Host` gate stops DNS rebinding).

use std::fmt::Write;

use super::action::PREFIX;
use super::status::{AccountView, ReloadResult, Status};

/// The countdown script, served as `/status.js`.
pub const SCRIPT: &str = include_str!("status.js");

/// The page's icon, served as `/favicon.ico` (SVG: browsers go by the media type, not the name).
pub const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
    <rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#24527a\"/>\
    <path d=\"M4 4l8 8M12 4l-8 8\" stroke=\"#fff\" stroke-width=\"2\"/></svg>";

/// The PowerShell line that trusts the downloaded CA for the current user.
pub const TRUST_LINE: &str =
    r"Import-Certificate -FilePath .\exoproxy-ca.pem -CertStoreLocation Cert:\CurrentUser\Root";

/// The page for `status`; `form_token` is the admin token the action forms carry.
pub fn render(status: &Status, form_token: &str) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>exoproxy status</title><script src=\"/status.js\" defer></script></head><body>\n",
    );
    let _ = writeln!(
        out,
        "<h1>exoproxy {}</h1>\n<p>Up <span data-uptime=\"{}\">{}</span>; snapshot at \
         <time data-now=\"{}\">{}</time> (Unix seconds). Machine-readable: \
         <a href=\"/status.json\">/status.json</a>, <a href=\"/metrics\">/metrics</a>.</p>",
        esc(status.version),
        status.uptime_seconds,
        duration(status.uptime_seconds),
        status.now,
        status.now
    );
    last_action(&mut out, status);
    accounts(&mut out, status, form_token);
    upstream(&mut out, status);
    ca(&mut out, status);
    errors(&mut out, status);
    configuration(&mut out, status, form_token);
    let _ = writeln!(
        out,
        "<h2>Open</h2>\n<p id=\"open\">{} connections, {} tunnels</p>",
        status.open.connections, status.open.tunnels
    );
    out.push_str("</body></html>\n");
    out
}

/// The last action's outcome, right under the title, where a redirected form lands.
fn last_action(out: &mut String, status: &Status) {
    let Some(last) = &status.last_action else {
        return;
    };
    let _ = writeln!(
        out,
        "<p id=\"last-action\" class=\"{}\">Last action <code>{}</code>{} at <time data-at=\"{}\">{}</time>: {}: {}</p>",
        if last.ok { "ok" } else { "failed" },
        esc(&last.action),
        last.account
            .as_deref()
            .map_or(String::new(), |a| format!(" for {}", esc(a))),
        last.at,
        last.at,
        if last.ok { "done" } else { "failed" },
        esc(&last.message)
    );
}

fn accounts(out: &mut String, status: &Status, form_token: &str) {
    out.push_str("<h2>Accounts</h2>\n");
    if status.accounts.is_empty() {
        out.push_str("<p>No accounts configured.</p>\n");
        return;
    }
    out.push_str(
        "<table id=\"accounts\"><tr><th>Account</th><th>Tenant</th><th>Flow</th><th>State</th>\
         <th>Tokens (expire in)</th><th>Last renewal</th><th>Next renewal</th><th>Last error</th>\
         <th>Actions</th></tr>\n",
    );
    for account in &status.accounts {
        account_row(out, account, status.now, form_token);
    }
    out.push_str("</table>\n");
}

/// `now`: the snapshot's Unix seconds, for the sign-in code's time left.
fn account_row(out: &mut String, a: &AccountView, now: i64, form_token: &str) {
    let mut state = esc(a.state);
    if let Some(sign_in) = &a.sign_in {
        let _ = write!(
            state,
            ": enter <code>{code}</code> <button type=\"button\" data-copy=\"{code}\" hidden>Copy \
             code</button> at <a href=\"{uri}\">{uri}</a> \
             (<span data-expires=\"{at}\">{left}</span> left)",
            code = esc(&sign_in.user_code),
            uri = esc(&sign_in.verification_uri),
            at = sign_in.expires_at,
            left = duration(u64::try_from(sign_in.expires_at - now).unwrap_or(0)),
        );
    }
    let tokens: Vec<String> = a
        .tokens
        .iter()
        .map(|t| {
            format!(
                "{} <span data-expires=\"{}\">{}</span>",
                esc(&t.audience),
                t.expires_at,
                duration(t.expires_in_seconds)
            )
        })
        .collect();
    let renewal = a.last_renewal.as_ref().map_or(String::from("none"), |r| {
        format!(
            "<time data-at=\"{}\">{}</time> {}",
            r.at,
            r.at,
            if r.ok { "ok" } else { "failed" }
        )
    });
    let _ = writeln!(
        out,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td></tr>",
        esc(&a.upn),
        esc(&a.tenant),
        esc(a.flow),
        state,
        tokens.join("<br>"),
        renewal,
        next_renewal(a.next_renewal_at, now),
        esc(a.last_error.as_deref().unwrap_or("")),
        forms(&a.upn, form_token)
    );
}

/// The next background renewal as a countdown (`data-due`, live with the script), or why there
/// is none.
fn next_renewal(at: Option<i64>, now: i64) -> String {
    match at {
        Some(at) if at > now => format!(
            "in <span data-due=\"{at}\">{}</span>",
            duration(u64::try_from(at - now).unwrap_or(0))
        ),
        Some(at) => format!("<span data-due=\"{at}\">now</span>"),
        None => "on the next request".into(),
    }
}

/// One small POST form per account action.
fn forms(upn: &str, form_token: &str) -> String {
    [
        ("signin", "Sign in"),
        ("renew", "Renew now"),
        ("signout", "Sign out"),
    ]
    .iter()
    .map(|(action, label)| {
        format!(
            "<form method=\"post\" action=\"{PREFIX}{action}\">\
                 <input type=\"hidden\" name=\"token\" value=\"{}\">\
                 <input type=\"hidden\" name=\"account\" value=\"{}\">\
                 <button type=\"submit\">{label}</button></form>",
            esc(form_token),
            esc(upn)
        )
    })
    .collect()
}

fn upstream(out: &mut String, status: &Status) {
    let up = &status.upstream;
    let _ = writeln!(
        out,
        "<h2>Routing</h2>\n<p id=\"upstream-source\">Upstream: {}</p>",
        esc(&up.source)
    );
    let proxies: Vec<String> = (up.proxies.iter())
        .map(|p| match p.seconds_left {
            Some(left) => format!("{} (bad: tried last for {left} s)", p.proxy),
            None => format!("{} ({})", p.proxy, p.health),
        })
        .collect();
    let _ = writeln!(
        out,
        "<p id=\"proxies\">Proxies (in use or remembered as bad): {}</p>",
        list(&proxies)
    );
    pac(out, status);
    out.push_str("<p>Intercepted hosts: ");
    out.push_str(&list(&status.intercepted_hosts));
    out.push_str("</p>\n<p>STS hosts (DIRECT): ");
    let sts: Vec<String> = (status.sts.iter())
        .map(|d| {
            // A managed (not federated) domain has no STS: say so rather than an empty list.
            let hosts = if d.hosts.is_empty() {
                "no STS host".to_string()
            } else {
                d.hosts.join(", ")
            };
            match &d.last_error {
                Some(e) => format!("{}: {hosts} (last error: {e})", d.domain),
                None => format!("{}: {hosts}", d.domain),
            }
        })
        .collect();
    out.push_str(&list(&sts));
    out.push_str("</p>\n");
}

/// The PAC in use: where from, loaded when, the last failure.
fn pac(out: &mut String, status: &Status) {
    let Some(pac) = &status.upstream.pac else {
        return;
    };
    let loaded = pac
        .loaded_at
        .map_or(String::from("no script loaded"), |at| {
            format!("script in use loaded <time data-at=\"{at}\">{at}</time>")
        });
    let _ = writeln!(
        out,
        "<p id=\"pac\">PAC <code>{}</code>: {}, {}; when not loaded: {}. Last error: {}</p>",
        esc(&pac.source),
        pac.state,
        loaded,
        if pac.on_failure == "direct" {
            "DIRECT"
        } else {
            "refuse (pac_error)"
        },
        esc(pac.last_error.as_deref().unwrap_or("none"))
    );
}

fn ca(out: &mut String, status: &Status) {
    out.push_str("<h2>Local CA</h2>\n");
    let Some(ca) = &status.ca else {
        out.push_str("<p>Interception is off: no CA.</p>\n");
        return;
    };
    let _ = writeln!(
        out,
        "<p>SHA-256 <code>{}</code>, expires <time data-at=\"{}\">{}</time>. \
         <a href=\"/exoproxy-ca.pem\" download=\"exoproxy-ca.pem\">Download exoproxy-ca.pem</a>, \
         then trust it for your user in PowerShell:</p>\n<pre>{}</pre>",
        esc(&ca.fingerprint_sha256),
        ca.not_after,
        ca.not_after,
        esc(TRUST_LINE)
    );
}

fn errors(out: &mut String, status: &Status) {
    out.push_str("<h2>Recent errors</h2>\n");
    if status.recent_errors.is_empty() {
        out.push_str("<p>None.</p>\n");
        return;
    }
    out.push_str(
        "<table id=\"errors\"><tr><th>Time</th><th>Host</th><th>Status</th><th>Code</th>\
         <th>What to do</th></tr>\n",
    );
    for e in &status.recent_errors {
        let _ = writeln!(
            out,
            "<tr><td><time data-at=\"{}\">{}</time></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            e.at,
            e.at,
            esc(&e.host),
            e.status,
            esc(&e.code),
            esc(&e.hint)
        );
    }
    out.push_str("</table>\n");
}

/// The file in use, when it was loaded, and how the last reload ended (docs/STATUS.md, `config`).
fn configuration(out: &mut String, status: &Status, form_token: &str) {
    out.push_str("<h2>Configuration</h2>\n");
    let Some(config) = &status.config else {
        out.push_str("<p>Not reloadable: restart to apply changes.</p>\n");
        return;
    };
    let file = config.file.as_deref().unwrap_or("built-in defaults");
    let _ = writeln!(
        out,
        "<p id=\"config\"><code>{}</code>, loaded <time data-at=\"{}\">{}</time>. \
         Changes to the file apply to new requests within seconds (or on SIGHUP).</p>\
         <form method=\"post\" action=\"{PREFIX}reload\">\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\
         <button type=\"submit\">Reload configuration</button></form>",
        esc(file),
        config.loaded_at,
        config.loaded_at,
        esc(form_token)
    );
    let Some(last) = &config.last_reload else {
        return;
    };
    let result = match last.result {
        ReloadResult::Applied => "applied",
        ReloadResult::Refused => "refused: the running configuration stays",
    };
    let _ = writeln!(
        out,
        "<p id=\"last-reload\">Last reload <time data-at=\"{}\">{}</time>: {}.</p>",
        last.at, last.at, result
    );
    if !last.errors.is_empty() {
        let _ = writeln!(out, "<p>Errors: {}</p>", list(&last.errors));
    }
    if !last.restart_needed.is_empty() {
        let _ = writeln!(
            out,
            "<p>Needs a restart to apply: {}</p>",
            list(&last.restart_needed)
        );
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items.iter().map(|i| esc(i)).collect::<Vec<_>>().join(", ")
}

/// `3h 05m 07s`-style text for a number of seconds.
fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else {
        format!("{m}m {s:02}s")
    }
}

/// HTML-escapes text for element content and double-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    fn empty_status() -> Status {
        use crate::admin::status::{OpenView, UpstreamView};
        Status {
            schema: 1,
            version: "0",
            now: 0,
            uptime_seconds: 0,
            accounts: Vec::new(),
            upstream: UpstreamView {
                source: "no upstream configured".into(),
                proxies: Vec::new(),
                pac: None,
                bad_proxies: Vec::new(),
            },
            sts: Vec::new(),
            intercepted_hosts: Vec::new(),
            ca: None,
            recent_errors: Vec::new(),
            open: OpenView {
                connections: 0,
                tunnels: 0,
            },
            config: None,
            last_action: None,
        }
    }

    /// The pending sign-in shows its code, where to enter it, a live countdown and a copy button
    /// that stays hidden until `status.js` finds a clipboard (the page works without it).
    #[test]
    fn a_pending_sign_in_shows_its_code_with_a_copy_button() {
        use crate::admin::status::{AccountView, SignInView};
        let mut status = empty_status();
        status.now = 1_000;
        status.accounts = vec![AccountView {
            upn: "admin@contoso.com".into(),
            tenant: "contoso.com".into(),
            flow: "device-code",
            state: "sign_in_pending",
            failures: None,
            aadsts: None,
            sign_in: Some(SignInView {
                user_code: "ABCD-<EFG>".into(),
                verification_uri: "https://login.example/device".into(),
                expires_at: 1_300,
            }),
            has_refresh_token: false,
            tokens: Vec::new(),
            last_renewal: None,
            next_renewal_at: None,
            last_error: None,
        }];
        let page = render(&status, "t");
        for expected in [
            "enter <code>ABCD-&lt;EFG&gt;</code>",
            "<button type=\"button\" data-copy=\"ABCD-&lt;EFG&gt;\" hidden>Copy code</button>",
            "<a href=\"https://login.example/device\">",
            "<span data-expires=\"1300\">5m 00s</span> left",
        ] {
            assert!(page.contains(expected), "{expected:?} in {page}");
        }
    }

    #[test]
    fn a_domain_without_sts_hosts_says_so() {
        use crate::admin::status::StsView;
        let mut status = empty_status();
        status.sts = vec![
            StsView {
                domain: "contoso.com".into(),
                hosts: Vec::new(),
                last_error: None,
                failures: 0,
            },
            StsView {
                domain: "fabrikam.com".into(),
                hosts: vec!["sts.fabrikam.com".into()],
                last_error: None,
                failures: 0,
            },
        ];
        let page = render(&status, "t");
        assert!(
            page.contains(
                "STS hosts (DIRECT): contoso.com: no STS host, fabrikam.com: sts.fabrikam.com</p>"
            ),
            "{page}"
        );
    }

    #[test]
    fn a_refused_reload_shows_its_errors_and_an_applied_one_what_needs_a_restart() {
        use crate::admin::status::{ConfigView, ReloadOutcome, ReloadTrigger};
        let outcome = |result, errors: &[&str], restart: &[&str]| ReloadOutcome {
            at: 1_700_000_000,
            trigger: ReloadTrigger::FileChanged,
            result,
            errors: errors.iter().map(|e| e.to_string()).collect(),
            restart_needed: restart.iter().map(|e| e.to_string()).collect(),
        };
        let mut status = empty_status();
        assert!(render(&status, "t").contains("Not reloadable"));
        let refused = outcome(
            ReloadResult::Refused,
            &["line 3: upstream.x: unknown <key>"],
            &[],
        );
        status.config = Some(ConfigView {
            file: Some("/etc/exoproxy.toml".into()),
            loaded_at: 1_600_000_000,
            last_reload: Some(refused),
        });
        let page = render(&status, "t");
        assert!(
            page.contains("<code>/etc/exoproxy.toml</code>, loaded"),
            "{page}"
        );
        assert!(
            page.contains("refused: the running configuration stays"),
            "{page}"
        );
        assert!(
            page.contains("line 3: upstream.x: unknown &lt;key&gt;"),
            "{page}"
        );
        let applied = outcome(ReloadResult::Applied, &[], &["listen (a → b)"]);
        if let Some(config) = &mut status.config {
            config.last_reload = Some(applied);
        }
        let page = render(&status, "t");
        assert!(page.contains(": applied."), "{page}");
        assert!(
            page.contains("Needs a restart to apply: listen (a → b)"),
            "{page}"
        );
    }

    #[test]
    fn next_renewal_counts_down_or_says_why_there_is_none() {
        assert_eq!(
            next_renewal(Some(1_000 + 65), 1_000),
            "in <span data-due=\"1065\">1m 05s</span>"
        );
        assert_eq!(
            next_renewal(Some(990), 1_000),
            "<span data-due=\"990\">now</span>"
        );
        assert_eq!(next_renewal(None, 1_000), "on the next request");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(65), "1m 05s");
        assert_eq!(duration(3 * 3600 + 5 * 60 + 7), "3h 05m 07s");
    }
}
