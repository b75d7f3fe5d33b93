#!/usr/bin/env python3
"""A reader for the restart tests: walks a tree in a loop, sha256 of every
file against a manifest (lines "sha256 relpath"), with some files opened once
at the start and read again each round through the same fds (file handles
the kernel got from an earlier server). Between rounds it drops the page
cache (as root), so every round goes to the FUSE server again. Runs until
STOP_FILE exists (after at least --min-rounds), then prints one JSON line and
exits 0 only if every read was right and none failed."""
import argparse, hashlib, json, os, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("root")
ap.add_argument("manifest")
ap.add_argument("stop_file")
ap.add_argument("--held", type=int, default=4)
ap.add_argument("--min-rounds", type=int, default=1)
ap.add_argument("--max-secs", type=float, default=600)
ap.add_argument("--stall-log", default=None)
a = ap.parse_args()

want = {}
for line in open(a.manifest):
    h, p = line.rstrip("\n").split(" ", 1)
    want[p] = h
names = sorted(want)
held = [(n, os.open(os.path.join(a.root, n), os.O_RDONLY)) for n in names[-a.held:]]
errors, wrong, rounds, files, longest = [], [], 0, 0, 0.0
t_end = time.monotonic() + a.max_secs


def digest_fd(fd):
    h = hashlib.sha256()
    off = 0
    global longest
    while True:
        t0 = time.monotonic()
        b = os.pread(fd, 1 << 17, off)
        dt = time.monotonic() - t0
        longest = max(longest, dt)
        if not b:
            return h.hexdigest()
        h.update(b)
        off += len(b)


print("started", flush=True)
while time.monotonic() < t_end:
    if rounds >= a.min_rounds and os.path.exists(a.stop_file):
        break
    for n in names:
        try:
            fd = os.open(os.path.join(a.root, n), os.O_RDONLY)
            try:
                got = digest_fd(fd)
            finally:
                os.close(fd)
            files += 1
            if got != want[n]:
                wrong.append(n)
        except OSError as e:
            errors.append("%s: %s" % (n, e))
    for n, fd in held:
        try:
            if digest_fd(fd) != want[n]:
                wrong.append("held " + n)
        except OSError as e:
            errors.append("held %s: %s" % (n, e))
    rounds += 1
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass
    if errors or wrong:
        break
print(json.dumps({"rounds": rounds, "files": files, "errors": errors[:20],
                  "wrong": wrong[:20], "longest_read_s": round(longest, 3)}), flush=True)
sys.exit(0 if not errors and not wrong and rounds >= a.min_rounds else 1)
