#!/usr/bin/env bash
# FUSE passthrough, observed: once a layer is complete, every file is opened
# (fds held) through the mount, the mount process is stopped with SIGSTOP and
# the page cache dropped, and every held fd still reads to the end right
# (sha256 against the source tree), through the mount and through an overlay
# on it: the kernel reads the backing files. With
# --passthrough off the same read blocks while the process is stopped. Two
# layers holding one file share its backing file. A file read halfway
# through a slow link, then completed by the background fetch: its first
# half read right before completion, a second open while the first fd is
# held stays cached (one I/O mode per inode), and once both are closed the
# next open is passthrough and reads the whole file right with the mount
# process stopped.
# Env: STARGZ. Skips (77) while `stargz mount` is missing. Everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
need_mount
need_tools docker-registry skopeo curl jq tar sha256sum timeout python3

registry_start_plain || die "plain registry"
R=$PLAIN_REG

mkdir -p "$T/src/d"
for i in 0 1 2 3; do
	"$RIG_PY" -c 'import random,sys; sys.stdout.buffer.write(random.Random(int(sys.argv[1])).randbytes(int(sys.argv[2])))' \
		"$i" $((300000 * (i + 1))) >"$T/src/d/f$i" || die "random data"
done
tar -C "$T/src" --numeric-owner -cf "$T/l.tar" d || die tar
"$STARGZ" build --chunk-size 65536 "$T/l.tar" "$T/l.esgz" >"$T/l.esgz.json" || die "stargz build"
LAYER=sha256:$(sha256sum "$T/l.esgz" | cut -d' ' -f1)
TOCD=$(jq -r .tocDigest "$T/l.esgz.json")
push_image "$R" rs/pt:v1 "$T/l.esgz" >/dev/null || die push

# hold_read DIR OUT: opens every file of DIR/d, waits for "go" on stdin
# (fd 3 a fifo), then reads each held fd to the end and prints name + sha256.
cat >"$T/hold.py" <<'EOF'
import hashlib, os, sys
d = sys.argv[1]
fds = [(n, os.open(os.path.join(d, n), os.O_RDONLY)) for n in sorted(os.listdir(d))]
print("opened", flush=True)
sys.stdin.readline()
for n, fd in fds:
    h = hashlib.sha256()
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        h.update(b)
    print(n, h.hexdigest(), flush=True)
    print("read", n, file=sys.stderr, flush=True)
EOF
(cd "$T/src/d" && sha256sum f* | awk '{print $2, $1}') >"$T/want"

# run_case NAME MODE: mount, wait complete (and backing files), hold, stop, read.
run_case() {
	local name=$1 mode=$2 M=$T/mnt-$1
	mkdir -p "$M" "$T/cache-$1"
	mount_start "$name" --plain-http --cache-dir "$T/cache-$1" --passthrough "$mode" \
		--toc-digest "$TOCD" "$R/rs/pt:v1" "$LAYER" "$M" || return 1
	wait_status "$M" '.state == "complete"' 60 || fail "$name: not complete: $(cat "$T/status.last")"
	if [ "$mode" = on ]; then
		wait_status "$M" '.backing_files >= 4' 60 ||
			fail "$name: backing files not built: $(cat "$T/status.last")"
	fi
	mkfifo "$T/go-$name" "$T/go-ovl-$name"
	python3 "$T/hold.py" "$M/d" <"$T/go-$name" >"$T/held-$name" 2>"$T/held-$name.err" &
	local hp=$!
	exec 7>"$T/go-$name"
	# The same files through an overlay on the mount, as a container reads them.
	local O=$T/ovl-$name
	mkdir -p "$O/up" "$O/work" "$O/merged"
	mount -t overlay overlay -o "lowerdir=$M,upperdir=$O/up,workdir=$O/work" "$O/merged" ||
		fail "$name: overlay on the mount"
	python3 "$T/hold.py" "$O/merged/d" <"$T/go-ovl-$name" >"$T/held-ovl-$name" 2>"$T/held-ovl-$name.err" &
	local op=$!
	exec 8>"$T/go-ovl-$name"
	local t=$((SECONDS + 20))
	until { grep -q opened "$T/held-$name" && grep -q opened "$T/held-ovl-$name"; } ||
		[ $SECONDS -ge $t ]; do sleep 0.1; done
	cp "$M/$STATUS_REL" "$T/status-$name.json"
	kill -STOP "$MOUNT_PID"
	echo 3 >/proc/sys/vm/drop_caches
	echo go >&7
	echo go >&8
	exec 7>&- 8>&-
	t=$((SECONDS + 15))
	while { kill -0 "$hp" || kill -0 "$op"; } 2>/dev/null && [ $SECONDS -lt $t ]; do sleep 0.2; done
	if kill -0 "$hp" 2>/dev/null || kill -0 "$op" 2>/dev/null; then
		HELD_DONE=0
		cat /proc/$hp/stack > "$T/stack-$name" 2>&1
		cat /proc/$hp/wchan > "$T/wchan-$name" 2>&1
	else
		HELD_DONE=1
	fi
	kill -CONT "$MOUNT_PID"
	wait "$hp" "$op" 2>/dev/null
	umount "$O/merged" || umount -l "$O/merged"
	mount_stop "$MOUNT_PID"
}

