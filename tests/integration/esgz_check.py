#!/usr/bin/env python3
"""Cross-check what the CLI says about a blob against the source tar.

    esgz_check.py toc  --tar SRC.tar TOC.json [--blob-size N] [--chunk-size N]
                       [--landmark no|prefetch|any] [--prioritized FILE]
    esgz_check.py ls   --tar SRC.tar LS_OUTPUT          (stargz ls)
    esgz_check.py lsjson --tar SRC.tar LS_JSON          (stargz ls --json)
    esgz_check.py names --tar SRC.tar                   (print normalised names)
    esgz_check.py zstdtoc BLOB
                       independent zstd:chunked reader: check the 48-byte
                       footer frame (skippable magic, 40-byte payload: TOC
                       offset, compressed and raw size, type 1, "GnUlInUx"),
                       print the TOC JSON; exit 3 on a format error
    esgz_check.py verify [--toc-digest D] [--print-toc] BLOB
                       an independent eStargz (gzip) verifier: footer, TOC,
                       every chunkDigest and digest; exit 0 ok, 1 digest
                       mismatch, 3 format error

SRC.tar may be plain or gzip (Python's tarfile reads it; sparse members are
seen at their real size).  Prints one line per problem and exits 1 if any.
"""

import argparse
import base64
import calendar
import hashlib
import json
import posixpath
import re
import sys
import tarfile
import time
import zlib

LANDMARKS = {".prefetch.landmark", ".no.prefetch.landmark"}
TYPES = {tarfile.REGTYPE: "reg", tarfile.AREGTYPE: "reg", tarfile.CONTTYPE: "reg",
         tarfile.GNUTYPE_SPARSE: "reg", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
         tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block",
         tarfile.FIFOTYPE: "fifo"}


def norm(name):
    n = posixpath.normpath("/" + name).lstrip("/")
    return n if n else "."


def read_tar(path):
    members = {}
    order = []
    with tarfile.open(path, "r:*", encoding="utf-8", errors="surrogateescape") as t:
        for m in t:
            n = norm(m.name)
            if n == ".":
                continue
            members[n] = m
            order.append(n)
    return members, order


def parse_time(s):
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", s)
    if not m:
        raise ValueError("bad RFC 3339 time %r" % s)
    y, mo, d, h, mi, sec = (int(x) for x in m.groups()[:6])
    t = calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0))
    z = m.group(8)
    if z != "Z":
        off = (int(z[1:3]) * 60 + int(z[4:6])) * 60
        t -= off if z[0] == "+" else -off
    return t


class Problems:
    def __init__(self):
        self.n = 0

    def __call__(self, msg):
        self.n += 1
        if self.n <= 60:
            print(msg if len(msg) <= 300 else msg[:300] + "...")
        elif self.n == 61:
            print("... more problems not shown")


