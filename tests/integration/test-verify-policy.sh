#!/usr/bin/env bash
# The daemon's verification policy ([verify] in docs/daemon.md): an eStargz
# layer pushed without its TOC digest annotation is not mounted lazily by
# default; containerd downloads it, the container runs right, and
# ROOT/snapshots/<id>/status.json says which layer and why. With
# [verify.hosts."REGISTRY"] allow_unverified = true (or --allow-unverified)
# the same layer is lazy. Env: RS_DAEMON, STARGZ.
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

# Three eStargz layers, none annotated (no LAYER.json beside them).
SRC=$T/src
rig_rootfs_layers "$SRC" amd64 3 unverified
for i in 1 2 3; do
	gzip -dc "$SRC/layer$i.tar.gz" >"$SRC/layer$i.tar"
	sg "build$i" build "$SRC/layer$i.tar" "$SRC/layer$i.esgz"
	expect_rc "stargz build of layer $i" 0 "build$i" || finish
done
push_image "$REG" rs/unverified:1 "$SRC/layer1.esgz" "$SRC/layer2.esgz" "$SRC/layer3.esgz" || finish
REF=$REG/rs/unverified:1
skopeo inspect --raw --tls-verify=false "docker://$REF" >"$T/manifest.json"
check "the pushed layers carry no TOC digest annotation" \
	[ "$(jq '[.layers[].annotations["containerd.io/snapshot/stargz/toc.digest"] // empty] | length' "$T/manifest.json")" -eq 0 ]
layers=$(jq -r '.layers[].digest' "$T/manifest.json")

run_check() { # NAME: ctr run of $REF reading a file of each layer
	run "$1" timeout 60 "${CTR[@]}" run --rm --snapshotter stargz "$REF" "rs-$1" \
		sh -c 'cat /etc/hello.txt /etc/salt; wc -c < /usr/share/rs/data.bin'
	expect_rc "$1: ctr run of the unverified image" 0 "$1"
	check "$1: files of every layer read right" \
		sh -c "grep -q 'hello from rs-rig' '$T/$1.out' && grep -qx unverified '$T/$1.out' && grep -qx 2097152 '$T/$1.out'"
}

# --- default: refused, downloaded, status.json says why -------------------------------
daemon_start --unmount-on-exit || finish
ctrd_with_stargz || finish
rpull pull1 "$REF" --snapshotter stargz
expect_rc "rpull of the unverified image (default policy)" 0 pull1
check "no layer is lazy under the default policy" [ "$(grep -c ' lazy' "$T/pull1.out")" -eq 0 ]
n_fuse=$(awk -v r="$RS_ROOT/snapshots" 'index($5, r) == 1 && $0 ~ / - fuse/' /proc/self/mountinfo | wc -l)
check "no FUSE mount under the default policy ($n_fuse)" [ "$n_fuse" -eq 0 ]
n_status=0
for d in $layers; do
	f=$(grep -l "\"$d\"" "$RS_ROOT"/snapshots/*/status.json 2>/dev/null | head -1)
	if [ -z "$f" ]; then
		fail "no status.json names layer $d"
		continue
	fi
	if jq -e --arg d "$d" '.lazy == false and .digest == $d and (.reason | test("TOC digest")) and (.reason | test("allow_unverified"))' "$f" >/dev/null; then
		n_status=$((n_status + 1))
	else
		fail "status.json of $d: $(cat "$f")"
	fi
	check "status.json of $d is beside the fs dir, not in it" [ -d "$(dirname "$f")/fs" ]
done
check "every refused layer has a status.json with lazy false, its digest and the reason ($n_status of 3)" \
	[ "$n_status" -eq 3 ]
run_check run1
# A fresh containerd and daemon for the second policy: containerd's snapshot
# records of the first would name snapshots the new root does not hold.
containerd_stop
daemon_kill TERM
rm -rf "$RIG/containerd" "$RS_ROOT"

# --- allowed for this registry: lazy ----------------------------------------------------
cat >"$T/allow.toml" <<EOF
[verify]
allow_unverified = false
[verify.hosts."$REG"]
allow_unverified = true
[verify.hosts."registry.invalid"]
allow_unverified = false
EOF
daemon_start --config "$T/allow.toml" || finish
ctrd_with_stargz || finish
rpull pull2 "$REF" --snapshotter stargz
expect_rc "rpull of the unverified image with its registry allowed" 0 pull2
check "every layer is lazy with [verify.hosts.\"$REG\"] allow_unverified ($(grep -c ' lazy' "$T/pull2.out") of 3)" \
	[ "$(grep -c ' lazy' "$T/pull2.out")" -eq 3 ]
n=$(find "$RS_ROOT/snapshots" -maxdepth 2 -name status.json | wc -l)
check "no status.json when every layer is lazy ($n)" [ "$n" -eq 0 ]
run_check run2
daemon_kill TERM
check "the daemon exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
if grep -q 'Sanitizer\|runtime error' "$RS_LOG"; then
	fail "the sanitizer reported errors in the daemon"
	grep -A20 'Sanitizer\|runtime error' "$RS_LOG" | head -40 | sed 's/^/    | /'
fi

finish
