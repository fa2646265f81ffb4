//! The config loader (docs/TESTING.md#fuzz-3), through `config::load` on a file as `exoproxy config
//! check` calls it: never panics; an accepted file, parsed as TOML and written back by the `toml`
//! crate, loads to the same configuration (compared by `Debug`).
#![no_main]

use std::path::PathBuf;

use exoproxy::config::{Config, Overrides, load};
use libfuzzer_sys::fuzz_target;

fn load_text(path: &PathBuf, text: &str) -> Option<Config> {
    std::fs::write(path, text).ok()?;
    load(Some(path), &Overrides::default()).ok()
}

fuzz_target!(|text: &str| {
    let path = std::env::temp_dir().join(format!("exoproxy-fuzz-{}.toml", std::process::id()));
    let Some(config) = load_text(&path, text) else {
        return;
    };
    let table: toml::Table = text.parse().expect("an accepted file is TOML");
    let rewritten = toml::to_string(&table).expect("a TOML table can be written");
    let again = load_text(&path, &rewritten).expect("the rewritten file is accepted");
    assert_eq!(format!("{again:?}"), format!("{config:?}"));
});
