#!/usr/bin/env bash
# Issue 5 end to end: our daemon as containerd's proxy snapshotter "stargz",
# `stargz rpull` of eStargz images (lazy: no layer blob in the content store),
# `ctr run` on them, ordinary pulls through the same snapshotter, a mixed
# gzip + eStargz image, a daemon killed and restarted, a registry down at
# Prepare, and pull time that does not grow with the image's size.
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

daemon_start --log-level debug || finish
ctrd_with_stargz || finish

# --- lazy pull and run ------------------------------------------------------------
REF=$REG/rs/busybox:esgz
rpull pull1 "$REF" --snapshotter stargz
expect_rc "stargz rpull $REF" 0 pull1
n_lazy=$(grep -c ' lazy' "$T/pull1.out")
check "every layer of the eStargz image is lazy ($n_lazy of 3)" [ "$n_lazy" -eq 3 ]
grep -q 'downloaded' "$T/pull1.out" && fail "rpull downloaded a layer of an eStargz image" &&
	show_file "$T/pull1.out"
layers=$(skopeo inspect --raw --tls-verify=false "docker://$REF" | jq -r '.layers[].digest')
"${CTR[@]}" content ls -q >"$T/content.txt"
leaked=0
for d in $layers; do
	grep -qx "$d" "$T/content.txt" && leaked=$((leaked + 1))
done
check "no layer blob landed in containerd's content store" [ "$leaked" -eq 0 ]
# Our converter states each layer's TOC offset (the footer's) in an
# annotation; rpull hands the daemon the tail lengths, and each layer's first
# request asks for exactly its TOC and footer.
n_exact=0
n_annot=0
while read -r d size off; do
	[ "$off" != null ] || continue
	footer_off=$(curl -s -r -51 "http://$REG/v2/rs/busybox/blobs/$d" | dd bs=1 skip=16 count=16 2>/dev/null)
	[ "$((16#${footer_off:-x}))" = "$off" ] 2>/dev/null && n_annot=$((n_annot + 1))
	grep -q "$d opened: tail read [0-9]* ms ($((size - off)) bytes)" "$RS_LOG" && n_exact=$((n_exact + 1))
done < <(skopeo inspect --raw --tls-verify=false "docker://$REF" |
	jq -r '.layers[] | "\(.digest) \(.size) \(.annotations["io.github.remote-snapshotter.toc-offset"])"')
# The layers' prefetch and background fetch start once the image's top layer
# is mounted, not while containerd still prepares the layers above.
last_mount=0
first_fetch=999999
n_fetch=0
for d in $layers; do
	m=$(grep -n "layerfs: $d mounted at" "$RS_LOG" | tail -1 | cut -d: -f1)
	f=$(grep -n "layerfs: $d: prefetch and background fetch start" "$RS_LOG" | head -1 | cut -d: -f1)
	[ -n "$m" ] && [ "$m" -gt "$last_mount" ] && last_mount=$m
	[ -n "$f" ] && n_fetch=$((n_fetch + 1)) && [ "$f" -lt "$first_fetch" ] && first_fetch=$f
done
check "every layer's fetch started ($n_fetch of 3)" [ "$n_fetch" -eq 3 ]
check "no layer's fetch started before the top layer was mounted (log lines $first_fetch, $last_mount)" \
	[ "$first_fetch" -gt "$last_mount" ]
check "every layer's toc-offset annotation is its footer's offset ($n_annot of 3)" [ "$n_annot" -eq 3 ]
check "the daemon's first request of each layer was its TOC and footer, no more ($n_exact of 3)" \
	[ "$n_exact" -eq 3 ]
"${CTR[@]}" snapshots --snapshotter stargz ls >"$T/snaps.txt"
check "the layers are committed snapshots on stargz" [ "$(grep -c Committed "$T/snaps.txt")" -ge 3 ]

run run1 timeout 60 "${CTR[@]}" run --rm --snapshotter stargz "$REF" rs-lazy-1 \
	cat /etc/hello.txt /etc/os-release
expect_rc "ctr run on the lazily pulled image" 0 run1
check "the container reads /etc/hello.txt through FUSE" grep -q 'hello from rs-rig' "$T/run1.out"
check "cat /etc/os-release in the container is the image's" grep -qx 'PRETTY_NAME="rs-rig amd64"' "$T/run1.out"

