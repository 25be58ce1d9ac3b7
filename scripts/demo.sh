#!/usr/bin/env bash
# The demo: builds a Nydus image from a small busybox root filesystem, inspects it, verifies every
# chunk, and unpacks it. It grows into the full swarm demo as the daemon lands.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
shoal () { packages/cli/bin/shoal "$@"; }

work=$(mktemp -d /tmp/shoal-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh ls cat echo; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'hello from a lazily built image' > "$work/rootfs/etc/motd"

echo "== shoal build"
shoal build "$work/rootfs" --bootstrap "$work/image.boot" --blob-dir "$work/blobs"
echo "== shoal inspect --stats"
shoal inspect "bootstrap:$work/image.boot" --stats
echo "== shoal inspect --tree"
shoal inspect "bootstrap:$work/image.boot" --tree
echo "== shoal check"
shoal check "bootstrap:$work/image.boot" --blob-dir "$work/blobs"
echo "== shoal unpack"
shoal unpack "bootstrap:$work/image.boot" --blob-dir "$work/blobs" "$work/out"
cat "$work/out/etc/motd"
