#!/usr/bin/env bash
# Interop with real peers: curl → exoproxy → squid (Basic auth, hosts_file) → a loopback HTTPS origin
# (openssl s_server). Proves: the README quick start (default port 8765 with --connect-to), chaining
# through an authenticating corporate proxy, failover past a dead first upstream with the bad-proxy
# memory, a clear 502 for wrong proxy credentials, and that the CONNECTs really went through squid
# (squid's access log), and that `exoproxy doctor` names the wrong password and its fix. Everything listens on 127.0.0.1; hostnames reach loopback only through
# exoproxy's --connect-to and squid's hosts_file, never /etc/hosts.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh

build_exoproxy

make_tmp squid

origin=$(free_port); squid_port=$(free_port); dead=$(free_port); exo_port=$(free_port)

# --- a loopback HTTPS origin for example.test
https_origin "$origin"
wait_port "$origin" origin

# --- squid with Basic auth and a hosts_file
htpasswd -bc "$tmp/passwd" tester 's3cret-squid' 2>/dev/null
echo "127.0.0.1 example.test" >"$tmp/hosts"
{ squid_conf_head "$squid_port"; cat <<CONF; } >"$tmp/squid.conf"
hosts_file $tmp/hosts
auth_param basic program /usr/lib/squid/basic_ncsa_auth $tmp/passwd
auth_param basic realm exoproxy-interop
acl SSL_ports port $origin
# 443 too, so that a CONNECT from exoproxy doctor gets as far as the password check (step 3b).
acl SSL_ports port 443
acl CONNECT method CONNECT
acl authed proxy_auth REQUIRED
http_access deny CONNECT !SSL_ports
http_access allow authed
http_access deny all
CONF
start_squid "$squid_port"

# --- 1. README quick start: default port 8765, --connect-to to the loopback origin
if (echo >/dev/tcp/127.0.0.1/8765) 2>/dev/null; then
  fail "port 8765 is busy; the quick-start check needs it"
