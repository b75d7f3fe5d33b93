#!/usr/bin/env bash
# The daemon's configuration: TOML file, flags over it, errors that name the
# key and line, the socket and root where they are configured.
. "$(dirname "$0")/lib.sh"

need_root
command -v ss >/dev/null || skip "ss not installed"
RSD=${RS_DAEMON:-$REPO/build/src/cmd/remote-snapshotter}
[ -x "$RSD" ] || skip "remote-snapshotter not built"

# --- bad files: exit 2, naming the key and the line ----------------------------------
cat >"$T/bad-key.toml" <<'TOML'
root = "/tmp/x"

[fetch]
prefetch = true
prefech_timeout = 3
TOML
run badkey timeout 20 "$RSD" --config "$T/bad-key.toml"
expect_rc "an unknown key is refused" 2 badkey
check "the message names the key and its line" grep -q 'bad-key.toml:5: unknown key "fetch.prefech_timeout"' "$T/badkey.err"

cat >"$T/bad-type.toml" <<'TOML'
[cache]
memory_mib = "lots"
TOML
run badtype timeout 20 "$RSD" --config "$T/bad-type.toml"
expect_rc "a wrong type is refused" 2 badtype
check "the message names the key" grep -q 'bad-type.toml:2: "memory_mib" must be an integer' "$T/badtype.err"

printf 'root = "unterminated\n' >"$T/bad-syntax.toml"
run badsyntax timeout 20 "$RSD" --config "$T/bad-syntax.toml"
expect_rc "TOML that does not parse is refused" 2 badsyntax
check "with the file and line" grep -q 'bad-syntax.toml:1' "$T/badsyntax.err"

run nofile timeout 20 "$RSD" --config "$T/missing.toml"
expect_rc "a missing config file is refused" 2 nofile

cat >"$T/bad-level.toml" <<'TOML'
log_level = "loud"
TOML
run badlevel timeout 20 "$RSD" --config "$T/bad-level.toml" --root "$T/r0" --address "$T/s0.sock"
expect_rc "an unknown log level is refused" 2 badlevel
check "and named" grep -q 'log_level "loud"' "$T/badlevel.err"

# [verify]: its keys are checked like the others'.
cat >"$T/bad-verify.toml" <<'TOML'
[verify]
allow_unverified = false
[verify.hosts."127.0.0.1:5000"]
allow_unverifed = true
TOML
run badverify timeout 20 "$RSD" --config "$T/bad-verify.toml"
expect_rc "an unknown key in a [verify.hosts] table is refused" 2 badverify
check "the message names the host's key and its line" \
	grep -q 'bad-verify.toml:4: unknown key "verify.hosts."127.0.0.1:5000".allow_unverifed"' "$T/badverify.err"
cat >"$T/bad-verify-type.toml" <<'TOML'
[verify]
allow_unverified = "yes"
TOML
run badverifytype timeout 20 "$RSD" --config "$T/bad-verify-type.toml"
expect_rc "[verify] allow_unverified must be a boolean" 2 badverifytype
check "the message names it" grep -q 'bad-verify-type.toml:2: "allow_unverified" must be true or false' "$T/badverifytype.err"
cat >"$T/bad-passthrough.toml" <<'TOML'
[fuse]
passthrough = "sometimes"
TOML
run badpt timeout 20 "$RSD" --config "$T/bad-passthrough.toml"
expect_rc "[fuse] passthrough must be off, auto or on" 2 badpt
check "the message names it and its line" grep -q 'bad-passthrough.toml:2: fuse.passthrough must be "off", "auto" or "on", not "sometimes"' "$T/badpt.err"
cat >"$T/bad-verify-dup.toml" <<'TOML'
[verify.hosts."a:1"]
allow_unverified = true
[verify.hosts."b:1"]
TOML
run badverifyempty timeout 20 "$RSD" --config "$T/bad-verify-dup.toml"
expect_rc "a [verify.hosts] table without allow_unverified is refused" 2 badverifyempty
check "naming the host" grep -q 'verify.hosts."b:1": allow_unverified is missing' "$T/badverifyempty.err"

run badflag timeout 20 "$RSD" --no-such-flag
expect_rc "an unknown flag is a usage error" 2 badflag

# --- a good file, and flags over it ---------------------------------------------------
cat >"$T/good.toml" <<TOML
root = "$T/root-from-file"
address = "$T/from-file.sock"
log_level = "debug"
log_format = "json"
api_threads = 2

[cache]
dir = "$T/cache-from-file"
max_mib = 64
memory_mib = 32

[fetch]
prefetch = false
background_fetch = false
read_timeout_sec = 5
fuse_workers = 2
fetchers = 1

[registry]
plain_http = true
request_timeout_sec = 5
TOML
# A stop leaves the socket to the next start, in an fd holder: ended at exit.
on_exit 'h=$(pgrep -f -x ".*rs-fd-holder .*$T/root-from-file/fd-holder.sock"); [ "${h:-0}" -gt 1 ] && kill -KILL "$h"'
start_daemon() { # NAME ARGS...
	local name=$1
	shift
	mkfifo "$T/$name.fifo"
	"$RSD" "$@" >"$T/$name.fifo" 2>"$T/$name.err" &
	DPID=$!
	on_exit "kill -TERM $DPID 2>/dev/null; wait $DPID 2>/dev/null"
	local line=''
	read -r -t 30 line <"$T/$name.fifo"
	[ "$line" = ready ]
}
if start_daemon good --config "$T/good.toml"; then
	pass "the daemon starts from the file"
	check "the socket is where the file says" test -S "$T/from-file.sock"
	check "metadata is in the file's root" test -f "$T/root-from-file/metadata.db"
	check "the cache is in the file's cache dir" test -d "$T/cache-from-file"
	check "log_format = json: the log lines are JSON" \
		sh -c "head -1 '$T/good.err' | jq -e .msg >/dev/null || head -1 '$T/good.err' | jq -e . >/dev/null"
	kill -TERM "$DPID"
	wait "$DPID"
	RC=$?
	check "SIGTERM: exit 0 ($RC)" [ "$RC" -eq 0 ]
	check "the socket stays at exit, kept for the next start" test -S "$T/from-file.sock"
else
	fail "the daemon did not start from the file"
	show_file "$T/good.err"
fi

if start_daemon over --config "$T/good.toml" --address "$T/from-flag.sock" --log-format text; then
	check "a flag overrides the file (--address)" test -S "$T/from-flag.sock"
	check "and the file's value is not used (the socket kept there is not served)" \
		test -z "$(ss -xlH | awk -v p="$T/from-file.sock" '$5 == p')"
	check "--log-format text overrides json" grep -q ' info ' "$T/over.err"
	kill -TERM "$DPID"
	wait "$DPID"
else
	fail "the daemon did not start with flags over the file"
	show_file "$T/over.err"
fi

finish
