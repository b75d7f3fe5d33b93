#!/usr/bin/env bash
# `stargz convert` and `stargz inspect` between OCI image layouts (no
# registry): a 4-layer image (gzip, plain tar, zstd, and a layer that already
# is eStargz but carries no annotations) becomes eStargz; every layer then
# verifies against its annotated TOC digest, the config's diff_ids are the
# layers' uncompressed sha256, everything else in the config is unchanged,
# skopeo reads and copies the result, umoci unpacks it to the same rootfs as
# the source, and a second conversion keeps every layer (same digest).
# Then zstd:chunked, a two-platform index, and bad input.
. "$(dirname "$0")/lib.sh"
need_stargz

TOC_ANN=containerd.io/snapshot/stargz/toc.digest
USIZE_ANN=io.containers.estargz.uncompressed-size
ZSUM_ANN=io.containers.zstd-chunked.manifest-checksum
ZPOS_ANN=io.containers.zstd-chunked.manifest-position
REF_ANN=org.opencontainers.image.ref.name
MKIMG=("$PYTHON" "$TESTS_DIR/make_oci_image.py")

blob() { echo "$1/blobs/sha256/${2#sha256:}"; }
# manifest_of DIR TAG: the digest index.json names for TAG
manifest_of() {
	jq -er --arg t "$2" --arg k "$REF_ANN" \
		'[.manifests[] | select(.annotations[$k] == $t)] | if length == 1 then .[0].digest else error("tag \($t): \(length) entries") end' \
		"$1/index.json"
}

# --- source layers ------------------------------------------------------------------
mkdir -p "$T/l1/etc" "$T/l1/usr/bin" "$T/l2/data" "$T/l3/etc" "$T/l4/opt"
echo hello >"$T/l1/etc/hello.txt"
echo gone >"$T/l1/etc/remove-me"
head -c 300000 /dev/urandom >"$T/l1/usr/bin/big"
: >"$T/l1/etc/empty"
ln -s hello.txt "$T/l1/etc/link"
ln "$T/l1/etc/hello.txt" "$T/l1/etc/hard"
chmod 4755 "$T/l1/usr/bin/big"
seq 1 50000 >"$T/l2/data/seq"
mkdir -p "$T/l2/etc" && : >"$T/l2/etc/.wh.remove-me"
echo three >"$T/l3/etc/three"
echo four >"$T/l4/opt/four"
tar --numeric-owner --owner=0 --group=0 -C "$T/l1" -czf "$T/l1.tar.gz" . || die "tar l1"
tar --numeric-owner --owner=1000 --group=1000 -C "$T/l2" -cf "$T/l2.tar" . || die "tar l2"
tar --numeric-owner --owner=0 --group=0 -C "$T/l3" -cf - . | zstd -q >"$T/l3.tar.zst" || die "tar l3"
tar --numeric-owner --owner=0 --group=0 -C "$T/l4" -cf "$T/l4.tar" . || die "tar l4"
"$STARGZ" build --chunk-size 65536 "$T/l4.tar" "$T/l4.esgz" >"$T/l4.json" || die "stargz build l4"

SRC=$T/src
"${MKIMG[@]}" --name v1 "$SRC" "$T/l1.tar.gz" "$T/l2.tar" "$T/l3.tar.zst" "$T/l4.esgz" \
	>"$T/src.json" || die "make_oci_image.py"

