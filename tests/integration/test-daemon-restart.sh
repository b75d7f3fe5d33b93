#!/usr/bin/env bash
# Restart-proof mounts behind a real containerd (issue 16): a container walks
# and checksums a lazily pulled image's files in a loop (busybox sha256sum -c
# over every file, large ones included) and has python3 import many modules
# of its lazily read standard library, the host dropping the page cache
# all along, while the daemon is SIGKILLed and started again 5 times at
# random points, then upgraded once (a second copy of the binary started
# with --takeover): the container exits 0, every round right. New containers
# of the image start after every restart. containerd restarted under the
# running container: it goes on. The registry gone during a restart: the
# layers come back from the cached TOCs and chunks. The fd holder SIGKILLed
# while the daemon runs: the daemon starts a new one and hands it the fds,
# and a crash after that still takes over. A layer whose cached TOC is
# corrupt with the registry gone: that mount answers EIO at once, the others
# keep working. Env: STARGZ, RS_DAEMON. Everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
. "$(dirname "$0")/daemon-lib.sh"

need_root
need_stargz
need_tools containerd ctr runc skopeo jq sha256sum pgrep python3
[ -x /usr/bin/python3.11 ] || skip "Debian's python3.11 not installed"
"$STARGZ" rpull --help >/dev/null 2>&1 || skip "stargz rpull not built"
[ -x "$RS_DAEMON" ] || skip "remote-snapshotter not built"

registry_start_plain || finish
REG=$PLAIN_REG
seed_image "$REG" rs/busybox:gz || finish
SRC=$RIG/img-rs_busybox-gz.src

# Layer 1: busybox; layer 2: files to walk (small and large), the check list.
mkdir -p "$T/l2/data" "$T/l2/etc"
"$RIG_PY" - "$T/l2/data" <<'PY' || die "random data"
import os, random, sys
r = random.Random(9)
for i in range(150):
    open(os.path.join(sys.argv[1], "f%03d" % i), "wb").write(r.randbytes(r.randint(1, 60000)))
for i in range(3):
    open(os.path.join(sys.argv[1], "large%d" % i), "wb").write(r.randbytes(4000000 + i))
PY
(cd "$T/l2" && find data -type f | sort | xargs sha256sum | sed 's| data/| /data/|') >"$T/l2/etc/want"
echo "hello from the restart image" >"$T/l2/etc/hello.txt"
# Layer 3: this machine's python3.11, its standard library (no tests) and the
# shared libraries it and its extension modules load.
mkdir -p "$T/l3/usr/bin" "$T/l3/usr/lib"
cp -a /usr/bin/python3.11 "$T/l3/usr/bin/" && ln -s python3.11 "$T/l3/usr/bin/python3" &&
	tar -C /usr/lib --exclude='python3.11/test' --exclude='python3.11/idlelib' \
		--exclude='python3.11/tkinter' --exclude='python3.11/lib2to3/tests' \
		--exclude='python3.11/site-packages' --exclude='python3.11/dist-packages' \
		-cf - python3.11 | tar -C "$T/l3/usr/lib" -xf - || die "python layer"
