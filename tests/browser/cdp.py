#!/usr/bin/env python3
"""Headless Chromium driven over the DevTools protocol, for tests/browser.rs (docs/TESTING.md).

Reads a plan (JSON) on stdin, prints what happened (JSON) on stdout. The plan:

    {"url": "http://127.0.0.1:<port>/",     # opened first, after the listeners below are on
     "proxy": "127.0.0.1:<port>" | null,     # --proxy-server (loopback URLs bypass it, as usual)
     "trust_pem": "<file>" | null,           # a CA trusted in the temp HOME's NSS database
     "steps": [ ... ]}

Steps, run in order, each giving one entry of "results":
    {"eval": "<js>"}                  value of the expression (promises awaited)
    {"wait_for": "<js>", "secs": n}   polls until the expression is truthy; its value
    {"sleep": secs}                   null
    {"screenshot": "<file.png>"}      the whole page as PNG; the file name
    {"download": "<css selector>", "dir": "<dir>"}
                                      clicks the element, waits for the download; the file's path
    {"wait_load": secs}               waits for a load event since the previous step began (the
                                      navigation that step started)

The result: {"results": [...], "console": [{"level", "text"}], "exceptions": [text],
"log": [{"level", "source", "text", "url"}], "responses": [{"url", "method", "status", "headers"}],
"failed": [{"url", "error", "blocked"}]}.

Chromium runs as `chromium --headless --no-sandbox` with a temp profile and HOME, every background
service off and a host resolver that resolves nothing (so no traffic leaves loopback: a proxied
request names its host to the proxy and is never resolved here). The process is ours: it is stopped
by its pid, and its temp dirs are removed.
"""

import base64
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # websocket-client, installed by scripts/setup.sh

QUIET_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--safebrowsing-disable-auto-update",
    "--password-store=basic",
    "--use-mock-keychain",
    "--disable-gpu",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions",
    # Nothing but 127.0.0.1 is reached directly: every other name fails here (a proxied host is the
    # proxy's to resolve, not ours).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1200,900",
]


