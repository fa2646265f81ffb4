#!/usr/bin/env bash
# Interop with a real NTLM proxy: curl → exoproxy (NTLM credentials) → squid (auth_param ntlm with
# /usr/lib/squid/ntlm_fake_auth, a real NTLM handshake helper that accepts any user) → loopback
# origins (HTTPS via CONNECT, plain HTTP via absolute-form). Proves: the NTLM handshake over a
# keep-alive connection, squid's access log naming the NTLM user, NTLM_CONNECTS (default 200; FLT-12's
# 10 000 is for the long bench) CONNECTs in a row with 100 % success, plain http:// through the
# authenticated connection, and that Basic is never sent (squid offers only NTLM here). Everything
# listens on 127.0.0.1; names reach loopback only through squid's hosts_file, never /etc/hosts.
set -euo pipefail
cd "$(dirname "$0")/.."

count=${NTLM_CONNECTS:-200}
source scripts/lib.sh

build_exoproxy

make_tmp ntlm

origin=$(free_port); http_origin=$(free_port); squid_port=$(free_port); exo_port=$(free_port)

# --- loopback origins: HTTPS for example.test, plain HTTP serving a marker file
https_origin "$origin"
mkdir "$tmp/www" && echo "plain-origin-marker" >"$tmp/www/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$tmp/www" "$http_origin" >"$tmp/http-origin.log" 2>&1 &
pids+=($!)
wait_port "$origin" origin
wait_port "$http_origin" "http origin"

# --- squid with NTLM only
echo "127.0.0.1 example.test" >"$tmp/hosts"
{ squid_conf_head "$squid_port"; cat <<CONF; } >"$tmp/squid.conf"
hosts_file $tmp/hosts
auth_param ntlm program /usr/lib/squid/ntlm_fake_auth
auth_param ntlm children 5
acl SSL_ports port $origin
acl CONNECT method CONNECT
acl authed proxy_auth REQUIRED
http_access deny CONNECT !SSL_ports
http_access allow authed
http_access deny all
CONF
start_squid "$squid_port"

# --- exoproxy → squid with NTLM credentials (DOMAIN\user form)
cat >"$tmp/exoproxy.toml" <<CONF
state_dir = "$tmp/state"
[listen]
addresses = ["127.0.0.1:$exo_port"]
[upstream]
proxies = ["http://127.0.0.1:$squid_port"]
[[upstream.credentials]]
proxy = "127.0.0.1:$squid_port"
username = 'CORP\\ntlmtester'
password_env = "NTLM_PASSWORD"
[routing]
connect_ports = [443, $origin]
http_ports = [80, $http_origin]
CONF
NTLM_PASSWORD='n7lm-Secret' "$exo" --config "$tmp/exoproxy.toml" -v >"$tmp/exo.log" 2>&1 &
pids+=($!)
wait_port "$exo_port" exoproxy

# --- 1. one CONNECT, then many
body=$(curl -sS --fail --max-time 20 -x "http://127.0.0.1:$exo_port" --cacert "$tmp/origin.pem" \
  "https://example.test:$origin/") || fail "the first CONNECT through exoproxy → squid (NTLM) failed"
grep -q "s_server" <<<"$body" || fail "unexpected origin body"
pass "CONNECT through squid with NTLM"

ok=0
start=$(date +%s)
for i in $(seq 1 "$count"); do
  if curl -sS --fail --max-time 20 -o /dev/null -x "http://127.0.0.1:$exo_port" --cacert "$tmp/origin.pem" \
    "https://example.test:$origin/" 2>>"$tmp/curl-errors.log"; then
    ok=$((ok + 1))
  fi
done
[ "$ok" = "$count" ] || fail "$ok of $count CONNECTs succeeded, want all"
pass "$count CONNECTs in a row through NTLM, 100 % success ($(($(date +%s) - start)) s)"

# --- 2. plain http:// (absolute-form) through an NTLM-authenticated connection
body=$(curl -sS --fail --max-time 20 -x "http://127.0.0.1:$exo_port" "http://example.test:$http_origin/") \
  || fail "plain http through exoproxy → squid (NTLM) failed"
grep -q "plain-origin-marker" <<<"$body" || fail "unexpected plain origin body: $body"
pass "plain http:// through squid with NTLM"

# --- 3. secrets stay out of the log
if grep -q "n7lm-Secret\|TlRMTVNT" "$tmp/exo.log"; then fail "a password or NTLM token appears in exoproxy's log"; fi
pass "no password or NTLM token in exoproxy's log"

# --- 4. squid's access log names the NTLM user on every CONNECT, and nothing was denied
# (squid logs a tunnel when it closes: stop squid to flush)
kill "$squid_pid" 2>/dev/null || true
# The 407 legs of each handshake are logged as TCP_DENIED/407 with no user; count the tunnels.
tunnels() { grep "CONNECT example.test:$origin" "$tmp/access.log" 2>/dev/null | grep -v "/407 " || true; }
for _ in $(seq 1 50); do [ "$(tunnels | wc -l)" -gt "$count" ] && break; sleep 0.1; done
connects=$(tunnels | wc -l)
with_user=$(tunnels | grep -ci "ntlmtester" || true)
[ "$connects" = $((count + 1)) ] || fail "squid logged $connects tunnels, want $((count + 1))"
[ "$with_user" = "$connects" ] || fail "only $with_user of $connects tunnels carry the NTLM user in squid's log"
denied=$(grep -c "TCP_DENIED/407" "$tmp/access.log" || true)
# One unauthenticated 407 at first, then one Type 2 per handshake (CONNECTs + the plain request).
[ "$denied" = $((count + 3)) ] || fail "$denied 407s for $((count + 1)) tunnels: the NTLM scheme is not remembered"
grep "example.test:$http_origin" "$tmp/access.log" | grep -qi ntlmtester || fail "squid did not log the NTLM user for the plain request"
pass "squid's access log shows the NTLM user on all $connects tunnels and the plain request ($denied handshake 407s)"

echo "$passed passed, 0 failed"
