#!/usr/bin/env bash
# Interop with the reference implementation: containerd 1.6 + ctr-remote
# (stargz-snapshotter's converter) make eStargz / zstd:chunked layers from
# the corpus; the CLI must verify, extract, list and print them.  In the
# other direction containerd must accept a layer made by `stargz build`
# (import with unpack checks the diffID; the unpacked tree must match).
# craft_blob.py serves as a third, independent producer.
#
# Network: containerd listens on a unix socket in the temp dir only.
. "$(dirname "$0")/lib.sh"
need_root
for tool in containerd ctr ctr-remote; do
	command -v "$tool" >/dev/null || skip "$tool not installed"
done
need_stargz
corpus

CHECK=("$PYTHON" "$TESTS_DIR/esgz_check.py")
ZERO_DIGEST=sha256:0000000000000000000000000000000000000000000000000000000000000000
TOC_ANN=containerd.io/snapshot/stargz/toc.digest
USIZE_ANN=io.containers.estargz.uncompressed-size
SRC_TAR=$CORPUS/interop.tar

gnu_extract "$SRC_TAR" "$T/ref" || die "GNU tar cannot extract interop.tar"

# --- containerd, private to this test ------------------------------------------
C=$T/c
mkdir -p "$C/root" "$C/state" "$C/opt"
SOCK=$C/containerd.sock
cat >"$C/config.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"
TOML

CTRD_PID=
stop_containerd() {
	[ -n "$CTRD_PID" ] || return 0
	# Unmount whatever an image mount may have left below $T.
	findmnt -rn -o TARGET | grep -F "$T/" | sort -r | while read -r m; do umount -l "$m"; done
	kill -TERM "$CTRD_PID" 2>/dev/null
	for _ in $(seq 100); do
		kill -0 "$CTRD_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$CTRD_PID" 2>/dev/null; then
		log "containerd (pid $CTRD_PID) ignored SIGTERM; killing it"
		kill -KILL "$CTRD_PID" 2>/dev/null
	fi
	wait "$CTRD_PID" 2>/dev/null
	CTRD_PID=
}
on_exit stop_containerd

containerd --config "$C/config.toml" >"$C/containerd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 100); do
	ctr -a "$SOCK" version >/dev/null 2>&1 && break
	kill -0 "$CTRD_PID" 2>/dev/null || break
	sleep 0.2
done
if ! ctr -a "$SOCK" version >/dev/null 2>&1; then
	show_file "$C/containerd.log" containerd.log
	die "containerd did not come up on $SOCK"
fi
pass "containerd $(containerd --version | awk '{print $3}') up on a private socket (pid $CTRD_PID)"
CTR=(ctr -a "$SOCK")
CTR_REMOTE=(ctr-remote -a "$SOCK")

# --- source image ---------------------------------------------------------------
SRC_REF=example.test/rs/corpus:src
run mkimg "$PYTHON" "$TESTS_DIR/make_oci_image.py" --name "$SRC_REF" "$T/srcimg" "$CORPUS/interop.tar.gz"
expect_rc "build OCI layout of the corpus" 0 mkimg || die "make_oci_image.py failed"
run import "${CTR[@]}" images import --no-unpack "$T/srcimg.tar"
expect_rc "ctr images import" 0 import || die "cannot import the source image"

# export_layer REF NAME: export REF, leave layer 0 at $T/NAME.blob, its
# descriptor at $T/NAME.desc.json and the config at $T/NAME.config.json.
export_layer() {
	local ref=$1 name=$2 d=$T/export-$2
	run "export-$name" "${CTR[@]}" images export "$T/$name.export.tar" "$ref"
	expect_rc "$name: ctr images export" 0 "export-$name" || return 1
	mkdir -p "$d"
	tar -C "$d" -xf "$T/$name.export.tar" || return 1
	local man
	man=$(jq -r '.manifests[0].digest' "$d/index.json" | sed 's/^sha256://')
	jq '.layers[0]' "$d/blobs/sha256/$man" >"$T/$name.desc.json"
	local cfg layer
	cfg=$(jq -r '.config.digest' "$d/blobs/sha256/$man" | sed 's/^sha256://')
	cp "$d/blobs/sha256/$cfg" "$T/$name.config.json"
	layer=$(jq -r '.digest' "$T/$name.desc.json" | sed 's/^sha256://')
	mv "$d/blobs/sha256/$layer" "$T/$name.blob"
	rm -rf "$d" "$T/$name.export.tar"
	log "$name: layer $(jq -c '{mediaType, digest, size, annotations}' "$T/$name.desc.json")"
}

