#!/usr/bin/env bash
# make-corpus.sh DIR: build a source tree that exercises every tar feature an
# eStargz converter must carry, and archive it in several tar flavours.
#
# Output in DIR:
#   src/                    the source tree (root-owned, needs root for devices,
#                           trusted.* xattrs and odd owners)
#   gnu.tar                 GNU format, --sparse (no xattrs: GNU format has none)
#   pax.tar                 PAX with --xattrs --xattrs-include='*' --sparse
#   ustar.tar               ustar, of the subset ustar can represent
#   {gnu,pax,ustar}.tar.gz  gzip -n of the above
#   {gnu,pax,ustar}.tar.zst zstd of the above
#   interop.tar{,.gz}       PAX without the sparse files (for the Go converter)
#   FLAVOURS                the flavour names, one a line
#
# Everything is deterministic (seeded data, fixed mtimes, sorted archive order)
# so two runs produce identical tars.
#
# Set CORPUS_BIG_MIB (default 20) to change the size of the many-chunk file.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "$0: must run as root (devices, trusted.* xattrs, owners)" >&2
	exit 2
fi

out=$1
PY=${PYTHON:-python3}
big_mib=${CORPUS_BIG_MIB:-20}
export LC_ALL=C
# Fixed times: 2021-03-04T05:06:07Z for files, a different one for dirs so a
# mix-up between them shows in a comparison.
T_FILE=1614834367
T_DIR=1600000000
T_LINK=1500000000

mkdir -p "$out"
rm -rf "$out/src"
mkdir "$out/src"
s=$out/src

# Deterministic pseudo-random bytes: PRNG seeded by name.
randfile() { # PATH SIZE SEED
	"$PY" - "$1" "$2" "$3" <<'PYEOF'
import random, sys
path, size, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = random.Random(seed)
with open(path, "wb") as f:
    left = size
    while left:
        n = min(left, 1 << 20)
        f.write(r.randbytes(n))
        left -= n
PYEOF
}

# --- plain files ------------------------------------------------------------
mkdir -p "$s/etc" "$s/bin" "$s/data" "$s/empty-dir"
printf 'hello, world\n' >"$s/etc/hello.txt"
: >"$s/etc/empty"
: >"$s/data/empty2"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$s/etc/passwd"
# Exactly one 512-byte tar block, and one byte more, to probe padding edges.
head -c 512 /dev/zero | tr '\0' 'a' >"$s/data/block512"
head -c 513 /dev/zero | tr '\0' 'b' >"$s/data/block513"
# Highly compressible 3 MiB of zeros and a 5 MiB file (> default 4 MiB chunk).
head -c $((3 << 20)) /dev/zero >"$s/data/zeros-3m"
randfile "$s/data/rand-5m" $((5 << 20)) rand5
# The many-chunk file: 20 MiB random (5 chunks of 4 MiB, 20 of 1 MiB).
randfile "$s/data/big" $((big_mib << 20)) big
# A file exactly 1 MiB (one full chunk at --chunk-size 1048576).
randfile "$s/data/exact-1m" $((1 << 20)) exact1
# A file 4 MiB + 1 (one byte in a second default-size chunk).
randfile "$s/data/four-m-plus-1" $(((4 << 20) + 1)) fourplus

# --- links ------------------------------------------------------------------
ln "$s/data/big" "$s/data/big-hardlink"            # hardlink to a chunked file
ln "$s/etc/hello.txt" "$s/bin/hello-hardlink"      # hardlink across dirs
ln "$s/etc/empty" "$s/etc/empty-hardlink"          # hardlink to an empty file
ln -s hello.txt "$s/etc/hello-symlink"             # relative symlink
ln -s /etc/passwd "$s/etc/abs-symlink"             # absolute symlink
ln -s ../no/such/file "$s/etc/dangling-symlink"    # dangling symlink
ln -s ../etc "$s/bin/dir-symlink"                  # symlink to a directory

# --- special files ----------------------------------------------------------
mkdir -p "$s/dev"
mknod "$s/dev/null-ish" c 1 3
mknod "$s/dev/odd-char" c 250 1000   # minor > 255 needs the "new" dev_t split
mknod "$s/dev/loop-ish" b 7 0
mknod "$s/dev/odd-block" b 259 70000
mkfifo "$s/dev/fifo"
chmod 0600 "$s/dev/odd-char"
chmod 0640 "$s/dev/fifo"

# --- modes and owners -------------------------------------------------------
printf '#!/bin/sh\necho suid\n' >"$s/bin/setuid"
chmod 4755 "$s/bin/setuid"
printf '#!/bin/sh\necho sgid\n' >"$s/bin/setgid"
chmod 2711 "$s/bin/setgid"
mkdir "$s/tmp"
chmod 1777 "$s/tmp"
printf 'private\n' >"$s/etc/private"
chmod 0400 "$s/etc/private"
printf 'odd owner\n' >"$s/data/odd-owner"
chown 12345:54321 "$s/data/odd-owner"
mkdir "$s/home-12345"
chown 12345:12345 "$s/home-12345"
chmod 0750 "$s/home-12345"
printf 'mine\n' >"$s/home-12345/file"
chown 12345:12345 "$s/home-12345/file"
ln -s file "$s/home-12345/link"
chown -h 12345:12345 "$s/home-12345/link"
printf 'big ids\n' >"$s/data/big-ids"
chown 2000000:2000001 "$s/data/big-ids"   # still fits ustar's 7 octal digits
printf 'no perms\n' >"$s/data/mode-000"
chmod 000 "$s/data/mode-000"

