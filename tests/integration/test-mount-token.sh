#!/usr/bin/env bash
# `stargz mount` of a layer behind a token-auth docker-registry keeps working
# across bearer-token expiry and a registry restart, with no remount
# ("connections and tokens are renewed by themselves when it comes back"):
#   * token server with --expires 3; a lazy mount (--no-prefetch
#     --no-background-fetch --timeout 10, credentials from DOCKER_CONFIG);
#   * file 1 reads right; past the token's lifetime file 2 reads right and the
#     token server was asked again (the mount fetched a new token by itself).
#     Note: docker-registry (distribution 2.8) accepts a token up to 60 s past
#     its exp (jwt Leeway), and the mount renews a token when its expires_in
#     runs out, so here the renewal happens before the registry could refuse
#     the old token; the count of 401s the mount got is logged, not asserted;
#   * the registry stopped (token server kept): file 1 (page cache dropped)
#     still reads from the mount's cache, an uncached file gets EIO within the
#     timeout, status says registry_ok false;
#   * the registry restarted on the same port with the same storage: file 3
#     and the file that failed read right, status says registry_ok true;
#   * SIGTERM: exit 0, nothing left mounted.
# Skips (77) while `stargz mount` is missing, without python3-jwt.  Everything
# on 127.0.0.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
need_mount
need_tools docker-registry skopeo curl jq tar mountpoint timeout

MC=("$RIG_PY" "$TESTS_DIR/mount_check.py")
EXPIRES=3
TMO=10
T_START=$SECONDS

registry_start_token --expires "$EXPIRES" || die "token registry"
grep -q -- "--expires $EXPIRES" <<<"$(tr '\0' ' ' </proc/"$TOKEN_SERVER_PID"/cmdline)" ||
	die "token server not started with --expires $EXPIRES"
R=$TOKEN_REG

# --- the layer ----------------------------------------------------------------------------
# Six files of 300-400 KiB of random bytes: each larger than the 64 KiB
# "small following chunk" a fetch takes along, and readahead stays inside a
# file, so every file is fetched on its own.
S=$T/src
mkdir -p "$S/d"
"$RIG_PY" - "$S/d" <<'PY' || die "source files"
import os, random, sys
r = random.Random(1207)
for i in range(1, 7):
    with open(os.path.join(sys.argv[1], "f%d" % i), "wb") as f:
        f.write(r.randbytes((300 + 20 * i) << 10))
PY
(cd "$S" && sha256sum d/f*) >"$T/sums"
[ "$(cut -d' ' -f1 "$T/sums" | sort -u | wc -l)" = 6 ] || die "the six files are not distinct"
find "$S" -exec touch -h -d @1614834367 {} +
tar -C "$S" --sort=name --numeric-owner --owner=0 --group=0 -cf "$T/l.tar" d || die "l.tar"
"$STARGZ" build "$T/l.tar" "$T/l.esgz" >"$T/l.esgz.json" || die "stargz build"
DG=$(jq -r .digest "$T/l.esgz.json")
# push_image uses skopeo, which reads credentials from an auth file.
DOCKER_CONFIG=$TOKEN_DOCKER_CONFIG REGISTRY_AUTH_FILE=$TOKEN_DOCKER_CONFIG/config.json \
	push_image "$R" rs/token:v1 "$T/l.esgz" || die "push rs/token:v1 to the token registry"
jq -e 'select(.result == 200 and .user == "'"$TOKEN_USER"'") | .access[] |
	select(.name == "rs/token" and (.actions | index("push")))' "$TOKEN_LOG" >/dev/null &&
	pass "layer $DG pushed to the token registry $R with a push token" ||
	die "no push token in the token server's log"
X=$T/x
gnu_extract "$T/l.esgz" "$X" -z || die "GNU tar cannot extract the layer"
(cd "$X" && sha256sum -c --quiet "$T/sums") >/dev/null 2>&1 || die "the layer does not hold the source files"

