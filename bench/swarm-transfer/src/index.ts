/**
 * Swarm transfer: the chunks of a zstd blob made from real files, moved between two processes
 * on loopback, side by side in one run:
 *   - local floor: decode (zstd) + verify every stored chunk from memory, and sha256 alone;
 *   - swarm: verified chunks/s through SwarmChunkSource from a peer, Noise and TLS;
 *   - raw node:net: the same uncompressed bytes over a plain TCP socket, no verification;
 *   - DHT: findProviders latency (first result) among three nodes;
 *   - memory: real `shoal daemon` processes idle and preheating (see memory.ts), beside a bare Node
 *     process and a bare swarm node.
 * The peer runs this same file with `--role server`.
 *
 * Usage: node bench/swarm-transfer/dist/index.js [--dir DIR] [--mib N] [--out DIR] [--only PARTS] [--image NAME]
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { DEFAULT_SHOAL_BIN } from '@shoal/bench-harness'
import type { AbortOptions, BlobId, ChunkRef, ChunkStore } from '@shoal/interface'
import { compressChunk, decodeChunkRef } from '@shoal/rafs'
import { swarm, type Swarm } from '@shoal/swarm'
import { measureDaemonMemory, memoryMarkdown, type MemoryReport } from './memory.js'

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '/usr/lib/x86_64-linux-gnu' },
    mib: { type: 'string', default: '64' },
    out: { type: 'string', default: 'bench/results' },
    role: { type: 'string', default: 'client' },
    encryption: { type: 'string', default: 'noise' },
    bootstrap: { type: 'string' },
    /** Comma-separated subset of floor,noise,stored,tls,raw,dht,memory (for profiling one part); stored adds a noise run with stored bytes on the wire. */
    only: { type: 'string', default: 'floor,noise,stored,tls,raw,dht,memory' },
    /** The image the memory part's daemons preheat (a @shoal/bench-images recipe). */
    image: { type: 'string', default: 'python3' },
    /** The client's verify threads (SwarmInit.verifyThreads); default: the swarm's own default. */
    'verify-threads': { type: 'string' },
    /** The serving peer's wire encoding (internal: set per run by the client). */
    wire: { type: 'string', default: 'uncompressed' }
  }
})
const CHUNK = 1024 * 1024
const LOOPBACK = { listen: ['/ip4/127.0.0.1/tcp/0'], allow: ['/ip4/127.0.0.1'] }

interface Data { blobId: BlobId, chunks: Uint8Array[], stored: Uint8Array[], refs: ChunkRef[] }

/** 1 MiB chunks cut from the regular files under `dir` (sorted, deterministic), zstd-compressed. */
async function loadData (dir: string, budget: number): Promise<Data> {
  const all = Buffer.allocUnsafe(budget)
  let filled = 0
  const names = (await readdir(dir, { withFileTypes: true })).filter(e => e.isFile()).map(e => e.name).sort()
  for (const name of names) {
    if (filled >= budget) break
    const bytes = await readFile(join(dir, name)).catch(() => undefined)
    if (bytes == null) continue
    filled += bytes.copy(all, filled)
  }
  const blobId = createHash('sha256').update(all.subarray(0, filled)).digest('hex')
  const chunks: Uint8Array[] = []
  const stored: Uint8Array[] = []
  const refs: ChunkRef[] = []
  let compressedOffset = 0
  for (let at = 0, index = 0; at < filled; at += CHUNK, index++) {
    const bytes = all.subarray(at, Math.min(at + CHUNK, filled))
    const { bytes: s, compressed } = compressChunk(bytes, 'zstd')
    chunks.push(bytes)
    stored.push(s)
    refs.push({
      blobId, index, compressedOffset, compressedSize: s.length, uncompressedOffset: at, uncompressedSize: bytes.length,
      compressed, compressor: 'zstd', digester: 'sha256', digest: createHash('sha256').update(bytes).digest()
    })
    compressedOffset += s.length
  }
  return { blobId, chunks, stored, refs }
}