class Browser:
    """One Chromium process and a CDP connection to its first page."""

    def __init__(self, proxy, trust_pem):
        self.home = tempfile.mkdtemp(prefix="exo-chromium-home-")
        self.profile = os.path.join(self.home, "profile")
        os.makedirs(self.profile)
        env = dict(os.environ, HOME=self.home)
        if trust_pem:
            trust(self.home, trust_pem)
        args = ["chromium", *QUIET_FLAGS, f"--user-data-dir={self.profile}"]
        if proxy:
            args.append(f"--proxy-server={proxy}")
        args.append("about:blank")
        self.proc = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.home, "chromium.log"), "wb"),
            preexec_fn=die_with_parent)
        port = self._debug_port()
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
        page = next(p for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=10,
                                              suppress_origin=True)
        self.next_id = 0
        self.events = []
        self.requests = {}  # requestId -> (method, url), for the responses and failures
        self.download_state = None
        self.previous_step = 0  # event number at which the previous step began
        self.out = {"results": [], "console": [], "exceptions": [], "log": [], "responses": [],
                    "failed": []}

    def _debug_port(self):
        """Chromium writes its DevTools port (we asked for any free one) into the profile."""
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("chromium exited: " + self.stderr_tail())
            try:
                with open(path) as f:
                    return int(f.readline().strip())
            except (OSError, ValueError):
                time.sleep(0.05)
        raise RuntimeError("chromium did not open its DevTools port: " + self.stderr_tail())

    def stderr_tail(self):
        try:
            with open(os.path.join(self.home, "chromium.log"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = self.receive(deadline=time.time() + 30)
            if msg is None:
                raise RuntimeError(f"no answer to {method}")
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def receive(self, deadline):
        """One message (events are recorded on the way), or None at the deadline."""
        left = deadline - time.time()
        if left <= 0:
            return None
        self.ws.settimeout(left)
        try:
            msg = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None
        if "method" in msg:
            self.record(msg["method"], msg.get("params", {}))
        return msg

    def record(self, method, p):
        self.events.append(method)
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            self.out["console"].append({"level": p["type"], "text": text})
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.out["exceptions"].append(d.get("exception", {}).get("description") or d["text"])
        elif method == "Log.entryAdded":
            e = p["entry"]
            self.out["log"].append({k: e.get(k, "") for k in ("level", "source", "text", "url")})
        elif method == "Network.requestWillBeSent":
            # A redirect reuses the request id: the response that redirected comes with the next
            # request, and belongs to the request before it.
            if "redirectResponse" in p:
                self.response(p["requestId"], p["redirectResponse"])
            self.requests[p["requestId"]] = (p["request"]["method"], p["request"]["url"])
        elif method == "Network.responseReceived":
            self.response(p["requestId"], p["response"])
        elif method == "Network.loadingFailed":
            verb, url = self.requests.get(p["requestId"], ("", ""))
            self.out["failed"].append({"method": verb, "url": url, "error": p.get("errorText", ""),
                                       "blocked": p.get("blockedReason", ""),
                                       "cors": p.get("corsErrorStatus", {}).get("corsError", "")})
        elif method == "Browser.downloadProgress":
            self.download_state = p["state"]

    def response(self, request_id, r):
        if r["url"].startswith("data:"):
            return
        verb, _ = self.requests.get(request_id, ("", ""))
        headers = {k.lower(): v for k, v in r["headers"].items()}
        self.out["responses"].append({"method": verb, "url": r["url"], "status": r["status"],
                                      "headers": headers})

    def wait_event(self, method, secs, since):
        """Waits until `method` has been seen since event number `since`."""
        deadline = time.time() + secs
        while method not in self.events[since:]:
            if self.receive(deadline) is None:
                raise RuntimeError(f"no {method} within {secs}s")

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                      returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:  # noqa: BLE001 - the process is stopped below either way
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def die_with_parent():
    """In the child: SIGTERM when this driver dies, so a killed test leaves no browser behind."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def trust(home, pem):
    """An NSS database in HOME (where Chromium on Linux looks) trusting `pem` as a CA for TLS."""
    db = "sql:" + os.path.join(home, ".pki", "nssdb")
    os.makedirs(os.path.join(home, ".pki", "nssdb"))
    subprocess.run(["certutil", "-d", db, "-N", "--empty-password"], check=True)
    subprocess.run(["certutil", "-d", db, "-A", "-t", "C,,", "-n", "exoproxy test CA", "-i", pem],
                   check=True)


def run_step(b, step):
    if "eval" in step:
        return b.evaluate(step["eval"])
    if "wait_for" in step:
        deadline = time.time() + step.get("secs", 10)
        while True:
            value = b.evaluate(step["wait_for"])
            if value:
                return value
            if time.time() > deadline:
                raise RuntimeError(f"not true within {step.get('secs', 10)}s: {step['wait_for']}")
            b.receive(time.time() + 0.1)
    if "sleep" in step:
        deadline = time.time() + step["sleep"]
        while b.receive(deadline) is not None:
            pass
        return None
    if "screenshot" in step:
        size = b.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = b.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                      clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                            "scale": 1})
        with open(step["screenshot"], "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        return step["screenshot"]
    if "download" in step:
        b.download_state = None
        b.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=step["dir"],
               eventsEnabled=True)
        b.evaluate(f"document.querySelector({json.dumps(step['download'])}).click()")
        deadline = time.time() + 10
        while b.download_state not in ("completed", "canceled"):
            if b.receive(deadline) is None:
                raise RuntimeError("the download did not finish")
        if b.download_state != "completed":
            raise RuntimeError("the download was canceled")
        files = [os.path.join(step["dir"], n) for n in os.listdir(step["dir"])]
        return files[0] if len(files) == 1 else files
    if "wait_load" in step:
        b.wait_event("Page.loadEventFired", step["wait_load"], b.previous_step)
        return None
    raise RuntimeError(f"unknown step {step}")


def main():
    plan = json.load(sys.stdin)
    b = Browser(plan.get("proxy"), plan.get("trust_pem"))
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            b.call(f"{domain}.enable")
        since = len(b.events)
        b.call("Page.navigate", url=plan["url"])
        b.wait_event("Page.loadEventFired", 15, since)
        for step in plan["steps"]:
            b.previous_step, since = since, len(b.events)
            b.out["results"].append(run_step(b, step))
        # Events already sent (late console messages, responses) are recorded before the end.
        b.receive(time.time() + 0.2)
    finally:
        b.close()
    json.dump(b.out, sys.stdout)


if __name__ == "__main__":
    main()
