#!/usr/bin/env bash
# The registry test rig itself (registry-lib.sh, token_server.py,
# fake_registry.py), checked with existing tools only - no code of ours:
#   * plain docker-registry: skopeo push (seed_image) + skopeo inspect;
#   * HTTPS + htpasswd: skopeo with the test CA (--cert-dir) and --creds works,
#     without credentials or without the CA it fails;
#   * token auth: skopeo with credentials works and the token server logged a
#     token request; bad credentials fail (401 from the token server);
#     anonymous pull with --anonymous-pull; an ES256 key and an x5c header
#     work too;
#   * a multi-platform index and a docker schema 2 image can be seeded;
#   * containerd (ctr images pull + ctr run) and podman (pull + run) run the
#     busybox image from the plain, TLS and token registries;
#   * fake_registry.py: each fault is visible to skopeo / curl.
# Everything listens on 127.0.0.1 only.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
need_root
need_tools docker-registry skopeo curl openssl jq

# --- plain ------------------------------------------------------------------------------
registry_start_plain || die "plain registry"
pass "plain docker-registry up on $PLAIN_REG"
seed_image "$PLAIN_REG" rs/busybox:v1 && pass "skopeo pushed a 3-layer busybox image to the plain registry"
run insp-plain skopeo inspect --tls-verify=false "docker://$PLAIN_REG/rs/busybox:v1"
if expect_rc "skopeo inspect (plain)" 0 insp-plain; then
	n=$(jq '.Layers | length' "$T/insp-plain.out")
	[ "$n" = 3 ] && pass "plain: image has 3 layers" || fail "plain: image has $n layers, want 3"
fi
run insp-plain-raw skopeo inspect --raw --tls-verify=false "docker://$PLAIN_REG/rs/busybox:v1"
jq -e '.mediaType == "application/vnd.oci.image.manifest.v1+json" and
	([.layers[].mediaType] | unique == ["application/vnd.oci.image.layer.v1.tar+gzip"])' \
	"$T/insp-plain-raw.out" >/dev/null && pass "plain: OCI manifest with gzip layers" ||
	{ fail "plain: unexpected manifest"; show_file "$T/insp-plain-raw.out"; }

seed_image --multi "$PLAIN_REG" rs/multi:v1 && pass "skopeo pushed a linux/amd64+linux/arm64 index"
run insp-multi skopeo inspect --raw --tls-verify=false "docker://$PLAIN_REG/rs/multi:v1"
jq -e '.mediaType == "application/vnd.oci.image.index.v1+json" and
	([.manifests[].platform.architecture] | sort == ["amd64", "arm64"])' "$T/insp-multi.out" >/dev/null &&
	pass "multi: index lists amd64 and arm64" || { fail "multi: not an amd64+arm64 index"; show_file "$T/insp-multi.out"; }
run insp-arm skopeo inspect --tls-verify=false --override-arch arm64 "docker://$PLAIN_REG/rs/multi:v1"
[ "$(jq -r .Architecture "$T/insp-arm.out" 2>/dev/null)" = arm64 ] && pass "multi: arm64 image resolves" ||
	fail "multi: arm64 image does not resolve"

seed_image --v2s2 "$PLAIN_REG" rs/v2s2:v1 && pass "skopeo pushed a docker schema 2 image"
run insp-v2s2 skopeo inspect --raw --tls-verify=false "docker://$PLAIN_REG/rs/v2s2:v1"
jq -e '.mediaType == "application/vnd.docker.distribution.manifest.v2+json" and
	([.layers[].mediaType] | unique == ["application/vnd.docker.image.rootfs.diff.tar.gzip"])' \
	"$T/insp-v2s2.out" >/dev/null && pass "v2s2: docker schema 2 manifest with docker gzip layers" ||
	{ fail "v2s2: unexpected manifest"; show_file "$T/insp-v2s2.out"; }

# --- TLS + htpasswd -----------------------------------------------------------------------
registry_start_tls_htpasswd || die "TLS registry"
pass "HTTPS+htpasswd docker-registry up on $TLS_REG"
openssl verify -CAfile "$TLS_CA" "$RIG/tls-ca/server.crt" >/dev/null 2>&1 &&
	pass "tls: server certificate verifies against the test CA" || fail "tls: server cert does not verify"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS_CA" "https://$TLS_REG/v2/")
