#!/usr/bin/env bash
# The demo: a local registry, a busybox image converted to Nydus into it, a seed and two host
# daemons (separate processes on loopback), a preheat on the seed, a container on each host
# through its daemon, and where each host's bytes came from. Everything it starts is stopped on
# exit, by PID; nothing stays mounted.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
root=$PWD
node="$root/node_modules/.bin/node"
shoal () { "$root/packages/cli/bin/shoal" "$@"; }

work=$(mktemp -d /tmp/shoal-demo.XXXXXX)
pids=()
cleanup () {
  local status=$?
  set +e
  # Mounts first (a container's rootfs, then its image), then the processes, newest first.
  for mp in $(awk -v w="$work" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r); do umount "$mp" 2>/dev/null || umount -l "$mp"; done
  for (( i=${#pids[@]}-1; i>=0; i-- )); do kill -TERM "${pids[$i]}" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port () { "$node" -e 's=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# Waits (at most 30 s) for a line in a daemon's stdout; prints it.
wait_for () {
  local file=$1 pattern=$2 pid=$3
  for _ in $(seq 300); do
    if grep -q "$pattern" "$file" 2>/dev/null; then grep -m1 "$pattern" "$file"; return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "demo: process $pid exited:" >&2; cat "$file" "${file%.out}.log" >&2; return 1; }
    sleep 0.1
  done
  echo "demo: timed out waiting for '$pattern' in $file" >&2
  return 1
}

echo "== a local registry (Debian docker-registry) on 127.0.0.1"
reg_port=$(free_port)
cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$reg_port
  secret: shoal-demo-secret
EOF
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
pids+=($!)
# node's fetch rather than curl: the demo needs nothing setup.sh does not install.
http_get () { "$node" -e 'fetch(process.argv[1]).then(async r => { if (!r.ok) process.exit(1); process.stdout.write(await r.text()) }, () => process.exit(1))' "$1"; }
for _ in $(seq 100); do http_get "http://127.0.0.1:$reg_port/v2/" >/dev/null && break; sleep 0.1; done
registry=127.0.0.1:$reg_port
echo "registry at $registry"

echo "== a busybox OCI image (umoci)"
umoci init --layout "$work/oci"
umoci new --image "$work/oci:busybox"
umoci unpack --image "$work/oci:busybox" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/etc"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
for applet in sh ls cat echo wc sha256sum; do ln -s busybox "$work/bundle/rootfs/bin/$applet"; done
echo 'hello from a Shoal image, fetched from peers' > "$work/bundle/rootfs/etc/motd"
umoci repack --image "$work/oci:busybox" "$work/bundle" >/dev/null
umoci config --image "$work/oci:busybox" --config.cmd sh
rm -rf "$work/bundle"

image="docker://$registry/demo/busybox:nydus"
echo "== shoal convert oci:…:busybox $image"
shoal convert "oci:$work/oci:busybox" "$image"

# Starts a daemon and sets $address to its first swarm address. Not run in $(…): the PID must
# reach the cleanup list of this shell.
start_daemon () {
  local name=$1; shift
  mkdir -p "$work/$name"
  # The binary itself, not the shell function: $! is then the daemon's own PID.
  "$root/packages/cli/bin/shoal" daemon --state-dir "$work/$name/state" --api-socket "$work/$name/run/api.sock" \
    --listen /ip4/127.0.0.1/tcp/0 --allow /ip4/127.0.0.1 "$@" > "$work/$name.out" 2> "$work/$name.log" &
  pids+=($!)
  wait_for "$work/$name.out" '^api: ' "$!" >/dev/null
  address=$(grep -m1 '^address: ' "$work/$name.out" | sed 's/^address: //')
}

echo "== a seed and two host daemons"
metrics_port=$(free_port)
start_daemon seed --seed --metrics "127.0.0.1:$metrics_port"
seed_addr=$address
echo "seed   $seed_addr"
start_daemon host1 --bootstrap "$seed_addr"
echo "host1  $address"
start_daemon host2 --bootstrap "$seed_addr"
echo "host2  $address"

echo "== shoal preheat on the seed"
shoal preheat --daemon "$work/seed/run/api.sock" "$image"

for host in host1 host2; do
  echo "== $host: shoal run, through its daemon (SHOAL_DAEMON)"
  SHOAL_DAEMON="$work/$host/run/api.sock" timeout 60 "$root/packages/cli/bin/shoal" run --verbose --cache-dir "$work/$host/containers" "$image" \
    -- sh -c 'cat /etc/motd; sha256sum /bin/busybox'
  echo "(the original: $(sha256sum /bin/busybox))"
done

for name in seed host1 host2; do
  echo "== shoal status: $name"
  shoal status --daemon "$work/$name/run/api.sock"
done
echo "== the seed's metrics (bytes by source)"
http_get "http://127.0.0.1:$metrics_port/metrics" | grep -E '^shoal_(read_bytes_total|peers|cache_bytes|provided_blobs)' || true
echo "== done: stopping everything"
