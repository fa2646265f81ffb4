#!/usr/bin/env bash
# Speed is measured, not assumed: runs every speed measurement of exoproxy in one go and rewrites the
# generated tables of BENCHMARKS.md (between the `<!-- NAME:begin -->` / `<!-- NAME:end -->` markers).
#
#   1. tunnel: CONNECT bulk throughput and tunnel rate, direct vs exoproxy (release) vs squid, interleaved
#      in ONE run (benches/tunnel_load.rs), reported as medians and ratios.
#   2. micro: the criterion benches route_decide, pac_eval and inject (short warm-up/measurement).
#   3. intercept: keep-alive requests direct to exosim vs a blind tunnel through exoproxy vs
#      exoproxy's interception, in ONE run (benches/intercept_load.rs): saturated, paced, 1 client.
#
# Usage: scripts/bench-load.sh [--quick]    (--quick: 1 round, smaller loads; for checking the script)
# Loopback only; every loop is bounded. Takes about 7-9 minutes on 2 cores once built.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 bulk_mib=256 rate_secs=10 paced_secs=5 crit="--warm-up-time 1 --measurement-time 3"
if [ "${1:-}" = "--quick" ]; then rounds=1 bulk_mib=32 rate_secs=2 paced_secs=2 crit="--warm-up-time 1 --measurement-time 1"; fi

source scripts/lib.sh

make_tmp bench

echo "== build (release binary, bench binaries)"
cargo build --quiet --release --bin exoproxy
cargo bench --quiet --bench tunnel_load --bench inject --bench intercept_load --no-run
exo=$PWD/target/release/exoproxy
started=$(date -u +"%Y-%m-%d %H:%M UTC")
machine="$(nproc) cores, $(uname -sr), $(squid -v | head -n 1)"

origin=$(free_port); exo_port=$(free_port); squid_port=$(free_port)

# --- exoproxy, release, DIRECT, default log level (info), CONNECT allowed to the loopback origin
cat >"$tmp/exoproxy.toml" <<CONF
state_dir = "$tmp/state"
[listen]
addresses = ["127.0.0.1:$exo_port"]
[routing]
connect_ports = [443, $origin]
allow_local = ["127.0.0.1"]
CONF
"$exo" --config "$tmp/exoproxy.toml" >"$tmp/exoproxy.log" 2>&1 &
pids+=($!)
wait_port "$exo_port" exoproxy

# --- squid, no auth, no cache; both proxies log one line per tunnel, as they do by default
{ squid_conf_head "$squid_port"; cat <<CONF; } >"$tmp/squid.conf"
acl SSL_ports port $origin
acl CONNECT method CONNECT
http_access deny CONNECT !SSL_ports
http_access allow localhost
http_access deny all
max_filedescriptors 8192
CONF
start_squid "$squid_port"

echo "== 1. tunnel: direct vs exoproxy vs squid, interleaved ($rounds rounds)"
tunnel_cmd="cargo bench --bench tunnel_load -- --origin-port $origin --proxy exoproxy=127.0.0.1:$exo_port --proxy squid=127.0.0.1:$squid_port --rounds $rounds --bulk-conns 8 --bulk-mib $bulk_mib --rate-conc 64 --rate-secs $rate_secs"
$tunnel_cmd >"$tmp/tunnel.md" 2>"$tmp/tunnel.log" || fail "tunnel_load failed"
grep '^round' "$tmp/tunnel.log" || true
cat "$tmp/tunnel.md"
kill "${pids[0]}" "${pids[1]}" 2>/dev/null || true