readfile() { # NAME FILE [--evict]: mount_check.py readfile of d/FILE, JSON in $T/NAME.out
	local name=$1 f=$2
	shift 2
	run "$name" timeout $((3 * TMO + 30)) "${MC[@]}" readfile "$@" "$M/d/$f" "$X/d/$f"
}
status_of() { timeout 20 cat "$M/$STATUS_REL" 2>/dev/null; }
fetched() { status_of | jq -r '.fetched_bytes // 0'; }
ntok() { token_requests 200; }

# --- mount ---------------------------------------------------------------------------------
M=$T/m
mkdir -p "$M"
: >"$TOKEN_LOG"
DOCKER_CONFIG=$TOKEN_DOCKER_CONFIG mount_start m --plain-http --allow-unverified --no-prefetch --no-background-fetch \
	--timeout "$TMO" "$R/rs/token:v1" "$DG" "$M" || die "stargz mount from the token registry"
MP=$MOUNT_PID
MNT_ID=$(findmnt -n -o ID --mountpoint "$M")
[ "$(ntok)" -ge 1 ] && pass "mounted from the token registry ($(ntok) token(s) issued)" ||
	fail "mounted, but the token server issued no token"
jq -e 'select(.result == 200) | .user == "'"$TOKEN_USER"'"' "$TOKEN_LOG" >/dev/null ||
	fail "the mount's token was not issued to $TOKEN_USER (credentials from DOCKER_CONFIG)"

# --- 1: a first read -----------------------------------------------------------------------
readfile r1 f1
expect_read_ok "file 1 reads right" r1
n1=$(ntok)
t1=$SECONDS
b1=$(fetched)
# 401s on repository paths (not the /v2/ probes) in the registry's access log
repo401() { grep -c '"[A-Z]* /v2/[^ "]*/[^ "]* HTTP/[0-9.]*" 401 ' "$TOKEN_DIR/registry.log"; }
u1=$(repo401)

# --- 2: past the token's lifetime ----------------------------------------------------------
sleep $((EXPIRES + 2))
readfile r2 f2
expect_read_ok "file 2 reads right $((SECONDS - t1)) s later, past the token's ${EXPIRES} s lifetime" r2
n2=$(ntok)
b2=$(fetched)
check "file 2 came from the registry (fetched_bytes $b1 -> $b2)" [ "$b2" -gt "$b1" ]
if [ "$n2" -gt "$n1" ]; then
	pass "a new token was issued for it ($n1 -> $n2 tokens; 401s the registry answered in between: $(($(repo401) - u1)))"
else
	fail "no new token after expiry ($n1 -> $n2): the read used an expired token?"
	show_file "$TOKEN_LOG" token.log
fi
jq -e 'select(.result != 200)' "$TOKEN_LOG" >/dev/null &&
	{ fail "the token server refused a request"; show_file "$TOKEN_LOG" token.log; }

