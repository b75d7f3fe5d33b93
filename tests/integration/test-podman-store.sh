#!/usr/bin/env bash
# Issue 17: `stargz store` as podman's additional layer store.  A private
# docker-registry behind netproxy.py (its log shows every request podman and
# the store make), an eStargz image made here with `stargz convert`, our store
# mounted and listed in storage.conf's additionallayerstores (":ref"), podman
# 4.3 with private storage:
#   * `podman pull` of the eStargz image takes every layer from the store (each
#     layer's diff in podman's storage is a symlink into the store, the store
#     mounted 3 layers) and no layer blob was fetched whole: every GET of a
#     layer blob was a range read; `podman run` prints the image's files;
#   * the store's files: `info` is the layer's JSON (digests, size, compression
#     as containers/storage reads them), `blob` reads the blob's bytes by range;
#     names that are no base64 reference or no digest are not there; `use`
#     and the release (rmdir) counted, so podman warns of nothing;
#   * a file written in a container stays in its upper layer, not in the store;
#   * a gzip image is not offered by the store and pulls and runs the ordinary
#     way (its layer blobs fetched whole);
#   * a gzip + eStargz + gzip image: only the eStargz layer comes from the
#     store, the new gzip layer is downloaded, files of every layer read;
#   * the registry down for the store at pull time (its hosts.toml sends the
#     name podman pulls to a dead port): the store does not offer the layers,
#     podman downloads them and runs the image; the registry down for podman
#     too: podman fails, naming it;
#   * `podman rmi` releases the image's layers to zero uses: the store unmounts
#     them (another image's layer stays), and a pull again mounts them anew;
#   * SIGTERM: the store exits 0 and leaves no mount.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
. "$(dirname "$0")/store-lib.sh"

need_mount
need_overlay || skip "no overlayfs"
need_tools podman runc conmon skopeo jq docker-registry curl base64

registry_start_plain || finish
NETPROXY_UPSTREAM=$PLAIN_REG netproxy_start PX || finish
REG=$PX
seed_image "$PLAIN_REG" rs/busybox:gz || finish

# containers/storage names a reference's directory with standard base64,
# whose alphabet has '/': such a name is two path components and no store can
# serve it.  Pick tags whose references encode without one.
TAG=$(store_tag "$REG" rs/busybox esgz) || die "no tag gives a reference whose base64 has no '/'"
REF=$REG/rs/busybox:$TAG
REF64=$(printf '%s' "$REF" | base64 -w0)
sg convert convert --plain-http "$PLAIN_REG/rs/busybox:gz" "$PLAIN_REG/rs/busybox:$TAG"
expect_rc "stargz convert of the busybox image to eStargz" 0 convert || finish
MANIFEST=$(skopeo inspect --raw --tls-verify=false "docker://$REF")
mapfile -t LAYERS < <(jq -r '.layers[].digest' <<<"$MANIFEST")
check "the eStargz image has 3 layers, each with a TOC digest annotation" \
	[ "$(jq '[.layers[] | select(.annotations["containerd.io/snapshot/stargz/toc.digest"])] | length' <<<"$MANIFEST")" = 3 ]

# --- the store ----------------------------------------------------------------------
# localhost:PORT, the same proxy, is a registry the store cannot reach.
mkdir -p "$T/hosts/localhost:${PX##*:}"
printf 'server = "http://127.0.0.1:%s"\n' "$(free_port)" >"$T/hosts/localhost:${PX##*:}/hosts.toml"
store_start "$T/store" "$T/store-root" --plain-http --hosts-dir "$T/hosts" || finish
pass "stargz store serves $STORE_MNT"
check "the store is a FUSE mount" sh -c "findmnt -rn -o FSTYPE '$STORE_MNT' | grep -qx fuse.stargz-store"

# --- podman with the store ----------------------------------------------------------------
podman_setup
store_podman
P=$RIG/podman
printf '\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$REG" "localhost:${PX##*:}" >>"$P/registries.conf"
check "podman sees the store in its storage options" \
	sh -c "timeout 60 ${PODMAN[*]} info --format json | jq -e '.store.graphOptions[\"overlay.additionallayerstore\"] == \"$STORE_MNT:ref\"'"
: >"$PX_LOG"

podman_pull_run run1 "$REF" cat /etc/hello.txt /etc/os-release
expect_rc "podman pull + run of the eStargz image with the store" 0 run1
check "the container reads /etc/hello.txt" grep -q 'hello from rs-rig' "$T/run1.out"
check "the container's /etc/os-release is the image's" grep -qx 'PRETTY_NAME="rs-rig amd64"' "$T/run1.out"

