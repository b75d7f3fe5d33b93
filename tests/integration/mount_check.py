#!/usr/bin/env python3
"""Checks for the `stargz mount` tests (stdlib only).

    mount_check.py whiteouts < MANIFEST      tree_manifest of an extracted
        layer -> what the mount should show: `.wh.X` becomes a 0/0 char
        device X, `.wh..wh..opq` goes and its directory gets
        trusted.overlay.opaque=y; whiteout devices normalised (see below)
    mount_check.py normalise < MANIFEST      char 0/0 devices (whiteouts) keep
        only "type=char dev=0,0": their mode, owner and mtime are not compared
    mount_check.py apply OUT TAR...          extract layer tars in order into
        OUT with GNU tar as an overlay of them would show: before each layer,
        its whiteouts delete (`.wh.X`) or empty (`.wh..wh..opq`) what the
        layers below left, and an entry replaces a lower one of another kind
    mount_check.py readers [--threads N] [--ops N] [--seed S] [--seconds S]
                           MNT REF REL...    N threads pread random
        (offset, length) of the files REL (the same and different files at
        once) under MNT and compare every byte with REF/REL; prints a JSON
        summary, exit 1 on any error or mismatch
    mount_check.py mmap FILE REF             mmap FILE, compare it (in a
        shuffled page-range order, then whole) with REF
    mount_check.py seek FILE REF             lseek SEEK_DATA/SEEK_HOLE answers
        are sane: SEEK_DATA o lands in [o, size) skipping only zeros, SEEK_HOLE
        o in [o, size], ENXIO at and past the end, and the data runs they
        describe rebuild REF; exit 1 with a reason otherwise
    mount_check.py readfile [--evict] FILE REF   read FILE in 128 KiB reads;
        print JSON {ok, errno, error, bytes, wrong, secs}: wrong is true if
        any byte returned differs from REF (never acceptable); --evict drops
        FILE's page cache first (posix_fadvise DONTNEED)
    mount_check.py evict DIR                 drop the page cache of every
        regular file below DIR
"""

import errno
import json
import mmap
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time

# --- manifests ---------------------------------------------------------------------


def unesc(p):
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), p).encode("latin-1")


def split_line(line):
    path, _, rest = line.rstrip("\n").partition(" ")
    return path, rest.split(" ") if rest else []


def is_whiteout_dev(fields):
    return "type=char" in fields and "dev=0,0" in fields


def norm_fields(fields):
    if is_whiteout_dev(fields):
        return ["type=char", "dev=0,0"]
    return fields


def emit(lines):
    lines.sort(key=lambda pf: unesc(pf[0]))
    out = sys.stdout
    for p, f in lines:
        out.write(p + (" " + " ".join(f) if f else "") + "\n")


def cmd_normalise():
    lines = [split_line(ln) for ln in sys.stdin if ln.strip()]
    emit([(p, norm_fields(f)) for p, f in lines])


def cmd_whiteouts():
    lines = [split_line(ln) for ln in sys.stdin if ln.strip()]
    opaque = set()
    out = []
    for p, f in lines:
        d, _, base = p.rpartition("/")
        if base == ".wh..wh..opq":
            opaque.add(d)
            continue
        if base.startswith(".wh."):
            out.append(((d + "/" if d else "") + base[4:], ["type=char", "dev=0,0"]))
            continue
        out.append((p, f))
    res = []
    for p, f in out:
        if p in opaque:
            xs = [x for x in f if x.startswith("xattr.")
                  and not x.startswith("xattr.trusted.overlay.opaque=")]
            xs.append("xattr.trusted.overlay.opaque=0x79")
            xs.sort(key=lambda x: x.split("=", 1)[0])
            pre = [x for x in f if not x.startswith("xattr.") and not x.startswith("hardlink")]
            post = [x for x in f if x.startswith("hardlink")]
            f = pre + xs + post
        res.append((p, norm_fields(f)))
    emit(res)


# --- layers applied in order -------------------------------------------------------


