#!/usr/bin/env bash
# The Windows build, run for real under Wine (README "Windows: what is checked on Wine").
# Builds the x86_64-pc-windows-gnu exe (profile `wine`: the shipped code, unoptimised, to keep the suite
# within its time), the ProcessPrng stub (windows/wine-stub, Wine 8 has no
# bcryptprimitives.dll) and the Windows test client (windows/testclient) with mingw, creates a
# throwaway WINEPREFIX, and checks with Windows clients against native peers on loopback (an echo
# server that doubles as upstream proxy, exosim): start on defaults, CONNECT tunnel, owner-only DACL,
# DPAPI-sealed keys, device-code login, interception with token injection, the same-user check, the
# IE and WinHTTP registry settings (and a live change of each), Ctrl-C with a tunnel in flight,
# install → uninstall (registry diffed), and the packaged zip's exe.
# Prints PASS/FAIL per check and "N passed, N failed"; exits non-zero on any failure. Stops only what
# it started: its own pids, and the throwaway prefix's wineserver (`wineserver -k` with that prefix).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

source scripts/lib.sh # free_port, wait_port (its fail() is for fatal setup errors)

target=x86_64-pc-windows-gnu
admin=admin@contoso.com
rest_url=https://outlook.office365.com/adminapi/beta/contoso.onmicrosoft.com/InvokeCommand
get_mailbox='{"CmdletInput":{"CmdletName":"Get-Mailbox","Parameters":{}}}'
ie_key='HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings'
conn_key='HKLM\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections'

wine=$(command -v wine64 || command -v wine || echo /usr/lib/wine/wine64)
wineserver=$(command -v wineserver || echo /usr/lib/wine/wineserver)
[ -x "$wine" ] || { echo "FAIL wine64 is not installed (scripts/setup-wine.sh)"; exit 1; }

passed=0
failed=0
ok() { echo "PASS $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1${2:+ -- $2}"; failed=$((failed + 1)); }
# check NAME CONDITION-COMMAND...: PASS when the command succeeds; on failure shows $out (the output
# of the command under test, set by the caller).
out=
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name" "$(tail -c 600 <<<"$out")"; fi; }

# --- build: the exe (profile wine, see Cargo.toml), the stub and the client (mingw), exosim (native)
t0=$SECONDS
export EXOPROXY_PROFILE=wine # scripts/package-windows.sh (section 10) packages this same build
cargo build --quiet --profile wine --target "$target" --bin exoproxy || { echo "FAIL cargo build --target $target"; exit 1; }
cargo build --quiet -p exosim --bin exosim || { echo "FAIL cargo build exosim"; exit 1; }
exe=$root/target/$target/wine/exoproxy.exe
sim=$root/target/debug/exosim

tmp=$(mktemp -d /tmp/exoproxy-wine.XXXXXX)
pids=()
prefixes=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${prefixes[@]}"; do WINEPREFIX=$p "$wineserver" -k 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

x86_64-w64-mingw32-gcc -shared -O2 -s -o "$tmp/bcryptprimitives.dll" \
  windows/wine-stub/bcryptprimitives.c windows/wine-stub/bcryptprimitives.def -ladvapi32 \
  || { echo "FAIL building the ProcessPrng stub"; exit 1; }
x86_64-w64-mingw32-gcc -O2 -Wall -o "$tmp/wineclient.exe" windows/testclient/wineclient.c \
  -lwinhttp -lws2_32 -lcrypt32 -ladvapi32 || { echo "FAIL building the test client"; exit 1; }
echo "built in $((SECONDS - t0))s"

# --- the throwaway prefixes: Wine without its Mono/Gecko installers or desktop menus
export WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml,winemenubuilder.exe=d"
# new_prefix DIR: wineboot it and drop the stub into its system32 (every exe in the prefix finds it).
new_prefix() {
  prefixes+=("$1")
  WINEPREFIX=$1 "$wine" wineboot -i >"$tmp/wineboot.log" 2>&1 || return 1
  cp "$tmp/bcryptprimitives.dll" "$1/drive_c/windows/system32/bcryptprimitives.dll"
}
t0=$SECONDS
new_prefix "$tmp/prefix" || { echo "FAIL wineboot"; cat "$tmp/wineboot.log"; exit 1; }
export WINEPREFIX=$tmp/prefix
echo "prefix created in $((SECONDS - t0))s"

