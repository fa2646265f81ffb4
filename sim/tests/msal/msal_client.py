"""Drive exosim with MSAL for Python, a real third-party Entra ID client.

Usage: msal_client.py PORT CA_FILE MODE
  device   device-code flow (prints {"user_code": ...} first, then waits for approval), then a forced
           silent refresh; prints the final result as JSON.
  cert     client credentials with the app certificate (sim/keys/app-client.*): RS256 + x5t (SHA-1).
  authcode authorization code + PKCE with a loopback redirect and login_hint=user@contoso.com
           (the emulator auto-approves and 302s; this script reads Location instead of a browser).
  cert256  the same given only the certificate: MSAL then signs PS256 + x5t#S256.
Every TCP connection goes to 127.0.0.1:PORT; TLS still checks the real host name against CA_FILE.
"""
import hashlib
import json
import sys

import urllib3.util.connection as connection

PORT = int(sys.argv[1])
CA_FILE = sys.argv[2]
MODE = sys.argv[3]
KEYS = sys.argv[4] if len(sys.argv) > 4 else "sim/keys"
AUTHORITY = "https://login.microsoftonline.com/contoso.onmicrosoft.com"
SCOPES = ["https://outlook.office365.com/.default"]

_create = connection.create_connection


def _to_emulator(address, *args, **kwargs):
    return _create(("127.0.0.1", PORT), *args, **kwargs)


connection.create_connection = _to_emulator

import msal  # noqa: E402  (after the connection patch)
import requests  # noqa: E402


def session():
    s = requests.Session()
    s.verify = CA_FILE
    s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override verify
    return s


def device():
    app = msal.PublicClientApplication(
        "a0c73c16-a7e3-4564-9a95-2bdf47383716", authority=AUTHORITY, http_client=session()
    )
    flow = app.initiate_device_flow(scopes=SCOPES)
    print(json.dumps({"user_code": flow.get("user_code"), "flow_error": flow.get("error")}), flush=True)
    first = app.acquire_token_by_device_flow(flow)
    accounts = app.get_accounts()
    second = app.acquire_token_silent(SCOPES, account=accounts[0], force_refresh=True) if accounts else None
    return {
        "first": {k: first.get(k) for k in ("access_token", "error", "error_codes")},
        "username": accounts[0]["username"] if accounts else None,
        "second": {k: (second or {}).get(k) for k in ("access_token", "error")},
    }


def authcode():
    import urllib.parse

    http = session()
    app = msal.PublicClientApplication(
        "fb78d390-0c51-40cd-8e17-fdbfab77341b", authority=AUTHORITY, http_client=http
    )
    flow = app.initiate_auth_code_flow(
        SCOPES, redirect_uri="http://localhost:53999/", login_hint="user@contoso.com"
    )
    answer = http.get(flow["auth_uri"], allow_redirects=False)
    location = answer.headers.get("Location", "")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    result = app.acquire_token_by_auth_code_flow(flow, params)
    claims = result.get("id_token_claims") or {}
    return {
        "status": answer.status_code,
        "access_token": result.get("access_token"),
        "error": result.get("error"),
        "error_description": result.get("error_description"),
        "preferred_username": claims.get("preferred_username"),
    }


def cert(sha256=False):
    with open(f"{KEYS}/app-client.key") as f:
        key = f.read()
    with open(f"{KEYS}/app-client.pem") as f:
        pem = f.read()
    der = __import__("ssl").PEM_cert_to_DER_cert(pem)
    app = msal.ConfidentialClientApplication(
        "6d1f0c2e-5b7a-4c33-9a1e-0e5a5c0ffe01",
        authority=AUTHORITY,
        client_credential=(
            {"private_key": key, "public_certificate": pem}
            if sha256
            else {"private_key": key, "thumbprint": hashlib.sha1(der).hexdigest()}
        ),
        http_client=session(),
    )
    result = app.acquire_token_for_client(scopes=SCOPES)
    return {k: result.get(k) for k in ("access_token", "error", "error_description")}


print(json.dumps({"device": device, "cert": cert, "cert256": lambda: cert(sha256=True), "authcode": authcode}[MODE]()), flush=True)