[ "$code" = 401 ] && pass "tls: /v2/ over HTTPS with the CA asks for auth (401)" || fail "tls: /v2/ gave $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS_CA" -u "$TLS_USER:$TLS_PASS" "https://$TLS_REG/v2/")
[ "$code" = 200 ] && pass "tls: /v2/ with basic auth (200)" || fail "tls: /v2/ with basic auth gave $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TLS_CA" "https://localhost:${TLS_REG##*:}/v2/")
[ "$code" = 401 ] && pass "tls: certificate is valid for localhost too" || fail "tls: localhost gave $code"
run curl-noca curl -sS -o /dev/null "https://$TLS_REG/v2/"
[ "$RC" -ne 0 ] && pass "tls: curl without the CA refuses the certificate (exit $RC)" || fail "tls: curl without CA succeeded"
jq -e --arg h "$TLS_REG" '.auths[$h].auth | @base64d | test(":")' "$TLS_DOCKER_CONFIG/config.json" >/dev/null &&
	pass "tls: docker config.json has base64 user:pass for $TLS_REG" || fail "tls: bad config.json"
grep -q "^server = \"https://$TLS_REG\"" "$TLS_HOSTS_DIR/$TLS_REG/hosts.toml" &&
	[ -f "$TLS_HOSTS_DIR/$TLS_REG/ca.crt" ] && pass "tls: certs.d hosts dir $TLS_HOSTS_DIR/$TLS_REG" ||
	fail "tls: hosts dir incomplete"

seed_image --cert-dir "$TLS_CERT_DIR" --creds "$TLS_USER:$TLS_PASS" "$TLS_REG" rs/busybox:v1 &&
	pass "skopeo pushed to the TLS registry with --cert-dir and --creds"
run insp-tls skopeo inspect --cert-dir "$TLS_CERT_DIR" --creds "$TLS_USER:$TLS_PASS" "docker://$TLS_REG/rs/busybox:v1"
expect_rc "skopeo inspect (TLS, CA + creds)" 0 insp-tls
run insp-tls-cfg env DOCKER_CONFIG="$TLS_DOCKER_CONFIG" REGISTRY_AUTH_FILE="$TLS_DOCKER_CONFIG/config.json" \
	skopeo inspect --cert-dir "$TLS_CERT_DIR" "docker://$TLS_REG/rs/busybox:v1"
expect_rc "skopeo inspect (TLS, credentials from the docker config.json)" 0 insp-tls-cfg
run insp-tls-nocreds skopeo inspect --cert-dir "$TLS_CERT_DIR" "docker://$TLS_REG/rs/busybox:v1"
expect_rc "skopeo inspect (TLS, no creds) fails" 1 insp-tls-nocreds
run insp-tls-badcreds skopeo inspect --cert-dir "$TLS_CERT_DIR" --creds "$TLS_USER:wrong" "docker://$TLS_REG/rs/busybox:v1"
expect_rc "skopeo inspect (TLS, wrong password) fails" 1 insp-tls-badcreds
mkdir -p "$T/empty-certs"
run insp-tls-noca skopeo inspect --cert-dir "$T/empty-certs" --creds "$TLS_USER:$TLS_PASS" "docker://$TLS_REG/rs/busybox:v1"
if [ "$RC" -ne 0 ] && grep -qi 'certificate' "$T/insp-tls-noca.err"; then
	pass "skopeo inspect (TLS, without the CA) fails on the certificate"
else
	fail "skopeo inspect without the CA: exit $RC"
	show_file "$T/insp-tls-noca.err"
fi

# --- token auth ---------------------------------------------------------------------------
registry_start_token || die "token registry"
pass "token-auth docker-registry up on $TOKEN_REG, token server on $TOKEN_SERVER"
hdr=$(curl -s -D - -o /dev/null "http://$TOKEN_REG/v2/" | tr -d '\r' | grep -i '^www-authenticate:')
[[ $hdr == *"Bearer realm=\"http://$TOKEN_SERVER/token\""* ]] && pass "token: registry challenges with Bearer realm=$TOKEN_SERVER" ||
	fail "token: challenge is '$hdr'"
seed_image --creds "$TOKEN_USER:$TOKEN_PASS" "$TOKEN_REG" rs/busybox:v1 &&
	pass "skopeo pushed to the token registry with credentials"
n0=$(token_requests 200)
[ "$n0" -ge 1 ] && pass "token: server logged $n0 granted token request(s) for the push" || fail "token: no token request logged"
jq -e 'select(.result == 200) | .access[] | select(.name == "rs/busybox" and (.actions | index("push")))' \
	"$TOKEN_LOG" >/dev/null && pass "token: a push token for repository:rs/busybox was issued" ||
	fail "token: no push token in the log"
