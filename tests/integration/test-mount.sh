#!/usr/bin/env bash
# `stargz mount` against a real docker-registry, with real FUSE and overlayfs:
#   * a layer of the test corpus (every entry type, xattrs, whiteouts, long and
#     odd names, hardlinks, sparse files; --chunk-size 1 MiB) mounted by digest
#     shows exactly the tree GNU tar and `stargz extract` make of the blob
#     (names, types, modes, owners, sizes, mtimes, xattrs but the TOC's
#     trusted.* and security.* ones, which are not served, link targets,
#     hardlinks sharing an inode, sha256 of every file), with whiteouts as
#     overlayfs wants them (`.wh.X` -> 0/0 char device X, `.wh..wh..opq` ->
#     trusted.overlay.opaque=y); landmarks, `.wh.*` names and the status dir
#     cannot be listed; the status file is valid JSON and reaches complete;
#   * cp -a, tar -c and sha256sum over the whole mount finish and match;
#     lseek SEEK_DATA/SEEK_HOLE is sane and cp of a sparse file finishes;
#   * `--all --no-prefetch --no-background-fetch`: both layers mounted at
#     DIR/0 and DIR/1, 2 x 8 threads pread random ranges of the same and of
#     different files and compare every byte; an mmap of an untouched 16 MiB
#     file matches; the status stays lazy;
#   * a 3-layer image built here with GNU tar (whiteouts of files, dirs and a
#     symlink, opaque dirs, a file replaced by a dir and back, a deleted dir
#     recreated, a middle layer's dir mode and xattr) under overlayfs
#     (lowerdir=2:1:0) gives the tree applying the layers in order gives, and
#     no landmark file;
#   * an empty layer and one layer used twice in an image;
#   * another uid sees the TOC's permissions (allow_other, default_permissions);
#   * SIGTERM / SIGINT: exit 0 and the mountpoints are gone;
#   * bad input: a digest the registry lacks, the config's digest, a wrong
#     --toc-digest (exit 1), no TOC digest without --allow-unverified (exit 1),
#     a missing mountpoint, a bad digest, a bad ref.
# Skips (77) while `stargz mount` is missing.  Registry on 127.0.0.1 only.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
need_mount
need_tools docker-registry skopeo curl jq tar gzip mountpoint timeout setfattr

MC=("$RIG_PY" "$TESTS_DIR/mount_check.py")
LANDMARKS=(--exclude .prefetch.landmark --exclude .no.prefetch.landmark --exclude stargz.index.json)
HIDDEN=(--exclude .remote-snapshotter)

registry_start_plain || die "plain registry"
R=$PLAIN_REG
corpus

# --- the corpus image: layer 0 the corpus, layer 1 large files ---------------------
mkdir -p "$T/big/large/small"
"$RIG_PY" - "$T/big/large" <<'PY' || die "large files"
import os, random, sys
d = sys.argv[1]
r = random.Random(11)
with open(os.path.join(d, "mixed.bin"), "wb") as f:
    for i in range(24):  # 24 x (1 MiB random + 256 KiB zeros + 100 KiB text) ~ 32 MiB
        f.write(r.randbytes(1 << 20))
        f.write(bytes(256 << 10))
        f.write((b"line %06d of some compressible text\n" % i) * 2800)
with open(os.path.join(d, "mmap.bin"), "wb") as f:
    f.write(r.randbytes(16 << 20))
for i in range(32):
    with open(os.path.join(d, "small", "s%02d" % i), "wb") as f:
        f.write(r.randbytes(r.randrange(1, 20000)))
open(os.path.join(d, "empty"), "wb").close()
os.mkdir(os.path.join(d, "many"))  # a directory that takes many getdents calls
for i in range(3000):
    open(os.path.join(d, "many", "%04d-%s" % (i, "x" * 96)), "wb").close()