fi
"$exo" --state-dir "$tmp/state1" --connect-to "example.test:443:127.0.0.1:$origin" >"$tmp/exo-default.log" 2>&1 &
pids+=($!)
wait_port 8765 "exoproxy (defaults)"
body=$(curl -sS --fail --max-time 10 -x http://127.0.0.1:8765 --cacert "$tmp/origin.pem" https://example.test/) \
  || fail "curl through exoproxy on 127.0.0.1:8765 did not reach the origin"
grep -q "s_server" <<<"$body" || fail "unexpected origin body"
pass "quick start: 127.0.0.1:8765 with --connect-to reaches a loopback HTTPS origin"

# --- 2. exoproxy → squid, with a dead first upstream
cat >"$tmp/exoproxy.toml" <<CONF
state_dir = "$tmp/state2"
[listen]
addresses = ["127.0.0.1:$exo_port"]
[upstream]
proxies = ["http://127.0.0.1:$dead", "http://127.0.0.1:$squid_port"]
[[upstream.credentials]]
proxy = "127.0.0.1:$squid_port"
username = "tester"
password_env = "SQUID_PASSWORD"
[routing]
connect_ports = [443, $origin]
CONF
SQUID_PASSWORD='s3cret-squid' "$exo" --config "$tmp/exoproxy.toml" -v >"$tmp/exo-chain.log" 2>&1 &
pids+=($!)
wait_port "$exo_port" "exoproxy (chained)"
for i in 1 2 3; do
  body=$(curl -sS --fail --max-time 20 -x "http://127.0.0.1:$exo_port" --cacert "$tmp/origin.pem" \
    "https://example.test:$origin/") || fail "request $i through exoproxy → squid failed"
  grep -q "s_server" <<<"$body" || fail "unexpected origin body on request $i"
done
pass "chained through squid with Basic auth, past a dead first upstream (3 requests)"
dead_failures=$(grep -c "hop failed at connect level.*127.0.0.1:$dead" "$tmp/exo-chain.log" || true)
[ "$dead_failures" = 1 ] || fail "the dead upstream was tried $dead_failures times in 3 requests, want once (5-minute bad-proxy memory)"
pass "dead upstream tried once, then skipped (bad-proxy memory)"

# --- 3. wrong credentials: a clear 502 naming the proxy, not a hang
cat >"$tmp/exoproxy-bad.toml" <<CONF
state_dir = "$tmp/state3"
[listen]
addresses = ["127.0.0.1:$(free_port)"]
[upstream]
proxies = ["http://127.0.0.1:$squid_port"]
[[upstream.credentials]]
proxy = "127.0.0.1:$squid_port"
username = "tester"
password = "wrong"
[routing]
connect_ports = [443, $origin]
CONF
bad_port=$(sed -n 's/^addresses = \["127.0.0.1:\([0-9]*\)"\]/\1/p' "$tmp/exoproxy-bad.toml")
"$exo" --config "$tmp/exoproxy-bad.toml" >"$tmp/exo-bad.log" 2>&1 &
pids+=($!)
wait_port "$bad_port" "exoproxy (bad credentials)"
# curl hides a CONNECT error body, so ask like a client would, over a raw socket.
python3 - "$bad_port" "$origin" >"$tmp/bad-body" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(f"CONNECT example.test:{sys.argv[2]} HTTP/1.1\r\nHost: example.test:{sys.argv[2]}\r\n\r\n".encode())
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.decode(errors="replace"))
PY
code=$(head -n 1 "$tmp/bad-body" | awk '{print $2}')
[ "$code" = 502 ] || fail "wrong proxy credentials gave HTTP $code, want 502"
grep -q "127.0.0.1:$squid_port" "$tmp/bad-body" || fail "the 502 body does not name the proxy: $(cat "$tmp/bad-body")"
grep -qi "basic" "$tmp/bad-body" || fail "the 502 body does not name the offered scheme"
if grep -q "wrong" "$tmp/exo-bad.log"; then fail "the password appears in exoproxy's log"; fi
pass "wrong credentials → 502 naming the proxy and its schemes; password not logged"

# --- 3b. `exoproxy doctor` on the same setup: the 407 is named with its fix, exit non-zero (squid
# refuses before it dials anything, so nothing leaves the machine)
doctor_code=0
"$exo" --config "$tmp/exoproxy-bad.toml" doctor >"$tmp/doctor.out" 2>"$tmp/doctor.err" || doctor_code=$?
[ "$doctor_code" != 0 ] || fail "doctor exited 0 with a wrong proxy password: $(cat "$tmp/doctor.out")"
grep -q "^FAIL  reach login.microsoftonline.com .*407" "$tmp/doctor.out" \
  || fail "doctor did not report the 407 for the IdP: $(cat "$tmp/doctor.out")"
grep -q "wrong proxy password: fix \[\[upstream.credentials\]\] for 127.0.0.1:$squid_port" "$tmp/doctor.out" \
  || fail "doctor did not name the fix: $(cat "$tmp/doctor.out")"
pass "doctor: wrong squid password → FAIL naming [[upstream.credentials]], exit $doctor_code"

# --- 4. squid saw the CONNECTs (it logs a tunnel when it closes: stop squid to flush)
kill "${pids[1]}" 2>/dev/null || true
for _ in $(seq 1 50); do grep -q CONNECT "$tmp/access.log" 2>/dev/null && break; sleep 0.1; done
connects=$(grep -c "CONNECT example.test:$origin" "$tmp/access.log" || true)
[ "$connects" -ge 3 ] || fail "squid's access log has $connects CONNECTs to example.test:$origin, want ≥ 3"
grep "CONNECT example.test:$origin" "$tmp/access.log" | grep -q tester || fail "squid did not log the authenticated user"
pass "squid's access log shows $connects authenticated CONNECTs"

echo "$passed passed, 0 failed"
