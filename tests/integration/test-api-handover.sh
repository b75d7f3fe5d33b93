#!/usr/bin/env bash
# The API's listening socket outlives the daemon (issue 16): it is kept in
# the fd store (here rs-fd-holder) and the next daemon accepts from the same
# socket. A client hammers the daemon with Prepare+Remove (they reach the
# daemon; containerd would answer Stat and List from its own database) on one
# channel, as containerd does, while the daemon is
#  (a) upgraded with --takeover 3 times: no call fails, the socket file is
#      never bound again (same inode), each new daemon accepts on the kept one;
#  (b) SIGKILLed and started again: at most the call in flight fails; the
#      holder keeps the listening socket, and a call issued while no daemon
#      runs waits in its backlog and succeeds once the next daemon is up;
#  (c) stopped, and its socket file removed, then replaced by another socket
#      file: the next daemon says why it does not use the kept socket and
#      binds anew, and serves;
#  (d) stopped with --unmount-on-exit: nothing is kept, the socket file is
#      removed; a start that fails after binding removes it too.
#  (e) the same through containerd (ctr snapshots prepare+rm: grpc-go's
#      client): no call fails over 2 takeovers (grpc-go follows the GOAWAYs;
#      ctr's few calls a second seldom meet the short gap an older daemon's
#      re-bind left, so this part is a guard, not a proof), at most one at a
#      SIGKILL (an older daemon: one per call until the restart).
# Each connection keeps the server's limits (16 MiB requests, 1024 streams).
# Env: RS_DAEMON, API_TEST_CLIENT.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/daemon-lib.sh"

need_root
need_tools jq ss python3
[ -x "$RS_DAEMON" ] || skip "remote-snapshotter not built"
APICLI=${API_TEST_CLIENT:-$REPO/build/tests/api/api-test-client}
[ -x "$APICLI" ] || skip "api-test-client not built ($APICLI)"

# --- helpers ---------------------------------------------------------------------------
HAMMERS=()
_hammer_cleanup() {
	local p
	for p in "${HAMMERS[@]}"; do kill -KILL "$p" 2>/dev/null; done
}
on_exit _hammer_cleanup
# hammer_start NAME: Prepare+Remove of NAME-1, NAME-2, ... until $T/NAME/stop.
hammer_start() {
	mkdir -p "$T/$1"
	echo 0 >"$T/$1/count"
	"$APICLI" -T 60 "$RS_SOCK" hammer "$1" "$T/$1" >"$T/$1/out" 2>"$T/$1/err" &
	HPID=$!
	HAMMERS+=("$HPID")
}
hammer_count() { cat "$T/$1/count" 2>/dev/null || echo 0; }
# hammer_more NAME N: waits (bounded) until N more pairs are done.
hammer_more() {
	local want=$(($(hammer_count "$1") + $2))
	for _ in $(seq 600); do
		[ "$(hammer_count "$1")" -ge "$want" ] && return 0
		sleep 0.05
	done
	return 1
}
# hammer_stop NAME PID: ends the loop after its current pair.
hammer_stop() {
	touch "$T/$1/stop"
	for _ in $(seq 1300); do
		kill -0 "$2" 2>/dev/null || break
		sleep 0.05
	done
	wait "$2"
	echo "# hammer $1: $(cat "$T/$1/out")"
	[ -s "$T/$1/err" ] && show_file "$T/$1/err" "failed calls of $1"
}
# gone PID: waits (bounded) until PID exited; its exit code in RC.
gone() {
	for _ in $(seq 600); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.05
	done
	kill -0 "$1" 2>/dev/null && return 1
	wait "$1"
	RC=$?
}
# The listening socket at RS_SOCK as ss sees it: "RECV-Q INODE" ("" if none).
listener() { ss -xlH | awk -v p="$RS_SOCK" '$5 == p {print $3, $6; exit}'; }
holds_socket() { # PID INODE: PID has that socket open
	ls -l "/proc/$1/fd" 2>/dev/null | grep -q "socket:\[$2\]"
}

daemon_start --log-level debug || finish
INODE=$(stat -c %i "$RS_SOCK")

