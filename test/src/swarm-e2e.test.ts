/**
 * The swarm end to end: separate `shoal daemon` processes on loopback, a real registry behind a
 * proxy that counts the bytes it sends, a seed and four hosts. After a preheat the hosts read the
 * whole image at once and the registry sends no chunk bytes beyond what the seed fetched; with the
 * seed killed (SIGKILL) while they start, every host still reads every file right.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { RunningRegistry } from '@shoal/registry/test/registry-server'
import {
  Cleanup, readAllFiles, startDaemon, type CountingProxy, type RunningDaemon, type TestImage, setUpSwarmTestWorld
} from './daemon-harness.js'
import { shoal } from './helpers.js'

const shared = new Cleanup()
let work: string
let registry: RunningRegistry
let proxy: CountingProxy
let image: TestImage
let hostConfig: string

before(async () => {
  ;({ work, registry, proxy, image, hostConfig } = await setUpSwarmTestWorld(shared, 'shoal-swarm-e2e-'))
})

after(async () => { await shared.run() })

function dataBlobBytes (): number {
  return image.dataBlobs.reduce((sum, blob) => sum + (proxy.blobBytes.get(blob) ?? 0), 0)
}

async function startHosts (prefix: string, seed: RunningDaemon, cleanup: Cleanup): Promise<RunningDaemon[]> {
  return await Promise.all([1, 2, 3, 4].map(async i => await startDaemon(`${prefix}${i}`, {
    stateDir: join(work, `${prefix}${i}`),
    args: ['--config', hostConfig, '--bootstrap', seed.addresses[0]!]
  }, cleanup)))
}

test('after a preheat, four hosts read the whole image at once; the registry sends no chunk bytes beyond what the seed fetched', { timeout: 150_000 }, async (t) => {
  const cleanup = new Cleanup()
  try {
    const seed = await startDaemon('seed', { stateDir: join(work, 'seed'), args: ['--seed'] }, cleanup)
    const idleRss = (await seed.status()).memory.rss
    proxy.reset()
    const preheat = await seed.client.preheat(image.reference, { signal: AbortSignal.timeout(60_000) })
    const seedFetchedAtRegistry = dataBlobBytes()
    assert.ok(preheat.chunks > 30, `the preheat cached ${preheat.chunks} chunks`)
    assert.ok(seedFetchedAtRegistry > 0)
    assert.equal(preheat.fetched.registry, (await seed.status()).bytesBySource.registry)

    const hosts = await startHosts('host', seed, cleanup)
    // A container on every host at once, its rootfs mounted by the host's daemon.
    const runStarted = performance.now()
    const runs = await Promise.all(hosts.map(async host => await shoal([
      'run', '--daemon', host.socket, '--cache-dir', join(host.stateDir, 'containers'), image.reference,
      '--', 'sh', '-c', 'cat /etc/motd && sha256sum /data/random-5m /bin/busybox'
    ], { timeoutMs: 90_000 })))
    const runMs = performance.now() - runStarted
    for (const [i, ran] of runs.entries()) {
      assert.equal(ran.code, 0, `host ${i + 1}: ${ran.stderr}`)
      assert.match(ran.stdout, /hello from the swarm/)
      assert.ok(ran.stdout.includes(`${image.files.get('/data/random-5m')}  /data/random-5m`), ran.stdout)
      assert.ok(ran.stdout.includes(`${image.files.get('/bin/busybox')}  /bin/busybox`), ran.stdout)
    }
    assert.deepEqual((await Promise.all(hosts.map(async host => await host.client.mounts()))).flat(), [], 'every mount is gone after its container')
    const started = performance.now()
    const wrong = (await Promise.all(hosts.map(async host => await readAllFiles(host, image)))).flat()
    const readMs = performance.now() - started
    assert.deepEqual(wrong, [], 'every host reads every file right')

    const statuses = await Promise.all(hosts.map(async host => await host.status()))
    const hostsFromRegistry = statuses.reduce((sum, s) => sum + (s.bytesBySource.registry ?? 0), 0)
    const hostsFromPeers = statuses.map(s => s.bytesBySource.peers ?? 0)
    const seedAfter = await seed.status()
    const seedServed = seedAfter.served.bytes
    const hostRss = statuses.map(s => Math.round(s.memory.rss / 2 ** 20))
    t.diagnostic(`memory: seed ${Math.round(idleRss / 2 ** 20)} MiB resident idle, ${Math.round(seedAfter.memory.rss / 2 ** 20)} MiB after serving ${Math.round(seedServed / 2 ** 20)} MiB; hosts ${hostRss.join(', ')} MiB after their containers and reads`)
    t.diagnostic(`seed fetched ${seedFetchedAtRegistry} chunk bytes from the registry (counted at the registry); ` +
      `after 4 hosts read ${image.files.size} files each in ${Math.round(readMs)} ms the registry had sent ${dataBlobBytes()} chunk bytes in all, ` +
      `${proxy.manifestBytes()} manifest bytes and ${proxy.blobBytes.get(image.bootstrapLayer) ?? 0} bootstrap bytes; ` +
      `4 containers ran at once in ${Math.round(runMs)} ms; hosts got ${hostsFromPeers.join(', ')} bytes from peers and ${hostsFromRegistry} from the registry; the seed served ${seedServed}`)
    for (const [i, s] of statuses.entries()) t.diagnostic(`host ${i + 1}: ${JSON.stringify({ bytes: s.bytesBySource, fetching: s.fetching, errors: s.errors, served: s.served })}`)
    assert.ok(dataBlobBytes() <= seedFetchedAtRegistry, `registry sent ${dataBlobBytes()} chunk bytes, the seed fetched ${seedFetchedAtRegistry}`)
    assert.equal(hostsFromRegistry, 0)
    for (const [i, s] of statuses.entries()) {
      assert.ok((s.bytesBySource.peers ?? 0) > 0, `host ${i + 1} got bytes from peers`)
      assert.ok(s.peers.length > 0)
      assert.deepEqual(s.blobsHeld.sort(), [...image.dataBlobs].sort(), `host ${i + 1} holds (and so provides) the image's blobs`)
    }
    assert.ok(seedServed > 0)
  } finally {
    await cleanup.run()
  }
})

test('the seed killed with SIGKILL while four hosts start: every host still reads every file right', { timeout: 150_000 }, async (t) => {
  const cleanup = new Cleanup()
  try {
    const seed = await startDaemon('seed2', { stateDir: join(work, 'seed2'), args: ['--seed'] }, cleanup)
    await seed.client.preheat(image.reference, { signal: AbortSignal.timeout(60_000) })
    const hosts = await startHosts('late', seed, cleanup)
    proxy.reset()
    const reading = Promise.all(hosts.map(async host => await readAllFiles(host, image)))
    // Let the hosts get bytes from the seed, then kill it mid-transfer.
    const deadline = Date.now() + 20_000
    let fromPeers = 0
    while (fromPeers === 0 && Date.now() < deadline) {
      await sleep(25)
      fromPeers = (await Promise.all(hosts.map(async host => await host.status()))).reduce((sum, s) => sum + (s.bytesBySource.peers ?? 0), 0)
    }
    assert.ok(fromPeers > 0, 'the hosts got bytes from the seed before it was killed')
    const killed = await seed.stop('SIGKILL')
    assert.equal(killed, 'SIGKILL')
    const wrong = (await reading).flat()
    assert.deepEqual(wrong, [], 'every host reads every file right')
    const statuses = await Promise.all(hosts.map(async host => await host.status()))
    t.diagnostic('after the seed was killed: ' + statuses.map((s, i) =>
      `host ${i + 1} peers ${s.bytesBySource.peers ?? 0} B, registry ${s.bytesBySource.registry ?? 0} B`).join('; ') +
      `; the registry sent ${dataBlobBytes()} chunk bytes`)
    for (const s of statuses) {
      const total = (s.bytesBySource.peers ?? 0) + (s.bytesBySource.registry ?? 0)
      assert.ok(total > 0)
    }
  } finally {
    await cleanup.run()
  }
})
