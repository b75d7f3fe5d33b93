#!/usr/bin/env bash
# FUSE passthrough in the daemon, behind a real containerd: with
# `[fuse] passthrough = "auto"` and the default disk cache (ROOT/cache), an
# eStargz busybox image pulled lazily (`stargz rpull`), a container reading
# files of each layer fully right after the pull (right bytes), the background
# fetch completing every layer and building its backing files; the log says
# once that passthrough is active; a container started after completion gets
# passthrough opens (each layer's status.json, ROOT/snapshots/<id>/fs/
# .remote-snapshotter/status.json) and reads right; fds held on the snapshot
# mounts read to the end right with the daemon SIGSTOPped and the page cache
# dropped. The daemon restarted on the same root with passthrough = "off":
# the log says so, the layers report passthrough false, a container reads
# right and passthrough_opens stays 0.
# Env: STARGZ, RS_DAEMON. Everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
. "$(dirname "$0")/daemon-lib.sh"

need_root
need_stargz
need_tools containerd ctr runc skopeo jq sha256sum
"$STARGZ" rpull --help >/dev/null 2>&1 || skip "stargz rpull not built"
[ -x "$RS_DAEMON" ] || skip "remote-snapshotter not built"

registry_start_plain || finish
REG=$PLAIN_REG
seed_image "$REG" rs/busybox:gz || finish
sg convert convert --plain-http "$REG/rs/busybox:gz" "$REG/rs/busybox:esgz"
expect_rc "stargz convert of the busybox image to eStargz" 0 convert || finish
REF=$REG/rs/busybox:esgz
SRC=$RIG/img-rs_busybox-gz.src
FILES=(/usr/share/rs/data.bin /etc/hello.txt /bin/busybox)
(for f in "${FILES[@]}"; do
	l=$(for i in 1 2 3; do [ -f "$SRC/l$i$f" ] && echo "l$i" && break; done)
	echo "$(sha256_of "$SRC/$l$f")  $f"
done) >"$T/want"

# config MODE: a config file with [fuse] passthrough = MODE (the cache is ROOT/cache).
config() {
	printf '[fuse]\npassthrough = "%s"\n' "$1" >"$T/rs-$1.toml"
	echo "$T/rs-$1.toml"
}

# layers: the fs dirs of the daemon's lazy layers, one a line.
layers() {
	awk -v r="$RS_ROOT/snapshots" 'index($5, r) == 1 && $0 ~ / - fuse/ {print $5}' /proc/self/mountinfo
}

# sum_opens: passthrough_opens of every lazy layer, summed.
sum_opens() {
	local m n=0 v
	for m in $(layers); do
		v=$(timeout 10 cat "$m/$STATUS_REL" | jq -r .passthrough_opens)
		n=$((n + ${v:-0}))
	done
	echo "$n"
}

# ctr_read NAME: a container reading FILES fully (busybox sha256sum).
ctr_read() {
	run "$1" timeout 60 "${CTR[@]}" run --rm --snapshotter stargz "$REF" "rs-pt-$1" \
		busybox sha256sum "${FILES[@]}"
}

# --- passthrough = "auto" ----------------------------------------------------------
daemon_start --config "$(config auto)" || finish
ctrd_with_stargz || finish
rpull pull "$REF" --snapshotter stargz
expect_rc "stargz rpull $REF" 0 pull || finish
n_lazy=$(grep -c ' lazy' "$T/pull.out")
check "every layer of the image is lazy ($n_lazy of 3)" [ "$n_lazy" -eq 3 ]
mapfile -t LAYERS < <(layers)
check "the daemon has 3 FUSE layer mounts (${#LAYERS[@]})" [ "${#LAYERS[@]}" -eq 3 ]

DATA_L=
for m in "${LAYERS[@]}"; do
	[ -f "$m/usr/share/rs/data.bin" ] && DATA_L=$m
	log "before the first container: $(timeout 10 cat "$m/$STATUS_REL" | jq -c '{percent, state, backing_files, passthrough_opens}')"
done
timeout 10 cat "${DATA_L:-/nonexistent}/$STATUS_REL" >"$T/st-data0.json"
# The background fetch waits 2 s after a mount: the container's opens come first.
check "the layer holding data.bin was not complete when the first container started" \
	jq -e '.percent < 100 and .backing_files == 0' "$T/st-data0.json"
ctr_read run1
expect_rc "a container right after the pull reads files of every layer fully" 0 run1
check "and reads right bytes" diff "$T/want" "$T/run1.out"

