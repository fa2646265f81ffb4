//! The command line tells the truth: the real `exoproxy` binary (and its clap definition) evaluates PAC
//! as the running proxy does, routes bare hosts, refuses bad PAC results and log filters, takes each
//! flag only where it means something, and every command a rescue text suggests parses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use exoproxy::app::target_of_url;
use exoproxy::cli::Cli;
use exoproxy::handler::rescue::{Rescue, examples};

/// Returns a different proxy when the script is shown a path or query: the proxy never shows one.
const PATH_SENSITIVE_PAC: &str = r#"
function FindProxyForURL(url, host) {
  if (url == "https://www.example.org/" && host == "www.example.org") return "PROXY reduced.test:3128";
  return "PROXY saw-the-path.test:3128";
}
"#;

/// The binary with a private state dir and no log filter from the environment.
fn exoproxy(state: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exoproxy"));
    cmd.arg("--state-dir")
        .arg(state)
        .env_remove("EXOPROXY_LOG")
        .env_remove("EXOPROXY_CONFIG")
        .env_remove("EXOPROXY_UPSTREAM")
        .env_remove("EXOPROXY_LISTEN");
    cmd
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run exoproxy");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn write_pac(dir: &Path, script: &str) -> String {
    let file = dir.join("test.pac");
    std::fs::write(&file, script).unwrap();
    file.display().to_string()
}

#[test]
fn pac_eval_passes_what_the_proxy_passes_for_https() {
    let dir = tempfile::tempdir().unwrap();
    let pac = write_pac(dir.path(), PATH_SENSITIVE_PAC);
    for url in [
        "https://www.example.org/secret?q=1",
        "https://WWW.example.org/",
        "www.example.org",
    ] {
        let (out, stdout, stderr) =
            run(exoproxy(dir.path()).args(["pac", "eval", url, "--pac", &pac]));
        assert!(out.status.success(), "{url}: {stdout}{stderr}");
        assert_eq!(stdout.trim(), "PROXY reduced.test:3128", "{url}: {stderr}");
    }
}

#[test]
fn pac_eval_reads_an_http_pac_location_as_upstream_pac_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/proxy.pac", server.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut conn, _) = server.accept().unwrap();
        let mut head = [0u8; 4096];
        let _ = conn.read(&mut head);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-ns-proxy-autoconfig\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PATH_SENSITIVE_PAC}",
            PATH_SENSITIVE_PAC.len()
        );
        conn.write_all(response.as_bytes()).unwrap();
    });
    let (out, stdout, stderr) = run(exoproxy(dir.path()).args([
        "pac",
        "eval",
        "https://www.example.org/secret",
        "--pac",
        &url,
    ]));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "PROXY reduced.test:3128", "{stderr}");
}

#[test]
fn pac_eval_fails_on_a_result_the_proxy_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let pac = write_pac(
        dir.path(),
        r#"function FindProxyForURL(url, host) { return "PROXI x:1"; }"#,
    );
    let (out, stdout, stderr) =
        run(exoproxy(dir.path()).args(["pac", "eval", "https://a.test/", "--pac", &pac]));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("PROXI x:1"), "{stderr}");
    assert_eq!(stdout, "", "an invalid result is not printed as an answer");
}

#[test]
fn pac_eval_names_the_time_budget_that_stopped_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let pac = write_pac(
        dir.path(),
        "function FindProxyForURL(url, host) { while (true) {} }",
    );
    let (out, stdout, stderr) =
        run(exoproxy(dir.path()).args(["pac", "eval", "https://a.test/", "--pac", &pac]));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("250 ms time budget"), "{stderr}");
}

#[test]
fn route_takes_a_bare_host_and_explains_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let (out, host_report, stderr) =
        run(exoproxy(dir.path()).args(["route", "outlook.office365.com"]));
    assert!(out.status.success(), "{host_report}{stderr}");
    let (_, url_report, _) =
        run(exoproxy(dir.path()).args(["route", "https://outlook.office365.com/"]));
    let body = |report: &str| report.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&host_report), body(&url_report));
    assert!(
        host_report.contains("request:  CONNECT outlook.office365.com:443"),
        "{host_report}"
    );
    assert!(host_report.contains("decision: INTERCEPT"), "{host_report}");
    assert!(
        host_report.contains("meaning:  TLS ends here"),
        "{host_report}"
    );
    assert!(
        !host_report.contains("Connect ") && !host_report.contains("{"),
        "no Debug output: {host_report}"
    );
}

#[test]
fn route_says_an_unreachable_idp_in_one_short_line() {
    let dir = tempfile::tempdir().unwrap();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_proxy = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let config = dir.path().join("exoproxy.toml");
    std::fs::write(&config, "[routing]\nsts_domains = [\"contoso.test\"]\n").unwrap();
    let (out, report, stderr) = run(exoproxy(dir.path()).arg("--config").arg(&config).args([
        "route",
        "a.test",
        "--upstream",
        &dead_proxy,
    ]));
    assert!(out.status.success(), "{report}{stderr}");
    let sts: Vec<&str> = report.lines().filter(|l| l.contains("sts:")).collect();
    assert_eq!(sts.len(), 1, "{report}");
    assert!(
        sts[0].contains("contoso.test: not discovered: the IdP is unreachable"),
        "{report}"
    );
    assert!(sts[0].len() < 200, "short: {}", sts[0]);
}

