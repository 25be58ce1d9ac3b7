/**
 * A swarm node in its own process, driven over stdin/stdout with one JSON object per line.
 * argv[2] is a JSON config: { swarm: SwarmInit, blobs: [{ seed, count, size, hold }], fault }.
 * `hold` is 'all', 'even', 'odd' or a list of indexes. `fault` makes the chunk server lie:
 * 'corrupt' (flip a byte), 'truncate' (end mid-chunk), 'wrong-index', or { delayMs } (slow).
 * Requests: { id, op, ...args }; answers: { id, ok, result } or { id, ok: false, error }.
 */
import { createInterface } from 'node:readline'
import { swarm, type SwarmInit } from '../src/index.js'
import { makeBlob, MemoryChunkStore, type TestBlob } from './fixture.js'

interface BlobSpec { seed: string, count: number, size: number, hold: 'all' | 'even' | 'odd' | 'none' | number[] }
interface NodeConfig { swarm: SwarmInit, blobs?: BlobSpec[], fault?: 'corrupt' | 'truncate' | 'wrong-index' | { delayMs: number } }

const config = JSON.parse(process.argv[2] ?? '{}') as NodeConfig
const store = new MemoryChunkStore()
const blobs = new Map<string, TestBlob>()
const specs = new Map<string, BlobSpec>()
for (const spec of config.blobs ?? []) {
  const blob = makeBlob(spec.seed, spec.count, spec.size)
  blobs.set(blob.blobId, blob)
  specs.set(blob.blobId, spec)
  blob.chunks.forEach((bytes, index) => {
    const held = spec.hold === 'all' || (spec.hold === 'even' && index % 2 === 0) ||
      (spec.hold === 'odd' && index % 2 === 1) || (Array.isArray(spec.hold) && spec.hold.includes(index))
    if (held) store.put(blob.blobId, index, bytes)
  })
}

const node = swarm(config.swarm)({ chunkStore: store })
await node.start()

const server = (node as any).chunkServer
const fault = config.fault
if (fault === 'corrupt') {
  server.mutateChunk = (_b: string, index: number, bytes: Uint8Array) => {
    const copy = Uint8Array.from(bytes)
    copy[copy.length >> 1]! ^= 0x40
    return { index, bytes: copy }
  }
} else if (fault === 'truncate') {
  server.mutateChunk = (_b: string, index: number, bytes: Uint8Array) => ({ index, bytes: bytes.subarray(0, bytes.length >> 1), truncate: true })
} else if (fault === 'wrong-index') {
  server.mutateChunk = (_b: string, index: number, bytes: Uint8Array) => ({ index: index + 1, bytes })
} else if (fault != null && typeof fault === 'object') {
  const delay = fault.delayMs
  server.mutateChunk = (_b: string, index: number, bytes: Uint8Array) => {
    const until = Date.now() + delay
    while (Date.now() < until) { /* a slow disk: block the server */ }
    return { index, bytes }
  }
}

function send (message: unknown): void {
  process.stdout.write(JSON.stringify(message) + '\n')
}

send({ ready: true, peerId: node.peerId, multiaddrs: node.multiaddrs })

const ops: Record<string, (args: any) => Promise<unknown>> = {
  provide: async ({ blobId }) => { await node.provideBlob(blobId) },
  /** Caches one verified chunk, as the daemon's chunk cache would after reading it from a registry. */
  put: async ({ blobId, index, base64 }) => { store.put(blobId, index, Buffer.from(base64, 'base64')) },
  withdraw: async ({ blobId }) => { await node.withdrawBlob(blobId) },
  dial: async ({ address }) => { await node.dial(address) },
  findProviders: async ({ blobId, timeout }) => {
    const started = performance.now()
    const peers = await node.findProviders(blobId, { timeout })
    return { peers, ms: performance.now() - started }
  },
  /** Fetches chunks through the SwarmChunkSource; answers with per-chunk sha256 so bytes are checked by the test. */
  fetch: async ({ seed, count, size, indexes }) => {
    const blob = makeBlob(seed, count, size)
    const refs = (indexes as number[]).map(i => blob.refs[i]!)
    const started = performance.now()
    const got = await node.chunkSource.getChunks(refs)
    const ms = performance.now() - started
    const { createHash } = await import('node:crypto')
    return {
      ms,
      chunks: got.map(bytes => bytes == null ? null : createHash('sha256').update(bytes).digest('hex'))
    }
  },
  stats: async () => node.stats(),
  connections: async () => node.node.getConnections().map(c => c.remotePeer.toString())
}

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  let request: any
  try { request = JSON.parse(line) } catch { return }
  const op = ops[request.op]
  if (op == null) {
    send({ id: request.id, ok: false, error: `unknown op ${request.op}` })
    return
  }
  op(request).then(result => { send({ id: request.id, ok: true, result }) }, (err: any) => {
    send({ id: request.id, ok: false, error: `${err?.name}: ${err?.message}` })
  })
})
lines.on('close', () => {
  node.stop().finally(() => process.exit(0))
})
process.on('SIGTERM', () => { node.stop().finally(() => process.exit(0)) })
