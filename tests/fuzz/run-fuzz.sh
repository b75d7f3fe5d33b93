#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for a
# bounded time over its seed corpus, FUZZ_JOBS (default: the number of cores)
# at a time. Usage: run-fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-${FUZZ_SECONDS:-30}}
bdir="$root/build-fuzz"
# The TOC parser's simdjson shim is C++: it must be clang's too, for libFuzzer
# and for one sanitizer runtime. Exported, so a regeneration picks it up.
export CC=clang CXX=clang++
if [ ! -f "$bdir/build.ninja" ]; then
	meson setup "$bdir" "$root" -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link \
		-Dcpp_args=-fsanitize=fuzzer-no-link >/dev/null
fi
ninja -C "$bdir" tests/fuzz/fuzz-toc tests/fuzz/fuzz-blob tests/fuzz/fuzz-tar \
	tests/fuzz/fuzz-multipart tests/fuzz/fuzz-manifest tests/fuzz/fuzz-transport \
	tests/fuzz/fuzz-filter tests/fuzz/fuzz-record-list tests/fuzz/fuzz-fuse-request \
	tests/fuzz/fuzz-fdstore-proto tests/fuzz/fuzz-kept-toc >/dev/null
python3 "$here/make-seeds.py" "$here/seeds" >/dev/null
# One libFuzzer process per core (each is single-threaded): the targets run
# FUZZ_JOBS at a time, their results printed in order.
jobs=${FUZZ_JOBS:-$(nproc)}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run_target() { # TARGET: its result line (and the log's end on failure) in $out/TARGET
	local t=$1 work
	work=$(mktemp -d)
	cp "$here/seeds/$t"/* "$work/" 2>/dev/null || true
	if "$bdir/tests/fuzz/$t" -max_total_time="$secs" -timeout=20 -max_len=262144 -rss_limit_mb=2048 \
		-print_final_stats=0 "$work" >"$work.log" 2>&1; then
		echo "fuzz $t: ok ($(grep -c . "$work.log") log lines, ${secs}s)" >"$out/$t"
	else
		{
			echo "fuzz $t: FAILED"
			tail -40 "$work.log"
		} >"$out/$t"
		touch "$out/$t.failed"
	fi
	rm -rf "$work" "$work.log"
}
targets=(fuzz-toc fuzz-blob fuzz-tar fuzz-multipart fuzz-manifest fuzz-transport fuzz-filter
	fuzz-record-list fuzz-fuse-request fuzz-fdstore-proto fuzz-kept-toc)
running=0
for t in "${targets[@]}"; do
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
	run_target "$t" &
	running=$((running + 1))
done
wait
status=0
for t in "${targets[@]}"; do
	cat "$out/$t" 2>/dev/null || echo "fuzz $t: no result"
	if [ -e "$out/$t.failed" ] || [ ! -e "$out/$t" ]; then
		status=1
	fi
done
exit $status
