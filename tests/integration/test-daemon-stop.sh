#!/usr/bin/env bash
# A daemon stops promptly on SIGTERM while a Prepare waits on a registry
# that black-holes every packet (netproxy.py): the registry client's requests
# are cancelled before the API server waits for its calls, so the stop does
# not wait out the API's grace period or the request timeout. Env: RS_DAEMON,
# STARGZ, API_TEST_CLIENT.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
. "$(dirname "$0")/daemon-lib.sh"

need_root
need_stargz
need_tools skopeo jq
[ -x "$RS_DAEMON" ] || skip "remote-snapshotter not built"
APICLI=${API_TEST_CLIENT:-$REPO/build/tests/api/api-test-client}
[ -x "$APICLI" ] || skip "api-test-client not built ($APICLI)"

registry_start_plain || finish
REG=$PLAIN_REG
seed_image "$REG" rs/busybox:gz || finish
sg convert convert --plain-http "$REG/rs/busybox:gz" "$REG/rs/busybox:esgz"
expect_rc "stargz convert of the busybox image to eStargz" 0 convert || finish
skopeo inspect --raw --tls-verify=false "docker://$REG/rs/busybox:esgz" >"$T/manifest.json"
one=$(jq -r '.layers[0].digest' "$T/manifest.json")
one_toc=$(jq -r '.layers[0].annotations["containerd.io/snapshot/stargz/toc.digest"]' "$T/manifest.json")

NETPROXY_UPSTREAM=$REG netproxy_start PX || finish
cat >"$T/rs.toml" <<'EOF'
[registry]
request_timeout_sec = 60
EOF
daemon_start --config "$T/rs.toml" --log-level debug || finish
proxy_mode PX blackhole
"$APICLI" "$RS_SOCK" prepare \
	-l "containerd.io/snapshot.ref=rs-stop-target" \
	-l "containerd.io/snapshot/remote/stargz.reference=$PX/rs/busybox:esgz" \
	-l "containerd.io/snapshot/remote/stargz.digest=$one" \
	-l "containerd.io/snapshot/stargz/toc.digest=$one_toc" rs-stop-key >"$T/prep.out" 2>&1 &
prep_pid=$!
# Wait until the daemon's request is stuck in the black hole.
for _ in $(seq 100); do
	[ "$(grep -c '' "$PX_LOG")" -gt 0 ] && break
	sleep 0.1
done
sleep 1
check "the Prepare is still waiting on the registry" kill -0 "$prep_pid"
t0=$(date +%s%N)
daemon_kill TERM
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
check "the daemon exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
check "and within 5 s with a request black-holed ($ms ms)" [ "$ms" -lt 5000 ]
wait "$prep_pid" 2>/dev/null
proxy_mode PX pass
if grep -q 'Sanitizer\|runtime error' "$RS_LOG"; then
	fail "the sanitizer reported errors in the daemon"
	grep -A20 'Sanitizer\|runtime error' "$RS_LOG" | head -40 | sed 's/^/    | /'
fi

finish