# check_image DESC DIR TAG FORMAT: every layer of DIR:TAG is FORMAT (estargz or
# zstd:chunked), verifies against its annotation, has the right size
# annotation and diff_id; prints nothing on success.
check_image() {
	local desc=$1 dir=$2 tag=$3 fmt=$4 m mf cfg n i ok=true
	m=$(manifest_of "$dir" "$tag") || {
		fail "$desc: no single index.json entry for $tag"
		return 1
	}
	mf=$(blob "$dir" "$m")
	cfg=$(blob "$dir" "$(jq -r .config.digest "$mf")")
	n=$(jq '.layers | length' "$mf")
	[ "$(jq '.rootfs.diff_ids | length' "$cfg")" = "$n" ] || {
		fail "$desc: config has $(jq '.rootfs.diff_ids | length' "$cfg") diff_ids for $n layers"
		return 1
	}
	for ((i = 0; i < n; i++)); do
		local l mt dg ann usize b dec want_mt
		l=$(jq -c ".layers[$i]" "$mf")
		mt=$(jq -r .mediaType <<<"$l")
		dg=$(jq -r .digest <<<"$l")
		ann=$(jq -r --arg k "$TOC_ANN" '.annotations[$k] // empty' <<<"$l")
		usize=$(jq -r --arg k "$USIZE_ANN" '.annotations[$k] // empty' <<<"$l")
		b=$(blob "$dir" "$dg")
		if [ "$fmt" = zstd:chunked ]; then
			want_mt=application/vnd.oci.image.layer.v1.tar+zstd
			dec=(zstd -q -dc "$b")
		else
			want_mt=application/vnd.oci.image.layer.v1.tar+gzip
			dec=(gzip -dc "$b")
		fi
		[ "$mt" = "$want_mt" ] || {
			fail "$desc: layer $i media type $mt"
			ok=false
		}
		[ "sha256:$(sha256_of "$b")" = "$dg" ] || {
			fail "$desc: layer $i blob does not match its digest"
			ok=false
		}
		if [ -z "$ann" ] || ! "$STARGZ" verify --toc-digest "$ann" "$b" >"$T/verify.out" 2>&1; then
			fail "$desc: layer $i does not verify against annotation '$ann'"
			show_file "$T/verify.out"
			ok=false
		fi
		grep -q ": ok: ${fmt/estargz/eStargz}" "$T/verify.out" || grep -qi ": ok: $fmt" "$T/verify.out" || {
			fail "$desc: layer $i is not $fmt"
			show_file "$T/verify.out"
			ok=false
		}
		local got_id got_size want_id
		got_id=sha256:$("${dec[@]}" | sha256sum | cut -d' ' -f1)
		got_size=$("${dec[@]}" | wc -c)
		want_id=$(jq -r ".rootfs.diff_ids[$i]" "$cfg")
		[ "$got_id" = "$want_id" ] || {
			fail "$desc: layer $i diff_id $want_id, uncompressed sha256 is $got_id"
			ok=false
		}
		[ "$usize" = "$got_size" ] || {
			fail "$desc: layer $i $USIZE_ANN '$usize', uncompressed size is $got_size"
			ok=false
		}
		if [ "$fmt" = zstd:chunked ]; then
			local zsum zpos off len
			zsum=$(jq -r --arg k "$ZSUM_ANN" '.annotations[$k] // empty' <<<"$l")
			zpos=$(jq -r --arg k "$ZPOS_ANN" '.annotations[$k] // empty' <<<"$l")
			off=${zpos%%:*}
			len=$(cut -d: -f2 <<<"$zpos")
			if [ -z "$zpos" ] || [ "$(cut -d: -f4 <<<"$zpos")" != 1 ] ||
				[ "sha256:$(tail -c +$((off + 1)) "$b" | head -c "$len" | sha256sum | cut -d' ' -f1)" != "$zsum" ]; then
				fail "$desc: layer $i zstd:chunked annotations '$zsum' '$zpos' do not match the blob"
				ok=false
			fi
		fi
	done
	$ok && pass "$desc: $n $fmt layers verify against their annotations, diff_ids and sizes match"
}

# --- eStargz --------------------------------------------------------------------------
DST=$T/dst
sg conv1 convert --chunk-size 65536 "oci:$SRC:v1" "oci:$DST:v1"
expect_rc "convert oci -> oci" 0 conv1
jq -e '.converted == 3 and .kept == 1 and .images == 1' "$T/conv1.out" >/dev/null &&
	pass "3 layers converted, the eStargz one kept" ||
	{ fail "convert summary"; show_file "$T/conv1.out"; }
[ ! -s "$T/conv1.err" ] && pass "quiet when stderr is not a terminal" ||
	{ fail "convert wrote to stderr"; show_file "$T/conv1.err"; }
check_image "eStargz" "$DST" v1 estargz

# on a terminal: one progress line per layer
if command -v script >/dev/null; then
	script -qec "$(printf '%q ' "$STARGZ" convert "oci:$SRC:v1" "oci:$T/dst-tty:v1")" /dev/null \
		>"$T/tty.out" 2>&1
	n=$(tr '\r' '\n' <"$T/tty.out" | sed 's/\x1b\[K//g' | grep -cE '^  \[[1-4]/4\] sha256:[0-9a-f]+ .*(converted|kept)')
	[ "$n" = 4 ] && pass "a progress line per layer on a terminal" ||
		{ fail "progress lines on a terminal: $n"; show_file "$T/tty.out"; }
