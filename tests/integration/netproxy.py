#!/usr/bin/env python3
"""A loopback TCP proxy that understands HTTP/1.1 enough to shape, corrupt,
refuse or swallow registry traffic (stdlib only, 127.0.0.1 only).

    netproxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:PORT [--port-file F]
                [--rate-mbit R] [--delay-ms D] [--flip-range START:END]...
                [--control-file F] [--log F]

Every accepted connection gets its own upstream connection (1:1, keep-alive
works: each request's and each response's length is parsed, Content-Length,
chunked, or up to EOF).

  --port-file F     the chosen port, written (atomically) once listening
  --delay-ms D      D/2 ms added one way in each direction, so a round trip
                    costs D ms; pipelined: a long transfer is not slowed by
                    it (data in flight is released at its own time)
  --rate-mbit R     R Mbit/s (10^6 bits) per direction, shared by every
                    connection (one link; a token bucket 10 ms deep)
  --flip-range S:E  blob byte offsets [S,E) (repeatable): in a 206 answer to
                    a Range GET of /v2/.../blobs/sha256:... (single range or
                    multipart/byteranges, located by Content-Range) and in a
                    200 answer to a blob GET (offset 0), every returned byte
                    whose blob offset is in [S,E) is xor-ed with 0xff; other
                    bytes and lengths are untouched.  Use S:S+1 to flip one
                    byte.  Applied only while the mode is "flip".
  --control-file F  the mode, read again at each new request and polled every
                    50 ms for existing connections:
                      pass       forward unchanged
                      flip       forward, applying --flip-range
                      refuse     new connections are reset at once; existing
                                 ones are reset (both sides) when the mode is
                                 seen; a new request on a connection resets it
                      blackhole  connections are accepted and read but get no
                                 answer ever; bytes in flight on existing
                                 connections stop too (those stay dead after
                                 the mode changes back)
                      blackhole-range  a request with a Range header is
                                 swallowed as by blackhole (its connection
                                 frozen); others pass: manifests and
                                 configs answer, lazy reads of blobs hang
                    Missing or empty file: the default, "flip" when
                    --flip-range is given, else "pass".
  --log F           one JSON line per request when its answer ends (or the
                    connection does): t, conn, method, path, range, status,
                    bytes (body bytes forwarded), mode, flipped (bytes
                    flipped), complete; refused connections log
                    {"event": "refused"}.

Prints "listening 127.0.0.1:PORT" on stdout.  SIGTERM/SIGINT: exit 0.
"""

import argparse
import collections
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time

BLOB_RE = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$")
CRANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.I)
MODES = ("pass", "flip", "refuse", "blackhole", "blackhole-range")
RECV = 65536
HEAD_MAX = 1 << 20
XOR_FF = bytes(b ^ 0xFF for b in range(256))

A = None
LOG_LOCK = threading.Lock()
T0 = time.time()


def log(entry):
    if not A.log:
        return
    entry = dict(entry, t=round(time.time() - T0, 4))
    line = json.dumps(entry, sort_keys=True) + "\n"
    with LOG_LOCK:
        with open(A.log, "a") as f:
            f.write(line)


def warn(msg):
    sys.stderr.write("netproxy: %s\n" % msg)
    sys.stderr.flush()


def is_loopback(host):
    return host in ("localhost", "::1") or host.startswith("127.")


def hostport(s, what):
    host, _, port = s.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise SystemExit("netproxy: %s must be HOST:PORT, got %r" % (what, s))
    if not is_loopback(host):
        raise SystemExit("netproxy: %s must be a loopback address, got %r" % (what, host))
    return host, int(port)


# --- mode -------------------------------------------------------------------------


class Control:
    def __init__(self, path, default):
        self.path = path
        self.default = default
        self.warned = set()

    def get(self):
        if not self.path:
            return self.default
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                s = f.read().strip().lower()
        except OSError:
            return self.default
        if not s:
            return self.default
        if s not in MODES:
            if s not in self.warned:
                warn("unknown mode %r in %s: treated as pass" % (s, self.path))
                self.warned.add(s)
            return "pass"
        return s


# --- shaping ----------------------------------------------------------------------


