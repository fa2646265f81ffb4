#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io;

use super::plan::{self, Action, InstallInput, PlanError, RegData, dword, string};
use super::{Desktop, apply, current_values, read_state};

/// An in-memory HKCU and Root store.
#[derive(Debug, Default, Clone, PartialEq)]
struct Fake {
    values: BTreeMap<(String, String), RegData>,
    roots: Vec<Vec<u8>>,
}

impl Desktop for Fake {
    fn read(&self, key: &str, name: &str) -> io::Result<Option<RegData>> {
        Ok(self.values.get(&(key.into(), name.into())).cloned())
    }
    fn write(&mut self, key: &str, name: &str, data: &RegData) -> io::Result<()> {
        self.values.insert((key.into(), name.into()), data.clone());
        Ok(())
    }
    fn delete(&mut self, key: &str, name: &str) -> io::Result<()> {
        self.values.remove(&(key.into(), name.into()));
        Ok(())
    }
    fn trust(&mut self, der: &[u8]) -> io::Result<()> {
        self.roots.push(der.to_vec());
        Ok(())
    }
    fn untrust(&mut self, der: &[u8]) -> io::Result<()> {
        self.roots.retain(|r| r != der);
        Ok(())
    }
}

const PAC: &str = "http://127.0.0.1:8765/proxy.pac";

fn input(dir: &std::path::Path) -> InstallInput {
    InstallInput {
        exe: r"C:\Users\a\AppData\Local\exoproxy\exoproxy.exe".into(),
        pac_url: PAC.into(),
        ca_der: vec![0x30, 1, 2, 3],
        config_path: dir.join("exoproxy.toml").to_string_lossy().into(),
        config_exists: dir.join("exoproxy.toml").exists(),
        state_path: dir.join("install.json").to_string_lossy().into(),
        state_exists: dir.join("install.json").exists(),
    }
}

fn corporate() -> Fake {
    let mut fake = Fake::default();
    fake.write(plan::INET_KEY, "ProxyEnable", &dword(1))
        .unwrap();
    fake.write(
        plan::INET_KEY,
        "ProxyServer",
        &string("http=p.corp:8080;https=s.corp:8443"),
    )
    .unwrap();
    // An odd type and trailing bytes: restored byte for byte all the same.
    let odd = RegData {
        kind: 2,
        bytes: vec![b'<', 0, b'l', 0, 0, 0, 0xAA],
    };
    fake.write(plan::INET_KEY, "ProxyOverride", &odd).unwrap();
    fake.write("Other", "Untouched", &dword(7)).unwrap();
    fake
}

fn run_install(fake: &mut Fake, dir: &std::path::Path) -> Vec<Action> {
    let current = current_values(Some(&*fake)).unwrap();
    let actions = plan::install(&input(dir), &current).unwrap();
    apply(&actions, fake, &dir.join("install.json"), &mut Vec::new()).unwrap();
    actions
}

#[test]
fn install_then_uninstall_restores_every_value_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = corporate();
    let before = fake.clone();
    run_install(&mut fake, dir.path());
    assert_eq!(
        fake.read(plan::INET_KEY, "AutoConfigURL").unwrap(),
        Some(string(PAC))
    );
    assert_eq!(
        fake.read(plan::INET_KEY, "ProxyEnable").unwrap(),
        Some(dword(0))
    );
    let run = fake.read(plan::RUN_KEY, plan::RUN_VALUE).unwrap().unwrap();
    assert!(
        run.as_string()
            .unwrap()
            .starts_with("conhost.exe --headless \"C:\\Users"),
        "{run:?}"
    );
    assert_eq!(fake.roots, vec![vec![0x30, 1, 2, 3]]);
    let config = std::fs::read_to_string(dir.path().join("exoproxy.toml")).unwrap();
    assert!(
        config.contains("proxies = [\"http://s.corp:8443\"]"),
        "{config}"
    );

    let state = read_state(&dir.path().join("install.json")).unwrap();
    let path = dir.path().join("install.json");
    let actions = plan::uninstall(state.as_ref(), &path.to_string_lossy()).unwrap();
    apply(&actions, &mut fake, &path, &mut Vec::new()).unwrap();
    assert_eq!(fake, before);
    assert!(!dir.path().join("exoproxy.toml").exists());
    assert!(!path.exists());
}

