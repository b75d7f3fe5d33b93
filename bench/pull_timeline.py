#!/usr/bin/env python3
"""Where the time of one bench/pull-run run went, from the shaping proxy's
point of view.  Needs a work dir kept with `bench/pull-run --keep`.

    bench/pull_timeline.py WORKDIR NAME

NAME is a run's name as in WORKDIR/logs (img-0-lazy, img-1-legacy, ...).
Reads WORKDIR/logs/NAME.proxy.jsonl (the proxy's request log for the run),
WORKDIR/logs/NAME.phases.json (pull / create / start / end in the proxy's
clock) and, to name the files a range covers, each layer's TOC (`stargz toc`
of the blob in the kept registry storage, WORKDIR/rig/plain/data).

Prints one line per request, in the order the answers ended: its start
(the request's head reached the proxy; when the log has "ms") and end times
(seconds since the pull started), the phase it ended in, the layer (index in
the image, bottom = 0), the range and bytes, a guess at its kind, and the
files it covers.  Kinds: "toc" (footer / TOC reads), "bg" (a range starting
where the previous "bg" range of the same blob ended, or at the blob's first
byte: the background fetch walks the blob in order), "demand" (the rest:
reads of the container, their readahead and the small neighbours that come
along).  Then a summary per phase and kind: requests, bytes, and the time the
bytes take on the link alone (bytes / rate).
"""
import bisect
import json
import os
import subprocess
import sys


