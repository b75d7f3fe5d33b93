#!/usr/bin/env bash
# Issue 3 end to end: `stargz convert` / `stargz inspect` against real
# registries (Debian's docker-registry: plain HTTP, HTTPS + htpasswd via a
# certs.d hosts dir and DOCKER_CONFIG, token auth with token_server.py), and
# the result checked with other tools:
#   * skopeo sees both annotations on every layer; every layer blob (skopeo
#     copy to dir:) passes `stargz verify --toc-digest <annotation>`, its
#     uncompressed size matches the annotation and the config's diff_id;
#   * `stargz inspect` reports every layer as eStargz with a matching TOC;
#   * containerd (ctr images pull + ctr run) and podman pull and run it;
#   * multi-platform (--all-platforms, --platform), docker schema 2 sources
#     (kept docker-typed, or --oci), zstd:chunked, oci: layouts on either
#     side, re-conversion keeps layers, cross-repository mount;
#   * bad input, each a clear error that names no secret: unknown media types,
#     manifest/layer digest mismatch (registry storage tampered), wrong
#     credentials ("authentication failed for HOST"), a registry answering
#     HTML, truncated bodies, a redirect loop, a server ignoring Range, TLS
#     errors naming the host, refused connections, bad references.
# Everything listens on 127.0.0.1 only.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
need_root
need_stargz
"$STARGZ" convert --help >/dev/null 2>&1 || skip "stargz convert not available yet"
"$STARGZ" inspect --help >/dev/null 2>&1 || skip "stargz inspect not available yet"
need_tools docker-registry skopeo curl openssl jq gzip