# A file written in the container stays in its upper dir.
run run2 timeout 60 "${CTR[@]}" run --snapshotter stargz "$REF" rs-lazy-2 \
	sh -c 'echo written-here > /written.txt'
expect_rc "ctr run writing a file" 0 run2
upper=$(find "$RS_ROOT/snapshots" -maxdepth 3 -path '*/fs/written.txt' 2>/dev/null | head -1)
check "the written file is in the container's upper dir ($upper)" \
	sh -c "[ -n '$upper' ] && grep -qx written-here '$upper'"
"${CTR[@]}" containers rm rs-lazy-2 >/dev/null 2>&1

# A second rpull finds everything there.
rpull pull2 "$REF" --snapshotter stargz
expect_rc "second rpull" 0 pull2
check "second rpull: no layer downloaded" bash -c "! grep -q downloaded '$T/pull2.out'"

# --- the reference client against our daemon -------------------------------------
if command -v ctr-remote >/dev/null; then
	seed_image --salt refcli "$REG" rs/refcli:gz || finish
	sg convref convert --plain-http "$REG/rs/refcli:gz" "$REG/rs/refcli:esgz"
	run refpull timeout 120 ctr-remote -a "$CTRD_SOCK" images rpull --plain-http \
		--snapshotter stargz "$REG/rs/refcli:esgz"
	expect_rc "ctr-remote images rpull (the reference client) through our daemon" 0 refpull
	n=$(grep -c "remote layer .* mounted" "$RS_LOG")
	check "the reference client's pull was lazy (remote mounts in the log: $n)" [ "$n" -ge 5 ]
	run refrun timeout 60 "${CTR[@]}" run --rm --snapshotter stargz "$REG/rs/refcli:esgz" rs-ref \
		cat /etc/hello.txt /etc/salt
	expect_rc "ctr run of the image ctr-remote pulled" 0 refrun
	check "its files read" grep -q refcli "$T/refrun.out"
fi

# --- an ordinary pull through our snapshotter -------------------------------------
run gzpull timeout 120 "${CTR[@]}" images pull --plain-http --snapshotter stargz "$REG/rs/busybox:gz"
expect_rc "ctr images pull --snapshotter stargz (gzip image, not lazy)" 0 gzpull
run gzrun timeout 60 "${CTR[@]}" run --rm --snapshotter stargz "$REG/rs/busybox:gz" rs-gz \
	cat /etc/hello.txt
expect_rc "ctr run of the gzip image on stargz" 0 gzrun
check "the gzip image's container reads its file" grep -q 'hello from rs-rig' "$T/gzrun.out"

# --- mixed gzip + eStargz ---------------------------------------------------------
MIX=$T/mix
rig_rootfs_layers "$MIX" amd64 3 mixsalt
sg mixbuild build "$MIX/layer2.tar.gz" "$MIX/layer2.esgz"
expect_rc "stargz build of the mixed image's second layer" 0 mixbuild
cp "$T/mixbuild.out" "$MIX/layer2.esgz.json"
push_image "$REG" rs/mixed:1 "$MIX/layer1.tar.gz" "$MIX/layer2.esgz" "$MIX/layer3.tar.gz" || finish
rpull mixpull "$REG/rs/mixed:1" --snapshotter stargz
expect_rc "rpull of a gzip + eStargz + gzip image" 0 mixpull
check "mixed: one layer lazy" [ "$(grep -c ' lazy' "$T/mixpull.out")" -eq 1 ]
# Its top layer is not lazy: the lazy layer's fetch starts after a second.
mix_lazy=$(skopeo inspect --raw --tls-verify=false "docker://$REG/rs/mixed:1" | jq -r '.layers[1].digest')
for _ in $(seq 50); do
	grep -q "layerfs: $mix_lazy: prefetch and background fetch start" "$RS_LOG" && break
	sleep 0.1
done
check "mixed: the lazy layer's fetch started without a lazy top layer" \
	grep -q "layerfs: $mix_lazy: prefetch and background fetch start" "$RS_LOG"
# Its gzip bottom layer is busybox:gz's, already unpacked above: "exists".
check "mixed: the two gzip layers downloaded or found" \
	[ "$(grep -Ec ' (downloaded|applied|exists)' "$T/mixpull.out")" -eq 2 ]
