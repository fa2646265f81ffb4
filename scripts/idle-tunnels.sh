#!/usr/bin/env bash
# Idle-tunnel memory of the release proxy as its own process (BENCHMARKS.md §5, issue 10 row 10):
# N CONNECT tunnels to a loopback echo server, each used once (64 bytes echoed) and then left idle;
# prints the proxy's VmRSS before, with the tunnels open (after the relay's 2 s quiet period) and
# after they all closed. The clients and the echo server are two Python processes of their own, so the
# proxy holds exactly two descriptors per tunnel and the figure is the proxy's alone.
#   scripts/idle-tunnels.sh [N]     N defaults to 9 900: in this container the hard descriptor limit is
#                                   20 000 per process, and 10 000 tunnels need 20 000 plus the proxy's own.
#   EXOPROXY_NO_BUILD=1 uses target/release/exoproxy as it is (while another build holds cargo's lock).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
n=${1:-9900}
make_tmp idle

[ -n "${EXOPROXY_NO_BUILD:-}" ] || cargo build --quiet --release --bin exoproxy
exo=$PWD/target/release/exoproxy
echo_port=$(free_port); proxy_port=$(free_port)

python3 - "$echo_port" >"$tmp/echo.log" 2>&1 <<'PY' &
import asyncio, sys
async def echo(r, w):
    while data := await r.read(64):
        w.write(data); await w.drain()
    w.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()
asyncio.run(main())
PY
pids+=($!)
wait_port "$echo_port" echo

cat >"$tmp/exoproxy.toml" <<CONF
state_dir = "$tmp/state"
connect_to = ["echo.test:443:127.0.0.1:$echo_port"]
[listen]
addresses = ["127.0.0.1:$proxy_port"]
max_connections = $((n + 64))
[routing]
direct_hosts = ["echo.test"]
allow_local = ["echo.test"]
[upstream]
source = "direct"
CONF
env -u HTTPS_PROXY -u HTTP_PROXY -u https_proxy -u http_proxy "$exo" --config "$tmp/exoproxy.toml" run >"$tmp/exoproxy.log" 2>&1 &
proxy_pid=$!
pids+=($proxy_pid)
wait_port "$proxy_port" exoproxy

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$proxy_pid/status"; }
fds() { ls "/proc/$proxy_pid/fd" | wc -l; }
sleep 1
base=$(rss)
echo "baseline: $base KiB, $(fds) descriptors"

# The clients: open N tunnels in batches, echo 64 bytes through each, report, hold them until told.
mkfifo "$tmp/go"
python3 - "$proxy_port" "$n" "$tmp/opened" "$tmp/go" <<'PY' &
import asyncio, sys
port, n, opened, go = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
payload = bytes(range(64))
async def one():
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"CONNECT echo.test:443 HTTP/1.1\r\nHost: echo.test:443\r\n\r\n")
    head = await r.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    w.write(payload)
    assert await r.readexactly(64) == payload
    return w
async def main():
    held = []
    for start in range(0, n, 200):
        held += await asyncio.gather(*(one() for _ in range(min(200, n - start))))
    open(opened, "w").write(f"{len(held)}\n")
    await asyncio.get_running_loop().run_in_executor(None, lambda: open(go).read())
    for w in held:
        w.close()
    await asyncio.sleep(1)
asyncio.run(main())
PY
clients=$!
pids+=($clients)
for _ in $(seq 1 600); do [ -s "$tmp/opened" ] && break; kill -0 "$clients" 2>/dev/null || fail "the clients failed"; sleep 0.2; done
[ -s "$tmp/opened" ] || fail "the tunnels did not open in 120 s"
sleep 3 # past the relay's 2 s quiet period: idle buffers released
open_rss=$(rss)
echo "open: $(cat "$tmp/opened") tunnels, $open_rss KiB, $(fds) descriptors"
echo go >"$tmp/go"
wait "$clients"
sleep 3
after=$(rss)
echo "after close: $after KiB, $(fds) descriptors"
python3 - "$n" "$base" "$open_rss" "$after" <<'PY'
import sys
n, base, opened, after = map(int, sys.argv[1:])
k = lambda v: f"{v:,}".replace(",", " ")
print(f"| release, proxy alone | {k(n)} | 64 B | {k(base)} | {k(opened)} | {(opened - base) / n:.1f} KiB | "
      f"{k(after)} | {after / base:.2f}× |")
print(f"10 000 tunnels at this rate: {(opened - base) / n * 10000 / 1024:.0f} MiB above the baseline")
PY
