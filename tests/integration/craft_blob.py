#!/usr/bin/env python3
"""Write an eStargz blob from a spec, optionally corrupted on purpose.

    craft_blob.py SPEC.json OUT        (SPEC may be '-' for stdin)
    craft_blob.py --from-tar TAR OUT [--chunk-size N] [--level N]
                  [--landmark [--prioritized FILE]]
    craft_blob.py --tar-only SPEC OUT   (just the uncompressed tar stream)

Python standard library only, independent of the code under test, so that it
can act both as a second producer (interop) and as a generator of hostile
input.  Prints a JSON summary on stdout: tocOffset, tocDigest (sha256 of the
uncompressed TOC JSON), diffID (sha256 of the whole uncompressed tar stream),
digest (sha256 of the blob), size, and "members": the offset of every gzip
member.

Layout written (the eStargz format):
  * a sequence of gzip members; a new member starts at offset 0, at the
    payload of every non-empty regular file and at every further chunk of a
    large file; tar headers and the previous file's padding ride in the member
    before;
  * the TOC, a tar entry "stargz.index.json" holding {"version":1,
    "entries":[...]}, in its own member together with the tar end blocks;
  * a 51-byte footer: an empty gzip member whose FEXTRA field carries the
    subfield 'S','G' (22 bytes) = "%016x" % tocOffset + "STARGZ" (or the
    47-byte legacy stargz footer with the same text as a raw extra field).

Spec (JSON object):
  chunk_size     default 4194304
  level          gzip level, default 6
  entries        list of objects:
     name        tar name (also the TOC name unless toc_name is given)
     type        dir reg symlink hardlink char block fifo   (default reg)
     data        payload as text | data_b64 | data_hex |
                 random: [size, seed] | repeat: [text, count] | file: path
     mode uid gid uname gname mtime linkname devmajor devminor
     xattrs      {name: text | {"b64": ...} | {"hex": ...}}
     chunk_size  per-entry chunk size
     tar_name / toc_name   different names in the tar stream / the TOC
     in_tar / in_toc       false leaves the entry out of that place
     tamper      payload written to the blob instead of "data" (TOC digests
                 still describe "data"); same forms as data, or "flip" to flip
                 the first byte of each chunk
     flip_compressed  true: flip a byte in the middle of each compressed
                 member holding this file's payload (after gzip)
     toc         {field: value} merged into the entry's first TOC record
                 (null deletes the field)
     toc_chunks  {"INDEX": {field: value}} merged into chunk record INDEX
     header_size size written in the tar header instead of the real one
     raw         {mode|uid|gid|size|mtime|devmajor|devminor: text} written
                 verbatim into that ustar field
     pax         {keyword: value} extra PAX records
     bad_checksum true: a wrong header checksum
  toc_extra      list of raw TOC entry objects appended to the entries
  toc_many       {"count": N, "prefix": "many/", "type": "reg"} appends N
                 synthetic records (compact JSON, for size/limit tests)
  toc_text       raw text written as the TOC instead of the generated JSON
  toc_text_file  the same, read from a file
  toc_version    default 1
  toc_name       tar name of the TOC entry, default "stargz.index.json"
  footer         "estargz" (default) | "legacy" | "none"
  footer_offset  TOC offset written in the footer instead of the real one
  footer_raw_hex replaces the whole footer with these bytes
  no_end_blocks  true: omit the two zero blocks after the TOC
  truncate       keep only this many bytes (negative: drop that many)
  append_hex     bytes appended after the footer
"""

import base64
import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile
import zlib

TOC_NAME = "stargz.index.json"
DEFAULT_CHUNK = 4 << 20
TYPES = {
    "reg": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def rfc3339(t):
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


def payload(spec, key="data"):
    if key in spec and spec[key] is not None:
        v = spec[key]
        return v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)
    if key + "_b64" in spec:
        return base64.b64decode(spec[key + "_b64"])
    if key + "_hex" in spec:
        return bytes.fromhex(spec[key + "_hex"])
    if key == "data":
        if "random" in spec:
            size, seed = spec["random"]
            return random.Random(seed).randbytes(size)
        if "repeat" in spec:
            text, count = spec["repeat"]
            return text.encode() * count
        if "file" in spec:
            with open(spec["file"], "rb") as f:
                return f.read()
    return b""


