#!/usr/bin/env bash
# `stargz mount` checks each layer's diffID once the layer is complete: with
# --all against the image config's rootfs.diff_ids, for one layer against
# --diff-id. The image here has a config that lies about layer 1: that layer
# goes failed (diff_id_check mismatch) and its reads get EIO, the others are
# ok with the config's diffID and read right. The real diffIDs are computed
# here with gzip -dc | sha256sum, apart from the code under test.
# Env: STARGZ. Skips (77) while `stargz mount` is missing. Everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
need_mount
need_tools docker-registry skopeo curl jq tar gzip sha256sum timeout cmp

registry_start_plain || die "plain registry"
R=$PLAIN_REG

# Three layers, each a directory dN with a multi-chunk file and a small one.
declare -a REAL LAYER TOC
for i in 0 1 2; do
	mkdir -p "$T/src$i/d$i"
	"$RIG_PY" -c 'import random,sys; sys.stdout.buffer.write(random.Random(int(sys.argv[1])).randbytes(600000))' \
		"$i" >"$T/src$i/d$i/data" || die "random data"
	echo "layer $i" >"$T/src$i/d$i/name"
	tar -C "$T/src$i" --numeric-owner -cf "$T/l$i.tar" "d$i" || die "tar $i"
	"$STARGZ" build --chunk-size 65536 "$T/l$i.tar" "$T/l$i.esgz" >"$T/l$i.esgz.json" ||
		die "stargz build $i"
	REAL[i]=sha256:$(gzip -dc "$T/l$i.esgz" | sha256sum | cut -d' ' -f1)
	LAYER[i]=sha256:$(sha256sum "$T/l$i.esgz" | cut -d' ' -f1)
	TOC[i]=$(jq -r .tocDigest "$T/l$i.esgz.json")
done
WRONG=sha256:$(printf 'not the diffID of layer 1' | sha256sum | cut -d' ' -f1)
LAYERS=("$T/l0.esgz" "$T/l1.esgz" "$T/l2.esgz")

# push NAME MAKE_OCI_ARGS...: rs/NAME:v1 of the three layers, config altered.
push() {
	local n=$1
	shift
	MAKE_OCI_ARGS=("$@")
	push_image "$R" "rs/$n:v1" "${LAYERS[@]}" >/dev/null || die "push rs/$n:v1"
	MAKE_OCI_ARGS=()
}
push lying --diff-id "1:$WRONG"
mdg=$(jq -r .manifest "$T/img-rs_lying_v1.json")
cfg=$(jq -r .config.digest "$T/img-rs_lying_v1/blobs/sha256/${mdg#sha256:}")
curl -sf "http://$R/v2/rs/lying/blobs/$cfg" >"$T/lying.config" || die "config of rs/lying"
check "the pushed config gives layer 1 the wrong diffID, layers 0 and 2 their real ones" \
	jq -e --arg w "$WRONG" --arg a "${REAL[0]}" --arg b "${REAL[2]}" \
	'.rootfs.diff_ids == [$a, $w, $b]' "$T/lying.config"

# stop NAME: SIGTERM to the mount; it must exit 0.
stop() {
	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] || fail "$1: exit $RC at SIGTERM: $(tail -n 3 "$T/$1.err")"
}
# read_eio DESC FILE: with the page cache dropped, a read of FILE gets EIO.
read_eio() {
	echo 3 >/proc/sys/vm/drop_caches
	run eio timeout 30 cat "$2"
	if [ "$RC" != 0 ] && grep -q "Input/output error" "$T/eio.err" && [ ! -s "$T/eio.out" ]; then
		pass "$1: EIO, no bytes"
	else
		fail "$1: cat exit $RC, $(stat -c %s "$T/eio.out") bytes, $(head -c 200 "$T/eio.err")"
	fi
}
# read_right DESC FILE WANT: FILE reads as WANT (page cache dropped first).
read_right() {
	echo 3 >/proc/sys/vm/drop_caches
	if timeout 30 cat "$2" >"$T/right.out" 2>"$T/right.err" && cmp -s "$T/right.out" "$3"; then
		pass "$1"
	else
		fail "$1: $(cmp "$T/right.out" "$3" 2>&1) $(head -c 200 "$T/right.err")"
	fi
}
# status_is DESC MNT JQ SECS: wait_status, passing or failing with the last status.
status_is() {
	if wait_status "$2" "$3" "$4"; then
		pass "$1 ($(jq -c '{state, diff_id_check, verify_errors}' "$T/status.last"))"
	else
		fail "$1: status $(cat "$T/status.last" 2>/dev/null)"
	fi
}
ok_expr() { # DIFF_ID
	echo '.state == "complete" and .diff_id_check == "ok" and .diff_id == "'"$1"'"'
}
FAILED_EXPR='.state == "failed" and .diff_id_check == "mismatch" and .verify_errors >= 1'

# --- --all: the config's diffIDs ---------------------------------------------------
M=$T/all
if mount_start all --all --plain-http "$R/rs/lying:v1" "$M"; then
	status_is "--all: layer 1, whose config diffID is wrong, goes failed / mismatch" \
		"$M/1" "$FAILED_EXPR" 90
	check "--all: layer 1's status.json gives the diffID its blob has" \
		jq -e --arg d "${REAL[1]}" '.diff_id == $d' "$T/status.last"
	read_eio "--all: a read of a file of the failed layer" "$M/1/d1/data"
	read_eio "--all: and of its small file" "$M/1/d1/name"
	for i in 0 2; do
		status_is "--all: layer $i is ok with the config's diffID" "$M/$i" "$(ok_expr "${REAL[i]}")" 60
		read_right "--all: layer $i reads right" "$M/$i/d$i/data" "$T/src$i/d$i/data"
	done
	grep -q "layer failed: diffID is ${REAL[1]}, expected $WRONG" "$T/all.err" &&
		pass "--all: the log names both diffIDs" ||
		fail "--all: no log line with both diffIDs: $(grep -m2 'layer failed' "$T/all.err")"
	stop all
