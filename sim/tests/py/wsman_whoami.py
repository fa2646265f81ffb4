#!/usr/bin/env python3
"""Run a WinRS command (default: whoami) over Exchange Online's RPS endpoint with pypsrp.

This is the third-party client of exosim's Exchange emulator tests (sim/tests/exchange_pypsrp.rs): it
authenticates the way Exchange Online PowerShell did over WS-Man, Basic with the user's UPN (or
OAuthUser@<tenant>) as user name and the literal "Bearer <jwt>" as password, with
BasicAuthToOAuthConversion=true in the query.

Secrets never go on the command line (SEC-21): the token comes from --token-file PATH, from stdin
(--token-file -), or from the EXO_TOKEN environment variable.

Three wire details pypsrp/requests do not handle on their own, solved here:

* Redirect. The front door (outlook.office365.com) answers the first POST with 302 to a tenant host.
  python-requests would turn the redirected POST into a GET and drop the Authorization header on the
  host change. WinRM with -AllowRedirection instead re-sends the same POST, with credentials, to the new
  URI and keeps using that URI for the rest of the session. A response hook does the same here (at most
  5 hops, WinRM's MaximumConnectionRedirectionCount default) and switches pypsrp's endpoint.
* Query string. pypsrp builds the endpoint as https://host:port/<path>; the query rides in <path>.
* Cookies. The tenant host sets MS-WSMAN (path=/PowerShell-LiveID) on Create; requests' cookie jar sends
  it back because the Location keeps the path's exact case (cookie paths match case-sensitively).

Host names: the emulated Exchange names are mapped to a loopback address inside this process by
patching urllib3's create_connection (never /etc/hosts). With --proxy the proxy resolves names, so
no mapping is done unless --loopback is given.

Exit codes: 0 command ran with exit code 0 (its stdout is printed); 3 HTTP 401 (challenge headers on
stderr); 4 WS-Man fault; 5 command exit code not 0; 6 a --long-poll Receive did not time out; 2 usage;
1 anything else.
"""

import argparse
import os
import sys
import urllib.parse

EMULATED_SUFFIXES = (
    "outlook.office365.com",
    "ps.outlook.com",
    "ps.compliance.protection.outlook.com",
)
MAX_REDIRECTS = 5


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base_url", help="e.g. https://outlook.office365.com:8443/PowerShell-LiveID?BasicAuthToOAuthConversion=true")
    p.add_argument("--ca", required=True, help="PEM file of the CA that signs the server (emulator or exoproxy)")
    p.add_argument("--username", required=True, help="Basic user name: the token's UPN, or OAuthUser@<tenant>")
    p.add_argument("--token-file", help="file holding the access token; '-' reads stdin; default: $EXO_TOKEN")
    p.add_argument("--proxy", help="HTTP proxy URL, e.g. http://127.0.0.1:3128 (exoproxy)")
    p.add_argument("--loopback", help="address the emulated host names connect to (default 127.0.0.1 without --proxy)")
    p.add_argument("--command", default="whoami", help="command to run (default whoami)")
    p.add_argument("--operation-timeout", type=int, default=20, help="WS-Man OperationTimeout in seconds")
    p.add_argument(
        "--long-poll",
        type=int,
        metavar="SECONDS",
        help="instead of --command: start `more`, send one Receive with this OperationTimeout while it has no "
        "output, expect the server's w:TimedOut fault, then feed `more` a line on the same shell and print it",
    )
    return p.parse_args()


def read_token(token_file):
    if token_file == "-":
        token = sys.stdin.read()
    elif token_file:
        with open(token_file, encoding="utf-8") as f:
            token = f.read()
    else:
        token = os.environ.get("EXO_TOKEN", "")
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if not token:
        sys.stderr.write("no token: use --token-file PATH, --token-file - (stdin) or EXO_TOKEN\n")
        sys.exit(2)
    return token


def is_emulated(host):
    host = (host or "").lower().rstrip(".")
    return any(host == s or host.endswith("." + s) for s in EMULATED_SUFFIXES)


def map_hosts_to(address):
    """Connect emulated Exchange names to `address` (same port) inside this process only."""
    import urllib3.util.connection as connection

    original = connection.create_connection

    def create_connection(addr, *args, **kwargs):
        host, port = addr
        if is_emulated(host):
            addr = (address, port)
        return original(addr, *args, **kwargs)

    connection.create_connection = create_connection