run mixrun timeout 60 "${CTR[@]}" run --rm --snapshotter stargz "$REG/rs/mixed:1" rs-mix \
	sh -c 'cat /etc/hello.txt /etc/salt; wc -c < /usr/share/rs/data.bin'
expect_rc "ctr run of the mixed image" 0 mixrun
check "mixed: files of every layer read" sh -c "grep -q mixsalt '$T/mixrun.out' && grep -qx 2097152 '$T/mixrun.out'"

# --- daemon killed and restarted while a container runs ---------------------------
run bg timeout 30 "${CTR[@]}" run -d --snapshotter stargz "$REF" rs-bg sleep 600
expect_rc "a long-running container starts" 0 bg
daemon_kill KILL
daemon_start || finish
# containerd keeps one connection to the plugin and needs a moment after a restart.
ok_restart=false
for _ in $(seq 20); do
	run rerun timeout 60 "${CTR[@]}" run --rm --snapshotter stargz "$REF" rs-after cat /etc/hello.txt
	if [ "$RC" -eq 0 ]; then
		ok_restart=true
		break
	fi
	sleep 0.5
done
check "after SIGKILL and restart, a new container of the image starts and reads" $ok_restart
check "after restart the output is right" grep -q 'hello from rs-rig' "$T/rerun.out"
grep -q 'restor\|mounted' "$RS_LOG" || fail "the daemon log says nothing about restoring layers"
# The running container's lower layers were taken over by the new daemon:
# data the kernel had not cached reads right (docs/daemon.md, "Restarts").
echo 3 >/proc/sys/vm/drop_caches
run oldread timeout 30 "${CTR[@]}" tasks exec --exec-id x1 rs-bg busybox sha256sum /usr/share/rs/data.bin
expect_rc "the container started before the SIGKILL reads an uncached file after the restart" 0 oldread
check "and reads it right" grep -q "^$(sha256_of "$RIG/img-rs_busybox-gz.src/l3/usr/share/rs/data.bin" 2>/dev/null || echo none) " "$T/oldread.out"
"${CTR[@]}" tasks kill -s KILL rs-bg >/dev/null 2>&1
sleep 1
"${CTR[@]}" tasks rm -f rs-bg >/dev/null 2>&1
"${CTR[@]}" containers rm rs-bg >/dev/null 2>&1

# --- pull time does not grow with the image's size --------------------------------
SZ=$T/sizes
mkdir -p "$SZ/s1/data" "$SZ/s100/data"
head -c $((1 << 20)) /dev/urandom >"$SZ/s1/data/blob"
head -c $((100 << 20)) /dev/urandom >"$SZ/s100/data/blob"
for s in s1 s100; do
	tar -C "$SZ/$s" -cf "$SZ/$s.tar" .
	"$STARGZ" build "$SZ/$s.tar" "$SZ/$s.esgz" >"$SZ/$s.esgz.json"
	push_image "$REG" "rs/size:$s" "$SZ/$s.esgz" || finish
done
t0=$(date +%s%N)
rpull p1 "$REG/rs/size:s1" --snapshotter stargz
t1=$(date +%s%N)
rpull p100 "$REG/rs/size:s100" --snapshotter stargz
t2=$(date +%s%N)
ms1=$(((t1 - t0) / 1000000)) ms100=$(((t2 - t1) / 1000000))
check "rpull of a 100 MB image ($ms100 ms) within a small constant of a 1 MB image's ($ms1 ms)" \
	[ "$ms100" -le $((2 * ms1 + 1500)) ]
check "100 MB image pulled lazily" grep -q ' lazy' "$T/p100.out"