fi

# Again on a disk cache, twice: the second mount finds the passed checks'
# markers in the cache (no reading of the blob for them) and still shows the
# diffIDs; the failed layer left no marker and fails again.
for run_no in 1 2; do
	M=$T/cache$run_no
	if STARGZ_LOG_LEVEL=debug mount_start "cache$run_no" --all --plain-http --cache-dir "$T/cache" "$R/rs/lying:v1" "$M"; then
		for i in 0 2; do
			status_is "--cache-dir, mount $run_no: layer $i ok with the config's diffID" \
				"$M/$i" "$(ok_expr "${REAL[i]}")" 60
		done
		status_is "--cache-dir, mount $run_no: layer 1 failed" "$M/1" "$FAILED_EXPR" 90
		stop "cache$run_no"
	fi
done
check "--cache-dir, mount 2: layers 0 and 2 passed by their cache markers, not read again" \
	[ "$(grep -c "diffID checked before (cache)" "$T/cache2.err")" -eq 2 ]
check "--cache-dir, mount 1: no cache marker yet" \
	[ "$(grep -c "diffID checked before (cache)" "$T/cache1.err")" -eq 0 ]

# Without the background fetch nothing checks: the config is not even read.
M=$T/nobg
if mount_start nobg --all --plain-http --no-background-fetch "$R/rs/lying:v1" "$M"; then
	status_is "--all --no-background-fetch: no check (diff_id_check off)" "$M/1" \
		'.diff_id_check == "off" and .diff_id == "" and .state != "failed"' 10
	read_right "--all --no-background-fetch: layer 1 reads right" "$M/1/d1/data" "$T/src1/d1/data"
	stop nobg
fi

# --- --all with a config that cannot be used: refused before any mount -----------
# refused NAME WANT_RC REGEX IMAGE
refused() {
	mkdir -p "$T/$1.mnt"
	run "$1" timeout 60 "$STARGZ" mount --all --plain-http "$R/rs/$4:v1" "$T/$1.mnt"
	if [ "$RC" = "$2" ] && grep -Eq -- "$3" "$T/$1.err"; then
		pass "$1: refused, exit $RC: $(head -n 1 "$T/$1.err" | cut -c1-200)"
	else
		fail "$1: exit $RC (want $2), stderr: $(head -c 400 "$T/$1.err")"
	fi
	for m in "$T/$1.mnt"/*; do
		is_mounted "$m" && { fail "$1: $m left mounted"; umount -l "$m"; }
	done
}
push short --diff-id 2:-
refused short 1 "config sha256:[0-9a-f]+: config has 2 diff_ids for the manifest's 3 layers" short
push notdigest --diff-id 0:sha256:abc
refused notdigest 1 "diff_ids\[0\] 'sha256:abc' is not sha256" notdigest

# --- one layer: --diff-id ------------------------------------------------------------
# Layer 1 with its real diffID: ok (the lying config plays no part).
M=$T/one-right
mkdir -p "$M"
if mount_start one-right --plain-http --toc-digest "${TOC[1]}" --diff-id "${REAL[1]}" \
	"$R/rs/lying:v1" "${LAYER[1]}" "$M"; then
	status_is "--diff-id right: ok" "$M" "$(ok_expr "${REAL[1]}")" 60
	read_right "--diff-id right: the layer reads right" "$M/d1/data" "$T/src1/d1/data"
	stop one-right
fi
M=$T/one-wrong
mkdir -p "$M"
if mount_start one-wrong --plain-http --toc-digest "${TOC[0]}" --diff-id "$WRONG" \
	"$R/rs/lying:v1" "${LAYER[0]}" "$M"; then
	status_is "--diff-id wrong: failed / mismatch" "$M" "$FAILED_EXPR" 90
	read_eio "--diff-id wrong: a read of its file" "$M/d0/data"
	stop one-wrong
fi
M=$T/one-none
mkdir -p "$M"
if mount_start one-none --plain-http --toc-digest "${TOC[0]}" "$R/rs/lying:v1" "${LAYER[0]}" "$M"; then
	status_is "no --diff-id: complete, no check" "$M" \
		'.state == "complete" and .diff_id_check == "off" and .diff_id == ""' 60
	stop one-none
fi

# --- usage errors ---------------------------------------------------------------------
mkdir -p "$T/u"
sg u1 mount --plain-http --diff-id sha256:abc "$R/rs/lying:v1" "${LAYER[0]}" "$T/u"
expect_rc "--diff-id that is not a digest: usage error" 2 u1
grep -q "diff-id 'sha256:abc' is not sha256" "$T/u1.err" || fail "u1: $(cat "$T/u1.err")"
sg u2 mount --all --plain-http --diff-id "${REAL[0]}" "$R/rs/lying:v1" "$T/u"
expect_rc "--diff-id with --all: usage error" 2 u2
sg u3 mount --plain-http --no-background-fetch --diff-id "${REAL[0]}" "$R/rs/lying:v1" \
	"${LAYER[0]}" "$T/u"
expect_rc "--diff-id with --no-background-fetch: usage error" 2 u3
is_mounted "$T/u" && { fail "a usage error left $T/u mounted"; umount -l "$T/u"; }

finish
