#!/usr/bin/env bash
# `stargz optimize`: a 2-layer busybox image (the second layer whites out a
# file of the first and makes a directory opaque) in an OCI layout and in a
# local registry. The workload runs in runc on overlayfs with no network; the
# list holds what it opened in order of first open and nothing it did not;
# the optimised layers have those files first, .prefetch.landmark right after
# them, and .no.prefetch.landmark in the layer without any; --record-in gives
# the same image without running anything (and refuses the run's options
# with a usage error); --env/--cwd/--args/--entrypoint and the config's User,
# Env and WorkingDir reach the workload; a failing or timed-out workload still
# yields its list and a warning; bad input fails clearly; nothing stays
# mounted, in runc's state, in cgroups or in TMPDIR, also after SIGINT.
# A third layer holds two 8 MiB files: the one read whole is listed plainly,
# the one read in two 4 KiB places gets those ranges in the list, is cut into
# chunks at their edges and has every other chunk marked noPrefetch; a lazy
# mount of the image from a registry prefetches only what was read (at 64 KiB
# readahead, raised to 1 MiB once the layer is complete) and the workload's
# reads need nothing more; without a working mkfs.ext4 a warning and whole
# files. A /.prefetch.landmark line in a hand-made list puts the files after
# it behind the layer's landmark.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
need_stargz
need_root
need_tools runc jq
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] && file -L "$BUSYBOX" | grep -q 'statically linked' ||
	skip "needs a statically linked busybox (busybox-static)"
[ -e /proc/sys/fs/fanotify/max_queued_events ] || skip "kernel without fanotify"

REF_ANN=org.opencontainers.image.ref.name
export TMPDIR=$T/tmp # the recorder's work dirs land here: it must end empty
mkdir -p "$TMPDIR"
blob() { echo "$1/blobs/sha256/${2#sha256:}"; }
manifest_of() {
	jq -er --arg t "$2" --arg k "$REF_ANN" \
		'.manifests[] | select(.annotations[$k] == $t) | .digest' "$1/index.json"
}

# --- the image ---------------------------------------------------------------------
L1=$T/l1 L2=$T/l2
mkdir -p "$L1/bin" "$L1/etc" "$L1/data" "$L1/opq" "$L1/home/app" "$L2/data" "$L2/opq"
cp "$BUSYBOX" "$L1/bin/busybox"
for a in sh cat echo ls sleep id pwd env nc true; do ln -s busybox "$L1/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >"$L1/etc/passwd"
printf 'root:x:0:\nusers:x:100:app\napp:x:1000:\nstaff:x:50:\n' >"$L1/etc/group"
for f in a b c gone unread; do echo "content of $f" >"$L1/data/$f"; done
echo old >"$L1/opq/old"
: >"$L2/data/.wh.gone"
echo "content of x" >"$L2/data/x"
: >"$L2/opq/.wh..wh..opq"
echo new >"$L2/opq/new"
tar -C "$L1" --sort=name --owner=0 --group=0 --numeric-owner --mtime=2021-01-01T00:00:00Z \
	-czf "$T/l1.tar.gz" . || die "tar l1"
tar -C "$L2" --sort=name --owner=0 --group=0 --numeric-owner --mtime=2021-01-01T00:00:00Z \
	-cf "$T/l2.tar" . || die "tar l2"
SRC=$T/src
"$PYTHON" "$TESTS_DIR/make_oci_image.py" --name v1 "$SRC" "$T/l1.tar.gz" "$T/l2.tar" \
	>/dev/null || die "make_oci_image.py"

# set_config TAG JQ: a new image in $SRC under TAG, v1's config changed by JQ.
set_config() {
	"$PYTHON" - "$SRC" "$(manifest_of "$SRC" v1)" "$1" "$2" <<'PY' || die "set_config $1"
import hashlib, json, os, subprocess, sys
src, mdg, tag, prog = sys.argv[1:]
def path(d): return os.path.join(src, "blobs", "sha256", d.split(":")[1])
def put(b):
    d = "sha256:" + hashlib.sha256(b).hexdigest()
    open(path(d), "wb").write(b)
    return d, len(b)
m = json.load(open(path(mdg)))
cfg = json.load(open(path(m["config"]["digest"])))
cfg = json.loads(subprocess.run(["jq", "-c", prog], input=json.dumps(cfg).encode(),
                                check=True, capture_output=True).stdout)
m["config"]["digest"], m["config"]["size"] = put(json.dumps(cfg).encode())
d, n = put(json.dumps(m).encode())
idx = json.load(open(os.path.join(src, "index.json")))
k = "org.opencontainers.image.ref.name"
idx["manifests"] = [e for e in idx["manifests"] if e.get("annotations", {}).get(k) != tag]
idx["manifests"].append({"mediaType": m["mediaType"], "digest": d, "size": n,
                         "annotations": {k: tag}})
json.dump(idx, open(os.path.join(src, "index.json"), "w"))
PY
}
set_config main '.config.Entrypoint = ["/bin/sh", "-c"] | .config.Cmd = ["cat /data/b; cat /data/a"]'
set_config envcfg '.config.Entrypoint = ["/bin/sh", "-c"] | .config.Cmd = ["cat $CONF; pwd"]
	| .config.Env += ["CONF=/data/x"] | .config.WorkingDir = "/opq"'