PY
find "$T/big" -exec touch -h -d @1614834367 {} +
tar -C "$T/big" --sort=name --numeric-owner --owner=0 --group=0 -cf "$T/big.tar" large || die "big.tar"
"$STARGZ" build --chunk-size 1048576 "$CORPUS/pax.tar" "$T/l0.esgz" >"$T/l0.esgz.json" || die "stargz build (corpus)"
"$STARGZ" build --chunk-size 262144 "$T/big.tar" "$T/l1.esgz" >"$T/l1.esgz.json" || die "stargz build (large)"
push_image "$R" rs/corpus:v1 "$T/l0.esgz" "$T/l1.esgz" || die "push rs/corpus:v1"
DG0=$(jq -r .digest "$T/l0.esgz.json")
DG1=$(jq -r .digest "$T/l1.esgz.json")
TOC0=$(jq -r .tocDigest "$T/l0.esgz.json")
REF=$R/rs/corpus:v1
pass "corpus image pushed: layer 0 $DG0 ($(size_of "$T/l0.esgz") bytes), layer 1 $DG1"

# References: GNU tar's and stargz extract's view of each blob.
gnu_extract "$T/l0.esgz" "$T/x0g" -z || die "GNU tar cannot extract layer 0"
gnu_extract "$T/l1.esgz" "$T/x1g" -z || die "GNU tar cannot extract layer 1"
"$STARGZ" extract "$T/l0.esgz" "$T/x0s" >/dev/null 2>"$T/x0s.err" || die "stargz extract layer 0"
# The mount serves no trusted.* or security.* xattr from a TOC (only the
# opaque marker of a `.wh..wh..opq`, which whiteout_manifest adds back).
TOC_XATTRS=(--xattr-exclude trusted. --xattr-exclude security.)
whiteout_manifest "$T/x0g" "${LANDMARKS[@]}" "${TOC_XATTRS[@]}" >"$T/want0g" || die "manifest x0g"
whiteout_manifest "$T/x0s" "${LANDMARKS[@]}" "${TOC_XATTRS[@]}" >"$T/want0s" || die "manifest x0s"
whiteout_manifest "$T/x1g" "${LANDMARKS[@]}" "${TOC_XATTRS[@]}" >"$T/want1" || die "manifest x1g"

# same_manifest DESC WANT GOT: compare two manifest files.
same_manifest() {
	if cmp -s "$2" "$3"; then
		pass "$1 ($(wc -l <"$2") paths)"
		return 0
	fi
	fail "$1: trees differ (- want, + got)"
	diff -u "$2" "$3" | tail -n +3 | grep '^[-+]' | head -n "${SHOW_LINES:-40}" | cut -c1-300 | sed 's/^/    | /'
	return 1
}

