#!/usr/bin/env bash
# A legacy layer (stargz footer, no chunkDigest: its chunks are cached under
# keys of layer and offset, not of their bytes) with the disk cache: mounted
# with `stargz mount --allow-unverified --cache-dir`, read, stopped; mounted
# again and read with the registry refusing: every byte comes from the disk
# cache, where each chunk is stored with the sha256 of its content
# (DIR/sha256/xx/<key>.<sha256>) and checked against it; a chunk changed on
# disk is not served. Env: STARGZ.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"

need_mount
need_tools jq skopeo
registry_start_plain || finish
netproxy_start CP || finish

# --- a legacy layer -----------------------------------------------------------------------
L=$T/legacy
mkdir -p "$L"
cat >"$L/spec.json" <<'EOF'
{"footer": "legacy", "chunk_size": 65536, "entries": [
  {"name": "d/", "type": "dir"},
  {"name": "d/a.txt", "data": "legacy file a\n", "toc": {"chunkDigest": null}},
  {"name": "d/b.bin", "random": [20000, 7], "toc": {"chunkDigest": null}},
  {"name": "d/big.bin", "random": [200000, 9], "toc": {"chunkDigest": null},
   "toc_chunks": {"1": {"chunkDigest": null}, "2": {"chunkDigest": null}, "3": {"chunkDigest": null}}}
]}
EOF
"$PYTHON" "$TESTS_DIR/craft_blob.py" "$L/spec.json" "$L/layer.stargz" >"$L/craft.out" ||
	die "craft_blob.py: $(cat "$L/craft.out")"
# The expected tree, from the spec's data (craft_blob.py's generator).
"$PYTHON" - "$TESTS_DIR" "$L/spec.json" "$L/want" <<'PY' || die "expected tree"
import json, os, sys
sys.path.insert(0, sys.argv[1])
import craft_blob as cb
spec = json.load(open(sys.argv[2]))
for e in spec["entries"]:
    p = os.path.join(sys.argv[3], e["name"])
    if e.get("type") == "dir":
        os.makedirs(p, exist_ok=True)
    else:
        open(p, "wb").write(cb.payload(e))
PY
"$STARGZ" toc "$L/layer.stargz" >"$L/toc.json" 2>"$L/toc.err" || die "stargz toc: $(cat "$L/toc.err")"
n_dig=$(jq '[.entries[] | select(.chunkDigest != null)] | length' "$L/toc.json")
n_chunks=$(jq '[.entries[] | select((.type == "reg" or .type == "chunk") and .size != 0)] | length' "$L/toc.json")
check "the crafted layer has no chunkDigest ($n_dig) and $n_chunks chunks" [ "$n_dig" -eq 0 -a "$n_chunks" -ge 6 ]
push_image "$PLAIN_REG" rs/legacy:1 "$L/layer.stargz" || finish
DG=sha256:$(sha256_of "$L/layer.stargz")
REF=$CP/rs/legacy:1

MC=("$PYTHON" "$TESTS_DIR/mount_check.py")
readfile() { # NAME FILE REF: mount_check.py readfile, JSON in $T/NAME.out
	run "$1" timeout 60 "${MC[@]}" readfile "$2" "$3"
}
CD=$T/cache
M=$T/mnt
mkdir -p "$M"
read_all() { # NAME: every file of the mount against the expected tree
	local f ok=true
	for f in d/a.txt d/b.bin d/big.bin; do
		readfile "$1-${f//\//_}" "$M/$f" "$L/want/$f"
		jq -e '.ok' "$T/$1-${f//\//_}.out" >/dev/null || {
			ok=false
			fail "$1: $f: $(cat "$T/$1-${f//\//_}.out")"
		}
	done
	$ok
}

# --- first mount: fetch and cache ---------------------------------------------------------
if mount_start lg1 --plain-http --allow-unverified --no-prefetch --no-background-fetch \
	--cache-dir "$CD" "$REF" "$DG" "$M"; then
	read_all lg1 && pass "first mount: every file of the legacy layer reads right"
	mount_stop "$MOUNT_PID"
	check "first mount exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
fi
# Chunk files: "<key>.<sha256 of the content>", each matching its content.
n_files=0 n_ok=0
while read -r f; do
	n_files=$((n_files + 1))
	[ "$(sha256_of "$f")" = "${f##*.}" ] && n_ok=$((n_ok + 1))
done < <(find "$CD/sha256" -type f -name '*.*' ! -name '.*')
check "every legacy chunk is on disk under <key>.<its sha256> ($n_ok of $n_files, $n_chunks chunks)" \
	[ "$n_files" -eq "$n_chunks" -a "$n_ok" -eq "$n_files" ]

# --- second mount: the registry refuses, the disk cache serves ----------------------------
if mount_start lg2 --plain-http --allow-unverified --no-prefetch --no-background-fetch \
	--cache-dir "$CD" "$REF" "$DG" "$M"; then
	proxy_mode CP refuse
	n0=$(grep -c '' "$CP_LOG")
	read_all lg2 && pass "second mount, registry refusing: every file reads right from the disk cache"
	n1=$(grep -c '' "$CP_LOG")
	check "no request reached the registry for the reads ($((n1 - n0)))" [ "$n1" -eq "$n0" ]
	jq -e '.verify_errors == 0' "$M/$STATUS_REL" >/dev/null ||
		fail "status after offline reads: $(cat "$M/$STATUS_REL")"
	mount_stop "$MOUNT_PID"
	check "second mount exits 0 on SIGTERM (exit $RC)" [ "$RC" -eq 0 ]
	proxy_mode CP pass
fi

# --- a legacy chunk changed on disk is not served -----------------------------------------
victim=$(find "$CD/sha256" -type f -name '*.*' ! -name '.*' -size -100k | head -1)
"$PYTHON" -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(5); b = f.read(1); f.seek(5); f.write(bytes([b[0] ^ 0xff]))' "$victim"
if mount_start lg3 --plain-http --allow-unverified --no-prefetch --no-background-fetch \
	--cache-dir "$CD" "$REF" "$DG" "$M"; then
	proxy_mode CP refuse
	bad=0 eio=0
	for f in d/a.txt d/b.bin d/big.bin; do
		readfile "lg3-${f//\//_}" "$M/$f" "$L/want/$f"
		jq -e '.wrong | not' "$T/lg3-${f//\//_}.out" >/dev/null || bad=$((bad + 1))
		jq -e '.ok' "$T/lg3-${f//\//_}.out" >/dev/null || eio=$((eio + 1))
	done
	check "a chunk changed on disk: no wrong byte served ($bad files with wrong bytes)" [ "$bad" -eq 0 ]
	check "a chunk changed on disk: its file fails offline ($eio), the others read" [ "$eio" -eq 1 ]
	check "the changed file was deleted from the cache" [ ! -e "$victim" ]
	mount_stop "$MOUNT_PID"
	proxy_mode CP pass
fi

finish