run insp-tok skopeo inspect --tls-verify=false --creds "$TOKEN_USER:$TOKEN_PASS" "docker://$TOKEN_REG/rs/busybox:v1"
expect_rc "skopeo inspect (token, good creds)" 0 insp-tok
[ "$(token_requests 200)" -gt "$n0" ] && pass "token: inspect fetched a token" || fail "token: inspect fetched no token"
run insp-tok-bad skopeo inspect --tls-verify=false --creds "$TOKEN_USER:nope" "docker://$TOKEN_REG/rs/busybox:v1"
expect_rc "skopeo inspect (token, bad creds) fails" 1 insp-tok-bad
[ "$(token_requests 401)" -ge 1 ] && pass "token: server answered 401 to the bad credentials" ||
	fail "token: no 401 logged"
if grep -q "nope" "$TOKEN_LOG"; then fail "token: the password appears in the token log"; else pass "token: passwords are not logged"; fi
run insp-tok-anon skopeo inspect --tls-verify=false "docker://$TOKEN_REG/rs/busybox:v1"
expect_rc "skopeo inspect (token, anonymous, not allowed) fails" 1 insp-tok-anon
body=$(curl -s -u "$TOKEN_USER:wrong" "http://$TOKEN_SERVER/token?service=rs-test-registry&scope=repository:rs/busybox:pull")
jq -e '.errors[0].code == "UNAUTHORIZED"' <<<"$body" >/dev/null && pass "token: bad credentials get a JSON error" ||
	fail "token: bad-credentials body: $body"
# The JWT itself: header kid is the libtrust fingerprint, claims as distribution wants.
tok=$(curl -s -u "$TOKEN_USER:$TOKEN_PASS" "http://$TOKEN_SERVER/token?service=rs-test-registry&scope=repository:rs/busybox:pull" | jq -r .token)
jwt_part() { cut -d. -f"$1" <<<"$tok" | tr '_-' '/+' | awk '{ while (length($0) % 4) $0 = $0 "="; print }' | base64 -d 2>/dev/null; }
jwt_part 1 | jq -e '.alg == "RS256" and (.kid | test("^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$"))' >/dev/null &&
	pass "token: JWT header has alg RS256 and a libtrust kid" || fail "token: JWT header $(jwt_part 1)"
jwt_part 2 | jq -e '.iss == "rs-test-issuer" and .aud == "rs-test-registry" and .exp > .iat and .nbf <= .iat
	and (.jti | length > 0) and .access == [{"type": "repository", "name": "rs/busybox", "actions": ["pull"]}]' \
	>/dev/null && pass "token: JWT claims iss/aud/exp/nbf/iat/jti/access" || fail "token: JWT claims $(jwt_part 2)"

# Variants: anonymous pull allowed; ES256 key with an x5c header instead of kid.
rig_stop "$TOKEN_PID"
rig_stop "$TOKEN_SERVER_PID"
TOKEN_SERVER=
registry_start_token --anonymous-pull --x5c --ec || die "token registry (anonymous, ES256, x5c)"
seed_image --layers 1 --creds "$TOKEN_USER:$TOKEN_PASS" "$TOKEN_REG" rs/busybox:v1 &&
	pass "token (ES256, x5c header): push with credentials"
run insp-tok-anon2 skopeo inspect --tls-verify=false "docker://$TOKEN_REG/rs/busybox:v1"
expect_rc "token (--anonymous-pull): anonymous skopeo inspect works" 0 insp-tok-anon2
jq -e 'select(.user == null and .result == 200) | .access[] | select(.actions == ["pull"])' "$TOKEN_LOG" >/dev/null &&
	pass "token (--anonymous-pull): anonymous token is pull-only" || fail "token: no anonymous pull-only token logged"
run push-anon skopeo copy --dest-tls-verify=false "oci:$RIG/img-rs_busybox-v1:v1" "docker://$TOKEN_REG/rs/anon:v1"
expect_rc "token (--anonymous-pull): anonymous push is refused" 1 push-anon
rig_stop "$TOKEN_PID"
rig_stop "$TOKEN_SERVER_PID"
TOKEN_SERVER=
registry_start_token || die "token registry (again)"
seed_image --creds "$TOKEN_USER:$TOKEN_PASS" "$TOKEN_REG" rs/busybox:v1 || die "token seed"

# --- fake registries ----------------------------------------------------------------------
fake_registry_start F_HTML --html || die "fake --html"
run f-html skopeo inspect --tls-verify=false "docker://$F_HTML/rs/busybox:v1"
[ "$RC" -ne 0 ] && pass "fake --html: skopeo fails (exit $RC)" || fail "fake --html: skopeo succeeded"
fake_registry_start F_TAMPER --upstream "http://$PLAIN_REG" --tamper-manifest || die "fake --tamper-manifest"
mdg=$(curl -s -D - -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	"http://$F_TAMPER/v2/rs/busybox/manifests/v1" | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}')
got=sha256:$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	"http://$F_TAMPER/v2/rs/busybox/manifests/v1" | sha256sum | cut -d' ' -f1)
[ -n "$mdg" ] && [ "$mdg" != "$got" ] && pass "fake --tamper-manifest: body no longer matches Docker-Content-Digest" ||
	fail "fake --tamper-manifest: header '$mdg', body $got"
