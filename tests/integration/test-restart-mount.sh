#!/usr/bin/env bash
# Restart-proof `stargz mount --state-dir` (issue 16), no containerd: a
# reader walks and checksums a two-layer image through an overlay on the
# mounts, with files held open from the start, dropping the page cache
# between rounds, while the mount process is SIGKILLed and started again 5
# times at random points, then replaced (--takeover) by a second copy of the
# binary: the reader sees no error and no wrong byte. After a takeover a
# large file read sequentially comes from the disk cache, readahead
# included. The fd holder SIGKILLed while the mount runs: a new holder is started and given the fds
# (a crash after that still takes over). A stop (SIGTERM) leaves the mounts
# to the next start; --unmount-on-exit ends them.
# Env: STARGZ. Everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
need_mount
need_overlay || skip "no overlayfs"
need_tools docker-registry skopeo curl jq tar sha256sum timeout python3 pgrep

registry_start_plain || die "plain registry"
R=$PLAIN_REG

# Layer 0: many small files and a few large ones; layer 1: a few more.
mkdir -p "$T/src0/d" "$T/src1/e"
"$RIG_PY" - "$T/src0/d" "$T/src1/e" <<'PY' || die "random data"
import os, random, sys
r = random.Random(16)
for i in range(120):
    open(os.path.join(sys.argv[1], "s%03d" % i), "wb").write(r.randbytes(r.randint(1, 90000)))
for i in range(3):
    open(os.path.join(sys.argv[1], "big%d" % i), "wb").write(r.randbytes(3000000 + i))
for i in range(10):
    open(os.path.join(sys.argv[2], "t%02d" % i), "wb").write(r.randbytes(r.randint(1000, 400000)))
PY
tar -C "$T/src0" --numeric-owner -cf "$T/l0.tar" d || die tar
tar -C "$T/src1" --numeric-owner -cf "$T/l1.tar" e || die tar
for i in 0 1; do
	"$STARGZ" build --chunk-size 65536 "$T/l$i.tar" "$T/l$i.esgz" >"$T/l$i.esgz.json" ||
		die "stargz build"
done
push_image "$R" rs/restart:v1 "$T/l0.esgz" "$T/l1.esgz" >/dev/null || die push
(cd "$T/src0" && find d -type f -print0 | xargs -0 sha256sum) >"$T/want0"
(cd "$T/src1" && find e -type f -print0 | xargs -0 sha256sum) >"$T/want1"
cat "$T/want0" "$T/want1" | awk '{print $1, $2}' >"$T/want"

S=$T/state
M=$T/layers
O=$T/ovl
MARGS=(--plain-http --state-dir "$S" --cache-dir "$T/cache" --passthrough off
	--no-prefetch --no-background-fetch --all "$R/rs/restart:v1" "$M")

holder_pid() { pgrep -f -x ".*rs-fd-holder .*$S/fd-holder.sock" | head -1; }
_restart_cleanup() {
	local p
	p=$(holder_pid)
	[ -n "$p" ] && kill -KILL "$p" 2>/dev/null
	_umount_all
}
on_exit _restart_cleanup

mount_up() { # NAME [ARGS...]: one more stargz mount run (of $BIN, default $STARGZ)
	local name=$1 sb=$STARGZ rc
	shift
	STARGZ=${BIN:-$STARGZ}
	mount_start "$name" "$@" "${MARGS[@]}"
	rc=$?
	STARGZ=$sb
	return $rc
}

mount_up m0 || die "first mount"
check "the first run mounts both layers" test "$(grep -c '^mounted ' "$T/m0.out")" = 2
mkdir -p "$O/up" "$O/work" "$O/merged"
mount -t overlay overlay -o "lowerdir=$M/1:$M/0,upperdir=$O/up,workdir=$O/work" "$O/merged" ||
	die "overlay on the mounts"
P=$MOUNT_PID

python3 "$TESTS_DIR/restart_reader.py" "$O/merged" "$T/want" "$T/stop" --min-rounds 3 \
	--max-secs 300 >"$T/reader.out" 2>"$T/reader.err" &
RP=$!
for _ in $(seq 100); do grep -q started "$T/reader.out" && break; sleep 0.1; done

# Five crashes at random points, each followed by a new run that takes over.
ok=1
for i in 1 2 3 4 5; do
	sleep "0.$((RANDOM % 9 + 2))"
	kill -KILL "$P"
	wait "$P" 2>/dev/null
	echo 3 >/proc/sys/vm/drop_caches
	sleep "0.$((RANDOM % 5))"
	if ! mount_up "r$i"; then
		ok=0
		break
	fi
	P=$MOUNT_PID
	[ "$(grep -c '^taken over ' "$T/r$i.out")" = 2 ] || {
		ok=0
		fail "run $i after a SIGKILL did not take over both layers"
		show_file "$T/r$i.out"
		show_file "$T/r$i.err"
		break
	}
done
[ $ok = 1 ] && pass "5 SIGKILLs, each run after takes over both connections"
kill -0 "$RP" 2>/dev/null && pass "the reader is still running after 5 crashes" ||
	fail "the reader ended during the crashes: $(cat "$T/reader.out")"

# An upgrade: a second copy of the binary takes over from the running one.
cp "$STARGZ" "$T/stargz-v2"
cp "$(dirname "$STARGZ")/rs-fd-holder" "$T/rs-fd-holder"
sleep 0.5
BIN=$T/stargz-v2 mount_up up --takeover || die "takeover by a second binary"
NP=$MOUNT_PID
for _ in $(seq 100); do kill -0 "$P" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$P" 2>/dev/null; then
	fail "the replaced run is still alive 10 s after the takeover"
