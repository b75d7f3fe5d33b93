# shellcheck shell=bash
# bench/lib.sh: what the containerd benchmarks (bench/pull-run, bench/hello)
# share.  Source it after parsing the options, with these set:
#   keep (0|1)   keep the work dir ($T) at exit
#   cache        where inputs are cached (debootstrap rootfs tars, layers)
#   log_level    the daemons' --log-level
# It sources tests/integration/{lib,registry-lib,mount-lib}.sh ($T, on_exit,
# the registry and netproxy starters, push_image; everything they start is
# stopped by pid at exit and every mount under $T unmounted) and gives:
#   bench_init TOOL...   root, the tools (and the common ones), FUSE,
#                        overlayfs, $T/{bin,logs}, no credentials of this
#                        machine, private copies of the binaries in $STARGZ
#                        and $RS_DAEMON
#   problem MSG / PROBLEMS, say, fatal, calc, ratio, median, minv, maxv, stats,
#   sum, mb, timed (ELAPSED), drop_caches
#   inst_up NAME 0|1 [DAEMON ARGS...] / inst_down: a fresh containerd (and
#   daemon as proxy snapshotter "stargz"); C_SOCK, CTR, R_PID, R_ROOT; cpu_s,
#   rss_kb, fuse_mounts, layer_status
#   pull_image SNAPSHOTTER REF NAME [TIMEOUT]: ctr images pull (overlayfs) or
#   stargz rpull (stargz), timed
#   bench_net_up RATE DELAY: registry ($PLAIN_REG), shaping proxy ($PX, its
#   log $PX_LOG), px_time; plog_off, plog_sum, plog_save, write_phases
#   make_rootfs, make_layers, image_layer_sizes: the Debian images
#   JQ_DEFS, print_problems, write_json: the report

# shellcheck disable=SC2034,SC2154 # variables set by or for the scripts sourcing this
BENCH=bench/$(basename "$0")
_bench_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$_bench_top/tests/integration/lib.sh"
. "$_bench_top/tests/integration/registry-lib.sh"
. "$_bench_top/tests/integration/mount-lib.sh"
[ "${keep:-0}" = 1 ] && KEEP_TMP=1

