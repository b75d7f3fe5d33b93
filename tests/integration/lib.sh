# shellcheck shell=bash
# Shared helpers for the integration tests.  Source it:
#     . "$(dirname "$0")/lib.sh"
#
# Gives each test:
#   $T            a private temp dir, removed at exit (KEEP_TMP=1 keeps it)
#   $STARGZ       the CLI under test (env STARGZ, else build/src/cmd/stargz)
#   $TESTS_DIR    tests/integration,   $REPO the repository root
#   check/pass/fail/skip/finish, run, tree_manifest, compare_trees, ...
# A test calls `finish` last: exit 0 if nothing failed, 1 otherwise.
# Exit code 77 means "skipped" (see skip).

set -uo pipefail
export LC_ALL=C

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$TESTS_DIR/../.." && pwd)
TEST_NAME=$(basename "$0" .sh)
PYTHON=${PYTHON:-python3}
export PYTHON

if [ -z "${STARGZ:-}" ]; then
	STARGZ=$REPO/build/src/cmd/stargz
fi
case $STARGZ in
/*) ;;
*) STARGZ=$PWD/$STARGZ ;;
esac
export STARGZ

N_PASS=0
N_FAIL=0
_CLEANUPS=()

# Commands run (in reverse order) at exit, before $T is removed.
on_exit() {
	_CLEANUPS+=("$*")
}

_lib_exit() {
	local rc=$? i
	for ((i = ${#_CLEANUPS[@]} - 1; i >= 0; i--)); do
		eval "${_CLEANUPS[$i]}" || true
	done
	_san_reports || rc=1
	if [ -n "${T:-}" ] && [ -d "$T" ]; then
		if [ "${KEEP_TMP:-0}" = 1 ] || { [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ "${KEEP_TMP_ON_FAIL:-0}" = 1 ]; }; then
			echo "# $TEST_NAME: kept temp dir $T" >&2
		else
			# Lift immutable bits and odd modes so nothing survives.
			chmod -R u+rwX "$T" 2>/dev/null
			rm -rf "$T"
		fi
	fi
	exit "$rc"
}

T=$(mktemp -d "${TMPDIR:-/tmp}/rs-$TEST_NAME.XXXXXX")
# A sanitized binary writes its reports to $T/sanitizer/KIND.PID whatever
# became of its stderr (a daemon's log, 2>/dev/null, a process killed later),
# and any report fails the test at exit (_san_reports).
_SAN_DIR=$T/sanitizer
mkdir -p "$_SAN_DIR"
for _v in ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS; do
	case ${!_v:-} in
	*log_path=*) ;;
	*) export "$_v=${!_v:+${!_v}:}log_path=$_SAN_DIR/$(echo "${_v%%_*}" | tr A-Z a-z)" ;;
	esac
done
unset _v
_san_reports() {
	local f ok=0
	for f in "$_SAN_DIR"/*; do
		[ -s "$f" ] || continue
		printf 'FAIL - sanitizer report from pid %s: %s\n' "${f##*.}" \
			"$(grep -m1 -E 'SUMMARY|runtime error' "$f" | cut -c1-200)"
		head -n 60 "$f" | cut -c1-300 | sed 's/^/    | /'
		ok=1
	done
	return "$ok"
}
trap _lib_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '# %s\n' "$*"; }
pass() {
	N_PASS=$((N_PASS + 1))
	printf 'ok - %s\n' "$*"
}
fail() {
	N_FAIL=$((N_FAIL + 1))
	printf 'FAIL - %s\n' "$*"
}
# Abort the test now (setup failed, nothing sensible can follow).
die() {
	printf 'FAIL - %s (aborting)\n' "$*"
	N_FAIL=$((N_FAIL + 1))
	finish
}
skip() {
	printf 'SKIP - %s\n' "$*"
	exit 77
}
finish() {
	printf '# %s: %d passed, %d failed\n' "$TEST_NAME" "$N_PASS" "$N_FAIL"
	[ "$N_FAIL" -eq 0 ] && exit 0
	exit 1
}

# check DESC CMD...: pass if CMD exits 0, else fail and show its output.
check() {
	local desc=$1
	shift
	local out
	if out=$("$@" 2>&1); then
		pass "$desc"
	else
		local rc=$?
		fail "$desc (exit $rc: $*)"
		show_text "$out"
		return 1
	fi
}

# Print the first lines of a text (or file with -f), indented, for diagnostics.
show_text() {
	printf '%s\n' "$1" | head -n "${SHOW_LINES:-40}" | sed 's/^/    | /'
}
show_file() {
	[ -s "$1" ] || {
		echo "    | (${2:-$(basename "$1")} empty)"
		return
	}
	echo "    | --- ${2:-$(basename "$1")}:"
	head -n "${SHOW_LINES:-40}" "$1" | cut -c1-400 | sed 's/^/    | /'
}

# run NAME CMD...: run CMD, stdout -> $T/NAME.out, stderr -> $T/NAME.err,
# exit code in $RC.  Never fails itself.
RC=0
run() {
	local name=$1
	shift
	"$@" >"$T/$name.out" 2>"$T/$name.err"
	RC=$?
	return 0
}

# sg NAME ARGS...: run the CLI under test like run().
sg() {
	local name=$1
	shift
	run "$name" "$STARGZ" "$@"
}

# expect_rc DESC WANT NAME: compare $RC with WANT ("0", "3", "1|3", ...),
# and show NAME's stdout/stderr on mismatch.  A crash (>= 128) always fails.
expect_rc() {
	local desc=$1 want=$2 name=$3
	if [ "$RC" -ge 128 ]; then
		fail "$desc: crashed with exit $RC (signal $((RC - 128)))"
		show_file "$T/$name.err" stderr
		return 1
	fi
	if [[ "|$want|" == *"|$RC|"* ]]; then
		pass "$desc (exit $RC)"
		return 0
	fi
	fail "$desc: exit $RC, want $want"
	show_file "$T/$name.out" stdout
	show_file "$T/$name.err" stderr
	return 1
}

# Require the CLI to exist; tests cannot do anything without it.
need_stargz() {
	[ -x "$STARGZ" ] || die "CLI not found: $STARGZ (build it or set STARGZ)"
}

need_root() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
}

# tree_manifest DIR [OPTIONS]: canonical, sorted description of DIR.
tree_manifest() {
	"$PYTHON" "$TESTS_DIR/tree_manifest.py" "$@"
}

# Paths an eStargz blob adds that the source tar does not have.
# shellcheck disable=SC2034
ESGZ_EXTRA=(--exclude stargz.index.json --exclude .prefetch.landmark
	--exclude .no.prefetch.landmark)

# compare_trees DESC WANT_DIR GOT_DIR [tree_manifest OPTIONS]
compare_trees() {
	local desc=$1 a=$2 b=$3
	shift 3
	local ma mb
	ma=$(mktemp "$T/manifest.XXXXXX")
	mb=$(mktemp "$T/manifest.XXXXXX")
	tree_manifest "$a" "$@" >"$ma" || {
		fail "$desc: cannot scan $a"
		return 1
	}
	tree_manifest "$b" "$@" >"$mb" || {
		fail "$desc: cannot scan $b"
		return 1
	}
	if cmp -s "$ma" "$mb"; then
		pass "$desc ($(wc -l <"$ma") paths)"
		rm -f "$ma" "$mb"
		return 0
	fi
	fail "$desc: trees differ (- want, + got)"
	diff -u "$ma" "$mb" | tail -n +3 | grep '^[-+]' | head -n "${SHOW_LINES:-40}" | cut -c1-400 |
		sed 's/^/    | /'
	return 1
}

# gnu_extract ARCHIVE DIR [TAR OPTIONS]: what GNU tar makes of ARCHIVE as root.
gnu_extract() {
	local ar=$1 dir=$2
	shift 2
	mkdir -p "$dir"
	tar -C "$dir" --xattrs --xattrs-include='*' --same-owner --same-permissions \
		--numeric-owner "$@" -xf "$ar"
}

# corpus: make (or reuse) the test corpus and set $CORPUS to its dir.
# tests/run.sh builds it once and passes RS_CORPUS to every test.
corpus() {
	if [ -n "${RS_CORPUS:-}" ] && [ -f "$RS_CORPUS/FLAVOURS" ]; then
		CORPUS=$RS_CORPUS
	else
		CORPUS=$T/corpus
		bash "$TESTS_DIR/make-corpus.sh" "$CORPUS" >"$T/make-corpus.log" 2>&1 || {
			cat "$T/make-corpus.log"
			die "make-corpus.sh failed"
		}
	fi
}

# craft SPEC_JSON OUT: write an eStargz blob from a spec given as text;
# the summary JSON goes to OUT.json.
craft() {
	printf '%s' "$1" >"$2.spec.json"
	"$PYTHON" "$TESTS_DIR/craft_blob.py" "$2.spec.json" "$2" >"$2.json"
}

# json_field FILE KEY: a top-level field of a JSON object file.
json_field() {
	jq -er --arg k "$2" '.[$k]' "$1"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }
