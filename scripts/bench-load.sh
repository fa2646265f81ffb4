#!/usr/bin/env bash
# Speed is measured, not assumed: runs every speed measurement of exoproxy in one go and rewrites the
# generated tables of BENCHMARKS.md (between the `<!-- NAME:begin -->` / `<!-- NAME:end -->` markers).
#
#   1. tunnel: CONNECT bulk throughput and tunnel rate, direct vs exoproxy (release) vs squid, interleaved
#      in ONE run (benches/tunnel_load.rs), reported as medians and ratios.
#   2. micro: the criterion benches route_decide, pac_eval and inject (short warm-up/measurement).
#   3. intercept: keep-alive requests direct to exosim vs a blind tunnel through exoproxy vs
#      exoproxy's interception, in ONE run (benches/intercept_load.rs): saturated, paced, 1 client;
#      then direct vs interception again with the harness on CPU 0 and exoproxy on CPU 1 (taskset).
#
# Usage: scripts/bench-load.sh [--quick]    (--quick: 1 round, smaller loads; for checking the script)
# Loopback only; every loop is bounded. Takes about 10-12 minutes on 2 cores once built.
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
# ONE harness run measures the paths interleaved round by round: direct to the sim, a blind tunnel
# through exoproxy (the baseline: the host is in direct_hosts, TLS end to end, trusting the sim's CA),
# and exoproxy's interception (TLS terminated with state_dir/exoproxy-ca.pem, token injected). The
# harness starts exosim in-process on its sim port and writes its CA; each exoproxy (release) maps the
# Exchange and login hosts to it with connect_to and trusts that CA through SSL_CERT_FILE
# (rustls-native-certs reads it). A path that cannot warm up fails the run, reported as such.
start_exoproxy() { # NAME PORT SIM_PORT SIM_CA DIRECT_HOSTS PIN...
  local name=$1 port=$2 sim=$3 sim_ca=$4 direct=$5; shift 5
  cat >"$tmp/exoproxy-$name.toml" <<CONF
state_dir = "$tmp/state-$name"
connect_to = ["nam12b.outlook.office365.com:443:127.0.0.1:$sim", "login.microsoftonline.com:443:127.0.0.1:$sim"]
[listen]
addresses = ["127.0.0.1:$port"]
[routing]
direct_hosts = [$direct]
allow_local = ["nam12b.outlook.office365.com", "login.microsoftonline.com"]
CONF
  SSL_CERT_FILE="$sim_ca" "$@" "$exo" --config "$tmp/exoproxy-$name.toml" >"$tmp/exoproxy-$name.log" 2>&1 &
  pids+=($!)
}
intercept_run() { # RUN "tunnel intercept"|"intercept" HARNESS_PIN PROXY_PIN → $tmp/RUN.md, $tmp/RUN.cmd
  local run=$1 paths=$2 harness_pin=$3 proxy_pin=$4 sim_port args="" path ca direct
  sim_port=$(free_port)
  declare -A ports
  for path in $paths; do
    ports[$path]=$(free_port)
    ca="$tmp/state-$run-$path/exoproxy-ca.pem"; [ "$path" = tunnel ] && ca="$tmp/$run-sim-ca.pem"
    args+=" --proxy 127.0.0.1:${ports[$path]} --ca $ca --label exoproxy-$path"
  done
  local cmd="cargo bench --bench intercept_load -- --sim-port $sim_port --sim-ca-out $tmp/$run-sim-ca.pem$args \
--rounds $rounds --conc 64 --secs $rate_secs --paced-rps 2000 --paced-secs $paced_secs"
  echo "${harness_pin:+$harness_pin }$cmd" >"$tmp/$run.cmd"
  $harness_pin $cmd >"$tmp/$run.md" 2>"$tmp/$run.log" &
  local harness=$!
  for _ in $(seq 1 300); do [ -s "$tmp/$run-sim-ca.pem" ] && break; sleep 0.2; done
  for path in $paths; do
    direct=''; [ "$path" = tunnel ] && direct='"nam12b.outlook.office365.com"'
    start_exoproxy "$run-$path" "${ports[$path]}" "$sim_port" "$tmp/$run-sim-ca.pem" "$direct" $proxy_pin
  done
  local ok=0
  wait "$harness" || ok=$?
  grep '^round' "$tmp/$run.log" || true
  if [ "$ok" != 0 ]; then
    echo "not measured: the run did not complete: $(grep -m 1 '^Error' "$tmp/$run.log" || tail -n 1 "$tmp/$run.log")" >"$tmp/$run.md"
  fi
  cat "$tmp/$run.md"
}
intercept_run intercept "tunnel intercept" "" ""
intercept_cmd=$(cat "$tmp/intercept.cmd")

echo "== 3c. intercept, pinned: the harness (client + exosim) on CPU 0, exoproxy on CPU 1"
# The same measurement with the proxy's CPU kept apart from the load generator and the emulated cloud.
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  intercept_run pinned "intercept" "taskset -c 0" "taskset -c 1"
else
  echo "not measured: needs 2 cores and taskset" >"$tmp/pinned.md"; echo "false" >"$tmp/pinned.cmd"
fi
pinned_cmd=$(cat "$tmp/pinned.cmd")

echo "== rewrite BENCHMARKS.md"
python3 - "$tmp" "$started" "$machine" "$tunnel_cmd" "$intercept_cmd" "$pinned_cmd" <<'PY'
import re, sys
tmp, started, machine, tunnel_cmd, intercept_cmd, pinned_cmd = sys.argv[1:]
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
put("intercept-pinned", head(pinned_cmd) + open(f"{tmp}/pinned.md").read())
open(path, "w").write(text)
PY
echo "BENCHMARKS.md updated"