# --- 3: the registry goes away (the token server stays) -----------------------------------
REG_PORT=${R##*:}
rig_stop "$TOKEN_PID"
if curl -s -o /dev/null --max-time 2 "http://$R/v2/"; then
	die "the registry still answers on $R after it was stopped"
fi
pass "registry stopped (token server $TOKEN_SERVER still up)"
readfile d1 f1 --evict
expect_read_ok "registry down: file 1 (page cache dropped) still reads from the mount's cache" d1
readfile d4 f4
if [ "$RC" = 124 ]; then
	fail "registry down: the read of uncached file 4 hung (killed after $((3 * TMO + 30)) s)"
elif ! jq -e '.wrong | not' "$T/d4.out" >/dev/null 2>&1; then
	fail "registry down: WRONG BYTES from file 4: $(cat "$T/d4.out")"
elif jq -e --argjson b "$((TMO + 2))" '(.ok | not) and .errno == "EIO" and .secs < $b' "$T/d4.out" >/dev/null 2>&1; then
	pass "registry down: uncached file 4 gets EIO within the ${TMO} s timeout ($(jq -r '"\(.secs) s"' "$T/d4.out"))"
else
	fail "registry down: want EIO from file 4 within ${TMO} s (+2), got $(cat "$T/d4.out")"
	show_file "$T/d4.err"
fi
status_of >"$T/st-down"
jq -e '.registry_ok == false and .mounted == true' "$T/st-down" >/dev/null &&
	pass "registry down: status says registry_ok false ($(jq -c '{fetch_errors, state}' "$T/st-down"))" ||
	{ fail "registry down: status does not show the registry down"; show_file "$T/st-down"; }
is_mounted "$M" || fail "registry down: the mount went away"

# --- 4: the registry comes back on the same port, same storage ----------------------------
# Token expiry is kept in play: wait past the lifetime of any token cached so far.
sleep $((EXPIRES + 1))
up=false
for _ in 1 2 3 4 5 6 7 8 9 10; do
	docker-registry serve "$TOKEN_DIR/config.yml" >>"$TOKEN_DIR/registry.log" 2>&1 &
	TOKEN_PID=$!
	_RIG_PIDS+=("$TOKEN_PID")
	if rig_wait_http "http://$R/v2/" "$TOKEN_PID" >/dev/null; then
		up=true
		break
	fi
	rig_stop "$TOKEN_PID"
	sleep 0.5 # the port may be held for a moment still
done
$up || { show_file "$TOKEN_DIR/registry.log" registry.log; die "docker-registry did not restart on port $REG_PORT"; }
pass "registry restarted on $R (pid $TOKEN_PID, same config and storage)"
n3=$(ntok)
b3=$(fetched)
readfile r3 f3
expect_read_ok "registry back: file 3 reads right without a remount" r3
b4=$(fetched)
check "file 3 came from the restarted registry (fetched_bytes $b3 -> $b4)" [ "$b4" -gt "$b3" ]
n4=$(ntok)
check "a new token was issued after the restart ($n3 -> $n4)" [ "$n4" -gt "$n3" ]
readfile r4 f4
expect_read_ok "registry back: file 4 (which failed while it was down) reads right" r4
readfile r5 f5
expect_read_ok "registry back: file 5 reads right" r5
status_of >"$T/st-back"
jq -e '.registry_ok == true' "$T/st-back" >/dev/null &&
	pass "registry back: status says registry_ok true ($(jq -c '{fetch_errors, fetched_bytes, data_bytes}' "$T/st-back"))" ||
	{ fail "registry back: registry_ok not true"; show_file "$T/st-back"; }
readfile r1b f1 --evict
expect_read_ok "registry back: file 1 still reads right" r1b
check "the mount process is the one started at the beginning" kill -0 "$MP"
id=$(findmnt -n -o ID --mountpoint "$M")
check "no remount: $M is still mount $MNT_ID (now: $id)" [ -n "$MNT_ID" -a "$id" = "$MNT_ID" ]

# --- 5: unmount ------------------------------------------------------------------------------
mount_stop "$MP"
[ "$RC" = 0 ] && pass "SIGTERM: the mount exits 0 ($STOP_SECS s)" || {
	fail "SIGTERM: exit $RC"
	show_file "$T/m.err" stderr
}
if is_mounted "$M" || findmnt -rn -o TARGET | grep -qF "$T/"; then
	fail "something is still mounted under $T"
	findmnt -rn -o TARGET | grep -F "$T/" | sed 's/^/    | /'
else
	pass "nothing left mounted"
fi
grep -qi -e "$TOKEN_PASS" -e 'Bearer ey' "$T/m.out" "$T/m.err" &&
	fail "the mount's output shows the password or a token"
log "token requests: $(token_requests) ($(ntok) issued); run time $((SECONDS - T_START)) s"

finish
