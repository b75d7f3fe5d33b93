#!/usr/bin/env bash
# The one test command: dependencies, builds, unit tests under ASan+UBSan and
# under TSan, fuzz targets (if present), integration tests (some again with
# the ASan and the TSan binaries).  Prints one line per result
# and ends with "N passed, N failed[, N skipped]"; exits non-zero on failure.
#
# Environment:
#   RS_SKIP_DEPS=1    do not run scripts/install-deps.sh
#   RS_ONLY=PATTERN   run only integration tests whose name matches PATTERN
#   RS_QUICK=1        smaller integration matrices
#   RS_NO_ASAN_INTEGRATION=1  skip re-running test-bad-input.sh with the ASan CLI
#   RS_NO_TSAN=1      no ThreadSanitizer build, unit tests or integration reruns
#   RS_NO_TSAN_INTEGRATION=1  TSan build and unit tests only
#   RS_TSAN_ONLY=1    only the TSan build, its unit tests and its integration
#                     reruns (no build/, build-asan/, fuzz or plain integration)
#   RS_BUILD_DIR, RS_ASAN_DIR, RS_TSAN_DIR  build directories (default build,
#                     build-asan, build-tsan; relative to the repository)
#   FUZZ_SECONDS=N    time budget passed to tests/fuzz/run-fuzz.sh (default 20 per target, FUZZ_JOBS at a time)
#   TEST_TIMEOUT=N    seconds per integration script (default 900)
set -uo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
BUILD=${RS_BUILD_DIR:-build}
ASAN_DIR=${RS_ASAN_DIR:-build-asan}
TSAN_DIR=${RS_TSAN_DIR:-build-tsan}
TSAN_ONLY=false
[ "${RS_TSAN_ONLY:-0}" = 1 ] && TSAN_ONLY=true
TSAN_WANTED=true
[ "${RS_NO_TSAN:-0}" = 1 ] && ! $TSAN_ONLY && TSAN_WANTED=false
LOGS=$REPO/$BUILD/test-logs
$TSAN_ONLY && LOGS=$REPO/$TSAN_DIR/test-logs
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

section() { printf '\n=== %s (at %ss)\n' "$*" "$(($(date +%s) - START))"; }

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
BUILD_OK=false
ASAN_OK=false
if ! $TSAN_ONLY; then
	section "build ($BUILD/)"
	BUILD_OK=true
	if build_dir "$BUILD"; then
		result PASS "build: $BUILD/"
	else
		result FAIL "build: $BUILD/" "see $LOGS"
		BUILD_OK=false
	fi
	section "build ($ASAN_DIR/, address+undefined sanitizers)"
	ASAN_OK=true
	if build_dir "$ASAN_DIR" -Db_sanitize=address,undefined -Db_lundef=false; then
		result PASS "build: $ASAN_DIR/"
	else
		result FAIL "build: $ASAN_DIR/" "see $LOGS"
		ASAN_OK=false
	fi
fi
# gRPC is linked shared there (meson option grpc_link=auto), so that
# ignore_noninstrumented_modules hides its uninstrumented internals.
TSAN_OK=false
if $TSAN_WANTED; then
	section "build ($TSAN_DIR/, thread sanitizer)"
	TSAN_T0=$(date +%s)
	TSAN_OK=true
	if build_dir "$TSAN_DIR" -Db_sanitize=thread -Db_lundef=false; then
		result PASS "build: $TSAN_DIR/" "$(($(date +%s) - TSAN_T0))s"
	else
		result FAIL "build: $TSAN_DIR/" "see $LOGS"
		TSAN_OK=false
	fi
fi

# Sanitizer reports must not look like our exit codes 1-3.
export ASAN_OPTIONS=${ASAN_OPTIONS:-exitcode=223:abort_on_error=0:detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=223}
# A race stops the process at once with 66; lib.sh collects the report (its
# log_path) and fails the test.  Suppressions, if any, name third-party
# frames only.
TSAN_DEFAULT=halt_on_error=1:exitcode=66:second_deadlock_stack=1:ignore_noninstrumented_modules=1
[ -s tests/tsan.supp ] && TSAN_DEFAULT=$TSAN_DEFAULT:suppressions=$REPO/tests/tsan.supp
export TSAN_OPTIONS=${TSAN_OPTIONS:-$TSAN_DEFAULT}

# --- code checks -----------------------------------------------------------------
section "code checks"
# Warnings count as failures: the builds above must be clean (-Wall -Wextra).
if grep -h 'warning:' "$LOGS/ninja-$(basename "$BUILD").log" "$LOGS/ninja-$(basename "$ASAN_DIR").log" \
	"$LOGS/ninja-$(basename "$TSAN_DIR").log" 2>/dev/null |
	sort -u >"$LOGS/warnings.log" && [ -s "$LOGS/warnings.log" ]; then
	result FAIL "compiler warnings" "$(wc -l <"$LOGS/warnings.log") distinct"
	head -n 20 "$LOGS/warnings.log" | sed 's/^/    /'
else
	result PASS "compiler warnings: none"
fi
if $TSAN_ONLY; then
	:
