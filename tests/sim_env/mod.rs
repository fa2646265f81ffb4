//! exosim, a temp dir with a state dir, and a config file that sends the cloud's hosts to it and
//! trusts its CA: the setup of the tests that run the real `exoproxy` binary (`login`, `run`,
//! `status`, actions) against the emulated cloud, and the small process helpers they share.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it

use std::path::PathBuf;
use std::process::{Child, Command, Output};

use exosim::{Sim, SimConfig};

/// The account every config names.
pub(crate) const ADMIN: &str = "admin@contoso.com";

/// The emulator, the files, and how to run the binary on them.
pub(crate) struct SimEnv {
    pub(crate) sim: Sim,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
    pub(crate) state: PathBuf,
}

impl SimEnv {
    /// exosim on a loopback port with `sim_config`; the config file names [`ADMIN`] and ends with
    /// `extra` (more TOML: sections, accounts).
    pub(crate) async fn start(sim_config: SimConfig, extra: &str) -> SimEnv {
        let sim = Sim::start(SimConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..sim_config
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sim_ca = dir.path().join("exosim-ca.pem");
        std::fs::write(&sim_ca, sim.ca_pem()).unwrap();
        let state = dir.path().join("state");
        let config = dir.path().join("exoproxy.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = {state:?}\nconnect_to = [\"::127.0.0.1:{port}\"]\n\n[tls]\n\
                 extra_roots = {ca:?}\n\n[[account]]\nupn = \"{ADMIN}\"\n\n{extra}",
                state = state.display().to_string(),
                port = sim.addr().port(),
                ca = sim_ca.display().to_string(),
            ),
        )
        .unwrap();
        SimEnv {
            sim,
            dir,
            config,
            state,
        }
    }

    /// `exoproxy --config <the file> ARGS`, without the caller's `EXOPROXY_LOG`.
    pub(crate) fn exoproxy(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_exoproxy"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("EXOPROXY_LOG");
        cmd
    }
}

/// A child process killed (by its own pid) on drop.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd` to its end off the async runtime.
pub(crate) async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        cmd.output()
            .expect("run the command (curl: scripts/setup.sh)")
    })
    .await
    .unwrap()
}