function storeOf (data: Data): ChunkStore {
  const bits = new Uint8Array(Math.ceil(data.chunks.length / 8)).fill(0xff)
  return {
    has: async (blobId: BlobId, index: number) => blobId === data.blobId && index < data.chunks.length,
    bitmap: async (blobId: BlobId) => blobId === data.blobId ? bits : undefined,
    getUncompressed: async (blobId: BlobId, index: number, _o?: AbortOptions) => blobId === data.blobId ? data.chunks[index] : undefined,
    // A seed with the blob file: the stored form is there too (used with --wire stored).
    getStored: async (blobId: BlobId, index: number, _o?: AbortOptions) => blobId === data.blobId ? data.stored[index] : undefined
  } as ChunkStore
}

async function server (): Promise<void> {
  const data = await loadData(values.dir!, Number(values.mib) * CHUNK)
  const node = swarm({ ...LOOPBACK, seed: true, encryption: values.encryption as 'noise' | 'tls', wireEncoding: values.wire as 'uncompressed' | 'stored', ...(values.bootstrap != null ? { bootstrap: [values.bootstrap] } : {}) })({ chunkStore: storeOf(data) })
  await node.start()
  // Raw TCP: the same uncompressed bytes, length-prefixed, once per connection.
  const raw = net.createServer(socket => {
    const write = async (): Promise<void> => {
      for (const bytes of data.chunks) {
        const header = Buffer.allocUnsafe(4)
        header.writeUInt32BE(bytes.length)
        socket.write(header)
        if (!socket.write(bytes)) await new Promise(resolve => socket.once('drain', resolve))
      }
      socket.end()
    }
    write().catch(() => socket.destroy())
  })
  await new Promise<void>(resolve => raw.listen(0, '127.0.0.1', resolve))
  const port = (raw.address() as net.AddressInfo).port
  process.stdout.write(JSON.stringify({ multiaddr: node.multiaddrs[0], rawPort: port, blobId: data.blobId }) + '\n')
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'provide') node.provideBlob(data.blobId).then(() => process.stdout.write('"provided"\n'), () => {})
    if (line === 'cpu') process.stdout.write(JSON.stringify(process.cpuUsage()) + '\n')
  }).on('close', () => { raw.close(); node.stop().finally(() => process.exit(0)) })
}

interface Peer { child: ChildProcess, info: { multiaddr: string, rawPort: number, blobId: string }, send(line: string): void, next(): Promise<string> }

async function spawnPeer (encryption: string, bootstrap?: string, wire = 'uncompressed', mib = values.mib!): Promise<Peer> {
  // The peer runs with this process's node flags, so --cpu-prof or --trace-gc covers both ends.
  const args = [...process.execArgv, fileURLToPath(import.meta.url), '--role', 'server', '--encryption', encryption, '--dir', values.dir!, '--mib', mib, '--wire', wire]
  if (bootstrap != null) args.push('--bootstrap', bootstrap)
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout! })
  const queue: string[] = []
  const waiters: Array<(line: string) => void> = []
  lines.on('line', line => {
    // Node's own tracing (--trace-gc) writes to stdout too: pass it on, it is not for us.
    if (!line.startsWith('{') && !line.startsWith('"')) { process.stderr.write(`peer: ${line}\n`); return }
    const w = waiters.shift()
    if (w != null) w(line)
    else queue.push(line)
  })
  const next = async (): Promise<string> => queue.length > 0 ? queue.shift()! : await new Promise(resolve => waiters.push(resolve))
  const info = JSON.parse(await next())
  return { child, info, send: (line) => child.stdin!.write(line + '\n'), next }
}

/** CPU time (user + system, all threads) of the client and of the serving peer, in ms. */
interface CpuSplit { clientMs: number, serverMs: number }

async function peerCpu (peer: Peer): Promise<number> {
  peer.send('cpu')
  const usage = JSON.parse(await peer.next()) as NodeJS.CpuUsage
  return (usage.user + usage.system) / 1000
}