TOC_ANN=containerd.io/snapshot/stargz/toc.digest
USIZE_ANN=io.containers.estargz.uncompressed-size
MT_DOCKER_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
MT_DOCKER_LAYER=application/vnd.docker.image.rootfs.diff.tar.gzip
MT_OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_OCI_INDEX=application/vnd.oci.image.index.v1+json
MT_OCI_LAYER=application/vnd.oci.image.layer.v1.tar+gzip
MT_OCI_ZSTD=application/vnd.oci.image.layer.v1.tar+zstd
SG_TIMEOUT=${SG_TIMEOUT:-120}
ARCH=$("$PYTHON" -c 'import os; m = os.uname().machine
print({"x86_64": "amd64", "aarch64": "arm64"}.get(m, m))')

# No credentials or host config of this machine may leak into the test.
mkdir -p "$T/docker-none" "$T/hosts-none"
echo '{"auths": {}}' >"$T/docker-none/config.json"
export DOCKER_CONFIG=$T/docker-none
SECRETS=()

# sgx NAME ARGS...: the CLI with "${SG_ENV[@]}" in its environment, bounded.
SG_ENV=()
sgx() {
	local name=$1
	shift
	run "$name" env "${SG_ENV[@]}" timeout "$SG_TIMEOUT" "$STARGZ" "$@"
}

# no_secrets NAME: neither output of NAME shows a password.
no_secrets() {
	local s
	for s in "${SECRETS[@]}"; do
		if grep -qF -- "$s" "$T/$1.out" "$T/$1.err" 2>/dev/null; then
			fail "$1: a password appears in the output"
			return 1
		fi
	done
	return 0
}

# expect_fail DESC NAME REGEX [FIXED...]: $RC is an error exit (not usage,
# not a crash, not a time-out), stderr matches REGEX (grep -Ei) and contains
# each FIXED string, and no password shows.  FAIL_NOT=REGEX (reset after each
# call): stderr must not match it.
expect_fail() {
	local desc=$1 name=$2 re=$3 f
	shift 3
	no_secrets "$name" || return 1
	if [ "$RC" -ge 124 ]; then
		if [ "$RC" -eq 124 ]; then fail "$desc: hung (killed after ${SG_TIMEOUT}s)"; else fail "$desc: crashed with exit $RC"; fi
		show_file "$T/$name.err" stderr
		return 1
	fi
	if [ "$RC" -eq 0 ] || [ "$RC" -eq 2 ]; then
		fail "$desc: exit $RC, want an error (1 or 3)"
		show_file "$T/$name.out" stdout
		show_file "$T/$name.err" stderr
		return 1
	fi
	if ! grep -Eqi -- "$re" "$T/$name.err"; then
		fail "$desc: exit $RC but stderr does not match /$re/"
		show_file "$T/$name.err" stderr
		return 1
	fi
	if [ -n "${FAIL_NOT:-}" ] && grep -Eqi -- "$FAIL_NOT" "$T/$name.err"; then
		fail "$desc: exit $RC but stderr also matches /$FAIL_NOT/ (a misleading error)"
		show_file "$T/$name.err" stderr
		FAIL_NOT=
		return 1
	fi
	FAIL_NOT=
	for f in "$@"; do
		if ! grep -qF -- "$f" "$T/$name.err"; then
			fail "$desc: exit $RC but stderr does not name '$f'"
			show_file "$T/$name.err" stderr
			return 1
		fi
	done
	pass "$desc (exit $RC: $(head -n 1 "$T/$name.err" | cut -c1-160))"
}

# expect_ok DESC NAME: exit 0, no password in the output.
expect_ok() {
	no_secrets "$2" && expect_rc "$1" 0 "$2"
}

# --- registries and source images ---------------------------------------------------------
registry_start_plain || die "plain registry"
registry_start_tls_htpasswd || die "TLS registry"
registry_start_token || die "token registry"
SECRETS+=("$TLS_PASS" "$TOKEN_PASS")
P=$PLAIN_REG
seed_image "$P" rs/busybox:v1 || die "seed plain"
seed_image --multi "$P" rs/multi:v1 || die "seed multi"
seed_image --v2s2 "$P" rs/v2s2:v1 || die "seed v2s2"
seed_image --cert-dir "$TLS_CERT_DIR" --creds "$TLS_USER:$TLS_PASS" "$TLS_REG" rs/busybox:v1 || die "seed TLS"
seed_image --creds "$TOKEN_USER:$TOKEN_PASS" "$TOKEN_REG" rs/busybox:v1 || die "seed token"
pass "registries up (plain $P, TLS $TLS_REG, token $TOKEN_REG) and seeded with skopeo"

# expected_run ARCH SRCLAYOUT: what `cat /etc/hello.txt; sha256sum data.bin` prints.
expected_run() {
	echo "hello from rs-rig $1"
	echo "$(sha256_of "$2.src/l3/usr/share/rs/data.bin")  /usr/share/rs/data.bin"
}
RUN_CMD=(/bin/sh -c 'cat /etc/hello.txt; sha256sum /usr/share/rs/data.bin')

if command -v containerd >/dev/null && command -v ctr >/dev/null && command -v runc >/dev/null; then
	containerd_start || die "containerd"
	HAVE_CTR=true
else
	HAVE_CTR=false
	log "containerd/ctr/runc missing: no ctr pull/run checks"
fi
if command -v podman >/dev/null && command -v conmon >/dev/null && command -v runc >/dev/null; then
	podman_setup
	HAVE_PODMAN=true
else
	HAVE_PODMAN=false
	log "podman/conmon/runc missing: no podman checks"
fi

# Access to a registry, per tool; set by access_plain / access_tls / access_token.
# SKI: skopeo inspect flags, SKC: skopeo copy (source) flags.
# shellcheck disable=SC2034
access_plain() {
	SKI=(--tls-verify=false) SKC=(--src-tls-verify=false)
	SG_ARGS=(--plain-http) SG_ENV=()
	CTR_PULL_ARGS=(--plain-http) PODMAN_PULL_ARGS=(--tls-verify=false)
}
access_tls() {
	SKI=(--cert-dir "$TLS_CERT_DIR" --creds "$TLS_USER:$TLS_PASS")
	SKC=(--src-cert-dir "$TLS_CERT_DIR" --src-creds "$TLS_USER:$TLS_PASS")
	SG_ARGS=(--hosts-dir "$TLS_HOSTS_DIR") SG_ENV=(DOCKER_CONFIG="$TLS_DOCKER_CONFIG")
	CTR_PULL_ARGS=(--hosts-dir "$TLS_HOSTS_DIR" --user "$TLS_USER:$TLS_PASS")
	PODMAN_PULL_ARGS=(--cert-dir "$TLS_CERT_DIR" --creds "$TLS_USER:$TLS_PASS")
}
access_token() {
	SKI=(--tls-verify=false --creds "$TOKEN_USER:$TOKEN_PASS")
	SKC=(--src-tls-verify=false --src-creds "$TOKEN_USER:$TOKEN_PASS")
	SG_ARGS=(--plain-http) SG_ENV=(DOCKER_CONFIG="$TOKEN_DOCKER_CONFIG")
	CTR_PULL_ARGS=(--plain-http --user "$TOKEN_USER:$TOKEN_PASS")
	PODMAN_PULL_ARGS=(--tls-verify=false --creds "$TOKEN_USER:$TOKEN_PASS")
}

# check_image LABEL REF ARCH SRC_LAYOUT [FORMAT] [RUN]: REF (on the registry
# that the current access_* describes) is a converted image for linux/ARCH.
# FORMAT estargz (default) or zstdchunked; RUN "run" (default) pulls and
# runs it with ctr and podman (only for this host's ARCH), "norun" does not.
check_image() {
	local label=$1 ref=$2 arch=$3 src=$4 format=${5:-estargz} runit=${6:-run}
	local d=$T/$label.dir ov=(--override-arch "$arch" --override-os linux) i n
	rm -rf "$d"
	run "$label-copy" skopeo copy "${SKC[@]}" "${ov[@]}" "docker://$ref" "dir:$d"
	expect_rc "$label: skopeo copy docker://$ref dir:" 0 "$label-copy" || return 1
	local m=$d/manifest.json
	n=$(jq '.layers | length' "$m")
	if jq -e --arg a "$TOC_ANN" --arg u "$USIZE_ANN" '.layers | length > 0 and all(
		(.annotations[$a] // "" | test("^sha256:[0-9a-f]{64}$")) and
		(.annotations[$u] // "" | test("^[0-9]+$")))' "$m" >/dev/null; then
		pass "$label: all $n layers carry $TOC_ANN and $USIZE_ANN"
	else
		fail "$label: layers without the eStargz annotations"
		show_file "$m" manifest.json
		return 1
	fi
	local cfg=$d/$(jq -r '.config.digest | sub("^sha256:"; "")' "$m")
	[ "$(jq -r .architecture "$cfg")" = "$arch" ] && pass "$label: config architecture $arch" ||
		fail "$label: config architecture $(jq -r .architecture "$cfg"), want $arch"
	local ok=true dg toc usz blob got did want_did mt
	for ((i = 0; i < n; i++)); do
		dg=$(jq -r ".layers[$i].digest" "$m")
		mt=$(jq -r ".layers[$i].mediaType" "$m")
		toc=$(jq -r --arg a "$TOC_ANN" ".layers[$i].annotations[\$a]" "$m")
		usz=$(jq -r --arg u "$USIZE_ANN" ".layers[$i].annotations[\$u]" "$m")
		blob=$d/${dg#sha256:}
		sg "$label-verify$i" verify --toc-digest "$toc" "$blob"
		expect_rc "$label: layer $i ($mt) passes stargz verify --toc-digest <annotation>" 0 "$label-verify$i" || ok=false
		if [ "$format" = zstdchunked ]; then
			[ "$mt" = "$MT_OCI_ZSTD" ] || { fail "$label: layer $i media type $mt, want $MT_OCI_ZSTD"; ok=false; }
			zstd -q -dc "$blob" >"$T/$label.layer" 2>/dev/null
		else
			case $mt in
			"$MT_OCI_LAYER" | "$MT_DOCKER_LAYER") ;;
			*) fail "$label: layer $i media type $mt, want a gzip layer"; ok=false ;;
			esac
			gzip -dc "$blob" >"$T/$label.layer" 2>/dev/null
		fi
		got=$(size_of "$T/$label.layer")
		did=sha256:$(sha256_of "$T/$label.layer")
		want_did=$(jq -r ".rootfs.diff_ids[$i]" "$cfg")
		[ "$got" = "$usz" ] || { fail "$label: layer $i uncompressed size $got, annotation $usz"; ok=false; }
		[ "$did" = "$want_did" ] || { fail "$label: layer $i diff_id $did, config says $want_did"; ok=false; }
		rm -f "$T/$label.layer"
	done
	$ok && pass "$label: uncompressed sizes and config diff_ids match every layer"

	sgx "$label-inspect" inspect "${SG_ARGS[@]}" --platform "linux/$arch" "$ref"
	if expect_ok "$label: stargz inspect" "$label-inspect"; then
		local want_fmt=estargz
		[ "$format" = zstdchunked ] && want_fmt=zstd
		if jq -e --arg f "$want_fmt" --argjson n "$n" '(.layers | length == $n) and (.layers | all(
			(.format | ascii_downcase | gsub("[^a-z]"; "") | startswith($f)) and .tocDigestMatches == true))' \
			"$T/$label-inspect.out" >/dev/null; then
			pass "$label: stargz inspect reports all $n layers as $format with matching TOC digests"
		else
			fail "$label: stargz inspect does not report every layer as $format"
			jq -c '.layers[] | {format, tocDigestMatches, tocDigest, tocDigestAnnotation}' "$T/$label-inspect.out" 2>&1 |
				head -n 10 | sed 's/^/    | /'
		fi
	fi

	[ "$runit" = run ] && [ "$arch" = "$ARCH" ] || return 0
	expected_run "$arch" "$src" >"$T/$label.want"
	if $HAVE_CTR; then
		ctr_pull_run "$label-ctr" "$ref" "${RUN_CMD[@]}"
		if [ "$RC" -eq 0 ] && cmp -s "$T/$label.want" "$T/$label-ctr.out"; then
			pass "$label: containerd pulls and runs it (ctr images pull + ctr run)"
		else
			fail "$label: ctr pull/run: exit $RC"
			show_file "$T/$label-ctr.out" stdout
			show_file "$T/$label-ctr.err" stderr
		fi
	fi
	if $HAVE_PODMAN; then
		podman_pull_run "$label-podman" "$ref" "${RUN_CMD[@]}"
		if [ "$RC" -eq 0 ] && cmp -s "$T/$label.want" "$T/$label-podman.out"; then
			pass "$label: podman pulls and runs it"
		else
			fail "$label: podman pull/run: exit $RC"
			show_file "$T/$label-podman.out" stdout
			show_file "$T/$label-podman.err" stderr
		fi
	fi
}

