#!/usr/bin/env bash
# Mode bits of every file and directory the daemon and `stargz mount
# --cache-dir` create: nothing readable, writable or searchable by group or
# others (both run under umask 000 here, so every mode is the code's own),
# except what containers need, as containerd's overlayfs snapshotter has it:
# snapshots/<id>/fs 0755 (the upper dir is the container's /; a lazy layer's
# is the image's root dir, served by FUSE) and snapshots/<id>/work 0711
# (overlayfs's workdir); what is inside fs/ is the image's or the
# container's. The API socket is 0660 under a 0700 directory. Env: RS_DAEMON,
# STARGZ.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
. "$(dirname "$0")/daemon-lib.sh"

need_root
need_stargz
need_tools containerd ctr runc skopeo jq
"$STARGZ" rpull --help >/dev/null 2>&1 || skip "stargz rpull not built"
[ -x "$RS_DAEMON" ] || skip "remote-snapshotter not built"

registry_start_plain || finish
REG=$PLAIN_REG
seed_image "$REG" rs/busybox:gz || finish
sg convert convert --plain-http "$REG/rs/busybox:gz" "$REG/rs/busybox:esgz"
expect_rc "stargz convert of the busybox image to eStargz" 0 convert || finish
REF=$REG/rs/busybox:esgz

# modes_check WHAT DIR: fails on any path under DIR (DIR included) with a
# group or other bit, but for the exceptions above.
modes_check() {
	local what=$1 dir=$2 bad
	find "$dir" \( -path "$dir/snapshots/*/fs" -prune \) -o -printf '%m %y %p\n' >"$T/modes-$what.txt"
	bad=$(awk -v d="$dir" '
		{ m = $1; p = $3 }
		p ~ "^" d "/snapshots/[0-9]+/work$" && m == "711" { next }
		m !~ /^[0-7]00$/ { print }' "$T/modes-$what.txt")
	find "$dir" -path "$dir/snapshots/*/fs" -prune -printf '%m %p\n' >"$T/modes-$what-fs.txt"
	local badfs
	badfs=$(awk '$1 != "755"' "$T/modes-$what-fs.txt")
	local n
	n=$(grep -c '' "$T/modes-$what.txt")
	if [ -z "$bad" ] && [ -z "$badfs" ]; then
		pass "$what: no group or other bit on any of $n paths (fs dirs 0755, work dirs 0711)"
	else
		fail "$what: paths with group or other bits"
		printf '%s\n%s\n' "$bad" "$badfs" | sed '/^$/d; s/^/    | /' | head -40
	fi
}

# --- the daemon -------------------------------------------------------------------------
RS_SOCK=$T/run/rs/rs.sock
old_umask=$(umask)
umask 000
daemon_start --log-level debug || finish
umask "$old_umask"
ctrd_with_stargz || finish
rpull pull1 "$REF" --snapshotter stargz
expect_rc "stargz rpull $REF" 0 pull1
check "the layers are lazy" [ "$(grep -c ' lazy' "$T/pull1.out")" -eq 3 ]
run run1 timeout 60 "${CTR[@]}" run --snapshotter stargz "$REF" rs-modes-1 \
	sh -c 'cat /etc/hello.txt >/dev/null; echo x >/written'
expect_rc "ctr run on the lazily pulled image" 0 run1
"${CTR[@]}" containers rm rs-modes-1 >/dev/null 2>&1
# An ordinary pull too: snapshots the daemon makes, containerd fills.
run gzpull timeout 120 "${CTR[@]}" images pull --plain-http --snapshotter stargz "$REG/rs/busybox:gz"
expect_rc "ctr images pull --snapshotter stargz of the gzip image" 0 gzpull
sleep 2 # the background fetch writes the disk cache
n_cache=$(find "$RS_ROOT/cache" -type f -path '*/sha256/*' | wc -l)
check "the disk cache holds chunks ($n_cache)" [ "$n_cache" -gt 0 ]
check "metadata.db exists" [ -f "$RS_ROOT/metadata.db" ]
modes_check daemon-root "$RS_ROOT"
sm=$(stat -c %a "$RS_SOCK")
dm=$(stat -c %a "$(dirname "$RS_SOCK")")
check "the API socket is 0660 ($sm) in a 0700 directory ($dm)" [ "$sm" = 660 -a "$dm" = 700 ]
containerd_stop
daemon_kill TERM
check "the daemon exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
modes_check daemon-root-after-stop "$RS_ROOT"

# --- stargz mount --cache-dir -------------------------------------------------------
need_mount
SRC=$T/mnt-src
mkdir -p "$SRC/d"
echo "cached file" >"$SRC/d/a.txt"
head -c 300000 /dev/urandom >"$SRC/d/b.bin"
tar -C "$SRC" -cf "$T/m.tar" d
sg mbuild build "$T/m.tar" "$T/m.esgz"
expect_rc "stargz build" 0 mbuild || finish
cp "$T/mbuild.out" "$T/m.esgz.json"
push_image "$REG" rs/modes:1 "$T/m.esgz" || finish
DG=$(skopeo inspect --raw --tls-verify=false "docker://$REG/rs/modes:1" | jq -r '.layers[0].digest')
CD=$T/mcache
M=$T/mnt
mkdir -p "$M"
umask 000
mount_start mc --plain-http --no-prefetch --cache-dir "$CD" --toc-digest "$(jq -r .tocDigest "$T/m.esgz.json")" \
	"$REG/rs/modes:1" "$DG" "$M"
ok=$?
umask "$old_umask"
if [ "$ok" -eq 0 ]; then
	cat "$M/d/a.txt" "$M/d/b.bin" >/dev/null
	wait_status "$M" '.state == "complete"' 30 || true
	mount_stop "$MOUNT_PID"
	n=$(find "$CD" -type f -path '*/sha256/*' | wc -l)
	check "stargz mount --cache-dir wrote chunks ($n)" [ "$n" -gt 0 ]
	modes_check stargz-mount-cache-dir "$CD"
fi

finish