# Every layer complete, and a backing file for every file it lists.
all_done=true
for m in "${LAYERS[@]}"; do
	nf=$(find "$m" -type f -size +0 | wc -l)
	if ! wait_status "$m" ".state == \"complete\" and .percent == 100 and .backing_files >= $nf" 60; then
		all_done=false
		fail "layer $m: not complete with $nf backing files: $(cat "$T/status.last")"
	fi
done
$all_done && pass "the background fetch completed every layer and built its backing files"
check "backing files under ROOT/cache/backing" \
	test "$(find "$RS_ROOT/cache/backing" -type f 2>/dev/null | wc -l)" -ge 3
n_active=$(grep -c 'FUSE passthrough active' "$RS_LOG")
check "the daemon log says once that passthrough is active ($n_active)" [ "$n_active" -eq 1 ]
check "every layer's status says passthrough" \
	bash -c 'for m; do jq -e ".passthrough == true" "$m/'"$STATUS_REL"'" >/dev/null || exit 1; done' _ "${LAYERS[@]}"

before=$(sum_opens)
ctr_read run2
expect_rc "a container started after completion reads the files" 0 run2
check "and reads right bytes" diff "$T/want" "$T/run2.out"
after=$(sum_opens)
# busybox exec'd, data.bin and hello.txt: one open each at least.
check "its opens were passthrough (passthrough_opens of the layers $before -> $after)" \
	[ "$after" -ge $((before + 3)) ]
check "the layer holding data.bin counts a passthrough open" \
	jq -e '.passthrough_opens > 0' "${DATA_L:-/nonexistent}/$STATUS_REL"

# fds held on the snapshot mounts, the daemon stopped, the page cache dropped.
cat >"$T/hold.py" <<'EOF'
import hashlib, os, sys
fds = [(p, os.open(p, os.O_RDONLY)) for p in sys.argv[1:]]
print("opened", flush=True)
sys.stdin.readline()
for p, fd in fds:
    h = hashlib.sha256()
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        h.update(b)
    print(h.hexdigest(), flush=True)
EOF
held=()
for f in "${FILES[@]}"; do
	for m in "${LAYERS[@]}"; do [ -f "$m$f" ] && held+=("$m$f"); done
done
check "each file found in one layer mount (${#held[@]})" [ "${#held[@]}" -eq "${#FILES[@]}" ]
before=$(sum_opens)
coproc HOLD { exec python3 "$T/hold.py" "${held[@]}" 2>"$T/hold.err"; }
HOLD_P=$HOLD_PID
line=
read -r -t 30 -u "${HOLD[0]}" line
after=$(sum_opens)
check "fds opened on the snapshot mounts are passthrough opens ($before -> $after)" \
	[ "$after" -ge $((before + ${#held[@]})) ]
kill -STOP "$RS_PID"
echo 3 >/proc/sys/vm/drop_caches
echo go >&"${HOLD[1]}"
: >"$T/held"
for _ in "${held[@]}"; do
	line=
	read -r -t 15 -u "${HOLD[0]}" line || break
	echo "$line" >>"$T/held"
done
kill -CONT "$RS_PID"
wait "$HOLD_P" 2>/dev/null
check "with the daemon stopped and the page cache dropped, the held fds read right to the end" \
	diff <(cut -d' ' -f1 "$T/want") "$T/held"

# --- passthrough = "off", the same root ----------------------------------------------
daemon_kill TERM
check "the daemon exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
daemon_start --config "$(config off)" --unmount-on-exit || finish
check "restarted with passthrough = \"off\": the log says so" \
	grep -q 'FUSE passthrough off: passthrough = "off"' "$RS_LOG"
# containerd keeps one connection to the plugin and needs a moment after a restart.
for _ in $(seq 20); do
	ctr_read run3
	[ "$RC" -eq 0 ] && break
	sleep 0.5
done
expect_rc "passthrough off: a container reads the files" 0 run3
check "passthrough off: right bytes" diff "$T/want" "$T/run3.out"
mapfile -t LAYERS < <(layers)
check "passthrough off: the 3 layers are mounted again (${#LAYERS[@]})" [ "${#LAYERS[@]}" -eq 3 ]
check "passthrough off: every layer says passthrough false, passthrough_opens 0" \
	bash -c 'for m; do jq -e ".passthrough == false and .passthrough_opens == 0" "$m/'"$STATUS_REL"'" || exit 1; done' _ "${LAYERS[@]}"

daemon_kill TERM
check "the daemon exits 0 on SIGTERM again (exit $RC)" [ "$RC" -eq 0 ]
remaining=$(layers | wc -l)
check "no FUSE mount of the daemon is left ($remaining)" [ "$remaining" -eq 0 ]
finish