# conv_json NAME FILTER: jq -e FILTER on NAME's stdout (the convert summary).
conv_json() {
	jq -e "$2" "$T/$1.out" >/dev/null 2>&1
}

SRC_BB=$RIG/img-rs_busybox-v1

# --- plain -> plain -------------------------------------------------------------------------
access_plain
sgx src-inspect inspect --plain-http "$P/rs/busybox:v1"
if expect_ok "plain: stargz inspect of the gzip source" src-inspect; then
	jq -e '(.layers | length == 3) and (.layers | all(.format | ascii_downcase != "estargz"))' \
		"$T/src-inspect.out" >/dev/null && pass "plain: inspect reports the source layers as not eStargz" ||
		{ fail "plain: inspect calls a plain gzip layer eStargz"; jq -c '.layers[]?' "$T/src-inspect.out" | head -n 5; }
fi
sgx conv-plain convert --plain-http "$P/rs/busybox:v1" "$P/rs/busybox:esgz"
if expect_ok "plain: stargz convert --plain-http $P/rs/busybox:v1 -> :esgz" conv-plain; then
	conv_json conv-plain '.converted == 3 and .kept == 0 and .images == 1' &&
		pass "plain: summary says 3 converted, 0 kept" || { fail "plain: summary $(cat "$T/conv-plain.out")"; }
	d=$(jq -r .digest "$T/conv-plain.out")
	run tagdg skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$P/rs/busybox:esgz"
	[ "$(cat "$T/tagdg.out")" = "$d" ] && pass "plain: the tag names the manifest digest convert printed" ||
		fail "plain: tag -> $(cat "$T/tagdg.out"), convert printed $d"
	check_image plain "$P/rs/busybox:esgz" "$ARCH" "$SRC_BB"
	# Converting the result again keeps every layer and yields the same manifest.
	sgx conv-again convert --plain-http "$P/rs/busybox:esgz" "$P/rs/busybox:esgz2"
	if expect_ok "plain: converting the eStargz image again" conv-again; then
		conv_json conv-again '.converted == 0 and .kept == 3' && pass "plain: re-conversion keeps all 3 layers" ||
			fail "plain: re-conversion summary $(cat "$T/conv-again.out")"
		[ "$(jq -r .digest "$T/conv-again.out")" = "$d" ] && pass "plain: re-conversion gives the same manifest digest" ||
			fail "plain: re-conversion changed the manifest digest"
	fi
	# Kept layers pushed to another repository of the same registry: mount.
	sgx conv-mount convert --plain-http "$P/rs/busybox:esgz" "$P/rs/copy:esgz"
	if expect_ok "plain: convert into another repository of the same registry" conv-mount; then
		if grep -q 'POST /v2/rs/copy/blobs/uploads/?[^ ]*mount=' "$PLAIN_DIR/registry.log"; then
			pass "plain: blobs were cross-repository mounted (POST ...?mount=)"
		else
			fail "plain: no cross-repository mount request in the registry log"
		fi
	fi