def xattr_value(v):
    if isinstance(v, dict):
        if "b64" in v:
            return base64.b64decode(v["b64"])
        return bytes.fromhex(v["hex"])
    if isinstance(v, bytes):
        return v
    return v.encode("utf-8", "surrogateescape")


def gzip_member(data, level):
    return gzip.compress(data, compresslevel=level, mtime=0)


def footer_bytes(toc_off, kind):
    text = b"%016xSTARGZ" % toc_off
    # Empty deflate stream (a final stored block of length 0) + crc32 + isize.
    tail = b"\x01\x00\x00\xff\xff" + b"\x00" * 8
    hdr = b"\x1f\x8b\x08\x04" + b"\x00\x00\x00\x00" + b"\x00\xff"
    if kind == "legacy":
        return hdr + len(text).to_bytes(2, "little") + text + tail
    sub = b"SG" + len(text).to_bytes(2, "little") + text
    return hdr + len(sub).to_bytes(2, "little") + sub + tail


def octal_field(n, width):
    """A numeric tar field: octal when it fits, else GNU base-256."""
    if isinstance(n, (bytes, str)):  # raw field contents, for hostile headers
        b = n.encode() if isinstance(n, str) else n
        return b[:width].ljust(width, b"\0")
    if 0 <= n < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, n)
    if n < 0:  # base-256 two's complement over the whole field
        return (n % (1 << (8 * width))).to_bytes(width, "big")
    return bytes([0x80]) + n.to_bytes(width - 1, "big")


def ustar_block(name, typeflag, size=0, mode=0o644, uid=0, gid=0, mtime=0,
                linkname=b"", uname=b"", gname=b"", devmajor=0, devminor=0, prefix=b"",
                bad_checksum=False):
    h = bytearray(512)
    h[0:100] = name[:100].ljust(100, b"\0")
    h[100:108] = octal_field(mode, 8)
    h[108:116] = octal_field(uid, 8)
    h[116:124] = octal_field(gid, 8)
    h[124:136] = octal_field(size, 12)
    h[136:148] = octal_field(mtime, 12)
    h[148:156] = b" " * 8
    h[156:157] = typeflag
    h[157:257] = linkname[:100].ljust(100, b"\0")
    h[257:265] = b"ustar\x0000"
    h[265:297] = uname[:32].ljust(32, b"\0")
    h[297:329] = gname[:32].ljust(32, b"\0")
    h[329:337] = octal_field(devmajor, 8)
    h[337:345] = octal_field(devminor, 8)
    h[345:500] = prefix[:155].ljust(155, b"\0")
    h[148:156] = b"%06o\0 " % ((sum(h) + (1 if bad_checksum else 0)) & 0o777777)
    return bytes(h)


def pax_records(recs):
    out = b""
    for k, v in recs:
        body = b" " + k + b"=" + v + b"\n"
        n = len(body) + 1
        while len(str(n).encode()) + len(body) != n:
            n = len(str(n).encode()) + len(body)
        out += str(n).encode() + body
    return out


def pad512(b):
    return b + b"\0" * (-len(b) % 512)


def enc(s):
    return s.encode("utf-8", "surrogateescape") if isinstance(s, str) else bytes(s)


