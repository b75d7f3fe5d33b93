# shellcheck shell=bash
# Helpers for tests of the remote-snapshotter daemon with a private containerd.
# Source after lib.sh and registry-lib.sh:
#
#   daemon_start [ARGS...]   the daemon (RS_DAEMON, default build/src/cmd/
#                            remote-snapshotter) with --root $RS_ROOT --address
#                            $RS_SOCK --plain-http ARGS; waits for `ready`.
#                            Log in $RS_LOG (appended across restarts); RS_PID.
#   daemon_kill SIG          sends SIG to the daemon and waits for it to go
#                            (a SIGTERM leaves the mounts to the next start
#                            unless the daemon runs with --unmount-on-exit)
#   daemon_holder_pid        the fd holder's pid (rs-fd-holder of RS_ROOT)
#   daemon_fuse_mounts       the daemon's FUSE layer mounts
#   ctrd_with_stargz         containerd_start with our daemon as the proxy
#                            snapshotter "stargz"
#   rpull NAME REF [ARGS]    `stargz rpull` through that containerd;
#                            output in $T/NAME.{out,err}, exit code in $RC
# Every process is stopped at exit, by pid (the fd holder too); mounts under
# $RS_ROOT are unmounted.

RS_DAEMON=${RS_DAEMON:-$REPO/build/src/cmd/remote-snapshotter}
RS_ROOT=$T/rs-root
RS_SOCK=$T/rs.sock
RS_LOG=$T/rs-daemon.log
RS_PID=

_daemon_cleanup() {
	if [ -n "$RS_PID" ] && kill -0 "$RS_PID" 2>/dev/null; then
		kill -TERM "$RS_PID" 2>/dev/null
		for _ in $(seq 100); do
			kill -0 "$RS_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$RS_PID" 2>/dev/null
	fi
	# Mounts a killed daemon left behind (FUSE layers, overlays of containers).
	awk -v r="$RS_ROOT" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	# The fd holder our daemon started keeps the connections of a stop.
	local h
	h=$(daemon_holder_pid)
	[ -n "$h" ] && kill -KILL "$h" 2>/dev/null
}

# daemon_holder_pid: the pid of the rs-fd-holder the daemon started for RS_ROOT, or "".
daemon_holder_pid() {
	pgrep -f -x ".*rs-fd-holder .*$RS_ROOT/fd-holder.sock" | head -1
}

# daemon_fuse_mounts: the daemon's FUSE layer mounts, one a line.
daemon_fuse_mounts() {
	awk -v r="$RS_ROOT/snapshots" 'index($5, r) == 1 && $0 ~ / - fuse/ {print $5}' /proc/self/mountinfo
}

daemon_start() {
	[ -x "$RS_DAEMON" ] || skip "remote-snapshotter not built ($RS_DAEMON)"
	local fifo=$T/rs-ready.$$.$RANDOM
	mkfifo "$fifo"
	"$RS_DAEMON" --root "$RS_ROOT" --address "$RS_SOCK" --plain-http "$@" \
		>"$fifo" 2>>"$RS_LOG" &
	RS_PID=$!
	if [ "${_DAEMON_CLEANUP_SET:-}" != 1 ]; then
		on_exit _daemon_cleanup
		_DAEMON_CLEANUP_SET=1
	fi
	local line=''
	read -r -t 30 line <"$fifo"
	rm -f "$fifo"
	if [ "$line" != ready ]; then
		fail "remote-snapshotter did not get ready (got '$line')"
		show_file "$RS_LOG" rs-daemon.log
		return 1
	fi
	rig_log "remote-snapshotter (pid $RS_PID) on $RS_SOCK"
}

daemon_kill() {
	local sig=$1
	kill "-$sig" "$RS_PID" 2>/dev/null
	for _ in $(seq 200); do
		kill -0 "$RS_PID" 2>/dev/null || break
		sleep 0.1
	done
	wait "$RS_PID" 2>/dev/null
	RC=$?
}

ctrd_with_stargz() {
	CONTAINERD_EXTRA_CONFIG="[proxy_plugins]
  [proxy_plugins.stargz]
    type = \"snapshot\"
    address = \"$RS_SOCK\""
	containerd_start
}

rpull() {
	local name=$1 ref=$2
	shift 2
	run "$name" timeout 120 "$STARGZ" rpull --address "$CTRD_SOCK" --plain-http "$@" "$ref"
}