fi

# Deterministic: the same source converted twice gives the same digest.
sgx conv-det convert --plain-http "$P/rs/busybox:v1" "$P/rs/busybox:esgz-det"
expect_ok "plain: second conversion of the same source" conv-det &&
	{ [ "$(jq -r .digest "$T/conv-det.out")" = "$(jq -r .digest "$T/conv-plain.out" 2>/dev/null)" ] &&
		pass "plain: conversion is deterministic (same manifest digest)" || fail "plain: conversion is not deterministic"; }

# --- zstd:chunked ---------------------------------------------------------------------------
sgx conv-zstd convert --plain-http --zstdchunked "$P/rs/busybox:v1" "$P/rs/busybox:zstd"
expect_ok "plain: stargz convert --zstdchunked" conv-zstd &&
	check_image zstd "$P/rs/busybox:zstd" "$ARCH" "$SRC_BB" zstdchunked

# --- oci: layouts on either side ----------------------------------------------------------------
sgx conv-tolayout convert --plain-http "$P/rs/busybox:v1" "oci:$T/layout:esgz"
if expect_ok "registry -> oci:DIR:TAG" conv-tolayout; then
	run lay-insp skopeo inspect --raw "oci:$T/layout:esgz"
	jq -e --arg a "$TOC_ANN" '.layers | length == 3 and all(.annotations[$a] != null)' "$T/lay-insp.out" >/dev/null &&
		pass "registry -> oci: skopeo reads the layout, layers annotated" || fail "registry -> oci: bad layout"
	sgx conv-fromlayout convert --plain-http "oci:$T/layout:esgz" "$P/rs/fromlayout:esgz"
	expect_ok "oci:DIR:TAG -> registry" conv-fromlayout &&
		{ conv_json conv-fromlayout '.kept == 3 and .converted == 0' && pass "oci -> registry: all 3 layers kept" ||
			fail "oci -> registry: summary $(cat "$T/conv-fromlayout.out")"; }
	check_image fromlayout "$P/rs/fromlayout:esgz" "$ARCH" "$SRC_BB" estargz norun
