#!/usr/bin/env bash
# netproxy.py (the loopback proxy the mount fault tests and benchmarks put
# between a client and a registry), checked with curl against a real
# docker-registry and against a chunked-encoding upstream:
#   * pass: blob GET / HEAD / Range through the proxy give the registry's bytes;
#     one JSON log line per request (method, path, range, status, bytes);
#   * --flip-range S:E: exactly the returned bytes whose blob offset is in
#     [S,E) are flipped, in a single-range 206, a multipart/byteranges 206
#     and a 200; other ranges untouched; several requests on one keep-alive
#     connection; chunked responses (framing kept, payload flipped);
#   * refuse: new connections reset, a transfer in progress cut at once;
#     blackhole: requests never answered (curl times out), in-flight transfers
#     stall; back to pass: new connections work again;
#   * --rate-mbit 100 --delay-ms 20: a 50 MB transfer takes about 4 s (one
#     link shared by two connections too), round trips cost about 20 ms.
# Needs no `stargz`.  Everything listens on 127.0.0.1 only.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry-lib.sh"
. "$(dirname "$0")/mount-lib.sh"
need_tools docker-registry curl jq

registry_start_plain || die "plain registry"
R=$PLAIN_REG

# A 50 MB blob of seeded random bytes.
"$RIG_PY" -c 'import random, sys
open(sys.argv[1], "wb").write(random.Random(7).randbytes(50 * 1000 * 1000))' "$T/blob" || die "blob"
DG=$(push_blob "$R" rs/np "$T/blob") || die "cannot upload the blob"
BLOB_PATH=/v2/rs/np/blobs/$DG
pass "50 MB blob uploaded to $R ($DG)"

# slice FILE OFF LEN: LEN bytes of FILE at OFF.
slice() { dd if="$1" bs=1M skip="$2" count="$3" iflag=skip_bytes,count_bytes status=none; }
# flipped FILE OFF LEN S E: the same, with the bytes at offsets [S,E) xor 0xff.
flipped() {
	"$RIG_PY" - "$@" <<'PY'
import sys
f, off, n, s, e = sys.argv[1], *map(int, sys.argv[2:])
with open(f, "rb") as fh:
    fh.seek(off)
    b = bytearray(fh.read(n))
for i in range(max(s, off), min(e, off + n)):
    b[i - off] ^= 0xFF
sys.stdout.buffer.write(b)
PY
}

# --- pass --------------------------------------------------------------------------
netproxy_start P || die "netproxy"
run get curl -sf -o "$T/got" "http://$P$BLOB_PATH"
if [ "$RC" = 0 ] && cmp -s "$T/blob" "$T/got"; then
	pass "pass: the whole blob through the proxy is the registry's"
else
	fail "pass: blob through the proxy differs (curl exit $RC)"
fi
code=$(curl -s -o /dev/null -I -w '%{http_code} %header{content-length}' "http://$P$BLOB_PATH")
[ "$code" = "200 50000000" ] && pass "pass: HEAD answered 200 with Content-Length (keep-alive parse of a body-less answer)" ||
	fail "pass: HEAD gave '$code'"
curl -sf -r 1000-199999 -o "$T/got" "http://$P$BLOB_PATH" &&
	slice "$T/blob" 1000 199000 | cmp -s - "$T/got" && pass "pass: a Range GET gives those bytes" ||
	fail "pass: Range GET differs"
sleep 0.2
if jq -se --arg p "$BLOB_PATH" 'map(select(.path == $p)) | length == 3 and
	(.[0] | .method == "GET" and .status == 200 and .bytes == 50000000 and .range == null and .complete) and
	(.[1] | .method == "HEAD" and .status == 200 and .bytes == 0) and
	(.[2] | .range == "bytes=1000-199999" and .status == 206 and .bytes == 199000)' "$P_LOG" >/dev/null; then
	pass "pass: one log line per request with method, path, range, status, bytes"
else
	fail "pass: unexpected request log"
	show_file "$P_LOG"
fi