HELD_DONE=x
run_case on on
check "passthrough on: status says passthrough and counts 4 passthrough opens" \
	jq -e '.passthrough == true and .passthrough_opens >= 4' "$T/status-on.json"
check "passthrough on: with the mount process stopped, every held fd read to the end" \
	test "$HELD_DONE" = 1
check "passthrough on: and every byte is right" diff <(grep -v opened "$T/held-on") "$T/want"
check "passthrough on: through an overlay on the mount too" diff <(grep -v opened "$T/held-ovl-on") "$T/want"
check "one backing file per file in the cache directory" \
	test "$(find "$T/cache-on/backing/sha256" -type f | wc -l)" = 5

run_case off off
check "passthrough off: status says so" jq -e '.passthrough == false and .passthrough_opens == 0' "$T/status-off.json"
check "passthrough off: the reads block while the mount process is stopped" test "$HELD_DONE" = 0
check "passthrough off: after SIGCONT every byte is right" diff <(grep -v opened "$T/held-off") "$T/want"
check "passthrough off: through the overlay too" diff <(grep -v opened "$T/held-ovl-off") "$T/want"

# Two layers holding the same file share one backing file: layer 1 has a copy
# of f1 and one file of its own.
mkdir -p "$T/src2/e"
cp "$T/src/d/f1" "$T/src2/e/f1"
echo "only in layer 1" >"$T/src2/e/own"
tar -C "$T/src2" --numeric-owner -cf "$T/l2.tar" e || die tar
"$STARGZ" build --chunk-size 65536 "$T/l2.tar" "$T/l2.esgz" >"$T/l2.esgz.json" || die "stargz build"
push_image "$R" rs/pt2:v1 "$T/l.esgz" "$T/l2.esgz" >/dev/null || die push
M2=$T/mnt-two
mkdir -p "$M2" "$T/cache-two"
if mount_start two --all --plain-http --cache-dir "$T/cache-two" --passthrough on "$R/rs/pt2:v1" "$M2"; then
	wait_status "$M2/0" '.backing_files >= 5' 60 || fail "two: layer 0 backing files: $(cat "$T/status.last")"
	wait_status "$M2/1" '.backing_files >= 3' 60 || fail "two: layer 1 backing files: $(cat "$T/status.last")"
	F1=$(sha256sum "$T/src/d/f1" | cut -d' ' -f1)
	check "the shared file has its backing file, named by its digest" test -f "$T/cache-two/backing/sha256/$F1"
	n=$(find "$T/cache-two/backing/sha256" -type f | wc -l)
	check "8 files in the two layers, fewer backing files ($n): the shared ones once" test "$n" -lt 8
	check "the shared file reads right through layer 1" cmp "$T/src/d/f1" "$M2/1/e/f1"
	mount_stop "$MOUNT_PID"
