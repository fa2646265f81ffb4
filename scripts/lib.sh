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

# ensure_nginx: Debian's nginx, installed once (as root) if missing; the package's own service is
# never started or stopped here (bench runs use their own config, prefix and pid).
ensure_nginx() {
  command -v nginx >/dev/null && return 0
  [ "$(id -u)" = 0 ] || fail "nginx is not installed: apt-get install nginx"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
  command -v nginx >/dev/null || fail "could not install nginx"
}

# cpu_ticks PID...: utime + stime of the processes, in clock ticks (getconf CLK_TCK per second).
# Fields 14 and 15 of /proc/PID/stat, counted after the ")" closing the command name.
cpu_ticks() {
  local total=0 p
  for p in "$@"; do total=$((total + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat"))); done
  echo "$total"
}

# start_nginx_reverse PORT UPSTREAM_PORT UPSTREAM_CA TOKEN [PIN...]: nginx (one worker) as a
# TLS-terminating reverse proxy for nam12b.outlook.office365.com on PORT, with a certificate from a
# local test CA ($tmp/nginx/ca.pem), that sets `Authorization: Bearer TOKEN` and relays over a
# keep-alive pool of TLS connections to 127.0.0.1:UPSTREAM_PORT, verified against UPSTREAM_CA.
# Sets nginx_pid (the master; its worker is its child).
start_nginx_reverse() {
  local port=$1 upstream=$2 upstream_ca=$3 token=$4 host=nam12b.outlook.office365.com d="$tmp/nginx"; shift 4
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=bench-nginx-ca \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$host" \
    -keyout "$d/leaf.key" -out "$d/leaf.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$host" >"$d/leaf.ext"
  openssl x509 -req -in "$d/leaf.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 1 \
    -extfile "$d/leaf.ext" -out "$d/leaf.pem" 2>/dev/null
  cat >"$d/nginx.conf" <<CONF
$([ "$(id -u)" = 0 ] && echo "user root;")
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  access_log $d/access.log;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  upstream origin {
    server 127.0.0.1:$upstream;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$port ssl;
    server_name $host;
    ssl_certificate $d/leaf.pem;
    ssl_certificate_key $d/leaf.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    location / {
      proxy_pass https://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header Authorization "Bearer $token";
      proxy_ssl_server_name on;
      proxy_ssl_name $host;
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 2;
      proxy_ssl_trusted_certificate $upstream_ca;
      proxy_ssl_session_reuse on;
    }
  }
}
CONF
  "$@" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;' >"$tmp/nginx.log" 2>&1 &
  nginx_pid=$!
  pids+=("$nginx_pid")
  wait_port "$port" nginx
}