def check_toc(a):
    bad = Problems()
    members, order = read_tar(a.tar)
    with open(a.toc, "rb") as f:
        raw = f.read()
    try:
        toc = json.loads(raw)
    except ValueError as e:
        print("TOC is not JSON: %s" % e)
        return 1
    if not isinstance(toc, dict) or not isinstance(toc.get("entries"), list):
        print("TOC is not an object with an entries array")
        return 1
    if toc.get("version") != 1:
        bad("TOC version is %r, want 1" % toc.get("version"))

    seen = {}
    names_in_order = []
    last = None  # [name, next expected chunkOffset, size]
    for i, e in enumerate(toc["entries"]):
        if not isinstance(e, dict) or "name" not in e or "type" not in e:
            bad("entry %d malformed: %r" % (i, e))
            continue
        n = norm(e["name"])
        typ = e["type"]
        off = e.get("offset")
        if off is not None and a.blob_size is not None and not (0 <= off < a.blob_size):
            bad("%s: offset %r outside blob of %d bytes" % (n, off, a.blob_size))
        if typ == "chunk":
            if last is None or last[0] != n:
                bad("%s: chunk entry not after its reg entry" % n)
                continue
            co = e.get("chunkOffset", 0)
            if co != last[1]:
                bad("%s: chunkOffset %d, want %d" % (n, co, last[1]))
            cs = e.get("chunkSize", last[2] - co)
            if a.chunk_size and co + cs < last[2] and cs != a.chunk_size:
                bad("%s: chunk at %d has size %d, want %d" % (n, co, cs, a.chunk_size))
            if not str(e.get("chunkDigest", "")).startswith("sha256:"):
                bad("%s: chunk at %d lacks chunkDigest" % (n, co))
            last[1] = co + cs
            continue
        if last is not None and last[1] != last[2]:
            bad("%s: chunks cover %d of %d bytes" % (last[0], last[1], last[2]))
        last = None
        if n in seen:
            bad("%s: listed twice in TOC" % n)
        seen[n] = e
        names_in_order.append(n)
        if n in LANDMARKS:
            continue
        m = members.get(n)
        if m is None:
            bad("%s: in TOC but not in source tar" % n)
            continue
        want = TYPES.get(m.type, "?")
        if typ != want:
            bad("%s: type %s, want %s" % (n, typ, want))
            continue
        if typ == "reg":
            size = e.get("size", 0)
            if size != m.size:
                bad("%s: size %r, want %d" % (n, size, m.size))
            if m.size > 0:
                if not str(e.get("digest", "")).startswith("sha256:"):
                    bad("%s: no digest" % n)
                if off is None:
                    bad("%s: no offset" % n)
                cs = e.get("chunkSize", size)
                if a.chunk_size and cs < size and cs != a.chunk_size:
                    bad("%s: first chunk size %d, want %d" % (n, cs, a.chunk_size))
                if a.chunk_size and cs >= size and size > a.chunk_size:
                    bad("%s: %d bytes in one chunk, chunk size %d" % (n, size, a.chunk_size))
                last = [n, cs, size]
        if typ in ("symlink", "hardlink"):
            want_link = m.linkname if typ == "symlink" else norm(m.linkname)
            got_link = e.get("linkName", "")
            if typ == "hardlink":
                got_link = norm(got_link)
            if got_link != want_link:
                bad("%s: linkName %r, want %r" % (n, got_link, want_link))
        if (e.get("mode", 0) & 0o7777) != (m.mode & 0o7777):
            bad("%s: mode %o, want %o" % (n, e.get("mode", 0), m.mode))
        if e.get("uid", 0) != m.uid or e.get("gid", 0) != m.gid:
            bad("%s: owner %r:%r, want %d:%d" % (n, e.get("uid", 0), e.get("gid", 0), m.uid, m.gid))
        if typ in ("char", "block"):
            if (e.get("devMajor", 0), e.get("devMinor", 0)) != (m.devmajor, m.devminor):
                bad("%s: dev %r,%r, want %d,%d" % (n, e.get("devMajor", 0), e.get("devMinor", 0),
                                                   m.devmajor, m.devminor))
        if "modtime" in e:
            try:
                t = parse_time(e["modtime"])
                if t != int(m.mtime):
                    bad("%s: modtime %s, want %s" % (n, e["modtime"],
                                                     time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime(m.mtime))))
            except ValueError as ex:
                bad("%s: %s" % (n, ex))
        elif int(m.mtime) != 0:
            bad("%s: no modtime" % n)
        want_x = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
                  for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
        got_x = {}
        for k, v in (e.get("xattrs") or {}).items():
            try:
                got_x[k] = base64.b64decode(v, validate=True)
            except ValueError:
                bad("%s: xattr %s not base64" % (n, k))
        if got_x != want_x:
            bad("%s: xattrs %r, want %r" % (n, got_x, want_x))
    if last is not None and last[1] != last[2]:
        bad("%s: chunks cover %d of %d bytes" % (last[0], last[1], last[2]))

    for n in order:
        if n not in seen:
            bad("%s: in source tar but not in TOC" % n)

    if a.landmark != "any":
        lm = ".no.prefetch.landmark" if a.landmark == "no" else ".prefetch.landmark"
        if lm not in seen:
            bad("no %s entry" % lm)
    if a.prioritized:
        with open(a.prioritized, encoding="utf-8") as f:
            prio = [norm(x) for x in f.read().splitlines() if x.strip()]
        if ".prefetch.landmark" in names_in_order:
            li = names_in_order.index(".prefetch.landmark")
            for p in prio:
                if p in names_in_order and names_in_order.index(p) > li:
                    bad("prioritized %s after .prefetch.landmark" % p)
            # A prioritised hardlink may pull its target forward too.
            targets = {norm(members[p].linkname) for p in prio
                       if p in members and members[p].islnk()}
            for n in names_in_order[:li]:
                m = members.get(n)
                if (m is not None and m.isfile() and m.size > 0 and n not in prio
                        and n not in targets):
                    bad("%s: not prioritized but before .prefetch.landmark" % n)
        pos = [names_in_order.index(p) for p in prio if p in names_in_order]
        if pos != sorted(pos):
            bad("prioritized files not in the given order: %r" % prio)
    return 1 if bad.n else 0