else
	wait "$P"
	rc=$?
	[ $rc = 0 ] && pass "the replaced run exits 0 after --takeover" ||
		fail "the replaced run exited $rc: $(tail -3 "$T/r5.err")"
fi
check "the new binary took over both layers" test "$(grep -c '^taken over ' "$T/up.out")" = 2
P=$NP

# The holder killed while the mount runs: a new holder gets the fds again.
h1=$(holder_pid)
[ -n "$h1" ] || fail "no rs-fd-holder for $S"
kill -KILL "$h1"
h2=
for _ in $(seq 100); do
	h2=$(holder_pid)
	[ -n "$h2" ] && [ "$h2" != "$h1" ] && break
	sleep 0.1
done
[ -n "$h2" ] && [ "$h2" != "$h1" ] && pass "a killed holder is replaced (pid $h1 -> $h2)" ||
	fail "no new holder after the old one was killed"
sleep 1
kill -KILL "$P"
wait "$P" 2>/dev/null
echo 3 >/proc/sys/vm/drop_caches
mount_up h || die "run after the holder was replaced"
P=$MOUNT_PID
check "a crash after the holder was replaced still takes over" \
	test "$(grep -c '^taken over ' "$T/h.out")" = 2
# Every chunk is in the disk cache (the reader read every file): a large
# file read sequentially right after the takeover comes from there, its
# readahead too, with no registry request (no background fetch here: the
# chunks stay "not fetched" in this run).
blob_gets() { grep -ac '"GET /v2/[^ ]*/blobs/' "$PLAIN_DIR/registry.log"; }
g0=$(blob_gets)
echo 3 >/proc/sys/vm/drop_caches
check "a large file reads right after the takeover" cmp "$O/merged/d/big1" "$T/src0/d/big1"
sleep 0.5
check "and its chunks and readahead come from the disk cache ($(($(blob_gets) - g0)) blob requests)" \
	test "$(blob_gets)" = "$g0"

sleep 1
touch "$T/stop"
wait "$RP"
rc=$?
if [ $rc = 0 ]; then
	pass "the reader saw every byte right and no error ($(cat "$T/reader.out" | tail -1))"
else
	fail "the reader failed ($rc): $(tail -1 "$T/reader.out")"
	show_file "$T/reader.err"
fi

# A stop leaves the mounts for the next start; --unmount-on-exit ends them.
mount_stop "$P"
check "SIGTERM: exit 0" test "$RC" = 0
check "SIGTERM keeps the mounts" mountpoint -q "$M/0"
mount_up last --unmount-on-exit || die "last run"
check "the run after a stop takes over" test "$(grep -c '^taken over ' "$T/last.out")" = 2
check "a file reads right after a stop and a start" \
	cmp "$O/merged/e/t03" "$T/src1/e/t03"
umount "$O/merged"
mount_stop "$MOUNT_PID"
check "--unmount-on-exit: exit 0" test "$RC" = 0
if mountpoint -q "$M/0"; then fail "--unmount-on-exit left $M/0 mounted"; else pass "--unmount-on-exit unmounts"; fi
for _ in $(seq 50); do [ -z "$(holder_pid)" ] && break; sleep 0.1; done
check "the holder exits once its fds are gone" test -z "$(holder_pid)"

# A kept layer that cannot be opened again (its kept TOC corrupt, the
# registry gone) is answered with EIO; a stop that unmounts detaches it too.
NETPROXY_UPSTREAM=$R netproxy_start PX || finish
S1=$T/state1
D1=$(jq -r .digest "$T/l1.esgz.json")
mkdir -p "$T/one"
ONE=(--plain-http --state-dir "$S1" --cache-dir "$T/cache1" --passthrough off --no-prefetch
	--no-background-fetch --toc-digest "$(jq -r .tocDigest "$T/l1.esgz.json")"
	"$PX/rs/restart:v1" "$D1" "$T/one")
mount_start one0 "${ONE[@]}" || die "single-layer mount"
check "a single layer mounts with --state-dir" cmp "$T/one/e/t01" "$T/src1/e/t01"
kill -KILL "$MOUNT_PID"
wait "$MOUNT_PID" 2>/dev/null
toc_file=$T/cache1/toc/${D1#sha256:}
if [ -f "$toc_file" ]; then
	printf 'garbage' | dd of="$toc_file" bs=1 seek=100 conv=notrunc 2>/dev/null
else
	fail "no kept TOC at $toc_file"
fi
proxy_mode PX refuse
echo 3 >/proc/sys/vm/drop_caches
mount_start one1 --unmount-on-exit "${ONE[@]}" || die "restart with a corrupt TOC"
check "the run says the layer cannot be served again" grep -q 'cannot be served again' "$T/one1.err"
timeout 20 cat "$T/one/e/t02" >/dev/null 2>"$T/one.eio"
check "its reads get EIO ($(cat "$T/one.eio"))" grep -q 'Input/output error' "$T/one.eio"
mount_stop "$MOUNT_PID"
check "--unmount-on-exit with a dead layer: exit 0" test "$RC" = 0
check "and its mount is gone" bash -c "! grep -q ' $T/one ' /proc/self/mountinfo"
proxy_mode PX pass
finish
