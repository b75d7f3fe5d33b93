#!/usr/bin/env python3
"""Runs protoc-c over containerd's .proto files and writes the generated C
into one flat directory (meson outputs cannot hold sub-directories).

    gen.py PROTOC_C GOCODE_SRC PROTO_INCLUDE OUTDIR PROTO...

Each generated file's path loses the github.com/containerd/containerd/api/
prefix and has its slashes turned into underscores; #include lines are
rewritten to match.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

PREFIX = "github.com/containerd/containerd/api/"


def flat(path):
    if path.startswith(PREFIX):
        path = path[len(PREFIX):]
    return path.replace("/", "_")


def main():
    protoc, gocode, proto_inc, outdir = sys.argv[1:5]
    protos = sys.argv[5:]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [protoc, "--c_out=" + tmp, "-I" + gocode,
               "-I" + os.path.join(gocode, "github.com/gogo/protobuf"),
               "-I" + proto_inc] + protos
        r = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
        errs = [l for l in r.stderr.splitlines() if "warning" not in l]
        if r.returncode != 0:
            sys.stderr.write("\n".join(errs) + "\n")
            return 1
        inc = re.compile(r'#include "([^"]+\.pb-c\.h)"')
        for root, _, files in os.walk(tmp):
            for f in files:
                rel = os.path.relpath(os.path.join(root, f), tmp)
                with open(os.path.join(root, f)) as fh:
                    text = fh.read()
                text = inc.sub(lambda m: '#include "%s"' % flat(m.group(1)), text)
                dst = os.path.join(outdir, flat(rel))
                with open(dst + ".tmp", "w") as fh:
                    fh.write(text)
                os.replace(dst + ".tmp", dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
