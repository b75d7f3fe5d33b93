#!/usr/bin/env bash
# Credentials stay with their registry (issue 14, docs/registry-transport.md
# "Where credentials go"), with the real CLI against docker-registry and
# fake_registry.py traps, each logging every request and its Authorization:
#   * redirect: the token registry behind a proxy that redirects blob GETs to
#     a storage server on another port, which answers 401 with a bearer realm
#     of its own: `stargz inspect`, `convert` and a lazy `stargz mount
#     --toc-digest` fail naming the storage host; storage saw no
#     Authorization, its realm no request at all;
#   * an https registry whose realm is http://: no credentials reach the
#     realm, the error says plain HTTP;
#   * hosts.toml skip_verify = true for the registry, a realm with an
#     untrusted certificate: the token request fails TLS (the realm gets no
#     request); with the CA in hosts.toml instead, the realm is reached;
#   * STARGZ_LOG_LEVEL=debug inspect, convert and mount (with --cache-dir)
#     from the token registry, and (with containerd) the daemon at
#     --log-level debug serving a lazy `stargz rpull`: no password, Basic
#     value, issued token or Authorization header in any output, in
#     status.json, the cache dir, the daemon's log or any file under its root.
# Env: STARGZ, RS_DAEMON (default build/src/cmd/remote-snapshotter).  Skips
# (77) without docker-registry, skopeo, python3-jwt, FUSE; the daemon part
# without containerd.  Everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
need_mount
need_tools docker-registry skopeo curl jq tar openssl timeout

