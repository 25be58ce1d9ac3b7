/**
 * The host daemon end to end, as separate `shoal daemon` processes on loopback over a real
 * registry: peers that lie (corrupt, truncated, wrong-index chunks) never get a wrong byte to a
 * reader and are blocklisted and counted; a swarm key keeps out daemons without it; a daemon
 * restarted after SIGTERM or SIGKILL keeps its peer id and cache and never serves a wrong byte.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { open, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { RunningRegistry } from '@shoal/registry/test/registry-server'
import {
  buildTestImage, Cleanup, metricValue, readAllFiles, startDaemon, writeTestSwarmKey, type CountingProxy, type TestImage, setUpSwarmTestWorld
} from './daemon-harness.js'
import { shoal } from './helpers.js'

const shared = new Cleanup()
let work: string
let registry: RunningRegistry
let image: TestImage
let hostConfig: string
let proxy: CountingProxy

before(async () => {
  ;({ work, registry, image, hostConfig, proxy } = await setUpSwarmTestWorld(shared, 'shoal-daemon-e2e-'))
})

after(async () => { await shared.run() })

test('peers serving corrupt, truncated or wrong-index chunks: no wrong byte reaches a reader, the peer is blocklisted and counted', { timeout: 120_000 }, async (t) => {
  const cleanup = new Cleanup()
  try {
    await Promise.all((['corrupt', 'truncate', 'wrong-index'] as const).map(async fault => {
      const liar = await startDaemon(`liar-${fault}`, { stateDir: join(work, `liar-${fault}`), args: ['--test-serve-fault', fault] }, cleanup)
      await liar.client.preheat(image.reference, { signal: AbortSignal.timeout(60_000) })
      const host = await startDaemon(`honest-${fault}`, {
        stateDir: join(work, `honest-${fault}`),
        metrics: true,
        args: ['--config', hostConfig, '--bootstrap', liar.addresses[0]!]
      }, cleanup)
      assert.deepEqual(await readAllFiles(host, image), [], `${fault}: every file right`)
      const status = await host.status()
      t.diagnostic(`${fault}: errors ${JSON.stringify(status.errors)}, bytes ${JSON.stringify(status.bytesBySource)}`)
      assert.ok(status.blocklisted.some(b => b.peer === liar.peerId), `${fault}: the liar is blocklisted (${JSON.stringify(status.blocklisted)})`)
      assert.ok((status.errors.peer_bad_chunk ?? 0) >= 1, `${fault}: counted as a bad peer chunk`)
      assert.ok((status.bytesBySource.registry ?? 0) > 0, `${fault}: the registry served what the liar could not`)
      const metrics = await (await fetch(host.metricsUrl!, { signal: AbortSignal.timeout(10_000) })).text()
      assert.ok(metricValue(metrics, 'shoal_errors_total', 'kind="peer_bad_chunk"') >= 1, `${fault}: shoal_errors_total{kind="peer_bad_chunk"}`)
      assert.ok(metricValue(metrics, 'shoal_swarm_bad_chunks_total') >= 1, `${fault}: shoal_swarm_bad_chunks_total`)
      assert.ok(metricValue(metrics, 'shoal_swarm_peers_blocklisted_total') >= 1)
      assert.ok(metricValue(metrics, 'shoal_read_bytes_total', 'source="registry"') > 0)
      assert.ok(metricValue(metrics, 'shoal_chunk_fetch_seconds_count', 'source="registry"') > 0)
    }))
  } finally {
    await cleanup.run()
  }
})

test('with a swarm key, a daemon without it (or with another) can neither join nor fetch from peers', { timeout: 120_000 }, async (t) => {
  const cleanup = new Cleanup()
  try {
    const keyA = join(work, 'swarm-a.key')
    const keyB = join(work, 'swarm-b.key')
    await writeTestSwarmKey(keyA, 'fleet a')
    await writeTestSwarmKey(keyB, 'fleet b')
    const seed = await startDaemon('keyed-seed', { stateDir: join(work, 'keyed-seed'), args: ['--seed', '--swarm-key', keyA] }, cleanup)
    await seed.client.preheat(image.reference, { signal: AbortSignal.timeout(60_000) })
    const bootstrap = ['--config', hostConfig, '--bootstrap', seed.addresses[0]!]
    const [member, outsider, stranger] = await Promise.all([
      startDaemon('member', { stateDir: join(work, 'member'), args: [...bootstrap, '--swarm-key', keyA] }, cleanup),
      startDaemon('no-key', { stateDir: join(work, 'no-key'), args: bootstrap }, cleanup),
      startDaemon('other-key', { stateDir: join(work, 'other-key'), args: [...bootstrap, '--swarm-key', keyB] }, cleanup)
    ])
    for (const host of [member, outsider, stranger]) assert.deepEqual(await readAllFiles(host, image), [], `${host.name}: every file right`)
    const [m, o, s] = await Promise.all([member.status(), outsider.status(), stranger.status()])
    t.diagnostic(`member ${JSON.stringify(m.bytesBySource)}; no key ${JSON.stringify(o.bytesBySource)}; other key ${JSON.stringify(s.bytesBySource)}`)
    assert.ok((m.bytesBySource.peers ?? 0) > 0, 'the member fetched from the seed')
    assert.equal(m.bytesBySource.registry ?? 0, 0)
    for (const [name, status] of [['no key', o], ['other key', s]] as const) {
      assert.deepEqual(status.peers, [], `${name}: no connection`)
      assert.equal(status.bytesBySource.peers ?? 0, 0, `${name}: nothing from peers`)
      assert.ok((status.bytesBySource.registry ?? 0) > 0, `${name}: everything from the registry`)
    }
    const seedPeers = (await seed.status()).peers.map(p => p.peer)
    assert.ok(seedPeers.includes(member.peerId))
    assert.ok(!seedPeers.includes(outsider.peerId) && !seedPeers.includes(stranger.peerId), `the seed's peers: ${seedPeers.join(', ')}`)
  } finally {
    await cleanup.run()
  }
})

async function cacheDataFiles (stateDir: string): Promise<string[]> {
  const dir = join(stateDir, 'state', 'cache', 'data')
  return (await readdir(dir)).map(name => join(dir, name))
}

test('restarted after SIGTERM and after SIGKILL, a daemon keeps its peer id and cache and never serves a wrong byte', { timeout: 150_000 }, async (t) => {
  const cleanup = new Cleanup()
  try {
    const seed = await startDaemon('restart-seed', { stateDir: join(work, 'restart-seed'), args: ['--seed'] }, cleanup)
    const preheat = await seed.client.preheat(image.reference, { signal: AbortSignal.timeout(60_000) })
    const hostDir = join(work, 'restarting')
    const args = ['--config', hostConfig, '--bootstrap', seed.addresses[0]!]
    const first = await startDaemon('restarting', { stateDir: hostDir, args }, cleanup)
    assert.deepEqual(await readAllFiles(first, image), [])
    const before = await first.status()
    assert.ok(before.cache.chunks > 0)

    // SIGTERM: exits 0, and the socket is gone.
    assert.equal(await first.stop('SIGTERM'), 0, first.log())
    await assert.rejects(stat(first.socket))
    const second = await startDaemon('restarting', { stateDir: hostDir, args }, cleanup)
    assert.equal(second.peerId, first.peerId, 'the same peer id')
    const afterTerm = await second.status()
    // SIGTERM waited for the cache writes still in flight: every chunk of the image is there.
    assert.equal(afterTerm.cache.chunks, preheat.chunks)
    assert.deepEqual(afterTerm.blobsHeld.sort(), [...image.dataBlobs].sort())
    assert.deepEqual(await readAllFiles(second, image), [])
    const sources = (await second.status()).bytesBySource
    assert.equal((sources.peers ?? 0) + (sources.registry ?? 0), 0, `after SIGTERM everything came from the cache: ${JSON.stringify(sources)}`)
    assert.ok((sources.cache ?? 0) > 0)

    // SIGKILL mid-read of a fresh daemon, then a restart: the cache recovers, every file is right.
    const freshDir = join(work, 'killed')
    const fresh = await startDaemon('killed', { stateDir: freshDir, args }, cleanup)
    const reading = readAllFiles(fresh, image).catch(() => [])
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline && ((await fresh.status()).cache.chunks) < 5) await sleep(10)
    assert.equal(await fresh.stop('SIGKILL'), 'SIGKILL')
    await reading
    const revived = await startDaemon('killed', { stateDir: freshDir, args }, cleanup)
    assert.equal(revived.peerId, fresh.peerId)
    const recovered = (await revived.status()).cache.chunks
    assert.deepEqual(await readAllFiles(revived, image), [], 'every file right after SIGKILL')
    t.diagnostic(`SIGKILL after ≥5 chunks: ${recovered} chunks recovered at restart`)

    // A cache file damaged while the daemon was down: caught by its digest, refetched, counted.
    assert.equal(await second.stop('SIGTERM'), 0)
    let flipped = 0
    for (const file of await cacheDataFiles(hostDir)) {
      const size = (await stat(file)).size
      const handle = await open(file, 'r+')
      try {
        // Flip a byte every 64 KiB: inside cached chunks wherever they are.
        for (let offset = 1000; offset < size; offset += 65536) {
          const byte = Buffer.alloc(1)
          await handle.read(byte, 0, 1, offset)
          byte[0] ^= 0xff
          await handle.write(byte, 0, 1, offset)
          flipped++
        }
      } finally {
        await handle.close()
      }
    }
    assert.ok(flipped > 0)
    const third = await startDaemon('restarting', { stateDir: hostDir, args }, cleanup)
    assert.deepEqual(await readAllFiles(third, image), [], 'every file right over a damaged cache')
    const damaged = await third.status()
    t.diagnostic(`damaged cache: ${flipped} bytes flipped; errors ${JSON.stringify(damaged.errors)}; bytes ${JSON.stringify(damaged.bytesBySource)}`)
    assert.ok((damaged.errors.cache_damaged ?? 0) >= 1, 'the damaged chunks were caught')
    assert.ok((damaged.bytesBySource.peers ?? 0) + (damaged.bytesBySource.registry ?? 0) > 0, 'and refetched')
  } finally {
    await cleanup.run()
  }
})

test('shoal status and shoal preheat talk to the daemon named by --daemon or SHOAL_DAEMON; a bad config is refused', { timeout: 60_000 }, async () => {
  const cleanup = new Cleanup()
  try {
    const d = await startDaemon('cli', { stateDir: join(work, 'cli') }, cleanup)
    const preheat = await shoal(['preheat', '--json', '--daemon', d.socket, image.reference])
    assert.equal(preheat.code, 0, preheat.stderr)
    const result = JSON.parse(preheat.stdout)
    assert.equal(result.blobs, image.dataBlobs.length)
    assert.ok(result.fetched.registry > 0)
    const status = await shoal(['status', '--json', '--daemon', d.socket])
    assert.equal(status.code, 0, status.stderr)
    const parsed = JSON.parse(status.stdout)
    assert.equal(parsed.peerId, d.peerId)
    assert.equal(parsed.cache.chunks, result.chunks)
    const text = await shoal(['status', '--daemon', d.socket])
    assert.match(text.stdout, /bytes read, by source:\n {2}registry/)
    const mode = (await stat(d.socket)).mode & 0o777
    assert.equal(mode, 0o600, 'the API socket is 0600')
    assert.equal((await stat(join(d.stateDir, 'run'))).mode & 0o777, 0o700)
    const missing = await shoal(['status', '--daemon', join(work, 'nobody.sock')])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /DaemonUnreachableError: no daemon answers/)
    const badConfig = join(work, 'bad.json')
    await writeFile(badConfig, JSON.stringify({ seed: 'yes' }))
    const refused = await shoal(['daemon', '--config', badConfig])
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /'seed' must be true or false/)
    const worldReadable = await shoal(['daemon', '--state-dir', join(work, 'x'), '--api-socket', '/tmp/shoal-test-api.sock'])
    assert.equal(worldReadable.code, 1)
    assert.match(worldReadable.stderr, /expected a directory only its owner can enter/)
  } finally {
    await cleanup.run()
  }
})

test('a tag pushed again: the next preheat or mount takes the new image; after a restart the bootstrap comes from the state dir, not the registry', { timeout: 120_000 }, async (t) => {
  const cleanup = new Cleanup()
  try {
    const { mkdir } = await import('node:fs/promises')
    const dir = join(work, 'moving')
    await mkdir(join(dir, 'first'), { recursive: true })
    await mkdir(join(dir, 'second'), { recursive: true })
    const first = await buildTestImage(registry, proxy, join(dir, 'first'), 'moving', 'moving-1')
    const d = await startDaemon('moving', { stateDir: dir }, cleanup)
    assert.deepEqual(await readAllFiles(d, first), [])

    // The same tag, other contents: a preheat resolves the tag again and fetches the new image;
    // reads then see it, not the one the daemon had open.
    const second = await buildTestImage(registry, proxy, join(dir, 'second'), 'moving', 'moving-2')
    assert.equal(second.reference, first.reference)
    assert.notEqual(second.files.get('/data/random-3m'), first.files.get('/data/random-3m'))
    const preheated = await d.client.preheat(second.reference, { signal: AbortSignal.timeout(60_000) })
    assert.ok((preheated.fetched.registry ?? 0) > 0, 'the new image\'s chunks were fetched')
    assert.deepEqual(await readAllFiles(d, second), [], 'every file of the image pushed second')
    const status = await d.status()
    assert.equal(status.images.length, 1, `the first image's device is closed: ${JSON.stringify(status.images)}`)

    // Restarted: the manifest is asked again (a tag may move), the bootstrap is not.
    assert.equal(await d.stop('SIGTERM'), 0, d.log())
    const again = await startDaemon('moving', { stateDir: dir }, cleanup)
    proxy.reset()
    assert.deepEqual(await readAllFiles(again, second), [])
    t.diagnostic(`after the restart the proxy counted ${proxy.manifestBytes()} manifest bytes, blobs ${JSON.stringify(Object.fromEntries(proxy.blobBytes))}`)
    assert.ok(proxy.manifestBytes() > 0, 'the tag was resolved again')
    assert.equal(proxy.blobBytes.get(second.bootstrapLayer) ?? 0, 0, 'the bootstrap layer came from the state dir')
    assert.equal((await again.status()).bytesBySource.registry ?? 0, 0, 'and the chunks from the cache')
  } finally {
    await cleanup.run()
  }
})

async function mountsUnder (dir: string): Promise<string[]> {
  const { readFile } = await import('node:fs/promises')
  return (await readFile('/proc/mounts', 'utf8')).split('\n').map(line => line.split(' ')[1] ?? '').filter(target => target.startsWith(`${dir}/`))
}

async function loopsUnder (dir: string): Promise<string[]> {
  const { readFile } = await import('node:fs/promises')
  const found: string[] = []
  for (const device of (await readdir('/sys/block')).filter(name => name.startsWith('loop'))) {
    const backing = await readFile(`/sys/block/${device}/loop/backing_file`, 'utf8').catch(() => '')
    // A loop over a blob file whose FUSE mount is already gone shows "/N-<blob id>": orphaned,
    // and nothing could find it by its work dir any more.
    if (backing.startsWith(`${dir}/`) || /^\/\d+-[0-9a-f]{64}$/.test(backing.trim())) found.push(`${device}: ${backing.trim()}`)
  }
  return found
}

async function mounted (path: string): Promise<boolean> {
  const { readFile } = await import('node:fs/promises')
  return (await readFile('/proc/mounts', 'utf8')).split('\n').some(line => line.split(' ')[1] === path)
}

test('mounts served by the daemon: shoal mount and umount through it; SIGTERM unmounts; after SIGKILL a restart clears the dead mount', { timeout: 120_000 }, async () => {
  const cleanup = new Cleanup()
  try {
    const { mkdir, readFile: read } = await import('node:fs/promises')
    const { createHash } = await import('node:crypto')
    const dir = join(work, 'mounting')
    const d = await startDaemon('mounting', { stateDir: dir }, cleanup)
    const mountpoint = join(dir, 'mnt')
    await mkdir(mountpoint)
    cleanup.add('unmount', async () => { if (await mounted(mountpoint)) await shoal(['umount', mountpoint]) })
    const mountedOut = await shoal(['mount', '--daemon', d.socket, image.reference, mountpoint], { timeoutMs: 60_000 })
    assert.equal(mountedOut.code, 0, mountedOut.stderr)
    assert.match(mountedOut.stdout, /served by the daemon/)
    assert.ok(await mounted(mountpoint))
    const bytes = await read(join(mountpoint, 'data', 'random-3m'))
    assert.equal(createHash('sha256').update(bytes).digest('hex'), image.files.get('/data/random-3m'))
    assert.equal((await d.client.mounts()).length, 1)
    const unmounted = await shoal(['umount', '--daemon', d.socket, mountpoint])
    assert.equal(unmounted.code, 0, unmounted.stderr)
    assert.ok(!await mounted(mountpoint))

    // SIGTERM with a mount: unmounted, exit 0.
    await d.client.mount(image.reference, mountpoint)
    assert.ok(await mounted(mountpoint))
    assert.equal(await d.stop('SIGTERM'), 0, d.log())
    assert.ok(!await mounted(mountpoint), 'SIGTERM unmounted it')

    // SIGKILL with a mount: the mount is left dead; the next start clears it and serves again.
    const again = await startDaemon('mounting', { stateDir: dir }, cleanup)
    await again.client.mount(image.reference, mountpoint)
    assert.equal(await again.stop('SIGKILL'), 'SIGKILL')
    const revived = await startDaemon('mounting', { stateDir: dir }, cleanup)
    assert.ok(!await mounted(mountpoint), 'the restart cleared the dead mount')
    assert.deepEqual(await mountsUnder(dir), [], 'and the mounts of its work dir')
    assert.deepEqual(await loopsUnder(dir), [], 'and its loop devices')
    await revived.client.mount(image.reference, mountpoint)
    const motd = await read(join(mountpoint, 'etc', 'motd'), 'utf8')
    assert.equal(motd, 'hello from the swarm\n')
    assert.equal(await revived.stop('SIGTERM'), 0)
    assert.ok(!await mounted(mountpoint))
    assert.deepEqual(await mountsUnder(dir), [])
    assert.deepEqual(await loopsUnder(dir), [])
  } finally {
    await cleanup.run()
  }
})