# --- xattrs -----------------------------------------------------------------
mkdir "$s/xattrs"
printf 'xattr file\n' >"$s/xattrs/file"
setfattr -n user.comment -v "a plain comment" "$s/xattrs/file"
setfattr -n user.binary -v 0x00ff10fe80 "$s/xattrs/file"
setfattr -n user.empty "$s/xattrs/file"
setfattr -n trusted.overlay.redirect -v "/somewhere" "$s/xattrs/file"
setfattr -n trusted.secret -v "root only" "$s/xattrs/file"
mkdir "$s/xattrs/dir"
setfattr -n user.dirattr -v "on a directory" "$s/xattrs/dir"
setfattr -n trusted.overlay.opaque -v y "$s/xattrs/dir"
printf 'big\n' >"$s/xattrs/chunked-with-xattr"
randfile "$s/xattrs/chunked-with-xattr" $((2 << 20)) xattrchunk
setfattr -n user.big -v "0x$(head -c 2000 /dev/zero | tr '\0' 'x' | xxd -p | tr -d '\n')" \
	"$s/xattrs/chunked-with-xattr"

# --- whiteouts and opaque dirs ----------------------------------------------
mkdir -p "$s/whiteouts/opaque" "$s/whiteouts/plain"
: >"$s/whiteouts/.wh.removed-file"
: >"$s/whiteouts/.wh.removed-dir"
: >"$s/whiteouts/opaque/.wh..wh..opq"
printf 'kept\n' >"$s/whiteouts/opaque/kept"
printf 'plain\n' >"$s/whiteouts/plain/file"

# --- names ------------------------------------------------------------------
mkdir -p "$s/names"
printf 'unicode\n' >"$s/names/ünïcödé-文件-😀.txt"
mkdir "$s/names/répertoire-目录"
printf 'x\n' >"$s/names/répertoire-目录/ファイル"
printf 'space\n' >"$s/names/with space and 'quote'"
printf 'newline\n' >"$s/names/tab	in-name"
printf 'dash\n' >"$s/names/-leading-dash"
printf 'dots\n' >"$s/names/..double-dot-prefix"
printf 'percent\n' >"$s/names/100%-%s-%n"
# names over 100 bytes and paths over 255 bytes (only GNU and PAX carry them)
mkdir -p "$s/long"
long150=$(printf 'n%.0s' $(seq 150))
printf 'long name\n' >"$s/long/$long150"
d=$s/long
for i in 1 2 3; do
	d="$d/$(printf "d${i}%.0s" $(seq 40))"   # 80-byte components
done
mkdir -p "$d"
printf 'deep\n' >"$d/$(printf 'f%.0s' $(seq 60))"
ln -s "$long150" "$s/long/link-to-long"
ln "$s/long/$long150" "$d/hardlink-to-long"
ln -s "$(printf 't%.0s' $(seq 120))" "$s/long/long-symlink-target"

# --- sparse -----------------------------------------------------------------
mkdir "$s/sparse"
truncate -s 8M "$s/sparse/holes"
printf 'in the middle' | dd of="$s/sparse/holes" bs=1 seek=$((3 << 20)) conv=notrunc status=none
printf 'at the end' | dd of="$s/sparse/holes" bs=1 seek=$(((8 << 20) - 10)) conv=notrunc status=none
truncate -s 1M "$s/sparse/all-hole"

# --- times ------------------------------------------------------------------
# Files first, then symlinks, then directories deepest first so that setting a
# child's time does not disturb its parent afterwards.
find "$s" ! -type d ! -type l -exec touch -h -d "@$T_FILE" {} +
find "$s" -type l -exec touch -h -d "@$T_LINK" {} +
touch -h -d "@$((T_FILE + 86400))" "$s/etc/hello.txt"
find "$s" -depth -type d -exec touch -d "@$T_DIR" {} +

# --- archives ---------------------------------------------------------------
# Members in sorted order, without a "./" prefix (like image layers).
mapfile -d '' top < <(cd "$s" && find . -mindepth 1 -maxdepth 1 -printf '%P\0' | sort -z)
common=(--sort=name --numeric-owner --sparse -C "$s")

tar --format=gnu "${common[@]}" -cf "$out/gnu.tar" -- "${top[@]}"
tar --format=pax --xattrs --xattrs-include='*' --pax-option=delete=atime,delete=ctime \
	"${common[@]}" -cf "$out/pax.tar" -- "${top[@]}"
# ustar cannot hold the long names/paths or sparse maps: leave those out.
tar --format=ustar --sort=name --numeric-owner -C "$s" \
	--exclude=./long --exclude=long --exclude=sparse \
	-cf "$out/ustar.tar" -- "${top[@]}"

# The reference converter (stargz-snapshotter 0.12's Go code) cannot write
# GNU sparse members ("archive/tar: missed writing"): interop uses PAX without
# the sparse files.
tar --format=pax --xattrs --xattrs-include='*' --pax-option=delete=atime,delete=ctime \
	--sort=name --numeric-owner -C "$s" --exclude=sparse -cf "$out/interop.tar" -- "${top[@]}"
gzip -n -6 -c "$out/interop.tar" >"$out/interop.tar.gz"

for f in gnu pax ustar; do
	gzip -n -6 -c "$out/$f.tar" >"$out/$f.tar.gz"
	zstd -q -f -3 -o "$out/$f.tar.zst" "$out/$f.tar"
done
printf '%s\n' gnu pax ustar >"$out/FLAVOURS"
echo "make-corpus: wrote $out/{gnu,pax,ustar}.tar{,.gz,.zst}" >&2
