/**
 * The daemon's Prometheus metrics (prefix `shoal_`), read from its components at scrape time, plus
 * the latency histogram the read path feeds. libp2p's and the swarm's own metrics share the registry.
 */
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface MetricsSnapshot {
  /** Verified bytes and chunks read, by source: cache, memory, peers, registry. */
  bytesBySource: Record<string, number>
  chunksBySource: Record<string, number>
  peers: number
  cacheBytes: number
  cacheBlobs: number
  cacheChunks: number
  providedBlobs: number
  mounts: number
  /** Errors by kind: bad peer chunks, failed sources, damaged cache entries, API errors. */
  errors: Record<string, number>
}

export interface DaemonMetrics {
  /** Time from asking a source (or the cache) for chunks to its answer. */
  observeFetch: (source: string, seconds: number) => void
}

/** Latencies from a local cache hit (~100 µs) to a slow registry (seconds). */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

function setAll (metric: Gauge<string> | Counter<string>, label: string, values: Record<string, number>): void {
  metric.reset()
  for (const [key, value] of Object.entries(values)) {
    if (metric instanceof Gauge) metric.set({ [label]: key }, value)
    else if (value > 0) metric.inc({ [label]: key }, value)
  }
}

export function registerDaemonMetrics (registry: Registry, read: () => MetricsSnapshot): DaemonMetrics {
  const registers = [registry]
  // One snapshot per scrape, shared by every collect() of that scrape.
  let snapshot: MetricsSnapshot | undefined
  let snapshotAt = 0
  const current = (): MetricsSnapshot => {
    const now = Date.now()
    if (snapshot == null || now - snapshotAt > 100) {
      snapshot = read()
      snapshotAt = now
    }
    return snapshot
  }
  new Counter({
    name: 'shoal_read_bytes_total',
    help: 'verified chunk bytes read, by source (cache and memory: uncompressed; peers: uncompressed; registry: as stored)',
    labelNames: ['source'],
    registers,
    collect () { setAll(this, 'source', current().bytesBySource) }
  })
  new Counter({
    name: 'shoal_read_chunks_total',
    help: 'verified chunks read, by source',
    labelNames: ['source'],
    registers,
    collect () { setAll(this, 'source', current().chunksBySource) }
  })
  new Counter({
    name: 'shoal_errors_total',
    help: 'errors by kind: peer_bad_chunk, source_<name>, cache_damaged, api',
    labelNames: ['kind'],
    registers,
    collect () { setAll(this, 'kind', current().errors) }
  })
  const gauge = (name: string, help: string, pick: (s: MetricsSnapshot) => number): void => {
    new Gauge({ name, help, registers, collect () { this.set(pick(current())) } })
  }
  gauge('shoal_peers', 'open connections to peers', s => s.peers)
  gauge('shoal_cache_bytes', 'bytes of chunk data in the cache', s => s.cacheBytes)
  gauge('shoal_cache_blobs', 'blobs with at least one chunk in the cache', s => s.cacheBlobs)
  gauge('shoal_cache_chunks', 'chunks in the cache', s => s.cacheChunks)
  gauge('shoal_provided_blobs', 'blobs announced on the DHT', s => s.providedBlobs)
  gauge('shoal_mounts', 'images mounted by this daemon', s => s.mounts)
  const latency = new Histogram({
    name: 'shoal_chunk_fetch_seconds',
    help: 'time to get a run of chunks from a source, or one chunk from the cache',
    labelNames: ['source'],
    buckets: LATENCY_BUCKETS,
    registers
  })
  return {
    observeFetch: (source, seconds) => { latency.observe({ source }, seconds) }
  }
}

/** Serves `GET /metrics` from `registry` on a loopback address; resolves with the bound port. */
export async function serveMetrics (registry: Registry, host: string, port: number): Promise<{ server: Server, url: string }> {
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n')
      return
    }
    registry.metrics().then(text => {
      response.writeHead(200, { 'content-type': registry.contentType }).end(text)
    }, (err: any) => {
      response.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err?.message}\n`)
    })
  })
  server.listen(port, host)
  await once(server, 'listening')
  const address = server.address()
  const bound = address != null && typeof address === 'object' ? address.port : port
  const shownHost = host.includes(':') ? `[${host}]` : host
  return { server, url: `http://${shownHost}:${bound}/metrics` }
}