def rm(path):
    if os.path.islink(path) or not os.path.isdir(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    else:
        shutil.rmtree(path)


def cmd_apply(out, tars):
    os.makedirs(out, exist_ok=True)
    for t in tars:
        with tarfile.open(t, "r:*") as tf:
            members = tf.getmembers()
        for m in members:
            name = m.name.rstrip("/")
            if name.startswith("./"):
                name = name[2:]
            d, _, base = name.rpartition("/")
            target_dir = os.path.join(out, d) if d else out
            if base == ".wh..wh..opq":
                if os.path.isdir(target_dir) and not os.path.islink(target_dir):
                    for e in os.listdir(target_dir):
                        rm(os.path.join(target_dir, e))
            elif base.startswith(".wh."):
                p = os.path.join(target_dir, base[4:])
                if os.path.lexists(p):
                    rm(p)
            elif name and name != ".":
                p = os.path.join(out, name)
                if os.path.lexists(p):
                    is_dir = os.path.isdir(p) and not os.path.islink(p)
                    if m.isdir() != is_dir or not m.isdir():
                        rm(p)
        subprocess.run(["tar", "-C", out, "--xattrs", "--xattrs-include=*", "--same-owner",
                        "--same-permissions", "--numeric-owner", "--exclude=.wh.*",
                        "-xf", t], check=True)


# --- readers ---------------------------------------------------------------------------


def cmd_readers(args):
    import argparse
    ap = argparse.ArgumentParser(prog="mount_check.py readers")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--ops", type=int, default=400, help="reads per thread")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=1 << 20)
    ap.add_argument("mnt")
    ap.add_argument("ref")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args(args)
    sizes = {f: os.path.getsize(os.path.join(a.ref, f)) for f in a.files}
    res = {"reads": 0, "bytes": 0, "errors": [], "mismatches": []}
    lock = threading.Lock()
    t0 = time.monotonic()

    def worker(k):
        rnd = random.Random(a.seed * 1000 + k)
        fds = {}
        refs = {}
        try:
            for i in range(a.ops):
                # half the time everybody hits the first file; else any file
                f = a.files[0] if rnd.random() < 0.5 else rnd.choice(a.files)
                size = sizes[f]
                if f not in fds:
                    try:
                        fds[f] = os.open(os.path.join(a.mnt, f), os.O_RDONLY)
                    except OSError as e:
                        with lock:
                            res["errors"].append("open %s: %s" % (f, e))
                        continue
                    refs[f] = os.open(os.path.join(a.ref, f), os.O_RDONLY)
                off = rnd.randrange(0, max(1, size + 100))
                n = rnd.choice([1, 7, 512, 4096, 4097, 65536, 131072 + 3,
                                rnd.randrange(1, a.max_len + 1)])
                try:
                    got = os.pread(fds[f], n, off)
                except OSError as e:
                    with lock:
                        res["errors"].append("%s @%d+%d: %s" % (f, off, n, e))
                    continue
                want = os.pread(refs[f], n, off)
                with lock:
                    res["reads"] += 1
                    res["bytes"] += len(got)
                    if got != want:
                        j = next((x for x in range(min(len(got), len(want)))
                                  if got[x] != want[x]), min(len(got), len(want)))
                        res["mismatches"].append(
                            "%s @%d+%d: got %d bytes, want %d, first difference at +%d"
                            % (f, off, n, len(got), len(want), j))
        finally:
            for fd in list(fds.values()) + list(refs.values()):
                try:
                    os.close(fd)
                except OSError as e:
                    with lock:
                        res["errors"].append("close: %s" % e)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    res["secs"] = round(time.monotonic() - t0, 2)
    res["errors"] = res["errors"][:20]
    res["mismatches"] = res["mismatches"][:20]
    print(json.dumps(res))
    return 0 if not res["errors"] and not res["mismatches"] and res["reads"] else 1


# --- mmap ------------------------------------------------------------------------------


def cmd_mmap(path, ref):
    size = os.path.getsize(ref)
    with open(path, "rb") as f, open(ref, "rb") as r:
        if os.fstat(f.fileno()).st_size != size:
            print("size %d, want %d" % (os.fstat(f.fileno()).st_size, size))
            return 1
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        want = r.read()
        step = 3 * 4096 + 123
        pieces = list(range(0, size, step))
        random.Random(5).shuffle(pieces)
        for off in pieces:
            if m[off:off + step] != want[off:off + step]:
                print("mmap bytes differ in [%d, %d)" % (off, off + step))
                return 1
        if m[:] != want:
            print("whole mmap differs")
            return 1
        m.close()
    print("mmap of %d bytes matches" % size)
    return 0


# --- lseek -----------------------------------------------------------------------------


def cmd_seek(path, ref):
    with open(ref, "rb") as r:
        want = r.read()
    size = len(want)
    fd = os.open(path, os.O_RDONLY)
    try:
        if size == 0:
            try:
                x = os.lseek(fd, 0, os.SEEK_DATA)
                print("SEEK_DATA 0 on an empty file gave %d, want ENXIO" % x)
                return 1
            except OSError as e:
                if e.errno != errno.ENXIO:
                    print("SEEK_DATA 0 on an empty file: %s, want ENXIO" % e)
                    return 1
            return 0
        offs = sorted(set([0, 1, size // 3, size // 2, size - 1] +
                          [random.Random(9).randrange(size) for _ in range(20)]))
        for o in offs:
            d = os.lseek(fd, o, os.SEEK_DATA)
            if not o <= d < size:
                print("SEEK_DATA %d -> %d, want in [%d, %d)" % (o, d, o, size))
                return 1
            if any(want[o:d]):
                print("SEEK_DATA %d -> %d skips non-zero bytes" % (o, d))
                return 1
            h = os.lseek(fd, o, os.SEEK_HOLE)
            if not o <= h <= size:
                print("SEEK_HOLE %d -> %d, want in [%d, %d]" % (o, h, o, size))
                return 1
        for o in (size, size + 4096):
            try:
                x = os.lseek(fd, o, os.SEEK_DATA)
                print("SEEK_DATA at %d (size %d) gave %d, want ENXIO" % (o, size, x))
                return 1
            except OSError as e:
                if e.errno != errno.ENXIO:
                    print("SEEK_DATA at %d (size %d): %s, want ENXIO" % (o, size, e))
                    return 1
        # walk data/hole pairs: every byte outside the data runs must be zero
        pos = 0
        got = bytearray(size)
        while pos < size:
            try:
                d = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                raise
            h = os.lseek(fd, d, os.SEEK_HOLE)
            if h <= d:
                print("SEEK_HOLE %d -> %d: no progress" % (d, h))
                return 1
            got[d:h] = os.pread(fd, h - d, d)
            pos = h
        if bytes(got) != want:
            print("content rebuilt from the SEEK_DATA/SEEK_HOLE runs differs")
            return 1
        d0, h0 = os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 0, os.SEEK_HOLE)
        print("SEEK_DATA 0 -> %d, SEEK_HOLE 0 -> %d, size %d" % (d0, h0, size))
    finally:
        os.close(fd)
    return 0


# --- one file, with its error --------------------------------------------------------


def evict(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def cmd_readfile(args):
    ev = False
    if args and args[0] == "--evict":
        ev = True
        args = args[1:]
    path, ref = args
    with open(ref, "rb") as r:
        want = r.read()
    if ev:
        evict(path)
    res = {"ok": False, "errno": None, "error": None, "bytes": 0, "wrong": False}
    t0 = time.monotonic()
    got = bytearray()
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            while True:
                b = os.read(fd, 128 << 10)
                if not b:
                    break
                got += b
        finally:
            os.close(fd)
        res["ok"] = True
    except OSError as e:
        res["errno"] = errno.errorcode.get(e.errno, str(e.errno))
        res["error"] = str(e)
    res["secs"] = round(time.monotonic() - t0, 2)
    res["bytes"] = len(got)
    res["wrong"] = bytes(got) != want[:len(got)]
    if res["ok"] and len(got) != len(want):
        res["ok"] = False
        res["error"] = "short: %d of %d bytes" % (len(got), len(want))
    print(json.dumps(res, sort_keys=True))
    return 0 if res["ok"] and not res["wrong"] else 1


def cmd_evict(top):
    n = 0
    for d, _, fs in os.walk(top):
        for f in fs:
            p = os.path.join(d, f)
            if stat.S_ISREG(os.lstat(p).st_mode):
                evict(p)
                n += 1
    print("evicted %d files" % n)
    return 0


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    c, rest = argv[0], argv[1:]
    if c == "whiteouts":
        cmd_whiteouts()
        return 0
    if c == "normalise":
        cmd_normalise()
        return 0
    if c == "apply":
        cmd_apply(rest[0], rest[1:])
        return 0
    if c == "readers":
        return cmd_readers(rest)
    if c == "mmap":
        return cmd_mmap(*rest)
    if c == "seek":
        return cmd_seek(*rest)
    if c == "readfile":
        return cmd_readfile(rest)
    if c == "evict":
        return cmd_evict(rest[0])
    print("unknown command %r" % c, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