fatal() { echo "$BENCH: $*" >&2; exit 1; }
PROBLEMS=()
problem() {
	PROBLEMS+=("$*")
	echo "PROBLEM: $*" >&2
}
say() { echo "# $*" >&2; }
calc() { awk "BEGIN { printf \"%.${2:-3}f\", ($1) }"; }
ratio() { awk "BEGIN { if (($2) == 0) print \"null\"; else printf \"%.3f\", ($1) / ($2) }"; }
# of an even count, the lower middle value
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
minv() { printf '%s\n' "$@" | sort -g | head -1; }
maxv() { printf '%s\n' "$@" | sort -g | tail -1; }
sum() { local s=0 x; for x in "$@"; do s=$((s + x)); done; echo "$s"; }
mb() { calc "$1 / 1e6" 1; }
stats() { # DIGITS VALUE...: "median [min..max]" ("-" for none)
	local d=$1
	shift
	[ $# -gt 0 ] || { echo "-"; return; }
	if [ $# = 1 ]; then calc "$1" "$d"; return; fi
	printf '%s [%s..%s]' "$(calc "$(median "$@")" "$d")" "$(calc "$(minv "$@")" "$d")" "$(calc "$(maxv "$@")" "$d")"
}

# ELAPSED after `timed CMD...`; returns CMD's status.
ELAPSED=
timed() {
	local t0 rc
	t0=$EPOCHREALTIME
	"$@"
	rc=$?
	ELAPSED=$(calc "$EPOCHREALTIME - $t0" 4)
	return $rc
}

bench_init() {
	need_root
	need_tools docker-registry skopeo jq curl gzip tar containerd ctr runc containerd-shim-runc-v2 \
		findmnt timeout awk "$@"
	[ -c /dev/fuse ] || fatal "/dev/fuse missing"
	need_overlay || fatal "no overlayfs"
	mkdir -p "$T/docker-none" "$T/bin" "$T/logs"
	echo '{"auths": {}}' >"$T/docker-none/config.json"
	export DOCKER_CONFIG=$T/docker-none # no credentials of this machine take part
	# Others may rebuild build/ while this runs: time private copies.
	RS_DAEMON=${RS_DAEMON:-$_bench_top/build/src/cmd/remote-snapshotter}
	[ -x "$STARGZ" ] || fatal "no $STARGZ (meson setup build && ninja -C build)"
	[ -x "$RS_DAEMON" ] || fatal "no $RS_DAEMON"
	cp "$STARGZ" "$T/bin/stargz" && cp "$RS_DAEMON" "$T/bin/remote-snapshotter" || exit 1
	# The fd holder beside the daemon, where it looks for it (without it every
	# start warns that its mounts and socket are not kept).
	[ -x "$(dirname "$RS_DAEMON")/rs-fd-holder" ] &&
		cp "$(dirname "$RS_DAEMON")/rs-fd-holder" "$T/bin/rs-fd-holder"
	STARGZ=$T/bin/stargz
	RS_DAEMON=$T/bin/remote-snapshotter
	"$STARGZ" rpull --help >/dev/null 2>&1 || fatal "stargz rpull not built"
	mkdir -p "$cache" || fatal "cannot create $cache"
	load0=$(cut -d' ' -f1-3 /proc/loadavg)
}

# drop_caches: the page cache goes (image data in the registry's storage, the
# containerd and daemon roots), then the tools every run starts are read back
# in (ctr, stargz, runc, the shim): "cold" is about the image, not the tools.
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
	ctr --help >/dev/null 2>&1
	"$STARGZ" rpull --help >/dev/null 2>&1
	runc --version >/dev/null 2>&1
	containerd-shim-runc-v2 -v >/dev/null 2>&1
}

# --- containerd and the daemon, one pair at a time ------------------------------------------

I_NAME='' I_DIR='' C_PID='' C_SOCK='' R_PID='' R_ROOT='' R_SOCK=''
CTR=()
# inst_up NAME DAEMON(0|1) [DAEMON ARGS...]: a fresh containerd in $T/NAME (and,
# with DAEMON=1, a fresh remote-snapshotter registered as proxy plugin
# "stargz").  Logs in $T/logs/NAME.*.  Returns 1 (a problem noted) on failure.
inst_up() {
	local name=$1 with_daemon=$2 t0
	shift 2
	I_NAME=$name
	I_DIR=$T/$name
	rm -rf "$I_DIR"
	mkdir -p "$I_DIR/c/root" "$I_DIR/c/state" "$I_DIR/c/opt"
	C_SOCK=$I_DIR/c/ctrd.sock
	local extra=''
	if [ "$with_daemon" = 1 ]; then
		R_ROOT=$I_DIR/rs
		R_SOCK=$I_DIR/rs.sock
		t0=$EPOCHREALTIME
		"$RS_DAEMON" --root "$R_ROOT" --address "$R_SOCK" --plain-http --log-level "$log_level" "$@" \
			>"$T/logs/$name.daemon.out" 2>"$T/logs/$name.daemon.log" &
		R_PID=$!
		for _ in $(seq 600); do
			grep -qx ready "$T/logs/$name.daemon.out" 2>/dev/null && break
			kill -0 "$R_PID" 2>/dev/null || break
			sleep 0.05
		done
		if ! grep -qx ready "$T/logs/$name.daemon.out" 2>/dev/null; then
			problem "$name: remote-snapshotter did not print ready: $(tail -c 400 "$T/logs/$name.daemon.log")"
			return 1
		fi
		say "$name: remote-snapshotter (pid $R_PID) ready in $(calc "$EPOCHREALTIME - $t0" 2) s"
		extra="[proxy_plugins]
  [proxy_plugins.stargz]
    type = \"snapshot\"
    address = \"$R_SOCK\""
	fi
	cat >"$I_DIR/c/config.toml" <<TOML
version = 2
root = "$I_DIR/c/root"
state = "$I_DIR/c/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$C_SOCK"
[ttrpc]
  address = "$C_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$I_DIR/c/opt"
$extra
TOML
	containerd --config "$I_DIR/c/config.toml" >"$T/logs/$name.containerd.log" 2>&1 &
	C_PID=$!
	CTR=(ctr -a "$C_SOCK")
	for _ in $(seq 300); do
		"${CTR[@]}" version >/dev/null 2>&1 && break
		kill -0 "$C_PID" 2>/dev/null || break
		sleep 0.1
	done
	if ! "${CTR[@]}" version >/dev/null 2>&1; then
		problem "$name: containerd did not come up: $(tail -c 400 "$T/logs/$name.containerd.log")"
		return 1
	fi
	if [ "$with_daemon" = 1 ]; then
		# containerd dials the plugin lazily: make it connect before anything is timed
		"${CTR[@]}" snapshots --snapshotter stargz ls >/dev/null 2>&1 ||
			problem "$name: containerd cannot list snapshots on stargz"
	fi
	return 0
}

# stop_pid PID WHAT: SIGTERM, 20 s, then SIGKILL.
stop_pid() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		problem "$2 (pid $pid) still running 20 s after SIGTERM; killed"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
}

