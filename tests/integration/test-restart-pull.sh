#!/usr/bin/env bash
# A daemon killed in the middle of a pull (issue 16): containerd's Prepare of
# a lazy layer hangs on its TOC read (the registry swallows range reads) and
# the daemon is SIGKILLed there. The next start removes what the interrupted
# Prepare left (its directory; a leftover mount, here a dead FUSE mount of
# `stargz mount`), a new pull of the image is lazy, a container runs on it,
# and the layers mounted before are still served. Env: STARGZ, RS_DAEMON.
# Everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
. "$(dirname "$0")/daemon-lib.sh"

need_root
need_stargz
need_tools containerd ctr runc skopeo jq
"$STARGZ" rpull --help >/dev/null 2>&1 || skip "stargz rpull not built"
[ -x "$RS_DAEMON" ] || skip "remote-snapshotter not built"

registry_start_plain || finish
REG=$PLAIN_REG
seed_image "$REG" rs/busybox:gz || finish
sg convert convert --plain-http "$REG/rs/busybox:gz" "$REG/rs/busybox:esgz"
expect_rc "stargz convert of the busybox image to eStargz" 0 convert || finish
NETPROXY_UPSTREAM=$REG netproxy_start PX || finish
REF=$PX/rs/busybox:esgz

daemon_start || finish
ctrd_with_stargz || finish

# snapshot_dirs: the snapshot directories of the daemon's root, one a line.
snapshot_dirs() { find "$RS_ROOT/snapshots" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort; }

# --- SIGKILL while a Prepare reads its layer's TOC -----------------------------------
before_list=$(snapshot_dirs)
before=$(snapshot_dirs | wc -l)
proxy_mode PX blackhole-range
timeout 120 "$STARGZ" rpull --address "$CTRD_SOCK" --plain-http --snapshotter stargz "$REF" \
	>"$T/pull0.out" 2>"$T/pull0.err" &
PULL_PID=$!
on_exit 'kill "$PULL_PID" 2>/dev/null'
for _ in $(seq 300); do
	[ "$(snapshot_dirs | wc -l)" -gt "$before" ] && break
	sleep 0.1
done
sleep 0.5
check "a lazy Prepare is in progress (a snapshot directory made, no answer yet)" \
	test "$(snapshot_dirs | wc -l)" -gt "$before" -a -n "$(kill -0 "$PULL_PID" 2>/dev/null && echo y)"
left=$(comm -13 <(echo "$before_list") <(snapshot_dirs) | head -1)
daemon_kill KILL
wait "$PULL_PID"
rc=$?
log "the pull cut by the kill exited $rc: $(tail -1 "$T/pull0.err")"
check "the interrupted Prepare left its directory behind ($left)" test -n "$left" -a -d "$RS_ROOT/snapshots/$left"
proxy_mode PX pass

# A dead FUSE mount in a directory no snapshot owns, as a kill between the
# mount and the Prepare's commit leaves it.
digest=$(skopeo inspect --raw --tls-verify=false "docker://$REG/rs/busybox:esgz" | jq -r '.layers[0].digest')
mkdir -p "$RS_ROOT/snapshots/90000/fs"
mount_start dead --plain-http --allow-unverified "$REG/rs/busybox:esgz" "$digest" "$RS_ROOT/snapshots/90000/fs" ||
	die "stargz mount"
kill -KILL "$MOUNT_PID"
wait "$MOUNT_PID" 2>/dev/null
check "the stray mount is dead (stat: $(stat "$RS_ROOT/snapshots/90000/fs" 2>&1 >/dev/null | sed 's/.*: //'))" \
	bash -c "! stat '$RS_ROOT/snapshots/90000/fs' >/dev/null 2>&1"

echo 3 >/proc/sys/vm/drop_caches
daemon_start || die "daemon start after the kill"
check "the start removed the interrupted Prepare's directory" test ! -e "$RS_ROOT/snapshots/$left"
check "and the directory with the dead mount" test ! -e "$RS_ROOT/snapshots/90000"
check "no mount left under the removed directories" \
	bash -c "! grep -qE ' $RS_ROOT/snapshots/(rm-)?($left|90000)(/| )' /proc/self/mountinfo"
check "the log says what it removed" grep -q "cleanup: removed .*/$left " "$RS_LOG"
check "no snapshot directory beyond those before the pull" test "$(snapshot_dirs | wc -l)" -eq "$before"

# --- the pull again: lazy, and a container runs on it ----------------------------------
ok=false
for _ in $(seq 10); do
	rpull pull1 "$REF" --snapshotter stargz
	[ "$RC" -eq 0 ] && ok=true && break
	sleep 0.5 # containerd reaches a restarted plugin after a moment
done
check "the pull after the restart succeeds" $ok
check "every layer of it is lazy ($(grep -c ' lazy' "$T/pull1.out") of 3)" \
	test "$(grep -c ' lazy' "$T/pull1.out")" -eq 3
check "three lazy layers mounted, nothing more" test "$(daemon_fuse_mounts | wc -l)" -eq 3
run ctr1 timeout 60 "${CTR[@]}" run --rm --snapshotter stargz "$REF" "rs-restart-pull1-$$" \
	sh -c 'busybox sha256sum /bin/busybox'
expect_rc "a container runs on the image" 0 ctr1
want=$(sha256sum /bin/busybox | cut -d' ' -f1) # the image's, as seed_image copied it
check "and reads its files right" grep -q "^$want " "$T/ctr1.out"

# --- a later kill: the layers are taken over, no cleanup of live ones ------------------
daemon_kill KILL
echo 3 >/proc/sys/vm/drop_caches
daemon_start || die "daemon start after the second kill"
check "the second start removed nothing" \
	test "$(grep -c 'cleanup: removed' "$RS_LOG")" -eq 2
check "the three layers are taken over" test "$(grep -c 'remote layer .* taken over at' "$RS_LOG")" -ge 3
for _ in $(seq 20); do # containerd reaches a restarted plugin after a moment
	run ctr2 timeout 60 "${CTR[@]}" run --rm --snapshotter stargz "$REF" "rs-restart-pull2-$$" \
		sh -c 'busybox sha256sum /bin/busybox'
	[ "$RC" -eq 0 ] && break
	sleep 0.5
done
expect_rc "a container runs on the image after the second restart" 0 ctr2
check "and reads its files right" grep -q "^$want " "$T/ctr2.out"

daemon_kill TERM
check "the daemon exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
finish
