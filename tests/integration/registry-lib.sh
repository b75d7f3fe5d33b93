# shellcheck shell=bash
# The registry test rig: real registries, a token server, containerd and
# podman, each private to the test, on 127.0.0.1 only.  Source it after
# lib.sh:
#     . "$(dirname "$0")/lib.sh"
#     . "$(dirname "$0")/registry-lib.sh"
#
# Registries (Debian's docker-registry, distribution 2.8), each on a free
# loopback port with its own storage under $T/rig; each start sets
#   <P>_REG   "127.0.0.1:PORT"      <P>_DIR  its directory (storage in DIR/data)
#   registry_start_plain        P=PLAIN  plain HTTP, no auth
#   registry_start_tls_htpasswd P=TLS    HTTPS (CA made here) + htpasswd basic auth;
#       TLS_CA (ca.crt), TLS_HOSTS_DIR (certs.d layout: DIR/127.0.0.1:PORT/{ca.crt,
#       hosts.toml}), TLS_CERT_DIR (that host's dir, for skopeo --cert-dir),
#       TLS_USER/TLS_PASS, TLS_DOCKER_CONFIG (a dir holding config.json)
#   registry_start_token [--anonymous-pull] [--x5c] [--ec]  P=TOKEN  plain HTTP +
#       auth: token with token_server.py; TOKEN_USER/TOKEN_PASS,
#       TOKEN_DOCKER_CONFIG, TOKEN_LOG (one JSON line per token request),
#       TOKEN_SERVER ("127.0.0.1:PORT" of the token server)
# Images:
#   seed_image [--multi] [--v2s2] [--layers N] [--salt S] [--creds U:P] [--cert-dir D] REG NAME:TAG
#       busybox image (busybox-static + sh/cat/echo/ls links, /etc/hello.txt,
#       a larger data file) pushed with skopeo.  `--multi`: an index of
#       linux/amd64 + linux/arm64 (hello.txt says which).  Running
#       `cat /etc/hello.txt` prints "hello from rs-rig <arch>"; /etc/os-release
#       names "rs-rig <arch>".
# Runtimes:
#   containerd_start            private containerd (CRI off); sets CTR=(ctr -a SOCK);
#       CONTAINERD_EXTRA_CONFIG (TOML) is appended to its config.toml
#   ctr_pull_run NAME REF CMD...  [CTR_PULL_ARGS=(...)] pull then `ctr run --rm`;
#       output in $T/NAME.out, exit code in $RC
#   podman_setup; podman_pull_run NAME REF CMD... [PODMAN_PULL_ARGS=(...)]
#       private storage/runroot/containers.conf/registries.conf (every
#       registry started before podman_setup is marked insecure)
# Misbehaving registries:
#   fake_registry_start VAR ARGS...  fake_registry.py ARGS; VAR="127.0.0.1:PORT",
#       VAR_LOG its request log (--tls CERT:KEY: https)
#   token_requests [CODE]   token requests logged (with that result)
# Everything started here is stopped at exit, by pid.

RIG=$T/rig
mkdir -p "$RIG"
# The interpreter itself, not a pyenv shim (a shim costs ~1 s a start).
RIG_PY=$("$PYTHON" -c 'import sys; print(sys.executable)' 2>/dev/null)
[ -x "$RIG_PY" ] || RIG_PY=$PYTHON
_RIG_PIDS=()

rig_log() { printf '# rig: %s\n' "$*"; }

