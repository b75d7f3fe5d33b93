#!/usr/bin/env bash
# `stargz mount --all` of crafted layers (craft_blob.py) from a real
# docker-registry, real FUSE. Each image's layer 0 is a big file of a marker
# string, read whole first so that the mount process's heap holds the
# marker; every byte then read from a hostile layer is grepped for it.
#   (a)  one TOC, one chunkDigest, two sizes (the 10-byte file's chunk
#        claimed by a 1 MiB file): refused at mount, naming both entries;
#   (a2) the same across two layers of one mount (each TOC consistent):
#        `cat small; cat big` gives the small file right and EIO for the big
#        one, status.json counts cache_size_mismatches; memory cache and
#        --cache-dir;
#   (b)  legacy stargz, no chunk digests, two files at one blob offset with
#        different sizes: refused (even with --allow-unverified); the same
#        layer without the second file: refused (exit 1) unless
#        --allow-unverified, then it reads right, and after a restart on the
#        same --cache-dir it is served from the disk cache;
#   (c)  no toc.digest annotation: refused (exit 1) unless --allow-unverified;
#   (d)  no chunkDigest: refused (exit 1) unless --allow-unverified, then the
#        bytes are right;
#   (e)  a file whose whole-file digest is wrong but whose chunks are right:
#        once its chunks are in, its reads get EIO, verify_errors counts it
#        and the log names it; a file beside it reads right;
#   (f)  a TOC carrying trusted.overlay.opaque and security.capability: not
#        served (getxattr, listxattr), user.* is; a real `.wh..wh..opq` still
#        gives trusted.overlay.opaque=y.
# Env: STARGZ. Skips (77) while `stargz mount` is missing. Everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
need_mount
need_tools docker-registry skopeo curl jq tar mountpoint timeout getfattr

registry_start_plain || die "plain registry"
R=$PLAIN_REG
MARK=HEAPMARK-q7Z3v9
SMALL=0123456789

