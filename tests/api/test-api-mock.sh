#!/usr/bin/env bash
# src/api against a stand-in snapshotter (mock-snapshot.c), driven by
# api-test-client over the real gRPC wire: every method, the status codes
# and messages, List batching and filters, labels, timestamps, hostile input
# (garbage, no message, unknown methods, oversized messages), concurrency,
# cancellation, a stop with a call in flight, stale and live sockets.
#   test-api-mock.sh [API-MOCK-SERVER [API-TEST-CLIENT]]
. "$(dirname "$0")/../integration/lib.sh"

SERVER=${1:-$REPO/build/tests/api/api-mock-server}
CLIENT=${2:-$REPO/build/tests/api/api-test-client}
[ -x "$SERVER" ] && [ -x "$CLIENT" ] || die "build first: $SERVER, $CLIENT"
need_tools() {
	local t
	for t in "$@"; do command -v "$t" >/dev/null || skip "$t not installed"; done
}
need_tools jq

SOCK=$T/run/sub/api.sock
SRV_PID=

# start_server [ARGS...]: the mock server on $SOCK; waits for the socket.
start_server() {
	"$SERVER" -d "$@" "$T/root" "$SOCK" >>"$T/server.log" 2>&1 &
	SRV_PID=$!
	for _ in $(seq 100); do
		[ -S "$SOCK" ] && "$CLIENT" -T 2 "$SOCK" list >/dev/null 2>&1 && return 0
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.05
	done
	show_file "$T/server.log"
	die "api-mock-server did not come up"
}
# stop_server: SIGTERM, wait; sets SRV_RC.
stop_server() {
	[ -n "$SRV_PID" ] || return 0
	kill -TERM "$SRV_PID" 2>/dev/null
	wait "$SRV_PID"
	SRV_RC=$?
	SRV_PID=
}
on_exit '[ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null; true'

# c NAME ARGS...: the client against $SOCK; JSON in $T/NAME.out, exit in $RC.
c() {
	local name=$1
	shift
	run "$name" "$CLIENT" "$SOCK" "$@"
}
c_opts() { # NAME OPTS... -- METHOD ARGS...
	local name=$1 o=()
	shift
	while [ "$1" != -- ]; do
		o+=("$1")
		shift
	done
	shift
	run "$name" "$CLIENT" "${o[@]}" "$SOCK" "$@"
}
# want DESC NAME JQ-EXPR: the JSON answer of NAME satisfies JQ-EXPR.
want() {
	local desc=$1 name=$2 expr=$3
	if [ "$RC" -lt 128 ] && jq -e "$expr" "$T/$name.out" >/dev/null 2>&1; then
		pass "$desc"
	else
		fail "$desc: want $expr (client exit $RC)"
		show_file "$T/$name.out" answer
		show_file "$T/$name.err" stderr
	fi
}

start_server -t 8
[ "$(stat -c %a "$SOCK")" = 660 ] && pass "socket mode 0660, directory created" ||
	fail "socket mode $(stat -c %a "$SOCK")"

# --- every method ---------------------------------------------------------------
c_opts p1 -l a=1 -l a=2 -l b=x -- prepare k1
want "Prepare: bind mount of a parentless snapshot" p1 \
	'.code == 0 and .response.mounts == [{"type":"bind","source":"/mock/k1/fs","options":["rw","rbind"]}]'
c s1 stat k1
want "Stat: active, labels as a map, a key sent twice keeps its last value" s1 \
	'.code == 0 and .response.info.kind == "active" and .response.info.kind_value == 2 and .response.info.labels == {"a":"2","b":"x"}'
now=$(date +%s)
want "Stat: created_at / updated_at are Timestamps of now" s1 \
	"(.response.info.created_at.seconds - $now | fabs) < 30 and .response.info.created_at.nanos >= 0 and .response.info.created_at.nanos < 1000000000"
