# shellcheck shell=bash
# Helpers for the `stargz mount` tests.  Source after lib.sh and registry-lib.sh:
#     . "$(dirname "$0")/lib.sh"
#     . "$(dirname "$0")/registry-lib.sh"
#     . "$(dirname "$0")/mount-lib.sh"
#
#   need_mount                 skip (77) unless `$STARGZ mount --help` works,
#                              FUSE and overlayfs are usable
#   push_image REG NAME:TAG LAYER...   OCI image (make_oci_image.py, each
#                              eStargz layer annotated with its TOC digest when
#                              LAYER.json from `stargz build` exists) pushed
#                              with skopeo; the layout stays at $T/img-NAME-TAG
#                              (MAKE_OCI_ARGS: more make_oci_image.py options)
#   netproxy_start VAR [ARGS...]   netproxy.py in front of $NETPROXY_UPSTREAM
#                              (default $PLAIN_REG); sets
#                              VAR=127.0.0.1:PORT, VAR_CTL (control file,
#                              "pass"), VAR_LOG (request log), VAR_PID
#   proxy_mode VAR MODE        write MODE to VAR's control file and wait until
#                              the proxy's watcher has seen it
#   mount_start NAME ARGS...   `$STARGZ mount ARGS` in the background, stdout
#                              $T/NAME.out, stderr $T/NAME.err; waits (bounded,
#                              MOUNT_READY_TIMEOUT s, default 60) for `ready`.
#                              Sets MOUNT_PID; returns 1 (with the output
#                              shown) if it exited or timed out.  Mountpoints
#                              are taken from the `mounted ... at DIR` lines.
#   mount_stop PID             SIGTERM, wait (bounded, MOUNT_STOP_WAIT s, default
#                              20), $RC = its exit code (124 if it had to be
#                              killed), $STOP_SECS how long it took
#   expect_read_ok DESC NAME   pass when $T/NAME.out (mount_check.py readfile's
#                              JSON) says every byte read and none wrong, else
#                              fail with it and $T/NAME.err
#   wait_status MNT JQ_EXPR SECONDS   poll MNT/.remote-snapshotter/status.json
#                              until JQ_EXPR holds; the last status is left in
#                              $T/status.last
# Every process started here is stopped at exit, by pid; every mountpoint seen
# is unmounted (umount -l) at exit.

# shellcheck disable=SC2034  # MOUNT_PID, STOP_SECS, USIZE_ANN are for the tests
MOUNT_READY_TIMEOUT=${MOUNT_READY_TIMEOUT:-60}
STATUS_REL=.remote-snapshotter/status.json
TOC_ANN=containerd.io/snapshot/stargz/toc.digest
USIZE_ANN=io.containers.estargz.uncompressed-size
_MOUNT_PIDS=()
_MOUNTPOINTS=()

need_mount() {
	need_root
	need_stargz
	"$STARGZ" mount --help >/dev/null 2>&1 || skip "stargz mount not available yet"
	[ -c /dev/fuse ] || skip "/dev/fuse missing"
	grep -qw fuse /proc/filesystems || modprobe fuse 2>/dev/null
	grep -qw fuse /proc/filesystems || skip "no FUSE in this kernel"
}

need_overlay() {
	grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null
	grep -qw overlay /proc/filesystems
}

# --- images -------------------------------------------------------------------------

push_image() {
	local reg=$1 ref=$2 l i=0 ann=() lay
	shift 2
	lay=$T/img-$(echo "$ref" | tr '/:' '__')
	for l in "$@"; do
		if [ -f "$l.json" ]; then
			ann+=(--annotate "$i:$TOC_ANN=$(jq -r .tocDigest "$l.json")")
			ann+=(--annotate "$i:$USIZE_ANN=$(jq -r .uncompressedSize "$l.json")")
		fi
		i=$((i + 1))
	done
	rm -rf "$lay"
	"$RIG_PY" "$TESTS_DIR/make_oci_image.py" --name "${ref##*:}" "${ann[@]}" \
		${MAKE_OCI_ARGS[@]+"${MAKE_OCI_ARGS[@]}"} "$lay" "$@" \
		>"$lay.json" 2>"$lay.err" || {
		fail "make_oci_image.py for $ref"
		show_file "$lay.err"
		return 1
	}
	rm -f "$lay.tar"
	if skopeo copy --retry-times 2 --dest-tls-verify=false "oci:$lay:${ref##*:}" \
		"docker://$reg/$ref" >"$lay.skopeo.log" 2>&1; then
		rig_log "pushed $reg/$ref ($# layers)"
		return 0
	fi
	fail "skopeo could not push $reg/$ref"
	show_file "$lay.skopeo.log" skopeo.log
	return 1
}

