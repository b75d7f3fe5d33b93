#!/usr/bin/env bash
# The whole-layer check of lazily pulled layers: once a layer is complete, the
# daemon reads its blob once more, and the layer's diffID must give the chain
# ID containerd named its snapshot by. The result is in each layer's
# status.json (diff_id_check, diff_id); a layer that fails is "failed" and its
# reads get EIO; a check that passed is not made again after a restart with
# the same cache (the blob is not read whole again).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
. "$(dirname "$0")/daemon-lib.sh"

need_root
need_stargz
need_tools containerd ctr runc skopeo jq
[ -x "$RS_DAEMON" ] || skip "remote-snapshotter not built"
APICLI=${API_TEST_CLIENT:-$(dirname "$RS_DAEMON")/../../tests/api/api-test-client}
[ -x "$APICLI" ] || APICLI=$REPO/build/tests/api/api-test-client

registry_start_plain || finish
seed_image "$PLAIN_REG" rs/busybox:gz || finish
sg convert convert --plain-http "$PLAIN_REG/rs/busybox:gz" "$PLAIN_REG/rs/busybox:esgz"
expect_rc "stargz convert of the busybox image to eStargz" 0 convert || finish
NETPROXY_UPSTREAM=$PLAIN_REG netproxy_start PX || finish
REF=$PX/rs/busybox:esgz

skopeo inspect --raw --tls-verify=false "docker://$REF" >"$T/manifest.json"
cfg=$(jq -r .config.digest "$T/manifest.json")
curl -sf "http://$PX/v2/rs/busybox/blobs/$cfg" >"$T/config.json" || die "fetching the config"
# digest size diffID, bottom layer first
paste <(jq -r '.layers[] | "\(.digest) \(.size)"' "$T/manifest.json") \
	<(jq -r '.rootfs.diff_ids[]' "$T/config.json") | tr '\t' ' ' >"$T/layers.txt"
nlayers=$(wc -l <"$T/layers.txt")