#[test]
fn commands_suggested_by_rescue_texts_parse_with_the_real_cli() {
    let mut suggested = Vec::new();
    for err in examples() {
        let message = Rescue::of(&err).message;
        for lower in ["status page", "admin port"] {
            assert!(!message.contains(lower), "points at nothing: {message}");
        }
        for quoted in message.split('`').skip(1).step_by(2) {
            if quoted.starts_with("exoproxy ") {
                suggested.push(quoted.replace("<url>", "https://outlook.office365.com/"));
            }
        }
    }
    assert!(suggested.len() >= 3, "{suggested:?}");
    for command in &suggested {
        let words: Vec<&str> = command.split_whitespace().collect();
        let parsed = Cli::try_parse_args(&words);
        assert!(parsed.is_ok(), "{command}: {:?}", parsed.err());
        if let ["exoproxy", "route", arg] | ["exoproxy", "pac", "eval", arg] = words[..] {
            assert!(target_of_url(arg).is_ok(), "{command}");
        }
    }
}

#[test]
fn flags_are_taken_only_where_they_mean_something() {
    let parses = |args: &[&str]| Cli::try_parse_args(args).is_ok();
    let exo = "exoproxy";
    assert!(parses(&[
        exo,
        "--listen",
        "127.0.0.1:1",
        "--upstream",
        "http://p:1"
    ]));
    assert!(parses(&[
        exo,
        "run",
        "--listen",
        "127.0.0.1:1",
        "--bypass",
        "<local>"
    ]));
    assert!(parses(&[
        exo,
        "route",
        "a.test",
        "--upstream",
        "http://p:1"
    ]));
    assert!(parses(&[
        exo,
        "login",
        "a@b.test",
        "--upstream-ca",
        "ca.pem"
    ]));
    assert!(parses(&[exo, "--state-dir", "d", "-v", "accounts"]));
    assert!(parses(&[exo, "accounts", "--config", "c.toml", "-q"]));
    assert!(!parses(&[exo, "accounts", "--listen", "127.0.0.1:1"]));
    assert!(!parses(&[exo, "--listen", "127.0.0.1:1", "accounts"]));
    assert!(!parses(&[
        exo,
        "login",
        "a@b.test",
        "--listen",
        "127.0.0.1:1"
    ]));
    assert!(!parses(&[
        exo,
        "pac",
        "eval",
        "a.test",
        "--upstream",
        "http://p:1"
    ]));
    assert!(!parses(&[
        exo,
        "ca",
        "export",
        "f.pem",
        "--connect-to",
        "a:1:b:2"
    ]));
    assert!(!parses(&[exo, "config", "check", "--bypass", "x"]));
}

#[test]
fn a_proxy_flag_in_the_environment_does_not_break_other_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(exoproxy(dir.path())
        .env("EXOPROXY_LISTEN", "127.0.0.1:1")
        .arg("accounts"));
    assert!(out.status.success(), "{stdout}{stderr}");
}

#[test]
fn an_invalid_exoproxy_log_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(exoproxy(dir.path())
        .env("EXOPROXY_LOG", "verbose")
        .arg("accounts"));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("EXOPROXY_LOG=\"verbose\""), "{stderr}");
}

#[test]
fn v_beats_exoproxy_log_and_piped_logs_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = exoproxy(dir.path())
        .env("EXOPROXY_LOG", "error")
        .args(["-v", "run", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let ready = loop {
        match seen.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let done = line.contains("ready");
                log.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join("\n");
    assert!(
        ready,
        "-v shows the info line despite EXOPROXY_LOG=error:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "no ANSI codes on a pipe:\n{log}");
}

#[test]
fn route_names_the_environment_as_the_source_of_an_env_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exoproxy.toml");
    std::fs::write(
        &config,
        "[upstream]\nsource = \"env\"\n[routing]\ndiscover_sts = false\n",
    )
    .unwrap();
    let mut cmd = exoproxy(dir.path());
    for var in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
        cmd.env_remove(var);
    }
    for var in ["NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(var);
    }
    let (out, report, stderr) = run(cmd
        .env("HTTPS_PROXY", "http://proxy.env.test:3128")
        .arg("--config")
        .arg(&config)
        .args(["route", "a.test"]));
    assert!(out.status.success(), "{report}{stderr}");
    assert!(report.contains("proxy.env.test:3128"), "{report}");
    assert!(
        report.contains("environment (HTTPS_PROXY/HTTP_PROXY)"),
        "{report}"
    );
    assert!(!report.contains("static upstream"), "{report}");
}