c m1 mounts k1
want "Mounts" m1 '.code == 0 and (.response.mounts | length) == 1'
c_opts c1 -l c=3 -- commit base k1
want "Commit: Empty reply" c1 '.code == 0 and .messages == 1'
c s2 stat base
want "Stat after Commit: committed, labels replaced" s2 \
	'.response.info.kind == "committed" and .response.info.kind_value == 3 and .response.info.labels == {"c":"3"}'
c_opts p2 -P base -- prepare k2
want "Prepare on a parent: overlay" p2 '.code == 0 and .response.mounts[0].type == "overlay"'
c_opts v1 -P base -- view v1
want "View" v1 '.code == 0 and .response.mounts[0].options[0] == "lowerdir=/mock/base/fs"'
c s3 stat v1
want "Stat of a view: kind view, parent set" s3 '.response.info.kind == "view" and .response.info.parent == "base"'
c_opts u1 -l x=1 -l y=2 -p labels.x -- update base
want "Update labels.x: only x changes" u1 '.code == 0 and .response.info.labels == {"c":"3","x":"1"}'
c_opts u2 -l z=9 -- update base
want "Update without a mask: all labels replaced" u2 '.code == 0 and .response.info.labels == {"z":"9"}'
c_opts u3 -l z=9 -p parent -- update base
want "Update of a field other than labels: INVALID_ARGUMENT" u3 '.code == 3 and (.message | test("parent"))'
c u4 update nosuch
want "Update of a missing snapshot: NOT_FOUND" u4 '.code == 5'
c us1 usage k2
want "Usage" us1 '.code == 0 and .response.size == 8192 and .response.inodes == 1'
c cl1 cleanup
want "Cleanup" cl1 '.code == 0'
c r1 remove v1
want "Remove" r1 '.code == 0'
c s4 stat v1
want "Stat after Remove: NOT_FOUND" s4 '.code == 5 and (.message | test("v1"))'

# --- errors -------------------------------------------------------------------------
c e1 prepare k2
want "Prepare of an existing key: ALREADY_EXISTS" e1 '.code == 6'
c_opts e2 -P nosuch -- prepare k3
want "Prepare on a missing parent: NOT_FOUND" e2 '.code == 5 and (.message | test("nosuch"))'
c_opts e3 -P k2 -- prepare k3
want "Prepare on an active parent: INVALID_ARGUMENT" e3 '.code == 3'
c_opts v2 -P base -- view v2
c e4 commit c2 v2
want "Commit of a view: FAILED_PRECONDITION" e4 '.code == 9'
c e5 remove base
want "Remove of a parent with children: FAILED_PRECONDITION" e5 '.code == 9 and .message != ""'
c_opts e6 -l test.fail=unavailable -- prepare k4
want "SNAP_EUNAVAILABLE: UNAVAILABLE" e6 '.code == 14 and (.message | test("mock failure"))'
c_opts e7 -l test.fail=eio -- prepare k4
want "another errno: UNKNOWN with the message" e7 '.code == 2 and .message == "mock failure eio as asked"'
c_opts e8 -l test.fail=nomsg -- prepare k4
want "an error without a message: UNKNOWN, strerror" e8 '.code == 2 and .message == "Prepare: Input/output error"'
c_opts e8b -l "test.fail-msg=$(printf 'caf\xc3\xa9 \xff\xc3 end')" -- prepare k4
want "a message that is not UTF-8 reaches the client as UTF-8" e8b '.code == 2 and .message == "café ?? end"'
c e9 prepare ""
want "Prepare without a key: INVALID_ARGUMENT" e9 '.code == 3 and .message == "prepare: key is required"'
c e10 commit "" k2
want "Commit without a name: INVALID_ARGUMENT" e10 '.code == 3 and (.message | test("name is required"))'
for m in mounts remove stat usage; do
	c e-$m $m ""
	want "$m without a key: INVALID_ARGUMENT" e-$m '.code == 3 and (.message | test("key is required"))'
done
c_opts e11 -B 4096 -- prepare k5
want "a label of 4096+3 bytes: INVALID_ARGUMENT" e11 '.code == 3 and (.message | test("maximum size"))'
c_opts e12 -B 4093 -- prepare k5
want "a label of exactly 4096 bytes is fine" e12 '.code == 0'

