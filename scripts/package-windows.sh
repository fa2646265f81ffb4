#!/usr/bin/env bash
# Builds the Windows release exe (x86_64-pc-windows-gnu, the same target dir scripts/wine-tests.sh
# uses, so a build made by either is reused) and writes dist/exoproxy-<version>-windows-x86_64.zip
# (exoproxy.exe, README.md, config/exoproxy.toml, LICENSE-MIT, LICENSE-APACHE) and its SHA-256
# (<zip>.sha256, sha256sum format). Prints the zip's path. Zips with Python's zipfile (no zip tool
# needed); entries are stored under exoproxy-<version>/. EXOPROXY_PROFILE=wine packages the Wine stage's
# unoptimised build instead (scripts/wine-tests.sh checks the packaging, not the optimiser).
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
name=exoproxy-$version-windows-x86_64

profile=${EXOPROXY_PROFILE:-release}
cargo build --quiet --profile "$profile" --target "$target" --bin exoproxy
mkdir -p dist
zip=dist/$name.zip
python3 - "$zip" "exoproxy-$version" "target/$target/$profile/exoproxy.exe" <<'PY'
import sys, zipfile
out, top, exe = sys.argv[1], sys.argv[2], sys.argv[3]
files = {
    exe: "exoproxy.exe",
    "README.md": "README.md",
    "config/exoproxy.toml": "config/exoproxy.toml",
    "LICENSE-MIT": "LICENSE-MIT",
    "LICENSE-APACHE": "LICENSE-APACHE",
}
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for src, name in files.items():
        z.write(src, f"{top}/{name}")
PY
(cd dist && sha256sum "$name.zip" >"$name.zip.sha256")
echo "$zip"