def escapes(name):
    """Ways a lister might print a name."""
    out = {name}
    c = name.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    out.add(c)
    b = c.encode("utf-8", "surrogateescape")
    out.add("".join(chr(x) if x < 0x80 else "\\%03o" % x for x in b))
    out.add(json.dumps(name)[1:-1])
    return out


def check_ls(a):
    bad = Problems()
    members, order = read_tar(a.tar)
    with open(a.listing, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    lines = text.splitlines()
    if len(lines) < len(order):
        bad("listing has %d lines, source tar has %d entries" % (len(lines), len(order)))
    for n in order:
        if not any(v in text for v in escapes(n)):
            bad("%s: not in listing" % n)
    return 1 if bad.n else 0


def check_lsjson(a):
    bad = Problems()
    members, order = read_tar(a.tar)
    with open(a.listing, encoding="utf-8") as f:
        text = f.read()
    dec = json.JSONDecoder()
    docs, i = [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        try:
            obj, i = dec.raw_decode(text, i)
        except ValueError as e:
            print("ls --json output is not JSON: %s" % e)
            return 1
        docs.append(obj)
    names = set()

    def walk(o):
        if isinstance(o, dict):
            if isinstance(o.get("name"), str):
                names.add(norm(o["name"]))
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(docs)
    for n in order:
        if n not in names:
            bad("%s: not in ls --json output" % n)
    return 1 if bad.n else 0


def read_member(blob, off, want=None):
    """Decompress the gzip member starting at off (at most want bytes)."""
    if blob[off:off + 2] != b"\x1f\x8b":
        raise ValueError("no gzip member at offset %d" % off)
    d = zlib.decompressobj(31)
    out = bytearray()
    pos = off
    while pos < len(blob):
        out += d.decompress(blob[pos:pos + 65536])
        pos += 65536
        if d.eof or (want is not None and len(out) >= want):
            break
    if want is None and not d.eof:
        raise ValueError("gzip member at %d is truncated" % off)
    return bytes(out if want is None else out[:want])


def toc_offset(blob):
    if len(blob) >= 51:
        f = blob[-51:]
        if (f[:4] == b"\x1f\x8b\x08\x04" and f[10:16] == b"\x1a\x00SG\x16\x00"
                and f[32:38] == b"STARGZ"):
            return int(f[16:32], 16), 51
    if len(blob) >= 47:
        f = blob[-47:]
        if f[:4] == b"\x1f\x8b\x08\x04" and f[10:12] == b"\x16\x00" and f[28:34] == b"STARGZ":
            return int(f[12:28], 16), 47
    raise ValueError("no eStargz or stargz footer")


def verify(a):
    with open(a.blob, "rb") as f:
        blob = f.read()
    try:
        off, flen = toc_offset(blob)
        if off >= len(blob) - flen:
            raise ValueError("footer points at %d, beyond the data" % off)
        m = read_member(blob, off)
        hdr = m[:512]
        name = hdr[:100].rstrip(b"\0")
        if hdr[156:157] == b"x":  # a PAX header first
            n = int(hdr[124:136].rstrip(b"\0 ") or b"0", 8)
            m = m[512 + (n + 511) // 512 * 512:]
            hdr = m[:512]
            name = b"stargz.index.json"
        if name != b"stargz.index.json":
            raise ValueError("last member is %r, not the TOC" % name)
        size = int(hdr[124:136].rstrip(b"\0 ") or b"0", 8)
        tocj = m[512:512 + size]
        if len(tocj) != size:
            raise ValueError("TOC truncated")
        toc = json.loads(tocj)
        if not isinstance(toc, dict) or not isinstance(toc.get("entries"), list):
            raise ValueError("TOC is not an object with entries")
    except (ValueError, zlib.error, UnicodeDecodeError) as e:
        print("%s: %s" % (a.blob, e), file=sys.stderr)
        return 3
    if a.print_toc:
        sys.stdout.buffer.write(tocj)
    if a.toc_digest and a.toc_digest != "sha256:" + hashlib.sha256(tocj).hexdigest():
        print("%s: TOC digest mismatch" % a.blob, file=sys.stderr)
        return 1
    rc = 0
    whole = {}
    ents = toc["entries"]
    for i, e in enumerate(ents):
        if e.get("type") not in ("reg", "chunk") or not e.get("size", 1):
            continue
        name = e.get("name")
        if e["type"] == "reg":
            size = e.get("size", 0)
            if size == 0:
                continue
            whole[name] = [hashlib.sha256(), e.get("digest"), size, 0]
        st = whole.get(name)
        if st is None:
            print("%s: chunk of %s without reg" % (a.blob, name), file=sys.stderr)
            return 3
        co = e.get("chunkOffset", 0)
        cs = e.get("chunkSize", st[2] - co)
        try:
            data = read_member(blob, e["offset"], e.get("innerOffset", 0) + cs)
            data = data[e.get("innerOffset", 0):]
        except (KeyError, ValueError, zlib.error) as ex:
            print("%s: %s: %s" % (a.blob, name, ex), file=sys.stderr)
            return 3
        if len(data) != cs:
            print("%s: %s: chunk at %d short" % (a.blob, name, co), file=sys.stderr)
            return 3
        if e.get("chunkDigest") and e["chunkDigest"] != "sha256:" + hashlib.sha256(data).hexdigest():
            print("%s: %s: chunk at %d: chunkDigest mismatch" % (a.blob, name, co), file=sys.stderr)
            rc = 1
        st[0].update(data)
        st[3] += cs
        nxt = ents[i + 1] if i + 1 < len(ents) else None
        if not (nxt and nxt.get("type") == "chunk" and nxt.get("name") == name):
            if st[1] and st[1] != "sha256:" + st[0].hexdigest():
                print("%s: %s: digest mismatch" % (a.blob, name), file=sys.stderr)
                rc = 1
            if st[3] != st[2]:
                print("%s: %s: chunks cover %d of %d bytes" % (a.blob, name, st[3], st[2]),
                      file=sys.stderr)
                rc = rc or 3
    return rc


def zstd_toc(a):
    import struct
    import subprocess
    with open(a.blob, "rb") as f:
        blob = f.read()
    try:
        if len(blob) < 48:
            raise ValueError("too small for a zstd:chunked footer")
        f = blob[-48:]
        if f[:4] != b"\x50\x2a\x4d\x18" or struct.unpack("<I", f[4:8])[0] != 40:
            raise ValueError("last 48 bytes are not a 40-byte skippable frame: %s" % f[:8].hex())
        off, clen, rlen, typ = struct.unpack("<QQQQ", f[8:40])
        if f[40:48] != b"GnUlInUx":
            raise ValueError("footer magic %r, want b'GnUlInUx'" % f[40:48])
        if typ != 1:
            raise ValueError("manifest type %d, want 1" % typ)
        if off < 8 or off + clen > len(blob) - 48:
            raise ValueError("TOC at %d+%d outside the blob" % (off, clen))
        h = blob[off - 8:off]
        if h[:4] != b"\x50\x2a\x4d\x18" or struct.unpack("<I", h[4:8])[0] != clen:
            raise ValueError("no skippable frame of %d bytes before the TOC" % clen)
        r = subprocess.run(["zstd", "-q", "-dc"], input=blob[off:off + clen], capture_output=True)
        if r.returncode != 0:
            raise ValueError("TOC frame does not decompress: %s" % r.stderr.decode().strip())
        if len(r.stdout) != rlen:
            raise ValueError("TOC is %d bytes, footer says %d" % (len(r.stdout), rlen))
        json.loads(r.stdout)
    except ValueError as e:
        print("%s: %s" % (a.blob, e), file=sys.stderr)
        return 3
    sys.stdout.buffer.write(r.stdout)
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("toc")
    p.add_argument("--tar", required=True)
    p.add_argument("--blob-size", type=int)
    p.add_argument("--chunk-size", type=int)
    p.add_argument("--landmark", default="any", choices=["no", "prefetch", "any"])
    p.add_argument("--prioritized")
    p.add_argument("toc")
    for c in ("ls", "lsjson"):
        p = sub.add_parser(c)
        p.add_argument("--tar", required=True)
        p.add_argument("listing")
    p = sub.add_parser("verify")
    p.add_argument("--toc-digest")
    p.add_argument("--print-toc", action="store_true")
    p.add_argument("blob")
    p = sub.add_parser("zstdtoc")
    p.add_argument("blob")
    p = sub.add_parser("names")
    p.add_argument("--tar", required=True)
    a = ap.parse_args()
    if a.cmd == "toc":
        sys.exit(check_toc(a))
    if a.cmd == "ls":
        sys.exit(check_ls(a))
    if a.cmd == "lsjson":
        sys.exit(check_lsjson(a))
    if a.cmd == "verify":
        sys.exit(verify(a))
    if a.cmd == "zstdtoc":
        sys.exit(zstd_toc(a))
    for n in read_tar(a.tar)[1]:
        print(n)


if __name__ == "__main__":
    main()
