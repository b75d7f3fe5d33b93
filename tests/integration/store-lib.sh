# shellcheck shell=bash
# Helpers for the `stargz store` tests.  Source after lib.sh, registry-lib.sh
# and mount-lib.sh:
#   store_start MNT ROOT [ARGS...]  `$STARGZ store --root ROOT ARGS MNT` in the
#                              background, stdout $T/store.out, stderr
#                              $T/store.err (--log-level info); waits for
#                              `ready`; sets STORE_PID; returns 1 (output shown)
#                              if it exited or timed out.  Stopped at exit.
#   store_stop                 SIGTERM, wait; $RC its exit code (124: killed)
#   store_tag REG NAME BASE    BASE, BASE1, ...: the first tag whose reference
#                              REG/NAME:TAG has a base64 without '/' (such a
#                              name is one path component, as containers/storage
#                              needs: it does not escape the '/')
#   store_podman               after podman_setup: PODMAN without --root and
#                              --runroot (podman 4.3 drops storage.conf's
#                              additionallayerstores when they are given), and
#                              the store (STORE_MNT) in storage.conf

# shellcheck disable=SC2034  # STORE_ROOT and PODMAN are for the tests
STORE_PID=

store_start() {
	local mnt=$1 root=$2
	shift 2
	mkdir -p "$mnt"
	"$STARGZ" store --root "$root" --log-level info "$@" "$mnt" >"$T/store.out" 2>"$T/store.err" &
	STORE_PID=$!
	STORE_MNT=$mnt
	STORE_ROOT=$root
	for _ in $(seq 100); do
		grep -qx ready "$T/store.out" 2>/dev/null && return 0
		kill -0 "$STORE_PID" 2>/dev/null || break
		sleep 0.1
	done
	fail "stargz store did not get ready"
	show_file "$T/store.err"
	return 1
}

store_stop() {
	[ -n "${STORE_PID:-}" ] && [ "$STORE_PID" -gt 1 ] || return 0
	mount_stop "$STORE_PID"
	STORE_PID=
}
on_exit store_stop

store_tag() {
	local t
	for t in "$3" "$3"1 "$3"2 "$3"3 "$3"4 "$3"5 "$3"6 "$3"7 "$3"8 "$3"9; do
		case $(printf '%s' "$1/$2:$t" | base64 -w0) in
		*/*) ;;
		*) echo "$t" && return 0 ;;
		esac
	done
	return 1
}

store_podman() {
	local P=$RIG/podman
	printf '\n[storage.options]\nadditionallayerstores = ["%s:ref"]\n' "$STORE_MNT" >>"$P/storage.conf"
	PODMAN=(podman --tmpdir "$P/tmp" --cgroup-manager cgroupfs --events-backend file)
}
