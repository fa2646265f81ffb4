#!/usr/bin/env bash
# Compares exoproxy's PAC engine with pacparser's pactester (Debian: pactester, libpacparser1) on the
# interop cases of tests/pac_corpus/cases.toml. Those cases depend on neither DNS nor the clock, so
# pactester (which uses the real ones) never resolves a name; myIpAddress is fixed with `pactester -c`.
#
# Usage: scripts/pac-interop.sh        (exit 0 when every case agrees, 1 otherwise, 2 when no pactester)
set -euo pipefail
cd "$(dirname "$0")/.."

ensure_pactester() {
    command -v pactester >/dev/null 2>&1 && return 0
    # Debian ships /usr/bin/pactester in libpacparser1; some releases split out a pactester package.
    local pkg
    for pkg in libpacparser1 pactester; do
        if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            apt-get update -qq || true
        fi
        if apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null || true
        fi
        command -v pactester >/dev/null 2>&1 && return 0
    done
    command -v pactester >/dev/null 2>&1
}

if ! ensure_pactester; then
    echo "pactester is not available (apt-cache policy pactester): skipping interop check" >&2
    exit 2
fi

ours=$(mktemp)
trap 'rm -f "$ours"' EXIT
cargo test -q --test pac_corpus -- --ignored --nocapture print_interop_cases 2>/dev/null \
    | grep '^INTEROP' >"$ours"

total=0
mismatches=0
while IFS=$'\t' read -r _ pac url host my_ip our_result; do
    total=$((total + 1))
    theirs=$(pactester -p "$pac" -u "$url" -h "$host" -c "$my_ip" 2>&1 || true)
    if [[ "$theirs" != "$our_result" ]]; then
        mismatches=$((mismatches + 1))
        printf 'MISMATCH %s %s\n  exoproxy:  %s\n  pactester: %s\n' "$(basename "$pac")" "$url" "$our_result" "$theirs"
    fi
done <"$ours"

echo "pac-interop: $total cases, $mismatches mismatches (pactester $(dpkg-query -W -f '${Version}' libpacparser1 2>/dev/null || echo "?"))"
[[ $total -gt 0 && $mismatches -eq 0 ]]