# Connections accepted by the daemon get the server's channel args.
run settings python3 - "$RS_SOCK" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(3) + b"\x04" + bytes(5))
buf = b""
while True:  # frames until the server's SETTINGS (not an ACK)
    while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
        d = s.recv(65536)
        if not d:
            sys.exit("connection closed before the server's SETTINGS")
        buf += d
    n = int.from_bytes(buf[:3], "big")
    kind, flags, payload, buf = buf[3], buf[4], buf[9:9 + n], buf[9 + n:]
    if kind == 4 and not flags & 1:
        for i in range(0, len(payload) - 5, 6):
            print("%d=%d" % struct.unpack(">HI", payload[i:i + 6]))
        break
PY
check "a connection's SETTINGS allow 1024 concurrent streams" grep -qx '3=1024' "$T/settings.out" ||
	show_file "$T/settings.err"
run big "$APICLI" -T 10 -B 17000000 "$RS_SOCK" prepare big-key
check "a request over 16 MiB is refused (RESOURCE_EXHAUSTED)" jq -e '.code == 8' "$T/big.out"

# --- (a) upgrades -------------------------------------------------------------------------
hammer_start a
HA=$HPID
hammer_more a 20 || fail "(a) the client's calls do not go through"
for i in 1 2 3; do
	OLD=$RS_PID
	daemon_start --takeover --log-level debug || die "takeover $i"
	gone "$OLD" || fail "takeover $i: the old daemon (pid $OLD) is still running"
	check "takeover $i: the old daemon exits 0 ($RC)" [ "$RC" -eq 0 ]
	check "takeover $i: the calls go on" hammer_more a 20
done
hammer_stop a "$HA"
check "(a) 3 takeovers under Prepare+Remove: no call failed" jq -e '.failed == 0 and .pairs >= 80' "$T/a/out"
check "the socket file was never bound again (inode $INODE)" [ "$(stat -c %i "$RS_SOCK")" = "$INODE" ]
check "each new daemon accepted on the socket the old one kept" \
	[ "$(grep -c 'accepting on the socket an earlier process kept' "$RS_LOG")" -eq 3 ]

# --- (b) a crash -------------------------------------------------------------------------
hammer_start b
HB=$HPID
hammer_more b 20 || fail "(b) the client's calls do not go through"
daemon_kill KILL
read -r _ ino <<<"$(listener)"
H=$(daemon_holder_pid)
check "after a SIGKILL the fd holder (pid ${H:-none}) holds the listening socket (${ino:-none})" \
	holds_socket "${H:-0}" "${ino:-none}"
"$APICLI" -T 60 "$RS_SOCK" prepare lone-key >"$T/lone.out" 2>&1 &
LONE=$!
HAMMERS+=("$LONE")
queued=0
for _ in $(seq 200); do
	read -r q _ <<<"$(listener)"
	[ "${q:-0}" -ge 1 ] && kill -0 "$LONE" 2>/dev/null && queued=1 && break
	sleep 0.05
done
check "a call issued while no daemon runs waits in the socket's backlog" [ "$queued" = 1 ]
sleep 1
check "and is not refused" kill -0 "$LONE"
daemon_start --log-level debug || die "start after the SIGKILL"
gone "$LONE" || fail "the waiting call did not end"
check "it succeeds once the next daemon is up (exit $RC)" [ "$RC" -eq 0 ] || show_file "$T/lone.out"
check "(b) the calls go on after the restart" hammer_more b 20
hammer_stop b "$HB"
check "(b) SIGKILL under Prepare+Remove: at most the call in flight failed" \
	jq -e '.failed <= 1 and .pairs >= 40' "$T/b/out"

# --- (c) the socket file removed or replaced between runs --------------------------------
daemon_kill TERM
check "a stop (mounts kept) exits 0 ($RC)" [ "$RC" -eq 0 ]
check "and leaves the socket file, kept for the next start" test -S "$RS_SOCK"
check "the holder still holds it" holds_socket "$(daemon_holder_pid)" "$(listener | cut -d' ' -f2)"
rm -f "$RS_SOCK"
n0=$(grep -c 'binding .* anew' "$RS_LOG")
daemon_start --log-level debug || die "start with the socket file removed"
check "socket file removed: the daemon says why it binds anew" \
	grep -q "not used (.*No such file or directory): binding $RS_SOCK anew" "$RS_LOG"
run list1 "$APICLI" -T 10 "$RS_SOCK" list
expect_rc "and serves on the new socket" 0 list1
daemon_kill TERM
rm -f "$RS_SOCK"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$RS_SOCK"
daemon_start --log-level debug || die "start with the socket file replaced"
check "socket file replaced: the daemon says so and binds anew" \
	grep -q "not used (.*replaced by another socket file): binding $RS_SOCK anew" "$RS_LOG"