# A Unix path as the exe sees it (Wine maps / to Z:).
winpath() { printf 'Z:%s' "${1//\//\\}"; }
# exo ARGS...: the exe in the foreground; Windows programs write CRLF, the checks want LF.
exo() { "$wine" "$exe" "$@" 2>&1 | tr -d '\r'; return "${PIPESTATUS[0]}"; }
client() { "$wine" "$tmp/wineclient.exe" "$@" 2>&1 | tr -d '\r'; return "${PIPESTATUS[0]}"; }
# start_exo LOG ARGS...: the exe in the background (its pid in exo_pid).
start_exo() { local log=$1; shift; "$wine" "$exe" "$@" >"$log" 2>&1 & exo_pid=$!; pids+=("$exo_pid"); }
# wait_exo: waits up to 20 s for the exe to exit, with its exit status; kills it (124) if it does not.
wait_exo() {
  for _ in $(seq 1 200); do kill -0 "$exo_pid" 2>/dev/null || { wait "$exo_pid"; return; }; sleep 0.1; done
  kill "$exo_pid" 2>/dev/null; return 124
}
# stop_exo: Ctrl-C (Wine turns SIGINT into CTRL_C_EVENT), then wait_exo.
stop_exo() { kill -INT "$exo_pid" 2>/dev/null; wait_exo; }

# Wine names the profile after $USER (else the login name).
state=$WINEPREFIX/drive_c/users/${USER:-$(id -un)}/AppData/Local/exoproxy

# --- native peers: echo server / upstream proxies, exosim
for name in up1 up2; do
  python3 windows/testclient/echo_proxy.py "$name" "$tmp/$name.port" "$tmp/upstream.log" >/dev/null 2>&1 &
  pids+=($!)
done
"$sim" --listen 127.0.0.1:0 --auto-approve --device-interval 1 --ca-out "$tmp/sim-ca.pem" >"$tmp/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$tmp/up1.port" ] && [ -s "$tmp/up2.port" ] && grep -q 'listening on' "$tmp/sim.log" && break; sleep 0.1; done
up1=$(cat "$tmp/up1.port")
up2=$(cat "$tmp/up2.port")
sim_port=$(sed -n 's/.*listening on https:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/sim.log" | head -1)
[ -n "$sim_port" ] || fail "exosim did not start"

# === 1. the exe starts
out=$(exo --version)
check "--version prints the crate version" grep -qx "exoproxy $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" <<<"$out"
# The example names a password variable; config check insists it is set (Wine passes the environment on).
out=$(EXOPROXY_PROXY_PASSWORD=example exo config check "$(winpath "$root/config/exoproxy.toml")"); rc=$?
check "config check accepts the example config" test "$rc" = 0

# === 2. defaults: 127.0.0.1:8765, state dir %LOCALAPPDATA%\exoproxy, CONNECT tunnel
if (echo >/dev/tcp/127.0.0.1/8765) 2>/dev/null; then fail "port 8765 is busy; the defaults check needs it"; fi
start_exo "$tmp/exo-defaults.log" run --connect-to "echo.test:443:127.0.0.1:$up1"
wait_port 8765 "exoproxy.exe on defaults"
for _ in $(seq 1 100); do grep -q 'ready; point clients' "$tmp/exo-defaults.log" && break; sleep 0.1; done
out=$(cat "$tmp/exo-defaults.log")
check "starts on defaults: CA created in %LOCALAPPDATA%\\exoproxy, ready on 127.0.0.1:8765" \
  test -s "$state/exoproxy-ca.pem" -a -n "$(grep 'ready; point clients at http://127.0.0.1:8765' <<<"$out")"
out=$(client tunnel 8765 echo.test:443)
check "a Windows client's CONNECT is tunnelled to a loopback server" grep -qx "tunnel ok" <<<"$out"
# Ctrl-C drains: with a tunnel in flight, the proxy stops accepting, lets the tunnel finish, then exits.
"$wine" "$tmp/wineclient.exe" tunnel 8765 echo.test:443 5000 >"$tmp/held.out" 2>&1 &
held=$!
pids+=("$held")
for _ in $(seq 1 200); do grep -q connected "$tmp/held.out" && break; sleep 0.1; done
kill -INT "$exo_pid"
sleep 1.5
if (echo >/dev/tcp/127.0.0.1/8765) 2>/dev/null; then accepting=yes; else accepting=no; fi
wait "$held"; held_rc=$?
wait_exo; rc=$?
out="accepting after Ctrl-C: $accepting; held tunnel: $(tr -d '\r' <"$tmp/held.out" | tr '\n' ' '); exit $rc
$(tail -5 "$tmp/exo-defaults.log")"
check "Ctrl-C (SIGINT → CTRL_C_EVENT) is logged and the proxy stops accepting" \
  test "$accepting" = no -a -n "$(grep "Ctrl-C: shutting down" "$tmp/exo-defaults.log")"
check "Ctrl-C drains: a tunnel in flight still completes, then exit 0" \
  test "$held_rc" = 0 -a "$rc" = 0 -a -n "$(grep 'tunnel ok' "$tmp/held.out")"

# === 3. owner-only DACL on the state dir: exoproxy's SetNamedSecurityInfoW call succeeds (no warning).
# Debian's Wine 8 answers success but neither stores nor enforces a DACL (its wineserver is built
# without the xattr store), so what Windows would report is printed, not checked (README).
out=$(cat "$tmp/exo-defaults.log")
check "the owner-only DACL call on the state dir succeeds (no ACL warning)" \
  test -z "$(grep 'could not make the folder owner-only' <<<"$out")"
echo "INFO the DACL Wine reports for the state dir: $(client dacl "$(winpath "$state")" | tr '\n' ' ')"

# === 4. DPAPI: the CA key on disk is a DPAPI blob, not a PEM. Wine writes its own blob layout
# (version 1, then "Wine Crypt32 ok" where Windows has its provider GUID), so accept both headers.
is_dpapi() {
  local head; head=$(head -c 20 "$1" | od -An -tx1 | tr -d ' \n')
  case $head in
    01000000d08c9ddf0115d1118c7a00c04fc297eb | 0100000057696e652043727970743332206f6b00) ! grep -q "PRIVATE KEY" "$1" ;;
    *) return 1 ;;
  esac
}
out=$(head -c 40 "$state/exoproxy-ca.key" | od -c | head -2)
check "the CA key is stored as a DPAPI blob" is_dpapi "$state/exoproxy-ca.key"