# umount_under DIR: every mount below DIR, deepest first.
umount_under() {
	local m
	findmnt -rn -o TARGET | awk -v d="$1/" 'index($0, d) == 1' | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
}

inst_down() {
	[ -n "$I_NAME" ] || return 0
	local id
	if [ -n "$C_PID" ] && kill -0 "$C_PID" 2>/dev/null; then
		# tasks left by a failed run: their shims belong to this containerd
		for id in $(timeout 20 "${CTR[@]}" tasks ls -q 2>/dev/null); do
			timeout 20 "${CTR[@]}" tasks kill -s KILL "$id" >/dev/null 2>&1
			sleep 0.5
			timeout 20 "${CTR[@]}" tasks rm -f "$id" >/dev/null 2>&1
		done
		for id in $(timeout 20 "${CTR[@]}" containers ls -q 2>/dev/null); do
			timeout 20 "${CTR[@]}" containers rm "$id" >/dev/null 2>&1
		done
	fi
	stop_pid "$C_PID" "$I_NAME: containerd"
	C_PID=
	stop_pid "$R_PID" "$I_NAME: remote-snapshotter"
	R_PID=
	umount_under "$I_DIR"
	if findmnt -rn -o TARGET | grep -qF "$I_DIR/"; then
		problem "$I_NAME: mounts left under $I_DIR"
	else
		rm -rf "$I_DIR"
	fi
	I_NAME=
}
on_exit inst_down

# utime+stime of the daemon, seconds ("" without one)
CLK_TCK=$(getconf CLK_TCK)
cpu_s() {
	[ -n "$R_PID" ] || return 0
	awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$R_PID/stat" 2>/dev/null
}
# VmRSS of the daemon, kB
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$R_PID/status" 2>/dev/null; }
# the daemon's FUSE mounts (one per layer), one a line
fuse_mounts() {
	findmnt -rn -o TARGET,FSTYPE | awk -v d="$R_ROOT/snapshots/" 'index($1, d) == 1 && $2 ~ /^fuse/ { print $1 }'
}
# every layer's status.json as one JSON array
layer_status() {
	local m
	for m in $(fuse_mounts); do
		timeout 10 cat "$m/$STATUS_REL" 2>/dev/null
	done | jq -sc '.'
}

# pull_image SNAPSHOTTER REF NAME [TIMEOUT]: `ctr images pull` onto overlayfs,
# or `stargz rpull` onto our daemon ("stargz"); output in $T/logs/NAME.pull.*,
# time in ELAPSED, the pull's status returned.
pull_image() {
	local out=$T/logs/$3.pull
	if [ "$1" = overlayfs ]; then
		timed timeout "${4:-900}" "${CTR[@]}" images pull --plain-http --snapshotter overlayfs "$2" \
			>"$out.out" 2>"$out.err"
	else
		timed timeout "${4:-900}" "$STARGZ" rpull ${RPULL_DEBUG:+--debug} --address "$C_SOCK" --plain-http --snapshotter "$1" "$2" \
			>"$out.out" 2>"$out.err"
	fi
}

# --- the registry, the shaping proxy and its log ------------------------------------------

# bench_net_up RATE DELAY: a private docker-registry ($PLAIN_REG) and
# netproxy.py in front of it ($PX, RATE Mbit/s, DELAY ms round trip; $PX_LOG);
# PX_T0 maps the proxy log's clock to this one (see px_time).
bench_net_up() {
	registry_start_plain >/dev/null || fatal "docker-registry did not start"
	NETPROXY_UPSTREAM=$PLAIN_REG netproxy_start PX --rate-mbit "$1" --delay-ms "$2" >/dev/null ||
		fatal "netproxy.py did not start"
	say "registry $PLAIN_REG; shaping proxy $PX (pid $PX_PID) $1 Mbit/s, $2 ms round trip"
	jq -n --argjson r "$1" --argjson d "$2" '{rate_mbit: $r, delay_ms: $d}' >"$T/rate.json"
	# The proxy logs seconds since its start; one request maps that to this
	# clock: its answer left the proxy about delay/2 before curl had it (the
	# proxy logs paths without their query: a path of its own, answered 404).
	local t_end t_log
	curl -s -o /dev/null "http://$PX/v2/_bench_calibrate" 2>/dev/null
	t_end=$EPOCHREALTIME
	PX_T0=
	for _ in $(seq 20); do
		t_log=$(jq -r 'select(.path == "/v2/_bench_calibrate") | .t' "$PX_LOG" 2>/dev/null | tail -1)
		[ -n "$t_log" ] && { PX_T0=$(calc "$t_end - $2 / 2000 - $t_log" 4); break; }
		sleep 0.1
	done
	[ -n "$PX_T0" ] || problem "no calibration request in the proxy log: phase times and byte counts by time unavailable"
}
# px_time WALL: the proxy log's time of a moment of this clock
px_time() { [ -n "$PX_T0" ] && calc "$1 - $PX_T0" 4; }