fi

# --- multi-platform ---------------------------------------------------------------------------------
sgx conv-multi convert --plain-http --all-platforms "$P/rs/multi:v1" "$P/rs/multi:esgz"
if expect_ok "multi: stargz convert --all-platforms" conv-multi; then
	# 6 layers, 5 distinct (layer 1 is the same in both images).
	conv_json conv-multi '.images == 2 and .converted >= 5 and .converted <= 6' &&
		pass "multi: 2 images, $(jq .converted "$T/conv-multi.out") layers converted" ||
		fail "multi: summary $(cat "$T/conv-multi.out")"
	run multi-raw skopeo inspect --raw --tls-verify=false "docker://$P/rs/multi:esgz"
	jq -e --arg i "$MT_OCI_INDEX" '(.mediaType == $i or .mediaType ==
		"application/vnd.docker.distribution.manifest.list.v2+json") and
		([.manifests[].platform | "\(.os)/\(.architecture)"] | sort == ["linux/amd64", "linux/arm64"])' \
		"$T/multi-raw.out" >/dev/null && pass "multi: result is an index of linux/amd64 and linux/arm64" ||
		{ fail "multi: result is not a 2-platform index"; show_file "$T/multi-raw.out"; }
	check_image multi-amd64 "$P/rs/multi:esgz" amd64 "$RIG/img-rs_multi-v1.amd64" estargz \
		"$([ "$ARCH" = amd64 ] && echo run || echo norun)"
	check_image multi-arm64 "$P/rs/multi:esgz" arm64 "$RIG/img-rs_multi-v1.arm64" estargz \
		"$([ "$ARCH" = arm64 ] && echo run || echo norun)"
	if $HAVE_PODMAN; then
		run multi-podman-arm timeout 120 "${PODMAN[@]}" pull -q --tls-verify=false --arch arm64 "$P/rs/multi:esgz"
		expect_rc "multi: podman pull --arch arm64 of the converted index" 0 multi-podman-arm
	fi
fi
sgx conv-arm convert --plain-http --platform linux/arm64 "$P/rs/multi:v1" "$P/rs/multi:arm64-only"
if expect_ok "multi: stargz convert --platform linux/arm64" conv-arm; then
	run arm-raw skopeo inspect --raw --tls-verify=false "docker://$P/rs/multi:arm64-only"
	if jq -e '.mediaType == "application/vnd.oci.image.manifest.v1+json" or (.manifests | length == 1)' \
		"$T/arm-raw.out" >/dev/null; then
		pass "multi: --platform linux/arm64 writes one image"
	else
		fail "multi: --platform linux/arm64 wrote $(jq -c '[.manifests[]?.platform]' "$T/arm-raw.out")"
	fi
	check_image arm-only "$P/rs/multi:arm64-only" arm64 "$RIG/img-rs_multi-v1.arm64" estargz norun
fi

# --- docker schema 2 source ------------------------------------------------------------------------
sgx conv-v2s2 convert --plain-http "$P/rs/v2s2:v1" "$P/rs/v2s2:esgz"
if expect_ok "v2s2: stargz convert of a docker schema 2 image" conv-v2s2; then
	run v2s2-raw skopeo inspect --raw --tls-verify=false "docker://$P/rs/v2s2:esgz"
	jq -e --arg m "$MT_DOCKER_MANIFEST" --arg l "$MT_DOCKER_LAYER" \
		'.mediaType == $m and (.layers | all(.mediaType == $l))' "$T/v2s2-raw.out" >/dev/null &&
		pass "v2s2: result keeps docker media types" || { fail "v2s2: media types changed without --oci"; show_file "$T/v2s2-raw.out"; }
	check_image v2s2 "$P/rs/v2s2:esgz" "$ARCH" "$RIG/img-rs_v2s2-v1"
fi
sgx conv-v2s2-oci convert --plain-http --oci "$P/rs/v2s2:v1" "$P/rs/v2s2:esgz-oci"
if expect_ok "v2s2: stargz convert --oci" conv-v2s2-oci; then
	run v2s2o-raw skopeo inspect --raw --tls-verify=false "docker://$P/rs/v2s2:esgz-oci"
	jq -e --arg m "$MT_OCI_MANIFEST" --arg l "$MT_OCI_LAYER" \
		'.mediaType == $m and (.layers | all(.mediaType == $l)) and
		.config.mediaType == "application/vnd.oci.image.config.v1+json"' "$T/v2s2o-raw.out" >/dev/null &&
		pass "v2s2 --oci: OCI manifest, config and layer media types" || { fail "v2s2 --oci: media types"; show_file "$T/v2s2o-raw.out"; }
	check_image v2s2-oci "$P/rs/v2s2:esgz-oci" "$ARCH" "$RIG/img-rs_v2s2-v1" estargz norun