def load_jsonl(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def blob_path(work, digest):
    h = digest.split(":", 1)[1]
    return os.path.join(work, "rig", "plain", "data", "docker", "registry", "v2", "blobs",
                        "sha256", h[:2], h, "data")


class Toc:
    def __init__(self, stargz, blob):
        self.offs, self.names = [], []
        try:
            toc = json.loads(subprocess.check_output([stargz, "toc", blob], stderr=subprocess.DEVNULL))
        except (subprocess.CalledProcessError, OSError, ValueError):
            return
        last = None
        ents = []
        for e in toc.get("entries", []):
            if e.get("type") == "reg":
                last = e["name"]
            if e.get("type") in ("reg", "chunk") and e.get("offset", 0) > 0:
                ents.append((e["offset"], e.get("name") or last))
        ents.sort()
        self.offs = [o for o, _ in ents]
        self.names = [n for _, n in ents]
        self.first = self.offs[0] if self.offs else 0

    def files(self, a, b):
        if not self.offs:
            return []
        i = max(bisect.bisect_right(self.offs, a) - 1, 0)
        j = bisect.bisect_right(self.offs, b) - 1
        out = []
        for k in range(i, j + 1):
            n = self.names[k].lstrip("./")
            if not out or out[-1] != n:
                out.append(n)
        return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    work, name = args
    logs = os.path.join(work, "logs")
    reqs = load_jsonl(os.path.join(logs, name + ".proxy.jsonl"))
    ph = json.load(open(os.path.join(logs, name + ".phases.json")))
    stargz = os.path.join(work, "bin", "stargz")
    if not os.access(stargz, os.X_OK):
        stargz = "stargz"
    t0 = ph.get("pull")
    if t0 is None:
        sys.exit("no phase times in %s.phases.json (no proxy calibration)" % name)
    bounds = [("pull", ph["pull"]), ("create", ph["create"]), ("start", ph["start"]),
              ("after", ph["end"])]

    def phase(t):
        cur = "before"
        for n, b in bounds:
            if b is not None and t >= b:
                cur = n
        return cur

    # layer order from the manifest request of the run, if logged; else by first use
    layers, tocs, sizes = [], {}, {}
    for r in reqs:
        p = r.get("path") or ""
        if "/blobs/sha256:" in p:
            d = "sha256:" + p.rsplit("sha256:", 1)[1]
            if d not in layers and os.path.exists(blob_path(work, d)):
                if os.path.getsize(blob_path(work, d)) > 4096:
                    layers.append(d)
    # bottom-first order: the manifest in the registry storage names it
    man = [r for r in reqs if "/manifests/" in (r.get("path") or "")]
    order = None
    if man:
        ref = ph.get("ref", "")
        repo = ref.split("/", 1)[1].rsplit(":", 1)[0] if "/" in ref else ""
        tag = ref.rsplit(":", 1)[1] if ":" in ref else ""
        link = os.path.join(work, "rig", "plain", "data", "docker", "registry", "v2",
                            "repositories", repo, "_manifests", "tags", tag, "current", "link")
        try:
            md = open(link).read().strip()
            m = json.load(open(blob_path(work, md)))
            order = [l["digest"] for l in m.get("layers", [])]
        except (OSError, ValueError, KeyError):
            order = None
    if order:
        layers = order
    for d in layers:
        tocs[d] = Toc(stargz, blob_path(work, d))
        sizes[d] = os.path.getsize(blob_path(work, d)) if os.path.exists(blob_path(work, d)) else 0

    rate = None
    try:
        res = json.load(open(os.path.join(work, "rate.json")))
        rate = res.get("rate_mbit")
    except (OSError, ValueError):
        pass
    rate_Bps = (rate or 100) * 1e6 / 8

    print("run %s (%s): phases from the pull's start: create %.3f s, start %.3f s, end %.3f s"
          % (name, ph.get("ref"), ph["create"] - t0, ph["start"] - t0, ph["end"] - t0))
    print("%8s %8s %-6s %4s %5s %-4s %-27s %9s %-6s %s" % ("start s", "end s", "phase", "conn", "layer",
                                                            "meth", "range", "bytes", "kind", "files"))
    bg_end = {}
    summ = {}
    for r in sorted(reqs, key=lambda r: r.get("t", 0)):
        if not r.get("method"):
            continue
        p = r.get("path") or ""
        t = r["t"] - t0
        d = ("sha256:" + p.rsplit("sha256:", 1)[1]) if "/blobs/sha256:" in p else None
        li = layers.index(d) if d in layers else "-"
        rng = r.get("range") or ""
        kind = "meta"
        files = []
        if d and rng.startswith("bytes="):
            a, b = rng[6:].split("-")
            a = int(a) if a else 0
            b = int(b) if b else sizes.get(d, 0) - 1
            tc = tocs.get(d)
            if sizes.get(d) and b >= sizes[d] - 60:
                kind = "toc"
            elif tc and (a == bg_end.get(d, tc.first) or a == tc.first):
                kind = "bg"
                bg_end[d] = b + 1
            else:
                kind = "demand"
            if tc and kind != "toc":
                files = tc.files(a, b)
        elif d:
            kind = "blob" if r.get("method") == "GET" else "head"
        ph_name = phase(r["t"])
        k = (ph_name, kind)
        s = summ.setdefault(k, [0, 0])
        s[0] += 1
        s[1] += r.get("bytes") or 0
        fl = ""
        if files:
            fl = "%d: %s" % (len(files), ", ".join(files[:3]) + (" ..." if len(files) > 3 else ""))
        st = ("%8.3f" % (t - r["ms"] / 1000.0)) if r.get("ms") is not None else "%8s" % "?"
        print("%s %8.3f %-6s %4s %5s %-4s %-27s %9d %-6s %s" % (
            st, t, ph_name, r.get("conn", ""), li, r.get("method", "")[:4], rng[6:] if rng else p[-27:],
            r.get("bytes") or 0, kind, fl[:110]))
    print()
    print("%-7s %-7s %5s %12s %10s" % ("phase", "kind", "reqs", "bytes", "link s"))
    for (pn, kind), (n, by) in sorted(summ.items()):
        print("%-7s %-7s %5d %12d %10.3f" % (pn, kind, n, by, by / rate_Bps))


if __name__ == "__main__":
    main()