# --- one layer by digest, defaults (prefetch + background) -------------------------
M=$T/m1
mkdir "$M"
if mount_start m1 --plain-http --toc-digest "$TOC0" "$REF" "$DG0" "$M"; then
	pass "stargz mount REF $DG0 MOUNTPOINT is ready"
	THREADS_ONE=$(awk '/^Threads:/ {print $2}' "/proc/$MOUNT_PID/status")
	if [ "$(cat "$T/m1.out")" = "$(printf 'mounted %s at %s\nready' "$DG0" "$M")" ]; then
		pass "stdout: 'mounted DIGEST at MOUNTPOINT' then 'ready'"
	else
		fail "stdout not as specified"
		show_file "$T/m1.out" stdout
	fi
	is_mounted "$M" && pass "$M is a mountpoint" || fail "$M is not a mountpoint"
	log "mounted as $(findmnt -rn -o FSTYPE,OPTIONS --target "$M")"

	# status file
	if timeout 20 cat "$M/$STATUS_REL" >"$T/status1" 2>"$T/status1.err"; then
		if jq -e --arg d "$DG0" --argjson s "$(size_of "$T/l0.esgz")" '
			.digest == $d and .size == $s and (.percent | type == "number" and . >= 0 and . <= 100) and
			(.state | IN("prefetching", "fetching", "lazy", "complete")) and .mounted == true and
			(.registry_ok | type == "boolean") and (.fetch_errors | type == "number") and
			(.verify_errors | type == "number") and (.entries | type == "number" and . > 0) and
			(.data_bytes | type == "number" and . > 0 and . <= $s) and
			(.fetched_bytes | type == "number" and . >= 0) and .fetched_bytes <= .data_bytes' "$T/status1" >/dev/null; then
			pass "status.json: valid, digest/size/percent/state/... ($(jq -c '{state, percent, entries}' "$T/status1"))"
		else
			fail "status.json: unexpected content"
			show_file "$T/status1"
		fi
	else
		fail "cannot read $M/$STATUS_REL"
		show_file "$T/status1.err"
	fi
	ls -a "$M" >"$T/ls-root" 2>&1
	if grep -qx -e .remote-snapshotter -e status.json "$T/ls-root"; then
		fail "ls -a MOUNT lists the status dir"
	else
		pass "ls -a MOUNT does not list .remote-snapshotter"
	fi
	if grep -qx -e .no.prefetch.landmark -e .prefetch.landmark -e stargz.index.json "$T/ls-root"; then
		fail "ls -a MOUNT lists eStargz internals: $(grep -x -e .no.prefetch.landmark -e .prefetch.landmark -e stargz.index.json "$T/ls-root" | tr '\n' ' ')(the reference snapshotter hides landmarks in /; a container would see them)"
	else
		pass "ls -a MOUNT does not list the landmark or the TOC"
	fi
	[ -e "$M/stargz.index.json" ] && fail "stargz.index.json can be looked up" || pass "stargz.index.json cannot be looked up"
	if [ -e "$M/whiteouts/.wh.removed-file" ] || [ -e "$M/whiteouts/opaque/.wh..wh..opq" ]; then
		fail ".wh.* names can be looked up in the mount"
	else
		pass ".wh.* names cannot be looked up"
	fi

	# the whole tree
	mount_manifest "$M" "${LANDMARKS[@]}" "${HIDDEN[@]}" >"$T/got1" 2>"$T/got1.err" ||
		{ fail "tree_manifest of the mount failed or hung"; show_file "$T/got1.err"; }
	same_manifest "mounted layer = GNU tar's extraction (whiteouts as overlayfs wants them)" "$T/want0g" "$T/got1"
	same_manifest "mounted layer = stargz extract" "$T/want0s" "$T/got1"
	[ "$(stat -c %h "$M/data/big")" = 2 ] && [ "$(stat -c %i "$M/data/big")" = "$(stat -c %i "$M/data/big-hardlink")" ] &&
		pass "hardlinks: one inode, link count 2" || fail "hardlinks: data/big nlink $(stat -c %h "$M/data/big"), inodes differ?"
	stat -f "$M" >/dev/null 2>&1 && pass "statfs works" || fail "statfs on the mount fails"
	# allow_other + default_permissions: another user gets the TOC's modes
	if command -v setpriv >/dev/null; then
		chmod o+x "$T" # the way to the mountpoint
		as12345=(setpriv --reuid 12345 --regid 12345 --clear-groups)
		if "${as12345[@]}" cat "$M/home-12345/file" >/dev/null 2>&1 &&
			! "${as12345[@]}" cat "$M/etc/private" >/dev/null 2>&1 &&
			! "${as12345[@]}" cat "$M/data/mode-000" >/dev/null 2>&1 &&
			"${as12345[@]}" cat "$M/etc/hello.txt" >/dev/null 2>&1; then
			pass "uid 12345 reads its own and world-readable files, not 0400/0000 root files"
		else
			fail "permissions for uid 12345 not as the TOC's modes say"
		fi
	fi

	# cp -a, tar -c, sha256sum
	run cpa timeout 120 cp -a "$M" "$T/cp"
	if expect_rc "cp -a of the whole mount finishes" 0 cpa; then
		mount_manifest "$T/cp" "${LANDMARKS[@]}" >"$T/got-cp"
		same_manifest "cp -a copy = expected tree" "$T/want0g" "$T/got-cp"
	fi
	run tarc timeout 120 tar -C "$M" --xattrs --xattrs-include='*' --numeric-owner --sort=name -cf "$T/m1.tar" .
	if expect_rc "tar -c of the whole mount finishes" 0 tarc; then
		gnu_extract "$T/m1.tar" "$T/tarx"
		mount_manifest "$T/tarx" "${LANDMARKS[@]}" >"$T/got-tar"
		same_manifest "tar -c of the mount, extracted = expected tree" "$T/want0g" "$T/got-tar"
	fi
	run rsyncm timeout 120 rsync -aHAX --numeric-ids "$M/" "$T/rsync/"
	if expect_rc "rsync -aHAX of the whole mount finishes" 0 rsyncm; then
		mount_manifest "$T/rsync" "${LANDMARKS[@]}" >"$T/got-rsync"
		same_manifest "rsync copy = expected tree" "$T/want0g" "$T/got-rsync"
	fi
	(cd "$M" && timeout 120 find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$T/sum-m" 2>"$T/sum-m.err"
	rc=$?
	(cd "$T/x0g" && find . -type f ! -name '.wh.*' ! -name stargz.index.json ! -name '.*prefetch.landmark' -print0 |
		sort -z | xargs -0 sha256sum) >"$T/sum-x"
	grep -v -e '\./\.no\.prefetch\.landmark$' -e '\./\.prefetch\.landmark$' "$T/sum-m" >"$T/sum-m2"
	if [ "$rc" = 0 ] && cmp -s "$T/sum-x" "$T/sum-m2"; then
		pass "sha256sum of every file in the mount finishes and matches ($(wc -l <"$T/sum-x") files)"
	else
		fail "sha256sum over the mount: exit $rc or sums differ"
		diff "$T/sum-x" "$T/sum-m2" | head -n 10 | sed 's/^/    | /'
	fi

	# lseek
	for f in data/big sparse/holes sparse/all-hole etc/empty etc/hello.txt; do
		run "seek-${f//\//_}" timeout 60 "${MC[@]}" seek "$M/$f" "$T/x0g/$f"
		expect_rc "lseek SEEK_DATA/SEEK_HOLE on $f is sane: $(head -c 100 "$T/seek-${f//\//_}.out")" 0 "seek-${f//\//_}"
	done
	run cps timeout 60 cp "$M/sparse/holes" "$T/holes.copy"
	[ "$RC" = 0 ] && cmp -s "$T/holes.copy" "$T/x0g/sparse/holes" && pass "cp of sparse/holes finishes and matches" ||
		fail "cp of sparse/holes: exit $RC or differs"
	run cpss timeout 60 cp --sparse=always "$M/sparse/holes" "$T/holes.sparse"
	[ "$RC" = 0 ] && cmp -s "$T/holes.sparse" "$T/x0g/sparse/holes" && pass "cp --sparse=always of sparse/holes finishes and matches" ||
		fail "cp --sparse=always of sparse/holes: exit $RC or differs"

	if wait_status "$M" '.percent == 100 and .state == "complete" and .fetched_bytes == .data_bytes' 90; then
		pass "status reaches percent 100 / complete ($(jq -c '{fetched_bytes, data_bytes, fetch_errors, verify_errors}' "$T/status.last"))"
	else
		fail "status did not reach complete in 90 s"
		show_file "$T/status.last"
	fi

	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] && pass "SIGTERM: stargz mount exits 0" || fail "SIGTERM: stargz mount exit $RC (124: did not exit in 20 s)"
	is_mounted "$M" && fail "after SIGTERM $M is still a mountpoint" || pass "after SIGTERM $M is no longer a mountpoint"
	show_file "$T/m1.err" "stderr of stargz mount" | head -n 5
fi

# --- all layers, lazy -------------------------------------------------------------------
A=$T/all
if mount_start all --all --plain-http --no-prefetch --no-background-fetch "$REF" "$A"; then
	pass "stargz mount --all --no-prefetch --no-background-fetch is ready"
	if [ "$(cat "$T/all.out")" = "$(printf 'mounted %s at %s\nmounted %s at %s\nready' "$DG0" "$A/0" "$DG1" "$A/1")" ]; then
		pass "--all: layer 0 at DIR/0, layer 1 at DIR/1 (DIR created), then ready"
	else
		fail "--all: unexpected stdout"
		show_file "$T/all.out"
	fi
	is_mounted "$A/0" && is_mounted "$A/1" && pass "--all: DIR/0 and DIR/1 are mountpoints" || fail "--all: not mounted"
	timeout 20 cat "$A/1/$STATUS_REL" >"$T/status-all" 2>/dev/null
	jq -e --arg d "$DG1" '.digest == $d and .state == "lazy" and .percent < 100' "$T/status-all" >/dev/null &&
		pass "--all lazy: layer 1 status is lazy, $(jq .percent "$T/status-all") % fetched" ||
		{ fail "--all lazy: unexpected status of layer 1"; show_file "$T/status-all"; }

	run readers1 timeout 150 "${MC[@]}" readers --threads 8 --ops 300 --seed 1 "$A/1" "$T/x1g" \
		large/mixed.bin large/small/s03 large/small/s17 large/small/s30 large/empty &
	rp=$!
	run readers0 timeout 150 "${MC[@]}" readers --threads 8 --ops 200 --seed 2 "$A/0" "$T/x0g" \
		data/big data/rand-5m data/four-m-plus-1 data/exact-1m sparse/holes etc/hello.txt data/block513 \
		xattrs/chunked-with-xattr "long/$(printf 'n%.0s' $(seq 150))"
	wait "$rp"
	for k in 1 0; do
		if jq -e '.errors == [] and .mismatches == [] and .reads > 0' "$T/readers$k.out" >/dev/null 2>&1; then
			pass "8 concurrent pread readers on layer $k: every byte matches ($(jq -c '{reads, bytes, secs}' "$T/readers$k.out"))"
		else
			fail "concurrent readers on layer $k: errors or mismatches"
			show_file "$T/readers$k.out"
			show_file "$T/readers$k.err"
		fi
	done
	run mmap timeout 120 "${MC[@]}" mmap "$A/1/large/mmap.bin" "$T/x1g/large/mmap.bin"
	expect_rc "mmap of an untouched 16 MiB file matches ($(cat "$T/mmap.out"))" 0 mmap
	timeout 20 cat "$A/1/$STATUS_REL" >"$T/status-all2" 2>/dev/null
	jq -e '.state == "lazy" and .fetched_bytes > 0 and .verify_errors == 0' "$T/status-all2" >/dev/null &&
		pass "--all lazy: after the reads layer 1 is still lazy, $(jq .fetched_bytes "$T/status-all2") bytes fetched" ||
		{ fail "--all lazy: unexpected status after reads"; show_file "$T/status-all2"; }
	mount_manifest "$A/1" "${LANDMARKS[@]}" "${HIDDEN[@]}" >"$T/got-all1" 2>"$T/got-all1.err" ||
		{ fail "tree_manifest of layer 1 failed or hung"; show_file "$T/got-all1.err"; }
	same_manifest "--all: layer 1 = GNU tar's extraction" "$T/want1" "$T/got-all1"

	kill -INT "$MOUNT_PID"
	for _ in $(seq 200); do
		kill -0 "$MOUNT_PID" 2>/dev/null || break
		sleep 0.1
	done
	int_alive=false
	kill -0 "$MOUNT_PID" 2>/dev/null && int_alive=true
	mount_stop "$MOUNT_PID" # reaps it (SIGTERM only if SIGINT did not end it)
	if $int_alive; then
		fail "SIGINT: stargz mount --all still running 20 s later"
	else
		[ "$RC" = 0 ] && pass "SIGINT: stargz mount --all exits 0" || fail "SIGINT: stargz mount --all exit $RC"
	fi
	if is_mounted "$A/0" || is_mounted "$A/1"; then fail "after SIGINT a layer is still mounted"; else pass "after SIGINT both layers are unmounted"; fi
fi

# --- three layers under overlayfs ------------------------------------------------------
O=$T/ov
mk() { # FILE CONTENT
	mkdir -p "$(dirname "$1")"
	printf '%s\n' "$2" >"$1"
}
wh() { # FILE: an empty (whiteout) file
	mkdir -p "$(dirname "$1")"
	: >"$1"
}
mk "$O/l0/etc/a" a0
mk "$O/l0/etc/b" b0
mk "$O/l0/etc/keep" keep0
mk "$O/l0/dir1/x" x0
mk "$O/l0/dir1/y" y0
mk "$O/l0/dir2/p" p0
mk "$O/l0/dir2/q" q0
mk "$O/l0/opq/old1" old1
mk "$O/l0/opq/sub/deep" deep
mk "$O/l0/gone-dir/f" f0
mk "$O/l0/gone-dir/sub/g" g0
mk "$O/l0/replace-me" "a file"
mk "$O/l0/will-be-file/inner" inner
mk "$O/l0/bin/tool" "#!/bin/sh"
chmod 0755 "$O/l0/bin/tool"
ln -s etc/a "$O/l0/link"
mk "$O/l0/dir3/from0" from0
"$RIG_PY" -c 'import random, sys; open(sys.argv[1], "wb").write(random.Random(4).randbytes(3 << 20))' "$O/l0/bin/big"

mk "$O/l1/etc/a" a1
wh "$O/l1/etc/.wh.b"
mk "$O/l1/dir1/z" z1
wh "$O/l1/.wh.gone-dir"
wh "$O/l1/opq/.wh..wh..opq"
mk "$O/l1/opq/new1" new1
mk "$O/l1/opq/new2" new2
mk "$O/l1/replace-me/inner" "now a dir"
mk "$O/l1/will-be-file" "now a file"
mkdir -p "$O/l1/dir2"
chmod 0700 "$O/l1/dir2"
mk "$O/l1/dir3/from1" from1
chmod 0750 "$O/l1/dir3"
setfattr -n user.layer -v one "$O/l1/dir3/from1"

wh "$O/l2/dir2/.wh.p"
wh "$O/l2/.wh.link"
mk "$O/l2/gone-dir/new" "back again"
mk "$O/l2/etc/b" b2
wh "$O/l2/etc/.wh.keep"
wh "$O/l2/opq/.wh.new1"
wh "$O/l2/dir1/.wh..wh..opq"
mk "$O/l2/dir1/only" only2
for i in 0 1 2; do
	find "$O/l$i" ! -type d -exec touch -h -d "@$((1614834367 + i * 1000))" {} +
	find "$O/l$i" -depth -type d -exec touch -d "@$((1600000000 + i * 1000))" {} +
	(cd "$O/l$i" && find . -mindepth 1 -printf '%P\n' | sort >"$O/l$i.list")
	tar -C "$O/l$i" --format=pax --xattrs --xattrs-include='*' --numeric-owner --owner=0 --group=0 --no-recursion \
		-cf "$O/l$i.tar" -T "$O/l$i.list" || die "tar layer $i"
	"$STARGZ" build --chunk-size 65536 "$O/l$i.tar" "$O/l$i.esgz" >"$O/l$i.esgz.json" || die "stargz build layer $i"
done
push_image "$R" rs/layers:v1 "$O/l0.esgz" "$O/l1.esgz" "$O/l2.esgz" || die "push rs/layers:v1"
"${MC[@]}" apply "$O/expect" "$O/l0.tar" "$O/l1.tar" "$O/l2.tar" || die "applying the layers"
LA=$T/layers
if ! need_overlay; then
	fail "no overlayfs in this kernel"
elif mount_start layers --all --plain-http "$R/rs/layers:v1" "$LA"; then
	threads=$(awk '/^Threads:/ {print $2}' "/proc/$MOUNT_PID/status")
	check "one event loop and fixed pools: 3 layers use as many threads as 1 ($threads vs ${THREADS_ONE:-?})" \
		[ "$threads" = "${THREADS_ONE:-x}" ]
	mkdir -p "$O/merged"
	if run ovl mount -t overlay overlay -o "lowerdir=$LA/2:$LA/1:$LA/0" "$O/merged" && [ "$RC" = 0 ]; then
		pass "overlayfs over the 3 mounted layers (lowerdir=2:1:0)"
		tree_manifest "$O/expect" --xattr-exclude trusted.overlay. >"$T/want-ov"
		tree_manifest "$O/merged" --xattr-exclude trusted.overlay. "${LANDMARKS[@]}" >"$T/got-ov"
		same_manifest "overlay of the mounted layers = the layers applied in order (whiteouts, opaque dirs, replacements)" \
			"$T/want-ov" "$T/got-ov"
		ls -a "$O/merged" >"$T/ls-ov"
		if grep -qx -e .no.prefetch.landmark -e .prefetch.landmark "$T/ls-ov"; then
			fail "the merged container root shows $(grep -x -e .no.prefetch.landmark -e .prefetch.landmark "$T/ls-ov" | tr '\n' ' ')(landmarks must be hidden)"
		else
			pass "the merged root shows no landmark file"
		fi
		umount "$O/merged" || umount -l "$O/merged"
	else
		fail "mount -t overlay over the layers failed"
		show_file "$T/ovl.err"
		dmesg 2>/dev/null | grep -i overlay | tail -n 5 | sed 's/^/    | /'
	fi
	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] && pass "3-layer mount: SIGTERM exits 0" || fail "3-layer mount: SIGTERM exit $RC"
