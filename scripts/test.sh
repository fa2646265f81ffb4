#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: installs what is missing (scripts/setup.sh),
# then lint gates, unit and integration tests (incl. the emulator's pypsrp/curl tests), the squid and
# PAC interop scripts, and the Windows build check. Exits non-zero on the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

# Each stage header says how long the suite has run, so a slow stage shows in CI's log.
stage() { printf '\n=== %s (at %ss) ===\n' "$*" "$((SECONDS - start))"; }
# The demo feature builds `exoproxy demo` (and links the emulator); the product binary is built without it.
demo=(--features exoproxy/demo)

stage "setup"
scripts/setup.sh

stage "format"
cargo fmt --all -- --check

stage "clippy"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets "${demo[@]}" -- -D warnings

stage "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet "${demo[@]}"

stage "tests"
cargo test --workspace --no-fail-fast "${demo[@]}"

stage "interop: squid"
scripts/interop-squid.sh

for extra in scripts/interop-*.sh scripts/pac-interop.sh; do
  [ "$extra" = scripts/interop-squid.sh ] && continue
  name=${extra#scripts/}
  stage "interop: ${name%.sh}"
  "$extra"
done

stage "windows check"
# The `wine` profile (Cargo.toml) as the Wine stage builds with: the C in ring and QuickJS is compiled
# once, unoptimised, for both (the dev profile's -O2 build scripts took 4.5 minutes cold here).
cargo check --profile wine --workspace --all-targets --target x86_64-pc-windows-gnu "${demo[@]}"

stage "windows: wine"
scripts/wine-tests.sh

printf '\nall stages passed in %ss\n' "$((SECONDS - start))"
