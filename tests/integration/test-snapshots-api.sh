#!/usr/bin/env bash
# containerd's snapshots API served by src/api + src/snapshot (the test
# daemon tests/api/api-test-server, no remote layers) to a real containerd
# as [proxy_plugins.stargz]:
#   * every method through `ctr snapshots --snapshotter stargz`: prepare,
#     view, mounts, commit, rm, info, label, usage, ls (containerd adds its
#     own metadata layer on top: keys reach us as "NS/N/KEY");
#   * the errors containerd shows: not found, already exists, failed
#     precondition (committing a view, removing a parent with children);
#   * List filters and Update masks through a direct gRPC client
#     (api-test-client), since ctr passes no filters; containerd's GC calls
#     Remove and Cleanup;
#   * the snapshotter survives a restart of the daemon behind containerd;
#   * `ctr images pull --snapshotter stargz` of an ordinary gzip image from a
#     local registry, then `ctr run --snapshotter stargz` runs it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
need_root
need_tools containerd ctr runc jq

API_SERVER=${API_TEST_SERVER:-$REPO/build/tests/api/api-test-server}
API_CLIENT=${API_TEST_CLIENT:-$REPO/build/tests/api/api-test-client}
[ -x "$API_SERVER" ] || skip "no $API_SERVER (build with src/snapshot)"
[ -x "$API_CLIENT" ] || skip "no $API_CLIENT"

