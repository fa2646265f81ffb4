//! Configuration in two stages: `file` (serde mirror of the TOML, `deny_unknown_fields`) and `validate`
//! (typed per-module configs; every error reported at once with its key path).
