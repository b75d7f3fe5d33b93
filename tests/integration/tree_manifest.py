#!/usr/bin/env python3
"""Print a canonical, sorted description of a directory tree.

    tree_manifest.py [options] DIR

One line per path below DIR (DIR itself only with --root), sorted by the
path's bytes, fields separated by a single space:

    PATH type=reg mode=0644 uid=0 gid=0 size=13 mtime=1614834367 \
        sha256=... xattr.user.a=0x31 hardlink=OTHER

PATH and symlink targets are printed with non-printable bytes, spaces and
backslashes escaped as \\xNN so that every path fits on one line.  Fields:

  type     dir reg symlink char block fifo socket
  mode     permission bits incl. setuid/setgid/sticky, 4 octal digits
  uid/gid  numeric owner
  size     regular files and symlinks only (directory sizes are fs-specific)
  mtime    whole seconds (directories too unless --no-dir-mtime; symlinks
           too unless --no-symlink-mtime)
  target   symlink target
  dev      major,minor of device nodes
  sha256   of a regular file's content
  xattr.N  every extended attribute (user.*, trusted.*, security.*, ...),
           value in hex, sorted by name
  hardlink the first path (in sort order) of the group of regular files in
           the tree that share this file's inode, printed on every member but
           the first; the first member gets hardlinks=N (group size)
"""

import argparse
import hashlib
import os
import stat
import sys


def esc(b):
    """Escape bytes into a one-word, printable, unambiguous string."""
    out = []
    for c in b:
        if c <= 0x20 or c >= 0x7F or c == 0x5C:
            out.append("\\x%02x" % c)
        else:
            out.append(chr(c))
    return "".join(out)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def kind(m):
    if stat.S_ISDIR(m):
        return "dir"
    if stat.S_ISREG(m):
        return "reg"
    if stat.S_ISLNK(m):
        return "symlink"
    if stat.S_ISCHR(m):
        return "char"
    if stat.S_ISBLK(m):
        return "block"
    if stat.S_ISFIFO(m):
        return "fifo"
    if stat.S_ISSOCK(m):
        return "socket"
    return "unknown"


def walk(top):
    """Yield relative paths (bytes) of everything below top, no symlink follow."""
    stack = [b""]
    while stack:
        rel = stack.pop()
        full = os.path.join(top, rel) if rel else top
        with os.scandir(full) as it:
            for e in it:
                r = os.path.join(rel, e.name) if rel else e.name
                yield r
                if e.is_dir(follow_symlinks=False):
                    stack.append(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--root", action="store_true", help="include DIR itself as '.'")
    ap.add_argument("--no-dir-mtime", action="store_true")
    ap.add_argument("--no-symlink-mtime", action="store_true")
    ap.add_argument("--no-xattrs", action="store_true")
    ap.add_argument("--no-owner", action="store_true")
    ap.add_argument("--xattr-exclude", action="append", default=[], metavar="PREFIX",
                    help="leave out xattrs whose name starts with PREFIX")
    ap.add_argument("--exclude", action="append", default=[],
                    help="leave out this relative path and everything below it")
    args = ap.parse_args()

    top = os.fsencode(args.dir)
    excl = [os.fsencode(x).rstrip(b"/") for x in args.exclude]

    def excluded(rel):
        return any(rel == x or rel.startswith(x + b"/") for x in excl)

    paths = [p for p in walk(top) if not excluded(p)]
    if args.root:
        paths.append(b".")
    paths.sort()

    info = {}
    inodes = {}
    for p in paths:
        full = top if p == b"." else os.path.join(top, p)
        st = os.lstat(full)
        info[p] = st
        if stat.S_ISREG(st.st_mode):
            inodes.setdefault((st.st_dev, st.st_ino), []).append(p)

    out = sys.stdout.buffer
    for p in paths:
        st = info[p]
        full = top if p == b"." else os.path.join(top, p)
        k = kind(st.st_mode)
        f = [esc(p), "type=" + k, "mode=%04o" % stat.S_IMODE(st.st_mode)]
        if not args.no_owner:
            f += ["uid=%d" % st.st_uid, "gid=%d" % st.st_gid]
        if k in ("reg", "symlink"):
            f.append("size=%d" % st.st_size)
        if not ((k == "dir" and args.no_dir_mtime) or
                (k == "symlink" and args.no_symlink_mtime)):
            f.append("mtime=%d" % (st.st_mtime_ns // 1000000000))
        if k == "symlink":
            f.append("target=" + esc(os.readlink(full)))
        if k in ("char", "block"):
            f.append("dev=%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
        if k == "reg":
            f.append("sha256=" + sha256_file(full))
        if not args.no_xattrs:
            try:
                names = os.listxattr(full, follow_symlinks=False)
            except OSError:
                names = []
            for n in sorted(names):
                if any(n.startswith(x) for x in args.xattr_exclude):
                    continue
                try:
                    v = os.getxattr(full, n, follow_symlinks=False)
                except OSError as e:
                    v = ("<error %d>" % e.errno).encode()
                f.append("xattr.%s=0x%s" % (esc(os.fsencode(n)), v.hex()))
        if k == "reg":
            group = inodes[(st.st_dev, st.st_ino)]
            if len(group) > 1:
                if group[0] == p:
                    f.append("hardlinks=%d" % len(group))
                else:
                    f.append("hardlink=" + esc(group[0]))
        out.write((" ".join(f) + "\n").encode())


if __name__ == "__main__":
    main()