fi

M1=$(manifest_of "$DST" v1)
l4=$(jq -r .digest "$T/l4.json")
[ "$(jq -r '.layers[3].digest' "$(blob "$DST" "$M1")")" = "$l4" ] &&
	pass "the eStargz layer is kept byte for byte" || fail "the eStargz layer was rewritten"

# config: only rootfs.diff_ids changed
SCFG=$(blob "$SRC" "$(jq -r .config.digest "$(blob "$SRC" "$(manifest_of "$SRC" v1)")")")
DCFG=$(blob "$DST" "$(jq -r .config.digest "$(blob "$DST" "$M1")")")
if [ "$(jq -S 'del(.rootfs.diff_ids)' "$SCFG")" = "$(jq -S 'del(.rootfs.diff_ids)' "$DCFG")" ]; then
	pass "config: every field but rootfs.diff_ids kept"
else
	fail "config fields changed"
	diff <(jq -S 'del(.rootfs.diff_ids)' "$SCFG") <(jq -S 'del(.rootfs.diff_ids)' "$DCFG") | head
fi
[ "$(jq -r '.rootfs.diff_ids[3]' "$DCFG")" = "$(jq -r .diffID "$T/l4.json")" ] &&
	pass "kept layer keeps its diff_id" || fail "kept layer's diff_id changed"

# inspect
sg insp inspect "oci:$DST:v1"
expect_rc "inspect oci:DST:v1" 0 insp
if jq -e '(.layers | length) == 4 and all(.layers[]; .format == "estargz" and .tocDigestMatches == true)
	and .manifestDigest != null and .config.rootfs != null' "$T/insp.out" >/dev/null; then
	pass "inspect: 4 eStargz layers, TOC digests match their annotations"
else
	fail "inspect output"
	show_file "$T/insp.out"
fi
sg insp-src inspect "oci:$SRC:v1"
jq -e '[.layers[].format] == ["not eStargz", "not eStargz", "not eStargz", "estargz"]' \
	"$T/insp-src.out" >/dev/null && pass "inspect: source layers told apart" ||
	{ fail "inspect source formats"; show_file "$T/insp-src.out"; }

# skopeo
if command -v skopeo >/dev/null; then
	check "skopeo inspect oci:DST:v1" skopeo inspect "oci:$DST:v1"
	check "skopeo copy oci:DST:v1 dir:" skopeo copy -q "oci:$DST:v1" "dir:$T/skopeo-dir"
else
	log "skopeo not installed: skipping its checks"
fi

# umoci: the converted image unpacks to the source's rootfs. umoci 0.4 cannot
# read zstd layers, so the reference is the source with layer 3 as gzip.
if command -v umoci >/dev/null; then
	uflags=()
	[ "$(id -u)" -eq 0 ] || uflags=(--rootless)
	zstd -q -dc "$T/l3.tar.zst" | gzip -c >"$T/l3.tar.gz"
	"${MKIMG[@]}" --name v1 "$T/ref-img" "$T/l1.tar.gz" "$T/l2.tar" "$T/l3.tar.gz" "$T/l4.esgz" \
		>/dev/null || die "make_oci_image.py (reference)"
	if ! umoci unpack "${uflags[@]}" --image "$T/ref-img:v1" "$T/u-src" >"$T/umoci-src.log" 2>&1; then
		fail "umoci unpack of the reference image"
		show_file "$T/umoci-src.log"
	elif umoci unpack "${uflags[@]}" --image "$DST:v1" "$T/u-dst" >"$T/umoci-dst.log" 2>&1; then
		pass "umoci unpacks the converted image"
		compare_trees "umoci rootfs: converted == source" "$T/u-src/rootfs" "$T/u-dst/rootfs" \
			"${ESGZ_EXTRA[@]}" --no-dir-mtime
		[ ! -e "$T/u-dst/rootfs/etc/remove-me" ] && pass "the whiteout still removes etc/remove-me" ||
			fail "etc/remove-me survived its whiteout"
	else
		fail "umoci unpack of the converted image"
		show_file "$T/umoci-dst.log"
	fi