def tar_header(e, name, size):
    """Header block(s) for one entry: a PAX 'x' header when needed, then ustar.

    e["header_size"] overrides the size field (e.g. an absurd size); e["raw"]
    gives {field: raw bytes text} to put verbatim in numeric fields."""
    nameb, linkb = enc(name), enc(e.get("linkname", ""))
    typ = e.get("type", "reg")
    if typ == "dir" and not nameb.endswith(b"/"):
        nameb += b"/"
    hsize = e.get("header_size", size)
    uid, gid = e.get("uid", 0), e.get("gid", 0)
    recs = []
    if len(nameb) > 100 or not nameb.isascii():
        recs.append((b"path", nameb))
    if len(linkb) > 100 or not linkb.isascii():
        recs.append((b"linkpath", linkb))
    if isinstance(hsize, int) and hsize >= 8 ** 11 and not e.get("no_pax_size"):
        recs.append((b"size", b"%d" % hsize))
    if uid >= 8 ** 7:
        recs.append((b"uid", b"%d" % uid))
    if gid >= 8 ** 7:
        recs.append((b"gid", b"%d" % gid))
    for k, v in (e.get("xattrs") or {}).items():
        recs.append((b"SCHILY.xattr." + enc(k), xattr_value(v)))
    for k, v in (e.get("pax") or {}).items():
        recs.append((enc(k), enc(v)))
    out = b""
    if recs:
        data = pax_records(recs)
        out += ustar_block(b"PaxHeaders/" + nameb.rstrip(b"/").split(b"/")[-1][:80], b"x",
                           size=len(data))
        out += pad512(data)
    f = dict(mode=e.get("mode", 0o755 if typ == "dir" else 0o644), uid=uid, gid=gid,
             size=hsize, mtime=e.get("mtime", 1600000000),
             uname=enc(e.get("uname", "")), gname=enc(e.get("gname", "")),
             devmajor=e.get("devmajor", 0), devminor=e.get("devminor", 0))
    f.update({k: enc(v) for k, v in (e.get("raw") or {}).items()})
    out += ustar_block(nameb, TYPES[typ], linkname=linkb,
                       bad_checksum=bool(e.get("bad_checksum")), **f)
    return out


def merge(rec, over):
    for k, v in (over or {}).items():
        if v is None:
            rec.pop(k, None)
        else:
            rec[k] = v
    return rec


