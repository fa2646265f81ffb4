#!/usr/bin/env bash
# Installs what the Wine stage (scripts/wine-tests.sh) needs, idempotently: Debian's wine64 (8.x, runs
# the x86_64-pc-windows-gnu exe) and mingw-w64 (builds the ProcessPrng stub in windows/wine-stub and the
# Windows test client). Safe to run again: installs only what is missing, and waits for another apt run
# to release the dpkg lock instead of failing. Runs as root (CI and these machines are root); otherwise
# prefixes apt-get with sudo.
set -euo pipefail

packages=(wine64 gcc-mingw-w64-x86-64)

log() { printf '[setup-wine] %s\n' "$*"; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "wine64 and mingw-w64 present"
  exit 0
fi
log "installing Debian packages: ${missing[*]}"
# Refresh the package lists only when there are none (a fresh container); otherwise the cached ones do.
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
  sudo_if_needed apt-get -o DPkg::Lock::Timeout=600 update -qq
fi
DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends "${missing[@]}" >/dev/null
log "done"