# --- registry down at Prepare -----------------------------------------------------
# A Prepare with remote labels naming a layer behind a proxy that refuses
# connections: the daemon gives up on the lazy mount (bounded by its timeouts)
# and answers with an ordinary active snapshot, logging why.
APICLI=${API_TEST_CLIENT:-$REPO/build/tests/api/api-test-client}
if [ -x "$APICLI" ]; then
	# The CRI label set (containerd's CRI plugin) mounts a layer lazily too.
	one=$(echo "$layers" | head -1)
	# containerd passes the layer's annotations as labels: the TOC digest too.
	one_toc=$(skopeo inspect --raw --tls-verify=false "docker://$REF" |
		jq -r --arg d "$one" '.layers[] | select(.digest == $d) | .annotations["containerd.io/snapshot/stargz/toc.digest"]')
	run criprep timeout 120 "$APICLI" "$RS_SOCK" prepare \
		-l "containerd.io/snapshot.ref=rs-cri-target" \
		-l "containerd.io/snapshot/cri.image-ref=$REF" \
		-l "containerd.io/snapshot/cri.layer-digest=$one" \
		-l "containerd.io/snapshot/cri.image-layers=$one" \
		-l "containerd.io/snapshot/stargz/toc.digest=$one_toc" \
		-l "containerd.io/snapshot/cri.manifest-digest=sha256:$(printf '%064d' 0)" rs-cri-key
	check "Prepare with the CRI labels: ALREADY_EXISTS" grep -q '"code": *6' "$T/criprep.out"
	run cristat "$APICLI" "$RS_SOCK" stat rs-cri-target
	check "the CRI-labelled layer is committed as a remote snapshot" \
		sh -c "grep -q 'containerd.io/snapshot/remote' '$T/cristat.out' && grep -q '\"kind\": *\"committed\"' '$T/cristat.out'"
	check "the daemon mounted it from the CRI image-ref" grep -q "remote layer $one of $REF mounted at" "$RS_LOG"
	"$APICLI" "$RS_SOCK" remove rs-cri-target >/dev/null 2>&1
	NETPROXY_UPSTREAM=$REG netproxy_start PX || finish
	proxy_mode PX refuse
	one=$(echo "$layers" | head -1)
	# The TOC kept from the pull would open the layer with no request.
	rm -f "$RS_ROOT/cache/toc/${one#sha256:}"
	t0=$(date +%s)
	run downprep timeout 120 "$APICLI" "$RS_SOCK" prepare \
		-l "containerd.io/snapshot.ref=rs-down-target" \
		-l "containerd.io/snapshot/remote/stargz.reference=$PX/rs/busybox:esgz" \
		-l "containerd.io/snapshot/remote/stargz.digest=$one" \
		-l "containerd.io/snapshot/stargz/toc.digest=$one_toc" rs-down-key
	t1=$(date +%s)
	expect_rc "Prepare with the registry refusing falls back to an ordinary snapshot" 0 downprep
	check "and does not hang ($((t1 - t0)) s)" [ $((t1 - t0)) -lt 100 ]
	check "the daemon log says why the layer was not mounted lazily" \
		grep -qi "rs-down-target\|$one" "$RS_LOG"
	run downstat "$APICLI" "$RS_SOCK" stat rs-down-key
	check "the fallback snapshot is active" grep -q '"kind": *2\|ACTIVE\|"kind": *"active"' "$T/downstat.out"
	down_status=$(grep -l '"target": "rs-down-target"' "$RS_ROOT"/snapshots/*/status.json 2>/dev/null | head -1)
	check "its status.json says the layer is not lazy, and why (${down_status:-none})" \
		jq -e --arg d "$one" '.lazy == false and .digest == $d and (.reason | length > 0)' "${down_status:-/dev/null}"
	"$APICLI" "$RS_SOCK" remove rs-down-key >/dev/null 2>&1
else
	fail "api-test-client not built: registry-down-at-Prepare not checked"
fi

# --- clean shutdown -----------------------------------------------------------------
daemon_kill TERM
check "the daemon exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
kept=$(daemon_fuse_mounts | wc -l)
check "SIGTERM leaves the FUSE mounts for the next start ($kept)" [ "$kept" -gt 0 ]
daemon_start --unmount-on-exit || finish
daemon_kill TERM
check "with --unmount-on-exit the daemon exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
if grep -q 'Sanitizer\|runtime error' "$RS_LOG"; then
	fail "the sanitizer reported errors in the daemon"
	grep -A20 'Sanitizer\|runtime error' "$RS_LOG" | head -40 | sed 's/^/    | /'
fi
remaining=$(awk -v r="$RS_ROOT/snapshots" 'index($5, r) == 1 && $0 ~ / - fuse/' /proc/self/mountinfo | wc -l)
check "no FUSE mount of the daemon is left after SIGTERM with --unmount-on-exit ($remaining)" [ "$remaining" -eq 0 ]
check "and its fd holder is gone" test -z "$(daemon_holder_pid)"

finish