class Link:
    """One direction of the link: bytes are serialised one after the other at
    the link's rate, whatever connection they belong to."""

    def __init__(self, mbit):
        self.bps = mbit * 1e6 / 8 if mbit and mbit > 0 else 0.0
        self.lock = threading.Lock()
        self.t = 0.0
        self.depth = 0.01

    def reserve(self, n):
        """Time at which the last of n bytes has left the link.  A token
        bucket ~10 ms deep: a sender woken late does not lose link time."""
        now = time.monotonic()
        if not self.bps:
            return now
        with self.lock:
            start = max(now - self.depth, self.t)
            self.t = start + n / self.bps
            return self.t

    def quantum(self):
        if not self.bps:
            return RECV
        # about 5 ms of data per read, at least one MTU
        return int(max(1500, min(RECV, self.bps * 0.005)))


def sleep_until(t):
    while True:
        d = t - time.monotonic()
        if d <= 0:
            return
        time.sleep(d)


# --- HTTP body transforms ---------------------------------------------------------


class Flipper:
    """Flips the bytes of a blob body whose blob offset is in a flip range.
    kind "single": the body starts at blob offset `start`; kind "multipart":
    a multipart/byteranges body, each part located by its Content-Range."""

    def __init__(self, ranges, kind, start=0, boundary=None):
        self.ranges = ranges
        self.kind = kind
        self.off = start
        self.boundary = boundary
        self.flipped = 0
        # multipart state
        self.state = "scan"  # scan | data | done
        self.phase = "boundary"  # boundary | headers (within scan)
        self.acc = bytearray()
        self.part = None
        self.left = 0

    def _flip(self, buf, i, n, off):
        for a, b in self.ranges:
            lo = max(a, off)
            hi = min(b, off + n)
            if lo < hi:
                x, y = i + lo - off, i + hi - off
                buf[x:y] = bytes(buf[x:y]).translate(XOR_FF)
                self.flipped += hi - lo

    def feed(self, buf, i, j):
        """Transform buf[i:j] (body bytes, in order) in place."""
        if self.kind == "single":
            self._flip(buf, i, j - i, self.off)
            self.off += j - i
            return
        while i < j:
            if self.state == "data":
                m = min(self.left, j - i)
                self._flip(buf, i, m, self.off)
                self.off += m
                self.left -= m
                i += m
                if self.left == 0:
                    self.state = "scan"
                    self.phase = "boundary"
                continue
            if self.state == "done":
                return
            k = buf.find(b"\n", i, j)
            if k < 0:
                self.acc += buf[i:j]
                if len(self.acc) > 8192:
                    self.state = "done"  # not multipart as we know it
                return
            self.acc += buf[i:k + 1]
            i = k + 1
            line = bytes(self.acc).rstrip(b"\r\n")
            self.acc = bytearray()
            if self.phase == "boundary":
                if line == b"--" + self.boundary:
                    self.phase = "headers"
                    self.part = None
                elif line == b"--" + self.boundary + b"--":
                    self.state = "done"
            elif line == b"":
                if self.part is None:
                    self.state = "done"
                    continue
                self.off, self.left = self.part
                self.state = "data" if self.left > 0 else "scan"
                self.phase = "boundary"
            else:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-range":
                    m = CRANGE_RE.search(value.decode("latin-1"))
                    if m:
                        s, e = int(m.group(1)), int(m.group(2))
                        self.part = (s, e - s + 1)


# --- HTTP framing -----------------------------------------------------------------


def parse_head(head):
    """(first line, [(name lower, value)]) of a header block."""
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0]
    hs = []
    for ln in lines[1:]:
        if not ln:
            continue
        if ln[0] in " \t" and hs:  # obsolete line folding
            hs[-1] = (hs[-1][0], hs[-1][1] + " " + ln.strip())
            continue
        n, _, v = ln.partition(":")
        hs.append((n.strip().lower(), v.strip()))
    return first, hs


def header(hs, name):
    vals = [v for n, v in hs if n == name]
    return ", ".join(vals) if vals else None


