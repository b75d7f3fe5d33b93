#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus (deterministic) under DIR/<target>/."""
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile

here = os.path.dirname(os.path.abspath(__file__))
craft = os.path.join(here, "..", "integration", "craft_blob.py")
out = sys.argv[1]

TOCS = [
    {"version": 1, "entries": []},
    {"version": 1, "entries": [
        {"name": "a/", "type": "dir", "mode": 493, "modtime": "2020-01-01T00:00:00Z"},
        {"name": "a/f", "type": "reg", "size": 10, "offset": 5, "chunkSize": 4,
         "digest": "sha256:" + "ab" * 32, "chunkDigest": "sha256:" + "cd" * 32},
        {"name": "a/f", "type": "chunk", "offset": 9, "chunkOffset": 4, "chunkSize": 4},
        {"name": "a/f", "type": "chunk", "offset": 12, "chunkOffset": 8},
        {"name": "a/l", "type": "symlink", "linkName": "f"},
        {"name": "a/h", "type": "hardlink", "linkName": "a/f"},
        {"name": "a/c", "type": "char", "devMajor": 1, "devMinor": 3},
        {"name": "x/y", "type": "fifo", "xattrs": {"user.a": "Yg=="}},
        {"name": ".prefetch.landmark", "type": "reg", "size": 1, "offset": 20},
    ]},
]