n_mounted=$(grep -c "store: sha256:[0-9a-f]* of $REF mounted at" "$T/store.err")
check "the store mounted the image's 3 layers ($n_mounted)" [ "$n_mounted" -eq 3 ]
links=0
for d in "$P"/storage/overlay/*/diff; do
	[ -L "$d" ] || continue
	case $(readlink "$d") in
	"$STORE_MNT/$REF64/sha256:"*/diff) links=$((links + 1)) ;;
	esac
done
check "3 layers in podman's storage are the store's (diff links into it: $links)" [ "$links" -eq 3 ]
whole=0 ranged=0
for d in "${LAYERS[@]}"; do
	whole=$((whole + $(jq -c --arg p "/v2/rs/busybox/blobs/$d" \
		'select(.method == "GET" and .path == $p and .range == null)' "$PX_LOG" | wc -l)))
	ranged=$((ranged + $(jq -c --arg p "/v2/rs/busybox/blobs/$d" \
		'select(.method == "GET" and .path == $p and .range != null)' "$PX_LOG" | wc -l)))
done
check "no layer blob of the eStargz image was fetched whole ($whole whole, $ranged range reads)" \
	[ "$whole" -eq 0 -a "$ranged" -gt 0 ]
check "containers/storage told the store it uses the layers" grep -q 'store: sha256:[0-9a-f]* in use' "$T/store.err"
check "containers/storage told the store it let go of the pull's handles" \
	grep -q 'store: sha256:[0-9a-f]* released' "$T/store.err"
# A store that does not count (EROFS on `use`, rmdir) makes podman warn.
check "podman warned of nothing about the store" \
	sh -c "! grep -i 'additional layer' '$T/run1-pull.err' '$T/run1.err'"

# --- the store's files ------------------------------------------------------------------------
L0=$STORE_MNT/$REF64/${LAYERS[0]}
CONFIG=$(skopeo inspect --config --tls-verify=false "docker://$REF")
want_info=$(jq -c --arg d "${LAYERS[0]}" --argjson s "$(jq '.layers[0].size' <<<"$MANIFEST")" \
	--arg u "$(jq -r '.rootfs.diff_ids[0]' <<<"$CONFIG")" \
	'{"compressed-diff-digest": $d, "compressed-size": $s, "diff-digest": $u, "compression": 2}' <<<'{}')
got_info=$(jq -c '{"compressed-diff-digest", "compressed-size", "diff-digest", "compression"}' "$L0/info" 2>&1)
check "info is the layer as containers/storage reads it ($got_info)" [ "$got_info" = "$want_info" ]
usize=$(jq -r '.layers[0].annotations["io.containers.estargz.uncompressed-size"] // empty' <<<"$MANIFEST")
[ -n "$usize" ] && check "info's diff-size is the uncompressed-size annotation ($usize)" \
	[ "$(jq '."diff-size"' "$L0/info")" = "$usize" ]
check "blob has the blob's size" [ "$(stat -c %s "$L0/blob")" = "$(jq '.layers[0].size' <<<"$MANIFEST")" ]
curl -s -r 0-4095 "http://$PLAIN_REG/v2/rs/busybox/blobs/${LAYERS[0]}" >"$T/blob.head"
curl -s -r -51 "http://$PLAIN_REG/v2/rs/busybox/blobs/${LAYERS[0]}" >"$T/blob.tail"
check "blob's first 4 KiB are the blob's" cmp <(head -c 4096 "$L0/blob") "$T/blob.head"
check "blob's footer is the blob's" cmp <(tail -c 51 "$L0/blob") "$T/blob.tail"
check "diff is a symlink to the layer's mount under the store's root" \
	sh -c "readlink '$L0/diff' | grep -q '^$STORE_ROOT/mnt/'"
check "a name that is no base64 reference is not there" sh -c "! stat '$STORE_MNT/not+base64!' 2>/dev/null"
check "a name that is no digest is not there" sh -c "! stat '$STORE_MNT/$REF64/sha256:abc' 2>/dev/null"
check "a digest the image does not have is not there" \
	sh -c "! stat '$STORE_MNT/$REF64/sha256:$(printf %064d 0)' 2>/dev/null"

# --- a file written in a container ----------------------------------------------------------
run run2 timeout 60 "${PODMAN[@]}" run --name rs-store-w --network none --pull never "$REF" \
	sh -c 'echo written-here > /written.txt'