async function swarmRun (data: Data, encryption: 'noise' | 'tls', wire: 'uncompressed' | 'stored' = 'uncompressed'): Promise<{ seconds: number, chunks: number, bytes: number, cpu: CpuSplit }> {
  const peer = await spawnPeer(encryption, undefined, wire)
  const verifyThreads = values['verify-threads'] != null ? { verifyThreads: Number(values['verify-threads']) } : {}
  const client: Swarm = swarm({ ...LOOPBACK, encryption, bootstrap: [peer.info.multiaddr], ...verifyThreads })({ chunkStore: storeOf({ ...data, chunks: [] }) })
  await client.start()
  peer.send('provide')
  await peer.next()
  for (let i = 0; i < 50 && (await client.findProviders(data.blobId, { timeout: 200 })).length === 0; i++) await new Promise(resolve => setTimeout(resolve, 100))
  const serverCpuBefore = await peerCpu(peer)
  const clientCpuBefore = process.cpuUsage()
  const started = performance.now()
  let chunks = 0
  let bytes = 0
  // As blob-device would: four requests of 16 chunks in flight.
  const batches: ChunkRef[][] = []
  for (let i = 0; i < data.refs.length; i += 16) batches.push(data.refs.slice(i, i + 16))
  let nextBatch = 0
  await Promise.all([0, 1, 2, 3].map(async () => {
    while (nextBatch < batches.length) {
      const got = await client.chunkSource.getChunks(batches[nextBatch++]!)
      for (const b of got) {
        if (b == null) throw new Error('a chunk did not arrive')
        chunks++
        bytes += b.length
      }
    }
  }))
  const seconds = (performance.now() - started) / 1000
  const clientCpu = process.cpuUsage(clientCpuBefore)
  const cpu = { clientMs: (clientCpu.user + clientCpu.system) / 1000, serverMs: await peerCpu(peer) - serverCpuBefore }
  // For profiles: the transfer window on the monotonic clock that --cpu-prof timestamps use.
  if (process.env.SHOAL_BENCH_WINDOW != null) console.error(`window ${encryption} ${Math.round((Number(process.hrtime.bigint() / 1000n)) - seconds * 1e6)} ${Number(process.hrtime.bigint() / 1000n)}`)
  await client.stop()
  peer.child.stdin!.end()
  await new Promise(resolve => peer.child.once('exit', resolve))
  return { seconds, chunks, bytes, cpu }
}

async function rawRun (data: Data): Promise<{ seconds: number, bytes: number }> {
  const peer = await spawnPeer('noise')
  const started = performance.now()
  let bytes = 0
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect(peer.info.rawPort, '127.0.0.1')
    socket.on('data', (d: Buffer) => { bytes += d.length })
    socket.on('end', resolve)
    socket.on('error', reject)
  })
  const seconds = (performance.now() - started) / 1000
  peer.child.stdin!.end()
  await new Promise(resolve => peer.child.once('exit', resolve))
  return { seconds, bytes: bytes - 4 * data.chunks.length }
}

async function dhtRun (data: Data): Promise<{ lookups: number, p50: number, p95: number, max: number }> {
  const seed = await spawnPeer('noise')
  const holder = await spawnPeer('noise', seed.info.multiaddr)
  const client = swarm({ ...LOOPBACK, bootstrap: [seed.info.multiaddr] })({ chunkStore: storeOf({ ...data, chunks: [] }) })
  await client.start()
  holder.send('provide')
  await holder.next()
  for (let i = 0; i < 50 && (await client.findProviders(data.blobId, { timeout: 200 })).length === 0; i++) await new Promise(resolve => setTimeout(resolve, 100))
  const times: number[] = []
  for (let i = 0; i < 30; i++) {
    const started = performance.now()
    const found = await client.findProviders(data.blobId, { timeout: 1000, max: 1 })
    if (found.length > 0) times.push(performance.now() - started)
  }
  await client.stop()
  for (const p of [seed, holder]) { p.child.stdin!.end(); await new Promise(resolve => p.child.once('exit', resolve)) }
  times.sort((a, b) => a - b)
  const at = (q: number): number => times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? NaN
  return { lookups: times.length, p50: at(0.5), p95: at(0.95), max: times.at(-1) ?? NaN }
}