else
	log "umoci not installed: skipping the rootfs comparison"
fi

# idempotent: a second conversion keeps every layer and the manifest
sg conv2 convert "oci:$DST:v1" "oci:$DST:v2"
expect_rc "convert the converted image" 0 conv2
if jq -e --arg m "$M1" '.converted == 0 and .kept == 4 and .digest == $m' "$T/conv2.out" >/dev/null &&
	[ "$(manifest_of "$DST" v2)" = "$M1" ]; then
	pass "second conversion keeps all layers and gives the same manifest"
else
	fail "second conversion is not a no-op"
	show_file "$T/conv2.out"
fi
[ "$(jq '.manifests | length' "$DST/index.json")" = 2 ] && pass "index.json has v1 and v2" ||
	fail "index.json entries: $(jq -c '.manifests' "$DST/index.json")"
# re-tagging v1 replaces its entry
sg conv3 convert "oci:$SRC:v1" "oci:$DST:v1"
[ "$(jq --arg k "$REF_ANN" '[.manifests[] | select(.annotations[$k] == "v1")] | length' "$DST/index.json")" = 1 ] &&
	pass "converting to an existing tag replaces its entry" || fail "duplicate v1 entries"

# no tag: the only image of a layout; destination without a tag is "latest"
sg conv-notag convert "oci:$SRC" "oci:$T/dst-notag"
expect_rc "convert oci:SRC (no tag) -> oci:DST (no tag)" 0 conv-notag
manifest_of "$T/dst-notag" latest >/dev/null && pass "untagged destination is tagged latest" ||
	fail "untagged destination: $(cat "$T/dst-notag/index.json")"

# --- zstd:chunked ----------------------------------------------------------------------
ZD=$T/zdst
sg zconv convert --zstdchunked --chunk-size 65536 "oci:$SRC:v1" "oci:$ZD:z"
expect_rc "convert --zstdchunked" 0 zconv
jq -e '.converted == 4 and .kept == 0' "$T/zconv.out" >/dev/null &&
	pass "zstd:chunked: every layer rebuilt" || { fail "zstd summary"; show_file "$T/zconv.out"; }
check_image "zstd:chunked" "$ZD" z zstd:chunked
sg zconv2 convert --zstdchunked "oci:$ZD:z" "oci:$ZD:z2"
jq -e '.converted == 0 and .kept == 4' "$T/zconv2.out" >/dev/null &&
	pass "zstd:chunked: second conversion keeps every layer" || { fail "zstd idempotence"; show_file "$T/zconv2.out"; }
if command -v skopeo >/dev/null; then
	check "skopeo inspect oci:ZDST:z" skopeo inspect "oci:$ZD:z"
fi

# --- two platforms -----------------------------------------------------------------------
MP=$T/multi
"${MKIMG[@]}" --name a --arch amd64 "$MP" "$T/l1.tar.gz" >/dev/null || die "make amd64"
cp "$MP/index.json" "$T/idx-amd64.json"
"${MKIMG[@]}" --name b --arch arm64 "$MP" "$T/l2.tar" "$T/l3.tar.zst" >/dev/null || die "make arm64"
"$PYTHON" - "$MP" "$T/idx-amd64.json" <<'PY' || die "make the index"
import hashlib, json, os, sys
d, amd = sys.argv[1], sys.argv[2]
ents = json.load(open(amd))["manifests"] + json.load(open(os.path.join(d, "index.json")))["manifests"]
for e in ents:
    e.pop("annotations", None)
idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                  "manifests": ents, "annotations": {"test": "kept"}}).encode()
dg = hashlib.sha256(idx).hexdigest()
open(os.path.join(d, "blobs", "sha256", dg), "wb").write(idx)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
          "digest": "sha256:" + dg, "size": len(idx),
          "annotations": {"org.opencontainers.image.ref.name": "multi"}}]},
          open(os.path.join(d, "index.json"), "w"))