# containers/image checks the digest when the manifest is asked for by digest.
run f-tamper skopeo inspect --tls-verify=false "docker://$F_TAMPER/rs/busybox@$mdg"
if [ "$RC" -ne 0 ] && grep -qi 'digest' "$T/f-tamper.err"; then
	pass "fake --tamper-manifest: skopeo (by digest) reports the digest mismatch"
else
	fail "fake --tamper-manifest: skopeo exit $RC"
	show_file "$T/f-tamper.err"
fi
fake_registry_start F_MT --upstream "http://$PLAIN_REG" --manifest-media-type application/vnd.example.unknown+json ||
	die "fake --manifest-media-type"
run f-mt skopeo inspect --raw --tls-verify=false "docker://$F_MT/rs/busybox:v1"
jq -e '.mediaType == "application/vnd.example.unknown+json"' "$T/f-mt.out" >/dev/null &&
	pass "fake --manifest-media-type: manifest served with the unknown media type" || fail "fake --manifest-media-type"
run f-mt2 skopeo inspect --tls-verify=false "docker://$F_MT/rs/busybox:v1"
[ "$RC" -ne 0 ] && pass "fake --manifest-media-type: skopeo refuses it (exit $RC)" || fail "fake --manifest-media-type: skopeo accepted it"
fake_registry_start F_TRUNC --upstream "http://$PLAIN_REG" --truncate blobs || die "fake --truncate"
run f-trunc skopeo copy --retry-times 0 --src-tls-verify=false "docker://$F_TRUNC/rs/busybox:v1" "dir:$T/f-trunc.dir"
[ "$RC" -ne 0 ] && pass "fake --truncate blobs: skopeo copy fails (exit $RC)" || fail "fake --truncate: skopeo copy succeeded"
fake_registry_start F_LOOP --upstream "http://$PLAIN_REG" --redirect-loop || die "fake --redirect-loop"
run f-loop skopeo copy --retry-times 0 --src-tls-verify=false "docker://$F_LOOP/rs/busybox:v1" "dir:$T/f-loop.dir"
if [ "$RC" -ne 0 ] && grep -qi 'redirect' "$T/f-loop.err"; then
	pass "fake --redirect-loop: skopeo copy stops on the redirects"
else
	fail "fake --redirect-loop: skopeo exit $RC"
	show_file "$T/f-loop.err"
fi
fake_registry_start F_REDIR --upstream "http://$PLAIN_REG" --redirect-blobs || die "fake --redirect-blobs"
run f-redir skopeo copy --src-tls-verify=false "docker://$F_REDIR/rs/busybox:v1" "dir:$T/f-redir.dir"
expect_rc "fake --redirect-blobs: skopeo copy follows the redirect to storage" 0 f-redir &&
	[ "$(jq -s '[.[] | select(.status == 307)] | length' "$F_REDIR_LOG")" -ge 3 ] &&
	pass "fake --redirect-blobs: blobs came through /_storage" 
fake_registry_start F_RANGE --upstream "http://$PLAIN_REG" --ignore-range || die "fake --ignore-range"
blob=$(jq -r '.layers[0].digest' "$T/insp-plain-raw.out")
code=$(curl -s -o "$T/range.out" -w '%{http_code}' -r 0-9 "http://$F_RANGE/v2/rs/busybox/blobs/$blob")
direct=$(curl -s -o /dev/null -w '%{http_code}' -r 0-9 "http://$PLAIN_REG/v2/rs/busybox/blobs/$blob")
if [ "$direct" = 206 ] && [ "$code" = 200 ] && [ "$(size_of "$T/range.out")" -gt 10 ]; then
	pass "fake --ignore-range: docker-registry answers Range with 206, the fake with 200 and the whole blob"
else
	fail "fake --ignore-range: registry $direct, fake $code ($(size_of "$T/range.out") bytes)"