class Writer:
    def __init__(self, level):
        self.level = level
        self.out = io.BytesIO()
        self.cur = bytearray()
        self.members = []
        self.diff = hashlib.sha256()
        self.raw = bytearray()  # the uncompressed stream so far (for --tar-only)
        self.flip = set()  # indexes of members to corrupt after compression

    def flush(self):
        if not self.cur:
            return
        self.members.append(self.out.tell())
        raw = bytes(self.cur)
        self.diff.update(raw)
        self.raw += raw
        m = bytearray(gzip_member(raw, self.level))
        if len(self.members) - 1 in self.flip:
            # Flip a byte in the deflate body: between header and trailer.
            m[10 + (len(m) - 18) // 2] ^= 0x55
        self.out.write(m)
        self.cur = bytearray()

    def offset(self):
        return self.out.tell()


def build(spec):
    level = spec.get("level", 6)
    default_chunk = spec.get("chunk_size", DEFAULT_CHUNK)
    w = Writer(level)
    toc = []

    for e in spec.get("entries", []):
        typ = e.get("type", "reg")
        name = e["name"]
        tar_name = e.get("tar_name", name)
        toc_name = e.get("toc_name", name)
        data = payload(e) if typ == "reg" else b""
        tampered = data
        if e.get("tamper") == "flip":
            tampered = None  # handled per chunk
        elif any(k in e for k in ("tamper", "tamper_b64", "tamper_hex")):
            tampered = payload(e, "tamper")
        size = len(data)
        chunk = e.get("chunk_size", default_chunk)
        if chunk <= 0:
            raise SystemExit("chunk_size must be > 0")

        rec = {"name": toc_name, "type": typ}
        if size:
            rec["size"] = size
        # Like the reference writer: zero values are left out.
        if e.get("mtime", 1600000000):
            rec["modtime"] = rfc3339(e.get("mtime", 1600000000))
        if e.get("linkname"):
            rec["linkName"] = e["linkname"]
        if e.get("mode", 0o755 if typ == "dir" else 0o644):
            rec["mode"] = e.get("mode", 0o755 if typ == "dir" else 0o644)
        if e.get("uid"):
            rec["uid"] = e["uid"]
        if e.get("gid"):
            rec["gid"] = e["gid"]
        if e.get("uname"):
            rec["userName"] = e["uname"]
        if e.get("gname"):
            rec["groupName"] = e["gname"]
        if typ in ("char", "block"):
            if e.get("devmajor"):
                rec["devMajor"] = e["devmajor"]
            if e.get("devminor"):
                rec["devMinor"] = e["devminor"]
        if e.get("xattrs"):
            rec["xattrs"] = {k: base64.b64encode(xattr_value(v)).decode()
                             for k, v in e["xattrs"].items()}
        if typ == "reg":
            rec["digest"] = "sha256:" + hashlib.sha256(data).hexdigest()

        in_tar = e.get("in_tar", True)
        recs = [rec]
        if in_tar:
            w.cur += tar_header(e, tar_name, size)
        nchunks = (size + chunk - 1) // chunk if size else 0
        for i in range(nchunks):
            lo, hi = i * chunk, min(size, (i + 1) * chunk)
            part = data[lo:hi]
            if i == 0:
                r = rec
            else:
                r = {"name": toc_name, "type": "chunk"}
                recs.append(r)
            if in_tar:
                w.flush()
                if e.get("flip_compressed"):
                    w.flip.add(len(w.members))
                r["offset"] = w.offset()
                if tampered is None:
                    bad = bytearray(part)
                    bad[0] ^= 0xFF
                    w.cur += bad
                else:
                    w.cur += tampered[lo:hi].ljust(hi - lo, b"\0")
            else:
                r["offset"] = 0
            if lo:
                r["chunkOffset"] = lo
            if hi - lo == chunk:
                r["chunkSize"] = chunk
            r["chunkDigest"] = "sha256:" + hashlib.sha256(part).hexdigest()
        if in_tar and size % 512:
            w.cur += b"\0" * (512 - size % 512)
        merge(rec, e.get("toc"))
        for k, over in (e.get("toc_chunks") or {}).items():
            merge(recs[int(k)], over)
        if e.get("in_toc", True):
            toc.extend(recs)

    toc.extend(spec.get("toc_extra", []))
    if spec.get("tar_only"):
        raw = bytes(w.raw) + bytes(w.cur) + b"\0" * 1024
        return raw, {"size": len(raw), "digest": "sha256:" + hashlib.sha256(raw).hexdigest()}
    w.flush()
    toc_off = w.offset()

    if "toc_text_file" in spec:
        with open(spec["toc_text_file"], "rb") as f:
            toc_json = f.read()
    elif "toc_text" in spec:
        toc_json = spec["toc_text"].encode("utf-8", "surrogateescape")
    else:
        body = {"version": spec.get("toc_version", 1), "entries": toc}
        toc_json = json.dumps(body, indent="\t", ensure_ascii=False).encode()
        many = spec.get("toc_many")
        if many:
            # Splice N compact records before the closing "]" of entries.
            cut = toc_json.rindex(b"]")
            head = toc_json[:cut].rstrip()
            sep = b"," if toc else b""
            typ = many.get("type", "reg")
            pre = many.get("prefix", "many/")
            recs = b",".join(b'{"name":"%s%d","type":"%s"}' % (pre.encode(), i, typ.encode())
                             for i in range(many["count"]))
            toc_json = head + sep + recs + b"\n" + toc_json[cut:]
    toc_digest = "sha256:" + hashlib.sha256(toc_json).hexdigest()

    tail = tar_header({"mode": 0o644, "mtime": 0}, spec.get("toc_name", TOC_NAME),
                      len(toc_json))
    tail += toc_json
    if len(toc_json) % 512:
        tail += b"\0" * (512 - len(toc_json) % 512)
    if not spec.get("no_end_blocks"):
        tail += b"\0" * 1024
    w.cur += tail
    w.flush()

    blob = w.out.getvalue()
    if "footer_raw_hex" in spec:
        blob += bytes.fromhex(spec["footer_raw_hex"])
    elif spec.get("footer", "estargz") != "none":
        blob += footer_bytes(spec.get("footer_offset", toc_off), spec.get("footer", "estargz"))
    if "append_hex" in spec:
        blob += bytes.fromhex(spec["append_hex"])
    if "truncate" in spec:
        n = spec["truncate"]
        blob = blob[:n] if n >= 0 else blob[:len(blob) + n]

    summary = {
        "tocOffset": toc_off,
        "tocDigest": toc_digest,
        "diffID": "sha256:" + w.diff.hexdigest(),
        "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
        "uncompressedSize": len(w.raw),
        "members": w.members,
    }
    return blob, summary


def spec_from_tar(path, chunk_size, level, landmark=False, prioritized=None):
    """Turn any tar Python can read (sparse expanded) into a spec.

    landmark: put prioritised files first, then .prefetch.landmark, or with
    none .no.prefetch.landmark first, as the reference converter does."""
    kinds = {v: k for k, v in TYPES.items()}
    kinds[tarfile.AREGTYPE] = "reg"
    kinds[tarfile.CONTTYPE] = "reg"
    kinds[tarfile.GNUTYPE_SPARSE] = "reg"
    entries = []
    with tarfile.open(path, "r:*", encoding="utf-8", errors="surrogateescape") as t:
        for m in t:
            if m.type not in kinds:
                continue
            e = {"name": m.name + ("/" if m.isdir() else ""), "type": kinds[m.type],
                 "mode": m.mode, "uid": m.uid, "gid": m.gid, "uname": m.uname,
                 "gname": m.gname, "mtime": int(m.mtime), "linkname": m.linkname,
                 "devmajor": m.devmajor, "devminor": m.devminor}
            x = {k[len("SCHILY.xattr."):]: {"b64": base64.b64encode(
                    v.encode("utf-8", "surrogateescape")).decode()}
                 for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            if x:
                e["xattrs"] = x
            if e["type"] == "reg":
                e["data_b64"] = base64.b64encode(t.extractfile(m).read()).decode()
            entries.append(e)
    if landmark:
        lm = {"type": "reg", "mode": 0, "mtime": 0, "data_hex": "0f"}
        prio = [x.strip().lstrip("./") for x in (prioritized or []) if x.strip()]
        if prio:
            first = [e for p in prio for e in entries if e["name"].rstrip("/") == p]
            rest = [e for e in entries if e not in first]
            entries = first + [dict(lm, name=".prefetch.landmark")] + rest
        else:
            entries = [dict(lm, name=".no.prefetch.landmark")] + entries
    return {"chunk_size": chunk_size, "level": level, "entries": entries}


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="write an eStargz blob")
    ap.add_argument("spec", nargs="?", help="spec JSON file or '-'")
    ap.add_argument("out")
    ap.add_argument("--from-tar", metavar="TAR")
    ap.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK)
    ap.add_argument("--level", type=int, default=6)
    ap.add_argument("--landmark", action="store_true",
                    help="with --from-tar: add the prefetch landmark entry")
    ap.add_argument("--prioritized", metavar="FILE",
                    help="with --from-tar --landmark: files to put first")
    ap.add_argument("--tar-only", action="store_true",
                    help="write the plain tar described by SPEC, no gzip, no TOC")
    a = ap.parse_args(argv)
    if a.from_tar:
        if a.spec:
            ap.error("give either SPEC or --from-tar")
        prio = None
        if a.prioritized:
            with open(a.prioritized, encoding="utf-8") as f:
                prio = f.read().splitlines()
        spec = spec_from_tar(a.from_tar, a.chunk_size, a.level, a.landmark, prio)
    else:
        if not a.spec:
            ap.error("SPEC required")
        f = sys.stdin if a.spec == "-" else open(a.spec, encoding="utf-8")
        spec = json.load(f)
    if a.tar_only:
        spec = dict(spec, tar_only=True)
    blob, summary = build(spec)
    with open(a.out, "wb") as f:
        f.write(blob)
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
