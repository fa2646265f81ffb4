#!/usr/bin/env bash
# Installs what the test suite needs, idempotently: Debian packages (squid, nginx (an origin of
# tests/fuzz5_differential.rs), curl, mingw-w64 for the Windows check, apache2-utils for squid's
# password file, libpacparser for the PAC interop, chromium and NSS's certutil for the browser test),
# the Rust Windows target, the Python clients (pypsrp, pyspnego, msal; websocket-client drives
# Chromium over the DevTools protocol), and the standards OpenID provider
# the token tests talk to (npm's oidc-provider, into tests/oidc/node_modules from its lock file). Safe to run again: it only installs what is
# missing. Runs as root (CI and these machines are root); otherwise prefixes apt-get with sudo.
set -euo pipefail

apt_packages=(squid nginx curl openssl apache2-utils gcc-mingw-w64-x86-64 libpacparser1 python3-pacparser chromium libnss3-tools)
python_modules=(pypsrp:pypsrp spnego:pyspnego msal:msal requests:requests prometheus_client:prometheus-client websocket:websocket-client)

log() { printf '[setup] %s\n' "$*"; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_apt() {
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "Debian packages present"; return; fi
  log "installing Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  # Some packages are optional extras (the PAC interop); install what exists, fail on the core set.
  local available=()
  for p in "${missing[@]}"; do
    if apt-cache show "$p" >/dev/null 2>&1; then available+=("$p"); else log "not available: $p"; fi
  done
  # Debian starts squid (and nginx) as services on install; the tests run their own instances on
  # their own ports. A policy-rc.d that says "no" (exit 101, the Debian convention) keeps the
  # packages from starting anything, so this script never has to stop a service by name.
  local policy=/usr/sbin/policy-rc.d created_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | sudo_if_needed tee "$policy" >/dev/null
    sudo_if_needed chmod 755 "$policy"
    created_policy=yes
  fi
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends "${available[@]}" >/dev/null
  if [ -n "$created_policy" ]; then sudo_if_needed rm -f "$policy"; fi
}

install_rust_targets() {
  if rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
    log "Rust target x86_64-pc-windows-gnu present"
  else
    log "adding Rust target x86_64-pc-windows-gnu"
    rustup target add x86_64-pc-windows-gnu
  fi
}

install_python() {
  local py=${EXO_PYTHON:-python3}
  for entry in "${python_modules[@]}"; do
    local module=${entry%%:*} package=${entry#*:}
    if "$py" -c "import $module" >/dev/null 2>&1; then
      log "python module $module present"
    else
      log "installing python package $package"
      # Debian's own python3 refuses pip installs (PEP 668); these test-only clients may go there anyway.
      "$py" -m pip install --quiet --disable-pip-version-check "$package" \
        || "$py" -m pip install --quiet --disable-pip-version-check --break-system-packages "$package"
    fi
  done
}

install_oidc_peer() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/oidc"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "installing Node.js (for the OpenID provider peer)"
    sudo_if_needed apt-get update -qq
    DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  # The installed version must be the locked one; `npm ci` installs exactly the lock file.
  local want have
  want=$(node -p "require('$dir/package-lock.json').packages['node_modules/oidc-provider'].version")
  have=$(node -p "try { require('$dir/node_modules/oidc-provider/package.json').version } catch { '' }")
  if [ -n "$have" ] && [ "$want" = "$have" ]; then log "oidc-provider $have present"; return; fi
  log "installing oidc-provider $want into tests/oidc"
  (cd "$dir" && npm ci --no-audit --no-fund --silent)
}

install_apt
install_rust_targets
install_python
install_oidc_peer
"$(dirname "$0")/setup-wine.sh"
log "done"
