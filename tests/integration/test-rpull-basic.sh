#!/usr/bin/env bash
# stargz rpull against a private containerd with its built-in overlayfs
# snapshotter (no remote snapshotter: every layer is downloaded and applied):
#   * rpull of the seeded busybox image, one line per layer, then
#     `ctr run --snapshotter overlayfs` runs it and `ctr images ls` shows it;
#   * what it leaves in containerd matches what `ctr-remote images rpull`
#     (containerd's own pull + unpack with the stargz labels) leaves: content
#     labels, image target, snapshot chain and labels; no lease left behind;
#     a synchronous garbage collection keeps everything;
#   * a second rpull says `exists` and downloads nothing; blobs stored by
#     `ctr content fetch` are applied, not downloaded again;
#   * a multi-platform index and a docker schema 2 image;
#   * bad reference, unreachable registry, missing tag, unreachable
#     containerd, unknown snapshotter: exit 3 with one line; no lease left.
# The lazy path (a remote snapshotter answering ALREADY_EXISTS) needs the
# daemon and is tested with it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
need_root
need_stargz
need_tools docker-registry skopeo containerd ctr runc jq curl

ARCH=$("$PYTHON" -c 'import os; m = os.uname().machine
print({"x86_64": "amd64", "aarch64": "arm64"}.get(m, m))')

registry_start_plain || die "plain registry"
seed_image "$PLAIN_REG" rs/busybox:v1 || die "seeding rs/busybox:v1"
seed_image --multi "$PLAIN_REG" rs/multi:v1 || die "seeding rs/multi:v1"
seed_image --v2s2 "$PLAIN_REG" rs/v2s2:v1 || die "seeding rs/v2s2:v1"
containerd_start || die "containerd"

NS=rs-rpull
REF=$PLAIN_REG/rs/busybox:v1
RPULL=("$STARGZ" rpull --address "$CTRD_SOCK" --snapshotter overlayfs --plain-http)
C=("${CTR[@]}" -n "$NS")

# manifest_digest REF: what the registry serves for REF.
manifest_digest() {
	local r=$1 repo tag
	repo=${r#*/}
	tag=${repo##*:}
	repo=${repo%:*}
	curl -sI -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json' \
		"http://$PLAIN_REG/v2/$repo/manifests/$tag" |
		tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}'
}

# expect_one_line NAME DESC: stderr of NAME is one line starting "stargz:".
expect_one_line() {
	local n
	n=$(wc -l <"$T/$1.err")
	if [ "$n" -eq 1 ] && grep -q '^stargz: ' "$T/$1.err"; then
		pass "$2: one line: $(cut -c1-160 "$T/$1.err")"
	else
		fail "$2: want one 'stargz: ...' line on stderr, got $n"
		show_file "$T/$1.err" stderr
	fi
}

# expect_run NAME DESC NS SNAPSHOTTER REF: ctr run prints the image's hello line.
expect_run() {
	local name=$1 desc=$2 ns=$3 sn=$4 ref=$5
	run "$name" timeout 60 "${CTR[@]}" -n "$ns" run --snapshotter "$sn" --rm "$ref" \
		"rs-$name-$$" /bin/cat /etc/hello.txt
	if [ "$RC" -eq 0 ] && grep -qx "hello from rs-rig $ARCH" "$T/$name.out"; then
		pass "$desc"
	else
		fail "$desc: exit $RC"
		show_file "$T/$name.out" stdout
		show_file "$T/$name.err" stderr
	fi
}

# content_labels NS: "DIGEST KEY=VALUE" lines, sorted.
content_labels() {
	"${CTR[@]}" -n "$1" content ls | tail -n +2 | awk '{
		if ($NF !~ /=/) { print $1 " -"; next }
		n = split($NF, kv, ",")
		for (i = 1; i <= n; i++) print $1 " " kv[i]
	}' | sort
}

# snapshot_labels NS KEY: the snapshot's labels as sorted KEY=VALUE lines,
# without empty values and stargz.prefetch (ctr-remote adds those; we do not).
snapshot_labels() {
	"${CTR[@]}" -n "$1" snapshots --snapshotter overlayfs info "$2" |
		jq -r '.Labels // {} | to_entries[] | select(.value != "") |
			select(.key != "containerd.io/snapshot/remote/stargz.prefetch") |
			"\(.key)=\(.value)"' | sort
}

blob_gets() { # how many layer blob GETs the registry has served
	grep -c 'GET /v2/rs/[a-z0-9]*/blobs/sha256:' "$PLAIN_DIR/registry.log"
}

# --- first pull ------------------------------------------------------------------------
run pull1 "${RPULL[@]}" --namespace "$NS" "$REF"
expect_rc "rpull $REF into namespace $NS (overlayfs)" 0 pull1 || die "rpull failed"
n=$(grep -cE '^sha256:[0-9a-f]{64} downloaded [0-9]+ bytes' "$T/pull1.out")
[ "$n" = 3 ] && pass "rpull: each of the 3 layers downloaded" ||
	{ fail "rpull: $n layers say downloaded, want 3"; show_file "$T/pull1.out"; }
grep -qE "^pulled $REF: 3 layers in [0-9.]+s$" "$T/pull1.out" && pass "rpull: final line names the image and the time" ||
	{ fail "rpull: no final 'pulled' line"; show_file "$T/pull1.out"; }
[ ! -s "$T/pull1.err" ] && pass "rpull: nothing on stderr" || { fail "rpull: stderr not empty"; show_file "$T/pull1.err"; }

expect_run run1 "ctr run --snapshotter overlayfs runs the rpulled image" "$NS" overlayfs "$REF"

"${C[@]}" images ls -q >"$T/images.out" 2>&1
grep -qxF "$REF" "$T/images.out" && pass "ctr images ls shows $REF" ||
	{ fail "ctr images ls does not show $REF"; show_file "$T/images.out"; }
want=$(manifest_digest "$REF")
got=$("${C[@]}" images ls | awk -v r="$REF" '$1 == r {print $3}')
[ -n "$want" ] && [ "$got" = "$want" ] && pass "image target is the registry's manifest digest" ||
	fail "image target $got, registry says $want"

run leases "${C[@]}" leases ls -q
[ "$RC" -eq 0 ] && [ ! -s "$T/leases.out" ] && pass "no lease left after rpull" ||
	{ fail "leases left after rpull"; show_file "$T/leases.out"; }

# --- the same as containerd's own pull ---------------------------------------------------
if command -v ctr-remote >/dev/null; then
	run refpull timeout 120 ctr-remote -a "$CTRD_SOCK" -n ref images rpull --plain-http \
		--snapshotter overlayfs "$REF"
	if expect_rc "reference: ctr-remote images rpull --snapshotter overlayfs" 0 refpull; then
		content_labels ref >"$T/labels-ref"
		content_labels "$NS" >"$T/labels-ours"
		if diff -u "$T/labels-ref" "$T/labels-ours" >"$T/labels.diff"; then
			pass "content labels match ctr-remote's ($(wc -l <"$T/labels-ours") labels)"
		else
			fail "content labels differ from ctr-remote's (- ref, + ours)"
			show_file "$T/labels.diff"
		fi
		ref_img=$("${CTR[@]}" -n ref images ls | awk -v r="$REF" '$1 == r {print $2, $3, $4}')
		our_img=$("${C[@]}" images ls | awk -v r="$REF" '$1 == r {print $2, $3, $4}')
		[ "$ref_img" = "$our_img" ] && pass "image record matches ctr-remote's ($our_img)" ||
			fail "image record: ours '$our_img', ctr-remote's '$ref_img'"
		"${CTR[@]}" -n ref snapshots --snapshotter overlayfs ls | tail -n +2 | awk '{print $1, $2, $3}' |
			sort >"$T/snaps-ref"
		"${C[@]}" snapshots --snapshotter overlayfs ls | tail -n +2 | awk '{print $1, $2, $3}' |
			sort >"$T/snaps-ours"
		if diff -u "$T/snaps-ref" "$T/snaps-ours" >"$T/snaps.diff"; then
			pass "snapshot chain matches ctr-remote's ($(wc -l <"$T/snaps-ours") committed)"
		else
			fail "snapshots differ from ctr-remote's"
			show_file "$T/snaps.diff"
		fi
		bad=0
		while read -r key _; do
			snapshot_labels ref "$key" >"$T/sl-ref"
			snapshot_labels "$NS" "$key" >"$T/sl-ours"
			if ! diff -u "$T/sl-ref" "$T/sl-ours" >"$T/sl.diff"; then
				bad=1
				fail "snapshot $key: labels differ from ctr-remote's"
				show_file "$T/sl.diff"
			fi
		done <"$T/snaps-ours"
		[ "$bad" = 0 ] && pass "snapshot labels match ctr-remote's (stargz.reference/digest/layers, snapshot.ref)"
		"${CTR[@]}" -n ref images rm --sync "$REF" >/dev/null 2>&1
	fi
else
	log "ctr-remote not installed: no comparison with containerd's own pull"
fi

# Garbage collection must find everything referenced from the image record.
"${C[@]}" leases create --id rs-gc-trigger >/dev/null 2>&1
run gc "${C[@]}" leases rm --sync rs-gc-trigger
expect_rc "a synchronous garbage collection" 0 gc
n=$("${C[@]}" snapshots --snapshotter overlayfs ls | tail -n +2 | grep -c Committed)
[ "$n" = 3 ] && pass "after gc: 3 committed snapshots kept" || fail "after gc: $n committed snapshots, want 3"
expect_run run-gc "after gc: the image still runs" "$NS" overlayfs "$REF"

# --- second pull -----------------------------------------------------------------------
gets=$(blob_gets)
run pull2 "${RPULL[@]}" --namespace "$NS" "$REF"
expect_rc "second rpull" 0 pull2
n=$(grep -cE '^sha256:[0-9a-f]{64} exists$' "$T/pull2.out")
[ "$n" = 3 ] && pass "second rpull: each layer exists" || { fail "second rpull: $n layers exist, want 3"; show_file "$T/pull2.out"; }
grep -qE "^updated $REF: 3 layers in [0-9.]+s$" "$T/pull2.out" && pass "second rpull: the image record was updated" ||
	{ fail "second rpull: no 'updated' line"; show_file "$T/pull2.out"; }
secs=$(sed -nE 's/.* in ([0-9.]+)s$/\1/p' "$T/pull2.out")
awk -v s="$secs" 'BEGIN { exit !(s != "" && s < 5) }' && pass "second rpull is quick (${secs}s)" ||
	fail "second rpull took ${secs}s"
# The config is fetched again (it names the chain); no layer blob is.
after=$(blob_gets)
[ $((after - gets)) -le 1 ] && pass "second rpull: no layer blob fetched ($((after - gets)) blob GET, the config)" ||
	fail "second rpull fetched $((after - gets)) blobs"

# --- blobs already stored: applied, not downloaded -----------------------------------------
run fetch timeout 120 "${CTR[@]}" -n rs-fetched content fetch --plain-http "$REF"
if expect_rc "ctr content fetch (blobs only, no snapshots)" 0 fetch; then
	gets=$(blob_gets)
	run pull3 "${RPULL[@]}" --namespace rs-fetched "$REF"
	expect_rc "rpull over fetched content" 0 pull3
	n=$(grep -cE '^sha256:[0-9a-f]{64} applied' "$T/pull3.out")
	[ "$n" = 3 ] && pass "rpull over fetched content: each layer applied from the content store" ||
		{ fail "rpull over fetched content: $n applied, want 3"; show_file "$T/pull3.out"; }
	after=$(blob_gets)
	[ $((after - gets)) -le 1 ] && pass "rpull over fetched content: no layer blob downloaded" ||
		fail "rpull over fetched content: $((after - gets)) blob GETs"
	expect_run run3 "rpull over fetched content: the image runs" rs-fetched overlayfs "$REF"
fi

# --- an index and a docker schema 2 image ------------------------------------------------
MREF=$PLAIN_REG/rs/multi:v1
run pullm "${RPULL[@]}" --namespace "$NS" "$MREF"
expect_rc "rpull of an amd64+arm64 index" 0 pullm
want=$(manifest_digest "$MREF")
got=$("${C[@]}" images ls | awk -v r="$MREF" '$1 == r {print $2, $3}')
[ "$got" = "application/vnd.oci.image.index.v1+json $want" ] && pass "index: the image record targets the index" ||
	fail "index: image record '$got', want the index $want"
expect_run runm "index: the host's platform runs" "$NS" overlayfs "$MREF"

VREF=$PLAIN_REG/rs/v2s2:v1
run pullv "${RPULL[@]}" --namespace "$NS" "$VREF"
expect_rc "rpull of a docker schema 2 image" 0 pullv
expect_run runv "docker schema 2: the image runs" "$NS" overlayfs "$VREF"

# --- errors ------------------------------------------------------------------------------
run bad-ref "${RPULL[@]}" --namespace "$NS" 'Not A Ref!'
expect_rc "bad reference" 3 bad-ref && expect_one_line bad-ref "bad reference"

port=$(free_port)
run no-reg "${RPULL[@]}" --namespace "$NS" --timeout 5 "127.0.0.1:$port/rs/busybox:v1"
expect_rc "unreachable registry" 3 no-reg && expect_one_line no-reg "unreachable registry"
grep -q "127.0.0.1:$port" "$T/no-reg.err" && pass "unreachable registry: the message names it" ||
	fail "unreachable registry: message does not name 127.0.0.1:$port"

run no-tag "${RPULL[@]}" --namespace "$NS" "$PLAIN_REG/rs/busybox:nope"
expect_rc "missing tag" 3 no-tag && expect_one_line no-tag "missing tag"

run no-ctrd "$STARGZ" rpull --address "$T/no-such.sock" --snapshotter overlayfs --plain-http "$REF"
expect_rc "unreachable containerd" 3 no-ctrd && expect_one_line no-ctrd "unreachable containerd"
grep -q "cannot reach containerd at $T/no-such.sock" "$T/no-ctrd.err" &&
	pass "unreachable containerd: the message names the socket" ||
	fail "unreachable containerd: message does not name the socket"

run no-sn "$STARGZ" rpull --address "$CTRD_SOCK" --namespace rs-nosn --snapshotter no-such-sn \
	--plain-http "$REF"
expect_rc "unknown snapshotter" 3 no-sn && expect_one_line no-sn "unknown snapshotter"
grep -q "no-such-sn" "$T/no-sn.err" && pass "unknown snapshotter: the message names it" ||
	fail "unknown snapshotter: message does not name it"
run leases2 "${CTR[@]}" -n rs-nosn leases ls -q
[ ! -s "$T/leases2.out" ] && pass "failed rpull: its lease is gone" ||
	{ fail "failed rpull left a lease"; show_file "$T/leases2.out"; }

run usage "$STARGZ" rpull
expect_rc "rpull without REF is a usage error" 2 usage

finish