class Framer:
    """Splits a byte stream into HTTP messages (head + body) and lets a
    subclass decide, per message, what to do with it.  feed() returns the
    bytes to forward."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = bytearray()
        self.state = "head"
        self.left = 0
        self.body = None  # callable(buf, i, j) or None
        self.raw = False

    def feed(self, data):
        if self.raw:
            return data
        self.buf += data
        out = bytearray()
        while self.buf:
            st = self.state
            if st == "head":
                # tolerate empty lines between messages
                while self.buf[:2] == b"\r\n":
                    out += self.buf[:2]
                    del self.buf[:2]
                k = self.buf.find(b"\r\n\r\n")
                if k < 0:
                    if len(self.buf) > HEAD_MAX:
                        warn("header block too long: tunnelling raw")
                        self.raw = True
                        out += self.buf
                        self.buf = bytearray()
                    break
                head = bytes(self.buf[:k + 4])
                del self.buf[:k + 4]
                verdict = self.on_head(head)
                if verdict == "drop":
                    self.buf = bytearray()
                    return out
                out += head
                if self.raw:
                    out += self.buf
                    self.buf = bytearray()
                    break
                if self.state == "head":  # no body
                    self.on_end()
            elif st in ("cl", "chunk-data"):
                n = min(self.left, len(self.buf))
                piece = self.buf[:n]
                del self.buf[:n]
                self.body_bytes(piece, 0, n)
                out += piece
                self.left -= n
                if self.left == 0:
                    if st == "cl":
                        self.state = "head"
                        self.on_end()
                    else:
                        self.state = "chunk-crlf"
                        self.left = 2
            elif st == "eof":
                piece = self.buf
                self.buf = bytearray()
                self.body_bytes(piece, 0, len(piece))
                out += piece
            elif st == "chunk-crlf":
                n = min(self.left, len(self.buf))
                out += self.buf[:n]
                del self.buf[:n]
                self.left -= n
                if self.left == 0:
                    self.state = "chunk-size"
            elif st in ("chunk-size", "trailer"):
                k = self.buf.find(b"\n")
                if k < 0:
                    if len(self.buf) > HEAD_MAX:
                        self.raw = True
                        out += self.buf
                        self.buf = bytearray()
                    break
                line = bytes(self.buf[:k + 1])
                del self.buf[:k + 1]
                out += line
                text = line.strip()
                if st == "trailer":
                    if not text:
                        self.state = "head"
                        self.on_end()
                    continue
                try:
                    size = int(text.split(b";")[0], 16)
                except ValueError:
                    warn("bad chunk size line %r: tunnelling raw" % text[:40])
                    self.raw = True
                    out += self.buf
                    self.buf = bytearray()
                    break
                if size == 0:
                    self.state = "trailer"
                else:
                    self.state = "chunk-data"
                    self.left = size
        return out

    def start_body(self, hs, length_known_default=0, eof_ok=False):
        """Set the framing state from the headers."""
        te = (header(hs, "transfer-encoding") or "").lower()
        cl = header(hs, "content-length")
        if "chunked" in te:
            self.state = "chunk-size"
        elif cl is not None:
            try:
                n = int(cl.split(",")[0].strip())
            except ValueError:
                n = 0
            if n > 0:
                self.state = "cl"
                self.left = n
            else:
                self.state = "head"
        elif eof_ok:
            self.state = "eof"
        else:
            self.state = "head"

    def body_bytes(self, buf, i, j):
        pass

    def on_head(self, head):
        return None

    def on_end(self):
        pass


class RequestFramer(Framer):
    def on_head(self, head):
        first, hs = parse_head(head)
        parts = first.split(" ")
        method = parts[0] if parts else "?"
        target = parts[1] if len(parts) > 1 else ""
        path = target.split("?", 1)[0]
        rng = header(hs, "range")
        mode = A.control.get()
        c = self.conn
        if mode == "refuse":
            log({"conn": c.id, "method": method, "path": path, "range": rng, "status": None,
                 "bytes": 0, "mode": mode, "flipped": 0, "complete": False})
            c.kill("refuse")
            return "drop"
        if mode == "blackhole" or (mode == "blackhole-range" and rng):
            log({"conn": c.id, "method": method, "path": path, "range": rng, "status": None,
                 "bytes": 0, "mode": mode, "flipped": 0, "complete": False})
            c.freeze()
            return "drop"
        c.push_request({"method": method, "path": path, "range": rng, "mode": mode,
                        "t0": time.monotonic()})
        self.start_body(hs)
        if (header(hs, "upgrade") or "") and "upgrade" in (header(hs, "connection") or "").lower():
            self.raw = True
        return None


class ResponseFramer(Framer):
    def __init__(self, conn):
        super().__init__(conn)
        self.req = None
        self.status = None
        self.nbytes = 0
        self.flipper = None

    def on_head(self, head):
        first, hs = parse_head(head)
        parts = first.split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            warn("bad status line %r: tunnelling raw" % first[:60])
            self.raw = True
            return None
        if 100 <= status < 200:
            if status == 101:
                self.raw = True
            self.state = "head"
            return "interim"
        self.req = self.conn.pop_request() or {"method": "?", "path": "?", "range": None,
                                                "mode": "pass", "t0": time.monotonic()}
        self.status = status
        self.nbytes = 0
        self.flipper = None
        req = self.req
        if req["method"] == "HEAD" or status in (204, 304):
            self.state = "head"
            return None
        self.start_body(hs, eof_ok=True)
        if (req["mode"] == "flip" and A.flip and req["method"] == "GET"
                and BLOB_RE.match(req["path"]) and status in (200, 206)):
            ctype = header(hs, "content-type") or ""
            if status == 200:
                self.flipper = Flipper(A.flip, "single", 0)
            elif ctype.lower().startswith("multipart/byteranges"):
                m = re.search(r'boundary="?([^";]+)"?', ctype, re.I)
                if m:
                    self.flipper = Flipper(A.flip, "multipart",
                                           boundary=m.group(1).encode("latin-1"))
            else:
                m = CRANGE_RE.search(header(hs, "content-range") or "")
                if m:
                    self.flipper = Flipper(A.flip, "single", int(m.group(1)))
        return None

    def body_bytes(self, buf, i, j):
        self.nbytes += j - i
        if self.flipper:
            self.flipper.feed(buf, i, j)

    def on_end(self, complete=True):
        if self.req is None:
            return
        r = self.req
        log({"conn": self.conn.id, "method": r["method"], "path": r["path"], "range": r["range"],
             "status": self.status, "bytes": self.nbytes, "mode": r["mode"],
             "flipped": self.flipper.flipped if self.flipper else 0, "complete": complete,
             "ms": round((time.monotonic() - r["t0"]) * 1000, 1)})
        self.req = None

    def close(self):
        # a response cut by the connection's end (or one read up to EOF)
        if self.req is not None:
            self.on_end(complete=self.state == "eof")
        while True:
            r = self.conn.pop_request()
            if r is None:
                break
            log({"conn": self.conn.id, "method": r["method"], "path": r["path"],
                 "range": r["range"], "status": None, "bytes": 0, "mode": r["mode"],
                 "flipped": 0, "complete": False})


# --- connections ------------------------------------------------------------------


class Pipe:
    """One direction of a connection: a reader (parse, pace) and a writer
    (release each piece at its time)."""

    def __init__(self, conn, src, dst, link, delay, framer, name):
        self.conn, self.src, self.dst = conn, src, dst
        self.link, self.delay, self.framer, self.name = link, delay, framer, name
        self.q = collections.deque()
        self.qbytes = 0
        self.cv = threading.Condition()
        self.limit = max(4 << 20, int(link.bps * delay * 4))
        self.done = threading.Event()

    def put(self, item):
        with self.cv:
            while (item is not None and self.qbytes > self.limit and not self.conn.dead):
                self.cv.wait(0.1)
            self.q.append(item)
            if item is not None:
                self.qbytes += len(item[1])
            self.cv.notify_all()

    def reader(self):
        c = self.conn
        try:
            while not c.dead:
                data = self.src.recv(self.link.quantum())
                if not data:
                    break
                if c.frozen:
                    continue
                out = self.framer.feed(bytearray(data))
                if c.dead:
                    break
                if not out or c.frozen:
                    continue
                fin = self.link.reserve(len(out))
                sleep_until(fin)
                # fin may lie in the past (bucket credit): never shorten the delay
                self.put((max(fin, time.monotonic()) + self.delay, bytes(out)))
        except OSError:
            pass
        finally:
            if c.frozen and self.name == "up":
                # the client went away from a black hole: forget it all
                c.kill("client closed")
            self.put(None)

    def writer(self):
        c = self.conn
        try:
            while True:
                with self.cv:
                    while not self.q:
                        self.cv.wait()
                    item = self.q.popleft()
                    if item is not None:
                        self.qbytes -= len(item[1])
                    self.cv.notify_all()
                if item is None:
                    if not c.dead and not c.frozen:
                        try:
                            self.dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                    break
                at, data = item
                sleep_until(at)
                if c.dead:
                    break
                if c.frozen:
                    continue
                try:
                    self.dst.sendall(data)
                except OSError:
                    c.kill("send failed")
                    break
        finally:
            self.done.set()
            c.pipe_done()


class Conn:
    next_id = 0
    id_lock = threading.Lock()

    def __init__(self, server, csock):
        with Conn.id_lock:
            Conn.next_id += 1
            self.id = Conn.next_id
        self.server = server
        self.csock = csock
        self.usock = None
        self.dead = False
        self.frozen = False
        self.lock = threading.Lock()
        self.reqs = collections.deque()
        self.pipes_left = 2
        self.resp = None

    def start(self):
        try:
            self.usock = socket.create_connection(A.upstream_addr, timeout=10)
            self.usock.settimeout(None)
        except OSError as e:
            log({"conn": self.id, "event": "upstream connect failed", "error": str(e)})
            reset_close(self.csock)
            return
        for s in (self.csock, self.usock):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.resp = ResponseFramer(self)
        up = Pipe(self, self.csock, self.usock, self.server.up_link, A.delay,
                  RequestFramer(self), "up")
        down = Pipe(self, self.usock, self.csock, self.server.down_link, A.delay,
                    self.resp, "down")
        self.server.add(self)
        if A.control.get() == "blackhole":
            self.frozen = True
        for p in (up, down):
            for fn in (p.reader, p.writer):
                threading.Thread(target=fn, daemon=True).start()

    def push_request(self, r):
        with self.lock:
            self.reqs.append(r)

    def pop_request(self):
        with self.lock:
            return self.reqs.popleft() if self.reqs else None

    def freeze(self):
        self.frozen = True

    def kill(self, why=""):
        with self.lock:
            if self.dead:
                return
            self.dead = True
        reset_close(self.csock)
        if self.usock is not None:
            try:
                self.usock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self.usock.close()
            except OSError:
                pass
        self.server.remove(self)

    def pipe_done(self):
        with self.lock:
            self.pipes_left -= 1
            last = self.pipes_left == 0
        if last:
            if self.resp is not None:
                self.resp.close()
            for s in (self.csock, self.usock):
                try:
                    s.close()
                except OSError:
                    pass
            self.server.remove(self)


def reset_close(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


class Server:
    def __init__(self):
        self.up_link = Link(A.rate_mbit)
        self.down_link = Link(A.rate_mbit)
        self.conns = set()
        self.lock = threading.Lock()

    def add(self, c):
        with self.lock:
            self.conns.add(c)

    def remove(self, c):
        with self.lock:
            self.conns.discard(c)

    def watch(self):
        while True:
            time.sleep(0.05)
            mode = A.control.get()
            if mode not in ("refuse", "blackhole"):
                continue
            with self.lock:
                conns = list(self.conns)
            for c in conns:
                if mode == "refuse":
                    c.kill("refuse")
                else:
                    c.freeze()

    def serve(self):
        fam = socket.AF_INET6 if ":" in A.listen_addr[0] else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(A.listen_addr)
        ls.listen(256)
        port = ls.getsockname()[1]
        if A.port_file:
            tmp = A.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d\n" % port)
            os.rename(tmp, A.port_file)
        print("listening %s:%d" % (A.listen_addr[0], port), flush=True)
        threading.Thread(target=self.watch, daemon=True).start()
        while True:
            cs, _ = ls.accept()
            if A.control.get() == "refuse":
                log({"event": "refused"})
                reset_close(cs)
                continue
            Conn(self, cs).start()


def main():
    global A
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file")
    ap.add_argument("--rate-mbit", type=float, default=0.0)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--flip-range", action="append", default=[], metavar="START:END")
    ap.add_argument("--control-file")
    ap.add_argument("--log")
    A = ap.parse_args()
    A.listen_addr = hostport(A.listen, "--listen")
    A.upstream_addr = hostport(A.upstream.replace("http://", "").rstrip("/"), "--upstream")
    A.delay = A.delay_ms / 2000.0
    A.flip = []
    for r in A.flip_range:
        try:
            s, e = (int(x, 0) for x in r.split(":"))
        except ValueError:
            ap.error("--flip-range wants START:END, got %r" % r)
        if not 0 <= s < e:
            ap.error("--flip-range %r: want 0 <= START < END" % r)
        A.flip.append((s, e))
    A.control = Control(A.control_file, "flip" if A.flip else "pass")

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        Server().serve()
    except SystemExit:
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