#[test]
fn an_existing_config_is_kept_and_a_second_install_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("exoproxy.toml"), "# mine\n").unwrap();
    let mut fake = Fake::default();
    let actions = run_install(&mut fake, dir.path());
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::WriteConfig { .. }))
    );
    let again = plan::install(&input(dir.path()), &[]);
    assert!(
        matches!(again, Err(PlanError::AlreadyInstalled(_))),
        "{again:?}"
    );
    let state = read_state(&dir.path().join("install.json")).unwrap();
    let path = dir.path().join("install.json");
    apply(
        &plan::uninstall(state.as_ref(), "x").unwrap(),
        &mut fake,
        &path,
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(fake, Fake::default());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("exoproxy.toml")).unwrap(),
        "# mine\n"
    );
}

#[test]
fn uninstall_without_state_is_refused() {
    assert!(matches!(
        plan::uninstall(None, "s"),
        Err(PlanError::NotInstalled(_))
    ));
}

#[test]
fn the_save_comes_first_and_the_ca_line_before_the_ca_call() {
    let dir = tempfile::tempdir().unwrap();
    let actions = plan::install(&input(dir.path()), &[]).unwrap();
    assert!(matches!(actions[0], Action::SaveState(_)));
    let text: Vec<String> = actions.iter().map(ToString::to_string).collect();
    let text = text.join("\n");
    assert!(text.contains("ProxyServer (absent)"), "{text}");
    assert!(text.contains("Windows asks you to confirm"), "{text}");
    assert!(text.contains("set HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\AutoConfigURL = REG_SZ \"http://127.0.0.1:8765/proxy.pac\""), "{text}");
}

#[test]
fn the_upstream_comes_from_the_replaced_settings_never_from_our_pac() {
    let saved = |values: &[(&str, RegData)]| -> Vec<plan::SavedValue> {
        values
            .iter()
            .map(|(n, d)| plan::SavedValue {
                key: plan::INET_KEY.into(),
                name: (*n).into(),
                data: Some(d.clone()),
            })
            .collect()
    };
    let pac = saved(&[("AutoConfigURL", string("http://wpad.corp/p.pac"))]);
    assert!(
        plan::upstream_toml(&pac, PAC)
            .contains("source = \"pac\"\npac = \"http://wpad.corp/p.pac\"")
    );
    let ours = saved(&[("AutoConfigURL", string(PAC)), ("ProxyEnable", dword(0))]);
    assert!(plan::upstream_toml(&ours, PAC).contains("source = \"direct\""));
    let manual = saved(&[
        ("ProxyEnable", dword(1)),
        ("ProxyServer", string("p.corp:8080")),
        ("ProxyOverride", string("<local>;*.corp")),
    ]);
    let text = plan::upstream_toml(&manual, PAC);
    assert!(
        text.contains("proxies = [\"http://p.corp:8080\"]\nbypass = [\"<local>\", \"*.corp\"]"),
        "{text}"
    );
    let disabled = saved(&[
        ("ProxyEnable", dword(0)),
        ("ProxyServer", string("p.corp:8080")),
    ]);
    assert!(plan::upstream_toml(&disabled, PAC).contains("source = \"direct\""));
}

#[test]
fn state_round_trips_through_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = corporate();
    let actions = run_install(&mut fake, dir.path());
    let Action::SaveState(written) = &actions[0] else {
        panic!("{actions:?}")
    };
    let read = read_state(&dir.path().join("install.json"))
        .unwrap()
        .unwrap();
    assert_eq!(&read, written);
}
