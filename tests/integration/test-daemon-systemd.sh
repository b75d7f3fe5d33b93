#!/usr/bin/env bash
# The daemon under a systemd-style fd store (issue 16): systemd cannot run
# here, so fake_systemd.py stands up its NOTIFY_SOCKET / LISTEN_FDS protocol.
# The daemon says READY=1 once serving, stores each lazily mounted layer's
# FUSE connection with FDSTORE=1 and FDNAME=fuse-<snapshot id> (no holder
# process started), and, SIGKILLed and started again by the stand-in, gets
# them back through LISTEN_FDS/LISTEN_FDNAMES and takes them over: a running
# container reads an uncached file right. The API socket goes the same way,
# as api-listen. Removing the image's snapshots
# sends FDSTOREREMOVE. Env: STARGZ, RS_DAEMON. Everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
. "$(dirname "$0")/daemon-lib.sh"

need_root
need_stargz
need_tools containerd ctr runc skopeo jq sha256sum pgrep
"$STARGZ" rpull --help >/dev/null 2>&1 || skip "stargz rpull not built"
[ -x "$RS_DAEMON" ] || skip "remote-snapshotter not built"

registry_start_plain || finish
REG=$PLAIN_REG
seed_image "$REG" rs/busybox:gz || finish
sg convert convert --plain-http "$REG/rs/busybox:gz" "$REG/rs/busybox:esgz"
expect_rc "stargz convert of the busybox image to eStargz" 0 convert || finish
REF=$REG/rs/busybox:esgz
DATA=$RIG/img-rs_busybox-gz.src/l3/usr/share/rs/data.bin

SD=$T/sd
"$RIG_PY" "$TESTS_DIR/fake_systemd.py" --state "$SD" -- "$RS_DAEMON" --root "$RS_ROOT" \
	--address "$RS_SOCK" --plain-http >"$T/sd.out" 2>"$RS_LOG" &
FAKE=$!
_sd_cleanup() {
	local p
	p=$(jq -r .pid "$SD/status.json" 2>/dev/null)
	[ "${p:-0}" -gt 1 ] 2>/dev/null && kill -KILL "$p" 2>/dev/null
	kill -KILL "$FAKE" 2>/dev/null
}
on_exit _sd_cleanup
sd_ready() { # N: wait until READY=1 was said N times
	for _ in $(seq 150); do
		jq -e ".ready >= $1" "$SD/status.json" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}
check "the daemon says READY=1 once serving" sd_ready 1
ctrd_with_stargz || finish
rpull pull "$REF" --snapshotter stargz
expect_rc "stargz rpull of the eStargz image" 0 pull || finish
check "its 3 layers are lazy" test "$(grep -c ' lazy' "$T/pull.out")" -eq 3
check "each layer's connection is in the store as fuse-<id> (FDSTORE=1)" \
	jq -e '[.fds[] | select(startswith("fuse-"))] | length == 3' "$SD/status.json"
check "the API's listening socket is in the store as api-listen" \
	jq -e '.fds | index("api-listen") != null' "$SD/status.json"
check "no rs-fd-holder is started under systemd" test -z "$(daemon_holder_pid)"

run bg timeout 30 "${CTR[@]}" run -d --snapshotter stargz "$REF" rs-sd-bg sleep 600
expect_rc "a long-running container starts" 0 bg
BG_PIDS="$("${CTR[@]}" tasks ls 2>/dev/null | awk '$1 == "rs-sd-bg" {print $2}')"
BG_PIDS+=" $(pgrep -f -x ".*containerd-shim-runc-v2 .*-id rs-sd-bg -address $CTRD_SOCK" | tr '\n' ' ')"
on_exit 'for p in $BG_PIDS; do kill -KILL $p 2>/dev/null; done'

OLD=$(jq -r .pid "$SD/status.json")
kill -KILL "$OLD"
check "the stand-in starts the daemon again with LISTEN_FDS" sd_ready 2
check "a new process" test "$(jq -r .pid "$SD/status.json")" != "$OLD"
check "the restarted daemon took the 3 layers over" \
	test "$(grep -c 'remote layer .* taken over at' "$RS_LOG")" -ge 3
check "the log says which store it uses" grep -q 'fd store: systemd' "$RS_LOG"
check "and accepts on the API socket it got back through LISTEN_FDS" \
	grep -q 'accepting on the socket an earlier process kept' "$RS_LOG"
echo 3 >/proc/sys/vm/drop_caches
run oldread timeout 30 "${CTR[@]}" tasks exec --exec-id x1 rs-sd-bg busybox sha256sum /usr/share/rs/data.bin
expect_rc "the container started before the SIGKILL reads an uncached file" 0 oldread
check "and reads it right" grep -q "^$(sha256_of "$DATA") " "$T/oldread.out"

"${CTR[@]}" tasks kill -s KILL rs-sd-bg >/dev/null 2>&1
sleep 1
"${CTR[@]}" tasks rm -f rs-sd-bg >/dev/null 2>&1
"${CTR[@]}" containers rm rs-sd-bg >/dev/null 2>&1
"${CTR[@]}" images rm --sync "$REF" >/dev/null 2>&1
# containerd removes the image's snapshots in the background.
for _ in $(seq 100); do
	jq -e '[.fds[] | select(startswith("fuse-"))] | length == 0' "$SD/status.json" >/dev/null 2>&1 && break
	sleep 0.2
done
check "removing the snapshots removes their connections (FDSTOREREMOVE=1)" \
	jq -e '[.fds[] | select(startswith("fuse-"))] | length == 0' "$SD/status.json"

kill -TERM "$FAKE"
wait "$FAKE"
check "a stop: the stand-in and the daemon exit 0" test $? -eq 0
check "the daemon logged its stop" grep -q 'shutting down' "$RS_LOG"
finish