fi

# --- TLS + htpasswd (hosts dir + DOCKER_CONFIG) ---------------------------------------------------
access_tls
sgx conv-tls convert --hosts-dir "$TLS_HOSTS_DIR" "$TLS_REG/rs/busybox:v1" "$TLS_REG/rs/busybox:esgz"
expect_ok "tls: stargz convert --hosts-dir (CA from hosts.toml) with DOCKER_CONFIG credentials" conv-tls &&
	check_image tls "$TLS_REG/rs/busybox:esgz" "$ARCH" "$RIG/img-rs_busybox-v1"

# The same registry described by a hosts.toml with only the server and its CA
# at the top level (no [host] table).
mkdir -p "$T/hosts-top/$TLS_REG"
cp "$TLS_CA" "$T/hosts-top/$TLS_REG/ca.crt"
printf 'server = "https://%s"\nca = "%s"\n' "$TLS_REG" "$T/hosts-top/$TLS_REG/ca.crt" >"$T/hosts-top/$TLS_REG/hosts.toml"
sgx tls-top-conv convert --hosts-dir "$T/hosts-top" "$TLS_REG/rs/busybox:v1" "$TLS_REG/rs/busybox:esgz-top"
if expect_ok "tls: convert with a hosts.toml that sets ca at the top level (server only)" tls-top-conv; then
	sgx tls-top inspect --hosts-dir "$T/hosts-top" "$TLS_REG/rs/busybox:esgz-top"
	expect_ok "tls: inspect with the top-level-ca hosts.toml" tls-top &&
		{ jq -e '.layers | length == 3 and all(.format == "estargz" and .tocDigestMatches == true)' \
			"$T/tls-top.out" >/dev/null && pass "tls: (top-level ca) layers reported as eStargz" ||
			fail "tls: (top-level ca) inspect does not report eStargz layers"; }
fi

# --- token auth -------------------------------------------------------------------------------------
access_token
: >"$TOKEN_LOG"
sgx conv-token convert --plain-http "$TOKEN_REG/rs/busybox:v1" "$TOKEN_REG/rs/busybox:esgz"
if expect_ok "token: stargz convert with DOCKER_CONFIG credentials (bearer tokens)" conv-token; then
	ntok=$(jq -c 'select(.result == 200 and .user == "'"$TOKEN_USER"'")' "$TOKEN_LOG" | wc -l)
	nall=$(token_requests)
	[ "$ntok" -ge 1 ] && pass "token: $ntok token(s) issued to $TOKEN_USER for the conversion" ||
		fail "token: no token issued to $TOKEN_USER"
	jq -e 'select(.result == 200) | .access[] | select(.name == "rs/busybox" and (.actions | index("push")))' \
		"$TOKEN_LOG" >/dev/null && pass "token: a push-scoped token for repository:rs/busybox" ||
		fail "token: no push scope requested"
	# A token cache: a handful of token requests, not one per request.
	[ "$nall" -le 6 ] && pass "token: $nall token request(s) in all (cached, not one per request)" ||
		fail "token: $nall token requests for one conversion (no token cache?)"
	check_image token "$TOKEN_REG/rs/busybox:esgz" "$ARCH" "$RIG/img-rs_busybox-v1"
fi

# ============================== bad input ========================================================
access_plain

# Unknown media types (a proxy rewrites the manifest; its digest header is
# recomputed, so only the media type is wrong).
fake_registry_start F_MT --upstream "http://$P" --manifest-media-type application/vnd.example.unknown+json &&
	{
		sgx bad-mt inspect --plain-http "$F_MT/rs/busybox:v1"
		expect_fail "unknown manifest media type: inspect" bad-mt 'media.?type|unsupported|unknown'
		sgx bad-mt-conv convert --plain-http "$F_MT/rs/busybox:v1" "$P/rs/bad:mt"
		expect_fail "unknown manifest media type: convert" bad-mt-conv 'media.?type|unsupported|unknown'
	}
fake_registry_start F_LMT --upstream "http://$P" --layer-media-type application/vnd.example.layer.unknown &&
	{
		sgx bad-lmt convert --plain-http "$F_LMT/rs/busybox:v1" "$P/rs/bad:lmt"
		expect_fail "unknown layer media type: convert" bad-lmt 'media.?type|unsupported|unknown'
	}

# Wrong credentials.
SG_ENV=(DOCKER_CONFIG="$T/tls-wrong")
rig_docker_config "$T/tls-wrong" "$TLS_REG" "$TLS_USER" "wrong-$TLS_PASS"
SECRETS+=("wrong-$TLS_PASS")
# With hosts-top (server + top-level ca, one host) the certificate is fine,
# so an error that talks about TLS would be misleading.  With the [host]
# form the server entry comes after the [host] entry (as in containerd) and
# has no ca of its own: there the auth error must at least be named.
sgx bad-cred-tls inspect --hosts-dir "$T/hosts-top" "$TLS_REG/rs/busybox:v1"
FAIL_NOT='TLS error|certificate' expect_fail "wrong credentials (basic auth): inspect" bad-cred-tls \
	'authentication failed' "authentication failed for $TLS_REG"
