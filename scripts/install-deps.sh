#!/usr/bin/env bash
# Install the Debian 12 packages needed to build and test remote-snapshotter.
# Idempotent: does nothing (quickly) when every package is already installed,
# runs `apt-get update` at most once and only when something is missing.
set -euo pipefail

PACKAGES=(
	# build
	meson ninja-build pkg-config gcc g++ clang clang-format libclang-rt-14-dev
	libcurl4-openssl-dev zlib1g-dev libdeflate-dev libzstd-dev
	libssl-dev libjansson-dev libsimdjson-dev libsqlite3-dev libarchive-dev
	libtomlplusplus-dev
	# containerd API: gRPC core, protobuf-c, containerd's and protobuf's .proto files
	libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev
	golang-github-containerd-containerd-dev
	libcmocka-dev
	# test peers and tools
	fuse3 zstd gzip tar coreutils stargz-snapshotter containerd runc attr
	debootstrap jq xxd python3 util-linux e2fsprogs procps file rsync
	# registry rig (tests/integration/registry-lib.sh)
	docker-registry skopeo podman conmon busybox-static apache2-utils curl openssl
	python3-jwt python3-cryptography
	# OCI layout checks (tests/integration/test-convert-oci.sh)
	umoci
)

# One dpkg-query for all: packages not known to dpkg print nothing on stdout.
declare -A ok=()
while read -r name status; do
	[ "$status" = "install ok installed" ] && ok[$name]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)

missing=()
for p in "${PACKAGES[@]}"; do
	[ -n "${ok[$p]:-}" ] || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "install-deps: all ${#PACKAGES[@]} packages present"
	exit 0
fi

echo "install-deps: installing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive

apt_install() {
	$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
}

# Only refresh the package lists if they were never fetched or the install fails
# for want of them (stale lists give 404s or "Unable to locate package").
lists_present=false
if compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
	lists_present=true
fi
if $lists_present && apt_install; then
	exit 0
fi
$SUDO apt-get update
apt_install
