#!/usr/bin/env bash
# `stargz mount` when the network lies or goes away: netproxy.py sits between
# the mount and a real docker-registry.
#   * corruption: the proxy flips one byte in the middle of one file's gzip
#     member, and every byte of another file's member; reading those files
#     gets EIO and never a wrong byte, other files read right, the status
#     counts the verification errors, nothing bad is cached (with the proxy
#     back to pass the same files read right without a remount);
#   * disconnection (lazy mount, --timeout 3): with the registry refusing
#     connections, then black-holed, files read before still read (from the
#     mount's cache: the page cache is dropped first) and an uncached file
#     fails with EIO in bounded time (< 3 x timeout + 5 s), registry_ok goes
#     false; back to pass, the uncached files read right without a remount;
#   * restart with the registry gone (--cache-dir): a mount reads two files
#     and stops; with the registry black-holed, a second mount on the same
#     cache dir comes up at once from the kept TOC (CACHE_DIR/toc/<hex>, no
#     request), status.json says toc_cached, the files read before read
#     right (from the disk cache; with prefetch and background fetch on as
#     well), an uncached one gets EIO; with a damaged
#     kept TOC and the registry back the mount reads the registry's and
#     keeps it again;
#   * prefetch + background (defaults): status reaches 100 % / complete, then
#     with the registry refusing connections every file reads right;
#   * prefetch landmark (`stargz build --prioritized-files`,
#     --no-background-fetch): once the state leaves "prefetching", with the
#     registry refusing, the prioritised files read and the others get EIO.
# Skips (77) while `stargz mount` is missing.  Everything on 127.0.0.1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
need_mount
need_tools docker-registry skopeo curl jq tar gzip mountpoint timeout

MC=("$RIG_PY" "$TESTS_DIR/mount_check.py")
TMO=3
BOUND=$((3 * TMO + 5))
LANDMARKS=(--exclude .prefetch.landmark --exclude .no.prefetch.landmark --exclude stargz.index.json)

registry_start_plain || die "plain registry"
R=$PLAIN_REG

# --- images --------------------------------------------------------------------------
# files/fNN and prio/* and other/* are 100 KB of random bytes: more than the
# 64 KiB "small following chunk" a fetch may take along, so each file is
# fetched on its own.
S=$T/src
mkdir -p "$S/files" "$S/corrupt" "$S/big" "$S/small"
"$RIG_PY" - "$S" <<'PY' || die "source files"
import os, random, sys
d = sys.argv[1]
r = random.Random(21)
def w(p, b):
    with open(os.path.join(d, p), "wb") as f:
        f.write(b)
for i in range(12):
    w("files/f%02d" % i, r.randbytes(100_000))
w("corrupt/one-byte", r.randbytes(200_000))
w("corrupt/whole", r.randbytes(150_000))
w("big/b1", r.randbytes(4 << 20))
for i in range(4):
    w("small/s%d" % i, b"small file %d\n" % i)
PY
find "$S" -exec touch -h -d @1614834367 {} +
tar -C "$S" --sort=name --numeric-owner --owner=0 --group=0 -cf "$T/f.tar" big corrupt files small || die "f.tar"
"$STARGZ" build --chunk-size 1048576 "$T/f.tar" "$T/f.esgz" >"$T/f.esgz.json" || die "stargz build"
push_image "$R" rs/faults:v1 "$T/f.esgz" || die "push rs/faults:v1"
DG=$(jq -r .digest "$T/f.esgz.json")
X=$T/x
gnu_extract "$T/f.esgz" "$X" -z || die "GNU tar cannot extract the layer"
"$STARGZ" toc "$T/f.esgz" >"$T/f.toc" || die "stargz toc"
tree_manifest "$X" "${LANDMARKS[@]}" >"$T/want-b"

P=$T/psrc
mkdir -p "$P/prio" "$P/other"
"$RIG_PY" - "$P" <<'PY' || die "prio files"
import os, random, sys
d = sys.argv[1]
r = random.Random(22)
for n in ("prio/p1", "prio/p2", "other/o1", "other/o2", "other/o3", "other/o4"):
    with open(os.path.join(d, n), "wb") as f:
        f.write(r.randbytes(100_000))