plog_off() { stat -c %s "$PX_LOG" 2>/dev/null || echo 0; }
# plog_sum FROM TO [TMAX]: "BYTES REQUESTS BLOB_REQUESTS" of the proxy log
# between offsets (requests answered by TMAX, proxy clock, if given)
plog_sum() {
	tail -c +$(($1 + 1)) "$PX_LOG" | head -c $(($2 - $1)) |
		jq -rs --arg tmax "${3:-}" '[map(select(.method and ($tmax == "" or .t <= ($tmax | tonumber))))
		         | (map(.bytes // 0) | add // 0), length,
		         (map(select(.path | test("/blobs/"))) | length)] | @tsv' | tr '\t' ' '
}
plog_save() { tail -c +$(($1 + 1)) "$PX_LOG" | head -c $(($2 - $1)) >"$3"; }

# write_phases NAME MODE REF PULL CREATE START END: the phases' start times
# (this clock) in the proxy log's clock, $T/logs/NAME.phases.json, for
# bench/pull_timeline.py
write_phases() {
	jq -n --arg a "$(px_time "$4")" --arg b "$(px_time "$5")" --arg c "$(px_time "$6")" \
		--arg d "$(px_time "$7")" --arg mode "$2" --arg ref "$3" \
		'def n: if . == "" then null else tonumber end;
		 {mode: $mode, ref: $ref, pull: ($a | n), create: ($b | n), start: ($c | n), end: ($d | n)}' \
		>"$T/logs/$1.phases.json"
}

# --- Debian images --------------------------------------------------------------------------

mirror() {
	# the URI apt uses for bookworm (deb822 or one-line sources), not -security
	local u
	u=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{ print $2 }' |
		grep -v security | head -1)
	[ -n "$u" ] || u=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		grep -v security | awk '{ print $2 }' | head -1)
	echo "${u:-http://deb.debian.org/debian}"
}

# make_rootfs NAME PACKAGES CHECK [HOOK]: ROOTFS_TAR=$cache/bookworm-minbase-NAME.tar,
# made once by `debootstrap --variant=minbase --include=PACKAGES bookworm`
# (PACKAGES comma-separated); CHECK must exist in it; HOOK DIR runs on the
# tree before it is archived (e.g. to prepare a server's data).
make_rootfs() {
	local name=$1 pkgs=$2 check=$3 hook=${4:-}
	ROOTFS_TAR=$cache/bookworm-minbase-$name.tar
	[ -s "$ROOTFS_TAR" ] && return 0
	command -v debootstrap >/dev/null || fatal "debootstrap not installed (apt-get install debootstrap)"
	local m d=$cache/rootfs-$name.tmp log=$cache/debootstrap-$name.log
	m=$(mirror)
	say "debootstrap --variant=minbase --include=$pkgs bookworm $d $m (a few minutes, once)"
	rm -rf "$d"
	debootstrap --variant=minbase --include="$pkgs" bookworm "$d" "$m" >"$log" 2>&1 ||
		fatal "debootstrap failed: see $log"
	[ -e "$d/$check" ] || fatal "debootstrap made no $check"
	if [ -n "$hook" ]; then
		"$hook" "$d" >>"$log" 2>&1 || fatal "$hook failed: see $log"
	fi
	tar -C "$d" --numeric-owner --sort=name --anchored --exclude='./dev/*' --exclude='./proc/*' \
		--exclude='./sys/*' --exclude='./var/cache/apt/archives/*.deb' -cf "$ROOTFS_TAR.tmp" . ||
		fatal "tar of the rootfs"
	echo "debootstrap --variant=minbase --include=$pkgs bookworm ($m)${hook:+, then $hook}, $(date -u +%FT%TZ)" \
		>"$cache/bookworm-minbase-$name.source"
	mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
	rm -rf "$d"
}