async function client (): Promise<void> {
  const data = await loadData(values.dir!, Number(values.mib) * CHUNK)
  const totalBytes = data.chunks.reduce((sum, b) => sum + b.length, 0)
  const storedBytes = data.stored.reduce((sum, b) => sum + b.length, 0)
  const mib = (bytes: number, seconds: number): number => Math.round(bytes / seconds / 1048576)
  const rows: Array<{ what: string, chunksPerSecond: number, MiBps: number, clientCpuMsPerMiB?: number, serverCpuMsPerMiB?: number }> = []

  const only = new Set(values.only!.split(','))

  if (only.has('floor')) {
    let started = performance.now()
    for (let i = 0; i < data.refs.length; i++) decodeChunkRef(data.stored[i]!, data.refs[i]!)
    let seconds = (performance.now() - started) / 1000
    rows.push({ what: 'local floor: zstd decode + sha256 verify, from memory', chunksPerSecond: Math.round(data.refs.length / seconds), MiBps: mib(totalBytes, seconds) })
    started = performance.now()
    for (const bytes of data.chunks) createHash('sha256').update(bytes).digest()
    seconds = (performance.now() - started) / 1000
    rows.push({ what: 'local floor: sha256 verify only (uncompressed in memory)', chunksPerSecond: Math.round(data.refs.length / seconds), MiBps: mib(totalBytes, seconds) })
  }
  const runs = [['noise', 'uncompressed'], ['noise', 'stored'], ['tls', 'uncompressed']] as const
  for (const [encryption, wire] of runs) {
    if (!only.has(encryption) || (wire === 'stored' && !only.has('stored'))) continue
    const run = await swarmRun(data, encryption, wire)
    const perMiB = (ms: number): number => +(ms / (run.bytes / 1048576)).toFixed(2)
    rows.push({
      what: `swarm ${encryption}+yamux, ${wire} on the wire: verified chunks from a peer`, chunksPerSecond: Math.round(run.chunks / run.seconds), MiBps: mib(run.bytes, run.seconds),
      clientCpuMsPerMiB: perMiB(run.cpu.clientMs), serverCpuMsPerMiB: perMiB(run.cpu.serverMs)
    })
  }
  if (only.has('raw')) {
    const raw = await rawRun(data)
    rows.push({ what: 'raw node:net, same bytes, no verification', chunksPerSecond: Math.round(data.refs.length / raw.seconds), MiBps: mib(raw.bytes, raw.seconds) })
  }
  const dht = only.has('dht') ? await dhtRun(data) : { lookups: 0, p50: NaN, p95: NaN, max: NaN }
  let memory: MemoryReport | undefined
  if (only.has('memory')) {
    memory = await measureDaemonMemory({
      imageName: values.image!,
      shoalBin: DEFAULT_SHOAL_BIN,
      // The transfer peer holding no data: a bare swarm node.
      floors: [async () => {
        const peer = await spawnPeer('noise', undefined, 'uncompressed', '0')
        const exited = new Promise(resolve => peer.child.once('exit', resolve))
        return { what: 'bare swarm node (transfer peer, no data)', pid: peer.child.pid!, stop: async () => { peer.child.stdin!.end(); await exited } }
      }],
      log: line => { console.error(line) }
    })
  }

  const result = {
    node: process.version, chunks: data.refs.length, chunkSize: CHUNK, uncompressedMiB: +(totalBytes / 1048576).toFixed(1),
    storedMiB: +(storedBytes / 1048576).toFixed(1), rows, dhtFindProvidersMs: dht, ...(memory != null ? { memory } : {})
  }
  if (rows.length > 0) console.table(rows)
  if (only.has('dht')) console.log(`DHT findProviders among 3 nodes (first result, ${dht.lookups} lookups): p50 ${dht.p50.toFixed(1)} ms, p95 ${dht.p95.toFixed(1)} ms, max ${dht.max.toFixed(1)} ms`)
  if (memory != null) console.log(memoryMarkdown(memory))
  await mkdir(values.out!, { recursive: true })
  await writeFile(join(values.out!, 'swarm-transfer.json'), JSON.stringify(result, null, 2) + '\n')
}

await (values.role === 'server' ? server() : client())
