#!/usr/bin/env python3
"""Misbehaving registries for the bad-input tests (stdlib only, 127.0.0.1).

    fake_registry.py --port P [--log FILE] [--ready FILE] MODE...

Standalone modes:
  --html                  every request gets `200 text/html` (a web server's
                          welcome page where a registry should be)
  --redirect-loop         like a registry whose blob GETs redirect forever
                          (/v2/ answers normally, manifests come from
                          --upstream if given, else 404)
Proxy modes (need --upstream http://127.0.0.1:PORT, a plain-HTTP registry;
requests and Authorization pass through, faults are applied on the way back):
  --truncate blobs|manifests|all   send the full Content-Length but only
                          half the body (at least 1 byte short), then close
  --tamper-manifest       change one byte of every manifest body; the
                          Docker-Content-Digest header stays the upstream's
  --manifest-media-type T rewrite the manifest's mediaType (field and
                          Content-Type) to T; the digest header is recomputed
                          so that only the media type is wrong
  --layer-media-type T    rewrite every layer's mediaType to T (likewise)
  --ignore-range          blob GETs are sent upstream without Range and
                          answered 200 with the whole blob
  --redirect-blobs        blob GETs are answered 307 to /_storage/<token>,
                          which serves the blob (object storage; not a fault)
  --redirect-loop         (with --upstream) manifests pass, blob GETs loop
  --redirect-to URL       with --redirect-blobs: the storage is at URL (another
                          server, e.g. a --challenge one) instead of here
Credential traps (standalone):
  --challenge REALM       every request gets 401 with `WWW-Authenticate:
                          Bearer realm="REALM",service="fake"` (storage or a
                          registry that wants a token from REALM)
  --token-realm           every request gets 200 {"token": FAKE_TOKEN}: a token
                          server that only records who asked
  --tls CERT:KEY          serve HTTPS with that certificate

Each request is logged to --log as a JSON line {method, path, range, status,
authorization} (authorization: the Authorization header received, or null).
"""

import argparse
import hashlib
import http.client
import http.server
import json
import os
import re
import signal
import socket
import threading
import urllib.parse

A = None
LOCK = threading.Lock()
# rewritten manifest digest -> upstream digest (so GET by the new digest works)
REWRITTEN = {}
STORAGE = {}  # token -> upstream blob path
FAKE_TOKEN = "fake-realm-token-0b5e7c1d"

HTML = (b"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
        b"<body><h1>Welcome to nginx!</h1><p>If you see this page, the web server is "
        b"successfully installed.</p></body></html>\n")

MANIFEST_RE = re.compile(r"^/v2/(.+)/manifests/([^/]+)$")
BLOB_RE = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")


