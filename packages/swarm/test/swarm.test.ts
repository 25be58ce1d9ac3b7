import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { generateSwarmKey, PEER_KEY_FILE } from '../src/index.js'
import { makeBlob } from './fixture.js'
import { startNode, type TestNode } from './harness.js'
import { createHash } from 'node:crypto'

const LOOPBACK = { listen: ['/ip4/127.0.0.1/tcp/0'], allow: ['/ip4/127.0.0.1'] }
const BLOB = { seed: 'alpha', count: 24, size: 256 * 1024 }
const blob = makeBlob(BLOB.seed, BLOB.count, BLOB.size)
const expected = blob.chunks.map(bytes => createHash('sha256').update(bytes).digest('hex'))
const ALL = blob.refs.map(ref => ref.index)

const started: TestNode[] = []
after(async () => { await Promise.all(started.map(async node => { await node.stop() })) })

async function node (config: Record<string, unknown>): Promise<TestNode> {
  const n = await startNode(config)
  started.push(n)
  return n
}

/**
 * Polls findProviders until `want` peers were found (the DHT needs a moment after a provide);
 * answers every provider seen by any lookup, since one lookup on a loaded host may see fewer.
 */
async function providersOf (n: TestNode, blobId: string, want: number, deadlineMs = 10_000): Promise<string[]> {
  const until = Date.now() + deadlineMs
  const seen = new Set<string>()
  while (Date.now() < until) {
    const { peers } = await n.call('findProviders', { blobId, timeout: 200 })
    for (const peer of peers as string[]) seen.add(peer)
    if (seen.size >= want) break
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return [...seen]
}

describe('swarm among separate processes on loopback', { timeout: 300_000 }, () => {
  it('provides and finds blob providers among five nodes; a fetched chunk verifies; several peers share the work', async () => {
    const seed = await node({ swarm: { ...LOOPBACK, seed: true } })
    const boot = { ...LOOPBACK, bootstrap: [seed.multiaddrs[0]] }
    const [b, c, d, e] = await Promise.all([
      node({ swarm: boot, blobs: [{ ...BLOB, hold: 'all' }] }),
      node({ swarm: boot, blobs: [{ ...BLOB, hold: 'all' }] }),
      node({ swarm: boot, blobs: [{ ...BLOB, hold: 'even' }] }),
      node({ swarm: boot })
    ])
    await Promise.all([b!, c!, d!].map(async n => { await n.call('provide', { blobId: blob.blobId }) }))

    for (const asker of [seed, e!]) {
      const found = await providersOf(asker, blob.blobId, 3)
      assert.deepEqual([...found].sort(), [b!.peerId, c!.peerId, d!.peerId].sort(), 'every provider is found')
    }
    // A blob nobody provides: the lookup answers empty within its short timeout.
    const missing = createHash('sha256').update('nobody has this').digest('hex')
    const miss = await e!.call('findProviders', { blobId: missing, timeout: 50 })
    assert.deepEqual(miss.peers, [])
    assert.ok(miss.ms < 1000, `a miss took ${miss.ms} ms`)

    const fetched = await e!.call('fetch', { ...BLOB, indexes: ALL })
    assert.deepEqual(fetched.chunks, expected, 'every chunk arrives with the right bytes')
    const stats = await e!.call('stats')
    assert.equal(stats.source.chunksFromPeers, BLOB.count)
    const contributors = Object.entries(stats.source.bytesByPeer).filter(([, bytes]) => (bytes as number) > 0)
    assert.ok(contributors.length >= 2, `chunks came from ${contributors.length} peer(s): ${JSON.stringify(stats.source.bytesByPeer)}; peers known ${JSON.stringify(stats.peers)}; lookups ${stats.source.providerLookups}, widenings ${stats.source.providerWidenings}`)
    const total = contributors.reduce((sum, [, bytes]) => sum + (bytes as number), 0)
    assert.equal(total, blob.chunks.reduce((sum, bytes) => sum + bytes.length, 0))
    assert.deepEqual(stats.blocklisted, [])

    // Withdrawn: the node no longer serves it after eviction, and an asker falls back cleanly.
    await b!.call('withdraw', { blobId: blob.blobId })
    const bStats = await b!.call('stats')
    assert.deepEqual(bStats.provided, [])
  })

  it('never lets a wrong byte through from corrupting, truncating or wrong-index peers, and blocklists them', async () => {
    const seed = await node({ swarm: { ...LOOPBACK, seed: true } })
    const boot = { ...LOOPBACK, bootstrap: [seed.multiaddrs[0]] }
    const liars = await Promise.all((['corrupt', 'truncate', 'wrong-index'] as const).map(async fault =>
      await node({ swarm: boot, blobs: [{ ...BLOB, hold: 'all' }], fault })))
    const honest = await node({ swarm: boot, blobs: [{ ...BLOB, hold: 'all' }] })
    const asker = await node({ swarm: { ...boot, source: { maxChunksPerRequest: 2 } } })
    await Promise.all([...liars, honest].map(async n => { await n.call('provide', { blobId: blob.blobId }) }))
    assert.equal((await providersOf(asker, blob.blobId, 4)).length, 4)

    let blocklisted: string[] = []
    for (let round = 0; round < 4; round++) {
      const fetched = await asker.call('fetch', { ...BLOB, indexes: ALL })
      // Each chunk is the right one, or (never here, since an honest peer holds all) missing.
      fetched.chunks.forEach((digest: string | null, i: number) => {
        assert.equal(digest, expected[i], `chunk ${i} in round ${round}`)
      })
      const stats = await asker.call('stats')
      blocklisted = stats.blocklisted.map((entry: { peer: string }) => entry.peer)
      if (liars.every(liar => blocklisted.includes(liar.peerId))) break
    }
    assert.deepEqual([...blocklisted].sort(), liars.map(liar => liar.peerId).sort(), 'every liar, and only they, are blocklisted')
    const stats = await asker.call('stats')
    assert.ok(stats.source.badChunks >= 3, `bad chunks counted: ${stats.source.badChunks}`)
    assert.equal(stats.source.blocklistedPeers, 3)
    assert.ok(!blocklisted.includes(honest.peerId))
  })

  it('chunks the providers found lack come from the seed before the registry; a chunk nobody holds widens once per blob', async () => {
    // The seed holds the whole blob but its provider record is not found (as when a lookup
    // answers with the first providers it meets); a provider holds every other chunk.
    const seed = await node({ swarm: { ...LOOPBACK, seed: true }, blobs: [{ ...BLOB, hold: 'all' }] })
    const boot = { ...LOOPBACK, bootstrap: [seed.multiaddrs[0]] }
    const scarce = { seed: 'scarce', count: 8, size: 64 * 1024 }
    const scarceBlob = makeBlob(scarce.seed, scarce.count, scarce.size)
    const half = await node({ swarm: boot, blobs: [{ ...BLOB, hold: 'even' }, { ...scarce, hold: 'even' }] })
    const asker = await node({ swarm: boot })
    await half.call('provide', { blobId: blob.blobId })
    await half.call('provide', { blobId: scarceBlob.blobId })
    assert.deepEqual(await providersOf(asker, blob.blobId, 1), [half.peerId])

    const fetched = await asker.call('fetch', { ...BLOB, indexes: ALL })
    assert.deepEqual(fetched.chunks, expected, 'every chunk, the odd ones from the seed')
    let stats = await asker.call('stats')
    assert.equal(stats.source.chunksMissed, 0)
    const oddBytes = blob.chunks.filter((_, i) => i % 2 === 1).reduce((sum, bytes) => sum + bytes.length, 0)
    // Once known, the seed may take even chunks too: the work is spread over every holder.
    assert.ok(stats.source.bytesByPeer[seed.peerId] >= oddBytes, `the seed sent ${stats.source.bytesByPeer[seed.peerId]} bytes, the odd chunks are ${oddBytes}`)
    assert.equal(stats.source.providerWidenings, 1)

    // Odd chunks of `scarce` are nowhere: they come back missing (for the registry), and two
    // reads in a row widen the lookup once, not once each.
    const scarceExpected = scarceBlob.chunks.map((bytes, i) => i % 2 === 0 ? createHash('sha256').update(bytes).digest('hex') : null)
    for (let read = 0; read < 2; read++) {
      const got = await asker.call('fetch', { ...scarce, indexes: scarceBlob.refs.map(ref => ref.index) })
      assert.deepEqual(got.chunks, scarceExpected, `read ${read}`)
    }
    stats = await asker.call('stats')
    assert.equal(stats.source.providerWidenings, 2)
    assert.equal(stats.source.chunksMissed, 2 * scarce.count / 2)
  })

  it('with a swarm key, a node without it (or with another key) can neither connect nor fetch', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-swarm-key-'))
    try {
      const keyFile = join(dir, 'swarm.key')
      const otherKeyFile = join(dir, 'other.key')
      await writeFile(keyFile, generateSwarmKey())
      await writeFile(otherKeyFile, generateSwarmKey())
      const holder = await node({ swarm: { ...LOOPBACK, swarmKeyFile: keyFile }, blobs: [{ ...BLOB, hold: 'all' }] })
      const member = await node({ swarm: { ...LOOPBACK, swarmKeyFile: keyFile, bootstrap: [holder.multiaddrs[0]] } })
      const outsider = await node({ swarm: { ...LOOPBACK, bootstrap: [holder.multiaddrs[0]] } })
      const stranger = await node({ swarm: { ...LOOPBACK, swarmKeyFile: otherKeyFile, bootstrap: [holder.multiaddrs[0]] } })
      await holder.call('provide', { blobId: blob.blobId })

      assert.deepEqual(await providersOf(member, blob.blobId, 1), [holder.peerId])
      const ok = await member.call('fetch', { ...BLOB, indexes: [0, 5, 23] })
      assert.deepEqual(ok.chunks, [expected[0], expected[5], expected[23]])

      for (const outside of [outsider, stranger]) {
        await assert.rejects(outside.call('dial', { address: holder.multiaddrs[0] }), 'the handshake fails without the key')
        assert.deepEqual(await outside.call('connections'), [])
        assert.deepEqual((await outside.call('findProviders', { blobId: blob.blobId, timeout: 300 })).peers, [])
        const none = await outside.call('fetch', { ...BLOB, indexes: [0, 1] })
        assert.deepEqual(none.chunks, [null, null])
      }
      const holderConnections: string[] = await holder.call('connections')
      assert.ok(!holderConnections.includes(outsider.peerId) && !holderConnections.includes(stranger.peerId))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('keeps its peer id across restarts (key saved in the state dir, mode 0600)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-swarm-state-'))
    try {
      const first = await startNode({ swarm: { ...LOOPBACK, stateDir: dir } })
      const id = first.peerId
      await first.kill('SIGKILL')
      const keyFile = join(dir, PEER_KEY_FILE)
      assert.equal((await stat(keyFile)).mode & 0o777, 0o600)
      const before = await readFile(keyFile)
      const second = await startNode({ swarm: { ...LOOPBACK, stateDir: dir } })
      assert.equal(second.peerId, id)
      await second.stop()
      assert.deepEqual(await readFile(keyFile), before)
      const other = await startNode({ swarm: LOOPBACK })
      assert.notEqual(other.peerId, id)
      await other.stop()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('hedging', { timeout: 180_000 }, () => {
  it('asks a second peer when the first is slow, and the fast copy wins', async () => {
    const seed = await node({ swarm: { ...LOOPBACK, seed: true } })
    const boot = { ...LOOPBACK, bootstrap: [seed.multiaddrs[0]] }
    const slow = await node({ swarm: boot, blobs: [{ ...BLOB, hold: 'all' }], fault: { delayMs: 400 } })
    const fast = await node({ swarm: boot, blobs: [{ ...BLOB, hold: 'all' }] })
    const asker = await node({ swarm: { ...boot, source: { maxChunksPerRequest: 4 } } })
    await Promise.all([slow, fast].map(async n => { await n.call('provide', { blobId: blob.blobId }) }))
    assert.equal((await providersOf(asker, blob.blobId, 2)).length, 2)
    const fetched = await asker.call('fetch', { ...BLOB, indexes: ALL })
    assert.deepEqual(fetched.chunks, expected)
    const stats = await asker.call('stats')
    assert.ok(stats.source.hedgedRequests > 0, 'some request was hedged')
    const fromFast = stats.source.bytesByPeer[fast.peerId] ?? 0
    const fromSlow = stats.source.bytesByPeer[slow.peerId] ?? 0
    assert.ok(fromFast > fromSlow, `fast peer sent ${fromFast} bytes, slow peer ${fromSlow}`)
    // 24 chunks at 400 ms each from the slow peer alone would take 9.6 s.
    assert.ok(fetched.ms < 9600 / 2, `fetch took ${Math.round(fetched.ms)} ms`)
    assert.deepEqual(stats.blocklisted, [], 'slow is not bad')
  })
})