# check_blob NAME ZSTD TOC_DIGEST: our CLI against a foreign blob.
check_blob() {
	local name=$1 zstd=$2 tocd=$3 b=$T/$1.blob
	if $zstd; then
		check "$name: zstd -t accepts it" zstd -q -t "$b"
	else
		check "$name: gzip -t accepts it" gzip -t "$b"
	fi
	sg "verify-$name" verify "$b"
	expect_rc "$name: stargz verify" 0 "verify-$name"
	if [ -n "$tocd" ] && [ "$tocd" != null ]; then
		sg "verifyd-$name" verify --toc-digest "$tocd" "$b"
		expect_rc "$name: stargz verify --toc-digest <$TOC_ANN>" 0 "verifyd-$name"
		sg "verifyw-$name" verify --toc-digest "$ZERO_DIGEST" "$b"
		expect_rc "$name: stargz verify --toc-digest <wrong>" 1 "verifyw-$name"
	else
		fail "$name: no $TOC_ANN annotation"
	fi
	mkdir "$T/$name.x"
	sg "extract-$name" extract "$b" "$T/$name.x"
	if expect_rc "$name: stargz extract" 0 "extract-$name"; then
		compare_trees "$name: extracted tree equals the source tree" "$T/ref" "$T/$name.x" "${ESGZ_EXTRA[@]}"
	fi
	rm -rf "$T/$name.x"
	sg "ls-$name" ls "$b"
	if expect_rc "$name: stargz ls" 0 "ls-$name"; then
		check "$name: ls lists every entry" "${CHECK[@]}" ls --tar "$SRC_TAR" "$T/ls-$name.out"
	fi
	sg "toc-$name" toc "$b"
	if expect_rc "$name: stargz toc" 0 "toc-$name"; then
		if jq -e '.version == 1 and (.entries | type == "array")' "$T/toc-$name.out" >/dev/null 2>&1; then
			pass "$name: toc is JSON {version:1, entries:[...]}"
		else
			fail "$name: toc output is not a version 1 TOC"
			show_file "$T/toc-$name.out" stdout
		fi
		check "$name: toc entries match the source tar" "${CHECK[@]}" toc --tar "$SRC_TAR" \
			--blob-size "$(size_of "$b")" "$T/toc-$name.out"
		if ! $zstd; then
			# Same content as the TOC stored in the blob (formatting aside).
			tar -xzOf "$b" stargz.index.json | jq -S . >"$T/$name.toc.want" 2>/dev/null
			jq -S . "$T/toc-$name.out" >"$T/$name.toc.got" 2>/dev/null
			if cmp -s "$T/$name.toc.want" "$T/$name.toc.got"; then
				pass "$name: toc prints the blob's TOC"
			else
				fail "$name: toc differs from stargz.index.json in the blob"
				diff -u "$T/$name.toc.want" "$T/$name.toc.got" | head -n 20 | sed 's/^/    | /'
			fi
		fi
	fi
}

# convert NAME ARGS...: ctr-remote images convert ARGS SRC -> NAME.
convert() {
	local name=$1
	shift
	local dst=example.test/rs/corpus:$name
	run "convert-$name" "${CTR_REMOTE[@]}" images convert "$@" "$SRC_REF" "$dst"
	expect_rc "$name: ctr-remote images convert $*" 0 "convert-$name" || return 1
	export_layer "$dst" "$name"
}

# --- reference eStargz, default settings ------------------------------------------
if convert ref-esgz --estargz --oci; then
	tocd=$(jq -r --arg k "$TOC_ANN" '.annotations[$k]' "$T/ref-esgz.desc.json")
	check_blob ref-esgz false "$tocd"
	# The reference's config diff_id is sha256 of the decompressed blob.
	want=$(jq -r '.rootfs.diff_ids[0]' "$T/ref-esgz.config.json")
	got=sha256:$(gzip -dc "$T/ref-esgz.blob" | sha256sum | cut -d' ' -f1)
	[ "$want" = "$got" ] && pass "ref-esgz: diff_id is sha256 of gzip -dc" ||
		fail "ref-esgz: diff_id $want, gzip -dc gives $got"

	# Our build with the same settings must describe the same files, chunks
	# and digests as the reference TOC (offsets naturally differ).
	sg build-ours build "$SRC_TAR" "$T/ours.blob"
	if expect_rc "stargz build of the same tar" 0 build-ours; then
		norm_toc='[.entries[] | del(.offset, .innerOffset)]'
		tar -xzOf "$T/ref-esgz.blob" stargz.index.json | jq -S "$norm_toc" >"$T/toc.ref" 2>&1
		tar -xzOf "$T/ours.blob" stargz.index.json | jq -S "$norm_toc" >"$T/toc.ours" 2>&1
		if cmp -s "$T/toc.ref" "$T/toc.ours"; then
			pass "our TOC equals the reference TOC except offsets ($(jq length "$T/toc.ref") entries)"
		else
			fail "our TOC differs from the reference TOC (- reference, + ours)"
			diff -u "$T/toc.ref" "$T/toc.ours" | tail -n +3 | grep '^[-+]' | head -n 30 | sed 's/^/    | /'
		fi
		got=$(jq -r .uncompressedSize "$T/build-ours.out")
		want=$(gzip -dc "$T/ours.blob" | wc -c)
		[ "$got" = "$want" ] && pass "our uncompressedSize matches gzip -dc ($want)" ||
			fail "our uncompressedSize $got, gzip -dc gives $want"
	fi
fi

