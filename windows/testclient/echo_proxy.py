#!/usr/bin/env python3
"""Native loopback peer for scripts/wine-tests.sh: an echo server that also plays an upstream proxy.

    echo_proxy.py NAME PORT_FILE LOG

Listens on 127.0.0.1 (ephemeral port, written to PORT_FILE). A connection that starts with
"CONNECT " is answered "200" and NAME is appended to LOG (so the test sees which upstream exoproxy
chose); everything after that, or from the first byte on a plain connection, is echoed back.
"""
import socket
import sys
import threading


def serve(conn, name, log):
    with conn:
        data = conn.recv(65536)
        if data.startswith(b"CONNECT "):
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    return
                data += more
            head, _, data = data.partition(b"\r\n\r\n")
            with open(log, "a") as f:
                f.write(f"{name} {head.splitlines()[0].decode(errors='replace')}\n")
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        while data:
            conn.sendall(data)
            data = conn.recv(65536)


def main():
    name, port_file, log = sys.argv[1:4]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    with open(port_file, "w") as f:
        f.write(str(sock.getsockname()[1]))
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve, args=(conn, name, log), daemon=True).start()


main()