# --- flip ----------------------------------------------------------------------------
S=3000000 E=3000100
netproxy_start F --flip-range "$S:$E" || die "netproxy --flip-range"
proxy_mode F flip
# range_case DESC FROM TO: a single-range GET compared with the expected flips.
range_case() {
	local desc=$1 a=$2 b=$3
	curl -sf -r "$a-$b" -o "$T/got" "http://$F$BLOB_PATH" || {
		fail "flip: $desc: curl failed"
		return
	}
	if flipped "$T/blob" "$a" $((b - a + 1)) "$S" "$E" | cmp -s - "$T/got"; then
		pass "flip: $desc"
	else
		fail "flip: $desc: wrong bytes"
		flipped "$T/blob" "$a" $((b - a + 1)) "$S" "$E" | cmp - "$T/got" | head -n 3 | sed 's/^/    | /'
	fi
}
range_case "a range covering [S,E) has exactly those bytes flipped" $((S - 1000)) $((E + 999))
range_case "a range inside [S,E) is all flipped" $((S + 10)) $((S + 19))
range_case "a range overlapping the start of [S,E)" $((S - 50)) $((S + 49))
range_case "a range overlapping the end of [S,E)" $((E - 1)) $((E + 4096))
range_case "a range ending just before S is untouched" 0 $((S - 1))
range_case "a range starting at E is untouched" "$E" $((E + 65535))
# several ranges in one multipart/byteranges answer
curl -sf -D "$T/mp.h" -r "0-99,$((S - 5))-$((S + 4)),$((E - 3))-$((E + 2)),49999990-49999999" \
	-o "$T/mp" "http://$F$BLOB_PATH"
if grep -qi '^content-type: multipart/byteranges' "$T/mp.h"; then
	if "$RIG_PY" - "$T/mp.h" "$T/mp" "$T/blob" "$S" "$E" <<'PY'; then
import re, sys
h, body, blob, s, e = open(sys.argv[1]).read(), open(sys.argv[2], "rb").read(), \
    open(sys.argv[3], "rb").read(), int(sys.argv[4]), int(sys.argv[5])
bnd = re.search(r'boundary=([^\s;]+)', h, re.I).group(1).encode()
parts = body.split(b"--" + bnd)
n = 0
for p in parts[1:]:
    if p.startswith(b"--"):
        break
    head, _, data = p.partition(b"\r\n\r\n")
    data = data[:-2]  # CRLF before the next delimiter
    a, b = map(int, re.search(rb"bytes (\d+)-(\d+)/", head).groups())
    want = bytearray(blob[a:b + 1])
    for i in range(max(a, s), min(e, b + 1)):
        want[i - a] ^= 0xFF
    if bytes(want) != data:
        print("part %d-%d differs" % (a, b))
        sys.exit(1)
    n += 1
sys.exit(0 if n == 4 else 1)
PY
		pass "flip: a multipart/byteranges answer has exactly the bytes of [S,E) flipped in each part"
	else
		fail "flip: multipart answer wrong"
	fi
else
	fail "flip: the registry did not answer a multi-range request with multipart/byteranges"
	show_file "$T/mp.h"
fi
# a 200 whole-blob answer, then two Range GETs, all on one connection
curl -sf -o "$T/g1" "http://$F$BLOB_PATH" --next -sf -r "$((S - 1))-$((S + 1))" -o "$T/g2" \
	"http://$F$BLOB_PATH" --next -sf -r 10-20 -o "$T/g3" "http://$F$BLOB_PATH"
if flipped "$T/blob" 0 50000000 "$S" "$E" | cmp -s - "$T/g1" &&
	flipped "$T/blob" $((S - 1)) 3 "$S" "$E" | cmp -s - "$T/g2" &&
	slice "$T/blob" 10 11 | cmp -s - "$T/g3"; then
	pass "flip: a 200 whole-blob GET is flipped too; keep-alive requests after it are parsed right"
else
	fail "flip: 200 / keep-alive answers wrong"
fi
sleep 0.2
n=$(jq -s 'map(select(.range == "bytes=10-20" or .range == "bytes=2999999-3000001" or (.range == null and .method == "GET"))) | map(.conn) | unique | length' "$F_LOG")
[ "$n" = 1 ] && pass "flip: those three requests shared one connection" || fail "flip: keep-alive not kept ($n connections)"
proxy_mode F pass
range_case_pass() {
	curl -sf -r "$((S - 10))-$((E + 10))" -o "$T/got" "http://$F$BLOB_PATH" &&
		slice "$T/blob" $((S - 10)) $((E - S + 21)) | cmp -s - "$T/got"
}
range_case_pass && pass "flip: control file 'pass' turns flipping off" || fail "flip: still flipped in pass mode"
proxy_mode F ""
curl -sf -r "$S-$S" -o "$T/got" "http://$F$BLOB_PATH"
flipped "$T/blob" "$S" 1 "$S" "$E" | cmp -s - "$T/got" && pass "flip: an empty control file means the default (flip with --flip-range)" ||
	fail "flip: empty control file did not fall back to flip"

