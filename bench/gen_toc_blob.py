#!/usr/bin/env python3
"""Writes an eStargz blob whose TOC has N entries shaped like a real rootfs
(directories every 50 files, regular files with digest and chunkDigest,
formatted with tabs like the reference writer). The payload is filler: the
benchmark measures opening, not reading."""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

n = int(sys.argv[1])
out = sys.argv[2]
filler = os.urandom(8192)
entries = []
for i in range(n):
    d = i // 50
    if i % 50 == 0:
        for sub in (f"usr/share/pkg{d:05d}/", f"usr/share/pkg{d:05d}/doc/"):
            entries.append({"name": sub, "type": "dir", "modtime": "2024-01-01T00:00:00Z",
                            "mode": 493})
    name = f"usr/share/pkg{d:05d}/doc/file-{i:07d}.txt"
    h = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
    entries.append({"name": name, "type": "reg", "size": 1234,
                    "modtime": "2024-01-01T00:00:00Z", "mode": 420,
                    "offset": 100 + (i * 37) % 8000, "digest": h, "chunkDigest": h})
toc = json.dumps({"version": 1, "entries": entries}, indent="\t").encode()
info = tarfile.TarInfo("stargz.index.json")
info.size = len(toc)
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w", format=tarfile.GNU_FORMAT) as tf:
    tf.addfile(info, io.BytesIO(toc))
with open(out, "wb") as f:
    f.write(gzip.compress(filler, 1))
    pos = f.tell()
    f.write(gzip.compress(tar.getvalue(), 9))
    f.write(bytes([0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 26, 0, ord("S"), ord("G"), 22, 0])
            + (b"%016xSTARGZ" % pos) + bytes([1, 0, 0, 0xff, 0xff]) + bytes(8))
print(json.dumps({"entries": len(entries), "tocBytes": len(toc)}))
