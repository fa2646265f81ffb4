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
#   3d. guard: the performance guard of issue 10: exoproxy's interception vs nginx as a TLS-terminating
#      reverse proxy doing the same job (sets Authorization, relays over a pooled, verified TLS
#      upstream), in ONE pinned run: each proxy's own CPU per request (utime+stime from /proc/<pid>/stat)
#      and the p99 each adds at 100 requests/s; with section 1's tunnel bulk ratios beside them.
#
# Usage: scripts/bench-load.sh [--quick]    (--quick: 1 round, smaller loads; for checking the script)
#   BENCH_SECTIONS="tunnel guard" scripts/bench-load.sh   runs only those sections (default: all of
#   tunnel micro intercept pinned guard) and rewrites only their tables.
# Loopback only; every loop is bounded. Takes about 15 minutes on 2 cores once built.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 bulk_mib=256 rate_secs=10 paced_secs=5 guard_paced_secs=10 crit="--warm-up-time 1 --measurement-time 3"
if [ "${1:-}" = "--quick" ]; then rounds=1 bulk_mib=32 rate_secs=2 paced_secs=2 guard_paced_secs=3 crit="--warm-up-time 1 --measurement-time 1"; fi
sections=${BENCH_SECTIONS:-tunnel micro intercept pinned guard}
want() { [[ " $sections " == *" $1 "* ]]; }

source scripts/lib.sh

make_tmp bench
want guard && ensure_nginx

echo "== build (release binary, bench binaries)"
cargo build --quiet --release --bin exoproxy
cargo bench --quiet --bench tunnel_load --bench inject --bench intercept_load --no-run
exo=$PWD/target/release/exoproxy
started=$(date -u +"%Y-%m-%d %H:%M UTC")
machine="$(nproc) cores, $(uname -sr), $(squid -v | head -n 1)"
want guard && machine+=", $(nginx -v 2>&1 | sed 's/^nginx version: //')"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

if want tunnel; then
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
fi

if want micro; then
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
fi

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
if want intercept; then
  intercept_run intercept "tunnel intercept" "" ""
  intercept_cmd=$(cat "$tmp/intercept.cmd")
fi