fi

# A file read halfway, then completed by the background fetch. Through a
# 32 Mbit/s link (netproxy.py), a 16 MiB file of 256 KiB chunks is read up to
# its middle on demand, its fd kept open; the rest comes by the background
# fetch (the status says it was not all in when the half was read). Then,
# with the first fd still open (cached mode), a second open of the file is
# cached too (the kernel keeps one I/O mode per inode); once both are
# closed, the next open is passthrough and reads the whole file right with
# the mount process stopped and the page cache dropped. RELEASE reaches the
# daemon asynchronously after close(2), so that open is tried a few times.
mkdir -p "$T/src3/h"
"$RIG_PY" -c 'import random,sys; sys.stdout.buffer.write(random.Random(7).randbytes(16 << 20))' \
	>"$T/src3/h/big" || die "random data"
echo "a small file" >"$T/src3/h/small"
tar -C "$T/src3" --numeric-owner -cf "$T/l3.tar" h || die tar
"$STARGZ" build --chunk-size 262144 "$T/l3.tar" "$T/l3.esgz" >"$T/l3.esgz.json" || die "stargz build"
L3=sha256:$(sha256sum "$T/l3.esgz" | cut -d' ' -f1)
push_image "$R" rs/pthalf:v1 "$T/l3.esgz" >/dev/null || die push
BIG_SHA=$(sha256_of "$T/src3/h/big")
HALF=$((8 << 20))
HALF_SHA=$(head -c "$HALF" "$T/src3/h/big" | sha256sum | cut -d' ' -f1)
netproxy_start HP --rate-mbit 32 || die "netproxy --rate-mbit 32"
# half.py FILE HALF: reads FILE's first HALF bytes through one fd and prints
# their sha256; on "rest" reads the rest through the same fd and prints the
# whole file's sha256; on "close" closes it.
cat >"$T/half.py" <<'EOF2'
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
h, left = hashlib.sha256(), int(sys.argv[2])
while left:
    b = os.read(fd, min(left, 1 << 16))
    if not b:
        break
    h.update(b)
    left -= len(b)
print("half", h.hexdigest(), flush=True)
for line in sys.stdin:
    if line.strip() == "rest":
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            h.update(b)
        print("whole", h.hexdigest(), flush=True)
    elif line.strip() == "close":
        os.close(fd)
        print("closed", flush=True)
        break
EOF2
# hold1.py FILE: opens FILE, prints "opened"; on "go" reads it to the end
# and prints its sha256, on "close" just closes it.
cat >"$T/hold1.py" <<'EOF2'
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print("opened", flush=True)
if sys.stdin.readline().strip() == "go":
    h = hashlib.sha256()
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        h.update(b)
    print("sha", h.hexdigest(), flush=True)