# --- a chunked upstream ----------------------------------------------------------------
cat >"$T/chunked.py" <<'PY'
import http.server, random, re, sys
blob = open(sys.argv[2], "rb").read()
rnd = random.Random(3)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        m = re.match(r"bytes=(\d+)-(\d+)$", self.headers.get("Range") or "")
        a, b = (int(m.group(1)), int(m.group(2))) if m else (0, len(blob) - 1)
        body = blob[a:b + 1]
        self.send_response(206 if m else 200)
        if m:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (a, b, len(blob)))
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        i = 0
        while i < len(body):
            n = rnd.choice([1, 7, 100, 4096, 65536, 300000])
            c = body[i:i + n]
            self.wfile.write(b"%x;ext=1\r\n" % len(c) + c + b"\r\n")
            i += n
        self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1] + ".tmp", "w").write(str(srv.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
srv.serve_forever()
PY
head -c 3000000 "$T/blob" >"$T/small"
"$RIG_PY" "$T/chunked.py" "$T/chunked.port" "$T/small" >"$T/chunked.log" 2>&1 &
_RIG_PIDS+=("$!")
for _ in $(seq 50); do [ -s "$T/chunked.port" ] && break; sleep 0.1; done
NETPROXY_UPSTREAM=127.0.0.1:$(cat "$T/chunked.port") netproxy_start C --flip-range 1000:1010 --flip-range 2500000:2500001 ||
	die "netproxy for the chunked upstream"
proxy_mode C flip
curl -sf -o "$T/c1" "http://$C$BLOB_PATH" --next -sf -r 995-1004 -o "$T/c2" "http://$C$BLOB_PATH" \
	--next -sf -r 2000000-2999999 -o "$T/c3" "http://$C$BLOB_PATH"
rc=$?
if "$RIG_PY" - "$T/small" "$T/c1" "$T/c2" "$T/c3" <<'PY' && [ "$rc" = 0 ]; then
import sys
b = open(sys.argv[1], "rb").read()
def fl(off, n):
    x = bytearray(b[off:off + n])
    for s, e in ((1000, 1010), (2500000, 2500001)):
        for i in range(max(s, off), min(e, off + n)):
            x[i - off] ^= 0xFF
    return bytes(x)
got = [open(p, "rb").read() for p in sys.argv[2:]]
want = [fl(0, len(b)), fl(995, 10), fl(2000000, 1000000)]
sys.exit(0 if got == want else 1)
PY
	pass "chunked upstream: framing kept (chunk extensions, trailers, keep-alive) and payload bytes flipped at the right offsets"
else
	fail "chunked upstream: wrong bytes (curl exit $rc)"
fi

# --- refuse and blackhole ---------------------------------------------------------------
proxy_mode P refuse
t0=$(date +%s.%N)
run refused curl -s --max-time 20 -o /dev/null "http://$P$BLOB_PATH"
t1=$(date +%s.%N)
if [ "$RC" != 0 ] && [ "$RC" != 28 ]; then
	pass "refuse: a new request fails at once (curl exit $RC in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s)"
else
	fail "refuse: curl exit $RC"
fi
proxy_mode P pass
curl -sf -r 0-9 -o /dev/null "http://$P$BLOB_PATH" && pass "refuse -> pass: requests work again" || fail "pass after refuse fails"

# a slow transfer in progress, cut by refuse / frozen by blackhole
netproxy_start SLOW --rate-mbit 8 || die "netproxy --rate-mbit 8"
curl -s --max-time 60 -o "$T/slow1" "http://$SLOW$BLOB_PATH" &
cpid=$!
sleep 1.5
proxy_mode SLOW refuse
t0=$SECONDS
wait "$cpid"
rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 28 ] && [ $((SECONDS - t0)) -le 5 ]; then
	pass "refuse: a transfer in progress is cut at once (curl exit $rc after $(size_of "$T/slow1") bytes)"
else
	fail "refuse: transfer in progress: curl exit $rc after $((SECONDS - t0)) s"
fi
proxy_mode SLOW pass
curl -s --max-time 60 -o "$T/slow2" "http://$SLOW$BLOB_PATH" &
cpid=$!
sleep 1.5
proxy_mode SLOW blackhole
sz1=$(size_of "$T/slow2")
sleep 2
sz2=$(size_of "$T/slow2")
[ "$sz1" = "$sz2" ] && pass "blackhole: a transfer in progress stalls (stuck at $sz2 bytes)" ||
	fail "blackhole: transfer still moving ($sz1 -> $sz2)"
kill "$cpid" 2>/dev/null
wait "$cpid" 2>/dev/null
t0=$(date +%s)
run bh curl -s --max-time 3 -o /dev/null "http://$SLOW$BLOB_PATH"
[ "$RC" = 28 ] && pass "blackhole: a new request is accepted but never answered (curl timed out)" ||
	fail "blackhole: curl exit $RC, want 28 (time-out)"
proxy_mode SLOW pass
curl -sf --max-time 20 -r 0-99999 -o "$T/got" "http://$SLOW$BLOB_PATH" && slice "$T/blob" 0 100000 | cmp -s - "$T/got" &&
	pass "blackhole -> pass: new connections work again" || fail "blackhole -> pass: request failed"

# blackhole-range: a Range GET is swallowed, a whole GET answers.
proxy_mode P blackhole-range
run bhr curl -s --max-time 3 -r 0-9 -o /dev/null "http://$P$BLOB_PATH"
[ "$RC" = 28 ] && pass "blackhole-range: a Range GET is never answered (curl timed out)" ||
	fail "blackhole-range: Range GET: curl exit $RC, want 28 (time-out)"
curl -sf --max-time 20 -o "$T/whole" "http://$P$BLOB_PATH" && cmp -s "$T/blob" "$T/whole" &&
	pass "blackhole-range: a GET without Range answers, right bytes" ||
	fail "blackhole-range: the whole GET failed"
proxy_mode P pass

# --- rate and delay -------------------------------------------------------------------------
# Timings are printed; bounds are loose (a noisy 2-core machine): never
# faster than the link allows, not grossly slower.
netproxy_start L --rate-mbit 100 --delay-ms 20 || die "netproxy --rate-mbit 100 --delay-ms 20"
t=$(curl -sf -o "$T/got" -w '%{time_total}' "http://$L$BLOB_PATH")
cmp -s "$T/blob" "$T/got" || fail "rate: bytes differ"
if awk -v t="$t" 'BEGIN { exit !(t >= 3.8 && t <= 6.0) }'; then
	pass "rate: 50 MB at 100 Mbit/s + 20 ms RTT took $t s (ideal 4.02)"
else
	fail "rate: 50 MB at 100 Mbit/s took $t s (ideal 4.02; accepted 3.8-6.0)"
fi
t0=$(date +%s.%N)
curl -sf -r 0-24999999 -o "$T/h1" "http://$L$BLOB_PATH" &
p1=$!
curl -sf -r 25000000-49999999 -o "$T/h2" "http://$L$BLOB_PATH" &
p2=$!
wait "$p1"
wait "$p2"
t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
cat "$T/h1" "$T/h2" | cmp -s - "$T/blob" || fail "rate: parallel halves differ"
if awk -v t="$t" 'BEGIN { exit !(t >= 3.8 && t <= 6.5) }'; then
	pass "rate: two connections share the link: 2 x 25 MB took $(printf '%.2f' "$t") s"
else
	fail "rate: 2 x 25 MB in parallel took $t s (accepted 3.8-6.5: the link is shared)"
fi
urls=()
for i in $(seq 20); do urls+=(--next -sf -w '%{time_total}\n' -r "$i-$i" -o /dev/null "http://$L$BLOB_PATH"); done
t=$(curl "${urls[@]:1}" | awk '{ s += $1 } END { print s }')
if awk -v t="$t" 'BEGIN { exit !(t >= 0.38 && t <= 2.0) }'; then
	pass "delay: 20 small requests on one connection took $t s (20 x 20 ms RTT = 0.4 s)"
else
	fail "delay: 20 round trips took $t s (want 0.38-2.0)"
fi
netproxy_start D --delay-ms 20 || die "netproxy --delay-ms 20"
t=$(curl -sf -o /dev/null -w '%{time_total}' "http://$D$BLOB_PATH")
if awk -v t="$t" 'BEGIN { exit !(t <= 4.0) }'; then
	pass "delay: a 50 MB transfer with 20 ms RTT and no rate cap took $t s (delay is pipelined)"
else
	fail "delay: 50 MB with 20 ms RTT, no cap, took $t s (the delay is not pipelined?)"
fi

finish