TMO=60
sgx() { # NAME [ENV=V...] -- ARGS...: the CLI, bounded
	local name=$1 envs=()
	shift
	while [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	run "$name" env "${envs[@]}" timeout "$TMO" "$STARGZ" "$@"
}

# expect_refused DESC NAME REGEX: exit 1 or 3 and stderr matches REGEX.
expect_refused() {
	local desc=$1 name=$2 re=$3
	if [ "$RC" -ge 124 ] || [ "$RC" -eq 0 ] || [ "$RC" -eq 2 ]; then
		fail "$desc: exit $RC, want an error (1 or 3)"
		show_file "$T/$name.out" stdout
		show_file "$T/$name.err" stderr
		return 1
	fi
	if grep -Eq -- "$re" "$T/$name.err"; then
		pass "$desc (exit $RC: $(head -c 300 "$T/$name.err" | tr '\n' ' '))"
	else
		fail "$desc: exit $RC, but stderr does not match /$re/"
		show_file "$T/$name.err" stderr
	fi
}

# no_auth_in LOG DESC: not one request in fake_registry.py's LOG carried an
# Authorization header.
no_auth_in() {
	local lg=$1 desc=$2 n
	n=$(jq -c 'select(.authorization != null)' "$lg" | wc -l)
	if [ "$n" -eq 0 ]; then
		pass "$desc: $(wc -l <"$lg") request(s), none with an Authorization header"
	else
		fail "$desc: $n request(s) carried an Authorization header"
		show_file "$lg"
	fi
}

registry_start_token --token-log "$T/tokens.issued" || die "token registry"
R=$TOKEN_REG
BASIC=$(printf '%s:%s' "$TOKEN_USER" "$TOKEN_PASS" | base64 -w0)

# --- the image -------------------------------------------------------------------------
S=$T/src
mkdir -p "$S/d"
"$RIG_PY" - "$S/d" <<'PY' || die "source files"
import os, random, sys
r = random.Random(1414)
for i in range(1, 4):
    with open(os.path.join(sys.argv[1], "f%d" % i), "wb") as f:
        f.write(r.randbytes((200 + 30 * i) << 10))
PY
tar -C "$S" --sort=name --numeric-owner --owner=0 --group=0 -cf "$T/l.tar" d || die "l.tar"
"$STARGZ" build "$T/l.tar" "$T/l.esgz" >"$T/l.esgz.json" || die "stargz build"
DG=$(jq -r .digest "$T/l.esgz.json")
TOC=$(jq -r .tocDigest "$T/l.esgz.json")
DOCKER_CONFIG=$TOKEN_DOCKER_CONFIG REGISTRY_AUTH_FILE=$TOKEN_DOCKER_CONFIG/config.json \
	push_image "$R" rs/creds:v1 "$T/l.esgz" || die "push rs/creds:v1"

# --- 1: a redirect to storage that asks for credentials --------------------------------
fake_registry_start EVIL_REALM --token-realm || die "realm trap"
fake_registry_start STORE --challenge "http://$EVIL_REALM/token" || die "storage trap"
fake_registry_start PROXY --upstream "http://$R" --redirect-blobs --redirect-to "http://$STORE" ||
	die "redirecting proxy"
DC=$T/dc-proxy
rig_docker_config "$DC" "$PROXY" "$TOKEN_USER" "$TOKEN_PASS"
: >"$TOKEN_LOG"

sgx redir-inspect DOCKER_CONFIG="$DC" -- inspect --plain-http "$PROXY/rs/creds:v1"
expect_refused "redirect: inspect fails naming the storage host" redir-inspect "$STORE"
sgx redir-convert DOCKER_CONFIG="$DC" -- convert --plain-http "$PROXY/rs/creds:v1" "$PROXY/rs/creds:esgz"
expect_refused "redirect: convert fails naming the storage host" redir-convert "$STORE"
M=$T/m-redir
mkdir -p "$M"
sgx redir-mount DOCKER_CONFIG="$DC" -- mount --plain-http --toc-digest "$TOC" --no-prefetch \
	--no-background-fetch --timeout 10 "$PROXY/rs/creds:v1" "$DG" "$M"
expect_refused "redirect: a lazy mount fails naming the storage host" redir-mount "$STORE"
mountpoint -q "$M" && { fail "redirect: $M is still mounted"; umount -l "$M"; }

[ "$(wc -l <"$STORE_LOG")" -ge 1 ] && pass "redirect: the storage server was reached" ||
	fail "redirect: the storage server got no request (the test tests nothing)"
no_auth_in "$STORE_LOG" "redirect: storage"
if [ -s "$EVIL_REALM_LOG" ]; then
	fail "redirect: storage's realm was asked for a token"
	show_file "$EVIL_REALM_LOG"
else
	pass "redirect: storage's realm got no request"
fi
[ "$(token_requests 200)" -ge 1 ] &&
	pass "redirect: the registry's own realm issued tokens ($(token_requests 200))" ||
	fail "redirect: the registry's own token server issued nothing"

# --- 2: an https registry with an http:// realm ----------------------------------------
rig_make_ca "$T/ca" || die "test CA"
CERT=$T/ca/server.crt:$T/ca/server.key
fake_registry_start HTTP_REALM --token-realm || die "http realm"
fake_registry_start TLS_REG --tls "$CERT" --challenge "http://$HTTP_REALM/token" || die "tls registry"
H=$T/hosts-ca
mkdir -p "$H/$TLS_REG"
printf 'server = "https://%s"\n\n[host."https://%s"]\n  ca = "%s"\n' "$TLS_REG" "$TLS_REG" \
	"$T/ca/ca.crt" >"$H/$TLS_REG/hosts.toml"
DC2=$T/dc-tls
rig_docker_config "$DC2" "$TLS_REG" "$TOKEN_USER" "$TOKEN_PASS"
sgx http-realm DOCKER_CONFIG="$DC2" -- inspect --hosts-dir "$H" "$TLS_REG/rs/creds:v1"
expect_refused "http realm: inspect fails, saying plain HTTP" http-realm "plain HTTP"
no_auth_in "$HTTP_REALM_LOG" "http realm"

# --- 3: skip_verify for the registry, an untrusted realm ------------------------------
fake_registry_start TLS_REALM --tls "$CERT" --token-realm || die "tls realm"
fake_registry_start SKIP_REG --tls "$CERT" --challenge "https://$TLS_REALM/token" || die "skip registry"
HS=$T/hosts-skip
mkdir -p "$HS/$SKIP_REG"
printf 'server = "https://%s"\n\n[host."https://%s"]\n  skip_verify = true\n' "$SKIP_REG" \
	"$SKIP_REG" >"$HS/$SKIP_REG/hosts.toml"
DC3=$T/dc-skip
rig_docker_config "$DC3" "$SKIP_REG" "$TOKEN_USER" "$TOKEN_PASS"
sgx skip-realm DOCKER_CONFIG="$DC3" -- inspect --hosts-dir "$HS" "$SKIP_REG/rs/creds:v1"
expect_refused "skip_verify registry: the token request fails TLS" skip-realm "TLS error talking to $TLS_REALM"
if [ -s "$TLS_REALM_LOG" ]; then
	fail "skip_verify registry: the untrusted realm got a request"
	show_file "$TLS_REALM_LOG"
else
	pass "skip_verify registry: the untrusted realm got no request"
fi
# The registry's configured CA does count for the realm.
HC=$T/hosts-skip-ca
mkdir -p "$HC/$SKIP_REG"
printf 'server = "https://%s"\n\n[host."https://%s"]\n  ca = "%s"\n' "$SKIP_REG" "$SKIP_REG" \
	"$T/ca/ca.crt" >"$HC/$SKIP_REG/hosts.toml"
sgx ca-realm DOCKER_CONFIG="$DC3" -- inspect --hosts-dir "$HC" "$SKIP_REG/rs/creds:v1"
if [ "$(jq -c 'select(.path | startswith("/token"))' "$TLS_REALM_LOG" | wc -l)" -ge 1 ]; then
	pass "registry with ca: the realm (same CA) was asked for a token"
else
	fail "registry with ca: the realm got no token request"
	show_file "$T/ca-realm.err" stderr
fi

# --- 4: debug logs and files hold no secret -------------------------------------------
DBG=(STARGZ_LOG_LEVEL=debug DOCKER_CONFIG="$TOKEN_DOCKER_CONFIG")
sgx dbg-inspect "${DBG[@]}" -- inspect --plain-http "$R/rs/creds:v1"
expect_rc "debug: inspect from the token registry" 0 dbg-inspect
sgx dbg-convert "${DBG[@]}" -- convert --plain-http "$R/rs/creds:v1" "$R/rs/creds:esgz"
expect_rc "debug: convert on the token registry" 0 dbg-convert
M=$T/m-dbg
C=$T/cache-dbg
mkdir -p "$M"
export STARGZ_LOG_LEVEL=debug
DOCKER_CONFIG=$TOKEN_DOCKER_CONFIG mount_start dbg-mount --plain-http --toc-digest "$TOC" \
	--cache-dir "$C" --timeout 20 "$R/rs/creds:v1" "$DG" "$M" &&
	{
		cmp -s "$M/d/f2" "$S/d/f2" && pass "debug: a file of the lazy mount reads right" ||
			fail "debug: d/f2 of the mount differs from the source"
		wait_status "$M" '.fetched_bytes > 0' 20
		cp "$M/$STATUS_REL" "$T/dbg-status.json" 2>/dev/null
		mount_stop "$MOUNT_PID"
		[ "$RC" = 0 ] && pass "debug: mount stopped (exit 0)" || fail "debug: mount exit $RC"
	}
unset STARGZ_LOG_LEVEL

# --- 5: the daemon at log level debug, a lazy pull through containerd -------------------
RS_DAEMON=${RS_DAEMON:-$REPO/build/src/cmd/remote-snapshotter}
DAEMON_FILES=()
if [ -x "$RS_DAEMON" ] && command -v containerd >/dev/null && command -v ctr >/dev/null; then
	. "$TESTS_DIR/daemon-lib.sh"
	# --unmount-on-exit: the find below must not stat a kept mount with no
	# server (it waits for the next daemon, for ever).
	if DOCKER_CONFIG=$TOKEN_DOCKER_CONFIG daemon_start --log-level debug --unmount-on-exit &&
		ctrd_with_stargz; then
		DOCKER_CONFIG=$TOKEN_DOCKER_CONFIG rpull dmn-pull "$R/rs/creds:v1" --snapshotter stargz
		expect_rc "daemon: stargz rpull from the token registry" 0 dmn-pull
		grep -q ' lazy' "$T/dmn-pull.out" && pass "daemon: the layer was mounted lazily" ||
			{ fail "daemon: the layer was not lazy"; show_file "$T/dmn-pull.out"; }
		daemon_kill TERM
		# The root's own files, not what its FUSE mounts serve.
		mapfile -t DAEMON_FILES < <(find "$RS_ROOT" -xdev -type f 2>/dev/null)
		DAEMON_FILES+=("$RS_LOG")
	fi
else
	log "daemon section skipped: no $RS_DAEMON or no containerd/ctr"
fi
[ -s "$T/tokens.issued" ] || fail "no token was issued at all (the grep below tests nothing)"
SECRETS=("$TOKEN_PASS" "$BASIC" "fake-realm-token-")
while read -r tok; do SECRETS+=("$tok"); done <"$T/tokens.issued"
leaks=0
for f in "$T"/*.out "$T"/*.err "$T/dbg-status.json" $(find "$C" -type f 2>/dev/null) \
	"${DAEMON_FILES[@]}"; do
	[ -f "$f" ] || continue
	for s in "${SECRETS[@]}" "Authorization" "Bearer " "Basic "; do
		if grep -aqF -- "$s" "$f"; then
			fail "$(basename "$f") holds a secret or an auth header (${s:0:12}...)"
			leaks=$((leaks + 1))
		fi
	done
done
# A sanitizer build reports on stderr and may still exit 1 or 3.
if grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T"/*.err 2>/dev/null; then
	fail "a sanitizer reported (files above)"
else
	pass "no sanitizer report in any stderr"
fi
[ "$leaks" = 0 ] &&
	pass "no password, Basic value, token or Authorization in any output, status.json, cache file, daemon log or file under the daemon's root (${#SECRETS[@]} secrets, $(find "$C" -type f 2>/dev/null | wc -l) cache files, ${#DAEMON_FILES[@]} daemon files)"

finish