fi

# --- an empty layer and the same layer twice ---------------------------------------------
mkdir -p "$T/dup/d/dir"
ln -s target "$T/dup/d/link"
touch -h -d @1614834367 "$T/dup/d/dir" "$T/dup/d/link"
tar -C "$T/dup" --numeric-owner -cf "$T/dup/empty.tar" --files-from /dev/null &&
	tar -C "$T/dup/d" --numeric-owner -cf "$T/dup/d.tar" dir link &&
	"$STARGZ" build "$T/dup/empty.tar" "$T/dup/empty.esgz" >"$T/dup/empty.esgz.json" &&
	"$STARGZ" build "$T/dup/d.tar" "$T/dup/d.esgz" >"$T/dup/d.esgz.json" ||
	die "building the empty / duplicate layers"
push_image "$R" rs/dup:v1 "$T/dup/empty.esgz" "$T/dup/d.esgz" "$T/dup/d.esgz" || die "push rs/dup:v1"
DA=$T/dupm
if mount_start dup --all --plain-http "$R/rs/dup:v1" "$DA"; then
	[ "$(grep -c '^mounted ' "$T/dup.out")" = 3 ] && pass "an image with an empty layer and one layer twice: 3 mounts" ||
		fail "empty/duplicate layers: $(grep -c '^mounted ' "$T/dup.out") mounts, want 3"
	[ -z "$(ls -A "$DA/0")" ] && pass "the empty layer's root is empty" || fail "the empty layer shows: $(ls -A "$DA/0" | head -n 5 | tr '\n' ' ')"
	wait_status "$DA/0" '.percent == 100 and .state == "complete"' 30 &&
		pass "the empty layer's status: 100 % complete" || { fail "the empty layer's status"; show_file "$T/status.last"; }
	tree_manifest "$T/dup/d" >"$T/want-dup"
	for i in 1 2; do
		mount_manifest "$DA/$i" "${LANDMARKS[@]}" >"$T/got-dup$i" 2>&1
		same_manifest "the twice-used layer at DIR/$i" "$T/want-dup" "$T/got-dup$i"
	done
	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] || fail "empty/duplicate layers: exit $RC at SIGTERM"