ARCH=$("$PYTHON" -c 'import os; m = os.uname().machine
print({"x86_64": "amd64", "aarch64": "arm64"}.get(m, m))')

SNAP_ROOT=$T/snap-root
SOCK=$T/stargz/stargz.sock
SRV_PID=
SRV_LOG=$T/api-server.log

api_start() {
	"$API_SERVER" -d "$SNAP_ROOT" "$SOCK" >>"$SRV_LOG" 2>&1 &
	SRV_PID=$!
	for _ in $(seq 100); do
		[ -S "$SOCK" ] && "$API_CLIENT" -T 2 "$SOCK" list >/dev/null 2>&1 && return 0
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.05
	done
	show_file "$SRV_LOG"
	die "api-test-server did not come up"
}
api_stop() {
	[ -n "$SRV_PID" ] || return 0
	kill -TERM "$SRV_PID" 2>/dev/null
	wait "$SRV_PID"
	SRV_RC=$?
	SRV_PID=
}
# Stop the daemon after containerd (cleanups run in reverse order) and
# unmount what containers left.
on_exit 'api_stop; findmnt -rn -o TARGET | grep -F "$SNAP_ROOT/" | sort -r | while read -r m; do umount -l "$m"; done'

api_start
pass "api-test-server serves $SNAP_ROOT on $SOCK"

# shellcheck disable=SC2034 # read by containerd_start (registry-lib.sh)
CONTAINERD_EXTRA_CONFIG="[proxy_plugins.stargz]
  type = \"snapshot\"
  address = \"$SOCK\""
containerd_start || die "containerd"
NS=rs-api
S=("${CTR[@]}" -n "$NS" snapshots --snapshotter stargz)

# cs NAME ARGS...: `ctr snapshots --snapshotter stargz ARGS...` like run().
cs() {
	local name=$1
	shift
	run "$name" timeout 60 "${S[@]}" "$@"
}
# ctr_err DESC NAME REGEX: ctr failed and its stderr matches REGEX.
ctr_err() {
	local desc=$1 name=$2 re=$3
	if [ "$RC" -ne 0 ] && [ "$RC" -lt 124 ] && grep -Eq "$re" "$T/$name.err"; then
		pass "$desc: $(head -n1 "$T/$name.err" | cut -c1-160)"
	else
		fail "$desc: exit $RC, want stderr matching /$re/"
		show_file "$T/$name.out" stdout
		show_file "$T/$name.err" stderr
	fi
}
# ctr_ok DESC NAME: ctr succeeded.
ctr_ok() {
	expect_rc "$1" 0 "$2"
}
# api NAME ARGS...: direct call to our socket; JSON in $T/NAME.out.
api() {
	local name=$1
	shift
	run "$name" "$API_CLIENT" "$SOCK" "$@"
}
api_opts() { # NAME OPTS... -- METHOD ARGS...
	local name=$1 o=()
	shift
	while [ "$1" != -- ]; do
		o+=("$1")
		shift
	done
	shift
	run "$name" "$API_CLIENT" "${o[@]}" "$SOCK" "$@"
}
want() {
	local desc=$1 name=$2 expr=$3
	if [ "$RC" -lt 128 ] && jq -e "$expr" "$T/$name.out" >/dev/null 2>&1; then
		pass "$desc"
	else
		fail "$desc: want $expr (exit $RC)"
		show_file "$T/$name.out" answer
		show_file "$T/$name.err" stderr
	fi
}
# info_want DESC KEY JQ: `ctr snapshots info KEY` (JSON) satisfies JQ.
info_want() {
	local name=info-${2//\//_}
	cs "$name" info "$2"
	if [ "$RC" -eq 0 ] && jq -e "$3" "$T/$name.out" >/dev/null 2>&1; then
		pass "$1"
	else
		fail "$1: want $3 (exit $RC)"
		show_file "$T/$name.out" stdout
		show_file "$T/$name.err" stderr
	fi
}
# backend KEY: the name our snapshotter stores KEY under ("NS/N/KEY").
backend() {
	"$API_CLIENT" "$SOCK" list | jq -r --arg k "$1" --arg ns "$NS" \
		'.infos[].name | select(startswith($ns + "/") and endswith("/" + $k))'
}

# --- prepare / mounts / commit / view ---------------------------------------------
cs p1 prepare k1
ctr_ok "ctr snapshots prepare k1" p1
info_want "info k1: active, no parent" k1 '.Kind == "Active" and (.Parent // "") == ""'
cs p1b prepare k1
ctr_err "prepare k1 again: already exists" p1b 'already exists'
cs m1 mounts /mnt/x k1
if [ "$RC" -eq 0 ] && grep -q "mount -t bind $SNAP_ROOT/snapshots/[0-9]*/fs /mnt/x -o rw,rbind" "$T/m1.out"; then
	pass "mounts k1: a bind mount of our fs dir ($(cut -c1-120 "$T/m1.out"))"
else
	fail "mounts k1"
	show_file "$T/m1.out"
	show_file "$T/m1.err"
fi
K1_FS=$(awk '{print $4}' "$T/m1.out")
echo "layer one" >"$K1_FS/one.txt"
mkdir -p "$K1_FS/etc" && echo base >"$K1_FS/etc/base"
cs c1 commit base k1
ctr_ok "commit base k1" c1
info_want "info base: committed" base '.Kind == "Committed"'
cs i1 info k1
ctr_err "info k1 after commit: not found" i1 'not found'

cs p2 prepare k2 base
ctr_ok "prepare k2 on base" p2
cs m2 mounts /mnt/x k2
if grep -q "mount -t overlay overlay /mnt/x -o .*lowerdir=$SNAP_ROOT/snapshots/[0-9]*/fs" "$T/m2.out"; then
	pass "mounts k2: overlay on base's fs dir"
else
	fail "mounts k2: want an overlay mount"
	show_file "$T/m2.out"
fi
K2_UP=$(grep -o 'upperdir=[^,]*' "$T/m2.out" | cut -d= -f2)
[ -d "$K2_UP" ] && head -c 1048576 /dev/urandom >"$K2_UP/data.bin" && touch "$K2_UP/a" "$K2_UP/b" ||
	fail "k2's upperdir $K2_UP"
cs u2 usage k2
if [ "$RC" -eq 0 ] && awk -v k=k2 '$1 == k {print}' "$T/u2.out" | grep -Eq 'k2 +1\.0 MiB|k2 +1\.[0-9]+ MiB'; then
	pass "usage k2: $(awk '$1 == "k2"' "$T/u2.out" | tr -s ' ')"
else
	fail "usage k2: want about 1 MiB"
	show_file "$T/u2.out"
	show_file "$T/u2.err"
fi
cs u2b usage -b k2
[ "$RC" -eq 0 ] && [ "$(awk '$1 == "k2" {print $2}' "$T/u2b.out")" -ge 1048576 ] &&
	pass "usage -b k2: $(awk '$1 == "k2" {print $2, $3}' "$T/u2b.out") bytes/inodes" ||
	fail "usage -b k2: $(cat "$T/u2b.out")"

cs v1 view v1 base
ctr_ok "view v1 on base" v1
info_want "info v1: view on base" v1 '.Kind == "View" and .Parent == "base"'
cs mv1 mounts /mnt/x v1
grep -q "mount -t bind $SNAP_ROOT/snapshots/[0-9]*/fs /mnt/x -o ro,rbind" "$T/mv1.out" &&
	pass "mounts v1: read-only bind of base" || {
	fail "mounts v1"
	show_file "$T/mv1.out"
}

# --- errors containerd shows -----------------------------------------------------------
cs e1 commit c2 v1
ctr_err "commit of a view: failed precondition" e1 'failed precondition'
cs e2 rm base
ctr_err "rm of a parent with children: failed precondition" e2 'failed precondition'
cs e3 rm nosuch
ctr_err "rm of a missing snapshot: not found" e3 'not found'
cs e4 prepare k3 nosuch
ctr_err "prepare on a missing parent: not found" e4 'not found'
cs e5 info nosuch
ctr_err "info of a missing snapshot: not found" e5 'not found'
cs e6 commit base k2
ctr_err "commit onto an existing name: already exists" e6 'already exists'
cs e7 prepare k4 k2
ctr_err "prepare on an active parent: an error" e7 '.'

# --- labels (Update) ----------------------------------------------------------------------
cs l1 label base foo=bar containerd.io/snapshot/rs.test=one
ctr_ok "label base" l1
info_want "info base: both labels" base '.Labels.foo == "bar" and .Labels["containerd.io/snapshot/rs.test"] == "one"'
B_BASE=$(backend base)
[ -n "$B_BASE" ] && pass "base is $B_BASE in our snapshotter" || fail "base not in our List"
api s1 stat "$B_BASE"
want "our copy holds the inherited label only (containerd keeps the rest)" s1 \
	'.code == 0 and .response.info.labels == {"containerd.io/snapshot/rs.test":"one"}'
cs l2 label base containerd.io/snapshot/rs.test=
ctr_ok "label base: clear the inherited label" l2
api s2 stat "$B_BASE"
want "... and it is gone from our copy" s2 '.response.info.labels == {}'
api_opts up1 -l x=1 -l y=2 -p labels.x -- update "$B_BASE"
want "Update labels.x directly" up1 '.code == 0 and .response.info.labels == {"x":"1"}'
api_opts up2 -l z=3 -p labels -- update "$B_BASE"
want "Update labels directly: replaced" up2 '.code == 0 and .response.info.labels == {"z":"3"}'
api_opts up3 -p name -- update "$B_BASE"
want "Update name: INVALID_ARGUMENT" up3 '.code == 3'

# --- List (ls, filters) -------------------------------------------------------------------
cs ls1 ls
if [ "$RC" -eq 0 ] && [ "$(grep -c . "$T/ls1.out")" = 4 ] &&
	grep -Eq '^base +Committed *$' "$T/ls1.out" && grep -Eq '^k2 +base +Active *$' "$T/ls1.out" &&
	grep -Eq '^v1 +base +View *$' "$T/ls1.out"; then
	pass "ls: base committed, k2 active, v1 view"
else
	fail "ls"
	show_file "$T/ls1.out"
	show_file "$T/ls1.err"
fi
api_opts f1 -f kind==committed -- list
want "List kind==committed" f1 "[.infos[].name] == [\"$B_BASE\"]"
api_opts f2 -f kind==view -f kind==active -- list
want "List kind==view OR kind==active" f2 '(.infos | map(.kind) | sort) == ["active","view"]'
api_opts f3 -f "parent==$B_BASE,kind==view" -- list
want "List parent==base,kind==view" f3 '(.infos | length) == 1 and .infos[0].kind == "view"'
api_opts f4 -f 'labels.z==3' -- list
want "List labels.z==3" f4 "[.infos[].name] == [\"$B_BASE\"]"
api_opts f5 -f 'name~="/k2$"' -- list
want "List name~=\"/k2\$\"" f5 '(.infos | length) == 1 and (.infos[0].name | endswith("/k2"))'
api_opts f6 -f 'name==' -f 'kind=="' -- list
want "List with a filter that does not parse: INVALID_ARGUMENT" f6 '.code == 3 and .message != ""'

# --- errors from our snapshotter, directly -------------------------------------------------
api d1 stat nosuch
want "direct Stat nosuch: NOT_FOUND" d1 '.code == 5'
api d2 prepare "$B_BASE"
want "direct Prepare of an existing key: ALREADY_EXISTS" d2 '.code == 6'
api d3 commit "$NS/x/c3" "$(backend v1)"
want "direct Commit of a view: FAILED_PRECONDITION" d3 '.code == 9'
api d4 remove "$B_BASE"
want "direct Remove of a parent with children: FAILED_PRECONDITION" d4 '.code == 9'

# --- remove, GC, cleanup ------------------------------------------------------------------
# A directory no snapshot owns: only Cleanup removes it, so its going shows
# that containerd's GC called Cleanup (Remove deletes its own directory).
ORPHAN=$SNAP_ROOT/snapshots/rs-test-orphan
mkdir -p "$ORPHAN/fs" && echo left >"$ORPHAN/fs/file" || fail "cannot plant $ORPHAN"
cs r1 rm v1 k2
ctr_ok "rm v1 k2" r1
cs r2 rm base
ctr_ok "rm base (no children left)" r2
# containerd removes them from the backend in its asynchronous GC; a pass that
# ran between the two rm's leaves base for the next one, which nothing may
# trigger: deleting a lease with --sync runs a full GC pass now.
for i in $(seq 50); do
	[ "$("$API_CLIENT" "$SOCK" list | jq '.infos | length')" = 0 ] && break
	if [ $((i % 10)) = 0 ]; then
		"${CTR[@]}" -n "$NS" leases create --id "rs-api-gc-$i" >/dev/null 2>&1 &&
			"${CTR[@]}" -n "$NS" leases delete --sync "rs-api-gc-$i" >/dev/null 2>&1
	fi
	sleep 0.2
done
api ls2 list
want "our snapshotter is empty after the removals" ls2 '.code == 0 and (.infos | length) == 0'
for _ in $(seq 50); do
	[ -e "$ORPHAN" ] || break
	sleep 0.2
done
[ -e "$ORPHAN" ] && fail "no Cleanup call from containerd's GC: $ORPHAN is still there" ||
	pass "containerd's GC called Cleanup: the orphan directory is gone"
leftover=$(find "$SNAP_ROOT/snapshots" -mindepth 1 -maxdepth 1 | wc -l)
[ "$leftover" = 0 ] && pass "no snapshot directories left" || fail "$leftover directories left"

# --- restart of the daemon behind containerd -----------------------------------------------
cs p5 prepare k5
ctr_ok "prepare k5" p5
api_stop
[ "${SRV_RC:-1}" = 0 ] && [ ! -e "$SOCK" ] && pass "daemon stopped cleanly, socket removed" ||
	fail "daemon stop: exit ${SRV_RC:-?}, socket $(ls -l "$SOCK" 2>&1)"
cs i5 info k5
ctr_err "info k5 while the daemon is down: an error" i5 '.'
api_start
# containerd's gRPC client redials with backoff (1 s, growing) after the failures above.
for _ in $(seq 60); do
	timeout 10 "${S[@]}" info k5 >/dev/null 2>&1 && break
	sleep 0.5
done
info_want "info k5 after a restart (containerd redialled)" k5 '.Kind == "Active"'
cs r5 rm k5
ctr_ok "rm k5" r5

# --- pull and run an ordinary gzip image ----------------------------------------------------
need_tools docker-registry skopeo curl
registry_start_plain || die "plain registry"
seed_image "$PLAIN_REG" rs/busybox:v1 || die "seeding rs/busybox:v1"
REF=$PLAIN_REG/rs/busybox:v1
run pull timeout 180 "${CTR[@]}" -n "$NS" images pull --plain-http --snapshotter stargz "$REF"
expect_rc "ctr images pull --snapshotter stargz $REF" 0 pull
cs ls3 ls
n=$(grep -Ec ' Committed *$' "$T/ls3.out")
[ "$n" = 3 ] && pass "three committed layers in ctr snapshots ls" || {
	fail "want 3 committed layers, got $n"
	show_file "$T/ls3.out"
}
api ls4 list
want "our List: three committed layers chained by parent" ls4 \
	'(.infos | map(select(.kind == "committed")) | length) == 3 and (.infos | map(select(.parent == "")) | length) == 1'
run runc1 timeout 120 "${CTR[@]}" -n "$NS" run --snapshotter stargz --rm "$REF" "rs-api-$$" cat /etc/hello.txt
if [ "$RC" -eq 0 ] && grep -qx "hello from rs-rig $ARCH" "$T/runc1.out"; then
	pass "ctr run --snapshotter stargz: $(cat "$T/runc1.out")"
else
	fail "ctr run --snapshotter stargz (exit $RC)"
	show_file "$T/runc1.out" stdout
	show_file "$T/runc1.err" stderr
fi
run runc2 timeout 120 "${CTR[@]}" -n "$NS" run --snapshotter stargz --rm "$REF" "rs-api2-$$" \
	sh -c 'echo written >/w && cat /w && ls /bin/busybox'
[ "$RC" -eq 0 ] && grep -qx written "$T/runc2.out" && pass "the container's layer is writable" || {
	fail "write in the container (exit $RC)"
	show_file "$T/runc2.out"
	show_file "$T/runc2.err"
}
# containerd removes them from the backend in its (asynchronous) GC.
for _ in $(seq 50); do
	[ "$("$API_CLIENT" "$SOCK" list | jq '.infos | map(select(.kind != "committed")) | length')" = 0 ] && break
	sleep 0.2
done
api ls5 list
want "the containers' active snapshots are gone after --rm (GC)" ls5 \
	'(.infos | map(select(.kind != "committed")) | length) == 0'
run rmi timeout 60 "${CTR[@]}" -n "$NS" images rm --sync "$REF"
expect_rc "ctr images rm --sync" 0 rmi
for _ in $(seq 50); do
	[ "$("$API_CLIENT" "$SOCK" list | jq '.infos | length')" = 0 ] && break
	sleep 0.2
done
api ls6 list
want "GC removed the image's layers from our snapshotter" ls6 '(.infos | length) == 0'

api_stop
[ "${SRV_RC:-1}" = 0 ] && pass "daemon stopped cleanly at the end" || fail "daemon exit ${SRV_RC:-?} at stop"
# Sanitizer reports (ASan, UBSan, TSan builds) fail the test in lib.sh.
finish