sgx bad-cred-tls2 convert --hosts-dir "$T/hosts-top" "$TLS_REG/rs/busybox:v1" "$TLS_REG/rs/bad:cred"
FAIL_NOT='TLS error|certificate' expect_fail "wrong credentials (basic auth): convert" bad-cred-tls2 \
	'authentication failed' "authentication failed for $TLS_REG"
sgx bad-cred-tls3 inspect --hosts-dir "$TLS_HOSTS_DIR" "$TLS_REG/rs/busybox:v1"
expect_fail "wrong credentials (basic auth, [host] hosts.toml): inspect" bad-cred-tls3 \
	'authentication failed' "authentication failed for $TLS_REG"
SG_ENV=()
sgx bad-nocred-tls inspect --hosts-dir "$T/hosts-top" "$TLS_REG/rs/busybox:v1"
FAIL_NOT='TLS error|certificate' expect_fail "no credentials for a registry that wants them: inspect" bad-nocred-tls \
	'auth|401|unauthori[sz]ed|credentials' "$TLS_REG"
SG_ENV=(DOCKER_CONFIG="$T/token-wrong")
rig_docker_config "$T/token-wrong" "$TOKEN_REG" "$TOKEN_USER" "wrong-$TOKEN_PASS"
SECRETS+=("wrong-$TOKEN_PASS")
: >"$TOKEN_LOG"
sgx bad-cred-tok inspect --plain-http "$TOKEN_REG/rs/busybox:v1"
expect_fail "wrong credentials (token server): inspect" bad-cred-tok "authentication failed for ($TOKEN_REG|$TOKEN_SERVER)"
[ "$(token_requests 401)" -ge 1 ] && pass "wrong credentials (token): the token server refused them" ||
	fail "wrong credentials (token): no refused token request logged"
SG_ENV=()

# A registry answering HTML.
fake_registry_start F_HTML --html && {
	sgx bad-html inspect --plain-http "$F_HTML/rs/busybox:v1"
	expect_fail "registry answering HTML: inspect" bad-html 'html|content.type|media.?type|json|not a registry|unexpected'
	sgx bad-html2 convert --plain-http "$F_HTML/rs/busybox:v1" "$P/rs/bad:html"
	expect_fail "registry answering HTML: convert" bad-html2 'html|content.type|media.?type|json|not a registry|unexpected'
}

# Truncated bodies.
TRUNC_RE='truncat|short|incomplete|premature|unexpected end|end of (file|data|stream)|partial|closed|size|eof|transfer'
fake_registry_start F_TRUNC --upstream "http://$P" --truncate blobs && {
	sgx bad-trunc convert --plain-http "$F_TRUNC/rs/busybox:v1" "$P/rs/bad:trunc"
	expect_fail "truncated blob bodies: convert" bad-trunc "$TRUNC_RE"
	run bad-trunc-tag skopeo inspect --tls-verify=false "docker://$P/rs/bad:trunc"
	[ "$RC" -ne 0 ] && pass "truncated blobs: no destination tag was written" || fail "truncated blobs: destination tag exists"
}
fake_registry_start F_TRUNCM --upstream "http://$P" --truncate manifests && {
	sgx bad-truncm inspect --plain-http "$F_TRUNCM/rs/busybox:v1"
	expect_fail "truncated manifest body: inspect" bad-truncm "$TRUNC_RE|digest|json"
}

# Redirect loop (blob GETs), and a single redirect (object storage) that works.
fake_registry_start F_LOOP --upstream "http://$P" --redirect-loop && {
	sgx bad-loop convert --plain-http "$F_LOOP/rs/busybox:v1" "$P/rs/bad:loop"
	expect_fail "redirect loop: convert" bad-loop 'redirect'
}
fake_registry_start F_REDIR --upstream "http://$P" --redirect-blobs && {
	sgx redir-ok convert --plain-http "$F_REDIR/rs/busybox:v1" "$P/rs/redirected:esgz"
	expect_ok "blob redirects to storage are followed: convert" redir-ok &&
		{ [ "$(jq -s '[.[] | select(.path | startswith("/_storage/"))] | length' "$F_REDIR_LOG")" -ge 1 ] &&
			pass "blob redirects: blobs were read from /_storage/" || fail "blob redirects: /_storage/ never read"; }
}

