#!/usr/bin/env bash
# Round trip: source tar -> `stargz build` -> blob, then check the blob with
# independent tools (gzip, zstd, GNU tar, sha256sum, jq) and with the CLI's
# own verify/extract/ls/toc, for every tar flavour of the corpus, several
# chunk sizes, gzip level, prioritised files and zstd:chunked.
#
# RS_QUICK=1 runs a smaller matrix.
. "$(dirname "$0")/lib.sh"
need_root
need_stargz
corpus

CHECK=("$PYTHON" "$TESTS_DIR/esgz_check.py")
ZERO_DIGEST=sha256:0000000000000000000000000000000000000000000000000000000000000000
mapfile -t FLAVOURS <"$CORPUS/FLAVOURS"

for f in "${FLAVOURS[@]}"; do
	gnu_extract "$CORPUS/$f.tar" "$T/ref-$f" || die "GNU tar cannot extract $f.tar"
done

printf '%s\n' data/rand-5m etc/hello.txt xattrs/file >"$T/prioritized"

# roundtrip_case ID FLAVOUR INPUT [build options...]
# Options after INPUT go to `stargz build`.  DET=1 in the environment of the
# call also checks that a second build is byte-identical.
roundtrip_case() {
	local id=$1 flav=$2 input=$3
	shift 3
	local args=("$@") b=$T/$id.esgz zstd=false chunk=4194304 landmark=no i
	for ((i = 0; i < ${#args[@]}; i++)); do
		case ${args[$i]} in
		--zstdchunked) zstd=true ;;
		--chunk-size) chunk=${args[$((i + 1))]} ;;
		--prioritized-files) landmark=prefetch ;;
		esac
	done
	log "case $id: build ${args[*]} $(basename "$input")"

	sg "build-$id" build "${args[@]}" "$input" "$b"
	expect_rc "$id: build" 0 "build-$id" || return 1
	local j=$T/build-$id.out
	if ! jq -e -s 'length == 1 and (.[0] | type == "object")' "$j" >/dev/null 2>&1; then
		fail "$id: build did not print exactly one JSON object"
		show_file "$j" stdout
		return 1
	fi
	local k missing=()
	for k in tocDigest diffID digest size uncompressedSize; do
		jq -e --arg k "$k" 'has($k)' "$j" >/dev/null || missing+=("$k")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		pass "$id: build JSON has tocDigest diffID digest size uncompressedSize"
	else
		fail "$id: build JSON lacks: ${missing[*]}"
		show_file "$j" stdout
	fi
	local toc_digest digest size diffid usize
	toc_digest=$(jq -r .tocDigest "$j")
	digest=$(jq -r .digest "$j")
	size=$(jq -r .size "$j")
	diffid=$(jq -r .diffID "$j")
	usize=$(jq -r .uncompressedSize "$j")

	if [ "$digest" = "sha256:$(sha256_of "$b")" ]; then
		pass "$id: digest is sha256 of the blob"
	else
		fail "$id: digest $digest, sha256sum says sha256:$(sha256_of "$b")"
	fi
	if [ "$size" = "$(size_of "$b")" ]; then
		pass "$id: size is the blob's size ($size)"
	else
		fail "$id: size $size, blob has $(size_of "$b") bytes"
	fi

	# The blob must be an ordinary tar.gz / tar.zst to ordinary tools.
	local plain=$T/$id.tar
	if $zstd; then
		check "$id: zstd -t accepts the blob" zstd -q -t "$b"
		zstd -q -dc "$b" >"$plain" || fail "$id: zstd -dc failed"
	else
		check "$id: gzip -t accepts the blob" gzip -t "$b"
		gzip -dc "$b" >"$plain" || fail "$id: gzip -dc failed"
	fi
	if [ "$diffid" = "sha256:$(sha256_of "$plain")" ]; then
		pass "$id: diffID is sha256 of the decompressed stream"
	else
		fail "$id: diffID $diffid, decompressed stream is sha256:$(sha256_of "$plain")"
	fi
	if [ "$usize" = "$(size_of "$plain")" ]; then
		pass "$id: uncompressedSize matches ($usize)"
	else
		fail "$id: uncompressedSize $usize, decompressed stream has $(size_of "$plain") bytes"
	fi
	if $zstd; then
		# Read the footer and TOC frame independently (the layout ctr-remote
		# and containers/storage use).
		if "${CHECK[@]}" zstdtoc "$b" >"$T/$id.ztoc" 2>"$T/$id.ztoc.err"; then
			pass "$id: zstd:chunked footer and TOC frame readable by an independent reader"
			if [ "$toc_digest" = "sha256:$(sha256_of "$T/$id.ztoc")" ]; then
				pass "$id: tocDigest is sha256 of the TOC in the skippable frame"
			else
				fail "$id: tocDigest $toc_digest, TOC frame holds sha256:$(sha256_of "$T/$id.ztoc")"
			fi
		else
			fail "$id: zstd:chunked footer or TOC frame malformed: $(cat "$T/$id.ztoc.err")"
		fi
	else
		local tocsum
		tocsum=$(tar -xOf "$plain" stargz.index.json 2>/dev/null | sha256sum | cut -d' ' -f1)
		if [ "$toc_digest" = "sha256:$tocsum" ]; then
			pass "$id: tocDigest is sha256 of stargz.index.json"
		else
			fail "$id: tocDigest $toc_digest, stargz.index.json in the tar is sha256:$tocsum"
		fi
	fi

	# Prioritised files pull their parent dirs forward, so a directory's
	# entries are no longer contiguous and GNU tar sets its mtime before
	# filling it: compare directory mtimes only for stargz extract then.
	local dirm=()
	[ "$landmark" = prefetch ] && dirm=(--no-dir-mtime)
	if gnu_extract "$plain" "$T/$id.gnu" 2>"$T/$id.gnu.err"; then
		compare_trees "$id: GNU tar extracts the blob to the source tree" \
			"$T/ref-$flav" "$T/$id.gnu" "${ESGZ_EXTRA[@]}" "${dirm[@]}"
	else
		fail "$id: GNU tar cannot extract the blob"
		show_file "$T/$id.gnu.err"
	fi
	rm -rf "$T/$id.gnu" "$plain"

	sg "verify-$id" verify "$b"
	expect_rc "$id: verify" 0 "verify-$id"
	sg "verifyd-$id" verify --toc-digest "$toc_digest" "$b"
	expect_rc "$id: verify --toc-digest (right digest)" 0 "verifyd-$id"
	sg "verifyw-$id" verify --toc-digest "$ZERO_DIGEST" "$b"
	expect_rc "$id: verify --toc-digest (wrong digest)" 1 "verifyw-$id"

	mkdir "$T/$id.x"
	sg "extract-$id" extract "$b" "$T/$id.x"
	if expect_rc "$id: extract" 0 "extract-$id"; then
		compare_trees "$id: stargz extract gives the source tree" \
			"$T/ref-$flav" "$T/$id.x" "${ESGZ_EXTRA[@]}"
	fi
	rm -rf "$T/$id.x"

	sg "ls-$id" ls "$b"
	if expect_rc "$id: ls" 0 "ls-$id"; then
		check "$id: ls lists every entry" "${CHECK[@]}" ls --tar "$CORPUS/$flav.tar" "$T/ls-$id.out"
	fi
	sg "lsjson-$id" ls --json "$b"
	if expect_rc "$id: ls --json" 0 "lsjson-$id"; then
		check "$id: ls --json names every entry" \
			"${CHECK[@]}" lsjson --tar "$CORPUS/$flav.tar" "$T/lsjson-$id.out"
	fi

	sg "toc-$id" toc "$b"
	if expect_rc "$id: toc" 0 "toc-$id"; then
		if jq -e '.version == 1 and (.entries | type == "array")' "$T/toc-$id.out" >/dev/null 2>&1; then
			pass "$id: toc prints JSON {version:1, entries:[...]}"
		else
			fail "$id: toc output is not a version 1 TOC"
			show_file "$T/toc-$id.out" stdout
		fi
		local popt=()
		[ "$landmark" = prefetch ] && popt=(--prioritized "$T/prioritized")
		check "$id: TOC entries match the source tar" "${CHECK[@]}" toc \
			--tar "$CORPUS/$flav.tar" --blob-size "$size" --chunk-size "$chunk" \
			--landmark "$landmark" "${popt[@]}" "$T/toc-$id.out"
	fi

	if [ "${DET:-0}" = 1 ]; then
		sg "build2-$id" build "${args[@]}" "$input" "$b.2"
		if expect_rc "$id: second build" 0 "build2-$id"; then
			if cmp -s "$b" "$b.2"; then
				pass "$id: two builds are byte-identical"
			else
				fail "$id: two builds differ: $(cmp "$b" "$b.2" 2>&1 | head -1)"
			fi
			if cmp -s "$T/build-$id.out" "$T/build2-$id.out"; then
				pass "$id: two builds print the same JSON"
			else
				fail "$id: two builds print different JSON"
				show_file "$T/build-$id.out" first
				show_file "$T/build2-$id.out" second
			fi
		fi
		rm -f "$b.2"
	fi
	# Keep the blob of the stdin/stdout check's reference case only.
	[ "$id" = pax-default ] || rm -f "$b"
}

