//! `exoproxy install` / `uninstall` (docs/ARCHITECTURE.md, `desktop`): gathers what the pure plan
//! needs (the exe, the served PAC URL, the CA, the current values), prints the plan, and applies it
//! through the OS [`Desktop`](crate::desktop::Desktop) unless `--dry-run`. Without one (not Windows),
//! only `--dry-run` works, against the values such a machine has: none.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::desktop::{self, plan};
use crate::intercept::ca::LocalCa;

/// `install.json` in the state dir: the saved values.
const STATE_FILE: &str = "install.json";

/// `exoproxy install [--dry-run]`.
pub fn install(config: &Config, dry_run: bool) -> ExitCode {
    let mut system = desktop::system();
    if !dry_run && system.is_none() {
        return not_windows("install");
    }
    let ca_der = match ca_der(config, dry_run) {
        Ok(der) => der,
        Err(e) => return failed(&e),
    };
    let current = match desktop::current_values(system.as_deref()) {
        Ok(v) => v,
        Err(e) => return failed(&e.to_string()),
    };
    let dir = &config.state_dir;
    let input = plan::InstallInput {
        exe: std::env::current_exe()
            .map_or_else(|_| "exoproxy.exe".into(), |p| p.display().to_string()),
        pac_url: pac_url(config),
        ca_der,
        config_path: dir.join("exoproxy.toml").display().to_string(),
        config_exists: dir.join("exoproxy.toml").exists(),
        state_path: dir.join(STATE_FILE).display().to_string(),
        state_exists: dir.join(STATE_FILE).exists(),
    };
    match plan::install(&input, &current) {
        Ok(actions) => carry_out(&actions, system.as_deref_mut(), dir, dry_run, "install"),
        Err(e) => usage(&e.to_string()),
    }
}

/// `exoproxy uninstall [--dry-run]`.
pub fn uninstall(config: &Config, dry_run: bool) -> ExitCode {
    let mut system = desktop::system();
    if !dry_run && system.is_none() {
        return not_windows("uninstall");
    }
    let path = config.state_dir.join(STATE_FILE);
    let state = match desktop::read_state(&path) {
        Ok(s) => s,
        Err(e) => return failed(&e.to_string()),
    };
    match plan::uninstall(state.as_ref(), &path.display().to_string()) {
        Ok(actions) => carry_out(
            &actions,
            system.as_deref_mut(),
            &config.state_dir,
            dry_run,
            "uninstall",
        ),
        Err(e) => usage(&e.to_string()),
    }
}

fn carry_out(
    actions: &[plan::Action],
    system: Option<&mut (dyn desktop::Desktop + 'static)>,
    dir: &Path,
    dry_run: bool,
    what: &str,
) -> ExitCode {
    let (Some(system), false) = (system, dry_run) else {
        println!("exoproxy {what} --dry-run: these changes would be made, in this order:");
        for action in actions {
            println!("- {action}");
        }
        return ExitCode::SUCCESS;
    };
    let mut out = std::io::stdout();
    match desktop::apply(actions, system, &dir.join(STATE_FILE), &mut out) {
        Ok(()) => {
            println!("exoproxy {what}: done");
            ExitCode::SUCCESS
        }
        Err(e) => failed(&format!(
            "{what} stopped: {e} (what was done so far is listed above)"
        )),
    }
}

/// The served PAC on the first loopback listen address.
fn pac_url(config: &Config) -> String {
    let addr = config
        .listen
        .iter()
        .find(|a| a.is_ipv4())
        .or(config.listen.first())
        .map_or_else(|| "127.0.0.1:8765".to_string(), ToString::to_string);
    format!("http://{addr}{}", crate::admin::PAC_PATH)
}

/// The CA certificate (DER): created if needed, except in a dry run, which only reads an existing one.
fn ca_der(config: &Config, dry_run: bool) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    let pem_path = if dry_run {
        let existing = config.state_dir.join("exoproxy-ca.pem");
        if !existing.exists() {
            return Ok(Vec::new());
        }
        existing
    } else {
        let (ca, _) = LocalCa::load_or_create(&config.state_dir, &config.intercept.ca_domains())
            .map_err(|e| e.to_string())?;
        ca.files().cert.clone()
    };
    rustls_pki_types::CertificateDer::from_pem_file(&pem_path)
        .map(|c| c.to_vec())
        .map_err(|e| format!("{}: {e}", pem_path.display()))
}

fn not_windows(what: &str) -> ExitCode {
    eprintln!(
        "error: `exoproxy {what}` changes the Windows user's settings and runs only on Windows; `exoproxy {what} --dry-run` shows the plan here"
    );
    ExitCode::from(2)
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn failed(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
