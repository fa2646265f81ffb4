//! TLS-3 (docs/TESTING.md#tls-3): no dangerous rustls configuration in the product. The product
//! code under `src/` (test modules excluded) never opens rustls' `dangerous()` door, never
//! implements its own certificate verifier, never logs session keys, and `Cargo.toml` enables no
//! rustls feature that weakens verification. The one use of the `danger` module is the documented
//! trait import that calls the standard WebPki verifier (`src/intercept/ca/mod.rs`, the CA's self
//! check).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// What must never appear in product code, and why.
const FORBIDDEN: [(&str, &str); 6] = [
    (".dangerous()", "opens rustls' dangerous configuration"),
    (
        "ServerCertVerifier for",
        "a custom server certificate verifier",
    ),
    (
        "ClientCertVerifier for",
        "a custom client certificate verifier",
    ),
    ("NoCertificateVerification", "verification switched off"),
    ("KeyLogFile", "TLS session keys written out (SSLKEYLOGFILE)"),
    ("key_log", "TLS session keys handed to a logger"),
];

/// The only allowed mention of rustls' `danger` module: the trait that exposes
/// `verify_server_cert` on the standard WebPki verifier.
const ALLOWED_DANGER: &str = "use rustls::client::danger::ServerCertVerifier as _;";

/// Product code of one file: everything before its first `#[cfg(test)]` module; none for a
/// test-module file (`tests.rs`, `*_tests.rs`).
fn product_part(path: &Path, text: &str) -> Option<String> {
    if path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "tests.rs" || n.ends_with("_tests.rs"))
    {
        return None;
    }
    Some(
        text.split("#[cfg(test)]\nmod ")
            .next()
            .unwrap_or(text)
            .to_string(),
    )
}

/// Every forbidden use in `code`, as `<what>: <why>`.
fn findings(code: &str) -> Vec<String> {
    let mut out: Vec<String> = FORBIDDEN
        .iter()
        .filter(|(what, _)| code.contains(what))
        .map(|(what, why)| format!("{what}: {why}"))
        .collect();
    for line in code.lines() {
        let line = line.trim();
        if line.contains("danger::") && line != ALLOWED_DANGER && !line.starts_with("//") {
            out.push(format!("{line}: rustls' danger module"));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn tls_3_no_dangerous_rustls_configuration_in_product_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 20, "src/ was not found: {files:?}");
    let mut bad = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let Some(code) = product_part(file, &text) else {
            continue;
        };
        for finding in findings(&code) {
            bad.push(format!(
                "{}: {finding}",
                file.strip_prefix(root).unwrap().display()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "dangerous TLS configuration:\n{}",
        bad.join("\n")
    );

    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for line in manifest.lines().filter(|l| l.contains("rustls")) {
        assert!(
            !line.contains("dangerous_configuration"),
            "Cargo.toml: {line}"
        );
    }
}

/// The scan must be able to fail: each forbidden shape is found, the allowed import is not, and
/// test modules are skipped.
#[test]
fn tls_3_the_audit_finds_what_it_looks_for() {
    let code = "fn f() { let c = config.dangerous(); }\nstruct V;\nimpl ServerCertVerifier for V {}\n\
                use rustls::client::danger::HandshakeSignatureValid;\nlet k = KeyLogFile::new();\n";
    let found = findings(code).join("\n");
    for expected in [
        ".dangerous()",
        "ServerCertVerifier for",
        "HandshakeSignatureValid",
        "KeyLogFile",
    ] {
        assert!(
            found.contains(expected),
            "{expected} not found in:\n{found}"
        );
    }
    assert!(findings(&format!("    {ALLOWED_DANGER}\n")).is_empty());
    let with_tests = "fn product() {}\n#[cfg(test)]\nmod tests { fn t() { c.dangerous(); } }\n";
    let product = product_part(Path::new("src/x.rs"), with_tests).unwrap();
    assert!(findings(&product).is_empty());
    assert!(product_part(Path::new("src/x/tests.rs"), with_tests).is_none());
}