# statuses: one line "digest state diff_id_check diff_id" per mounted layer
statuses() {
	for f in "$RS_ROOT"/snapshots/*/fs/$STATUS_REL; do
		[ -f "$f" ] && jq -r '"\(.digest) \(.state) \(.diff_id_check) \(.diff_id)"' "$f" 2>/dev/null
	done
}
# wait_checked N SECONDS: until N mounted layers say diff_id_check "ok"
wait_checked() {
	local want=$1 secs=$2 n=0
	for _ in $(seq $((secs * 5))); do
		n=$(statuses | awk '$3 == "ok"' | wc -l)
		[ "$n" -ge "$want" ] && return 0
		sleep 0.2
	done
	statuses | sed 's/^/    | /'
	return 1
}
# full_reads DIGEST SIZE: requests through the proxy for the whole blob
full_reads() {
	jq -r --arg p "/v2/rs/busybox/blobs/$1" --arg r "bytes=0-$(($2 - 1))" \
		'select(.path == $p and .range == $r) | .path' "$PX_LOG" 2>/dev/null | wc -l
}

daemon_start --log-level debug || finish
ctrd_with_stargz || finish

# --- a pulled image: every layer's diffID checked against its chain ID ------------
rpull pull1 "$REF" --snapshotter stargz
expect_rc "stargz rpull $REF" 0 pull1
check "every layer of the image was lazy" [ "$(grep -c ' lazy' "$T/pull1.out")" -eq "$nlayers" ]
check "every layer's diffID is checked once it is complete" wait_checked "$nlayers" 120
statuses >"$T/statuses1"
n_right=0
while read -r d size diff; do
	grep -q "^$d complete ok $diff\$" "$T/statuses1" && n_right=$((n_right + 1))
done <"$T/layers.txt"
check "each layer's status.json shows the config's diffID ($n_right of $nlayers)" \
	[ "$n_right" -eq "$nlayers" ]
n_once=0
while read -r d size diff; do
	[ "$(full_reads "$d" "$size")" -eq 1 ] && n_once=$((n_once + 1))
done <"$T/layers.txt"
check "each blob was read whole exactly once, for the check ($n_once of $nlayers)" \
	[ "$n_once" -eq "$nlayers" ]
# That one stream was also the background fetch: what each blob cost is
# its TOC and footer (the first request) plus the blob once, not twice.
n_cheap=0
while read -r d size diff; do
	toc_off=$(jq -r --arg d "$d" '.layers[] | select(.digest == $d) |
		.annotations["io.github.remote-snapshotter.toc-offset"]' "$T/manifest.json")
	got=$(jq -s --arg p "/v2/rs/busybox/blobs/$d" '[.[] | select(.path == $p) | .bytes] | add' "$PX_LOG")
	[ "$got" -le $((size + 3 * (size - toc_off) + 1024)) ] && n_cheap=$((n_cheap + 1))
	log "$d: $got bytes fetched for a $size-byte blob (TOC and footer $((size - toc_off)))"
done <"$T/layers.txt"
check "each blob cost its TOC and footer plus itself once ($n_cheap of $nlayers)" \
	[ "$n_cheap" -eq "$nlayers" ]
run run1 timeout 60 "${CTR[@]}" run --rm --snapshotter stargz "$REF" rs-diffid-1 cat /etc/hello.txt
expect_rc "ctr run on the checked image" 0 run1
check "the container reads its file" grep -q 'hello from rs-rig' "$T/run1.out"

# --- a snapshot whose chain ID the layer does not give ------------------------------
# The daemon is asked to mount the top layer as a snapshot named by a digest
# that is not its chain ID: the layer mounts (nothing is known yet), and once
# complete it fails the check, and its reads get EIO. containerd is stopped
# first: its garbage collector removes from the snapshotter what its own
# database does not know, and it knows nothing of this snapshot.
containerd_stop
top=$(tail -1 "$T/layers.txt" | cut -d' ' -f1)
wrong=sha256:$(printf 'not the chain id' | sha256sum | cut -d' ' -f1)
run badprep timeout 120 "$APICLI" "$RS_SOCK" prepare \
	-l "containerd.io/snapshot.ref=$wrong" \
	-l "containerd.io/snapshot/remote/stargz.reference=$REF" \
	-l "containerd.io/snapshot/remote/stargz.digest=$top" \
	-l "containerd.io/snapshot/stargz/toc.digest=$(jq -r --arg d "$top" \
		'.layers[] | select(.digest == $d) | .annotations["containerd.io/snapshot/stargz/toc.digest"]' \
		"$T/manifest.json")" rs-bad-key
check "Prepare of the layer under a wrong chain ID: mounted (ALREADY_EXISTS)" \
	grep -q '"code": *6' "$T/badprep.out"
bad=''
for _ in $(seq 300); do
	for f in "$RS_ROOT"/snapshots/*/fs/$STATUS_REL; do
		[ "$(jq -r .state "$f" 2>/dev/null)" = failed ] && bad=$(dirname "$(dirname "$f")")
	done
	[ -n "$bad" ] && break
	sleep 0.2
done
check "that layer's status.json says failed, diffID mismatch" \
	sh -c "[ -n '$bad' ] && jq -e '.diff_id_check == \"mismatch\" and .verify_errors >= 1' '$bad/$STATUS_REL' >/dev/null"
if [ -n "$bad" ]; then
	file=$(find "$bad" -path "$bad/.remote-snapshotter" -prune -o -type f -size +0 -print | head -1)
	echo 3 >/proc/sys/vm/drop_caches
	run badread cat "$file"
	check "a read of its file $file gets EIO" \
		sh -c "[ $RC -ne 0 ] && grep -q 'Input/output error' '$T/badread.err'"
	run onbad timeout 60 "$APICLI" -P "$wrong" "$RS_SOCK" prepare rs-on-bad
	check "a Prepare on top of the failed layer is refused as UNAVAILABLE" grep -q '"code": *14' "$T/onbad.out"
	statuses >"$T/statuses2"
	check "the layer pulled under its right chain ID is still ok" grep -q "^$top complete ok " "$T/statuses2"
fi
"$APICLI" "$RS_SOCK" remove "$wrong" >/dev/null 2>&1

# --- restart: a passed check is remembered -------------------------------------------
daemon_kill TERM
check "the daemon exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
: >"$PX_LOG"
daemon_start --log-level debug || finish
check "after a restart every restored layer's check is ok" wait_checked "$nlayers" 120
n_again=0
while read -r d size diff; do
	[ "$(full_reads "$d" "$size")" -eq 0 ] && n_again=$((n_again + 1))
done <"$T/layers.txt"
check "no blob was read whole again after the restart ($n_again of $nlayers)" \
	[ "$n_again" -eq "$nlayers" ]

daemon_kill TERM
check "the daemon exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
if grep -q 'Sanitizer\|runtime error' "$RS_LOG"; then
	fail "the sanitizer reported errors in the daemon"
	grep -A20 'Sanitizer\|runtime error' "$RS_LOG" | head -40 | sed 's/^/    | /'
fi
finish
