#!/usr/bin/env bash
# The one test command: dependencies, builds, unit tests under ASan+UBSan,
# fuzz targets (if present), integration tests.  Prints one line per result
# and ends with "N passed, N failed[, N skipped]"; exits non-zero on failure.
#
# Environment:
#   RS_SKIP_DEPS=1    do not run scripts/install-deps.sh
#   RS_ONLY=PATTERN   run only integration tests whose name matches PATTERN
#   RS_QUICK=1        smaller integration matrices
#   RS_NO_ASAN_INTEGRATION=1  skip re-running test-bad-input.sh with the ASan CLI
#   FUZZ_SECONDS=N    time budget passed to tests/fuzz/run-fuzz.sh (default 30)
#   TEST_TIMEOUT=N    seconds per integration script (default 900)
set -uo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
LOGS=$REPO/build/test-logs
START=$(date +%s)

N_PASS=0
N_FAIL=0
N_SKIP=0
RESULTS=()

result() { # STATUS NAME [NOTE]
	local line
	line=$(printf '%-4s %s%s' "$1" "$2" "${3:+ ($3)}")
	RESULTS+=("$line")
	echo "$line"
	case $1 in
	PASS) N_PASS=$((N_PASS + 1)) ;;
	FAIL) N_FAIL=$((N_FAIL + 1)) ;;
	SKIP) N_SKIP=$((N_SKIP + 1)) ;;
	esac
}

section() { printf '\n=== %s\n' "$*"; }

# Show what went wrong in a log without drowning the console.
show_log_failure() {
	local log=$1
	if grep -qE '^(FAIL|not ok)' "$log"; then
		grep -E -A6 '^(FAIL|not ok)' "$log" | grep -vE '^(ok|#|--$)' | head -n 60 | cut -c1-300 |
			sed 's/^/    /'
	else
		tail -n 25 "$log" | cut -c1-300 | sed 's/^/    /'
	fi
	echo "    (full log: $log)"
}

# --- dependencies --------------------------------------------------------------
if [ "${RS_SKIP_DEPS:-0}" != 1 ]; then
	section "dependencies"
	if bash scripts/install-deps.sh; then
		:
	else
		result FAIL install-deps
	fi
fi

# --- builds ----------------------------------------------------------------------
# build_dir DIR [meson options...]: set up (once) and build.
build_dir() {
	local dir=$1
	shift
	mkdir -p "$LOGS"
	if [ ! -f "$dir/build.ninja" ]; then
		if ! meson setup "$dir" "$@" >"$LOGS/setup-$(basename "$dir").log" 2>&1; then
			tail -n 30 "$LOGS/setup-$(basename "$dir").log" | sed 's/^/    /'
			return 1
		fi
	fi
	if ! ninja -C "$dir" >"$LOGS/ninja-$(basename "$dir").log" 2>&1; then
		grep -E 'error|FAILED' "$LOGS/ninja-$(basename "$dir").log" | head -n 30 | sed 's/^/    /'
		return 1
	fi
}

mkdir -p "$LOGS"
section "build (build/)"
BUILD_OK=true
if build_dir build; then
	result PASS "build: build/"
else
	result FAIL "build: build/" "see $LOGS"
	BUILD_OK=false
fi
section "build (build-asan/, address+undefined sanitizers)"
ASAN_OK=true
if build_dir build-asan -Db_sanitize=address,undefined -Db_lundef=false; then
	result PASS "build: build-asan/"
else
	result FAIL "build: build-asan/" "see $LOGS"
	ASAN_OK=false
fi

# Sanitizer reports must not look like our exit codes 1-3.
export ASAN_OPTIONS=${ASAN_OPTIONS:-exitcode=223:abort_on_error=0:detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=223}

# --- code checks -----------------------------------------------------------------
section "code checks"
# Warnings count as failures: the builds above must be clean (-Wall -Wextra).
if grep -h 'warning:' "$LOGS"/ninja-build.log "$LOGS"/ninja-build-asan.log 2>/dev/null |
	sort -u >"$LOGS/warnings.log" && [ -s "$LOGS/warnings.log" ]; then
	result FAIL "compiler warnings" "$(wc -l <"$LOGS/warnings.log") distinct"
	head -n 20 "$LOGS/warnings.log" | sed 's/^/    /'
else
	result PASS "compiler warnings: none"
fi
if command -v clang-format >/dev/null; then
	if bash tests/check-format.sh >"$LOGS/format.log" 2>&1; then
		result PASS "clang-format"
	else
		result FAIL "clang-format"
		cut -c1-400 "$LOGS/format.log" | sed 's/^/    /'
	fi
else
	result SKIP "clang-format" "not installed"
fi

# --- unit tests ------------------------------------------------------------------
section "unit tests (meson test -C build-asan)"
if $ASAN_OK; then
	rm -f build-asan/meson-logs/testlog.json
	meson test -C build-asan --print-errorlogs >"$LOGS/unit.log" 2>&1
	unit_rc=$?
	if [ -s build-asan/meson-logs/testlog.json ]; then
		while IFS=$'\t' read -r name res dur; do
			case $res in
			OK | EXPECTEDFAIL) result PASS "unit: $name" "${dur}s" ;;
			SKIP) result SKIP "unit: $name" ;;
			*) result FAIL "unit: $name" "$res" ;;
			esac
		done < <(jq -r '[.name, .result, (.duration * 10 | floor / 10 | tostring)] | @tsv' \
			build-asan/meson-logs/testlog.json)
		[ "$unit_rc" -ne 0 ] && grep -E -A20 '^(=+ [0-9]+/[0-9]+ =+|FAIL|ERROR)' "$LOGS/unit.log" |
			head -n 60 | sed 's/^/    /'
	elif grep -q 'No tests defined' "$LOGS/unit.log"; then
		echo "    (no unit tests defined yet)"
	elif [ "$unit_rc" -ne 0 ]; then
		result FAIL "unit: meson test" "exit $unit_rc"
		tail -n 30 "$LOGS/unit.log" | sed 's/^/    /'
	fi
