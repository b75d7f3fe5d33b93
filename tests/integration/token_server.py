#!/usr/bin/env python3
"""A small token server for docker-registry's `auth: token` (tests only).

    token_server.py --port P --key KEY.pem --cert CERT.pem --issuer I \
        --users FILE [--anonymous-pull] [--expires 300] [--log FILE] [--x5c]

GET /token?service=S&scope=repository:NAME:pull,push[&scope=...] (Basic auth),
or POST /token with the OAuth2 form (grant_type=password, username, password,
service, scope; or grant_type=refresh_token) as containerd sends it:
  * good Basic credentials (FILE holds "user:password" lines) -> 200 with
    {"token", "access_token", "expires_in", "issued_at"}: a JWT signed RS256
    (or ES256, from the key) with the claims distribution 2.8 checks: iss,
    sub, aud (= service), exp, nbf, iat, jti, access [{type, name, actions}];
  * no credentials -> a pull-only token if --anonymous-pull, else 401;
  * bad credentials -> 401 with a JSON error (never names the password).

The JWT header carries `kid`, the libtrust fingerprint of the public key:
distribution 2.8 (registry/auth/token) puts every certificate of its
rootcertbundle into a key map by that fingerprint and looks the token's kid
up there.  --x5c puts the signing certificate in an `x5c` header instead (the
registry then verifies it against the bundle as a chain).

Every request is logged to --log as one JSON line: {"method", "path",
"service", "scope", "user", "result"[, "access"]}; --token-log FILE gets each
token issued, one a line (for tests that grep for leaks).  Listens on 127.0.0.1 only.  Stops on SIGTERM.
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import uuid

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def libtrust_key_id(pub):
    """sha256 of the DER SubjectPublicKeyInfo, first 240 bits, base32, in
    12 groups of 4 joined by ':' (libtrust keyIDFromCryptoKey)."""
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


class State:
    pass


S = State()
LOCK = threading.Lock()


def log(entry):
    if not S.log:
        return
    with LOCK:
        with open(S.log, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet stderr
        pass

    def reply(self, code, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        # The OAuth2 form (containerd with credentials): grant_type=password
        # with username/password, or refresh_token; service, scope, client_id.
        n = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode(errors="replace")) if n else {}
        u = urllib.parse.urlparse(self.path)
        cred = None
        grant = (form.get("grant_type") or [""])[0]
        if grant == "password":
            cred = ((form.get("username") or [""])[0], (form.get("password") or [""])[0])
        elif grant == "refresh_token":
            cred = S.refresh.get((form.get("refresh_token") or [""])[0], ("?", None))
        scopes = []
        for sc in form.get("scope") or []:
            scopes.extend(sc.split(" "))
        self.issue("POST", u.path, (form.get("service") or [""])[0], scopes, cred, oauth=True)

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        cred = None
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:].strip()).decode().partition(":")
                cred = (user, pw)
            except Exception:  # noqa: BLE001 - any garbage is bad credentials
                cred = ("?", None)
        self.issue("GET", u.path, (q.get("service") or [""])[0], q.get("scope") or [], cred)

    def issue(self, method, path, service, scopes, cred, oauth=False):
        entry = {"method": method, "path": path, "service": service, "scope": scopes, "user": None}
        u = urllib.parse.urlparse(path)
        if u.path != "/token":
            entry["result"] = 404
            log(entry)
            return self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": "no such path"}]})
        if S.fail_next > 0:
            S.fail_next -= 1
            entry["result"] = 503
            log(entry)
            return self.reply(503, {"errors": [{"code": "UNAVAILABLE", "message": "try again"}]})
        user = None
        if cred is not None:
            user, pw = cred
            entry["user"] = user
            if S.users.get(user) is None or S.users.get(user) != pw:
                entry["result"] = 401
                log(entry)
                return self.reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                                    "message": "invalid username or password"}]},
                                  {"WWW-Authenticate": 'Basic realm="token"'})
            allowed = {"pull", "push", "delete", "*"}
        elif S.anonymous_pull:
            allowed = {"pull"}
        else:
            entry["result"] = 401
            log(entry)
            return self.reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                                "message": "authentication required"}]},
                              {"WWW-Authenticate": 'Basic realm="token"'})
        access = []
        for sc in scopes:
            for one in sc.split(" "):
                parts = one.split(":")
                if len(parts) < 3:
                    continue
                typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
                acts = [a for a in actions.split(",") if a in allowed]
                access.append({"type": typ, "name": name, "actions": acts})
        now = int(time.time())
        claims = {
            "iss": S.issuer,
            "sub": user or "",
            "aud": service,
            "exp": now + S.expires,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        headers = {"typ": "JWT"}
        if S.x5c:
            headers["x5c"] = [S.cert_b64]
        else:
            headers["kid"] = S.kid
        tok = jwt.encode(claims, S.key, algorithm=S.alg, headers=headers)
        if isinstance(tok, bytes):
            tok = tok.decode()
        entry["result"] = 200
        entry["access"] = access
        log(entry)
        if S.token_log:
            with LOCK:
                with open(S.token_log, "a") as f:
                    f.write(tok + "\n")
        reply = {"token": tok, "access_token": tok, "expires_in": S.expires,
                 "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
        if oauth and user:
            rt = uuid.uuid4().hex
            S.refresh[rt] = cred
            reply["refresh_token"] = rt
            reply["scope"] = " ".join(scopes)
        self.reply(200, reply)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--issuer", default="rs-test-issuer")
    ap.add_argument("--users", required=True, help="file of user:password lines")
    ap.add_argument("--anonymous-pull", action="store_true")
    ap.add_argument("--expires", type=int, default=300)
    ap.add_argument("--log")
    ap.add_argument("--x5c", action="store_true")
    ap.add_argument("--token-log", help="append every token issued to this file (tests grep "
                    "for leaks)")
    ap.add_argument("--fail-first", type=int, default=0, help="answer 503 to the first N requests")
    ap.add_argument("--ready", help="write this file once listening")
    a = ap.parse_args()

    with open(a.key, "rb") as f:
        S.key = serialization.load_pem_private_key(f.read(), password=None)
    with open(a.cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    if isinstance(S.key, rsa.RSAPrivateKey):
        S.alg = "RS256"
    elif isinstance(S.key, ec.EllipticCurvePrivateKey):
        S.alg = {256: "ES256", 384: "ES384", 521: "ES512"}[S.key.curve.key_size]
    else:
        sys.exit("token_server: unsupported key type")
    S.kid = libtrust_key_id(S.key.public_key())
    S.cert_b64 = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    S.issuer = a.issuer
    S.users = {}
    with open(a.users) as f:
        for line in f:
            line = line.rstrip("\n")
            if ":" in line:
                u, _, p = line.partition(":")
                S.users[u] = p
    S.anonymous_pull = a.anonymous_pull
    S.expires = a.expires
    S.log = a.log
    S.x5c = a.x5c
    S.token_log = a.token_log
    S.fail_next = a.fail_first
    S.refresh = {}

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    if a.ready:
        with open(a.ready + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(a.ready + ".tmp", a.ready)
    srv.serve_forever()


if __name__ == "__main__":
    main()
