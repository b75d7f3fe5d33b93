#!/usr/bin/env bash
# ad hoc (issue 15, 2026-12-07; STARGZ=binary): the bench big layer mounted with passthrough; compare its backing file with the local file
set -uo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
STARGZ=${STARGZ:-$top/build/src/cmd/stargz}
. "$top/tests/integration/lib.sh"
. "$top/tests/integration/registry-lib.sh"
BIGD=$top/bench/.cache/read/big-512
LOCAL=$BIGD/local/data/big.bin
mkdir -p "$T/docker-none"; echo '{"auths": {}}' >"$T/docker-none/config.json"; export DOCKER_CONFIG=$T/docker-none
D=$(jq -r .digest "$BIGD/build.json"); TOC=$(jq -r .tocDigest "$BIGD/build.json")
"$RIG_PY" "$TESTS_DIR/make_oci_image.py" --name 1 "$T/oci" "$BIGD/layer.esgz" >/dev/null || exit 1
registry_start_plain >/dev/null || exit 1
REF=$PLAIN_REG/bench/big:1
skopeo copy --dest-tls-verify=false "oci:$T/oci:1" "docker://$REF" >/dev/null 2>&1 || exit 1
mp=$T/mnt; mkdir -p "$mp" "$T/cache"
"$STARGZ" mount --plain-http --passthrough on --cache-dir "$T/cache" ${MOUNT_ARGS:-} --toc-digest "$TOC" "$REF" "$D" "$mp" >"$T/m.out" 2>"$T/m.err" &
pid=$!
for _ in $(seq 300); do grep -qx ready "$T/m.out" && break; sleep 0.1; done
for _ in $(seq 600); do b=$(jq -r .backing_files "$mp/.remote-snapshotter/status.json"); [ "$b" = 22 ] && break; sleep 0.2; done
echo "T=$T backing_files=$b"
BF=$(ls -S "$T"/cache/backing/sha256/* | head -1); sync; ls -l "$BF" "$LOCAL"
echo "--- filefrag backing"; filefrag "$BF"; filefrag -v "$BF" | sed -n 1,12p
echo "--- filefrag local"; filefrag "$LOCAL"; filefrag -v "$LOCAL" | sed -n 1,12p
echo "--- read_ahead_kb: vda $(cat /sys/block/vda/queue/read_ahead_kb); fuse bdi:"; for b in /sys/class/bdi/0:*; do echo "$b $(cat $b/read_ahead_kb)"; done | tail -3
cmp "$mp/data/big.bin" "$LOCAL" && echo cmp ok
rd() { # NAME FILE
	sync; echo 3 > /proc/sys/vm/drop_caches
	local s0 s1 t0 t1
	s0=$(awk '{print $1, $3}' /sys/block/vda/stat); t0=$EPOCHREALTIME
	dd if="$2" of=/dev/null bs=1M status=none
	t1=$EPOCHREALTIME; s1=$(awk '{print $1, $3}' /sys/block/vda/stat)
	echo "$1 $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f s %.0f MB/s", b-a, 536870912/(b-a)/1e6}') ios/sectors: $s0 -> $s1" | awk '{split($0,x,"-> "); print}'
}
for i in 1 2 3 4 5 6 7 8 9 10; do rd local "$LOCAL"; rd ours "$mp/data/big.bin"; rd backing "$BF"; done
jq -c '{passthrough_opens}' "$mp/.remote-snapshotter/status.json"
kill -TERM $pid; wait $pid