# === 5. device-code login against exosim, then interception with injection for a Windows client
cat >"$state/exoproxy.toml" <<CONF
connect_to = ["::127.0.0.1:$sim_port"]
[tls]
extra_roots = '$(winpath "$tmp/sim-ca.pem")'
[[account]]
upn = "$admin"
CONF
out=$(exo login "$admin"); rc=$?
check "login by device code against exosim" test "$rc" = 0 -a -n "$(grep 'signed in' <<<"$out")"
check "the token cache key is stored as a DPAPI blob" is_dpapi "$state/tokens/.cache-key"

start_exo "$tmp/exo-intercept.log" run
wait_port 8765 "exoproxy.exe with an account"
out=$(client http --prime --proxy 127.0.0.1:8765 --trust-ca "$(winpath "$state/exoproxy-ca.pem")" --data "$get_mailbox" "$rest_url")
check "interception: a WinHTTP client gets Get-Mailbox through exoproxy (token injected, DPAPI keys reopened)" \
  grep -q '"value"' <<<"$out"
check "the same-user check found the Windows client's owner (200, not 403)" grep -qx "status 200" <<<"$out"
out=$(curl -sS --max-time 20 -x http://127.0.0.1:8765 --cacert "$state/exoproxy-ca.pem" \
  -H 'content-type: application/json' --data "$get_mailbox" -w '\n%{http_code}' "$rest_url" 2>&1)
check "the same-user check refuses a client Windows cannot see (Linux curl: 403 client_not_authorized)" \
  grep -q client_not_authorized <<<"$out"
stop_exo

