#!/usr/bin/env bash
# Issue 17, credentials: `stargz store` against the token-auth docker-registry
# with podman's own auth.json.  The store has no docker config (HOME is empty,
# no DOCKER_CONFIG) and finds the file where podman writes it
# (REGISTRY_AUTH_FILE):
#   * before `podman login`, a layer of the eStargz image is not offered (the
#     store cannot read the registry) and the log says why;
#   * `podman login` writes the file; then the layer is there, and
#     `podman pull` + `podman run` of the image take all 3 layers from the store
#     (no layer blob fetched whole) and read the image's files; the store asked
#     the token server for tokens;
#   * `--auth-file` names another file.
# Skips (77) without python3-jwt (the token server).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
. "$(dirname "$0")/store-lib.sh"

need_mount
need_overlay || skip "no overlayfs"
need_tools podman runc conmon skopeo jq docker-registry curl base64

registry_start_token || finish
REG=$TOKEN_REG
seed_image --creds "$TOKEN_USER:$TOKEN_PASS" "$REG" rs/busybox:gz || finish
TAG=$(store_tag "$REG" rs/busybox esgz) || die "no tag gives a reference whose base64 has no '/'"
REF=$REG/rs/busybox:$TAG
REF64=$(printf '%s' "$REF" | base64 -w0)
DOCKER_CONFIG=$TOKEN_DOCKER_CONFIG sg convert convert --plain-http "$REG/rs/busybox:gz" "$REF"
expect_rc "stargz convert of the busybox image to eStargz (token auth)" 0 convert || finish
mapfile -t LAYERS < <(skopeo inspect --raw --tls-verify=false --creds "$TOKEN_USER:$TOKEN_PASS" \
	"docker://$REF" | jq -r '.layers[].digest')
[ "${#LAYERS[@]}" = 3 ] || die "the eStargz image has ${#LAYERS[@]} layers, not 3"

# The store and podman share the auth file; nothing else holds credentials.
mkdir -p "$T/home"
export HOME=$T/home
unset DOCKER_CONFIG XDG_CONFIG_HOME
export REGISTRY_AUTH_FILE=$T/auth.json
store_start "$T/store" "$T/store-root" --plain-http || finish

check "before podman login, the store does not offer a layer" \
	sh -c "! stat '$STORE_MNT/$REF64/${LAYERS[0]}' >/dev/null 2>&1"
check "the store says why (the registry wants credentials)" \
	grep -Eiq "not offering ${LAYERS[0]}:.*(401|auth|credential|denied)" "$T/store.err"

podman_setup
store_podman
run login timeout 60 "${PODMAN[@]}" login --tls-verify=false -u "$TOKEN_USER" -p "$TOKEN_PASS" "$REG"
expect_rc "podman login writes REGISTRY_AUTH_FILE" 0 login
check "the auth file holds the registry" jq -e --arg r "$REG" '.auths[$r].auth' "$REGISTRY_AUTH_FILE"
: >"$TOKEN_LOG"
check "after podman login, the store offers the layer (info names it)" \
	sh -c "jq -e --arg d '${LAYERS[0]}' '.\"compressed-diff-digest\" == \$d' '$STORE_MNT/$REF64/${LAYERS[0]}/info'"
check "the store asked the token server for a token with the file's credentials" \
	[ "$(jq -c --arg u "$TOKEN_USER" 'select(.result == 200 and .user == $u)' "$TOKEN_LOG" | wc -l)" -ge 1 ]

podman_pull_run run1 "$REF" cat /etc/hello.txt /etc/os-release
expect_rc "podman pull + run of the eStargz image from the token registry" 0 run1
check "the container reads its files" \
	sh -c "grep -q 'hello from rs-rig' '$T/run1.out' && grep -q 'PRETTY_NAME=\"rs-rig' '$T/run1.out'"
n_mounted=$(grep -c "store: sha256:[0-9a-f]* of $REF mounted at" "$T/store.err")
check "the store mounted the image's 3 layers ($n_mounted)" [ "$n_mounted" -eq 3 ]
whole=0
for d in "${LAYERS[@]}"; do
	whole=$((whole + $(grep -c "GET /v2/rs/busybox/blobs/$d HTTP/1.1\" 200 " "$TOKEN_DIR/registry.log")))
done
check "no layer blob was fetched whole (registry access log: $whole)" [ "$whole" -eq 0 ]

# --auth-file: another file, the default ones not read.
timeout 60 "${PODMAN[@]}" rm -af >/dev/null 2>&1
store_stop
cp "$REGISTRY_AUTH_FILE" "$T/other-auth.json"
rm -f "$REGISTRY_AUTH_FILE"
rm -rf "$T/store-root"
store_start "$T/store" "$T/store-root" --plain-http --auth-file "$T/other-auth.json" || finish
check "--auth-file: the store reads the file it names" \
	sh -c "jq -e --arg d '${LAYERS[1]}' '.\"compressed-diff-digest\" == \$d' '$STORE_MNT/$REF64/${LAYERS[1]}/info'"
store_stop
check "SIGTERM: the store exits 0 ($RC)" [ "$RC" -eq 0 ]
finish