fi
code=$(curl -s -o "$T/trunc.out" -w '%{http_code} %{size_download}' "http://$F_TRUNC/v2/rs/busybox/blobs/$blob")
want=$(curl -s -o /dev/null -w '%{size_download}' "http://$PLAIN_REG/v2/rs/busybox/blobs/$blob")
got=${code#* }
[ "${code% *}" = 200 ] && [ "$got" -lt "$want" ] && pass "fake --truncate: body cut at $got of $want bytes" ||
	fail "fake --truncate: $code, want fewer than $want bytes"

# --- containerd -----------------------------------------------------------------------------
expect_hello() { # NAME DESC ARCH
	if [ "$RC" -eq 0 ] && grep -qx "hello from rs-rig $3" "$T/$1.out"; then
		pass "$2"
	else
		fail "$2: exit $RC"
		show_file "$T/$1.out" stdout
		show_file "$T/$1.err" stderr
	fi
}
ARCH=$("$PYTHON" -c 'import os; m = os.uname().machine
print({"x86_64": "amd64", "aarch64": "arm64"}.get(m, m))')

if command -v containerd >/dev/null && command -v ctr >/dev/null && command -v runc >/dev/null; then
	containerd_start || die "containerd"
	CTR_PULL_ARGS=(--plain-http)
	ctr_pull_run ctr-plain "$PLAIN_REG/rs/busybox:v1" /bin/cat /etc/hello.txt
	expect_hello ctr-plain "containerd: ctr pull --plain-http + ctr run (plain registry)" "$ARCH"
	CTR_PULL_ARGS=(--plain-http)
	ctr_pull_run ctr-multi "$PLAIN_REG/rs/multi:v1" /bin/cat /etc/hello.txt
	expect_hello ctr-multi "containerd: pulls and runs this host's platform from the index" "$ARCH"
	ctr_pull_run ctr-v2s2 "$PLAIN_REG/rs/v2s2:v1" /bin/sh -c 'cat /etc/hello.txt'
	expect_hello ctr-v2s2 "containerd: docker schema 2 image runs" "$ARCH"
	CTR_PULL_ARGS=(--hosts-dir "$TLS_HOSTS_DIR" --user "$TLS_USER:$TLS_PASS")
	ctr_pull_run ctr-tls "$TLS_REG/rs/busybox:v1" /bin/cat /etc/hello.txt
	expect_hello ctr-tls "containerd: ctr pull --hosts-dir (certs.d hosts.toml) --user + run (TLS registry)" "$ARCH"
	CTR_PULL_ARGS=(--plain-http --user "$TOKEN_USER:$TOKEN_PASS")
	ctr_pull_run ctr-tok "$TOKEN_REG/rs/busybox:v1" /bin/cat /etc/hello.txt
	expect_hello ctr-tok "containerd: ctr pull --user + run (token registry)" "$ARCH"
	jq -e 'select(.method == "POST" and .result == 200)' "$TOKEN_LOG" >/dev/null &&
		pass "token: containerd got its token by the OAuth2 POST form" ||
		fail "token: no POST token request from containerd"
	containerd_stop
else
	log "containerd/ctr/runc not installed: containerd checks not run"
	SKIPPED_PARTS+=" containerd"
fi

# --- podman ---------------------------------------------------------------------------------
if command -v podman >/dev/null && command -v runc >/dev/null && command -v conmon >/dev/null; then
	podman_setup
	PODMAN_PULL_ARGS=()
	podman_pull_run pod-plain "$PLAIN_REG/rs/busybox:v1" /bin/cat /etc/hello.txt
	expect_hello pod-plain "podman: pull (registries.conf insecure) + run (plain registry)" "$ARCH"
	PODMAN_PULL_ARGS=(--cert-dir "$TLS_CERT_DIR" --creds "$TLS_USER:$TLS_PASS")
	podman_pull_run pod-tls "$TLS_REG/rs/busybox:v1" /bin/cat /etc/hello.txt
	expect_hello pod-tls "podman: pull --cert-dir --creds + run (TLS registry)" "$ARCH"
	PODMAN_PULL_ARGS=(--creds "$TOKEN_USER:$TOKEN_PASS")
	podman_pull_run pod-tok "$TOKEN_REG/rs/busybox:v1" /bin/cat /etc/hello.txt
	expect_hello pod-tok "podman: pull --creds + run (token registry)" "$ARCH"
	PODMAN_PULL_ARGS=(--arch arm64)
	run pod-arm timeout 120 "${PODMAN[@]}" pull -q --arch arm64 "$PLAIN_REG/rs/multi:v1"
	expect_rc "podman: pull --arch arm64 from the index" 0 pod-arm
else
	log "podman/runc/conmon not installed: podman checks not run"
	SKIPPED_PARTS+=" podman"
fi
[ -n "${SKIPPED_PARTS:-}" ] && log "not run (tools missing):${SKIPPED_PARTS}"
finish