set_config user '.config.User = "app" | .config.Cmd = ["/bin/sh", "-c", "id; echo HOME=$HOME"]'
set_config usergrp '.config.User = "1000:staff" | .config.Cmd = ["/bin/id"]'
set_config nouser '.config.User = "nobody" | .config.Cmd = ["/bin/true"]'
set_config nocmd '.config.Cmd = null'

# optimize NAME ARGS...: run the CLI (stdout/stderr in $T/NAME.{out,err}).
optimize() {
	local name=$1
	shift
	run "$name" timeout 120 "$STARGZ" optimize "$@"
}

# no_leftovers DESC: nothing of ours mounted, in TMPDIR, in runc's default
# state or in the cgroup tree.
no_leftovers() {
	local bad=()
	grep -q stargz-optimize /proc/mounts && bad+=("a mount: $(grep stargz-optimize /proc/mounts | head -1)")
	[ -z "$(ls -A "$TMPDIR")" ] || bad+=("TMPDIR holds $(ls -A "$TMPDIR" | head -3 | tr '\n' ' ')")
	runc list -q 2>/dev/null | grep -q stargz-optimize && bad+=("runc list shows a container")
	find /sys/fs/cgroup -maxdepth 3 -name 'stargz-optimize-*' 2>/dev/null | grep -q . &&
		bad+=("a cgroup: $(find /sys/fs/cgroup -maxdepth 3 -name 'stargz-optimize-*' | head -1)")
	pgrep -f "bundle $TMPDIR/" >/dev/null && bad+=("a runc process still runs")
	losetup -a 2>/dev/null | grep -q stargz-optimize && bad+=("a loop device: $(losetup -a | grep stargz-optimize | head -1)")
	if [ ${#bad[@]} -eq 0 ]; then
		pass "$1: nothing left behind"
	else
		fail "$1: ${bad[*]}"
	fi
}

# layer_names DIR TAG I: the TOC entry names of layer I of DIR:TAG, in order.
layer_names() {
	local m l
	m=$(manifest_of "$1" "$2") || return 1
	l=$(jq -r ".layers[$3].digest" "$(blob "$1" "$m")")
	"$STARGZ" toc "$(blob "$1" "$l")" | jq -r '.entries[] | select(.type != "chunk") | .name' |
		sed 's|^\./||; s|/$||'
}

# --- 1. record: the list holds what was opened, in order ---------------------------
optimize basic --record-out "$T/basic.list" "oci:$SRC:main" "oci:$T/out:v1"
expect_rc "optimize oci -> oci" 0 basic
if cut -f1 "$T/basic.list" | grep -qx /bin/busybox && grep -qx /data/b "$T/basic.list" &&
	grep -qx /data/a "$T/basic.list" &&
	[ "$(grep -nx /data/b "$T/basic.list" | cut -d: -f1)" -lt "$(grep -nx /data/a "$T/basic.list" | cut -d: -f1)" ] &&
	[ "$(cut -f1 "$T/basic.list" | grep -nx /bin/busybox | cut -d: -f1)" -lt "$(grep -nx /data/b "$T/basic.list" | cut -d: -f1)" ]; then
	pass "list: /bin/busybox, then /data/b before /data/a"
else
	fail "list lacks busybox, /data/b, /data/a in that order"
	show_file "$T/basic.list"
fi
if [ ! -s "$T/basic.list" ] || grep -qE '^/data/(c|unread|gone|x)$|^/opq/' "$T/basic.list" ||
	grep -qv '^/' "$T/basic.list" ||
	[ "$(sort "$T/basic.list" | uniq -d)" ]; then
	fail "list holds files the workload did not open, relative paths or repeats"
	show_file "$T/basic.list"
else
	pass "list: only files opened, absolute, each once ($(wc -l <"$T/basic.list") paths)"
fi
grep -q "content of b" "$T/basic.err" && grep -q "recorded" "$T/basic.err" &&
	! grep -q warning "$T/basic.err" && pass "workload output on stderr, no warning" ||
	{ fail "stderr lacks the workload's output or has a warning"; show_file "$T/basic.err"; }
[ "$(jq -r .recorded "$T/basic.out")" = "$(wc -l <"$T/basic.list")" ] &&
	[ "$(jq -r .converted "$T/basic.out")" = 2 ] && pass "JSON: recorded and converted counts" ||
	{ fail "JSON output"; show_file "$T/basic.out"; }
no_leftovers "basic run"

# --- 2. the optimised layers -----------------------------------------------------------
layer_names "$T/out" v1 0 >"$T/l0.names" || fail "toc of layer 0"
layer_names "$T/out" v1 1 >"$T/l1.names" || fail "toc of layer 1"
# the regular files before the landmark are the listed ones this layer holds, in order
want=$(cut -f1 "$T/basic.list" | grep -E '^/(bin/busybox|data/[ab]|etc/(passwd|group))$' | sed 's|^/||')
got=$(sed '/^\.prefetch\.landmark$/q' "$T/l0.names" | grep -vxE '|bin|data|etc|\.prefetch\.landmark')
if [ "$got" = "$want" ] && grep -qx .prefetch.landmark "$T/l0.names"; then
	pass "layer 0: the recorded files first, in order, then .prefetch.landmark"
else
	fail "layer 0: entries before the landmark are not the recorded files"
	show_text "want: $(echo $want) / got: $(echo $got)"
	show_file "$T/l0.names"
fi
# right after: nothing but parent dirs between the last recorded file and the landmark
n_before=$(sed '/^\.prefetch\.landmark$/q' "$T/l0.names" | grep -cE '^(data/[cg]|data/unread|opq)')
[ -s "$T/l0.names" ] && [ "$n_before" = 0 ] && pass "layer 0: unread files after the landmark" ||
	fail "layer 0: unread files before the landmark"
if grep -qx .no.prefetch.landmark "$T/l1.names" && ! grep -qx .prefetch.landmark "$T/l1.names"; then
	pass "layer 1 (none of the files): .no.prefetch.landmark"
else
	fail "layer 1: no .no.prefetch.landmark"
	show_file "$T/l1.names"
fi
m=$(manifest_of "$T/out" v1)
ok=true n=0
for l in $(jq -r '.layers[] | .digest + "=" + .annotations["containerd.io/snapshot/stargz/toc.digest"]' "$(blob "$T/out" "$m")"); do
	"$STARGZ" verify --toc-digest "${l#*=}" "$(blob "$T/out" "${l%%=*}")" >"$T/verify.out" 2>&1 ||
		{ ok=false; show_file "$T/verify.out"; }
	n=$((n + 1))
done
$ok && [ "$n" = 2 ] && pass "every optimised layer verifies against its TOC digest" || fail "a layer does not verify"

# --- 3. --record-in: same image, nothing run --------------------------------------
mkdir -p "$T/fakebin"
cat >"$T/fakebin/runc" <<EOF
#!/bin/sh
touch "$T/runc-was-run"
exit 1
EOF
chmod +x "$T/fakebin/runc"
PATH="$T/fakebin:$PATH" optimize recin --record-in "$T/basic.list" "oci:$SRC:main" "oci:$T/out2:v1"
expect_rc "--record-in" 0 recin
[ ! -e "$T/runc-was-run" ] && pass "--record-in ran nothing" || fail "--record-in started runc"
[ "$(jq -r .digest "$T/recin.out")" = "$(jq -r .digest "$T/basic.out")" ] &&
	grep -q '"digest":"sha256:' "$T/recin.out" &&
	pass "--record-in gives the same manifest digest" ||
	fail "--record-in: digest $(jq -r .digest "$T/recin.out"), recorded run $(jq -r .digest "$T/basic.out")"
optimize recin-bad --record-in "$T/nonexistent.list" "oci:$SRC:main" "oci:$T/out2:v1"
expect_rc "--record-in with a missing file" 3 recin-bad
grep -q nonexistent.list "$T/recin-bad.err" || fail "the error does not name the list"
# the run's options with --record-in: a usage error naming the option, nothing run
bad=()
for o in "--entrypoint /bin/true" "--args x" "--env A=B" "--cwd /" "--period 5" \
	"--runc $T/fakebin/runc"; do
	set -- $o
	optimize "recin-${1#--}" "$1" "$2" --record-in "$T/basic.list" "oci:$SRC:main" "oci:$T/out2:bad"
	[ "$RC" = 2 ] && grep -q -- "$1 .*--record-in" "$T/recin-${1#--}.err" ||
		{ bad+=("$1 (exit $RC)"); show_file "$T/recin-${1#--}.err"; }
done
[ ${#bad[@]} = 0 ] && [ ! -e "$T/runc-was-run" ] && ! manifest_of "$T/out2" bad >/dev/null 2>&1 &&
	pass "--record-in with --entrypoint/--args/--env/--cwd/--period/--runc: exit 2 naming the option" ||
	fail "--record-in with a run option: ${bad[*]:-something ran or was written}"

# --- 4. overrides and the config's process ------------------------------------------
optimize env --env WHICH=/data/c --cwd /data --args '["cat $WHICH; pwd; cat ./unread"]' \
	--record-out "$T/env.list" "oci:$SRC:main" "oci:$T/out:env"
expect_rc "--env/--cwd/--args" 0 env
grep -qx /data/c "$T/env.list" && grep -qx /data/unread "$T/env.list" &&
	! grep -qx /data/b "$T/env.list" && grep -qx /data "$T/env.err" &&
	pass "the workload saw \$WHICH, the cwd and the new args" ||
	{ fail "overrides not seen"; show_file "$T/env.list"; show_file "$T/env.err"; }
optimize cfgenv --record-out "$T/cfgenv.list" "oci:$SRC:envcfg" "oci:$T/out:cfgenv"
expect_rc "config Env and WorkingDir" 0 cfgenv
grep -qx /data/x "$T/cfgenv.list" && grep -qx /opq "$T/cfgenv.err" &&
	pass "config Env and WorkingDir used" || { fail "config Env/WorkingDir"; show_file "$T/cfgenv.err"; }
optimize ep --entrypoint /bin/cat --args "/data/c /data/a" --record-out "$T/ep.list" \
	"oci:$SRC:main" "oci:$T/out:ep"
expect_rc "--entrypoint and --args as words" 0 ep
[ "$(grep -E '^/data/' "$T/ep.list" | tr '\n' ' ')" = "/data/c /data/a " ] &&
	pass "words: cat /data/c /data/a" || { fail "--entrypoint words"; show_file "$T/ep.list"; }
optimize ep2 --entrypoint '["/bin/cat","/data/a"]' --record-out "$T/ep2.list" "oci:$SRC:main" "oci:$T/out:ep2"
expect_rc "--entrypoint alone" 0 ep2
grep -qx /data/a "$T/ep2.list" && ! grep -qx /data/b "$T/ep2.list" && ! grep -q warning "$T/ep2.err" &&
	pass "--entrypoint without --args drops the config's Cmd" ||
	{ fail "--entrypoint alone"; show_file "$T/ep2.err"; }
optimize user "oci:$SRC:user" "oci:$T/out:user"
expect_rc "config User by name" 0 user
grep -q 'uid=1000(app) gid=1000(app) groups=' "$T/user.err" &&
	grep 'groups=' "$T/user.err" | grep -q '100(users)' && grep 'groups=' "$T/user.err" | grep -q '1000(app)' &&
	grep -q 'HOME=/home/app' "$T/user.err" &&
	pass "User app: uid, gid, additional groups and HOME from the image's passwd/group" ||
	{ fail "User app"; show_file "$T/user.err"; }
optimize usergrp "oci:$SRC:usergrp" "oci:$T/out:usergrp"
expect_rc "config User uid:group" 0 usergrp
grep -q 'uid=1000(app) gid=50(staff)' "$T/usergrp.err" && pass "User 1000:staff" ||
	{ fail "User 1000:staff"; show_file "$T/usergrp.err"; }
optimize nouser "oci:$SRC:nouser" "oci:$T/out:nouser"
expect_rc "User not in the image's passwd" 3 nouser
grep -q "nobody" "$T/nouser.err" && pass "the error names the user" || fail "nouser error"
optimize nocmd "oci:$SRC:nocmd" "oci:$T/out:nocmd"
expect_rc "no Entrypoint nor Cmd" 3 nocmd
grep -q -- "--entrypoint" "$T/nocmd.err" || fail "nocmd: error does not say what to do"

# --- 5. the sandbox: whiteouts, no network -------------------------------------------
LPORT=$(free_port)
"$RIG_PY" -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); time.sleep(300)' "$LPORT" &
_RIG_PIDS+=("$!")
sleep 0.3
optimize sandbox --entrypoint '["/bin/sh","-c"]' --args "[\"ls /data /opq; cat /proc/net/dev; echo NETDEV-END; \
if echo hi | nc -w 2 127.0.0.1 $LPORT; then echo CONNECTED; else echo NO-CONNECT; fi\"]" \
	"oci:$SRC:main" "oci:$T/out:sb"
expect_rc "sandbox run" 0 sandbox
grep -qx new "$T/sandbox.err" && ! grep -qxE 'old|gone' "$T/sandbox.err" && grep -qx x "$T/sandbox.err" &&
	pass "whiteout and opaque dir apply inside the sandbox" || { fail "whiteouts"; show_file "$T/sandbox.err"; }
ifaces=$(sed -n '/^Inter-/,/^NETDEV-END$/p' "$T/sandbox.err" | grep -E '^ *[a-z0-9]+:' |
	cut -d: -f1 | tr -d ' ' | sort -u | tr '\n' ' ')
[ "$ifaces" = "lo " ] && grep -q NO-CONNECT "$T/sandbox.err" && ! grep -q CONNECTED$ "$T/sandbox.err" &&
	pass "no network: only lo, the host's listener unreachable" ||
	{ fail "network: interfaces '$ifaces'"; show_file "$T/sandbox.err"; }

# --- 6. failing workloads still give a list -------------------------------------------
optimize fail3 --entrypoint '["/bin/sh","-c","cat /data/c; exit 3"]' --record-out "$T/fail3.list" \
	"oci:$SRC:main" "oci:$T/out:fail3"
expect_rc "workload exits 3" 0 fail3
grep -qx /data/c "$T/fail3.list" && grep -q "warning: .*status 3" "$T/fail3.err" &&
	pass "exit 3: list and a warning" || { fail "exit 3"; show_file "$T/fail3.err"; }
start=$(date +%s)
optimize period --period 1 --entrypoint sleep --args 100 --record-out "$T/period.list" \
	"oci:$SRC:main" "oci:$T/out:period"
took=$(($(date +%s) - start))
expect_rc "--period 1 on sleep 100" 0 period
[ "$took" -le 8 ] && cut -f1 "$T/period.list" | grep -qx /bin/busybox && grep -q "warning: .*period" "$T/period.err" &&
	pass "--period 1: done in ${took}s with a list and a warning" ||
	{ fail "--period 1 took ${took}s"; show_file "$T/period.err"; }
optimize noexec --entrypoint /nonexistent --record-out "$T/noexec.list" "oci:$SRC:main" "oci:$T/out:noexec"
expect_rc "entrypoint cannot be executed" 0 noexec
[ -f "$T/noexec.list" ] && grep -q warning "$T/noexec.err" && pass "cannot exec: a list and a warning" ||
	{ fail "cannot exec"; show_file "$T/noexec.err"; }
no_leftovers "after failing workloads"

# --- 7. SIGINT while the workload runs -------------------------------------------------
"$STARGZ" optimize --period 60 --entrypoint sleep --args 100 "oci:$SRC:main" "oci:$T/out:int" \
	>"$T/int.out" 2>"$T/int.err" &
pid=$!
sleep 2
kill -INT "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
	fail "SIGINT: still running after 10 s"
	kill -KILL "$pid"
fi
wait "$pid"
rc=$?
[ "$rc" -ne 0 ] && ! manifest_of "$T/out" int >/dev/null 2>&1 && pass "SIGINT: stops, fails (exit $rc), writes no image" ||
	{ fail "SIGINT: exit $rc"; show_file "$T/int.err"; }
no_leftovers "after SIGINT"

# --- 8. bad input ---------------------------------------------------------------------
optimize badsrc "oci:$T/nonexistent:v1" "oci:$T/out:bad"
expect_rc "SRC layout missing" 3 badsrc
grep -q nonexistent "$T/badsrc.err" || { fail "bad SRC: the error does not name it"; show_file "$T/badsrc.err"; }
optimize badreg --plain-http "127.0.0.1:$(free_port)/nothing:v1" "oci:$T/out:bad"
expect_rc "SRC registry unreachable" 3 badreg
optimize badtag "oci:$SRC:nosuchtag" "oci:$T/out:bad"
expect_rc "SRC tag missing" 3 badtag
optimize badperiod --period 0 "oci:$SRC:main" "oci:$T/out:bad"
expect_rc "--period 0" 2 badperiod
optimize badenv --env NOVALUE "oci:$SRC:main" "oci:$T/out:bad"
expect_rc "--env without =" 2 badenv
optimize badjson --entrypoint '["/bin/sh", 1]' "oci:$SRC:main" "oci:$T/out:bad"
expect_rc "--entrypoint with a non-string" 2 badjson
# a layer that writes through a symlink to outside its directory
mkdir -p "$T/escape"
"$PYTHON" - "$T/evil.tar" "$T/escape" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    s = tarfile.TarInfo("evil"); s.type = tarfile.SYMTYPE; s.linkname = sys.argv[2]; t.addfile(s)
    f = tarfile.TarInfo("evil/pwned"); f.size = 1; t.addfile(f, io.BytesIO(b"x"))
PY
"$PYTHON" "$TESTS_DIR/make_oci_image.py" --name v1 "$T/evil" "$T/l1.tar.gz" "$T/evil.tar" >/dev/null
optimize evil --entrypoint /bin/true "oci:$T/evil:v1" "oci:$T/out:evil"
expect_rc "a layer writing through a symlink" 3 evil
evil_dg=$(jq -r '.layers[1].digest' "$(blob "$T/evil" "$(jq -r '.manifests[0].digest' "$T/evil/index.json")")")
[ -z "$(ls -A "$T/escape")" ] && grep -q "$evil_dg" "$T/evil.err" &&
	pass "nothing written outside; the error names the layer" ||
	{ fail "symlink escape"; show_file "$T/evil.err"; ls -la "$T/escape"; }
no_leftovers "after bad input"

# --- 9. big files read in part: only the parts read are prefetched -------------------
L3=$T/l3
mkdir -p "$L3/bin" "$L3/data"
ln -s busybox "$L3/bin/head"
ln -s busybox "$L3/bin/dd"
head -c 8M /dev/urandom >"$L3/data/big-part"
head -c 8M /dev/urandom >"$L3/data/big-full"
tar -C "$L3" --sort=name --owner=0 --group=0 --numeric-owner --mtime=2021-01-01T00:00:00Z \
	-cf "$T/l3.tar" . || die "tar l3"
BIG=$T/bigsrc
"$PYTHON" "$TESTS_DIR/make_oci_image.py" --name v1 "$BIG" "$T/l1.tar.gz" "$T/l2.tar" "$T/l3.tar" \
	>/dev/null || die "make_oci_image.py (big)"
# line_of FILE STR: the number of FILE's first line that is STR ("" if none)
line_of() { grep -nxF -- "$2" "$1" | head -1 | cut -d: -f1; }
# big-part: 4 KiB at 0 and 4 KiB at 4 MiB; big-full: all of it
BIG_RUN='head -c 4096 /data/big-part >/dev/null; dd if=/data/big-part of=/dev/null bs=4096 skip=1024 count=1 2>/dev/null; cat /data/big-full >/dev/null'
optimize big --entrypoint "[\"/bin/sh\",\"-c\",\"$BIG_RUN\"]" \
	--record-out "$T/big.list" "oci:$BIG:v1" "oci:$T/out:big"
expect_rc "optimize, one big file read whole, one in part" 0 big
full=$(line_of "$T/big.list" /data/big-full)
part=$(grep -n "^/data/big-part$(printf '\t')" "$T/big.list" | head -1 | cut -d: -f1)
ranges=$(sed -n "${part:-0}p" "$T/big.list" | cut -f2)
# every range as "OFF END" lines
range_lines=$(printf '%s\n' "$ranges" | tr ',' '\n' | awk -F+ 'NF == 2 { print $1, $1 + $2 }')
covers() { printf '%s\n' "$range_lines" | awk -v o="$1" '$1 <= o && o < $2 { f = 1 } END { exit !f }'; }
read_bytes=$(printf '%s\n' "$range_lines" | awk '{ s += $2 - $1 } END { print s + 0 }')
if [ -n "$full" ] && [ -n "$part" ] && [ "$part" -lt "$full" ] &&
	! grep -q prefetch.landmark "$T/big.list" && covers 0 && covers 4194304 &&
	! covers 2097152 && [ "$read_bytes" -lt $((1 << 20)) ] &&
	[ "$(jq -r .readInPart "$T/big.out")" = "$(grep -c "$(printf '\t')" "$T/big.list")" ]; then
	pass "list: /data/big-part with the ranges read ($read_bytes bytes from 0 and 4 MiB), /data/big-full whole, no landmark line; readInPart counts the files with ranges"
else
	fail "list: the ranges of /data/big-part are not what was read"
	show_file "$T/big.list"
	show_file "$T/big.out"
	show_file "$T/big.err"
fi
# chunks of data/big-part in layer 2 of DIR:TAG as "OFF END NOPREFETCH" lines
NP_KEY=io.github.remote-snapshotter.noPrefetch
part_chunks() {
	local m l
	m=$(manifest_of "$1" "$2") || return 1
	l=$(jq -r ".layers[2].digest" "$(blob "$1" "$m")")
	"$STARGZ" toc "$(blob "$1" "$l")" | jq -r --arg k "$NP_KEY" '
		[.entries[] | select((.name | ltrimstr("./")) == "data/big-part")] as $e | ($e[0].size) as $size
		| [$e[] | (.chunkOffset // 0)] as $offs
		| range(0; $e | length) as $i
		| "\($offs[$i]) \(if $i + 1 < ($e | length) then $offs[$i + 1] else $size end) \($e[$i][$k] // false)"'
}
part_chunks "$T/out" big >"$T/big.chunks" || true
# the chunks not marked hold exactly the recorded ranges (gaps under 64 KiB closed)
kept=$(awk '$3 == "false" { print $1, $2 }' "$T/big.chunks")
marked=$(awk '$3 == "true" { s += $2 - $1 } END { print s + 0 }' "$T/big.chunks")
if [ -s "$T/big.chunks" ] && [ "$kept" = "$range_lines" ] &&
	[ "$marked" = $((8 * 1048576 - read_bytes)) ]; then
	pass "layer 2: data/big-part cut at the ranges; the other $marked bytes marked noPrefetch"
else
	fail "layer 2: the chunks of data/big-part do not follow the ranges"
	show_text "ranges: $range_lines"
	show_file "$T/big.chunks"
fi
layer_names "$T/out" big 2 | sed '/^\.prefetch\.landmark$/q' | grep -qx data/big-part &&
	pass "layer 2: data/big-part before the landmark" || fail "layer 2: data/big-part not before the landmark"
# the saved list (with its ranges) gives the same image
optimize bigre --record-in "$T/big.list" "oci:$BIG:v1" "oci:$T/out:bigre"
expect_rc "--record-in the list with ranges" 0 bigre
[ "$(jq -r .digest "$T/bigre.out")" = "$(jq -r .digest "$T/big.out")" ] &&
	pass "--record-in: the same digest as the recorded run" ||
	fail "--record-in: $(jq -r .digest "$T/bigre.out"), recorded $(jq -r .digest "$T/big.out")"
# without mkfs.ext4 (one that fails): a warning, whole files, no ranges
mkdir -p "$T/nomkfs"
printf '#!/bin/sh\nexit 1\n' >"$T/nomkfs/mkfs.ext4"
chmod +x "$T/nomkfs/mkfs.ext4"
PATH="$T/nomkfs:$PATH" optimize bignofs --entrypoint "[\"/bin/sh\",\"-c\",\"$BIG_RUN\"]" \
	--record-out "$T/bignofs.list" "oci:$BIG:v1" "oci:$T/out:bignofs"
expect_rc "optimize without a working mkfs.ext4" 0 bignofs
if grep -q "no loop filesystem" "$T/bignofs.err" && ! grep -q "$(printf '\t')" "$T/bignofs.list" &&
	grep -qx /data/big-part "$T/bignofs.list" && [ "$(jq -r .readInPart "$T/bignofs.out")" = 0 ]; then
	pass "without a loop filesystem: a warning, every file whole (no ranges, readInPart 0)"
else
	fail "without a loop filesystem"
	show_file "$T/bignofs.err"
	show_file "$T/bignofs.list"
fi
# big_layer_check DIR TAG DESC FIRST NEXT: layer 2 of DIR:TAG holds data/FIRST
# (and dirs) before .prefetch.landmark, and data/NEXT right after it.
big_layer_check() {
	local names
	names=$(layer_names "$1" "$2" 2) || { fail "$3: toc of layer 2"; return; }
	local before after
	before=$(printf '%s\n' "$names" | sed '/^\.prefetch\.landmark$/q' | grep -vxE '|data|bin' | tr '\n' ' ')
	after=$(printf '%s\n' "$names" | grep -xA1 '\.prefetch\.landmark' | tr '\n' ' ')
	if [ "$before" = "data/$4 .prefetch.landmark " ] && [ "$after" = ".prefetch.landmark data/$5 " ]; then
		pass "$3: layer 2 has $4, .prefetch.landmark, then $5 right after it"
	else
		fail "$3: layer 2 is not $4, .prefetch.landmark, $5"
		show_text "before the landmark: $before / from it: $after"
		printf '%s\n' "$names" >"$T/$2.l2.names"
		show_file "$T/$2.l2.names"
	fi
}
# by hand: a landmark line puts the files after it behind the layer's landmark
printf '/bin/busybox\n/data/big-part\n/.prefetch.landmark\n/data/big-full\n' >"$T/hand.list"
optimize bighand --record-in "$T/hand.list" "oci:$BIG:v1" "oci:$T/out:bighand"
expect_rc "--record-in with the marker line" 0 bighand
big_layer_check "$T/out" bighand "--record-in" big-part big-full
no_leftovers "after the big files"

# --- 10. registry -> registry ------------------------------------------------------------
if command -v docker-registry >/dev/null && command -v skopeo >/dev/null; then
	registry_start_plain || die "registry"
	skopeo copy -q --dest-tls-verify=false "oci:$SRC:main" "docker://$PLAIN_REG/opt/src:v1" \
		>"$T/skopeo.log" 2>&1 || { show_file "$T/skopeo.log"; die "skopeo copy"; }
	optimize reg --plain-http --record-out "$T/reg.list" "$PLAIN_REG/opt/src:v1" "$PLAIN_REG/opt/dst:v1"
	expect_rc "optimize registry -> registry" 0 reg
	grep -qx /data/b "$T/reg.list" && pass "registry: recorded" || fail "registry: list"
	optimize reg2 --plain-http --record-in "$T/basic.list" "$PLAIN_REG/opt/src:v1" "$PLAIN_REG/opt/dst:v2"
	expect_rc "registry --record-in" 0 reg2
	cmp -s "$T/reg.list" "$T/basic.list" && pass "registry: the same list as from the layout" ||
		{ fail "registry: another list"; diff "$T/basic.list" "$T/reg.list" | head; }
	# skopeo re-serialised the source manifest: compare config and layers
	want=$(jq -c '[.config.digest, .layers[].digest]' "$(blob "$T/out" "$(manifest_of "$T/out" v1)")")
	for tag in v1 v2; do
		got=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
			"http://$PLAIN_REG/v2/opt/dst/manifests/$tag" | jq -c '[.config.digest, .layers[].digest]')
		[ "$got" = "$want" ] && pass "registry dst:$tag: the same config and layers as oci -> oci" ||
			fail "registry dst:$tag: $got, want $want"
	done
	run reginsp "$STARGZ" inspect --plain-http "$PLAIN_REG/opt/dst:v1"
	[ "$RC" = 0 ] && [ "$(jq '[.layers[] | select(.format == "estargz")] | length' "$T/reginsp.out")" = 2 ] &&
		pass "registry: both layers eStargz" || { fail "inspect dst"; show_file "$T/reginsp.out"; }
	no_leftovers "after registry runs"

	# --- 11. the optimised image mounted lazily: only the parts read are prefetched
	skopeo copy -q --dest-tls-verify=false "oci:$T/out:big" "docker://$PLAIN_REG/opt/big:v1" \
		>"$T/skopeo-big.log" 2>&1 || { show_file "$T/skopeo-big.log"; die "skopeo copy big"; }
	big_l2=$(jq -r '.layers[2].digest' "$(blob "$T/out" "$(manifest_of "$T/out" big)")")
	big_src=$T/l3/data/big-part
	mkdir -p "$T/mnt-big"
	if mount_start mbig --plain-http --allow-unverified --no-background-fetch --cache-dir "$T/cache-big" \
		"$PLAIN_REG/opt/big:v1" "$big_l2" "$T/mnt-big"; then
		wait_status "$T/mnt-big" '.state != "prefetching"' 30 || fail "mount: still prefetching"
		before=$(jq -r .fetched_bytes "$T/status.last")
		ra=$(cat "/sys/class/bdi/$(mountpoint -d "$T/mnt-big")/read_ahead_kb")
		# the workload's reads, as recorded, through the kernel's readahead
		head -c 4096 "$T/mnt-big/data/big-part" >"$T/part0" &&
			dd if="$T/mnt-big/data/big-part" of="$T/part4m" bs=4096 skip=1024 count=1 2>/dev/null
		wait_status "$T/mnt-big" true 5
		after=$(jq -r .fetched_bytes "$T/status.last")
		if [ "$ra" = 64 ] && [ "$before" -gt $((8 << 20)) ] &&
			[ "$before" -lt $(((8 << 20) + (1 << 20))) ] && [ "$after" = "$before" ] &&
			cmp -s "$T/part0" <(head -c 4096 "$big_src") &&
			cmp -s "$T/part4m" <(dd if="$big_src" bs=4096 skip=1024 count=1 2>/dev/null); then
			pass "mount: prefetch of $before bytes (big-full and the parts of big-part read), readahead 64 KiB; the recorded reads fetch nothing more"
		else
			fail "mount: prefetched $before bytes then $after, readahead $ra KiB"
			show_file "$T/status.last"
		fi
		[ "$(sha256sum <"$T/mnt-big/data/big-part")" = "$(sha256sum <"$big_src")" ] &&
			pass "mount: big-part reads whole and right (the rest fetched on demand)" ||
			fail "mount: big-part's bytes differ"
		mount_stop "$MOUNT_PID"
	fi
	mkdir -p "$T/mnt-big2"
	if mount_start mbig2 --plain-http --allow-unverified --cache-dir "$T/cache-big2" \
		"$PLAIN_REG/opt/big:v1" "$big_l2" "$T/mnt-big2"; then
		if wait_status "$T/mnt-big2" '.percent >= 100' 60 &&
			sleep 0.5 && [ "$(cat "/sys/class/bdi/$(mountpoint -d "$T/mnt-big2")/read_ahead_kb")" = 1024 ]; then
			pass "mount with background fetch: complete, readahead back to 1 MiB"
		else
			fail "mount with background fetch: not complete or readahead not raised"
			show_file "$T/status.last"
		fi
		mount_stop "$MOUNT_PID"
	fi
else
	log "docker-registry or skopeo missing: registry cases skipped"
fi

finish
