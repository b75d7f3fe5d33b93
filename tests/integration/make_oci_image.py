#!/usr/bin/env python3
"""Build an OCI image layout (and a tar of it) from layer tar files.

    make_oci_image.py --name REF [--annotate N:KEY=VALUE]... [--diff-id N:VALUE]...
                      OUT_DIR LAYER...

LAYER may be a plain tar, a .tar.gz or a .tar.zst; its media type follows
from its magic bytes.  Writes OUT_DIR/{oci-layout,index.json,blobs/sha256/*}
and OUT_DIR.tar (the layout as a tar, what `ctr images import` reads).  The
manifest descriptor in index.json is annotated with REF both as
io.containerd.image.name and org.opencontainers.image.ref.name.
--diff-id puts VALUE in the config's rootfs.diff_ids for layer N in place of
the layer's real diffID (a lying config); VALUE "-" drops the entry.
"""

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile


def put_blob(out, data):
    d = hashlib.sha256(data).hexdigest()
    p = os.path.join(out, "blobs", "sha256", d)
    with open(p, "wb") as f:
        f.write(data)
    return "sha256:" + d


def put_blob_file(out, path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    d = h.hexdigest()
    shutil.copyfile(path, os.path.join(out, "blobs", "sha256", d))
    return "sha256:" + d, os.path.getsize(path)


def diff_id(path, kind):
    h = hashlib.sha256()
    if kind == "gzip":
        f = gzip.open(path, "rb")
    elif kind == "zstd":
        p = subprocess.Popen(["zstd", "-dc", path], stdout=subprocess.PIPE)
        f = p.stdout
    else:
        f = open(path, "rb")
    with f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--arch", default=None, help="default: this machine's")
    ap.add_argument("--annotate", action="append", default=[], metavar="N:KEY=VALUE",
                    help="annotation on layer N (0-based) of the manifest")
    ap.add_argument("--diff-id", action="append", default=[], metavar="N:VALUE",
                    help="config diff_ids entry N replaced by VALUE ('-': dropped)")
    ap.add_argument("out")
    ap.add_argument("layers", nargs="+")
    a = ap.parse_args()

    out = a.out.rstrip("/")
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    layers, diff_ids = [], []
    for lp in a.layers:
        with open(lp, "rb") as f:
            magic = f.read(4)
        if magic[:2] == b"\x1f\x8b":
            kind, mt = "gzip", "application/vnd.oci.image.layer.v1.tar+gzip"
        elif magic == b"\x28\xb5\x2f\xfd":
            kind, mt = "zstd", "application/vnd.oci.image.layer.v1.tar+zstd"
        else:
            kind, mt = "tar", "application/vnd.oci.image.layer.v1.tar"
        dg, size = put_blob_file(out, lp)
        layers.append({"mediaType": mt, "digest": dg, "size": size})
        diff_ids.append(diff_id(lp, kind))
    for an in a.annotate:
        idx, kv = an.split(":", 1)
        k, v = kv.split("=", 1)
        layers[int(idx)].setdefault("annotations", {})[k] = v

    for dv in a.diff_id:
        idx, v = dv.split(":", 1)
        diff_ids[int(idx)] = v
    diff_ids = [d for d in diff_ids if d != "-"]

    arch = a.arch or {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm",
                      "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(
        os.uname().machine, os.uname().machine)
    config = {
        "created": "2021-03-04T05:06:07Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2021-03-04T05:06:07Z", "created_by": "make_oci_image.py"}
                    for _ in diff_ids],
    }
    cb = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put_blob(out, cb), "size": len(cb)},
        "layers": layers,
    }
    mb = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put_blob(out, mb), "size": len(mb),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {"io.containerd.image.name": a.name,
                            "org.opencontainers.image.ref.name": a.name},
        }],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)

    with tarfile.open(out + ".tar", "w", format=tarfile.PAX_FORMAT) as t:
        for n in ["oci-layout", "index.json"]:
            t.add(os.path.join(out, n), arcname=n)
        t.add(os.path.join(out, "blobs"), arcname="blobs")
    print(json.dumps({"manifest": index["manifests"][0]["digest"], "diffIDs": diff_ids}))


if __name__ == "__main__":
    main()