fi

# --- bad input ----------------------------------------------------------------------------
mkdir -p "$T/bad"
# bad_mount NAME ARGS...: stargz mount that must not come up; bounded.
bad_mount() {
	local name=$1
	shift
	# The layers lack a TOC digest: each case is to fail for its own reason.
	run "$name" timeout 60 "$STARGZ" mount --allow-unverified "$@"
	if is_mounted "$T/bad"; then
		fail "$name: $T/bad got mounted"
		umount -l "$T/bad"
	fi
}
# expect_err DESC NAME RCS REGEX
expect_err() {
	local desc=$1 name=$2 want=$3 re=$4
	if [ "$RC" = 124 ]; then
		fail "$desc: hung (killed after 60 s)"
	elif [[ "|$want|" != *"|$RC|"* ]]; then
		fail "$desc: exit $RC, want $want"
		show_file "$T/$name.out" stdout
		show_file "$T/$name.err" stderr
	elif ! grep -Eqi -- "$re" "$T/$name.err"; then
		fail "$desc: exit $RC but stderr does not match /$re/"
		show_file "$T/$name.err" stderr
	else
		pass "$desc (exit $RC: $(head -n 1 "$T/$name.err" | cut -c1-150))"
	fi
}
NODG=sha256:$(printf 'no such blob' | sha256sum | cut -d' ' -f1)
bad_mount bad-dg --plain-http "$REF" "$NODG" "$T/bad"
expect_err "a layer digest the registry lacks" bad-dg 3 "${NODG#sha256:}|not found|unknown|404"
CFG=$(skopeo inspect --raw --tls-verify=false "docker://$REF" | jq -r .config.digest)
bad_mount bad-cfg --plain-http "$REF" "$CFG" "$T/bad"
expect_err "the config's digest (not an eStargz layer)" bad-cfg "1|3" "estargz|footer|toc|format|layer|gzip"
bad_mount bad-toc --plain-http --toc-digest "sha256:$(printf '0%.0s' $(seq 64))" "$REF" "$DG0" "$T/bad"
expect_err "--toc-digest that does not match the TOC is refused" bad-toc 1 "toc|digest"
run bad-unverified timeout 60 "$STARGZ" mount --plain-http "$REF" "$DG0" "$T/bad"
is_mounted "$T/bad" && { fail "bad-unverified: $T/bad got mounted"; umount -l "$T/bad"; }
expect_err "a layer with no --toc-digest is refused without --allow-unverified" bad-unverified 1 "TOC digest.*allow_unverified"
bad_mount bad-mp --plain-http "$REF" "$DG0" "$T/no/such/dir"
expect_err "a missing mountpoint" bad-mp "2|3" "$T/no/such/dir|mountpoint|no such"
bad_mount bad-dgfmt --plain-http "$REF" sha256:xyz "$T/bad"
expect_err "a malformed layer digest is a usage error" bad-dgfmt 2 "digest"
bad_mount bad-ref --plain-http "$R/rs/nothing-here:v1" "$DG0" "$T/bad"
expect_err "an image that does not exist" bad-ref "3" "not found|unknown|404|nothing-here|manifest"
bad_mount bad-args --plain-http "$REF" "$DG0"
expect_err "missing MOUNTPOINT is a usage error" bad-args 2 "usage|mountpoint|argument"
bad_mount bad-refused --plain-http "127.0.0.1:1/rs/corpus:v1" "$DG0" "$T/bad"
expect_err "a registry that refuses connections" bad-refused 3 "127.0.0.1:1|connect|refused"

finish