expect_rc "podman run writing a file" 0 run2
upper=$(find "$P/storage/overlay" -maxdepth 3 -path '*/diff/written.txt' -not -type l 2>/dev/null | head -1)
check "the written file is in the container's upper layer ($upper)" \
	sh -c "[ -n '$upper' ] && grep -qx written-here '$upper'"
check "the store's layers do not have it" \
	sh -c "! find '$STORE_ROOT/mnt' -name written.txt 2>/dev/null | grep -q ."
timeout 60 "${PODMAN[@]}" rm rs-store-w >/dev/null 2>&1

# --- a gzip image: the ordinary way ------------------------------------------------------------
GZ=$REG/rs/busybox:gz
mapfile -t GZ_LAYERS < <(skopeo inspect --raw --tls-verify=false "docker://$GZ" | jq -r '.layers[].digest')
: >"$PX_LOG"
podman_pull_run gz "$GZ" cat /etc/hello.txt
expect_rc "podman pull + run of the gzip image" 0 gz
check "the gzip image's container reads its file" grep -q 'hello from rs-rig' "$T/gz.out"
check "the store did not offer the gzip image's layers" \
	sh -c "! grep -q 'of $GZ mounted' '$T/store.err' && grep -q 'not offering.*no TOC digest' '$T/store.err'"
# Layer 1 (busybox) may be shared with nothing else; every layer of the gzip
# image podman did not already have was downloaded whole.
gz_whole=0
for d in "${GZ_LAYERS[@]}"; do
	gz_whole=$((gz_whole + $(jq -c --arg p "/v2/rs/busybox/blobs/$d" \
		'select(.method == "GET" and .path == $p and .range == null and .status == 200)' "$PX_LOG" | wc -l)))
done
check "the gzip image's layers were downloaded whole ($gz_whole of ${#GZ_LAYERS[@]})" \
	[ "$gz_whole" -eq "${#GZ_LAYERS[@]}" ]

# --- a mixed image: gzip, eStargz, gzip ----------------------------------------------------------
MIX=$T/mix
rig_rootfs_layers "$MIX" amd64 3 mixsalt
sg mixbuild build "$MIX/layer2.tar.gz" "$MIX/layer2.esgz"
expect_rc "stargz build of the mixed image's middle layer" 0 mixbuild
cp "$T/mixbuild.out" "$MIX/layer2.esgz.json"
MTAG=$(store_tag "$REG" rs/mixed 1) || die "no tag for the mixed image"
push_image "$PLAIN_REG" "rs/mixed:$MTAG" "$MIX/layer1.tar.gz" "$MIX/layer2.esgz" "$MIX/layer3.tar.gz" ||
	finish
MREF=$REG/rs/mixed:$MTAG
mapfile -t MIX_LAYERS < <(skopeo inspect --raw --tls-verify=false "docker://$MREF" | jq -r '.layers[].digest')
: >"$PX_LOG"
podman_pull_run mix "$MREF" sh -c 'cat /etc/hello.txt /etc/salt; wc -c < /usr/share/rs/data.bin'
expect_rc "podman pull + run of a gzip + eStargz + gzip image" 0 mix
check "mixed: files of every layer read" \
	sh -c "grep -q 'hello from rs-rig' '$T/mix.out' && grep -q mixsalt '$T/mix.out' && grep -qx 2097152 '$T/mix.out'"
check "mixed: the store mounted only the eStargz layer" \
	sh -c "[ \$(grep -c 'of $MREF mounted' '$T/store.err') = 1 ] && grep -q '${MIX_LAYERS[1]} of $MREF mounted' '$T/store.err'"
blob_gets() { # DIGEST: GETs of that blob without a Range header
	jq -c --arg p "/v2/rs/mixed/blobs/$1" 'select(.method == "GET" and .path == $p and .range == null)' \
		"$PX_LOG" | wc -l
}
check "mixed: the eStargz layer was not fetched whole, the new gzip layer was" \
	[ "$(blob_gets "${MIX_LAYERS[1]}")" = 0 -a "$(blob_gets "${MIX_LAYERS[2]}")" = 1 ]

