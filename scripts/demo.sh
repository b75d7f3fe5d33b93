#!/usr/bin/env bash
# The main job end to end, on this machine only (127.0.0.1, no download):
#   1. install the dependencies and build;
#   2. a private docker-registry;
#   3. a sample image made here (busybox-static + this machine's python
#      library and locales, ~200 MB uncompressed), pushed as gzip layers;
#   4. `stargz convert` of it to eStargz;
#   5. a private containerd with our remote-snapshotter as proxy plugin
#      "stargz";
#   6. lazy pull (`stargz rpull`) and `ctr run` of the eStargz image;
#   7. legacy pull (`ctr images pull`, overlayfs) and the same run;
#   8. a table of the timings and of the bytes the lazy layers fetched.
# Everything it starts is stopped at exit (also on failure or Ctrl-C), by
# pid; mounts under its temp dir are unmounted and the temp dir removed.
# Needs root (containerd, FUSE, overlayfs). Exit 0 on success, 1 on failure.
#
# Environment: DEMO_KEEP=1 keeps the temp dir (logs) after a successful run;
# DEMO_BACKGROUND_FETCH=1 lets the daemon fetch whole layers in the
# background (its default; off here so that the bytes reported are those
# the container needed).
set -euo pipefail
export LC_ALL=C

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

W=            # the temp dir; everything below lives in it
REG_PID='' DAEMON_PID='' CTRD_PID='' CHILD_PID=''
CTRD_SOCK=