# --- reference eStargz with 1 MiB chunks and level 1 ------------------------------------
if convert ref-esgz-1m --estargz --oci --estargz-chunk-size 1048576 --estargz-compression-level 1; then
	check_blob ref-esgz-1m false "$(jq -r --arg k "$TOC_ANN" '.annotations[$k]' "$T/ref-esgz-1m.desc.json")"
	check "ref-esgz-1m: reference really used 1 MiB chunks" "${CHECK[@]}" toc --tar "$SRC_TAR" \
		--chunk-size 1048576 "$T/toc-ref-esgz-1m.out"
fi

# --- reference zstd:chunked --------------------------------------------------------------
if convert ref-zstd --zstdchunked --oci; then
	tocd=$(jq -r --arg k "$TOC_ANN" '.annotations[$k]' "$T/ref-zstd.desc.json")
	# Our independent reader agrees with the reference (keeps the check honest).
	if "${CHECK[@]}" zstdtoc "$T/ref-zstd.blob" >"$T/ref-zstd.toc" 2>"$T/ref-zstd.toc.err" &&
		[ "sha256:$(sha256_of "$T/ref-zstd.toc")" = "$tocd" ]; then
		pass "ref-zstd: esgz_check.py zstdtoc reads the reference footer; TOC matches $TOC_ANN"
	else
		fail "ref-zstd: esgz_check.py zstdtoc cannot read the reference: $(cat "$T/ref-zstd.toc.err")"
	fi
	check_blob ref-zstd true "$tocd"
	want=$(jq -r --arg k "$USIZE_ANN" '.annotations[$k]' "$T/ref-zstd.desc.json")
	got=$(zstd -q -dc "$T/ref-zstd.blob" | wc -c)
	[ "$want" = "$got" ] && pass "ref-zstd: $USIZE_ANN matches zstd -dc ($got)" ||
		fail "ref-zstd: $USIZE_ANN $want, zstd -dc gives $got"
fi

# --- craft_blob.py as an independent producer ---------------------------------------------
run craft "$PYTHON" "$TESTS_DIR/craft_blob.py" --from-tar "$SRC_TAR" --chunk-size 1048576 --landmark \
	"$T/craft.blob"
if expect_rc "craft_blob.py --from-tar" 0 craft; then
	check_blob craft false "$(jq -r .tocDigest "$T/craft.out")"
fi
run craft-legacy "$PYTHON" "$TESTS_DIR/craft_blob.py" /dev/stdin "$T/legacy.blob" <<JSON
{"footer": "legacy", "entries": [{"name": "a/", "type": "dir"}, {"name": "a/f", "data": "legacy stargz\n"}]}
JSON
sg verify-legacy verify "$T/legacy.blob"
expect_rc "legacy 47-byte stargz footer: verify" 0 verify-legacy
mkdir "$T/legacy.x"
sg extract-legacy extract "$T/legacy.blob" "$T/legacy.x"
expect_rc "legacy 47-byte stargz footer: extract" 0 extract-legacy &&
	{ [ "$(cat "$T/legacy.x/a/f" 2>/dev/null)" = "legacy stargz" ] &&
		pass "legacy: a/f extracted" || fail "legacy: a/f missing or wrong"; }

# --- containerd accepts our blob ---------------------------------------------------------------
# Import with unpack: containerd's applier decompresses the layer and checks
# the result against the config's diff_id; then mount and compare.
if [ -f "$T/ours.blob" ]; then
	tocd=$(jq -r .tocDigest "$T/build-ours.out")
	usize=$(jq -r .uncompressedSize "$T/build-ours.out")
	OURS_REF=example.test/rs/corpus:ours
	run mkimg-ours "$PYTHON" "$TESTS_DIR/make_oci_image.py" --name "$OURS_REF" \
		--annotate "0:$TOC_ANN=$tocd" --annotate "0:$USIZE_ANN=$usize" "$T/oursimg" "$T/ours.blob"
	expect_rc "OCI layout with our layer" 0 mkimg-ours
	run import-ours "${CTR[@]}" images import "$T/oursimg.tar"
	if expect_rc "containerd imports and unpacks our layer (diffID checked)" 0 import-ours; then
		mkdir "$T/mnt"
		run mount-ours "${CTR[@]}" images mount "$OURS_REF" "$T/mnt"
		if expect_rc "ctr images mount" 0 mount-ours; then
			# containerd turns .wh.* into overlay whiteouts, and trusted.*
			# xattrs do not show through its overlay mount: leave them out.
			compare_trees "containerd's unpack of our layer equals the source tree" \
				"$T/ref" "$T/mnt" "${ESGZ_EXTRA[@]}" --exclude whiteouts --xattr-exclude trusted.
			run umount-ours "${CTR[@]}" images unmount "$T/mnt"
			expect_rc "ctr images unmount" 0 umount-ours
		fi
	fi
	# And the reference converter reads our blob as its input layer.
	run convert-ours "${CTR_REMOTE[@]}" images convert --uncompress --oci "$OURS_REF" "$OURS_REF-plain"
	expect_rc "ctr-remote converts an image with our layer (--uncompress)" 0 convert-ours
fi

stop_containerd
if [ -z "$CTRD_PID" ]; then
	pass "containerd stopped"
fi
finish