# A server that ignores Range (answers 200 with the whole blob).
fake_registry_start F_RANGE --upstream "http://$P" --ignore-range && {
	sgx bad-range inspect --plain-http "$F_RANGE/rs/busybox:esgz"
	nr=$(jq -s '[.[] | select(.range != null)] | length' "$F_RANGE_LOG")
	if [ "$RC" -eq 0 ] && [ "$nr" -eq 0 ]; then
		pass "server ignoring Range: inspect made no Range request"
	elif [ "$RC" -eq 0 ]; then
		fail "server ignoring Range: inspect sent $nr Range request(s), got whole blobs, and still succeeded"
	else
		expect_fail "server ignoring Range: inspect" bad-range 'range|206|partial'
	fi
}

# TLS errors naming the host.
SG_ENV=(DOCKER_CONFIG="$TLS_DOCKER_CONFIG")
sgx bad-tls inspect --hosts-dir "$T/hosts-none" "$TLS_REG/rs/busybox:v1"
expect_fail "TLS: registry certificate from an unknown CA" bad-tls 'certificate|verif|tls|ssl|issuer' "$TLS_REG"
SG_ENV=()
sgx bad-tls2 inspect --hosts-dir "$T/hosts-none" "$P/rs/busybox:v1"
expect_fail "TLS: HTTPS to a plain-HTTP registry" bad-tls2 'tls|ssl|https|handshake|wrong version|record' "$P"

# Nobody listening; a bad reference.
dead=127.0.0.1:$(free_port)
sgx bad-conn inspect --plain-http "$dead/rs/busybox:v1"
expect_fail "connection refused" bad-conn 'connect|refused|unreachable' "$dead"
sgx bad-ref inspect --plain-http "$P/UPPER/Case:v1"
if [ "$RC" -eq 2 ] || [ "$RC" -eq 3 ] || [ "$RC" -eq 1 ]; then
	grep -Eqi 'reference|invalid|repository|name' "$T/bad-ref.err" &&
		pass "bad reference (upper case repository): exit $RC, $(head -n1 "$T/bad-ref.err" | cut -c1-120)" ||
		{ fail "bad reference: unclear message"; show_file "$T/bad-ref.err"; }
else
	fail "bad reference: exit $RC"
	show_file "$T/bad-ref.err"
fi

# Digest mismatches: bytes in the registry's own storage changed (same
# length).  Last, and on salted images: blobs are shared by digest.
seed_image --salt tamper-manifest "$P" rs/tamper:v1 >/dev/null || fail "seed rs/tamper"
run tamper-raw skopeo inspect --raw --tls-verify=false "docker://$P/rs/tamper:v1"
mdg=$(sha256_of "$T/tamper-raw.out")
mfile=$PLAIN_DIR/data/docker/registry/v2/blobs/sha256/${mdg:0:2}/$mdg/data
if [ -f "$mfile" ]; then
	"$PYTHON" - "$mfile" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
m = re.search(r'"size"\s*:\s*(\d)', s)
i = m.start(1)
open(p, "w").write(s[:i] + str((int(s[i]) + 1) % 10 or 1) + s[i + 1:])
PY
	sgx bad-mdg inspect --plain-http "$P/rs/tamper:v1"
	expect_fail "manifest digest mismatch (by tag): inspect" bad-mdg 'digest|mismatch'
	sgx bad-mdg2 inspect --plain-http "$P/rs/tamper@sha256:$mdg"
	expect_fail "manifest digest mismatch (by digest): inspect" bad-mdg2 'digest|mismatch'
	sgx bad-mdg3 convert --plain-http "$P/rs/tamper:v1" "$P/rs/bad:mdg"
	expect_fail "manifest digest mismatch: convert" bad-mdg3 'digest|mismatch'
else
	fail "manifest $mdg not found in registry storage ($mfile)"
fi
seed_image --salt tamper-layer "$P" rs/tamper-layer:v1 >/dev/null || fail "seed rs/tamper-layer"
run tl-raw skopeo inspect --raw --tls-verify=false "docker://$P/rs/tamper-layer:v1"
ldg=$(jq -r '.layers[2].digest | sub("^sha256:"; "")' "$T/tl-raw.out")
lfile=$PLAIN_DIR/data/docker/registry/v2/blobs/sha256/${ldg:0:2}/$ldg/data
if [ -f "$lfile" ]; then
	# Flip one byte in the middle of the 1 MiB-ish layer.
	"$PYTHON" -c 'import os, sys
f = open(sys.argv[1], "r+b")
off = os.path.getsize(sys.argv[1]) // 2
f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([(b[0] + 1) % 256]))' "$lfile"
	sgx bad-ldg convert --plain-http "$P/rs/tamper-layer:v1" "$P/rs/bad:ldg"
	expect_fail "layer blob digest mismatch: convert" bad-ldg 'digest|mismatch|checksum|crc|corrupt'
	run bad-ldg-tag skopeo inspect --tls-verify=false "docker://$P/rs/bad:ldg"
	[ "$RC" -ne 0 ] && pass "layer digest mismatch: no destination tag was written" ||
		fail "layer digest mismatch: the destination tag exists"
else
	fail "layer $ldg not found in registry storage"
fi

finish