step() { printf '\n== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

# show_log FILE [LINES]: the last lines of a log, indented, on stderr.
show_log() {
	if [ -s "$1" ]; then
		echo "   ---- last lines of $1:" >&2
		tail -n "${2:-25}" "$1" | cut -c1-300 | sed 's/^/   | /' >&2
	else
		echo "   ---- $1: empty" >&2
	fi
}

# svc_report NAME PID LOG: if the service PID (started here) has died, say so
# and show its log.
svc_report() {
	[ -n "$2" ] || return 0
	kill -0 "$2" 2>/dev/null && return 0
	echo "demo: $1 (pid $2) is not running any more" >&2
	show_log "$3"
}

# die MESSAGE [LOG...]: say what failed, show the logs' tails (and those of
# any service that died), exit 1.
die() {
	local msg=$1 f
	shift
	echo >&2
	echo "demo: FAILED: $msg" >&2
	for f in "$@"; do show_log "$f"; done
	svc_report docker-registry "$REG_PID" "$W/registry/registry.log"
	svc_report remote-snapshotter "$DAEMON_PID" "$W/daemon.log"
	svc_report containerd "$CTRD_PID" "$W/containerd/containerd.log"
	exit 1
}

# An unexpected failure (set -e) names its line before the EXIT trap runs.
trap 'echo "demo: FAILED (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

# run_logged NAME SECONDS CMD...: CMD with a time bound, output in
# $W/NAME.log; on failure or timeout, die showing that log (and $ALSO_LOG).
ALSO_LOG=''
run_logged() {
	local name=$1 lim=$2 rc=0 logs=("$W/$1.log")
	[ -z "$ALSO_LOG" ] || logs+=("$ALSO_LOG")
	shift 2
	# In the background, so that a signal to this script (its trap) does
	# not wait for CMD; cleanup stops CMD then.
	timeout -k 5 "$lim" "$@" >"$W/$name.log" 2>&1 &
	CHILD_PID=$!
	wait "$CHILD_PID" || rc=$?
	CHILD_PID=''
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		die "$name: timed out after ${lim}s: $*" "${logs[@]}"
	elif [ "$rc" -ne 0 ]; then
		die "$name: exit $rc: $*" "${logs[@]}"
	fi
}

# stop_pid PID NAME SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL.
stop_pid() {
	local pid=$1 name=$2 lim=$3 i
	[ -n "$pid" ] || return 0
	if kill -TERM "$pid" 2>/dev/null; then
		for ((i = 0; i < lim * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "demo: $name (pid $pid) still running after ${lim}s; SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null
		fi
	fi
	wait "$pid" 2>/dev/null || true
}

# Mount points under $W, deepest first.
mounts_under_w() {
	awk -v w="$W/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

cleanup() {
	local rc=$? p m
	trap - ERR
	set +e
	[ -n "$W" ] && [ -d "$W" ] || exit "$rc"
	step "cleanup"
	# A command still running (the script was interrupted): timeout passes
	# the SIGTERM on to it.
	stop_pid "$CHILD_PID" "the current command" 10
	# Containers a failed step left behind, while containerd still answers.
	if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
		for p in $(timeout 10 ctr -a "$CTRD_SOCK" tasks ls -q 2>/dev/null); do
			timeout 10 ctr -a "$CTRD_SOCK" tasks kill -s KILL "$p" >/dev/null 2>&1
			timeout 10 ctr -a "$CTRD_SOCK" tasks rm -f "$p" >/dev/null 2>&1
		done
		for p in $(timeout 10 ctr -a "$CTRD_SOCK" containers ls -q 2>/dev/null); do
			timeout 10 ctr -a "$CTRD_SOCK" containers rm "$p" >/dev/null 2>&1
		done
	fi
	stop_pid "$DAEMON_PID" remote-snapshotter 20
	stop_pid "$CTRD_PID" containerd 10
	stop_pid "$REG_PID" docker-registry 5
	for p in $(jobs -p); do # anything else started here (tar | gzip)
		pkill -TERM -P "$p" 2>/dev/null
		stop_pid "$p" "job $p" 5
	done
	# Left-overs of ours, if containerd could not remove them: processes of
	# our containers (in their cgroups, or with their root on a mount under
	# $W), runc shims of our containerd (they outlive it), the cgroups.
	for p in $({
		cat /sys/fs/cgroup/{,*/}default/demo-{lazy,legacy}-$$/cgroup.procs
		grep -lsE "^[0-9]+ [0-9]+ [0-9]+:[0-9]+ [^ ]+ / .*$W/" /proc/[0-9]*/mountinfo | cut -d/ -f3
		pgrep -f -- "-address $W/"
	} 2>/dev/null | sort -un); do
		kill -KILL "$p" 2>/dev/null && echo "demo: killed left-over process $p" >&2
	done
	for m in /sys/fs/cgroup/{,*/}default/demo-{lazy,legacy}-$$; do
		[ -d "$m" ] || continue
		for _ in $(seq 50); do rmdir "$m" 2>/dev/null && break; sleep 0.1; done
	done
	for m in $(mounts_under_w); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
			echo "demo: cannot unmount $m" >&2
	done
	if [ -n "$(mounts_under_w)" ]; then
		echo "demo: mounts remain under $W; not removing it:" >&2
		mounts_under_w >&2
	elif [ "${DEMO_KEEP:-0}" = 1 ]; then
		say "stopped everything started here; kept $W (DEMO_KEEP=1)"
	else
		rm -rf "$W"
		say "stopped everything started here; removed $W"
	fi
	[ "$rc" -eq 0 ] || echo "demo: exit $rc" >&2
	exit "$rc"
}

# --- 1. dependencies and build -----------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root: containerd, FUSE and overlay mounts need it"
step "dependencies and build"
t0=$(now_ms)
bash scripts/install-deps.sh 2>&1 | sed 's/^/   /' || die "scripts/install-deps.sh failed"
if [ ! -f build/build.ninja ]; then
	meson setup build >/tmp/rs-demo-meson.$$.log 2>&1 ||
		die "meson setup build" /tmp/rs-demo-meson.$$.log
	rm -f /tmp/rs-demo-meson.$$.log
fi
ninja -C build >/tmp/rs-demo-ninja.$$.log 2>&1 || die "ninja -C build" /tmp/rs-demo-ninja.$$.log
rm -f /tmp/rs-demo-ninja.$$.log
STARGZ=$root/build/src/cmd/stargz
DAEMON=$root/build/src/cmd/remote-snapshotter
for t in "$STARGZ" "$DAEMON"; do
	[ -x "$t" ] || die "$t was not built"
done
for t in containerd ctr runc containerd-shim-runc-v2 docker-registry skopeo tar gzip \
	python3 jq curl timeout file; do
	command -v "$t" >/dev/null || die "$t is not installed (scripts/install-deps.sh should have)"
done
[[ $(file -L /bin/busybox 2>&1 || true) == *"statically linked"* ]] ||
	die "/bin/busybox is missing or not static (package busybox-static)"
[ -c /dev/fuse ] || modprobe fuse 2>/dev/null || true
[ -c /dev/fuse ] || die "/dev/fuse is missing: FUSE is not available"
say "dependencies and build: $(secs $(($(now_ms) - t0))) s ($STARGZ, $DAEMON)"

W=$(mktemp -d /tmp/rs-demo.XXXXXX)
chmod 755 "$W"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$W/registry/data" "$W/layers" "$W/containerd/root" "$W/containerd/state" \
	"$W/containerd/opt" "$W/rs-root"

# --- 2. registry -------------------------------------------------------------------
step "local registry (docker-registry, storage in $W/registry)"
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
REG=
for _ in 1 2 3 4 5; do
	port=$(free_port)
	cat >"$W/registry/config.yml" <<YAML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $W/registry/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: rs-demo-secret-$RANDOM$RANDOM
  headers:
    X-Content-Type-Options: [nosniff]
YAML
	docker-registry serve "$W/registry/config.yml" >"$W/registry/registry.log" 2>&1 &
	REG_PID=$!
	for _ in $(seq 100); do
		kill -0 "$REG_PID" 2>/dev/null || break
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/v2/" || true)
		if [ "$code" = 200 ]; then
			REG=127.0.0.1:$port
			break
		fi
		sleep 0.1
	done
	[ -n "$REG" ] && break
	stop_pid "$REG_PID" docker-registry 5
	REG_PID=
	grep -q 'address already in use' "$W/registry/registry.log" || break
done
[ -n "$REG" ] || die "docker-registry did not start" "$W/registry/registry.log"
say "http://$REG (pid $REG_PID)"

# --- 3. sample image ---------------------------------------------------------------
# Layers, bottom first: busybox; python's standard library; the locales
# (with /usr/share/doc too if they are small); a small app layer.
step "sample image from this machine's files"
t0=$(now_ms)
L=$W/layers
mkdir -p "$L/base/bin" "$L/app/etc/demo"
cp /bin/busybox "$L/base/bin/busybox"
for a in sh cat ls echo wc head du sha256sum true sleep; do
	ln -s busybox "$L/base/bin/$a"
done
py=$(find /usr/lib -maxdepth 2 -path '/usr/lib/python3.*/os.py' | sort -V | tail -n 1)
[ -n "$py" ] || die "no /usr/lib/python3.N/os.py on this machine"
py=$(basename "$(dirname "$py")")
data_dirs=(usr/share/locale)
apparent() { du -s --apparent-size -B1 "$@" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
[ "$(apparent /usr/share/locale)" -ge $((100 * 1000 * 1000)) ] || data_dirs+=(usr/share/doc)
cat >"$L/app/etc/demo/hello.txt" <<TXT
hello from the remote-snapshotter demo (image built $(date -u +%Y-%m-%dT%H:%M:%SZ))
TXT
# tar_layer OUT -C DIR [--no-recursion PARENT... --recursion] PATH...: GNU tar | gzip.
tar_layer() {
	local out=$1
	shift
	tar --sort=name --owner=0 --group=0 --numeric-owner -cf - "$@" | gzip -n -6 >"$out"
}
pids=()
tar_layer "$L/1-base.tar.gz" -C "$L/base" . &
pids+=($!)
tar_layer "$L/2-python.tar.gz" -C / --no-recursion usr usr/lib --recursion "usr/lib/$py" &
pids+=($!)
tar_layer "$L/3-data.tar.gz" -C / --no-recursion usr usr/share --recursion "${data_dirs[@]}" &
pids+=($!)
tar_layer "$L/4-app.tar.gz" -C "$L/app" . &
pids+=($!)
for p in "${pids[@]}"; do
	wait "$p" || die "tar | gzip of a sample layer failed"
done
layers=("$L/1-base.tar.gz" "$L/2-python.tar.gz" "$L/3-data.tar.gz" "$L/4-app.tar.gz")
usize=$(($(apparent "$L/base" /usr/lib/"$py") + $(apparent "${data_dirs[@]/#//}") + 4096))
gzsize=$(stat -c %s "${layers[@]}" | awk '{ s += $1 } END { print s }')
say "layers: busybox | /usr/lib/$py | /${data_dirs[*]} | /etc/demo/hello.txt"
say "about $(mb "$usize") of files, $(mb "$gzsize") gzip'ed"
run_logged make-oci 120 python3 tests/integration/make_oci_image.py --name gzip "$W/oci" "${layers[@]}"
rm -f "$W/oci.tar"
cat >"$W/policy.json" <<'JSON'
{"default": [{"type": "insecureAcceptAnything"}]}
JSON
run_logged skopeo-push 120 skopeo --policy "$W/policy.json" copy --retry-times 2 \
	--dest-tls-verify=false "oci:$W/oci:gzip" "docker://$REG/demo/app:gzip"
say "built and pushed $REG/demo/app:gzip in $(secs $(($(now_ms) - t0))) s"

# --- 4. convert ----------------------------------------------------------------------
step "stargz convert $REG/demo/app:gzip -> $REG/demo/app:esgz"
t0=$(now_ms)
run_logged convert 240 "$STARGZ" convert --plain-http "$REG/demo/app:gzip" "$REG/demo/app:esgz"
conv_ms=$(($(now_ms) - t0))
conv=$(tail -n 1 "$W/convert.log")
say "$(jq -r '"\(.converted) layers converted, \(.kept) kept; manifest \(.digest)"' <<<"$conv" 2>/dev/null ||
	echo "$conv")"
say "converted in $(secs "$conv_ms") s"

# --- 5. daemon and containerd --------------------------------------------------------
step "remote-snapshotter and a private containerd"
RS_ROOT=$W/rs-root
RS_SOCK=$W/rs.sock
daemon_args=(--root "$RS_ROOT" --address "$RS_SOCK" --plain-http)
[ "${DEMO_BACKGROUND_FETCH:-0}" = 1 ] || daemon_args+=(--no-background-fetch)
"$DAEMON" "${daemon_args[@]}" >"$W/daemon.out" 2>"$W/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 300); do
	grep -qx ready "$W/daemon.out" 2>/dev/null && break
	kill -0 "$DAEMON_PID" 2>/dev/null || break
	sleep 0.1
done
grep -qx ready "$W/daemon.out" 2>/dev/null ||
	die "remote-snapshotter did not print 'ready' within 30 s" "$W/daemon.log"
say "remote-snapshotter ${daemon_args[*]} (pid $DAEMON_PID)"

C=$W/containerd
CTRD_SOCK=$C/containerd.sock
cat >"$C/config.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"

[proxy_plugins]
  [proxy_plugins.stargz]
    type = "snapshot"
    address = "$RS_SOCK"
TOML
containerd --config "$C/config.toml" >"$C/containerd.log" 2>&1 &
CTRD_PID=$!
CTR=(ctr -a "$CTRD_SOCK")
ok=false
for _ in $(seq 100); do
	if timeout 5 "${CTR[@]}" version >/dev/null 2>&1; then
		ok=true
		break
	fi
	kill -0 "$CTRD_PID" 2>/dev/null || break
	sleep 0.2
done
$ok || die "containerd did not answer on $CTRD_SOCK within 20 s" "$C/containerd.log"
plugins=$(timeout 10 "${CTR[@]}" plugins ls 2>&1 || true)
grep -q 'io.containerd.snapshotter.v1 *stargz .* ok' <<<"$plugins" ||
	die "containerd did not load the proxy snapshotter stargz" "$C/containerd.log"
say "containerd $(containerd --version | awk '{ print $3 }') (pid $CTRD_PID) on $CTRD_SOCK"

# The same command in both containers: one small file of each layer, and a
# directory listing (metadata only).
RUN_CMD="cat /etc/demo/hello.txt; echo \"\$(ls /usr/share/locale | wc -l) entries in /usr/share/locale\"; wc -c /usr/lib/$py/os.py"

# --- 6. lazy pull and run ------------------------------------------------------------
ESGZ=$REG/demo/app:esgz
step "lazy pull: stargz rpull --snapshotter stargz $ESGZ"
t0=$(now_ms)
ALSO_LOG=$W/daemon.log
run_logged rpull 120 "$STARGZ" rpull --address "$CTRD_SOCK" --plain-http --snapshotter stargz "$ESGZ"
lazy_pull_ms=$(($(now_ms) - t0))
sed 's/^/   /' "$W/rpull.log"
step "ctr run --rm --snapshotter stargz $ESGZ demo-lazy-$$ sh -c '...'"
t0=$(now_ms)
run_logged run-lazy 120 "${CTR[@]}" run --rm --snapshotter stargz "$ESGZ" "demo-lazy-$$" sh -c "$RUN_CMD"
lazy_run_ms=$(($(now_ms) - t0))
sed 's/^/   | /' "$W/run-lazy.log"

ALSO_LOG=''

# What the lazy layers fetched, from each mounted layer's status file.
skopeo --policy "$W/policy.json" inspect --raw --tls-verify=false "docker://$ESGZ" \
	>"$W/esgz-manifest.json" 2>"$W/skopeo-inspect.log" ||
	die "skopeo inspect $ESGZ" "$W/skopeo-inspect.log"
esgz_size=$(jq '[.layers[].size] | add' "$W/esgz-manifest.json")
layer_names=(busybox "$py" "${data_dirs[*]##*/}" app)
lazy_fetched=0 lazy_data=0 n_lazy=0
for f in "$RS_ROOT"/snapshots/*/fs/.remote-snapshotter/status.json; do
	[ -e "$f" ] || continue
	read -r fb db st dg < <(jq -r '"\(.fetched_bytes) \(.data_bytes) \(.state) \(.digest)"' "$f") ||
		die "cannot read $f"
	i=$(jq --arg d "$dg" '[.layers[].digest] | index($d)' "$W/esgz-manifest.json")
	name='?'
	[[ $i =~ ^[0-9]+$ ]] && name=${layer_names[$i]:-?}
	printf '   layer %s %-12s fetched %10d of %10d bytes of file data (%s)\n' \
		"${dg:7:12}" "$name" "$fb" "$db" "$st"
	lazy_fetched=$((lazy_fetched + fb)) lazy_data=$((lazy_data + db)) n_lazy=$((n_lazy + 1))
done
[ "$n_lazy" -gt 0 ] || die "no lazily mounted layer under $RS_ROOT/snapshots" "$W/daemon.log"

# --- 7. legacy pull and run ----------------------------------------------------------
GZ=$REG/demo/app:gzip
step "legacy pull: ctr images pull --snapshotter overlayfs $GZ"
t0=$(now_ms)
run_logged pull-legacy 180 "${CTR[@]}" images pull --plain-http --snapshotter overlayfs "$GZ"
legacy_pull_ms=$(($(now_ms) - t0))
tail -n 1 "$W/pull-legacy.log" | tr -s '\t ' ' ' | sed 's/^/   ctr: /'
step "ctr run --rm --snapshotter overlayfs $GZ demo-legacy-$$ sh -c '...'"
t0=$(now_ms)
run_logged run-legacy 120 "${CTR[@]}" run --rm --snapshotter overlayfs "$GZ" "demo-legacy-$$" sh -c "$RUN_CMD"
legacy_run_ms=$(($(now_ms) - t0))
sed 's/^/   | /' "$W/run-legacy.log"
cmp -s "$W/run-lazy.log" "$W/run-legacy.log" ||
	die "the two containers printed different things" "$W/run-lazy.log" "$W/run-legacy.log"

# --- 8. summary ----------------------------------------------------------------------
step "summary ($(mb "$usize") image, 4 layers)"
pct=$(awk -v a="$lazy_fetched" -v b="$lazy_data" 'BEGIN { printf "%.1f", b ? 100 * a / b : 0 }')
printf '   %-16s %-28s %s\n' "" "lazy (eStargz, stargz)" "legacy (gzip, overlayfs)"
printf '   %-16s %-28s %s\n' "pull" "$(secs "$lazy_pull_ms") s" "$(secs "$legacy_pull_ms") s"
printf '   %-16s %-28s %s\n' "run" "$(secs "$lazy_run_ms") s" "$(secs "$legacy_run_ms") s"
printf '   %-16s %-28s %s\n' "pull + run" "$(secs $((lazy_pull_ms + lazy_run_ms))) s" \
	"$(secs $((legacy_pull_ms + legacy_run_ms))) s"
printf '   %-16s %-28s %s\n' "layer bytes" "$(mb "$lazy_fetched") of $(mb "$lazy_data") ($pct%)" \
	"$(mb "$gzsize") (all)"
say "lazy: file data fetched by $n_lazy mounted layers (plus each layer's TOC); blobs $(mb "$esgz_size")"
say "the same output from both containers; conversion took $(secs "$conv_ms") s"