check "two such starts logged" [ "$(grep -c 'binding .* anew' "$RS_LOG")" -eq $((n0 + 2)) ]
run list2 "$APICLI" -T 10 "$RS_SOCK" list
expect_rc "and serves on the new socket" 0 list2

# --- (d) nothing kept ---------------------------------------------------------------------
daemon_kill TERM
daemon_start --unmount-on-exit || die "start with --unmount-on-exit"
daemon_kill TERM
check "a stop with --unmount-on-exit exits 0 ($RC)" [ "$RC" -eq 0 ]
check "and removes the socket file" test ! -e "$RS_SOCK"
check "and keeps nothing: no holder left" test -z "$(daemon_holder_pid)"
# A start that fails after binding (its metadata unreadable).
mkdir -p "$T/bad-root"
head -c 8192 /dev/urandom >"$T/bad-root/metadata.db"
bad_holder() { pgrep -f -x ".*rs-fd-holder .*$T/bad-root/fd-holder.sock"; }
on_exit 'h=$(bad_holder); [ "${h:-0}" -gt 1 ] && kill -KILL "$h"'
run badstart timeout 60 "$RS_DAEMON" --root "$T/bad-root" --address "$T/bad.sock"
check "a start with a broken metadata.db fails (exit $RC)" [ "$RC" -eq 1 ]
check "and leaves no socket file" test ! -e "$T/bad.sock"
for _ in $(seq 100); do [ -z "$(bad_holder)" ] && break; sleep 0.05; done
check "and no holder keeps anything" test -z "$(bad_holder)"

# --- (e) through containerd (grpc-go's client) ---------------------------------------------
if ! command -v containerd >/dev/null || ! command -v ctr >/dev/null || ! command -v runc >/dev/null; then
	log "containerd, ctr or runc not installed: (e) not run"
	finish
fi
daemon_start || die "start for (e)"
ctrd_with_stargz || finish
# ctr snapshots prepare + rm of e-1, e-2, ... until $T/e/stop (at most 5000);
# after a failed prepare the rm may find nothing: not counted.
mkdir -p "$T/e"
echo 0 >"$T/e/count"
(
	i=0 f=0
	while [ ! -e "$T/e/stop" ] && [ "$i" -lt 5000 ]; do
		i=$((i + 1))
		if "${CTR[@]}" snapshots --snapshotter stargz prepare "e-$i" >/dev/null 2>>"$T/e/err"; then
			"${CTR[@]}" snapshots --snapshotter stargz rm "e-$i" >/dev/null 2>>"$T/e/err" ||
				{ f=$((f + 1)) && echo "rm e-$i failed" >>"$T/e/err"; }
		else
			f=$((f + 1))
			echo "prepare e-$i failed" >>"$T/e/err"
			"${CTR[@]}" snapshots --snapshotter stargz rm "e-$i" >/dev/null 2>&1
		fi
		echo "$f" >"$T/e/failed"
		echo "$i" >"$T/e/count"
	done
) &
HE=$!
HAMMERS+=("$HE")
hammer_more e 5 || fail "(e) ctr's calls do not go through"
for i in 1 2; do
	OLD=$RS_PID
	daemon_start --takeover || die "(e) takeover $i"
	gone "$OLD" || fail "(e) takeover $i: the old daemon (pid $OLD) is still running"
	check "(e) takeover $i: ctr's calls go on" hammer_more e 5
done
f_up=$(cat "$T/e/failed" 2>/dev/null || echo 0)
check "(e) 2 takeovers under ctr snapshots prepare+rm through containerd: no call failed ($f_up)" \
	[ "$f_up" -eq 0 ]
daemon_kill KILL
daemon_start || die "(e) start after the SIGKILL"
check "(e) after a SIGKILL: ctr's calls go on" hammer_more e 5
touch "$T/e/stop"
gone "$HE" || fail "(e) the ctr loop did not stop"
f_all=$(cat "$T/e/failed" 2>/dev/null || echo 0)
check "(e) a SIGKILL under it: at most the call in flight failed ($((f_all - f_up)))" \
	[ $((f_all - f_up)) -le 1 ]
[ -s "$T/e/err" ] && show_file "$T/e/err" "ctr's errors"

finish