EOF2
pt_opens() { timeout 10 cat "$1/$STATUS_REL" | jq -r .passthrough_opens; }
M3=$T/mnt-half
mkdir -p "$M3" "$T/cache-half"
if mount_start half --plain-http --no-prefetch --cache-dir "$T/cache-half" --passthrough on \
	--toc-digest "$(jq -r .tocDigest "$T/l3.esgz.json")" "$HP/rs/pthalf:v1" "$L3" "$M3"; then
	coproc HALFR { exec python3 "$T/half.py" "$M3/h/big" "$HALF" 2>"$T/half.err"; }
	HALF_PID=$HALFR_PID
	line=
	read -r -t 60 -u "${HALFR[0]}" line
	timeout 10 cat "$M3/$STATUS_REL" >"$T/st-half.json"
	check "half read: the first half of the file read before it was complete is right" \
		test "$line" = "half $HALF_SHA"
	check "half read: the file was not all in then ($(jq -c '{percent, state, fetched_bytes, data_bytes}' "$T/st-half.json"))" \
		jq -e '.percent < 100 and .fetched_bytes < .data_bytes and .state != "complete"' "$T/st-half.json"
	check "half read: and had no backing file" test ! -e "$T/cache-half/backing/sha256/$BIG_SHA"
	if wait_status "$M3" '.state == "complete" and .percent == 100' 60; then
		pass "half read: the background fetch completed the layer with the fd held"
	else
		fail "half read: the layer did not complete: $(cat "$T/status.last")"
	fi
	for _ in $(seq 100); do
		[ -f "$T/cache-half/backing/sha256/$BIG_SHA" ] &&
			wait_status "$M3" '.backing_files >= 2' 0 && break
		sleep 0.2
	done
	check "half read: then its backing file was built ($(jq -c '{backing_files}' "$T/status.last"))" \
		test -f "$T/cache-half/backing/sha256/$BIG_SHA"
	n0=$(pt_opens "$M3")
	got=$(timeout 30 sha256sum <"$M3/h/big" | cut -d' ' -f1)
	n1=$(pt_opens "$M3")
	check "half read: a second open with the first fd (cached) still open reads right" \
		test "$got" = "$BIG_SHA"
	check "half read: and is cached, not passthrough (passthrough_opens $n0 -> $n1)" test "$n1" = "$n0"
	echo rest >&"${HALFR[1]}"
	line=
	read -r -t 30 -u "${HALFR[0]}" line
	check "half read: the first fd reads the rest right after completion" test "$line" = "whole $BIG_SHA"
	echo close >&"${HALFR[1]}"
	read -r -t 30 -u "${HALFR[0]}" line
	wait "$HALF_PID" 2>/dev/null
	# Both fds closed: the next open is passthrough once the daemon has seen
	# their RELEASEs.
	pt=false
	for try in $(seq 10); do
		coproc HOLD1 { exec python3 "$T/hold1.py" "$M3/h/big" 2>"$T/hold1.err"; }
		HOLD1_P=$HOLD1_PID
		line=
		read -r -t 20 -u "${HOLD1[0]}" line
		n2=$(pt_opens "$M3")
		if [ "$line" = opened ] && [ "$n2" -gt "$n1" ]; then
			pt=true
			break
		fi
		echo close >&"${HOLD1[1]}"
		wait "$HOLD1_P" 2>/dev/null
		sleep 0.3
	done
	check "half read: once both fds are closed, a new open is passthrough (passthrough_opens $n1 -> $n2, try $try)" $pt
	if $pt; then
		kill -STOP "$MOUNT_PID"
		echo 3 >/proc/sys/vm/drop_caches
		echo go >&"${HOLD1[1]}"
		line=
		read -r -t 15 -u "${HOLD1[0]}" line
		kill -CONT "$MOUNT_PID"
		check "half read: and with the mount process stopped and caches dropped it reads the whole file right" \
			test "$line" = "sha $BIG_SHA"
		wait "$HOLD1_P" 2>/dev/null
	fi
	check "half read: the file reads right through the mount afterwards" cmp "$T/src3/h/big" "$M3/h/big"
	mount_stop "$MOUNT_PID"
	check "half read: the mount exits 0 at SIGTERM (exit $RC)" test "$RC" = 0
fi

# "on" where it cannot work is refused at start, naming why; a bad mode is a usage error.
mkdir -p "$T/mnt-x"
run nocache timeout 60 "$STARGZ" mount --plain-http --passthrough on --toc-digest "$TOCD" \
	"$R/rs/pt:v1" "$LAYER" "$T/mnt-x"
check "--passthrough on without a disk cache fails at start, saying why (exit $RC)" \
	bash -c '[ "$1" != 0 ] && grep -q "passthrough = \"on\", but it cannot work here: no disk cache" "$2"' _ "$RC" "$T/nocache.err"
run badmode timeout 60 "$STARGZ" mount --plain-http --passthrough sometimes "$R/rs/pt:v1" "$LAYER" "$T/mnt-x"
check "--passthrough sometimes is a usage error (exit $RC)" test "$RC" = 2
check "nothing is left mounted" bash -c '! grep -q " $1" /proc/mounts' _ "$T/mnt-x"
finish