_rig_stop_all() {
	local i pid
	for ((i = ${#_RIG_PIDS[@]} - 1; i >= 0; i--)); do
		pid=${_RIG_PIDS[$i]}
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	_RIG_PIDS=()
}
on_exit _rig_stop_all

# rig_stop PID: stop one process started here.
rig_stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	for i in "${!_RIG_PIDS[@]}"; do
		[ "${_RIG_PIDS[$i]}" = "$pid" ] && unset '_RIG_PIDS[i]'
	done
	_RIG_PIDS=("${_RIG_PIDS[@]}")
}

# free_port: a TCP port on 127.0.0.1 that nobody listens on right now.  The
# starters below retry with a new port if the server cannot bind it.
free_port() {
	"$RIG_PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# rig_wait_http URL PID [CURL ARGS...]: wait until URL answers (any HTTP code)
# while PID lives.  Prints the code.
rig_wait_http() {
	local url=$1 pid=$2 code
	shift 2
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || return 1
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" 2>/dev/null)
		if [ -n "$code" ] && [ "$code" != 000 ]; then
			echo "$code"
			return 0
		fi
		sleep 0.1
	done
	return 1
}

need_tools() { # TOOL...: skip the test unless every TOOL is on PATH
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || skip "$t not installed"
	done
}

# _registry_start P AUTH_YAML_FN SCHEME: common part; AUTH_YAML_FN PORT prints the
# auth/tls YAML for the http/auth sections.
_registry_start() {
	local p=$1 yfn=$2 scheme=$3 dir=$RIG/${1,,} port pid code
	mkdir -p "$dir/data"
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		{
			cat <<YAML
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: rs-test-secret-$p
  headers:
    X-Content-Type-Options: [nosniff]
YAML
			"$yfn" "$port"
		} >"$dir/config.yml"
		docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
		pid=$!
		_RIG_PIDS+=("$pid")
		if code=$(rig_wait_http "$scheme://127.0.0.1:$port/v2/" "$pid" -k); then
			rig_log "$p registry (docker-registry, pid $pid) on $scheme://127.0.0.1:$port (/v2/ -> $code)"
			printf -v "${p}_REG" '%s' "127.0.0.1:$port"
			printf -v "${p}_DIR" '%s' "$dir"
			printf -v "${p}_PID" '%s' "$pid"
			return 0
		fi
		rig_stop "$pid"
		if grep -q 'address already in use' "$dir/registry.log"; then
			rig_log "port $port taken; trying another"
			continue
		fi
		break
	done
	fail "docker-registry ($p) did not start"
	show_file "$dir/registry.log" registry.log
	show_file "$dir/config.yml" config.yml
	return 1
}

_yaml_none() { :; }

registry_start_plain() {
	need_tools docker-registry curl
	_registry_start PLAIN _yaml_none http
}

# rig_make_ca DIR: DIR/ca.{crt,key}, DIR/server.{crt,key} for 127.0.0.1/localhost.
rig_make_ca() {
	local d=$1
	mkdir -p "$d"
	{
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout "$d/ca.key" -out "$d/ca.crt" -days 2 -subj "/CN=rs-test-ca" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign" &&
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
				-keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" &&
			printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
				"basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
				"extendedKeyUsage=serverAuth" >"$d/server.ext" &&
			openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
				-CAcreateserial -out "$d/server.crt" -days 2 -extfile "$d/server.ext"
	} >"$d/openssl.log" 2>&1
}

# rig_docker_config DIR HOST USER PASS: DIR/config.json with auths for HOST.
rig_docker_config() {
	mkdir -p "$1"
	jq -n --arg h "$2" --arg a "$(printf '%s:%s' "$3" "$4" | base64 -w0)" \
		'{auths: {($h): {auth: $a}}}' >"$1/config.json"
}

_yaml_tls() {
	cat <<YAML
  tls:
    certificate: $RIG/tls-ca/server.crt
    key: $RIG/tls-ca/server.key
auth:
  htpasswd:
    realm: rs-test-realm
    path: $RIG/tls-ca/htpasswd
YAML
}

registry_start_tls_htpasswd() {
	need_tools docker-registry curl openssl
	TLS_USER=rsuser
	TLS_PASS=rs-secret-$RANDOM$RANDOM
	rig_make_ca "$RIG/tls-ca" || {
		fail "openssl could not make the test CA"
		show_file "$RIG/tls-ca/openssl.log"
		return 1
	}
	if command -v htpasswd >/dev/null; then
		htpasswd -Bbn "$TLS_USER" "$TLS_PASS" >"$RIG/tls-ca/htpasswd" 2>/dev/null
	else
		"$RIG_PY" -c 'import bcrypt, sys
print("%s:%s" % (sys.argv[1], bcrypt.hashpw(sys.argv[2].encode(), bcrypt.gensalt(rounds=5)).decode()))' \
			"$TLS_USER" "$TLS_PASS" >"$RIG/tls-ca/htpasswd" || skip "neither htpasswd (apache2-utils) nor python3-bcrypt"
	fi
	_registry_start TLS _yaml_tls https || return 1
	TLS_CA=$RIG/tls-ca/ca.crt
	TLS_HOSTS_DIR=$RIG/tls-hosts
	TLS_CERT_DIR=$TLS_HOSTS_DIR/$TLS_REG
	mkdir -p "$TLS_CERT_DIR"
	cp "$TLS_CA" "$TLS_CERT_DIR/ca.crt"
	cat >"$TLS_CERT_DIR/hosts.toml" <<TOML
server = "https://$TLS_REG"

[host."https://$TLS_REG"]
  capabilities = ["pull", "resolve", "push"]
  ca = "$TLS_CERT_DIR/ca.crt"
TOML
	TLS_DOCKER_CONFIG=$RIG/tls-docker
	rig_docker_config "$TLS_DOCKER_CONFIG" "$TLS_REG" "$TLS_USER" "$TLS_PASS"
}

_yaml_token() {
	cat <<YAML
auth:
  token:
    realm: http://$TOKEN_SERVER/token
    service: rs-test-registry
    issuer: rs-test-issuer
    rootcertbundle: $RIG/token/signer.crt
YAML
}

# registry_start_token [--anonymous-pull] [--x5c] [--ec]
registry_start_token() {
	need_tools docker-registry curl openssl
	# Debian's python3-jwt / python3-cryptography live in /usr/bin/python3's
	# path, which may not be $PYTHON's (pyenv).
	local py
	for py in "$RIG_PY" /usr/bin/python3; do
		"$py" -c 'import jwt, cryptography' 2>/dev/null && break
		py=
	done
	[ -n "$py" ] || skip "python3-jwt / python3-cryptography not installed"
	local args=() keyalg=(-newkey rsa:2048) a d=$RIG/token pid port code
	for a in "$@"; do
		case $a in
		--ec) keyalg=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
		*) args+=("$a") ;;
		esac
	done
	mkdir -p "$d"
	TOKEN_USER=rstoken
	TOKEN_PASS=rs-token-secret-$RANDOM$RANDOM
	printf '%s:%s\n' "$TOKEN_USER" "$TOKEN_PASS" >"$d/users"
	openssl req -x509 "${keyalg[@]}" -nodes -keyout "$d/signer.key" -out "$d/signer.crt" \
		-days 2 -subj "/CN=rs-token-signer" >"$d/openssl.log" 2>&1 || {
		fail "openssl could not make the token signing key"
		show_file "$d/openssl.log"
		return 1
	}
	TOKEN_LOG=$d/requests.log
	: >"$TOKEN_LOG"
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		"$py" "$TESTS_DIR/token_server.py" --port "$port" --key "$d/signer.key" \
			--cert "$d/signer.crt" --issuer rs-test-issuer --users "$d/users" \
			--log "$TOKEN_LOG" "${args[@]}" >"$d/server.log" 2>&1 &
		pid=$!
		_RIG_PIDS+=("$pid")
		if code=$(rig_wait_http "http://127.0.0.1:$port/healthz" "$pid"); then
			TOKEN_SERVER=127.0.0.1:$port
			TOKEN_SERVER_PID=$pid
			rig_log "token server (pid $pid) on http://$TOKEN_SERVER/token ${args[*]}"
			break
		fi
		rig_stop "$pid"
		grep -q 'Address already in use' "$d/server.log" && continue
		fail "token_server.py did not start"
		show_file "$d/server.log"
		return 1
	done
	[ -n "${TOKEN_SERVER:-}" ] || return 1
	: >"$TOKEN_LOG" # forget the readiness probes
	_registry_start TOKEN _yaml_token http || return 1
	TOKEN_DOCKER_CONFIG=$RIG/token-docker
	rig_docker_config "$TOKEN_DOCKER_CONFIG" "$TOKEN_REG" "$TOKEN_USER" "$TOKEN_PASS"
}

# token_requests [RESULT]: how many token requests were logged (with RESULT).
token_requests() {
	if [ -n "${1:-}" ]; then
		jq -c --argjson r "$1" 'select(.result == $r)' "$TOKEN_LOG" | wc -l
	else
		wc -l <"$TOKEN_LOG"
	fi
}

# --- images ----------------------------------------------------------------------

# rig_rootfs_layers DIR ARCH N [SALT]: gzip layer tars DIR/layer{1..N}.tar.gz.
#   1: bin/busybox + links; 2: etc/hello.txt (+ etc/salt); 3: usr/share/rs/data.bin
#   (2 MiB, from ARCH and SALT).  Layer 1 is the same in every image.
rig_rootfs_layers() {
	local d=$1 arch=$2 n=$3 salt=${4:-} i
	[ -x /bin/busybox ] || skip "/bin/busybox (busybox-static) not installed"
	file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' ||
		skip "/bin/busybox is not static (install busybox-static)"
	rm -rf "$d"
	mkdir -p "$d/l1/bin" "$d/l2/etc" "$d/l3/usr/share/rs"
	cp /bin/busybox "$d/l1/bin/busybox"
	for i in sh cat echo ls true sleep; do
		ln -s busybox "$d/l1/bin/$i"
	done
	echo "hello from rs-rig $arch" >"$d/l2/etc/hello.txt"
	printf 'PRETTY_NAME="rs-rig %s"\nNAME="rs-rig"\nID=rs-rig\n' "$arch" >"$d/l2/etc/os-release"
	[ -n "$salt" ] && echo "$salt" >"$d/l2/etc/salt"
	"$RIG_PY" -c 'import hashlib, sys
out = open(sys.argv[1], "wb")
h = hashlib.sha256(sys.argv[2].encode()).digest()
for i in range(2 * 1024 * 1024 // 32):
    h = hashlib.sha256(h).digest()
    out.write(h if i % 3 else bytes(32))' "$d/l3/usr/share/rs/data.bin" "$arch$salt"
	for i in $(seq 1 "$n"); do
		tar -C "$d/l$i" --sort=name --owner=0 --group=0 --numeric-owner \
			--mtime=2021-03-04T05:06:07Z -cf - . | gzip -n -6 >"$d/layer$i.tar.gz"
	done
}

# rig_layout OUT NAME:TAG ARCH N [SALT]: single-platform OCI layout at OUT.
rig_layout() {
	local out=$1 ref=$2 arch=$3 n=$4 salt=${5:-} layers=() i
	rig_rootfs_layers "$out.src" "$arch" "$n" "$salt"
	for i in $(seq 1 "$n"); do
		layers+=("$out.src/layer$i.tar.gz")
	done
	"$RIG_PY" "$TESTS_DIR/make_oci_image.py" --name "${ref##*:}" --arch "$arch" "$out" \
		"${layers[@]}" >"$out.json" || return 1
	rm -f "$out.tar"
}

# rig_multi_layout OUT TAG N: one layout with an image index (amd64 + arm64).
rig_multi_layout() {
	local out=$1 tag=$2 n=$3
	rig_layout "$out.amd64" "x:$tag" amd64 "$n" || return 1
	rig_layout "$out.arm64" "x:$tag" arm64 "$n" || return 1
	"$RIG_PY" - "$out" "$tag" "$out.amd64" "$out.arm64" <<'PY'
import hashlib, json, os, shutil, sys
out, tag, srcs = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
manifests = []
for s in srcs:
    for b in os.listdir(os.path.join(s, "blobs", "sha256")):
        shutil.copyfile(os.path.join(s, "blobs", "sha256", b), os.path.join(out, "blobs", "sha256", b))
    d = json.load(open(os.path.join(s, "index.json")))["manifests"][0]
    manifests.append({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
                      "platform": d["platform"]})
idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                  "manifests": manifests}, sort_keys=True).encode()
dg = hashlib.sha256(idx).hexdigest()
open(os.path.join(out, "blobs", "sha256", dg), "wb").write(idx)
json.dump({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + dg,
    "size": len(idx), "annotations": {"org.opencontainers.image.ref.name": tag}}]},
    open(os.path.join(out, "index.json"), "w"), sort_keys=True)
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci-layout"), "w"))
PY
}