else
	echo "    (not run: ASan build failed)"
fi

# --- fuzz ------------------------------------------------------------------------
if [ -f tests/fuzz/run-fuzz.sh ]; then
	section "fuzz (tests/fuzz/run-fuzz.sh, ${FUZZ_SECONDS:-30}s budget)"
	export FUZZ_SECONDS=${FUZZ_SECONDS:-30}
	timeout $((FUZZ_SECONDS * 10 + 300)) bash tests/fuzz/run-fuzz.sh >"$LOGS/fuzz.log" 2>&1
	rc=$?
	case $rc in
	0) result PASS "fuzz: tests/fuzz/run-fuzz.sh" ;;
	77) result SKIP "fuzz: tests/fuzz/run-fuzz.sh" ;;
	*)
		result FAIL "fuzz: tests/fuzz/run-fuzz.sh" "exit $rc"
		show_log_failure "$LOGS/fuzz.log"
		;;
	esac
fi

# --- integration -------------------------------------------------------------------
section "integration (tests/integration)"
# One corpus for all tests (make-corpus.sh takes a few seconds and 300 MB).
CORPUS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/rs-corpus.XXXXXX")
trap 'rm -rf "$CORPUS_TMP"' EXIT
if [ "$(id -u)" -eq 0 ]; then
	if bash tests/integration/make-corpus.sh "$CORPUS_TMP" >"$LOGS/make-corpus.log" 2>&1; then
		export RS_CORPUS=$CORPUS_TMP
	else
		result FAIL "integration: make-corpus.sh"
		tail -n 20 "$LOGS/make-corpus.log" | sed 's/^/    /'
	fi
fi

# run_integration SCRIPT LABEL STARGZ_PATH
run_integration() {
	local t=$1 label=$2 cli=$3 log t0 rc
	log=$LOGS/$(basename "$t" .sh)${label:+-$label}.log
	t0=$(date +%s)
	STARGZ=$cli timeout --kill-after=30 "${TEST_TIMEOUT:-900}" bash "$t" >"$log" 2>&1
	rc=$?
	local name took
	name="integration: $(basename "$t")${label:+ [$label]}"
	took="$(($(date +%s) - t0))s"
	case $rc in
	0) result PASS "$name" "$took" ;;
	77) result SKIP "$name" "$(grep -m1 '^SKIP' "$log" | cut -c8-)" ;;
	124 | 137) result FAIL "$name" "timed out after ${TEST_TIMEOUT:-900}s"; show_log_failure "$log" ;;
	*)
		result FAIL "$name" "exit $rc, $took, $(grep -c '^FAIL' "$log") failed checks"
		show_log_failure "$log"
		;;
	esac
}

shopt -s nullglob
for t in tests/integration/test-*.sh; do
	if [ -n "${RS_ONLY:-}" ] && [[ $(basename "$t") != *${RS_ONLY}* ]]; then
		continue
	fi
	if ! $BUILD_OK; then
		result FAIL "integration: $(basename "$t")" "not run: build failed"
		continue
	fi
	run_integration "$t" "" "$REPO/build/src/cmd/stargz"
done
# Hostile input once more against the sanitized CLI: memory errors show up
# there first.
if $ASAN_OK && [ "${RS_NO_ASAN_INTEGRATION:-0}" != 1 ] && [ -f tests/integration/test-bad-input.sh ] &&
	[ -x build-asan/src/cmd/stargz ] &&
	{ [ -z "${RS_ONLY:-}" ] || [[ test-bad-input.sh == *${RS_ONLY}* ]]; }; then
	RS_SANITIZED=1 run_integration tests/integration/test-bad-input.sh asan "$REPO/build-asan/src/cmd/stargz"
fi
# The daemon and the lazy pull end to end with sanitized binaries.
if $ASAN_OK && [ "${RS_NO_ASAN_INTEGRATION:-0}" != 1 ] && [ -x build-asan/src/cmd/remote-snapshotter ] &&
	{ [ -z "${RS_ONLY:-}" ] || [[ test-lazy-pull.sh == *${RS_ONLY}* ]]; }; then
	RS_SANITIZED=1 RS_DAEMON=$REPO/build-asan/src/cmd/remote-snapshotter \
		run_integration tests/integration/test-lazy-pull.sh asan "$REPO/build-asan/src/cmd/stargz"
fi

# --- summary -----------------------------------------------------------------------
section "summary ($(($(date +%s) - START))s, logs in $LOGS)"
for r in "${RESULTS[@]}"; do
	echo "$r"
done
if [ "$N_SKIP" -gt 0 ]; then
	echo "$N_PASS passed, $N_FAIL failed, $N_SKIP skipped"
else
	echo "$N_PASS passed, $N_FAIL failed"
fi
[ "$N_FAIL" -eq 0 ]