PY
MD=$T/mdst
sg mall convert --all-platforms "oci:$MP:multi" "oci:$MD:all"
expect_rc "convert --all-platforms" 0 mall
MI=$(blob "$MD" "$(manifest_of "$MD" all)")
if jq -e '.mediaType == "application/vnd.oci.image.index.v1+json" and (.manifests | length) == 2
	and ([.manifests[].platform.architecture] == ["amd64", "arm64"]) and .annotations.test == "kept"' \
	"$MI" >/dev/null; then
	pass "--all-platforms: an OCI index with both platforms, annotations kept"
else
	fail "--all-platforms index"
	show_file "$MI"
fi
for a in 0 1; do
	md=$(jq -r ".manifests[$a].digest" "$MI")
	jq -e --arg k "$TOC_ANN" 'all(.layers[]; .annotations[$k] != null)' "$(blob "$MD" "$md")" >/dev/null ||
		fail "platform $a: layers without TOC annotations"
done
sg march convert --platform linux/arm64 "oci:$MP:multi" "oci:$MD:arm"
expect_rc "convert --platform linux/arm64" 0 march
jq -e '.images == 1 and .mediaType == "application/vnd.oci.image.manifest.v1+json"' "$T/march.out" >/dev/null &&
	[ "$(jq '.layers | length' "$(blob "$MD" "$(manifest_of "$MD" arm)")")" = 2 ] &&
	pass "--platform picks the arm64 image (2 layers) as a single manifest" ||
	{ fail "--platform linux/arm64"; show_file "$T/march.out"; }
sg mnone convert --platform linux/s390x "oci:$MP:multi" "oci:$MD:none"
expect_rc "no such platform" 3 mnone
grep -q 'linux/amd64, linux/arm64' "$T/mnone.err" && pass "the error lists the platforms there are" ||
	{ fail "platform error message"; show_file "$T/mnone.err"; }
sg minsp inspect --platform linux/arm64 "oci:$MP:multi"
jq -e '.platform == "linux/arm64" and .index.mediaType != null and (.layers | length) == 2' \
	"$T/minsp.out" >/dev/null && pass "inspect --platform on an index" || { fail "inspect index"; show_file "$T/minsp.out"; }

# --- usage and bad input -------------------------------------------------------------------
sg u1 convert "oci:$SRC:v1"
expect_rc "convert with one argument" 2 u1
sg u2 convert --platform linux/amd64 --all-platforms "oci:$SRC:v1" "oci:$T/x"
expect_rc "--platform with --all-platforms" 2 u2
sg u3 convert --level 12 "oci:$SRC:v1" "oci:$T/x"
expect_rc "--level 12" 2 u3
sg b1 convert "oci:$T/nonexistent:v1" "oci:$T/x"
expect_rc "missing source layout" 3 b1
sg b2 convert "oci:$SRC:nosuchtag" "oci:$T/x"
expect_rc "unknown tag" 3 b2
grep -q "tags: v1" "$T/b2.err" && pass "unknown tag: the error lists the tags" || show_file "$T/b2.err"
sg b3 inspect "oci:"
expect_rc "oci: without a directory" 3 b3
for n in b1 b2 b3; do
	[ "$(wc -l <"$T/$n.err")" = 1 ] || { fail "$n: stderr is not one line"; show_file "$T/$n.err"; }
done

# a tampered layer blob: the digest check stops the conversion
BAD=$T/bad
cp -r "$SRC" "$BAD"
l2=$(jq -r '.layers[1].digest' "$(blob "$BAD" "$(manifest_of "$BAD" v1)")")
printf 'x' | dd of="$(blob "$BAD" "$l2")" bs=1 seek=100 conv=notrunc status=none
sg b4 convert "oci:$BAD:v1" "oci:$T/bad-dst:v1"
expect_rc "tampered layer" "1|3" b4
grep -q "${l2#sha256:}" "$T/b4.err" && pass "the error names the layer" || show_file "$T/b4.err"
[ -z "$(find "$T/bad-dst" -name index.json 2>/dev/null)" ] && pass "nothing tagged after a failure" ||
	fail "a failed conversion wrote index.json"
# a manifest that is not JSON
BAD2=$T/bad2
cp -r "$SRC" "$BAD2"
m=$(manifest_of "$BAD2" v1)
echo 'not json' >"$(blob "$BAD2" "$m")"
sg b5 convert "oci:$BAD2:v1" "oci:$T/bad2-dst:v1"
expect_rc "manifest that does not match its digest" "1|3" b5

finish