# --- podman rmi: the store lets the layers go ------------------------------------------------------
run rmi timeout 60 "${PODMAN[@]}" rmi "$REF"
expect_rc "podman rmi of the eStargz image" 0 rmi
n_gone=0 n_left=0
for d in "${LAYERS[@]}"; do
	grep -q "store: $d unmounted: no image uses it" "$T/store.err" && n_gone=$((n_gone + 1))
	findmnt -rn -o TARGET | grep -qF "$STORE_ROOT/mnt/${d#sha256:}" && n_left=$((n_left + 1))
done
check "podman rmi: the store unmounted the image's 3 layers ($n_gone unmounted, $n_left still mounted)" \
	[ "$n_gone" -eq 3 -a "$n_left" -eq 0 ]
check "podman rmi: the mixed image's layer stays mounted" \
	sh -c "findmnt -rn -o TARGET | grep -qF '$STORE_ROOT/mnt/${MIX_LAYERS[1]#sha256:}'"
check "podman warned of nothing about the store at rmi" sh -c "! grep -i 'additional layer' '$T/rmi.err'"
podman_pull_run again "$REF" cat /etc/hello.txt
expect_rc "podman pull + run of the image again after rmi" 0 again
check "again: the container reads its file" grep -q 'hello from rs-rig' "$T/again.out"
n_mounted=$(grep -c "store: sha256:[0-9a-f]* of $REF mounted at" "$T/store.err")
check "again: the store mounted the 3 layers anew ($n_mounted mounts in all)" [ "$n_mounted" -eq 6 ]

# --- the registry down for the store at pull time -----------------------------------------------
# podman pulls through localhost:PORT (the same proxy); the store's hosts.toml
# sends that name to a port nobody listens on.  The store does not offer the
# layers (connection refused: no wait), podman downloads them whole.
# (With range reads black-holed instead, podman 4.3 hangs by itself: for an
# eStargz layer the store does not offer, containers/storage 1.43 reads the
# TOC by range, with no timeout, before it finds partial pulls disabled.)
seed_image --salt down "$PLAIN_REG" rs/down:gz || finish
DREG=localhost:${PX##*:}
DTAG=$(store_tag "$DREG" rs/down esgz) || die "no tag for the rs/down image"
sg dconv convert --plain-http "$PLAIN_REG/rs/down:gz" "$PLAIN_REG/rs/down:$DTAG"
expect_rc "stargz convert of a salted image" 0 dconv || finish
DREF=$DREG/rs/down:$DTAG
mapfile -t D_LAYERS < <(skopeo inspect --raw --tls-verify=false "docker://$DREF" | jq -r '.layers[].digest')
: >"$PX_LOG"
podman_pull_run down "$DREF" cat /etc/salt
expect_rc "registry down for the store: podman pull + run still succeed" 0 down
check "registry down for the store: the container reads its file" grep -qx down "$T/down.out"
n_down=0 n_whole=0
for d in "${D_LAYERS[@]:1}"; do
	grep -q "not offering $d: .*$DREF" "$T/store.err" && n_down=$((n_down + 1))
	n_whole=$((n_whole + $(jq -c --arg p "/v2/rs/down/blobs/$d" \
		'select(.method == "GET" and .path == $p and .range == null and .status == 200)' "$PX_LOG" | wc -l)))
done
check "registry down for the store: it did not offer the salted layers ($n_down of 2)" [ "$n_down" -eq 2 ]
check "registry down for the store: podman downloaded them whole ($n_whole of 2)" [ "$n_whole" -eq 2 ]
check "registry down for the store: nothing of them is mounted" \
	sh -c "! findmnt -rn -o TARGET | grep -qF -e '${D_LAYERS[1]#sha256:}' -e '${D_LAYERS[2]#sha256:}'"
# The registry down for podman too: podman fails, and says why.
proxy_mode PX refuse
run downall timeout 120 "${PODMAN[@]}" pull -q "$REG/rs/busybox:gz"
proxy_mode PX pass
check "registry down for everyone: podman pull fails ($RC) naming the registry" \
	sh -c "[ $RC -ne 0 ] && [ $RC -ne 124 ] && grep -q '$REG' '$T/downall.err'"

# --- stop ----------------------------------------------------------------------------------------
timeout 60 "${PODMAN[@]}" rm -af >/dev/null 2>&1
store_stop
check "SIGTERM: the store exits 0 ($RC)" [ "$RC" -eq 0 ]
check "SIGTERM: the store is unmounted" sh -c "! mountpoint -q '$STORE_MNT'"
check "SIGTERM: no layer stays mounted" sh -c "! findmnt -rn -o TARGET | grep -qF '$STORE_ROOT/mnt/'"
finish