# --- hostile input -------------------------------------------------------------------
c h1 raw /containerd.services.snapshots.v1.Snapshots/Nope 0a00
want "unknown method: UNIMPLEMENTED" h1 '.code == 12 and (.message | test("Nope"))'
c h2 raw /other.Service/Prepare 0a00
want "another service: UNIMPLEMENTED" h2 '.code == 12'
c h3 garbage /containerd.services.snapshots.v1.Snapshots/Prepare 100
want "garbage bytes: INVALID_ARGUMENT" h3 '.code == 3 and (.message | test("not a valid"))'
# field 2 (key) as a length-delimited string claiming 100 bytes, 1 present
c h4 raw /containerd.services.snapshots.v1.Snapshots/Stat 126461
want "truncated protobuf: INVALID_ARGUMENT" h4 '.code == 3'
# UpdateSnapshotRequest with no info (field 2 absent)
c h5 raw /containerd.services.snapshots.v1.Snapshots/Update 0a057374617267
want "Update without info: INVALID_ARGUMENT" h5 '.code == 3 and .message == "update: info is required"'
c h6 raw /containerd.services.snapshots.v1.Snapshots/Stat ""
want "empty Stat request (no key): INVALID_ARGUMENT" h6 '.code == 3'
c h7 nomsg /containerd.services.snapshots.v1.Snapshots/Stat
want "no request message: INVALID_ARGUMENT" h7 '.code == 3'
c h8 garbage /containerd.services.snapshots.v1.Snapshots/Prepare $((17 * 1024 * 1024))
want "a 17 MiB request: RESOURCE_EXHAUSTED" h8 '.code == 8'
c_opts h9 -B $((15 * 1024 * 1024)) -- prepare k6
want "a 15 MiB label: parsed, then INVALID_ARGUMENT" h9 '.code == 3'
# a map entry whose value is a nested garbage message: field 4 (labels) = {0xff...}
c h10 raw /containerd.services.snapshots.v1.Snapshots/Prepare 12026b312202ffff
want "a broken labels entry: INVALID_ARGUMENT" h10 '.code == 3'
c h11 stat k2
want "still serving after all that" h11 '.code == 0'

# --- List ----------------------------------------------------------------------------
"$CLIENT" -r 250 -l n=x "$SOCK" prepare many >/dev/null || fail "prepare many-1..250"
c l1 list
want "List: every snapshot, in batches of 100" l1 \
	'.code == 0 and (.infos | length) == 254 and .messages == 3 and ([.infos[].name] | index("many-250")) != null'
c_opts l2 -f name==many-7 -- list
want "List name==many-7" l2 '.code == 0 and (.infos | length) == 1 and .infos[0].labels.n == "x"'
c_opts l3 -f kind==committed -- list
want "List kind==committed" l3 '.code == 0 and ([.infos[].name] == ["base"])'
c_opts l4 -f name==many-7 -f name==many-8 -- list
want "List: filters OR" l4 '(.infos | length) == 2'
c_opts l5 -f 'name==(' -- list
want "List with a filter that does not parse: INVALID_ARGUMENT" l5 '.code == 3 and .messages == 0'
c_opts l6 -f name==nothing -- list
want "List matching nothing: OK, no message" l6 '.code == 0 and .messages == 0'
"$CLIENT" -r 30 -B 4000 -n 40 "$SOCK" prepare fat >/dev/null || fail "prepare fat-1..30"
c_opts l7 -f labels.big-39 -- list
want "List of 30 infos of 160 KB: messages of at most 1 MiB" l7 \
	'.code == 0 and (.infos | length) == 30 and .messages == 5 and (.infos[0].labels | length) == 40'