# --- the marker layer ---------------------------------------------------------------
mkdir -p "$T/mk"
"$RIG_PY" - "$T/mk/markers" "$MARK" <<'PY' || die "marker file"
import sys
with open(sys.argv[1], "wb") as f:
    f.write((sys.argv[2] + "\n").encode() * ((16 << 20) // (len(sys.argv[2]) + 1)))
PY
tar -C "$T/mk" --numeric-owner -cf "$T/mk.tar" markers || die "marker tar"
"$STARGZ" build "$T/mk.tar" "$T/mark.esgz" >"$T/mark.esgz.json" || die "stargz build (markers)"

# craft_layer NAME SPEC: $T/NAME.esgz (+ .json, so push_image annotates it).
craft_layer() {
	craft "$2" "$T/$1.esgz" || die "craft_blob.py $1"
}
# image NAME LAYER...: pushes rs/NAME:v1 = the marker layer + the layers.
image() {
	local n=$1
	shift
	push_image "$R" "rs/$n:v1" "$T/mark.esgz" "$@" >/dev/null || die "push rs/$n:v1"
}
# heap_fill DIR: reads the marker file of layer 0 of a mount.
heap_fill() {
	local got
	got=$(grep -a -c "$MARK" "$1/0/markers")
	[ "$got" -gt 1000 ] || fail "the marker layer read back $got markers"
}
# read_file NAME PATH: cat PATH into $T/NAME.bytes; RC, and the marker check.
read_file() {
	cat "$2" >"$T/$1.bytes" 2>"$T/$1.cat.err"
	RC=$?
	if grep -a -q "$MARK" "$T/$1.bytes" "$T/$1.cat.err"; then
		fail "$1: a read of $2 returned the marker (bytes from outside the layer)"
	fi
}
expect_eio() {
	local desc=$1 name=$2
	if [ "$RC" != 0 ] && grep -q "Input/output error" "$T/$name.cat.err" && [ ! -s "$T/$name.bytes" ]; then
		pass "$desc: EIO, no bytes"
	else
		fail "$desc: cat exit $RC, $(stat -c %s "$T/$name.bytes") bytes, $(head -c 200 "$T/$name.cat.err")"
	fi
}
# stop NAME: SIGTERM to the mount; it must exit 0 (sanitizer reports fail).
stop() {
	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] && ! grep -q "Sanitizer" "$T/$1.err" ||
		fail "$1: exit $RC at SIGTERM: $(grep -m1 -A3 Sanitizer "$T/$1.err")"
}
# refused NAME RC REGEX ARGS...: stargz mount exits RC with stderr matching REGEX.
refused() {
	local name=$1 want=$2 re=$3
	shift 3
	mkdir -p "$T/$name.mnt"
	run "$name" timeout 60 "$STARGZ" mount --all --plain-http "$@" "$T/$name.mnt"
	if [ "$RC" = "$want" ] && grep -Eq -- "$re" "$T/$name.err"; then
		pass "$name: refused, exit $RC: $(head -n 1 "$T/$name.err" | cut -c1-200)"
	else
		fail "$name: exit $RC (want $want), stderr: $(head -c 400 "$T/$name.err")"
	fi
	for m in "$T/$name.mnt"/*; do
		is_mounted "$m" && { fail "$name: $m left mounted"; umount -l "$m"; }
	done
}

# --- (a) one chunkDigest, two sizes, one TOC -----------------------------------------
craft_layer a '{"entries":[
  {"name":"small","data":"'$SMALL'"},
  {"name":"big","data":"'$SMALL'","toc":{"size":1048576}}]}'
image a "$T/a.esgz"
refused a 3 "'small' and 'big'.*sizes 10 and 1048576" "$R/rs/a:v1"

# --- (a2) the same chunk, two layers ------------------------------------------------
craft_layer a2s '{"entries":[{"name":"small","data":"'$SMALL'"}]}'
craft_layer a2b '{"entries":[{"name":"big","data":"'$SMALL'","toc":{"size":1048576}}]}'
image a2 "$T/a2s.esgz" "$T/a2b.esgz"
for variant in mem disk; do
	args=()
	[ "$variant" = disk ] && args=(--cache-dir "$T/cache-a2")
	M=$T/a2-$variant
	if mount_start "a2-$variant" --all --plain-http --no-background-fetch "${args[@]}" "$R/rs/a2:v1" "$M"; then
		heap_fill "$M"
		read_file a2-small-$variant "$M/1/small"
		[ "$RC" = 0 ] && [ "$(cat "$T/a2-small-$variant.bytes")" = "$SMALL" ] &&
			pass "a2 ($variant): the small file reads right" || fail "a2 ($variant): small: exit $RC"
		read_file a2-big-$variant "$M/2/big"
		expect_eio "a2 ($variant): a 1 MiB file claiming another layer's 10-byte chunk" a2-big-$variant
		wait_status "$M/2" '.cache_size_mismatches >= 1' 10 &&
			pass "a2 ($variant): status.json counts the cache hit of another size ($(jq -c '{cache_size_mismatches, verify_errors}' "$T/status.last"))" ||
			fail "a2 ($variant): status: $(cat "$T/status.last")"
		stop "a2-$variant"
	fi
done

# --- (b) legacy: no chunk digests, one offset, two sizes -----------------------------
B_SPEC='{"footer":"legacy","entries":[{"name":"small","data":"'$SMALL'","toc":{"chunkDigest":null}}]'
craft_layer b0 "$B_SPEC}"
OFF=$(jq -r '.members[1]' "$T/b0.esgz.json")
craft_layer b "$B_SPEC"',"toc_extra":[{"name":"big","type":"reg","size":1048576,"offset":'"$OFF"'}]}'
image b "$T/b.esgz"
refused b 3 "'small' and 'big'.*blob offset $OFF.*sizes 10 and 1048576" "$R/rs/b:v1"
refused b-allowed 3 "'small' and 'big'.*blob offset $OFF.*sizes 10 and 1048576" --allow-unverified "$R/rs/b:v1"
# The same legacy layer without the lie: unverifiable, so only with the flag.
image b0 "$T/b0.esgz"
refused b0 1 "TOC entry 'small' has a chunk without chunkDigest.*allow_unverified" "$R/rs/b0:v1"
M=$T/b0-ok
if mount_start b0-ok --all --plain-http --allow-unverified --no-prefetch --no-background-fetch \
	--cache-dir "$T/cache-b0" "$R/rs/b0:v1" "$M"; then
	heap_fill "$M"
	read_file b0-small "$M/1/small"
	[ "$RC" = 0 ] && [ "$(cat "$T/b0-small.bytes")" = "$SMALL" ] &&
		pass "b0: a legacy layer with --allow-unverified mounts and reads right" || fail "b0: exit $RC"
	stop b0-ok
fi
# Restarted on the same disk cache: the legacy chunk (no digest to key it by)
# is served from disk, nothing fetched.
M=$T/b0-again
if mount_start b0-again --all --plain-http --allow-unverified --no-prefetch --no-background-fetch \
	--cache-dir "$T/cache-b0" "$R/rs/b0:v1" "$M"; then
	read_file b0-again "$M/1/small"
	if [ "$RC" = 0 ] && [ "$(cat "$T/b0-again.bytes")" = "$SMALL" ] &&
		wait_status "$M/1" '.fetched_bytes == 0' 5; then
		pass "b0: after a restart the legacy chunk comes from the disk cache (fetched_bytes 0)"
	else
		fail "b0: after a restart: exit $RC, status $(cat "$T/status.last")"
	fi
	stop b0-again
fi

# --- (c) no toc.digest ---------------------------------------------------------------
"$RIG_PY" "$TESTS_DIR/craft_blob.py" - "$T/c.esgz" >"$T/c.summary" <<EOF || die "craft c"
{"entries":[{"name":"f","data":"plain file\n"}]}
EOF
image c "$T/c.esgz" # no c.esgz.json: no annotation
refused c 1 "TOC digest.*allow_unverified" "$R/rs/c:v1"
M=$T/c-ok
if mount_start c-ok --all --plain-http --allow-unverified "$R/rs/c:v1" "$M"; then
	heap_fill "$M"
	read_file c-f "$M/1/f"
	[ "$RC" = 0 ] && [ "$(cat "$T/c-f.bytes")" = "plain file" ] &&
		pass "c: with --allow-unverified the layer mounts and reads right" || fail "c: exit $RC"
	stop c-ok
fi

# --- (d) no chunk digests --------------------------------------------------------------
craft_layer d '{"chunk_size":65536,"entries":[
  {"name":"f","random":[200000,4],"toc":{"chunkDigest":null},
   "toc_chunks":{"1":{"chunkDigest":null},"2":{"chunkDigest":null},"3":{"chunkDigest":null}}}]}'
image d "$T/d.esgz"
refused d 1 "TOC entry 'f' has a chunk without chunkDigest.*allow_unverified" "$R/rs/d:v1"
"$RIG_PY" -c 'import random,sys; sys.stdout.buffer.write(random.Random(4).randbytes(200000))' >"$T/d.want"
M=$T/d-ok
if mount_start d-ok --all --plain-http --allow-unverified "$R/rs/d:v1" "$M"; then
	heap_fill "$M"
	read_file d-f "$M/1/f"
	[ "$RC" = 0 ] && cmp -s "$T/d-f.bytes" "$T/d.want" &&
		pass "d: with --allow-unverified the layer mounts, the file reads right" || fail "d: exit $RC"
	stop d-ok
fi

# --- (e) wrong whole-file digest, right chunks --------------------------------------------
craft_layer e '{"chunk_size":65536,"entries":[
  {"name":"bad","random":[300000,5],"toc":{"digest":"sha256:'"$(printf '0%.0s' $(seq 64))"'"}},
  {"name":"good","random":[300000,6]}]}'
image e "$T/e.esgz"
M=$T/e
if mount_start e --all --plain-http --no-background-fetch "$R/rs/e:v1" "$M"; then
	heap_fill "$M"
	read_file e-good "$M/1/good"
	[ "$RC" = 0 ] && [ "$(stat -c %s "$T/e-good.bytes")" = 300000 ] &&
		pass "e: a multi-chunk file with the right digest reads whole" || fail "e: good: exit $RC"
	read_file e-bad1 "$M/1/bad" # its chunks come in; this read may still be served
	if wait_status "$M/1" '.verify_errors >= 1' 10; then
		pass "e: the wrong whole-file digest is counted (verify_errors $(jq .verify_errors "$T/status.last"))"
	else
		fail "e: verify_errors: $(cat "$T/status.last")"
	fi
	read_file e-bad2 "$M/1/bad" # no drop_caches: the open itself fails
	expect_eio "e: once its chunks are in, the file with the wrong digest" e-bad2
	echo 3 >/proc/sys/vm/drop_caches
	read_file e-bad3 "$M/1/bad"
	expect_eio "e: and after the page cache is dropped" e-bad3
	read_file e-good2 "$M/1/good"
	[ "$RC" = 0 ] && pass "e: the file beside it still reads" || fail "e: good after: exit $RC"
	grep -q "file 'bad' has digest" "$T/e.err" && pass "e: the log names the file" ||
		fail "e: no log line names 'bad': $(tail -n 3 "$T/e.err")"
	stop e
fi

# --- (f) trusted.* / security.* xattrs from the TOC ------------------------------------------
craft_layer f '{"entries":[
  {"name":"x","type":"dir","xattrs":{"trusted.overlay.opaque":"y","user.keep":"1","security.selinux":"x"}},
  {"name":"x/cap","data":"bin\n","xattrs":{"security.capability":{"hex":"0100000200200000000000000000000000000000"}}},
  {"name":"o","type":"dir"},
  {"name":"o/.wh..wh..opq","data":""}]}'
image f "$T/f.esgz"
M=$T/f
if mount_start f --all --plain-http "$R/rs/f:v1" "$M"; then
	heap_fill "$M"
	getfattr -h -d -m - "$M/1/x" "$M/1/x/cap" >"$T/f.attrs" 2>&1
	if grep -q "user.keep" "$T/f.attrs" && ! grep -Eq "trusted\.|security\." "$T/f.attrs"; then
		pass "f: listxattr shows user.keep, no trusted.* or security.* from the TOC"
	else
		fail "f: listxattr: $(tr '\n' ' ' <"$T/f.attrs")"
	fi
	for a in "x trusted.overlay.opaque" "x/cap security.capability" "x security.selinux"; do
		set -- $a
		if getfattr -h -n "$2" "$M/1/$1" >"$T/f.one" 2>&1; then
			fail "f: getxattr $2 on $1 served: $(tr '\n' ' ' <"$T/f.one")"
		else
			pass "f: getxattr $2 on $1: not served"
		fi
	done
	[ "$(getfattr -h --only-values -n trusted.overlay.opaque "$M/1/o" 2>/dev/null)" = y ] &&
		pass "f: a real .wh..wh..opq still gives trusted.overlay.opaque=y" ||
		fail "f: the opaque dir lost its marker"
	stop f
fi

finish