PY
find "$P" -exec touch -h -d @1614834367 {} +
tar -C "$P" --sort=name --numeric-owner --owner=0 --group=0 -cf "$T/p.tar" other prio || die "p.tar"
printf '%s\n' prio/p1 prio/p2 >"$T/prio.list"
"$STARGZ" build --prioritized-files "$T/prio.list" "$T/p.tar" "$T/p.esgz" >"$T/p.esgz.json" || die "stargz build --prioritized-files"
push_image "$R" rs/prio:v1 "$T/p.esgz" || die "push rs/prio:v1"
PDG=$(jq -r .digest "$T/p.esgz.json")
gnu_extract "$T/p.esgz" "$T/px" -z || die "GNU tar cannot extract the prio layer"
if "$STARGZ" toc "$T/p.esgz" | jq -e '[.entries[] | select(.type != "chunk") | .name] as $n |
	($n | index(".prefetch.landmark")) as $l | $l != null and
	($n | index("prio/p1")) < $l and ($n | index("prio/p2")) < $l and ($n | index("other/o1")) > $l' >/dev/null; then
	pass "prio layer: prio/p1 and prio/p2 come before .prefetch.landmark, other/* after"
else
	fail "prio layer: unexpected TOC order"
	"$STARGZ" toc "$T/p.esgz" | jq -c '[.entries[] | .name]' | cut -c1-300 | sed 's/^/    | /'
fi
pass "images pushed: rs/faults:v1 ($DG), rs/prio:v1 ($PDG)"

# member NAME: "START:END", the byte range of the gzip member holding NAME's
# first chunk (from its TOC offset to the next offset in the blob).
member() {
	jq -r --arg n "$1" '[.entries[] | select(.offset != null) | .offset] as $all |
		(.entries[] | select(.name == $n and .type == "reg") | .offset) as $o |
		"\($o):\([$all[] | select(. > $o)] | min)"' "$T/f.toc"
}

# readfile_json NAME FILE REF [--evict]: mount_check.py readfile; JSON in $T/NAME.out
readfile() {
	local name=$1 f=$2 ref=$3
	shift 3
	run "$name" timeout $((BOUND + 30)) "${MC[@]}" readfile "$@" "$f" "$ref"
}
# expect_read_eio DESC NAME: EIO, no wrong byte, within $BOUND s.
expect_read_eio() {
	if [ "$RC" = 124 ]; then
		fail "$1: the read hung (killed after $((BOUND + 30)) s)"
		return 1
	fi
	if ! jq -e '.wrong | not' "$T/$2.out" >/dev/null 2>&1; then
		fail "$1: WRONG BYTES returned: $(cat "$T/$2.out")"
		return 1
	fi
	if jq -e --argjson b "$BOUND" '(.ok | not) and .errno == "EIO" and .secs < $b' "$T/$2.out" >/dev/null 2>&1; then
		pass "$1 ($(jq -r '"EIO after \(.bytes) bytes, \(.secs) s"' "$T/$2.out"))"
		return 0
	fi
	fail "$1: want EIO within $BOUND s, got $(cat "$T/$2.out")"
	show_file "$T/$2.err"
	return 1
}
status_of() { timeout 20 cat "$1/$STATUS_REL" 2>/dev/null; }

