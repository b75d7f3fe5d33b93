#!/usr/bin/env bash
# fake_systemd.py (the stand-in for systemd's fd store that daemon tests run
# under): a child stores a memfd with FDSTORE=1, a pipe end that hangs up (dropped
# as systemd drops it) and one it removes again with FDSTOREREMOVE=1, then exits;
# the restarted child finds the memfd at fd 3 with LISTEN_FDS=1,
# LISTEN_FDNAMES=state and LISTEN_PID its own pid, reads it, says READY=1;
# status.json follows; SIGTERM stops the child and does not restart it.
. "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || skip "jq is missing"

cat >"$T/child.py" <<'PY'
import array, os, socket, sys, time
out = sys.argv[1]
def notify(text, fds=()):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    s.sendmsg([text.encode()], anc, 0, os.environ["NOTIFY_SOCKET"])
if "LISTEN_FDS" not in os.environ:
    m = os.memfd_create("state")
    os.write(m, b"hello")
    notify("FDSTORE=1\nFDNAME=state", [m])
    r, w = os.pipe()
    notify("FDSTORE=1\nFDNAME=hangs-up", [r])
    notify("FDSTORE=1\nFDNAME=gone", [w])
    notify("FDSTOREREMOVE=1\nFDNAME=gone")
    os.close(w)
    time.sleep(0.5)
    sys.exit(0)
ok = (os.environ["LISTEN_FDS"] == "1" and os.environ["LISTEN_FDNAMES"] == "state"
      and os.environ["LISTEN_PID"] == str(os.getpid()) and os.pread(3, 5, 0) == b"hello")
open(out, "w").write("ok" if ok else "bad: %r" % dict(os.environ))
notify("READY=1")
time.sleep(600)
PY

"$PYTHON" "$TESTS_DIR/fake_systemd.py" --state "$T/sd" -- "$PYTHON" "$T/child.py" "$T/result" \
	>"$T/fake.log" 2>&1 &
FAKE=$!
on_exit "kill -9 $FAKE 2>/dev/null"

for _ in $(seq 100); do
	[ -s "$T/result" ] && jq -e '.ready == 1' "$T/sd/status.json" >/dev/null 2>&1 && break
	sleep 0.1
done
check "restarted child got the memfd back by name" test "$(cat "$T/result" 2>/dev/null)" = ok
check "status: 2 starts, READY counted, only 'state' kept" \
	jq -e '.starts == 2 and .ready == 1 and .stopping == 0 and .fds == ["state"] and .pid > 0' \
	"$T/sd/status.json"
CHILD=$(jq -r .pid "$T/sd/status.json")
kill -TERM "$FAKE"
wait "$FAKE"
check "SIGTERM: fake_systemd exits 0" test $? -eq 0
check "SIGTERM: child gone, not restarted" jq -e '.pid == 0 and .starts == 2' "$T/sd/status.json"
check "child $CHILD is dead" bash -c "! kill -0 $CHILD 2>/dev/null"
[ "$N_FAIL" -eq 0 ] || { cat "$T/fake.log" "$T/sd/status.json"; }
finish