# make_layers DIR N 'GLOB...' ROOTFS_ARGS...: gzip layers DIR/layer{1..N}.tar.gz
# (cached) of the rootfs of `make_rootfs ROOTFS_ARGS...`.  N=1: all of it;
# N=3: everything but /usr/share and GLOB..., /usr/share, GLOB... (GLOB: tar
# patterns from the root, e.g. './usr/lib/python3*'; parents repeated without
# their contents).
make_layers() {
	local dir=$1 n=$2 globs=$3 i ok=1
	shift 3
	for i in $(seq "$n"); do [ -s "$dir/layer$i.tar.gz" ] || ok=0; done
	[ "$ok" = 1 ] && return 0
	make_rootfs "$@"
	local r=$T/rootfs TF=(--numeric-owner --sort=name) g
	rm -rf "$r" "$dir"
	mkdir -p "$r" "$dir"
	tar -C "$r" --numeric-owner -xpf "$ROOTFS_TAR" || fatal "extracting $ROOTFS_TAR"
	say "making $n gzip layer(s) in $dir"
	if [ "$n" = 1 ]; then
		tar -C "$r" "${TF[@]}" -cf - . | gzip -n -6 >"$dir/layer1.tar.gz.tmp" || fatal "making the layer"
	else
		local ex=(--exclude=./usr/share) paths parents
		for g in $globs; do ex+=("--exclude=$g"); done
		# shellcheck disable=SC2086 # the globs expand in the rootfs
		paths=$(cd "$r" && ls -d $globs 2>/dev/null)
		[ -n "$paths" ] || fatal "nothing in the rootfs matches $globs"
		parents=$(for g in $paths; do
			g=$(dirname "$g")
			while [ "$g" != . ]; do echo "$g"; g=$(dirname "$g"); done
		done | sort -u)
		# shellcheck disable=SC2086
		tar -C "$r" "${TF[@]}" --anchored "${ex[@]}" -cf - . | gzip -n -6 >"$dir/layer1.tar.gz.tmp" &&
			tar -C "$r" "${TF[@]}" -cf - --no-recursion ./usr --recursion ./usr/share |
			gzip -n -6 >"$dir/layer2.tar.gz.tmp" &&
			tar -C "$r" "${TF[@]}" -cf - --no-recursion $parents --recursion $paths |
			gzip -n -6 >"$dir/layer3.tar.gz.tmp" || fatal "making the layers"
	fi
	for i in $(seq "$n"); do mv "$dir/layer$i.tar.gz.tmp" "$dir/layer$i.tar.gz"; done
	rm -rf "$r"
}

# image_layer_sizes REPO:TAG: "SIZE..." of its layers (manifest from the registry)
image_layer_sizes() {
	curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		"http://$PLAIN_REG/v2/${1%:*}/manifests/${1##*:}" | jq -r '[.layers[].size] | map(tostring) | join(" ")'
}

# --- the report ------------------------------------------------------------------------------

# jq: a space-separated list of numbers as {median, min, max, all}
JQ_DEFS='def nums: split(" ") | map(select(. != "") | tonumber);
	 def med: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
	 def s: nums | {median: med, min: min, max: max, all: .};
	 def n: if . == "" then null else tonumber end;'

print_problems() {
	[ ${#PROBLEMS[@]} -gt 0 ] || return 0
	echo "problems:"
	printf '  - %s\n' "${PROBLEMS[@]}"
}

# write_json NAME FILE: the JSON objects of RES merged, with the run's facts
# (runs, rate, delay, load, problems)
write_json() {
	local load
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	mkdir -p "$(dirname "$2")"
	printf '%s\n' "${RES[@]}" | jq -s --arg bench "$1" --argjson runs "$runs" --argjson cores "$(nproc)" \
		--arg load0 "$load0" --arg load "$load" --argjson rate "$rate" --argjson delay "$delay" \
		--arg problems "$(printf '%s\n' "${PROBLEMS[@]}")" --arg date "$(date -u +%FT%TZ)" \
		--arg commit "$(git -C "$_bench_top" rev-parse --short HEAD 2>/dev/null)" \
		'add + {bench: $bench, date: $date, commit: $commit, runs: $runs, cores: $cores,
		        rate_mbit: $rate, delay_ms: $delay, load_start: $load0, load_end: $load,
		        problems: ($problems | split("\n") | map(select(. != "")))}' >"$2"
	echo "json: $2"
}
