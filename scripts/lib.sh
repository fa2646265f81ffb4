# Shared helpers of the interop and bench scripts (sourced, not run). Everything listens on 127.0.0.1.
# A script sets `tmp` (via make_tmp) before calling fail, and appends background pids to `pids`.

fail() { echo "FAIL: $*" >&2; for f in "$tmp"/*.log; do echo "--- $f"; tail -n 30 "$f"; done >&2; exit 1; }
pass() { echo "ok: $*"; passed=$((passed + 1)); }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; fail "nothing listens on port $1 ($2)"; }

# make_tmp NAME: a temp folder squid's 'proxy' user can enter (squid drops privileges), removed on
# exit together with every background process in `pids`.
make_tmp() {
  tmp=$(mktemp -d "/tmp/exoproxy-$1.XXXXXX")
  chmod 755 "$tmp"
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
}

# https_origin PORT: openssl s_server for example.test (self-signed, files in $tmp) on PORT.
https_origin() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=example.test -addext subjectAltName=DNS:example.test \
    -keyout "$tmp/origin.key" -out "$tmp/origin.pem" 2>/dev/null
  openssl s_server -quiet -www -accept "127.0.0.1:$1" -cert "$tmp/origin.pem" -key "$tmp/origin.key" \
    >"$tmp/origin.log" 2>&1 &
  pids+=($!)
}

# squid_conf_head PORT: the squid.conf lines every script shares (listen, files in $tmp, no cache,
# no DNS); the caller appends its auth and access rules.
squid_conf_head() {
  cat <<CONF
http_port 127.0.0.1:$1
pid_filename $tmp/squid.pid
access_log stdio:$tmp/access.log
cache_log $tmp/cache.log
cache deny all
cache_mem 8 MB
dns_nameservers 127.0.0.1
coredump_dir $tmp
netdb_filename none
shutdown_lifetime 1 seconds
CONF
}

# build_exoproxy: the debug binary, as $exo; resets the pass counter.
build_exoproxy() {
  passed=0
  cargo build --quiet --bin exoproxy
  exo=$PWD/target/debug/exoproxy
}

# start_squid PORT: runs squid on $tmp/squid.conf (as its 'proxy' user) until exit; sets squid_pid.
start_squid() {
  chown -R proxy:proxy "$tmp" 2>/dev/null || true
  squid -N -f "$tmp/squid.conf" >"$tmp/squid.log" 2>&1 &
  squid_pid=$!
  pids+=("$squid_pid")
  wait_port "$1" squid
}