echo "== 2. micro: criterion benches"
micro() { # NAME → "| group/case | median |" rows from criterion's "time: [lo median hi]" lines
  cargo bench --quiet --bench "$1" -- $crit 2>/dev/null | tee "$tmp/$1.out" | awk -v bench="$1" '
    /^[A-Za-z_0-9]/ && !/^(Found|Gnuplot|Benchmarking|Warning)/ { name = $1 }
    /time:/ { sub(/.*time: *\[/, ""); split($0, t, " "); if (name !~ /\//) name = bench "/" name; printf "| %s | %s %s |\n", name, t[3], t[4] }'
}
{
  echo "| bench | median |"
  echo "|---|---:|"
  for b in route_decide pac_eval inject; do micro "$b"; done
} >"$tmp/micro.md"
cat "$tmp/micro.md"

echo "== 3. intercept: keep-alive through exoproxy vs direct to exosim"
# ONE harness run measures three paths, interleaved round by round: direct to the sim, a blind tunnel
# through exoproxy (the baseline: the host is in direct_hosts, TLS end to end, trusting the sim's CA),
# and exoproxy's interception (TLS terminated with state_dir/exoproxy-ca.pem, token injected). The
# harness starts exosim in-process on $sim_port and writes its CA; each exoproxy (release) maps the
# Exchange and login hosts to it with connect_to and trusts that CA through SSL_CERT_FILE
# (rustls-native-certs reads it). A path that cannot warm up fails the run, reported as such.
sim_port=$(free_port); tunnel_port=$(free_port); intercept_port=$(free_port)
intercept_cmd="cargo bench --bench intercept_load -- --sim-port $sim_port --sim-ca-out $tmp/sim-ca.pem \
--proxy 127.0.0.1:$tunnel_port --ca $tmp/sim-ca.pem --label exoproxy-tunnel \
--proxy 127.0.0.1:$intercept_port --ca $tmp/state-intercept/exoproxy-ca.pem --label exoproxy-intercept \
--rounds $rounds --conc 64 --secs $rate_secs --paced-rps 2000 --paced-secs $paced_secs"
$intercept_cmd >"$tmp/intercept.md" 2>"$tmp/intercept.log" &
harness=$!
for _ in $(seq 1 300); do [ -s "$tmp/sim-ca.pem" ] && break; sleep 0.2; done
start_exoproxy() { # NAME PORT DIRECT_HOSTS
  cat >"$tmp/exoproxy-$1.toml" <<CONF
state_dir = "$tmp/state-$1"
connect_to = ["nam12b.outlook.office365.com:443:127.0.0.1:$sim_port", "login.microsoftonline.com:443:127.0.0.1:$sim_port"]
[listen]
addresses = ["127.0.0.1:$2"]
[routing]
direct_hosts = [$3]
allow_local = ["nam12b.outlook.office365.com", "login.microsoftonline.com"]
CONF
  SSL_CERT_FILE="$tmp/sim-ca.pem" "$exo" --config "$tmp/exoproxy-$1.toml" >"$tmp/exoproxy-$1.log" 2>&1 &
  pids+=($!)
}
start_exoproxy tunnel "$tunnel_port" '"nam12b.outlook.office365.com"'
start_exoproxy intercept "$intercept_port" ''
ok=0
wait "$harness" || ok=$?
grep '^round' "$tmp/intercept.log" || true
if [ "$ok" != 0 ]; then
  echo "not measured: the run did not complete: $(grep -m 1 '^Error' "$tmp/intercept.log" || tail -n 1 "$tmp/intercept.log")" >"$tmp/intercept.md"
fi
cat "$tmp/intercept.md"

echo "== rewrite BENCHMARKS.md"
python3 - "$tmp" "$started" "$machine" "$tunnel_cmd" "$intercept_cmd" <<'PY'
import re, sys
tmp, started, machine, tunnel_cmd, intercept_cmd = sys.argv[1:]
path = "BENCHMARKS.md"
text = open(path).read()
def put(name, body):
    global text
    block = f"<!-- {name}:begin -->\n{body.rstrip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {name}:begin -->.*?<!-- {name}:end -->", re.S)
    if not pattern.search(text):
        sys.exit(f"BENCHMARKS.md has no {name} markers")
    text = pattern.sub(lambda _: block, text)
head = lambda cmd: f"Run {started} on {machine}.\n\nCommand: `scripts/bench-load.sh` → `{cmd}`\n\n"
put("tunnel", head(tunnel_cmd) + open(f"{tmp}/tunnel.md").read())
put("micro", f"Run {started} on {machine}.\n\n" + open(f"{tmp}/micro.md").read())
put("intercept", head(intercept_cmd) + open(f"{tmp}/intercept.md").read())
open(path, "w").write(text)
PY
echo "BENCHMARKS.md updated"
