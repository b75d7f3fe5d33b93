#!/usr/bin/env python3
"""Writes the input trees of bench/read, deterministically (same bytes every
time for the same arguments).

    gen_read_tree.py big DIR SIZE_MIB     DIR/data/big.bin (SIZE_MIB MiB) and
                                          DIR/small/f00..f19 (1 KiB .. 256 KiB)
    gen_read_tree.py meta DIR ENTRIES     ENTRIES entries (directories and
                                          files of 0 .. 2 KiB) under DIR/tree

The file data is "random-ish, moderately compressible": a PRNG stream of
pieces of 32..511 bytes, half of them fresh (random bytes, or random bytes
over a 64-symbol alphabet) and half copies of an earlier piece of the last
32 KiB, so gzip finds both literals and matches: about 2x with gzip -6 or
`stargz build`.  Prints a JSON summary."""
import json
import os
import random
import sys

T64 = bytes((i % 64) + 48 for i in range(256))


def stream(rng, n):
    """n bytes of the mix described above."""
    rb, ri, rr = rng.randbytes, rng.randrange, rng.random
    out = bytearray()
    while len(out) < n:
        ln = 32 + ri(480)
        r = rr()
        w = len(out)
        if w < 4096 or r < 0.5:
            out += rb(ln) if r < 0.25 else rb(ln).translate(T64)
        else:
            d = 1 + ri(min(w, 32768) - ln)
            s = max(w - d - ln, 0)
            out += out[s:s + ln]
    return bytes(out[:n])


def write_stream(path, rng, n, block=1 << 20):
    with open(path, "wb") as f:
        left = n
        while left > 0:
            k = min(block, left)
            f.write(stream(rng, k))
            left -= k


def big(d, size_mib):
    rng = random.Random(0x5EAD0001)
    os.makedirs(os.path.join(d, "data"), exist_ok=True)
    os.makedirs(os.path.join(d, "small"), exist_ok=True)
    write_stream(os.path.join(d, "data", "big.bin"), rng, size_mib << 20)
    sizes = []
    for i in range(20):
        # 1 KiB .. 256 KiB, geometric
        n = int(1024 * (256 ** (i / 19.0)))
        sizes.append(n)
        with open(os.path.join(d, "small", "f%02d" % i), "wb") as f:
            f.write(stream(rng, n))
    return {"big_bytes": size_mib << 20, "small_files": 20, "small_bytes": sum(sizes)}


def meta(d, entries):
    """~2% directories (two levels), the rest files of 0..2 KiB."""
    rng = random.Random(0x5EAD0002)
    root = os.path.join(d, "tree")
    os.makedirs(root, exist_ok=True)
    ntop = max(1, entries // 1250)          # 40 for 50,000
    nsub = 25
    ndirs = ntop + ntop * nsub
    nfiles = entries - ndirs
    if nfiles < 0:
        raise SystemExit("too few entries")
    leaves = []
    for t in range(ntop):
        top = os.path.join(root, "d%03d" % t)
        os.mkdir(top)
        leaves.append(top)
        for s in range(nsub):
            sub = os.path.join(top, "s%02d" % s)
            os.mkdir(sub)
            leaves.append(sub)
    blob = stream(rng, 1 << 20)
    total = 0
    for i in range(nfiles):
        dirpath = leaves[i % len(leaves)]
        n = rng.randrange(2049)
        o = rng.randrange(len(blob) - n)
        with open(os.path.join(dirpath, "file-%06d.txt" % i), "wb") as f:
            f.write(blob[o:o + n])
        total += n
        if i % 50 == 7:
            os.chmod(os.path.join(dirpath, "file-%06d.txt" % i), 0o755)
    # the layer root "./" and "tree/" are two more entries in the tar
    return {"entries": ndirs + nfiles, "dirs": ndirs, "files": nfiles, "file_bytes": total}


def main():
    kind, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(d, exist_ok=True)
    r = big(d, n) if kind == "big" else meta(d, n)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