MiB=1048576
DET=1 roundtrip_case pax-default pax "$CORPUS/pax.tar"
DET=1 roundtrip_case pax-1m pax "$CORPUS/pax.tar" --chunk-size $MiB
DET=1 roundtrip_case pax-zstdchunked pax "$CORPUS/pax.tar" --zstdchunked
roundtrip_case gnu-default gnu "$CORPUS/gnu.tar"
roundtrip_case ustar-default ustar "$CORPUS/ustar.tar"
roundtrip_case pax-gz-default pax "$CORPUS/pax.tar.gz"
roundtrip_case pax-zst-default pax "$CORPUS/pax.tar.zst"
roundtrip_case pax-prio pax "$CORPUS/pax.tar" --prioritized-files "$T/prioritized"
if [ "${RS_QUICK:-0}" != 1 ]; then
	DET=1 roundtrip_case gnu-gz-1m gnu "$CORPUS/gnu.tar.gz" --chunk-size $MiB
	roundtrip_case gnu-zst-default gnu "$CORPUS/gnu.tar.zst"
	roundtrip_case ustar-gz-default ustar "$CORPUS/ustar.tar.gz"
	roundtrip_case ustar-zst-zstdchunked-1m ustar "$CORPUS/ustar.tar.zst" --zstdchunked --chunk-size $MiB
	roundtrip_case pax-level1 pax "$CORPUS/pax.tar" --level 1
	roundtrip_case gnu-level9-1m gnu "$CORPUS/gnu.tar" --level 9 --chunk-size $MiB
	roundtrip_case pax-small-chunks pax "$CORPUS/pax.tar" --chunk-size 65536
fi

# `-` for input and output: same bytes as file to file.
if [ -f "$T/pax-default.esgz" ]; then
	run build-stdin "$STARGZ" build - "$T/stdin.esgz" <"$CORPUS/pax.tar"
	if expect_rc "build from stdin (-)" 0 build-stdin; then
		if cmp -s "$T/pax-default.esgz" "$T/stdin.esgz"; then
			pass "build from stdin gives the same blob"
		else
			fail "build from stdin gives a different blob"
		fi
	fi
	"$STARGZ" build "$CORPUS/pax.tar" - >"$T/stdout.esgz" 2>"$T/build-stdout.err"
	# shellcheck disable=SC2034  # read by expect_rc
	RC=$?
	echo >"$T/build-stdout.out"
	if expect_rc "build to stdout (-)" 0 build-stdout; then
		if cmp -s "$T/pax-default.esgz" "$T/stdout.esgz"; then
			pass "build to stdout writes only the blob, identical to file output"
		else
			fail "build to stdout differs from file output: $(cmp "$T/pax-default.esgz" "$T/stdout.esgz" 2>&1 | head -1)"
		fi
	fi
	rm -f "$T/stdin.esgz" "$T/stdout.esgz"
fi

finish