# seed_image [--multi] [--v2s2] [--layers N] [--salt S] [--creds U:P] [--cert-dir D] REG NAME:TAG
# The layout stays at $RIG/img-<name>-<tag> (NAME's / and : as _), its layer
# trees at ....src/l{1,2,3}.  --salt S: layers 2 and 3 differ from every
# other image's (blobs in a registry are shared by digest: tamper with salted
# images only).
seed_image() {
	need_tools skopeo
	local multi=false v2s2=false n=3 creds='' certdir='' salt='' reg ref name tag
	while [ $# -gt 0 ]; do
		case $1 in
		--multi) multi=true ;;
		--v2s2) v2s2=true ;;
		--layers) n=$2; shift ;;
		--creds) creds=$2; shift ;;
		--cert-dir) certdir=$2; shift ;;
		--salt) salt=$2; shift ;;
		*) break ;;
		esac
		shift
	done
	reg=$1 ref=$2
	name=${ref%:*} tag=${ref##*:}
	local lay=$RIG/img-$(echo "$name-$tag" | tr '/:' '__')
	local arch
	arch=$("$RIG_PY" -c 'import os; m = os.uname().machine
print({"x86_64": "amd64", "aarch64": "arm64"}.get(m, m))')
	if $multi; then
		rig_multi_layout "$lay" "$tag" "$n" || return 1
	else
		rig_layout "$lay" "$name:$tag" "$arch" "$n" "$salt" || return 1
	fi
	local args=(copy --retry-times 2)
	$multi && args+=(--all)
	$v2s2 && args+=(--format v2s2)
	[ -n "$creds" ] && args+=(--dest-creds "$creds")
	if [ -n "$certdir" ]; then
		args+=(--dest-cert-dir "$certdir")
	else
		args+=(--dest-tls-verify=false)
	fi
	if skopeo "${args[@]}" "oci:$lay:$tag" "docker://$reg/$ref" >"$lay.skopeo.log" 2>&1; then
		rig_log "seeded $reg/$ref ($n layers$($multi && echo ", amd64+arm64 index")$($v2s2 && echo ", docker schema 2"))"
		return 0
	fi
	fail "skopeo could not push $reg/$ref"
	show_file "$lay.skopeo.log" skopeo.log
	return 1
}

# --- containerd ------------------------------------------------------------------

CTRD_PID=
containerd_stop() {
	[ -n "$CTRD_PID" ] || return 0
	findmnt -rn -o TARGET | grep -F "$RIG/" | sort -r | while read -r m; do umount -l "$m"; done
	rig_stop "$CTRD_PID"
	CTRD_PID=
}

containerd_start() {
	need_root
	need_tools containerd ctr runc containerd-shim-runc-v2
	local C=$RIG/containerd
	mkdir -p "$C/root" "$C/state" "$C/opt"
	CTRD_SOCK=$C/containerd.sock
	cat >"$C/config.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"
TOML
	[ -n "${CONTAINERD_EXTRA_CONFIG:-}" ] && printf '%s\n' "$CONTAINERD_EXTRA_CONFIG" >>"$C/config.toml"
	containerd --config "$C/config.toml" >"$C/containerd.log" 2>&1 &
	CTRD_PID=$!
	_RIG_PIDS+=("$CTRD_PID")
	on_exit containerd_stop
	for _ in $(seq 100); do
		ctr -a "$CTRD_SOCK" version >/dev/null 2>&1 && break
		kill -0 "$CTRD_PID" 2>/dev/null || break
		sleep 0.2
	done
	if ! ctr -a "$CTRD_SOCK" version >/dev/null 2>&1; then
		fail "containerd did not come up on $CTRD_SOCK"
		show_file "$C/containerd.log" containerd.log
		return 1
	fi
	CTR=(ctr -a "$CTRD_SOCK")
	rig_log "containerd $(containerd --version | awk '{print $3}') (pid $CTRD_PID) on $CTRD_SOCK"
}

# ctr_pull_run NAME REF CMD...: `ctr images pull "${CTR_PULL_ARGS[@]}" REF`, then
# `ctr run --rm REF ID CMD...`.  Pull output in $T/NAME-pull.{out,err}; run
# output in $T/NAME.{out,err}; $RC is the pull's exit code if it failed,
# else the run's.
CTR_PULL_ARGS=()
ctr_pull_run() {
	local name=$1 ref=$2
	shift 2
	run "$name-pull" timeout 120 "${CTR[@]}" images pull "${CTR_PULL_ARGS[@]}" "$ref"
	[ "$RC" -eq 0 ] || {
		cp "$T/$name-pull.out" "$T/$name.out"
		cp "$T/$name-pull.err" "$T/$name.err"
		return 0
	}
	run "$name" timeout 60 "${CTR[@]}" run --rm "$ref" "rs-$name-$$" "$@"
}

# --- podman ------------------------------------------------------------------------

# podman_setup: private storage, containers.conf, registries.conf (every
# registry started so far marked insecure); PODMAN=(podman ...global flags).
podman_setup() {
	need_root
	need_tools podman runc conmon
	local P=$RIG/podman r
	# podman refuses a runroot longer than 50 characters.
	PODMAN_RUNROOT=$(mktemp -d /run/rs-podman.XXXXXX 2>/dev/null || mktemp -d /tmp/rs-podman.XXXXXX)
	mkdir -p "$P/storage" "$P/tmp" "$P/volumes" "$P/net"
	local nproc nofile
	nproc=$(ulimit -Su) nofile=$(ulimit -Sn)
	[[ $nproc =~ ^[0-9]+$ ]] && [ "$nproc" -lt 4096 ] || nproc=4096
	[[ $nofile =~ ^[0-9]+$ ]] && [ "$nofile" -lt 4096 ] || nofile=4096
	cat >"$P/containers.conf" <<TOML
[containers]
netns = "none"
cgroupns = "host"
# podman asks runc for RLIMIT_NPROC/NOFILE at the host's values; in this
# sandbox runc then fails ("error setting rlimit type 6: operation not
# permitted"); values below the host's work.
default_ulimits = ["nproc=$nproc:$nproc", "nofile=$nofile:$nofile"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$P/events.log"
runtime = "runc"
tmp_dir = "$P/tmp"
volume_path = "$P/volumes"
no_pivot_root = false

[network]
network_config_dir = "$P/net"
TOML
	cat >"$P/storage.conf" <<TOML
[storage]
driver = "overlay"
graphroot = "$P/storage"
runroot = "$PODMAN_RUNROOT"
TOML
	{
		echo 'unqualified-search-registries = []'
		for r in ${PLAIN_REG:-} ${TOKEN_REG:-}; do
			printf '\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$r"
		done
	} >"$P/registries.conf"
	export CONTAINERS_CONF=$P/containers.conf
	export CONTAINERS_STORAGE_CONF=$P/storage.conf
	export CONTAINERS_REGISTRIES_CONF=$P/registries.conf
	PODMAN=(podman --root "$P/storage" --runroot "$PODMAN_RUNROOT" --tmpdir "$P/tmp"
		--cgroup-manager cgroupfs --events-backend file)
	on_exit podman_cleanup
}

podman_cleanup() {
	[ -n "${PODMAN:-}" ] || return 0
	timeout 60 "${PODMAN[@]}" rm -af >/dev/null 2>&1
	timeout 60 "${PODMAN[@]}" system reset -f >/dev/null 2>&1
	# conmon runs `podman container cleanup` after a container exits, which
	# may still be writing the runroot: wait for those (never kill them).
	for _ in $(seq 100); do
		pgrep -f -- "$PODMAN_RUNROOT" >/dev/null 2>&1 || break
		sleep 0.1
	done
	findmnt -rn -o TARGET | grep -F -e "$RIG/podman/" -e "$PODMAN_RUNROOT/" | sort -r |
		while read -r m; do umount -l "$m"; done
	rm -rf "$PODMAN_RUNROOT"
}

# podman_pull_run NAME REF CMD...: podman pull "${PODMAN_PULL_ARGS[@]}" REF,
# then podman run --rm --network none REF CMD...; like ctr_pull_run.
PODMAN_PULL_ARGS=()
PODMAN_RUN_ARGS=()
podman_pull_run() {
	local name=$1 ref=$2
	shift 2
	run "$name-pull" timeout 120 "${PODMAN[@]}" pull -q "${PODMAN_PULL_ARGS[@]}" "$ref"
	[ "$RC" -eq 0 ] || {
		cp "$T/$name-pull.out" "$T/$name.out"
		cp "$T/$name-pull.err" "$T/$name.err"
		return 0
	}
	run "$name" timeout 60 "${PODMAN[@]}" run --rm --network none --pull never "${PODMAN_RUN_ARGS[@]}" "$ref" "$@"
}

# --- misbehaving registries ----------------------------------------------------------

# fake_registry_start VAR ARGS...: fake_registry.py ARGS on a free port; sets
# VAR="127.0.0.1:PORT" and VAR_LOG (its request log); with --tls CERT:KEY it
# is waited for over https.
fake_registry_start() {
	local var=$1 port pid scheme=http a
	shift
	for a in "$@"; do [ "$a" = --tls ] && scheme=https; done
	local lg=$RIG/fake-$var.log
	: >"$lg"
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		"$RIG_PY" "$TESTS_DIR/fake_registry.py" --port "$port" --log "$lg" "$@" \
			>"$RIG/fake-$var.out" 2>&1 &
		pid=$!
		_RIG_PIDS+=("$pid")
		if rig_wait_http "$scheme://127.0.0.1:$port/_ready" "$pid" -k >/dev/null; then
			: >"$lg"
			printf -v "$var" '%s' "127.0.0.1:$port"
			printf -v "${var}_LOG" '%s' "$lg"
			printf -v "${var}_PID" '%s' "$pid"
			rig_log "fake registry $var (pid $pid) on $scheme://127.0.0.1:$port: $*"
			return 0
		fi
		rig_stop "$pid"
		grep -q 'Address already in use' "$RIG/fake-$var.out" && continue
		break
	done
	fail "fake_registry.py $* did not start"
	show_file "$RIG/fake-$var.out"
	return 1
}