elif command -v clang-format >/dev/null; then
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
# run_unit DIR LABEL [meson test options...]
run_unit() {
	local dir=$1 label=$2 log unit_rc
	shift 2
	log=$LOGS/unit${label:+-$label}.log
	rm -f "$dir/meson-logs/testlog.json"
	meson test -C "$dir" --print-errorlogs "$@" >"$log" 2>&1
	unit_rc=$?
	if [ -s "$dir/meson-logs/testlog.json" ]; then
		while IFS=$'\t' read -r name res dur; do
			case $res in
			OK | EXPECTEDFAIL) result PASS "unit${label:+[$label]}: $name" "${dur}s" ;;
			SKIP) result SKIP "unit${label:+[$label]}: $name" ;;
			*) result FAIL "unit${label:+[$label]}: $name" "$res" ;;
			esac
		done < <(jq -r '[.name, .result, (.duration * 10 | floor / 10 | tostring)] | @tsv' \
			"$dir/meson-logs/testlog.json")
		[ "$unit_rc" -ne 0 ] && grep -E -A20 '^(=+ [0-9]+/[0-9]+ =+|FAIL|ERROR)' "$log" |
			head -n 60 | sed 's/^/    /'
	elif grep -q 'No tests defined' "$log"; then
		echo "    (no unit tests defined yet)"
	elif [ "$unit_rc" -ne 0 ]; then
		result FAIL "unit${label:+[$label]}: meson test" "exit $unit_rc"
		tail -n 30 "$log" | sed 's/^/    /'
	fi
}
if ! $TSAN_ONLY; then
	section "unit tests (meson test -C $ASAN_DIR)"
	if $ASAN_OK; then
		run_unit "$ASAN_DIR" ""
	else
		echo "    (not run: ASan build failed)"
	fi
fi
if $TSAN_WANTED; then
	# TSan runs them 3-10x slower: meson's per-test timeouts are stretched.
	section "unit tests under ThreadSanitizer (meson test -C $TSAN_DIR)"
	if $TSAN_OK; then
		TSAN_T0=$(date +%s)
		run_unit "$TSAN_DIR" tsan --timeout-multiplier 4
		echo "    ($(($(date +%s) - TSAN_T0))s)"
	else
		echo "    (not run: TSan build failed)"
	fi
fi

# --- fuzz ------------------------------------------------------------------------
if ! $TSAN_ONLY && [ -f tests/fuzz/run-fuzz.sh ]; then
	section "fuzz (tests/fuzz/run-fuzz.sh, ${FUZZ_SECONDS:-20}s budget)"
	export FUZZ_SECONDS=${FUZZ_SECONDS:-20}
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
selected() { [ -z "${RS_ONLY:-}" ] || [[ $1 == *${RS_ONLY}* ]]; }
for t in tests/integration/test-*.sh; do
	$TSAN_ONLY && break
	selected "$(basename "$t")" || continue
	if ! $BUILD_OK; then
		result FAIL "integration: $(basename "$t")" "not run: build failed"
		continue
	fi
	RS_DAEMON=$REPO/$BUILD/src/cmd/remote-snapshotter API_TEST_SERVER=$REPO/$BUILD/tests/api/api-test-server \
		API_TEST_CLIENT=$REPO/$BUILD/tests/api/api-test-client \
		run_integration "$t" "" "$REPO/$BUILD/src/cmd/stargz"
done
# Hostile input once more against the sanitized CLI: memory errors show up
# there first.
if $ASAN_OK && [ "${RS_NO_ASAN_INTEGRATION:-0}" != 1 ] && [ -f tests/integration/test-bad-input.sh ] &&
	[ -x "$ASAN_DIR/src/cmd/stargz" ] && selected test-bad-input.sh; then
	RS_SANITIZED=1 run_integration tests/integration/test-bad-input.sh asan "$REPO/$ASAN_DIR/src/cmd/stargz"
fi
# The daemon and the lazy pull end to end with sanitized binaries, and the
# crafted images, registries and layers that attack the read path.
if $ASAN_OK && [ "${RS_NO_ASAN_INTEGRATION:-0}" != 1 ] && [ -x "$ASAN_DIR/src/cmd/remote-snapshotter" ]; then
	for t in test-lazy-pull.sh test-hostile-layer.sh test-registry-creds.sh test-diffid.sh test-passthrough.sh \
		test-daemon-passthrough.sh test-restart-mount.sh test-daemon-restart.sh test-api-handover.sh; do
		[ -f "tests/integration/$t" ] && selected "$t" || continue
		RS_SANITIZED=1 RS_DAEMON=$REPO/$ASAN_DIR/src/cmd/remote-snapshotter \
			API_TEST_CLIENT=$REPO/$ASAN_DIR/tests/api/api-test-client \
			run_integration "tests/integration/$t" asan "$REPO/$ASAN_DIR/src/cmd/stargz"
	done
fi
# The threaded parts with the TSan binaries: layerfs's worker pool and
# fetcher under concurrent readers, faults and the disk cache (stargz mount),
# the daemon with containerd and its restarts, the API server's poller and
# handlers. (stargz build's parallel compression runs under TSan in the unit
# tests; test-bad-input's hostile archives are the ASan run's job.)
if $TSAN_OK && [ "${RS_NO_TSAN_INTEGRATION:-0}" != 1 ]; then
	TSAN_T0=$(date +%s)
	for t in test-mount.sh test-mount-faults.sh test-lazy-pull.sh test-snapshots-api.sh \
		test-hostile-layer.sh test-registry-creds.sh test-diffid.sh test-passthrough.sh test-daemon-passthrough.sh \
		test-restart-mount.sh test-daemon-restart.sh; do
		[ -f "tests/integration/$t" ] && selected "$t" || continue
		RS_SANITIZED=1 RS_DAEMON=$REPO/$TSAN_DIR/src/cmd/remote-snapshotter \
			API_TEST_SERVER=$REPO/$TSAN_DIR/tests/api/api-test-server \
			API_TEST_CLIENT=$REPO/$TSAN_DIR/tests/api/api-test-client \
			run_integration "tests/integration/$t" tsan "$REPO/$TSAN_DIR/src/cmd/stargz"
	done
	echo "    (TSan integration: $(($(date +%s) - TSAN_T0))s)"
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