class RedirectFollower:
    """A requests response hook that follows WS-Man redirects the way WinRM -AllowRedirection does."""

    def __init__(self, transport):
        self.transport = transport
        self.last_401 = None

    def __call__(self, resp, *args, **kwargs):
        hops = 0
        while resp.is_redirect and resp.request.method == "POST" and hops < MAX_REDIRECTS:
            hops += 1
            location = urllib.parse.urljoin(resp.request.url, resp.headers["Location"])
            resp.close()
            resp = self._resend(resp.request, location, kwargs)
            # Like WinRM, keep talking to the new URI for the rest of the session.
            self.transport.endpoint = location
        if resp.status_code == 401:
            self.last_401 = resp
        return resp

    def _resend(self, original, location, send_kwargs):
        import requests

        # Authorization and Cookie are rebuilt for the new host by the session (auth + cookie jar).
        dropped = {"authorization", "cookie", "content-length", "host"}
        headers = {k: v for k, v in original.headers.items() if k.lower() not in dropped}
        session = self.transport.session
        prepared = session.prepare_request(requests.Request("POST", location, data=original.body, headers=headers))
        prepared.hooks = {"response": []}
        return session.send(prepared, allow_redirects=False, **send_kwargs)


def main():
    args = parse_args()
    token = read_token(args.token_file)
    loopback = args.loopback or (None if args.proxy else "127.0.0.1")
    if loopback:
        map_hosts_to(loopback)

    try:
        from pypsrp.exceptions import AuthenticationError, WSManFaultError
        from pypsrp.shell import Process, WinRS
        from pypsrp.wsman import WSMan
    except ImportError as err:
        sys.stderr.write("pypsrp missing: run scripts/setup.sh (%s)\n" % err)
        return 1

    url = urllib.parse.urlsplit(args.base_url)
    path = url.path.lstrip("/") + ("?" + url.query if url.query else "")
    wsman = WSMan(
        url.hostname,
        port=url.port or 443,
        path=path,
        ssl=True,
        auth="basic",
        username=args.username,
        password="Bearer " + token,
        cert_validation=args.ca,
        proxy=args.proxy,
        no_proxy=args.proxy is None,
        operation_timeout=args.operation_timeout,
        read_timeout=max(args.operation_timeout, args.long_poll or 0) + 10,
    )
    transport = wsman.transport
    transport.session = transport._build_session()
    follower = RedirectFollower(transport)
    transport.session.hooks["response"].append(follower)

    try:
        with WinRS(wsman) as shell:
            if args.long_poll:
                return long_poll(shell, Process, WSManFaultError, args.long_poll)
            process = Process(shell, args.command)
            process.invoke()
    except AuthenticationError:
        sys.stderr.write("HTTP 401 Unauthorized\n")
        if follower.last_401 is not None:
            for name in ("WWW-Authenticate", "x-ms-diagnostics"):
                for value in follower.last_401.raw.headers.getlist(name):
                    sys.stderr.write("%s: %s\n" % (name, value))
        return 3
    except WSManFaultError as err:
        sys.stderr.write("WS-Man fault %s: %s\n" % (err.code, err.reason))
        return 4

    sys.stdout.write(process.stdout.decode("utf-8", "replace"))
    sys.stderr.write(process.stderr.decode("utf-8", "replace"))
    return 0 if process.rc == 0 else 5


def long_poll(shell, Process, WSManFaultError, seconds):
    """One Receive that the server holds until it times out, then the session goes on (exit 0), or 6."""
    import time

    process = Process(shell, "more")
    process.begin_invoke()
    started = time.monotonic()
    try:
        shell.receive("stdout", command_id=process.id, timeout=seconds)
        sys.stderr.write("the Receive returned output instead of timing out\n")
        return 6
    except WSManFaultError as err:
        waited = time.monotonic() - started
        if err.code != 2150858793:
            sys.stderr.write("WS-Man fault %s: %s\n" % (err.code, err.reason))
            return 4
    sys.stdout.write("long-poll: w:TimedOut after %.0f s\n" % waited)
    process.send(b"after the long-poll\r\n", end=True)
    process.poll_invoke()
    sys.stdout.write(process.stdout.decode("utf-8", "replace"))
    return 0 if process.rc == 0 else 5


if __name__ == "__main__":
    sys.exit(main())