# === 6. the IE settings (per-scheme map, <local>, AutoConfigURL) and the WinHTTP blob, via `route`
printf '[upstream]\nsource = "ie"\n' >"$tmp/ie.toml"
printf '[upstream]\nsource = "winhttp"\n' >"$tmp/winhttp.toml"
reg() { "$wine" reg "$@" >/dev/null 2>&1; }
route() { exo --config "$(winpath "$tmp/$1.toml")" route "$2"; }
reg add "$ie_key" /v ProxyEnable /t REG_DWORD /d 1 /f
reg add "$ie_key" /v ProxyServer /t REG_SZ /d "http=127.0.0.1:$up1;https=127.0.0.1:$up2" /f
reg add "$ie_key" /v ProxyOverride /t REG_SZ /d "<local>;*.corp.test" /f
out=$(route ie https://example.com/)
check "IE ProxyServer per-scheme map: https= is used for https" grep -q "via PROXY 127.0.0.1:$up2" <<<"$out"
out=$(route ie http://example.com/)
check "IE ProxyServer per-scheme map: http= is used for http" grep -q "via PROXY 127.0.0.1:$up1" <<<"$out"
out=$(route ie http://intranet/)
check "IE ProxyOverride <local>: a dotless name goes DIRECT" grep -q "DIRECT.*<local>" <<<"$out"
out=$(route ie https://wiki.corp.test/)
check "IE ProxyOverride wildcard goes DIRECT" grep -q "via DIRECT" <<<"$out"

mkdir -p "$tmp/pac"
printf 'function FindProxyForURL(url, host) {\n  if (shExpMatch(host, "*.pac.test")) return "PROXY 127.0.0.1:%s";\n  return "DIRECT";\n}\n' \
  "$up1" >"$tmp/pac/proxy.pac"
pac_port=$(free_port)
python3 -m http.server "$pac_port" --bind 127.0.0.1 --directory "$tmp/pac" >"$tmp/pac.log" 2>&1 &
pids+=($!)
wait_port "$pac_port" "PAC server"
reg add "$ie_key" /v AutoConfigURL /t REG_SZ /d "http://127.0.0.1:$pac_port/proxy.pac" /f
out=$(route ie https://host.pac.test/)
check "IE AutoConfigURL: the PAC's answer is used" grep -q "via PROXY 127.0.0.1:$up1" <<<"$out"
reg delete "$ie_key" /v AutoConfigURL /f

# winhttp_blob PROXY: a WinHttpSettings value (hex): version, counter, flags (PROXY|DIRECT), the proxy,
# the bypass "<local>", an empty auto-config URL (docs/PROTOCOL.md, "WinHTTP machine settings").
winhttp_blob() {
  python3 -c '
import struct, sys
field = lambda s: struct.pack("<I", len(s)) + s.encode()
print((struct.pack("<III", 0x18, 1, 3) + field(sys.argv[1]) + field("<local>") + field("")).hex())
' "$1"
}
reg add "$conn_key" /v WinHttpSettings /t REG_BINARY /d "$(winhttp_blob "127.0.0.1:$up1")" /f
out=$(route winhttp https://example.com/)
check "WinHTTP settings blob: its proxy is used" grep -q "via PROXY 127.0.0.1:$up1" <<<"$out"
out=$(route winhttp http://intranet/)
check "WinHTTP settings blob: its <local> bypass goes DIRECT" grep -q "DIRECT.*<local>" <<<"$out"

# === 7. a live change of the IE and of the WinHTTP settings changes the next decision of a running
# exoproxy: one proxy per source, both on up1; the registry then names up2 for both.
reg add "$ie_key" /v ProxyServer /t REG_SZ /d "127.0.0.1:$up1" /f
ie_port=$(free_port)
start_exo "$tmp/exo-live-ie.log" --config "$(winpath "$tmp/ie.toml")" run --listen "127.0.0.1:$ie_port"
ie_pid=$exo_pid
wh_port=$(free_port)
start_exo "$tmp/exo-live-winhttp.log" --state-dir "$(winpath "$tmp/state-winhttp")" --config "$(winpath "$tmp/winhttp.toml")" run --listen "127.0.0.1:$wh_port"
wh_pid=$exo_pid
wait_port "$ie_port" "exoproxy.exe with source = ie"
wait_port "$wh_port" "exoproxy.exe with source = winhttp"
: >"$tmp/upstream.log"
client tunnel "$ie_port" ie.example:443 >/dev/null
client tunnel "$wh_port" winhttp.example:443 >/dev/null
out=$(cat "$tmp/upstream.log")
check "running with source = ie: the tunnel goes through the IE proxy" grep -q "^up1 CONNECT ie.example:443" <<<"$out"
check "running with source = winhttp: the tunnel goes through the WinHTTP proxy" \
  grep -q "^up1 CONNECT winhttp.example:443" <<<"$out"
reg add "$ie_key" /v ProxyServer /t REG_SZ /d "127.0.0.1:$up2" /f
reg add "$conn_key" /v WinHttpSettings /t REG_BINARY /d "$(winhttp_blob "127.0.0.1:$up2")" /f
# The system settings are re-read every 30 s (src/route/system/watch.rs); allow one period and a margin.
for _ in $(seq 1 20); do
  grep -q "^up2 CONNECT ie.example" "$tmp/upstream.log" || client tunnel "$ie_port" ie.example:443 >/dev/null
  grep -q "^up2 CONNECT winhttp.example" "$tmp/upstream.log" || client tunnel "$wh_port" winhttp.example:443 >/dev/null
  grep -q "^up2 CONNECT ie.example" "$tmp/upstream.log" && grep -q "^up2 CONNECT winhttp.example" "$tmp/upstream.log" && break
  sleep 2
done
out=$(cat "$tmp/upstream.log")
check "after the IE registry value changed, the next tunnel goes through the new proxy" \
  grep -q "^up2 CONNECT ie.example:443" <<<"$out"
check "after the WinHTTP blob changed, the next tunnel goes through the new proxy" \
  grep -q "^up2 CONNECT winhttp.example:443" <<<"$out"
exo_pid=$ie_pid; stop_exo
exo_pid=$wh_pid; stop_exo

# === 8. DPAPI binds the cache to its user: reopened by the same user it is ready; copied into another
# prefix and opened by another user, the key does not unprotect and the cache is quarantined. (Wine
# derives the DPAPI key from the user name, so another prefix of the SAME user would open it: see
# the README's Windows section.)
out=$(exo accounts)
check "DPAPI round trip: the signed-in account is ready in a new process" grep -q "state:    ready" <<<"$out"
other=exo-wine-other
prefixes+=("$tmp/prefix2")
(
  export USER=$other LOGNAME=$other
  new_prefix "$tmp/prefix2" || exit 1
  state2=$tmp/prefix2/drive_c/users/$other/AppData/Local/exoproxy
  mkdir -p "$(dirname "$state2")" && cp -a "$state" "$state2"
  WINEPREFIX=$tmp/prefix2 exo accounts >"$tmp/accounts2.out"
  ls "$state2/tokens" >>"$tmp/accounts2.out"
  WINEPREFIX=$tmp/prefix2 "$wineserver" -k 2>/dev/null
)
out=$(cat "$tmp/accounts2.out" 2>/dev/null)
check "another user in another prefix cannot open the cache (not ready, file quarantined)" \
  test -n "$(grep corrupt <<<"$out")" -a -z "$(grep 'state:    ready' <<<"$out")"

# === 9. exoproxy install / uninstall (per user): the registry under CurrentVersion and the user's Root
# store are exported before install and after uninstall and must be identical. The IE values of
# section 7 (ProxyEnable 1, ProxyServer up2, ProxyOverride) are what install saves and restores;
# AutoConfigURL is absent and must be absent again. Wine keeps CurrentUser\Root in the registry, as
# Windows does (HKCU\Software\Microsoft\SystemCertificates\Root\Certificates\<SHA-1>).
cv_key='HKCU\Software\Microsoft\Windows\CurrentVersion'
root_key='HKCU\Software\Microsoft\SystemCertificates\Root'
export_reg() { "$wine" reg export "$cv_key" "$(winpath "$1.cv.reg")" /y >/dev/null 2>&1
  "$wine" reg export "$root_key" "$(winpath "$1.root.reg")" /y >/dev/null 2>&1 || : >"$1.root.reg"; }
query() { "$wine" reg query "$1" /v "$2" 2>&1 | tr -d '\r'; }
thumb=$(openssl x509 -in "$state/exoproxy-ca.pem" -outform DER | sha1sum | cut -c1-40 | tr a-f A-F)
# Wine's `reg query` of a missing key can still exit 0, so the store is read from an export.
in_root() {
  "$wine" reg export "$root_key" "$(winpath "$tmp/root-now.reg")" /y >/dev/null 2>&1 || return 1
  iconv -f UTF-16LE -t UTF-8 "$tmp/root-now.reg" | grep -qi "Certificates\\\\$thumb\]"
}
export_reg "$tmp/before"
# The WinHTTP client of section 5 may already have trusted this CA; uninstall restores what was there.
if in_root; then was_in_root=yes; else was_in_root=no; fi
# exoproxy doctor reads the same store (CurrentUser\Root, by thumbprint) and the IE settings.
out=$(exo doctor)
if [ "$was_in_root" = no ]; then
  check "doctor before install: FAIL ca trust, with the Import-Certificate fix" \
    test -n "$(grep '^FAIL  ca trust' <<<"$out")" -a -n "$(grep 'Import-Certificate' <<<"$out")"
else
  check "doctor before install: PASS ca trust (the CA was already trusted)" grep -q '^PASS  ca trust' <<<"$out"
fi
out=$(exo install); rc=$?
check "install: exit 0, the Root store's confirmation is announced before the CA is added" \
  test "$rc" = 0 -a -n "$(grep 'Windows asks you to confirm' <<<"$out")" -a -s "$state/install.json"
out=$(query "$ie_key" AutoConfigURL)
check "install: AutoConfigURL names the served PAC" grep -q "REG_SZ *http://127.0.0.1:8765/proxy.pac" <<<"$out"
out=$(query "$ie_key" ProxyEnable)
check "install: ProxyEnable is 0 (the PAC alone decides)" grep -q "REG_DWORD *0x0" <<<"$out"
out=$(query 'HKCU\Software\Microsoft\Windows\CurrentVersion\Run' exoproxy)
check "install: the Run key starts exoproxy at logon without a console window" \
  grep -q 'conhost.exe --headless ".*exoproxy.exe" run' <<<"$out"
out="thumbprint $thumb"
check "install: the CA is in CurrentUser\\Root" in_root
out=$(exo doctor)
check "doctor after install: PASS ca trust, and the IE settings point at the served PAC" \
  test -n "$(grep '^PASS  ca trust' <<<"$out")" -a -n "$(grep '^PASS  desktop IE .*127.0.0.1:8765/proxy.pac' <<<"$out")"
out=$(exo install); rc=$?
check "a second install is refused (exit 2) instead of saving its own values" \
  test "$rc" = 2 -a -n "$(grep 'already installed' <<<"$out")"
out=$(exo uninstall); rc=$?
check "uninstall: exit 0, the saved state is removed" test "$rc" = 0 -a ! -e "$state/install.json"
out="thumbprint $thumb"
as_before_install() { if in_root; then [ "$was_in_root" = yes ]; else [ "$was_in_root" = no ]; fi; }
check "uninstall: the CA is in CurrentUser\\Root only if it was before install (was: $was_in_root)" as_before_install
export_reg "$tmp/after"
out=$(diff <(iconv -f UTF-16LE -t UTF-8 "$tmp/before.cv.reg" | tr -d '\r') <(iconv -f UTF-16LE -t UTF-8 "$tmp/after.cv.reg" | tr -d '\r') | head -20)
check "install → uninstall leaves HKCU\\...\\CurrentVersion exactly as it was (reg export, byte for byte)" \
  cmp -s "$tmp/before.cv.reg" "$tmp/after.cv.reg"
out=$(diff <(iconv -f UTF-16LE -t UTF-8 "$tmp/before.root.reg") <(iconv -f UTF-16LE -t UTF-8 "$tmp/after.root.reg") | head -20)
check "install → uninstall leaves CurrentUser\\Root exactly as it was" cmp -s "$tmp/before.root.reg" "$tmp/after.root.reg"

# === 10. the package: scripts/package-windows.sh reuses the exe built above; the zip's exe runs.
out=$(scripts/package-windows.sh 2>&1); rc=$?
zip=$(tail -1 <<<"$out")
check "package-windows.sh writes the zip and its SHA-256" \
  test "$rc" = 0 -a -s "$zip" -a -n "$( (cd dist && sha256sum -c "$(basename "$zip").sha256") 2>/dev/null | grep ': OK')"
mkdir -p "$tmp/pkg" && (cd "$tmp/pkg" && unzip -q "$root/$zip")
pkg=$(echo "$tmp"/pkg/exoproxy-*)
out=$("$wine" "$pkg/exoproxy.exe" --version 2>&1 | tr -d '\r')
check "the packaged exe runs: --version" grep -qx "exoproxy $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" <<<"$out"
out=$(EXOPROXY_PROXY_PASSWORD=example "$wine" "$pkg/exoproxy.exe" config check "$(winpath "$pkg/config/exoproxy.toml")" 2>&1 | tr -d '\r')
check "the packaged exe: config check accepts the packaged example" grep -q ": ok" <<<"$out"
check "the zip holds README.md and both licences" test -s "$pkg/README.md" -a -s "$pkg/LICENSE-MIT" -a -s "$pkg/LICENSE-APACHE"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