# push_blob REG REPO FILE: monolithic blob upload with curl; prints the digest.
push_blob() {
	local reg=$1 repo=$2 f=$3 d loc sep
	d=sha256:$(sha256_of "$f")
	loc=$(curl -s -D - -o /dev/null -X POST "http://$reg/v2/$repo/blobs/uploads/" |
		tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
	[ -n "$loc" ] || return 1
	case $loc in
	http*) ;;
	*) loc=http://$reg$loc ;;
	esac
	sep='?'
	[[ $loc == *\?* ]] && sep='&'
	curl -s -f -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
		--data-binary "@$f" "$loc${sep}digest=$d" || return 1
	echo "$d"
}

# --- netproxy -------------------------------------------------------------------------

netproxy_start() {
	local var=$1 pid d
	shift
	d=$RIG/netproxy-$var
	mkdir -p "$d"
	echo pass >"$d/control"
	: >"$d/requests.log"
	rm -f "$d/port"
	"$RIG_PY" "$TESTS_DIR/netproxy.py" --listen 127.0.0.1:0 --upstream "${NETPROXY_UPSTREAM:-$PLAIN_REG}" \
		--port-file "$d/port" --control-file "$d/control" --log "$d/requests.log" "$@" \
		>"$d/out" 2>"$d/err" &
	pid=$!
	_RIG_PIDS+=("$pid")
	for _ in $(seq 100); do
		[ -s "$d/port" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! [ -s "$d/port" ]; then
		fail "netproxy.py $* did not start"
		show_file "$d/err"
		return 1
	fi
	printf -v "$var" '127.0.0.1:%s' "$(cat "$d/port")"
	printf -v "${var}_CTL" '%s' "$d/control"
	printf -v "${var}_LOG" '%s' "$d/requests.log"
	printf -v "${var}_PID" '%s' "$pid"
	rig_log "netproxy $var (pid $pid) on ${!var} -> ${NETPROXY_UPSTREAM:-$PLAIN_REG} $*"
}

proxy_mode() {
	local ctl=${1}_CTL
	echo "$2" >"${!ctl}.tmp" && mv "${!ctl}.tmp" "${!ctl}"
	sleep 0.3 # the proxy polls every 50 ms
}

# --- mounts ---------------------------------------------------------------------------

_mount_stop_all() {
	local i
	for ((i = ${#_MOUNT_PIDS[@]} - 1; i >= 0; i--)); do
		mount_stop "${_MOUNT_PIDS[$i]}" >/dev/null 2>&1
	done
	_umount_all
}
on_exit _mount_stop_all

_umount_all() {
	local m
	# deepest first: overlays on top of the layers, then the layers
	for m in $(findmnt -rn -o TARGET | grep -F "$T/" | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
}

mount_start() {
	local name=$1 pid
	shift
	"$STARGZ" mount "$@" >"$T/$name.out" 2>"$T/$name.err" &
	pid=$!
	MOUNT_PID=$pid
	_MOUNT_PIDS+=("$pid")
	local deadline=$((SECONDS + MOUNT_READY_TIMEOUT))
	while [ "$SECONDS" -lt "$deadline" ]; do
		grep -qx ready "$T/$name.out" 2>/dev/null && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	_mount_note_points "$name"
	if grep -qx ready "$T/$name.out" 2>/dev/null; then
		return 0
	fi
	if kill -0 "$pid" 2>/dev/null; then
		fail "$name: stargz mount $* not ready after ${MOUNT_READY_TIMEOUT}s"
		_mount_where "$pid"
	else
		wait "$pid"
		RC=$?
		fail "$name: stargz mount $* exited ($RC) before ready"
	fi
	show_file "$T/$name.out" stdout
	show_file "$T/$name.err" stderr
	return 1
}

# _mount_where PID: what a process that does not get ready waits on (each
# thread's state and kernel stack), for the log.
_mount_where() {
	local t
	for t in /proc/"$1"/task/*; do
		printf '    | thread %s %s: %s\n' "${t##*/}" "$(cut -d' ' -f3 "$t/stat" 2>/dev/null)" \
			"$(cat "$t/wchan" 2>/dev/null)"
		sed 's/^/    |   /' "$t/stack" 2>/dev/null | head -n 8
	done
}

_mount_note_points() {
	local m
	while read -r m; do
		_MOUNTPOINTS+=("$m")
	done < <(sed -n 's/^mounted [^ ]* at //p' "$T/$1.out" 2>/dev/null)
}

mount_stop() {
	local pid=$1 i t0=$SECONDS
	RC=0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq $((${MOUNT_STOP_WAIT:-20} * 10))); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
			RC=124
		else
			wait "$pid" 2>/dev/null
			RC=$?
		fi
	else
		wait "$pid" 2>/dev/null
		RC=$?
	fi
	STOP_SECS=$((SECONDS - t0))
	for i in "${!_MOUNT_PIDS[@]}"; do
		[ "${_MOUNT_PIDS[$i]}" = "$pid" ] && unset '_MOUNT_PIDS[i]'
	done
	_MOUNT_PIDS=("${_MOUNT_PIDS[@]}")
	return 0
}

# is_mounted DIR: DIR is a mountpoint right now.
is_mounted() {
	mountpoint -q "$1" 2>/dev/null
}

expect_read_ok() {
	if jq -e '.ok and (.wrong | not)' "$T/$2.out" >/dev/null 2>&1; then
		pass "$1 ($(jq -r '"\(.bytes) bytes in \(.secs) s"' "$T/$2.out"))"
		return 0
	fi
	fail "$1: $(cat "$T/$2.out" 2>/dev/null) (exit $RC)"
	show_file "$T/$2.err"
	return 1
}

wait_status() {
	local mnt=$1 expr=$2 secs=$3
	local deadline=$((SECONDS + secs))
	while :; do
		if timeout 10 cat "$mnt/$STATUS_REL" >"$T/status.last" 2>/dev/null &&
			jq -e "$expr" "$T/status.last" >/dev/null 2>&1; then
			return 0
		fi
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.2
	done
}

# whiteout_manifest DIR: tree_manifest of an extracted layer DIR as the mount
# should show it: `.wh.X` -> char device X 0,0 (mode, owner and mtime of the
# whiteout not compared), `.wh..wh..opq` dropped and its directory given
# trusted.overlay.opaque=y.  tree_manifest options may follow.
whiteout_manifest() {
	tree_manifest "$@" | "$RIG_PY" "$TESTS_DIR/mount_check.py" whiteouts
}

# mount_manifest DIR [OPTIONS]: tree_manifest of a mounted layer (bounded by
# MANIFEST_TIMEOUT s, default 180), whiteout char devices normalised like
# whiteout_manifest.  Fails (errors on stderr) if the scan fails or hangs.
mount_manifest() {
	local tmp rc
	tmp=$(mktemp "$T/mmanifest.XXXXXX")
	timeout "${MANIFEST_TIMEOUT:-180}" "$RIG_PY" "$TESTS_DIR/tree_manifest.py" "$@" >"$tmp"
	rc=$?
	[ "$rc" = 124 ] && echo "tree_manifest.py $1: timed out" >&2
	[ "$rc" = 0 ] && "$RIG_PY" "$TESTS_DIR/mount_check.py" normalise <"$tmp"
	rm -f "$tmp"
	return "$rc"
}
