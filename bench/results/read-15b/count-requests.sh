#!/usr/bin/env bash
# ad hoc (issue 15, 2026-12-07; STARGZ=binary): mount the bench meta layer, count FUSE requests of warm find walks by opcode
set -uo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
STARGZ=${STARGZ:-$top/build/src/cmd/stargz}
. "$top/tests/integration/lib.sh"
. "$top/tests/integration/registry-lib.sh"
METAD=$top/bench/.cache/read/meta-50000
mkdir -p "$T/docker-none"; echo '{"auths": {}}' >"$T/docker-none/config.json"; export DOCKER_CONFIG=$T/docker-none
L1_DIGEST=$(jq -r .digest "$METAD/build.json"); L1_TOC=$(jq -r .tocDigest "$METAD/build.json")
"$RIG_PY" "$TESTS_DIR/make_oci_image.py" --name 1 "$T/oci" "$METAD/layer.esgz" >/dev/null || exit 1
registry_start_plain >/dev/null || exit 1
REF=$PLAIN_REG/bench/meta:1
skopeo copy --dest-tls-verify=false "oci:$T/oci:1" "docker://$REF" >/dev/null 2>&1 || exit 1
mp=$T/mnt; mkdir -p "$mp" "$T/cache"
"$STARGZ" mount --plain-http --no-prefetch --no-background-fetch --cache-dir "$T/cache" ${MOUNT_ARGS:-} --toc-digest "$L1_TOC" "$REF" "$L1_DIGEST" "$mp" >"$T/m.out" 2>"$T/m.err" &
pid=$!
for _ in $(seq 300); do grep -qx ready "$T/m.out" && break; sleep 0.1; done
find "$mp" -printf '%m %U %s %T@\n' >/dev/null; find "$mp" -printf '%m %U %s %T@\n' >/dev/null
perf record -q -o "$T/perf.data" -e fuse:fuse_request_send -a -- sh -c "for i in 1 2 3 4 5; do find $mp -printf '%m %U %s %T@\n' >/dev/null; done" 2>/dev/null
echo "requests of 5 warm walks (all processes):"
perf script -i "$T/perf.data" 2>/dev/null | grep -o 'FUSE_[A-Z_]*' | sort | uniq -c | sort -rn
echo "--- by comm"; perf script -i "$T/perf.data" -F comm 2>/dev/null | sort | uniq -c
for i in 1 2 3 4 5; do /usr/bin/time -f "%e s" find "$mp" -printf '%m %U %s %T@\n' >/dev/null; done 2>&1
for i in 1 2 3 4 5; do /usr/bin/time -f "local %e s" find "$METAD/local" -printf '%m %U %s %T@\n' >/dev/null; done 2>&1
perf script -i "$T/perf.data" 2>/dev/null | head -3
kill -TERM $pid; wait $pid