# --- concurrency ----------------------------------------------------------------------
# wait_log N PATTERN: until the server log has N lines matching PATTERN (20 s).
wait_log() {
	for _ in $(seq 400); do
		[ "$(grep -c "$2" "$T/server.log")" -ge "$1" ] && return 0
		sleep 0.05
	done
	return 1
}
base_starts=$(grep -c 'mock: sleep start' "$T/server.log")
pids=()
for i in 1 2 3 4; do
	"$CLIENT" -l test.sleep-ms=4000 "$SOCK" prepare "slow-$i" >"$T/slow-$i.out" 2>&1 &
	pids+=($!)
done
if wait_log $((base_starts + 4)) 'mock: sleep start'; then
	ends=$(grep -c 'mock: sleep end' "$T/server.log")
	pass "four slow Prepares run at once (4 handlers asleep together)"
else
	fail "four slow Prepares did not all start within 20 s"
fi
c q1 stat k2
alive=0
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
want "a Stat answers while they run" q1 '.code == 0'
[ "$alive" = 4 ] && [ "$(grep -c 'mock: sleep end' "$T/server.log")" = "$ends" ] &&
	pass "... before any of them finished" || fail "Stat came after $((4 - alive)) slow Prepares"
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
[ "$ok" = 4 ] && pass "the four slow Prepares succeed" || fail "slow Prepares: $ok of 4 ok"
pids=()
for i in $(seq 1 40); do
	"$CLIENT" "$SOCK" stat k2 >"$T/par-$i.out" 2>&1 &
	pids+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
[ "$ok" = 40 ] && pass "40 clients at once" || fail "40 clients at once: $ok ok"

# --- cancellation ----------------------------------------------------------------------
c_opts x1 -c 200 -l test.sleep-ms=800 -- prepare cancelled-1
want "a call the client cancels: CANCELLED" x1 '.code == 1'
c_opts x2 -T 1 -l test.sleep-ms=2000 -- prepare late-1
want "a call past its deadline: DEADLINE_EXCEEDED" x2 '.code == 4'
sleep 1.3
c x3 stat k2
want "serving after cancelled calls" x3 '.code == 0'

# --- stop -------------------------------------------------------------------------------
base_starts=$(grep -c 'mock: sleep start' "$T/server.log")
"$CLIENT" -l test.sleep-ms=1500 "$SOCK" prepare stop-1 >"$T/stop-1.out" 2>&1 &
cp=$!
wait_log $((base_starts + 1)) 'mock: sleep start' || fail "the Prepare to stop under did not start"
stop_server
wait "$cp"
RC=$?
want "SIGTERM with a call in flight: the call finishes" stop-1 '.code == 0'
[ "${SRV_RC:-1}" = 0 ] && pass "server exits 0" || fail "server exit $SRV_RC"
[ ! -e "$SOCK" ] && pass "socket removed at stop" || fail "socket left at stop"

# --- sockets ----------------------------------------------------------------------------
start_server
kill -KILL "$SRV_PID"
wait "$SRV_PID" 2>/dev/null
SRV_PID=
[ -S "$SOCK" ] || fail "no stale socket after kill -9 (test setup)"
start_server
pass "a stale socket is replaced"
run second "$SERVER" "$T/root2" "$SOCK"
[ "$RC" = 1 ] && grep -q "another server is listening" "$T/second.err" &&
	pass "a live socket is not taken over" || {
	fail "second server on a live socket: exit $RC"
	show_file "$T/second.err"
}
c y1 stat nosuch
want "the first server still answers" y1 '.code == 5'
stop_server
echo notasocket >"$SOCK"
run third "$SERVER" "$T/root3" "$SOCK"
[ "$RC" = 1 ] && grep -q "not a socket" "$T/third.err" && pass "a regular file in the way is an error" ||
	fail "regular file at the socket path: exit $RC"
run fourth "$SERVER" "$T/root4" "$T/$(printf 'x%.0s' $(seq 120))/s.sock"
[ "$RC" = 1 ] && grep -q "too long" "$T/fourth.err" && pass "a too long socket path is an error" ||
	fail "long socket path: exit $RC"
if grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error' "$T/server.log" >/dev/null; then
	fail "sanitizer reports in the server log"
	grep -E -A10 'Sanitizer|runtime error' "$T/server.log" | head -40
fi
finish