# --- corruption ------------------------------------------------------------------------
R1=$(member corrupt/one-byte)
R2=$(member corrupt/whole)
mid=$(((${R1%:*} + ${R1#*:}) / 2))
netproxy_start XP --flip-range "$mid:$((mid + 1))" --flip-range "$R2" || die "netproxy --flip-range"
log "corrupt/one-byte member $R1 (flipping byte $mid), corrupt/whole member $R2 (flipping all of it)"
M=$T/mc
mkdir -p "$M"
if mount_start mc --plain-http --allow-unverified --no-prefetch --no-background-fetch --timeout "$TMO" "$XP/rs/faults:v1" "$DG" "$M"; then
	proxy_mode XP flip
	readfile c-one "$M/corrupt/one-byte" "$X/corrupt/one-byte"
	expect_read_eio "corruption: a file whose member has one flipped byte gets EIO, no wrong byte" c-one
	readfile c-whole "$M/corrupt/whole" "$X/corrupt/whole"
	expect_read_eio "corruption: a file whose member is entirely flipped gets EIO, no wrong byte" c-whole
	run c-cat timeout $((BOUND + 30)) cat "$M/corrupt/one-byte"
	if [ "$RC" != 0 ] && grep -qi 'input/output error' "$T/c-cat.err"; then
		pass "corruption: cat fails with 'Input/output error' ($(size_of "$T/c-cat.out") bytes on stdout)"
	else
		fail "corruption: cat exit $RC: $(head -c 200 "$T/c-cat.err")"
	fi
	cmp -s "$T/c-cat.out" <(head -c "$(size_of "$T/c-cat.out")" "$X/corrupt/one-byte") ||
		fail "corruption: cat printed wrong bytes"
	for f in files/f00 files/f07 big/b1 small/s2; do
		readfile "c-ok-${f//\//_}" "$M/$f" "$X/$f"
		expect_read_ok "corruption: $f (not flipped) reads right" "c-ok-${f//\//_}"
	done
	if jq -se 'map(select(.flipped > 0)) | length > 0' "$XP_LOG" >/dev/null; then
		pass "corruption: the proxy did deliver flipped bytes ($(jq -s 'map(.flipped) | add' "$XP_LOG") in all)"
	else
		fail "corruption: the proxy flipped nothing; the test proves nothing"
		show_file "$XP_LOG"
	fi
	status_of "$M" >"$T/st-c"
	jq -e '.verify_errors > 0' "$T/st-c" >/dev/null &&
		pass "corruption: status counts verify_errors ($(jq -c '{verify_errors, fetch_errors}' "$T/st-c"))" ||
		{ fail "corruption: status shows no verify_errors"; show_file "$T/st-c"; }
	proxy_mode XP pass
	readfile c-one2 "$M/corrupt/one-byte" "$X/corrupt/one-byte"
	expect_read_ok "corruption: with the proxy back to pass, corrupt/one-byte reads right (bad data was not cached)" c-one2
	readfile c-whole2 "$M/corrupt/whole" "$X/corrupt/whole"
	expect_read_ok "corruption: with the proxy back to pass, corrupt/whole reads right" c-whole2
	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] || fail "corruption mount: exit $RC at SIGTERM"
fi

# --- disconnection ------------------------------------------------------------------------
netproxy_start YP || die "netproxy"
M=$T/md
mkdir -p "$M"
if mount_start md --plain-http --allow-unverified --no-prefetch --no-background-fetch --timeout "$TMO" "$YP/rs/faults:v1" "$DG" "$M"; then
	nblob=$(jq -s '[.[] | select(.path | test("/blobs/"))] | length' "$YP_LOG")
	check "mount read the footer and TOC with at most two blob requests ($nblob)" [ "$nblob" -le 2 ]
	ok=true
	for f in files/f00 files/f01 files/f02 big/b1 small/s0; do
		readfile "d-warm-${f//\//_}" "$M/$f" "$X/$f"
		jq -e '.ok and (.wrong | not)' "$T/d-warm-${f//\//_}.out" >/dev/null || {
			ok=false
			fail "disconnection: first read of $f: $(cat "$T/d-warm-${f//\//_}.out")"
		}
	done
	$ok && pass "disconnection: files/f00..f02, big/b1, small/s0 read while connected"

	for mode in refuse blackhole; do
		proxy_mode YP "$mode"
		ok=true
		for f in files/f00 files/f01 files/f02 big/b1 small/s0; do
			readfile "d-$mode-c-${f//\//_}" "$M/$f" "$X/$f" --evict
			jq -e '.ok and (.wrong | not)' "$T/d-$mode-c-${f//\//_}.out" >/dev/null || {
				ok=false
				fail "disconnection ($mode): cached $f: $(cat "$T/d-$mode-c-${f//\//_}.out")"
			}
		done
		$ok && pass "disconnection ($mode): the files read before still read (page cache dropped: from the mount's cache)"
		u=files/f03
		[ "$mode" = blackhole ] && u=files/f04
		readfile "d-$mode-u" "$M/$u" "$X/$u"
		expect_read_eio "disconnection ($mode): uncached $u gets EIO in bounded time" "d-$mode-u"
		readfile "d-$mode-u2" "$M/$u" "$X/$u"
		expect_read_eio "disconnection ($mode): and again on a second try" "d-$mode-u2"
		status_of "$M" >"$T/st-d-$mode"
		jq -e '.registry_ok == false and .mounted == true' "$T/st-d-$mode" >/dev/null &&
			pass "disconnection ($mode): status says registry_ok false ($(jq -c '{fetch_errors, state}' "$T/st-d-$mode"))" ||
			{ fail "disconnection ($mode): status does not show the registry down"; show_file "$T/st-d-$mode"; }
		is_mounted "$M" || fail "disconnection ($mode): the mount went away"

		proxy_mode YP pass
		# A request caught by the black hole ends at the request time-out; allow
		# the mount one more time-out to notice, then it must read.
		got=false
		for try in 1 2 3; do
			readfile "d-$mode-back$try" "$M/$u" "$X/$u"
			if jq -e '.ok and (.wrong | not)' "$T/d-$mode-back$try.out" >/dev/null 2>&1; then
				got=true
				break
			fi
			jq -e '.wrong | not' "$T/d-$mode-back$try.out" >/dev/null 2>&1 || break
			sleep "$TMO"
		done
		if $got; then
			pass "disconnection ($mode -> pass): $u reads right without a remount (attempt $try$([ "$try" -gt 1 ] && echo ", earlier: $(jq -r .error "$T/d-$mode-back1.out")"))"
		else
			fail "disconnection ($mode -> pass): $u still fails after $try attempts: $(cat "$T/d-$mode-back$try.out")"
		fi
		status_of "$M" >"$T/st-d-$mode-back"
		jq -e '.registry_ok == true' "$T/st-d-$mode-back" >/dev/null &&
			pass "disconnection ($mode -> pass): status says registry_ok true again" ||
			{ fail "disconnection ($mode -> pass): registry_ok not true"; show_file "$T/st-d-$mode-back"; }
	done
	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] && pass "disconnection: SIGTERM after all that exits 0" || fail "disconnection mount: exit $RC at SIGTERM"
	is_mounted "$M" && fail "disconnection: still mounted after SIGTERM"
fi

# --- restart with the registry gone ---------------------------------------------------------
netproxy_start KP || die "netproxy"
KC=$T/kc
KEPT=$KC/toc/${DG#sha256:}
TOCD=$(jq -r .tocDigest "$T/f.esgz.json")
M=$T/mk
mkdir -p "$M"
KARGS=(--plain-http --toc-digest "$TOCD" --cache-dir "$KC" --no-prefetch --no-background-fetch --timeout "$TMO")
if mount_start mk1 "${KARGS[@]}" "$KP/rs/faults:v1" "$DG" "$M"; then
	for f in files/f05 big/b1; do
		readfile "k1-${f//\//_}" "$M/$f" "$X/$f"
		expect_read_ok "restart: first mount reads $f" "k1-${f//\//_}"
	done
	status_of "$M" >"$T/st-k1"
	jq -e '.toc_cached == false' "$T/st-k1" >/dev/null &&
		pass "restart: the first mount's TOC came from the registry (toc_cached false)" ||
		{ fail "restart: first mount: toc_cached not false"; show_file "$T/st-k1"; }
	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] || fail "restart: first mount: exit $RC at SIGTERM"
	check "restart: the TOC is kept at $KEPT" [ -s "$KEPT" ]

	proxy_mode KP blackhole
	nreq=$(wc -l <"$KP_LOG")
	t0=$(date +%s%N)
	if mount_start mk2 "${KARGS[@]}" "$KP/rs/faults:v1" "$DG" "$M"; then
		ms=$((($(date +%s%N) - t0) / 1000000))
		check "restart: with the registry black-holed the mount comes up in $ms ms (< ${TMO}000)" [ "$ms" -lt $((TMO * 1000)) ]
		status_of "$M" >"$T/st-k2"
		jq -e '.toc_cached == true and .mounted == true' "$T/st-k2" >/dev/null &&
			pass "restart: status.json says toc_cached true" ||
			{ fail "restart: status.json does not say toc_cached"; show_file "$T/st-k2"; }
		for f in files/f05 big/b1; do
			readfile "k2-${f//\//_}" "$M/$f" "$X/$f"
			expect_read_ok "restart, registry gone: $f (cached before) reads right" "k2-${f//\//_}"
		done
		readfile k2-u "$M/files/f06" "$X/files/f06"
		expect_read_eio "restart, registry gone: uncached files/f06 gets EIO (the registry is really gone)" k2-u
		mount_stop "$MOUNT_PID"
		[ "$RC" = 0 ] || fail "restart: second mount: exit $RC at SIGTERM"
	fi
	# The same with prefetch and background fetch on: their requests hang in
	# the black hole, the mount and the cached files do not wait for them.
	t0=$(date +%s%N)
	if mount_start mk2b --plain-http --toc-digest "$TOCD" --cache-dir "$KC" --timeout "$TMO" "$KP/rs/faults:v1" "$DG" "$M"; then
		ms=$((($(date +%s%N) - t0) / 1000000))
		check "restart (prefetch, background on): the mount comes up in $ms ms (< ${TMO}000)" [ "$ms" -lt $((TMO * 1000)) ]
		for f in files/f05 big/b1; do
			readfile "k2b-${f//\//_}" "$M/$f" "$X/$f"
			expect_read_ok "restart (prefetch, background on), registry gone: $f reads right" "k2b-${f//\//_}"
		done
		mount_stop "$MOUNT_PID"
		[ "$RC" = 0 ] || fail "restart (prefetch, background on): exit $RC at SIGTERM"
	fi
	nblob=$(tail -n +$((nreq + 1)) "$KP_LOG" | jq -s '[.[] | select(.path | test("/blobs/")) | .range // "" | select(test("^bytes=-"))] | length')
	check "restart: no tail (suffix-range) request reached the proxy ($nblob)" [ "$nblob" = 0 ]

	# A damaged kept TOC: the registry's is read and kept again.
	proxy_mode KP pass
	sz=$(size_of "$KEPT")
	printf 'X' | dd of="$KEPT" bs=1 seek=$((sz - 20)) conv=notrunc status=none
	cp "$KEPT" "$T/kept-bad"
	if mount_start mk3 "${KARGS[@]}" "$KP/rs/faults:v1" "$DG" "$M"; then
		status_of "$M" >"$T/st-k3"
		jq -e '.toc_cached == false' "$T/st-k3" >/dev/null &&
			pass "restart: a damaged kept TOC is not used (toc_cached false)" ||
			{ fail "restart: damaged kept TOC: toc_cached not false"; show_file "$T/st-k3"; }
		check "restart: the damage is logged, naming the file" grep -q "kept TOC $KEPT: payload does not match" "$T/mk3.err"
		check "restart: the kept TOC is written again" [ -s "$KEPT" ]
		cmp -s "$KEPT" "$T/kept-bad" && fail "restart: the damaged kept TOC is still there"
		readfile k3 "$M/files/f06" "$X/files/f06"
		expect_read_ok "restart: with the registry back files/f06 reads right" k3
		mount_stop "$MOUNT_PID"
	fi
fi

# --- prefetch + background ------------------------------------------------------------------
netproxy_start ZP || die "netproxy"
M=$T/mb
mkdir -p "$M"
if mount_start mb --plain-http --allow-unverified --timeout "$TMO" "$ZP/rs/faults:v1" "$DG" "$M"; then
	if wait_status "$M" '.percent == 100 and .state == "complete"' 60; then
		pass "background: status reaches 100 % / complete without any read ($(jq -c '{fetched_bytes, data_bytes}' "$T/status.last"))"
		proxy_mode ZP refuse
		"${MC[@]}" evict "$M" >/dev/null
		mount_manifest "$M" "${LANDMARKS[@]}" --exclude .remote-snapshotter >"$T/got-b" 2>"$T/got-b.err"
		rc=$?
		if [ "$rc" = 0 ] && cmp -s "$T/want-b" "$T/got-b"; then
			pass "background: with the registry refusing, every file reads right (sha256 of all $(grep -c type=reg "$T/want-b") files)"
		else
			fail "background: reading everything offline: exit $rc or trees differ"
			show_file "$T/got-b.err"
			diff "$T/want-b" "$T/got-b" | head -n 10 | cut -c1-200 | sed 's/^/    | /'
		fi
		proxy_mode ZP pass
	else
		fail "background: status did not reach complete in 60 s"
		show_file "$T/status.last"
	fi
	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] || fail "background mount: exit $RC at SIGTERM"
fi

# --- prefetch landmark ------------------------------------------------------------------------
netproxy_start WP || die "netproxy"
M=$T/mp
mkdir -p "$M"
if mount_start mp --plain-http --allow-unverified --no-background-fetch --timeout "$TMO" "$WP/rs/prio:v1" "$PDG" "$M"; then
	if wait_status "$M" '.state != "prefetching"' 30; then
		pass "prefetch: state left prefetching ($(jq -c '{state, fetched_bytes, data_bytes}' "$T/status.last"))"
	else
		fail "prefetch: still prefetching after 30 s"
		show_file "$T/status.last"
	fi
	jq -e '.state == "lazy" and .fetched_bytes > 0 and .fetched_bytes < .data_bytes' "$T/status.last" >/dev/null &&
		pass "prefetch: lazy, part of the layer fetched" || { fail "prefetch: unexpected status"; show_file "$T/status.last"; }
	proxy_mode WP refuse
	"${MC[@]}" evict "$M" >/dev/null
	for f in prio/p1 prio/p2; do
		readfile "p-${f//\//_}" "$M/$f" "$T/px/$f"
		expect_read_ok "prefetch: prioritised $f reads with the registry refusing" "p-${f//\//_}"
	done
	for f in other/o1 other/o4; do
		readfile "p-${f//\//_}" "$M/$f" "$T/px/$f"
		expect_read_eio "prefetch: $f (after the landmark) was not prefetched: EIO" "p-${f//\//_}"
	done
	proxy_mode WP pass
	readfile p-back "$M/other/o1" "$T/px/other/o1"
	expect_read_ok "prefetch: back to pass, other/o1 reads" p-back
	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] || fail "prefetch mount: exit $RC at SIGTERM"
fi


# --- background fetch interrupted --------------------------------------------------------
# A slow link (16 Mbit/s: ~3 s for the layer), cut for a while mid-way.
netproxy_start IP --rate-mbit 16 --delay-ms 10 || die "netproxy --rate-mbit 16"
M=$T/mi
mkdir -p "$M"
if mount_start mi --plain-http --allow-unverified --timeout "$TMO" "$IP/rs/faults:v1" "$DG" "$M"; then
	sleep 0.7
	proxy_mode IP refuse
	sleep 2.5
	status_of "$M" >"$T/st-i"
	jq -e '.state != "complete" and .registry_ok == false' "$T/st-i" >/dev/null &&
		pass "background cut: not complete, registry_ok false ($(jq -c '{percent, state, fetch_errors}' "$T/st-i"))" ||
		{ fail "background cut: unexpected status while refused"; show_file "$T/st-i"; }
	proxy_mode IP pass
	if wait_status "$M" '.percent == 100 and .state == "complete" and .registry_ok == true' 60; then
		pass "background cut: resumes by itself and completes ($(jq -c '{fetched_bytes, data_bytes, fetch_errors}' "$T/status.last"))"
		proxy_mode IP refuse
		"${MC[@]}" evict "$M" >/dev/null
		mount_manifest "$M" "${LANDMARKS[@]}" --exclude .remote-snapshotter >"$T/got-i" 2>"$T/got-i.err"
		rc=$?
		[ "$rc" = 0 ] && cmp -s "$T/want-b" "$T/got-i" &&
			pass "background cut: then every file reads right offline" ||
			{ fail "background cut: reading everything offline: exit $rc or trees differ"; show_file "$T/got-i.err"; }
		proxy_mode IP pass
	else
		fail "background cut: did not complete within 60 s after the registry came back"
		show_file "$T/status.last"
	fi
	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] || fail "interrupted background mount: exit $RC at SIGTERM"
fi

# --- in-flight dedup: 8 readers of one uncached file ----------------------------------------
netproxy_start DP --delay-ms 20 || die "netproxy --delay-ms 20"
M=$T/mdd
mkdir -p "$M"
if mount_start mdd --plain-http --allow-unverified --no-prefetch --no-background-fetch --timeout 30 "$DP/rs/faults:v1" "$DG" "$M"; then
	n0=$(wc -l <"$DP_LOG")
	run dd-readers timeout 120 "${MC[@]}" readers --threads 8 --ops 60 --seed 3 "$M" "$X" big/b1
	if jq -e '.errors == [] and .mismatches == []' "$T/dd-readers.out" >/dev/null 2>&1; then
		pass "dedup: 8 readers of big/b1 over a 20 ms RTT link read right ($(jq -c '{reads, secs}' "$T/dd-readers.out"))"
	else
		fail "dedup: readers failed"
		show_file "$T/dd-readers.out"
	fi
	got=$(tail -n +$((n0 + 1)) "$DP_LOG" | jq -s 'map(.bytes) | add // 0')
	want=$(jq '[.entries[] | select(.name == "big/b1")] | length' "$T/f.toc")
	csize=$(jq -r --arg n big/b1 '[.entries[] | select(.offset != null) | .offset] as $all |
		[.entries[] | select(.name == $n) | .offset] | (max as $m | [$all[] | select(. > $m)] | min) - min' "$T/f.toc")
	if [ "$got" -le $((csize * 3 / 2)) ]; then
		pass "dedup: $got bytes fetched for big/b1 (~$csize compressed bytes, $want chunks): each chunk fetched about once"
	else
		fail "dedup: $got bytes fetched for big/b1 whose $want chunks are ~$csize compressed bytes (> 1.5 x)"
	fi
	mount_stop "$MOUNT_PID"
	[ "$RC" = 0 ] || fail "dedup mount: exit $RC at SIGTERM"
fi

# --- disk cache ------------------------------------------------------------------------------
netproxy_start CP || die "netproxy"
CD=$T/cache
M=$T/mk
mkdir -p "$M" "$CD"
chunk_file() { # NAME: the disk cache file of NAME's first chunk
	local h
	h=$(jq -r --arg n "$1" '.entries[] | select(.name == $n and .type == "reg") | .chunkDigest' "$T/f.toc")
	h=${h#sha256:}
	echo "$CD/sha256/${h:0:2}/$h"
}
if mount_start mk1 --plain-http --allow-unverified --no-prefetch --no-background-fetch --timeout "$TMO" --cache-dir "$CD" \
	"$CP/rs/faults:v1" "$DG" "$M"; then
	ok=true
	for f in files/f05 files/f06 big/b1 small/s1; do
		readfile "k-${f//\//_}" "$M/$f" "$X/$f"
		jq -e '.ok' "$T/k-${f//\//_}.out" >/dev/null || { ok=false; fail "disk cache: first read of $f: $(cat "$T/k-${f//\//_}.out")"; }
	done
	mount_stop "$MOUNT_PID"
	if $ok && [ "$RC" = 0 ]; then
		pass "disk cache: first mount read 4 files and exited 0"
	else
		[ "$RC" = 0 ] || fail "disk cache: first mount: exit $RC at SIGTERM"
	fi
	if [ -s "$(chunk_file files/f05)" ] && [ -s "$(chunk_file files/f06)" ]; then
		pass "disk cache: the chunks are stored as DIR/sha256/xx/<chunkDigest>"
	else
		fail "disk cache: no chunk files for files/f05, f06 under $CD"
		find "$CD" -type f | head -n 5 | sed 's/^/    | /'
	fi
	# flip one byte of f06's cached chunk, in place
	"$RIG_PY" -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(100); b = f.read(1); f.seek(100); f.write(bytes([b[0] ^ 0xff]))' "$(chunk_file files/f06)" 2>/dev/null
	if mount_start mk2 --plain-http --allow-unverified --no-prefetch --no-background-fetch --timeout "$TMO" --cache-dir "$CD" \
		"$CP/rs/faults:v1" "$DG" "$M"; then
		mk2=$MOUNT_PID
		proxy_mode CP refuse
		for f in files/f05 big/b1 small/s1; do
			readfile "k2-${f//\//_}" "$M/$f" "$X/$f"
			expect_read_ok "disk cache: a new mount reads $f from the disk cache with the registry refusing" "k2-${f//\//_}"
		done
		readfile k2-bad "$M/files/f06" "$X/files/f06"
		expect_read_eio "disk cache: a chunk corrupted on disk is not served (EIO offline, no wrong byte)" k2-bad
		readfile k2-never "$M/files/f08" "$X/files/f08"
		expect_read_eio "disk cache: a chunk never fetched gets EIO offline" k2-never
		mkdir -p "$T/mk3"
		# With flags it would mount with but for the lock: an I/O error (3).
		run k3 timeout 60 "$STARGZ" mount --plain-http --allow-unverified --no-background-fetch --cache-dir "$CD" "$R/rs/faults:v1" "$DG" "$T/mk3"
		if [ "$RC" = 3 ] && ! is_mounted "$T/mk3"; then
			pass "disk cache: a second mount on the same --cache-dir is refused (exit $RC: $(head -n 1 "$T/k3.err" | cut -c1-120))"
		else
			fail "disk cache: a second concurrent mount on the same --cache-dir: exit $RC, want 3"
			show_file "$T/k3.err"
			is_mounted "$T/mk3" && umount -l "$T/mk3"
		fi
		proxy_mode CP pass
		readfile k2-bad2 "$M/files/f06" "$X/files/f06"
		expect_read_ok "disk cache: back online, the corrupted chunk is fetched again and reads right" k2-bad2
		mount_stop "$mk2"
		[ "$RC" = 0 ] || fail "disk cache mount: exit $RC at SIGTERM"
	fi
fi

# --- a black hole at mount time, SIGTERM during a stuck read, a corrupt TOC --------------------
netproxy_start BP || die "netproxy"
proxy_mode BP blackhole
mkdir -p "$T/mbh"
t0=$SECONDS
run bh-mount timeout 120 "$STARGZ" mount --plain-http --allow-unverified --timeout "$TMO" "$BP/rs/faults:v1" "$DG" "$T/mbh"
if [ "$RC" = 3 ] && [ $((SECONDS - t0)) -lt $((4 * BOUND)) ] && ! is_mounted "$T/mbh"; then
	pass "black hole at mount time: exit 3 after $((SECONDS - t0)) s ($(head -n 1 "$T/bh-mount.err" | cut -c1-120))"
else
	fail "black hole at mount time: exit $RC after $((SECONDS - t0)) s"
	show_file "$T/bh-mount.err"
	is_mounted "$T/mbh" && umount -l "$T/mbh"
fi
proxy_mode BP pass
M=$T/ms
mkdir -p "$M"
# --timeout 12: a shutdown that waits for the stuck read and then for the stuck
# request takes ~24 s; a prompt one a second or two.
if mount_start ms --plain-http --allow-unverified --no-prefetch --no-background-fetch --timeout 12 "$BP/rs/faults:v1" "$DG" "$M"; then
	proxy_mode BP blackhole
	"${MC[@]}" readfile "$M/files/f09" "$X/files/f09" >"$T/stuck.out" 2>"$T/stuck.err" &
	rp=$!
	sleep 1.5
	MOUNT_STOP_WAIT=60 mount_stop "$MOUNT_PID"
	if [ "$RC" = 0 ] && [ "$STOP_SECS" -le 8 ]; then
		pass "SIGTERM while a read waits on a black hole: exit 0 after $STOP_SECS s"
	else
		fail "SIGTERM while a read waits on a black hole (--timeout 12): exit $RC after $STOP_SECS s, want exit 0 within 8 s (shutdown waits for the stuck read, then for the stuck request?)"
	fi
	for _ in $(seq 100); do kill -0 "$rp" 2>/dev/null || break; sleep 0.2; done
	if kill -0 "$rp" 2>/dev/null; then
		fail "SIGTERM while a read waits: the reader is still stuck 20 s later"
		kill "$rp"
	else
		jq -e '(.ok | not) and (.wrong | not)' "$T/stuck.out" >/dev/null 2>&1 &&
			pass "SIGTERM while a read waits: the read ends with an error ($(jq -r .errno "$T/stuck.out"))" ||
			fail "SIGTERM while a read waits: reader said $(cat "$T/stuck.out")"
	fi
	wait "$rp" 2>/dev/null
	is_mounted "$M" && fail "SIGTERM while a read waits: still mounted" || pass "SIGTERM while a read waits: unmounted"
	proxy_mode BP pass
fi
# the TOC is the blob's last gzip member before the footer; flip a byte in it
tocoff=$("$RIG_PY" -c 'import re, sys
b = open(sys.argv[1], "rb").read()[-64:]
print(int(re.search(rb"([0-9a-f]{16})STARGZ", b).group(1), 16))' "$T/f.esgz")
bsize=$(size_of "$T/f.esgz")
tmid=$(((tocoff + bsize - 51) / 2))
netproxy_start TP --flip-range "$tmid:$((tmid + 1))" || die "netproxy (TOC)"
proxy_mode TP flip
mkdir -p "$T/mt"
run toc-bad timeout 60 "$STARGZ" mount --plain-http --timeout "$TMO" --toc-digest "$(jq -r .tocDigest "$T/f.esgz.json")" \
	"$TP/rs/faults:v1" "$DG" "$T/mt"
if [ "$RC" = 1 ] || [ "$RC" = 3 ] && ! is_mounted "$T/mt"; then
	pass "a TOC corrupted in transit (byte $tmid) is refused with --toc-digest (exit $RC: $(head -n 1 "$T/toc-bad.err" | cut -c1-120))"
else
	fail "a TOC corrupted in transit, with --toc-digest: exit $RC"
	show_file "$T/toc-bad.err"
	is_mounted "$T/mt" && umount -l "$T/mt"
fi
run toc-bad2 timeout 60 "$STARGZ" mount --plain-http --allow-unverified --timeout "$TMO" "$TP/rs/faults:v1" "$DG" "$T/mt"
if [ "$RC" = 1 ] || [ "$RC" = 3 ] && ! is_mounted "$T/mt"; then
	pass "a TOC corrupted in transit is refused without --toc-digest too (exit $RC: $(head -n 1 "$T/toc-bad2.err" | cut -c1-120))"
else
	fail "a TOC corrupted in transit, no --toc-digest: exit $RC"
	show_file "$T/toc-bad2.err"
	is_mounted "$T/mt" && umount -l "$T/mt"
fi
jq -se 'map(.flipped) | add > 0' "$TP_LOG" >/dev/null || fail "TOC corruption: the proxy flipped nothing"

# --- a registry that ignores Range ------------------------------------------------------
# The suffix-range open falls back to HEAD + ranges, which then fail cleanly.
fake_registry_start FR --upstream "http://$R" --ignore-range || die "fake registry"
mkdir -p "$T/mign"
run ign timeout 60 "$STARGZ" mount --plain-http --allow-unverified "$FR/rs/faults:v1" "$DG" "$T/mign"
check "a registry that ignores Range: the mount fails cleanly (exit $RC, want 3)" [ "$RC" -eq 3 ]
check "and says the registry ignores Range" grep -q 'ignores Range' "$T/ign.err"
is_mounted "$T/mign" && umount -l "$T/mign"

finish