for lib in $(ldd /usr/bin/python3.11 /usr/lib/python3.11/lib-dynload/*.so 2>/dev/null |
	awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/lib64\// {print $1}' | sort -u); do
	mkdir -p "$T/l3$(dirname "$lib")"
	cp "$(readlink -f "$lib")" "$T/l3$lib" || die "copy $lib"
done
cp "$TESTS_DIR/restart_imports.py" "$T/l2/etc/imports.py" || die "imports.py"
/usr/bin/python3.11 -I -S "$T/l2/etc/imports.py" >"$T/l2/etc/imports.want" ||
	die "the import check on this machine"
tar -C "$SRC/l1" --numeric-owner -cf "$T/l1.tar" . || die tar
tar -C "$T/l2" --numeric-owner -cf "$T/l2.tar" . || die tar
tar -C "$T/l3" --numeric-owner -cf "$T/l3.tar" . || die tar
for i in 1 2 3; do
	"$STARGZ" build "$T/l$i.tar" "$T/l$i.esgz" >"$T/l$i.esgz.json" || die "stargz build"
done
push_image "$REG" rs/restart:v1 "$T/l1.esgz" "$T/l2.esgz" "$T/l3.esgz" >/dev/null || die push

NETPROXY_UPSTREAM=$REG netproxy_start PX || finish
REF=$PX/rs/restart:v1
daemon_start || finish
ctrd_with_stargz || finish
rpull pull "$REF" --snapshotter stargz
expect_rc "stargz rpull of the image" 0 pull || finish
check "the 3 layers are lazy" test "$(grep -c ' lazy' "$T/pull.out")" -eq 3

# restart_daemon: SIGKILL, drop caches, start again; the log must say the 3
# layers were taken over.
restart_daemon() {
	local n_before
	n_before=$(grep -c 'remote layer .* taken over at' "$RS_LOG")
	daemon_kill KILL
	echo 3 >/proc/sys/vm/drop_caches
	daemon_start "$@" || return 1
	local n_after
	n_after=$(grep -c 'remote layer .* taken over at' "$RS_LOG")
	[ $((n_after - n_before)) -ge 3 ] || {
		fail "the restarted daemon did not take over the 3 layers ($n_before -> $n_after)"
		tail -20 "$RS_LOG" | sed 's/^/    | /'
		return 1
	}
}

# new_container NAME: a new container of the image reads a file (retried:
# containerd needs a moment to reach a restarted plugin).
new_container() {
	local i
	for i in $(seq 20); do
		run "$1" timeout 60 "${CTR[@]}" run --rm --snapshotter stargz "$REF" "rs-$1-$$" cat /etc/hello.txt
		[ "$RC" -eq 0 ] && break
		sleep 0.5
	done
	check "$2: a new container of the image starts and reads" grep -q 'restart image' "$T/$1.out"
}

mkdir -p "$T/ctl"
cat >"$T/ctl/loop.sh" <<'EOF'
r=0
while [ ! -e /ctl/stop ] || [ "$r" -lt 3 ]; do
	if ! sha256sum -c /etc/want >/ctl/round.out 2>&1; then
		echo "FAIL in round $r"
		grep -v ': OK$' /ctl/round.out | head
		exit 1
	fi
	if ! python3 -I -S /etc/imports.py >/ctl/imports.out 2>&1 ||
		! cmp -s /ctl/imports.out /etc/imports.want; then
		echo "FAIL in round $r: python3"
		head -20 /ctl/imports.out
		exit 1
	fi
	r=$((r + 1))
	echo "$r" >/ctl/rounds
done
echo "OK $r rounds"
EOF
printf '%s\n' 'sh /ctl/loop.sh >/ctl/result.tmp 2>&1; rc=$?; mv /ctl/result.tmp /ctl/result; exit $rc' >"$T/ctl/run.sh"
# Detached: the container lives in its shim, not in a ctr client that a
# containerd restart would cut off.
# Container IDs of this run: runc keeps its state by ID under one root for
# every containerd of the machine, so a parallel or leftover run must not
# share them.
RID=rs-reader-$$
run reader timeout 60 "${CTR[@]}" run -d --snapshotter stargz \
	--mount "type=bind,src=$T/ctl,dst=/ctl,options=rbind:rw" "$REF" "$RID" sh /ctl/run.sh
expect_rc "the reader container starts" 0 reader || finish
# At exit, by pid: the reader's process and its shim (containerd may be
# gone by then, its cleanup runs first).
READER_PIDS=$("${CTR[@]}" tasks ls 2>/dev/null | awk -v id="$RID" '$1 == id {print $2}')
READER_PIDS+=" $(pgrep -f -x ".*containerd-shim-runc-v2 .*-id $RID -address $CTRD_SOCK" | tr '\n' ' ')"
_reader_cleanup() {
	local p
	for p in $READER_PIDS; do kill -KILL "$p" 2>/dev/null; done
}
on_exit _reader_cleanup
# running: the reader container's task is running.
running() { "${CTR[@]}" tasks ls 2>/dev/null | grep -q "^$RID .*RUNNING"; }
# The page cache dropped all along: every round asks the FUSE server again.
(while [ ! -e "$T/ctl/result" ] && [ ! -e "$T/ctl/stop" ]; do echo 3 >/proc/sys/vm/drop_caches; sleep 0.7; done) &
DP=$!
_RIG_PIDS+=("$DP")
for _ in $(seq 300); do [ -s "$T/ctl/rounds" ] && break; sleep 0.1; done
check "the reader container completed a round" test -s "$T/ctl/rounds"

ok=1
for i in 1 2 3 4 5; do
	sleep "$((RANDOM % 2)).$((RANDOM % 10))"
	restart_daemon || { ok=0; break; }
	[ $i = 1 ] && new_container after1 "after the first SIGKILL"
done
[ $ok = 1 ] && pass "5 SIGKILLs at random points: every restart took the 3 layers over"
check "the reader is still running after 5 crashes" running
new_container after5 "after the fifth SIGKILL"

# The upgrade: a second copy of the binary replaces the running daemon.
# An upgrade installs both binaries; the daemon starts the holder beside it.
cp "$RS_DAEMON" "$T/remote-snapshotter-v2"
cp "$(dirname "$RS_DAEMON")/rs-fd-holder" "$T/rs-fd-holder"
OLD=$RS_PID
n_before=$(grep -c 'remote layer .* taken over at' "$RS_LOG")
RS_DAEMON=$T/remote-snapshotter-v2 daemon_start --takeover || die "takeover"
for _ in $(seq 100); do kill -0 "$OLD" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$OLD" 2>/dev/null; then
	fail "the old daemon still runs 10 s after --takeover"
else
	wait "$OLD"
	rc=$?
	check "the replaced daemon exits 0 (exit $rc)" [ $rc -eq 0 ]
fi
check "the new binary took over the 3 layers" \
	test $(($(grep -c 'remote layer .* taken over at' "$RS_LOG") - n_before)) -ge 3
new_container afterup "after the upgrade"

# containerd restarted under the running container (its shim keeps it).
kill -TERM "$CTRD_PID"
wait "$CTRD_PID" 2>/dev/null
CTRD_PID=
ctrd_with_stargz || die "containerd again"
check "the reader survives a containerd restart" running
new_container afterctrd "after a containerd restart"

# The holder killed while the daemon runs.
h1=$(daemon_holder_pid)
[ -n "$h1" ] && kill -KILL "$h1"
h2=
for _ in $(seq 100); do
	h2=$(daemon_holder_pid)
	[ -n "$h2" ] && [ "$h2" != "$h1" ] && break
	sleep 0.1
done
check "a killed holder is replaced by the daemon (${h1:-none} -> ${h2:-none})" \
	test -n "$h1" -a -n "$h2" -a "$h2" != "$h1"
sleep 0.5
if restart_daemon; then
	pass "after the holder was replaced, a crash still takes the 3 layers over"
fi

# The registry gone during a restart: the cached TOCs and chunks serve. The
# data layer complete and its whole-layer check passed first (the reader
# reads every file, but not the landmark, which its background fetch brings;
# the check reads the blob, and each restart above cut it short; remembered
# once passed), so that all of it is in the disk cache and nothing needs the
# registry.
DATA_L=
for m in $(daemon_fuse_mounts); do [ -d "$m/data" ] && DATA_L=$m; done
check "with the registry up, the data layer completes and its diffID check passes" \
	wait_status "${DATA_L:-/nonexistent}" '.state == "complete" and .diff_id_check == "ok"' 120 ||
	show_file "$T/status.last"
proxy_mode PX refuse
if restart_daemon; then
	pass "with the registry gone, a restart takes the 3 layers over"
fi
# Every chunk of the data layer is in the disk cache: after the restart its
# background fetch completes it from there, with no registry.
check "with the registry gone, the data layer completes from the disk cache" \
	wait_status "${DATA_L:-/nonexistent}" '.state == "complete" and .registry_ok' 30 ||
	show_file "$T/status.last"
sleep 1
check "the reader still runs with the registry gone" running
proxy_mode PX pass

touch "$T/ctl/stop"
for _ in $(seq 600); do [ -e "$T/ctl/result" ] && break; sleep 0.2; done
check "the reader container ends with every round right ($(tail -1 "$T/ctl/result" 2>/dev/null))" \
	grep -q '^OK ' "$T/ctl/result"
grep -q '^OK ' "$T/ctl/result" 2>/dev/null || show_file "$T/ctl/result"
"${CTR[@]}" tasks rm -f "$RID" >/dev/null 2>&1
"${CTR[@]}" containers rm "$RID" >/dev/null 2>&1
kill "$DP" 2>/dev/null

# A corrupt cached TOC with the registry gone: EIO at once, the other layer works.
mapfile -t LAYERS < <(daemon_fuse_mounts)
DATA_L=
for m in "${LAYERS[@]}"; do [ -d "$m/data" ] && DATA_L=$m; done
d2=sha256:$(sha256_of "$T/l2.esgz")
toc_file=$RS_ROOT/cache/toc/${d2#sha256:}
daemon_kill KILL
if [ -n "$DATA_L" ] && [ -f "$toc_file" ]; then
	printf 'garbage' | dd of="$toc_file" bs=1 seek=200 conv=notrunc 2>/dev/null
	proxy_mode PX refuse
	echo 3 >/proc/sys/vm/drop_caches
	daemon_start || die "start with a corrupt TOC"
	t0=$(date +%s%N)
	timeout 20 cat "$DATA_L/data/f001" >/dev/null 2>"$T/eio.err"
	rc=$?
	t1=$(date +%s%N)
	check "the layer with the corrupt TOC answers EIO (exit $rc: $(cat "$T/eio.err"))" \
		grep -q 'Input/output error' "$T/eio.err"
	check "and at once ($(((t1 - t0) / 1000000)) ms)" [ $(((t1 - t0) / 1000000)) -lt 5000 ]
	check "the log says which layer and why" grep -q 'cannot be served after the restart' "$RS_LOG"
	other=
	for m in "${LAYERS[@]}"; do [ "$m" != "$DATA_L" ] && [ -f "$m/bin/busybox" ] && other=$m; done
	check "the other layers keep working" cmp "$other/bin/busybox" "$SRC/l1/bin/busybox"
	proxy_mode PX pass
else
	fail "no data layer mount or no cached TOC at $toc_file"
	daemon_start || die "start again"
fi

daemon_kill TERM
check "the daemon exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
if grep -q 'Sanitizer\|runtime error' "$RS_LOG"; then
	fail "the sanitizer reported errors in the daemon"
	grep -A20 'Sanitizer\|runtime error' "$RS_LOG" | head -40 | sed 's/^/    | /'
fi
finish