pinned_ok() { [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; }
if want pinned; then
echo "== 3c. intercept, pinned: the harness (client + exosim) on CPU 0, exoproxy on CPU 1"
# The same measurement with the proxy's CPU kept apart from the load generator and the emulated cloud.
if pinned_ok; then
  intercept_run pinned "intercept" "taskset -c 0" "taskset -c 1"
else
  echo "not measured: needs 2 cores and taskset" >"$tmp/pinned.md"; echo "false" >"$tmp/pinned.cmd"
fi
pinned_cmd=$(cat "$tmp/pinned.cmd")
fi

if want guard; then
echo "== 3d. guard: exoproxy vs nginx, CPU per intercepted request and added p99 at 100 requests/s"
# ONE harness run (pinned to CPU 0) measures direct, exoproxy's interception and nginx (both pinned to
# CPU 1, so each proxy's CPU time is its own and they never run at the same time: paths interleave).
# nginx does the job interception does for these requests: terminates TLS for the Exchange host
# (a certificate from a local test CA), sets Authorization to the same sim-minted bearer token the
# clients send (the harness writes it with --token-out), and relays over a keep-alive pool of TLS
# connections to the sim, verified against the sim's CA. Both proxies log one line per request. CPU:
# utime+stime of each proxy's processes from the harness's --ready-out (every path warmed up) to its
# exit, divided by the requests that path answered.
if pinned_ok; then
  sim_port=$(free_port); g_exo=$(free_port); g_nginx=$(free_port)
  guard_cmd="taskset -c 0 cargo bench --bench intercept_load -- --sim-port $sim_port --sim-ca-out $tmp/guard-sim-ca.pem \
--token-out $tmp/guard-token --ready-out $tmp/guard-ready \
--proxy 127.0.0.1:$g_exo --ca $tmp/state-guard-intercept/exoproxy-ca.pem --label exoproxy-intercept \
--reverse 127.0.0.1:$g_nginx --ca $tmp/nginx/ca.pem --label nginx \
--rounds $rounds --conc 64 --secs $rate_secs --paced-rps 100 --paced-secs $guard_paced_secs"
  $guard_cmd >"$tmp/guard-run.md" 2>"$tmp/guard-run.log" &
  harness=$!
  for _ in $(seq 1 300); do [ -s "$tmp/guard-sim-ca.pem" ] && [ -s "$tmp/guard-token" ] && break; sleep 0.2; done
  start_exoproxy guard-intercept "$g_exo" "$sim_port" "$tmp/guard-sim-ca.pem" "" taskset -c 1
  exo_pid=${pids[-1]}
  start_nginx_reverse "$g_nginx" "$sim_port" "$tmp/guard-sim-ca.pem" "$(cat "$tmp/guard-token")" taskset -c 1
  for _ in $(seq 1 600); do [ -e "$tmp/guard-ready" ] || ! kill -0 "$harness" 2>/dev/null && break; sleep 0.1; done
  nginx_procs="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"
  exo_before=$(cpu_ticks "$exo_pid"); nginx_before=$(cpu_ticks $nginx_procs)
  ok=0; wait "$harness" || ok=$?
  exo_after=$(cpu_ticks "$exo_pid"); nginx_after=$(cpu_ticks $nginx_procs)
  grep '^round' "$tmp/guard-run.log" || true
  if [ "$ok" = 0 ] && [ -e "$tmp/guard-ready" ]; then
    hz=$(getconf CLK_TCK)
    per_request() { # TICKS REQUESTS → µs
      python3 -c "import sys; t, n, hz = map(float, sys.argv[1:]); print(f'{t * 1e6 / hz / n:.1f}' if n else 'n/a')" "$1" "$2" "$hz"; }
    exo_n=$(awk '$1 == "requests" && $2 == "exoproxy-intercept" {print $3}' "$tmp/guard-run.log")
    nginx_n=$(awk '$1 == "requests" && $2 == "nginx" {print $3}' "$tmp/guard-run.log")
    {
      echo "| proxy (pinned to CPU 1) | CPU ticks (1/$hz s) | requests answered | CPU per request |"
      echo "|---|---:|---:|---:|"
      echo "| exoproxy-intercept | $((exo_after - exo_before)) | $exo_n | $(per_request $((exo_after - exo_before)) "$exo_n") µs |"
      echo "| nginx | $((nginx_after - nginx_before)) | $nginx_n | $(per_request $((nginx_after - nginx_before)) "$nginx_n") µs |"
    } >"$tmp/guard-cpu.md"
  else
    echo "not measured: the run did not complete: $(grep -m 1 '^Error' "$tmp/guard-run.log" || tail -n 1 "$tmp/guard-run.log")" >"$tmp/guard-cpu.md"
  fi
  kill "$exo_pid" "$nginx_pid" 2>/dev/null || true
  cat "$tmp/guard-cpu.md" "$tmp/guard-run.md"
else
  echo "not measured: needs 2 cores and taskset" >"$tmp/guard-cpu.md"; : >"$tmp/guard-run.md"; guard_cmd=false
fi
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== rewrite BENCHMARKS.md"
python3 - "$tmp" "$started" "$machine" "${tunnel_cmd:-}" "${intercept_cmd:-}" "${pinned_cmd:-}" "${guard_cmd:-}" \
  "$load_before" "$load_after" "$sections" <<'PY'
import os, re, sys
tmp, started, machine, tunnel_cmd, intercept_cmd, pinned_cmd, guard_cmd, load_before, load_after, sections = sys.argv[1:]
sections = sections.split()
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
if "tunnel" in sections:
    put("tunnel", head(tunnel_cmd) + open(f"{tmp}/tunnel.md").read())
if "micro" in sections:
    put("micro", f"Run {started} on {machine}.\n\n" + open(f"{tmp}/micro.md").read())
if "intercept" in sections:
    put("intercept", head(intercept_cmd) + open(f"{tmp}/intercept.md").read())
if "pinned" in sections:
    put("intercept-pinned", head(pinned_cmd) + open(f"{tmp}/pinned.md").read())

def row(md, block, label):
    """The cells of the row starting with LABEL in the table whose header starts with BLOCK."""
    for table in md.split("\n\n"):
        lines = table.strip().splitlines()
        if lines and lines[0].startswith(f"| {block}"):
            for line in lines[2:]:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if cells[0].startswith(label):
                    return cells
    return None

def cell(md, block, label, column=1):
    cells = row(md, block, label)
    return cells[column] if cells and len(cells) > column else "n/a"

def number(value):
    m = re.match(r"-?[0-9.]+", value)
    return float(m.group()) if m else None

def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**not met**")

if "guard" in sections:
    cpu = open(f"{tmp}/guard-cpu.md").read()
    run = open(f"{tmp}/guard-run.md").read()
    tunnel = open(f"{tmp}/tunnel.md").read() if "tunnel" in sections else ""
    cpu_e, cpu_n = (cell(cpu, "proxy", r, 3) for r in ("exoproxy-intercept", "nginx"))
    added = "added p99, 64 clients at 100 requests/s"
    p99_e, p99_n = (cell(run, f"{r} vs direct", added) for r in ("exoproxy-intercept", "nginx"))
    bulk_e, bulk_s = (cell(tunnel, "ratio", f"{r} / direct") for r in ("exoproxy", "squid"))
    both = lambda a, b, f: None if number(a) is None or number(b) is None else f(number(a), number(b))
    rows = [
        "| figure | exoproxy | the other, same run | target | |",
        "|---|---:|---:|---|---|",
        f"| CPU per intercepted keep-alive request | {cpu_e} | nginx: {cpu_n} | ≤ nginx's | {verdict(both(cpu_e, cpu_n, lambda e, n: e <= n))} |",
        f"| added p99 at 100 requests/s (64 clients) | {p99_e} | nginx: {p99_n} | ≤ 300 µs | {verdict(both(p99_e, '300', lambda e, t: e <= t))} |",
        f"| tunnel bulk MB/s ratio to direct (section 1) | {bulk_e} | squid: {bulk_s} | ≥ squid's | {verdict(both(bulk_e, bulk_s, lambda e, q: e >= q))} |",
    ]
    body = (head(guard_cmd) + f"Load average (1, 5, 15 min) at the start: {load_before}; at the end: {load_after}.\n\n"
            + "\n".join(rows) + "\n\n" + cpu + "\n" + run)
    put("guard", body)
open(path, "w").write(text)
PY
echo "BENCHMARKS.md updated"