def write(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


for i, t in enumerate(TOCS):
    write("fuzz-toc", f"toc{i}.json", json.dumps(t, indent="\t").encode())

# fuzz-manifest also reads each input as an image config of two layers.
D = ["sha256:" + c * 64 for c in "12"]
write("fuzz-manifest", "config0.json", json.dumps(
    {"architecture": "amd64", "os": "linux",
     "rootfs": {"type": "layers", "diff_ids": D}}).encode())
write("fuzz-manifest", "manifest0.json", json.dumps(
    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": D[0], "size": 10},
     "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                 "digest": D[1], "size": 20}]}).encode())

specs = [
    {"chunk_size": 64, "entries": [
        {"name": "d/", "type": "dir"},
        {"name": "d/big", "data": "x" * 300},
        {"name": "d/s", "type": "symlink", "linkname": "big"},
        {"name": "d/h", "type": "hardlink", "linkname": "d/big"},
        {"name": "e", "data": "", "xattrs": {"user.k": "v"}},
    ]},
    {"entries": [{"name": "f", "data": "hello"}], "footer": "legacy"},
]
for i, s in enumerate(specs):
    p = os.path.join(out, f"spec{i}.json")
    with open(p, "w") as f:
        json.dump(s, f)
    blob = os.path.join(out, f"blob{i}")
    subprocess.run([sys.executable, craft, p, blob], check=True, stdout=subprocess.DEVNULL)
    with open(blob, "rb") as f:
        b = f.read()
    write("fuzz-blob", f"blob{i}", b)
    # the whole blob as the tail of a kept TOC file (layerfs/toccache.c)
    hdr = struct.pack("<8sII32sqqQ32s", b"RSTOCTL\n", 1, 104, hashlib.sha256(b).digest(),
                      len(b), 0, len(b), hashlib.sha256(b).digest())
    write("fuzz-kept-toc", f"kept{i}", hdr + b)
    os.unlink(p)
    os.unlink(blob)

for fmt, name in [(tarfile.GNU_FORMAT, "gnu"), (tarfile.PAX_FORMAT, "pax"),
                  (tarfile.USTAR_FORMAT, "ustar")]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        d = tarfile.TarInfo("dir/")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        for n, data in [("dir/a", b"abc" * 50), ("dir/" + "n" * (90 if fmt == tarfile.USTAR_FORMAT else 150), b"long")]:
            ti = tarfile.TarInfo(n)
            ti.size = len(data)
            if fmt == tarfile.PAX_FORMAT:
                ti.pax_headers = {"SCHILY.xattr.user.x": "1"}
            tf.addfile(ti, io.BytesIO(data))
        s = tarfile.TarInfo("dir/sym")
        s.type = tarfile.SYMTYPE
        s.linkname = "a"
        tf.addfile(s)
        h = tarfile.TarInfo("dir/hard")
        h.type = tarfile.LNKTYPE
        h.linkname = "dir/a"
        tf.addfile(h)
    write("fuzz-tar", f"{name}.tar", buf.getvalue())

for i, f in enumerate([
        b'name==sha256:abc',
        b'labels."containerd.io/gc.root"',
        b'kind==committed,parent!=x\nname~=^sha256:[a-f]+$',
        b'labels.a.b==c,labels."x y"!="z"',
        b'name~="(a|b)*"']):
    write("fuzz-filter", f"filter{i}", f)

for i, f in enumerate([
        b"/usr/bin/python3\n/etc/ld.so.cache\n/lib/x86_64-linux-gnu/libc.so.6\n",
        b"/b\n\n/a\r\nc\n/b\n\r\n/d/../e\n//f\n/last",
        b"/" + b"x" * 4094 + b"\n" + b"y" * 4095 + b"\n",
        b"/a\n/b\x00c\n",
        b'["/bin/sh", "-c", "echo a  b; cat \'/x y\'"]',
        b'  ["", "\\u00e9\\n", 1, null, ["a"], {"b": 1}]',
        b"/bin/cat /data/c\t/data/a\n",
        b"[\"a\\u0000b\"]"]):
    write("fuzz-record-list", f"seed{i}", f)

# fuzz-fuse-request: a mode byte (bit 0: INIT done first), then one request
# as /dev/fuse hands it over: fuse_in_header (40 bytes) and the body.
import struct


def fuse_req(opcode, body, mode=1, nodeid=1):
    hdr = struct.pack("<IIQQIIII", 40 + len(body), opcode, 7, nodeid, 0, 0, 1, 0)
    return bytes([mode]) + hdr + body


READ_IN = struct.pack("<QQIIQII", 0, 0, 4096, 0, 0, 0, 0)
for i, r in enumerate([
    fuse_req(26, struct.pack("<IIII", 7, 44, 131072, 0x7fffffff) + bytes(48), mode=0),  # INIT
    fuse_req(1, b"hello\0"),                                     # LOOKUP
    fuse_req(2, struct.pack("<Q", 1)),                           # FORGET
    fuse_req(42, struct.pack("<II", 2, 0) + struct.pack("<QQQQ", 2, 1, 3, 1)),  # BATCH_FORGET
    fuse_req(3, struct.pack("<IIQ", 0, 0, 0)),                   # GETATTR
    fuse_req(5, b""),                                            # READLINK
    fuse_req(14, struct.pack("<II", 0, 0)),                      # OPEN
    fuse_req(15, READ_IN),                                       # READ
    fuse_req(28, READ_IN),                                       # READDIR
    fuse_req(44, READ_IN),                                       # READDIRPLUS
    fuse_req(22, struct.pack("<II", 64, 0) + b"user.k\0"),       # GETXATTR
    fuse_req(23, struct.pack("<II", 0, 0)),                      # LISTXATTR
    fuse_req(46, struct.pack("<QQII", 0, 0, 3, 0)),              # LSEEK
    fuse_req(16, READ_IN + b"data"),                             # WRITE (EROFS)
    fuse_req(36, struct.pack("<Q", 7)),                          # INTERRUPT
    fuse_req(38, b""),                                           # DESTROY
]):
    write("fuzz-fuse-request", f"req{i}", r)

# fuzz-fdstore-proto: a byte (number of fds to attach, mod 4), then one
# rs-fd-holder packet: header (magic, op, name_len, value) and the name.


def fdh(nfds, op, name=b"", value=0, magic=0x52534631):
    return bytes([nfds]) + struct.pack("<IHHi", magic, op, len(name), value) + name


for i, r in enumerate([
    fdh(1, 1, b"fuse.sha256-ab"),   # ADD
    fdh(0, 2, b"grpc"),             # REMOVE
    fdh(0, 3),                      # STOP
    fdh(1, 4, b"x"),                # ENTRY
    fdh(0, 5, value=2),             # END
    fdh(0, 7, value=2),             # ERR
    fdh(2, 1, b"a:b"),              # bad name, two fds
]):
    write("fuzz-fdstore-proto", f"pkt{i}", r)