def log(entry):
    if not A.log:
        return
    with LOCK:
        with open(A.log, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    # --- helpers -------------------------------------------------------------
    def _log(self, status, **kw):
        e = {"method": self.command, "path": self.path, "range": self.headers.get("Range"),
             "status": status, "authorization": self.headers.get("Authorization")}
        e.update(kw)
        log(e)

    def send(self, status, body=b"", headers=None, head=False, cut=None):
        self.send_response(status)
        hs = dict(headers or {})
        hs.setdefault("Content-Length", str(len(body)))
        for k, v in hs.items():
            self.send_header(k, v)
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        self._log(status, **({"cut": cut} if cut is not None else {}))
        if head:
            return
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(body)

    def upstream(self, method, path, drop_range=False):
        u = urllib.parse.urlparse(A.upstream)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        hs = {}
        for k in ("Authorization", "Accept", "Range", "Content-Type", "Content-Length"):
            for v in self.headers.get_all(k) or []:
                if k == "Range" and drop_range:
                    continue
                hs[k] = v if k not in hs else hs[k] + ", " + v
        body = None
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            body = self.rfile.read(n)
        c.request(method, path, body=body, headers=hs)
        r = c.getresponse()
        data = r.read()
        headers = [(k, v) for k, v in r.getheaders()
                   if k.lower() not in ("transfer-encoding", "connection", "date", "location")]
        loc = r.getheader("Location")
        if loc:
            # Keep the client on the proxy for upload URLs and redirects.
            lu = urllib.parse.urlparse(loc)
            headers.append(("Location", urllib.parse.urlunparse(
                ("http", "127.0.0.1:%d" % A.port, lu.path, lu.params, lu.query, lu.fragment))
                if lu.netloc else loc))
        c.close()
        return r.status, headers, data

    def relay(self, status, headers, data, head=False, cut=None):
        hs = {}
        for k, v in headers:
            if k.lower() == "content-length":
                k = "Content-Length"
            hs[k] = v
        if not head or "Content-Length" not in hs:
            hs["Content-Length"] = str(len(data))
        self.send(status, data, hs, head=head, cut=cut)

    # --- modes ---------------------------------------------------------------
    def handle_any(self):
        path = urllib.parse.urlparse(self.path).path
        head = self.command == "HEAD"
        if A.challenge:
            return self.send(401, json.dumps({"errors": [{"code": "UNAUTHORIZED",
                                                          "message": "authentication required"}]}
                                             ).encode(),
                             {"Content-Type": "application/json",
                              "WWW-Authenticate": 'Bearer realm="%s",service="fake"' % A.challenge},
                             head=head)
        if A.token_realm:
            return self.send(200, json.dumps({"token": FAKE_TOKEN, "expires_in": 300}).encode(),
                             {"Content-Type": "application/json"}, head=head)
        if A.html:
            return self.send(200, HTML, {"Content-Type": "text/html; charset=utf-8"}, head=head)
        if path == "/v2/" or path == "/v2":
            if not A.upstream:
                return self.send(200, b"{}", {"Content-Type": "application/json",
                                             "Docker-Distribution-API-Version": "registry/2.0"},
                                 head=head)
        m_blob = BLOB_RE.match(path)
        m_man = MANIFEST_RE.match(path)
        # object storage side of --redirect-blobs
        if path.startswith("/_storage/"):
            tok = path[len("/_storage/"):]
            up = STORAGE.get(tok)
            if not up:
                return self.send(404, b"no such object", {"Content-Type": "text/plain"}, head=head)
            st, hs, data = self.upstream(self.command, up)
            return self.relay(st, hs, data, head=head)
        if path.startswith("/_loop/"):
            n = int(path.rsplit("/", 1)[1] or 0)
            nxt = "/_loop/%d" % ((n + 1) % 2)
            return self.send(307, b"", {"Location": "http://127.0.0.1:%d%s" % (A.port, nxt)},
                             head=head)
        if m_blob and self.command == "GET" and A.redirect_loop:
            return self.send(307, b"", {"Location": "http://127.0.0.1:%d/_loop/0" % A.port})
        if not A.upstream:
            return self.send(404, json.dumps({"errors": [{"code": "NAME_UNKNOWN",
                                                          "message": "unknown"}]}).encode(),
                             {"Content-Type": "application/json"}, head=head)
        if m_blob and self.command == "GET" and A.redirect_blobs:
            tok = hashlib.sha256(os.urandom(16)).hexdigest()[:24]
            STORAGE[tok] = self.path
            base = A.redirect_to.rstrip("/") if A.redirect_to else "http://127.0.0.1:%d" % A.port
            return self.send(307, b"", {"Location": "%s/_storage/%s" % (base, tok)})
        if m_man and self.command in ("GET", "HEAD"):
            return self.manifest(m_man.group(1), m_man.group(2), head)
        if m_blob and self.command == "GET":
            drop = A.ignore_range and self.headers.get("Range") is not None
            st, hs, data = self.upstream("GET", self.path, drop_range=drop)
            if drop and st == 200:
                hs = [(k, v) for k, v in hs if k.lower() != "content-range"]
            cut = None
            if A.truncate in ("blobs", "all") and st in (200, 206) and len(data) > 0:
                cut = max(0, min(len(data) // 2, len(data) - 1))
            return self.relay(st, hs, data, cut=cut)
        st, hs, data = self.upstream(self.command, self.path)
        return self.relay(st, hs, data, head=head)

    def manifest(self, name, ref, head):
        up_ref = REWRITTEN.get(ref, ref)
        rewrite = A.manifest_media_type or A.layer_media_type
        method = "GET" if (rewrite or A.tamper_manifest or A.truncate) else self.command
        st, hs, data = self.upstream(method, "/v2/%s/manifests/%s" % (name, up_ref))
        if st != 200:
            return self.relay(st, hs, data, head=head)
        hs = dict(hs)
        if rewrite:
            m = json.loads(data)
            if A.manifest_media_type:
                m["mediaType"] = A.manifest_media_type
                for k in list(hs):
                    if k.lower() == "content-type":
                        hs[k] = A.manifest_media_type
            if A.layer_media_type:
                for layer in m.get("layers", []):
                    layer["mediaType"] = A.layer_media_type
            data = json.dumps(m, indent=3).encode()
            dg = "sha256:" + hashlib.sha256(data).hexdigest()
            REWRITTEN[dg] = hs.get("Docker-Content-Digest", up_ref)
            hs["Docker-Content-Digest"] = dg
            hs["Etag"] = '"%s"' % dg
        if A.tamper_manifest:
            # Same length, still JSON: bump the first digit that follows "size":.
            s = data.decode()
            mm = re.search(r'"size"\s*:\s*(\d)', s)
            if mm:
                i = mm.start(1)
                s = s[:i] + str((int(s[i]) + 1) % 10 or 1) + s[i + 1:]
            else:
                s = s.replace("{", " {", 1)[:-1] if s.endswith(" ") else s + " "
            data = s.encode()
        cut = None
        if A.truncate in ("manifests", "all"):
            cut = max(0, min(len(data) // 2, len(data) - 1))
        hs["Content-Length"] = str(len(data))
        if head:
            return self.send(200, b"", hs, head=True)
        return self.send(200, data, hs, cut=cut)

    def do_GET(self):
        self.handle_any()

    def do_HEAD(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_PUT(self):
        self.handle_any()

    def do_PATCH(self):
        self.handle_any()

    def do_DELETE(self):
        self.handle_any()


def main():
    global A
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log")
    ap.add_argument("--ready")
    ap.add_argument("--upstream")
    ap.add_argument("--html", action="store_true")
    ap.add_argument("--redirect-loop", action="store_true")
    ap.add_argument("--redirect-blobs", action="store_true")
    ap.add_argument("--truncate", choices=["blobs", "manifests", "all"])
    ap.add_argument("--tamper-manifest", action="store_true")
    ap.add_argument("--manifest-media-type")
    ap.add_argument("--layer-media-type")
    ap.add_argument("--ignore-range", action="store_true")
    ap.add_argument("--redirect-to")
    ap.add_argument("--challenge")
    ap.add_argument("--token-realm", action="store_true")
    ap.add_argument("--tls")
    A = ap.parse_args()
    if A.upstream and not A.upstream.startswith("http://127.0.0.1:"):
        ap.error("--upstream must be http://127.0.0.1:PORT")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", A.port), Handler)
    srv.daemon_threads = True
    if A.tls:
        import ssl
        cert, _, key = A.tls.partition(":")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    if A.ready:
        with open(A.ready + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(A.ready + ".tmp", A.ready)
    srv.serve_forever()


if __name__ == "__main__":
    main()
