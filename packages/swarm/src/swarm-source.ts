/**
 * SwarmChunkSource: the swarm as one ChunkSource of blob-device. For each blob it finds the
 * peers that provide it (DHT, with a short first-result timeout), learns which chunks each
 * holds (bitmaps, cached briefly), spreads the chunks over the best-ranked peers, hedges a
 * slow request to a second peer, verifies every chunk, and blocklists a peer that sends bad,
 * truncated or wrong-index data. What it cannot get verified comes back undefined, so
 * blob-device goes on to the next source (the registry).
 */
import type { Logger, Stream } from '@libp2p/interface'
import { AbortError, ChunkDigestMismatchError, raceAbort, throwIfAborted, type AbortOptions, type BlobId, type ChunkRef, type ChunkSource } from '@shoal/interface'
import { DecompressError } from '@shoal/rafs'
import { requestBitmap, requestChunks } from './chunk-client.js'
import { PeerRefusedError, SwarmProtocolError } from './errors.js'
import { bitmapHas } from './protocol.js'
import { VerifyPool } from './verify-pool.js'

/** What the source needs from the node: kept small so that the ranking logic stays testable. */
export interface PeerNetwork {
  /**
   * Providers of a blob. By default the answer comes soon after the first provider is found;
   * `exhaustive` waits for the whole DHT walk (or `timeout`) to gather every record.
   */
  findProviders(blobId: BlobId, options: AbortOptions & { timeout: number, exhaustive?: boolean }): Promise<string[]>
  /** Peers worth asking for any blob when the DHT's providers lack a chunk: the seeds. */
  seedPeers(): string[]
  openChunkStream(peer: string, options?: AbortOptions): Promise<Stream>
  blocklist(peer: string, reason: string): void
  isBlocklisted(peer: string): boolean
}

export interface SwarmSourceInit {
  /** Wait this long for the DHT's first provider before giving up on peers (ms). */
  providerTimeout: number
  /** Keep a blob's provider list this long (ms); an empty list is kept for a tenth of it. */
  providerCacheTime: number
  /** Keep a peer's bitmap of a blob this long (ms). */
  bitmapCacheTime: number
  /** Give up on a peer's bitmap after this long (ms). */
  bitmapTimeout: number
  /** Ask at most this many providers of one blob. */
  maxPeersPerBlob: number
  /** At most this many chunks in one request. */
  maxChunksPerRequest: number
  /** Hedge when a request takes this many times its expected time (and at least hedgeMinDelay ms). */
  hedgeFactor: number
  hedgeMinDelay: number
  /** A request to one peer fails after this long (ms). */
  requestTimeout: number
  /**
   * When no known provider holds a chunk, one exhaustive DHT lookup (waiting at most this long,
   * ms) plus the seeds' bitmaps widen the set before the chunk goes to the registry; at most
   * once per blob per provider cache time.
   */
  widenTimeout: number
}

export interface SwarmSourceStats {
  chunksFromPeers: number
  bytesFromPeers: number
  chunksMissed: number
  hedgedRequests: number
  badChunks: number
  blocklistedPeers: number
  providerLookups: number
  providerLookupMisses: number
  /** Widenings run: a chunk no known provider held sent us to the whole DHT and the seeds. */
  providerWidenings: number
  bytesByPeer: Record<string, number>
}

export interface SwarmSourceMetrics {
  onChunk?(bytes: number, ms: number): void
  onBadChunk?(kind: string): void
  onBlocklist?(): void
  onHedge?(): void
}

interface PeerRecord {
  /** EWMA of time to the first answer (ms). */
  latency: number
  /** EWMA of bytes per ms once data flows. */
  throughput: number
  samples: number
  inflight: number
}

interface Cached<T> { value: T, until: number }

interface CachedProviders extends Cached<Promise<string[]>> {
  /** This lookup's answer once it came. */
  result?: string[]
  /** The last non-empty provider list and when it came. */
  last?: string[]
  lastAt: number
}

/** How many provider cache times a non-empty list is still used while a newer lookup runs or comes back empty. */
const STALE_PROVIDERS_FACTOR = 6

interface CachedBitmap {
  /** The fetch under way, or the last one. */
  fresh: Promise<Uint8Array | undefined>
  /** Fetch again after this time (ms since the epoch). */
  until: number
  /** The last bitmap received and when. */
  last?: Uint8Array
  lastAt: number
  refreshing: boolean
}

const DEFAULT_LATENCY = 20
const DEFAULT_THROUGHPUT = 50_000 // bytes per ms (50 MB/s) until observed
const MAX_ROUNDS = 3

export class SwarmChunkSource implements ChunkSource {
  readonly name = 'swarm'
  readonly delivers = 'uncompressed' as const
  readonly stats: SwarmSourceStats = {
    chunksFromPeers: 0, bytesFromPeers: 0, chunksMissed: 0, hedgedRequests: 0, badChunks: 0,
    blocklistedPeers: 0, providerLookups: 0, providerLookupMisses: 0, providerWidenings: 0, bytesByPeer: {}
  }

  private readonly peers = new Map<string, PeerRecord>()
  private readonly providerCache = new Map<BlobId, CachedProviders>()
  private readonly bitmapCache = new Map<string, CachedBitmap>()
  /** The last widening of each blob: its peers, once found, and when it started. */
  private readonly widenings = new Map<BlobId, { peers: Promise<string[]>, at: number }>()

  constructor (
    private readonly network: PeerNetwork,
    private readonly init: SwarmSourceInit,
    private readonly log: Logger,
    private readonly metrics: SwarmSourceMetrics = {},
    /** Where chunks are verified; by default inline on the event loop. */
    private readonly verifier: Pick<VerifyPool, 'verify'> = INLINE_VERIFIER
  ) {}

  async getChunks (chunks: ChunkRef[], options?: AbortOptions): Promise<Array<Uint8Array | undefined>> {
    if (options?.signal?.aborted === true) throw new AbortError()
    const results: Array<Uint8Array | undefined> = new Array(chunks.length).fill(undefined)
    const byBlob = new Map<BlobId, number[]>()
    chunks.forEach((ref, position) => {
      const list = byBlob.get(ref.blobId)
      if (list == null) byBlob.set(ref.blobId, [position])
      else list.push(position)
    })
    await Promise.all([...byBlob].map(async ([blobId, positions]) => {
      await this.fetchFromBlob(blobId, positions, chunks, results, options)
    }))
    throwIfAborted(options)
    for (const bytes of results) if (bytes == null) this.stats.chunksMissed++
    return results
  }

  /** Providers of a blob, best first, without blocklisted ones. */
  async providers (blobId: BlobId, options?: AbortOptions): Promise<string[]> {
    const now = Date.now()
    const previous = this.providerCache.get(blobId)
    let cached = previous
    if (cached == null || cached.until < now) {
      this.stats.providerLookups++
      const lookup = this.network.findProviders(blobId, { ...options, timeout: this.init.providerTimeout })
      const entry: CachedProviders = { value: lookup, until: now + this.init.providerCacheTime, last: previous?.last, lastAt: previous?.lastAt ?? 0 }
      this.providerCache.set(blobId, entry)
      cached = entry
      lookup.then(list => {
        entry.result = list
        if (list.length === 0) {
          this.stats.providerLookupMisses++
          entry.until = Date.now() + this.init.providerCacheTime / 10
        } else {
          entry.last = list
          entry.lastAt = Date.now()
        }
      }, () => { if (this.providerCache.get(blobId) === entry) entry.until = 0 })
    }
    // While a lookup runs (or after one came back empty, as a slow DHT under load does), the
    // last non-empty answer stands for up to STALE_PROVIDERS_FACTOR cache times: a holder that
    // has since evicted the blob costs one empty bitmap, a missed holder the whole request.
    const stale = cached.last != null && now - cached.lastAt <= STALE_PROVIDERS_FACTOR * this.init.providerCacheTime ? cached.last : undefined
    const settled = cached.result
    const list = settled != null && settled.length > 0 ? settled : stale ?? await cached.value
    return list.filter(peer => !this.network.isBlocklisted(peer))
      .sort((a, b) => this.expectedMs(a, 1 << 20) - this.expectedMs(b, 1 << 20))
      .slice(0, this.init.maxPeersPerBlob)
  }

  peerSummaries (): Array<{ peer: string, latencyMs: number, throughputMBps: number, samples: number, inflight: number, blocklisted: boolean }> {
    return [...this.peers].map(([peer, r]) => ({
      peer, latencyMs: r.latency, throughputMBps: r.throughput / 1000, samples: r.samples, inflight: r.inflight,
      blocklisted: this.network.isBlocklisted(peer)
    }))
  }

  private async fetchFromBlob (blobId: BlobId, positions: number[], refs: ChunkRef[], results: Array<Uint8Array | undefined>, options?: AbortOptions): Promise<void> {
    let providers: string[]
    try {
      providers = await this.providers(blobId, options)
    } catch (err: any) {
      if (options?.signal?.aborted === true) throw err
      this.log('provider lookup for blob %s failed: %s', blobId, err?.message)
      return
    }
    if (providers.length === 0) return
    const bitmaps = new Map<string, Uint8Array>()
    await this.addBitmaps(providers, blobId, bitmaps, options)
    // Peers that failed a chunk are not asked for it again in this call.
    const triedFor = new Map<number, Set<string>>()
    let pending = positions
    let widened = false
    for (let round = 0; round < MAX_ROUNDS && pending.length > 0;) {
      const plan = this.plan(pending, refs, bitmaps, triedFor)
      const planned = [...plan.values()].reduce((sum, batch) => sum + batch.length, 0)
      // A lookup answers with the first providers it meets, which may be hosts holding a part
      // of the blob; before a chunk none of them holds goes to the registry, ask more widely.
      if (planned < pending.length && !widened) {
        widened = true
        if (await this.widen(blobId, bitmaps, options) > 0) continue
      }
      if (plan.size === 0) break
      round++
      await Promise.all([...plan].flatMap(([peer, batch]) => this.splitBatch(batch).map(async part => {
        await this.runHedged(peer, part, refs, results, bitmaps, triedFor, options)
      })))
      if (options?.signal?.aborted === true) throw new AbortError()
      pending = pending.filter(position => results[position] == null)
    }
  }

  /** Fetches the bitmaps of `peers` (cached) into `bitmaps`. */
  private async addBitmaps (peers: string[], blobId: BlobId, bitmaps: Map<string, Uint8Array>, options?: AbortOptions): Promise<void> {
    await Promise.all(peers.map(async peer => {
      const bits = await this.bitmap(peer, blobId, options)
      if (bits != null) bitmaps.set(peer, bits)
    }))
  }

  /**
   * Adds to `bitmaps` the peers an exhaustive DHT lookup finds and the seeds, and makes the
   * found providers the blob's cached provider list. One widening per blob runs per provider
   * cache time; callers in that time share its answer. Returns how many peers were added.
   */
  private async widen (blobId: BlobId, bitmaps: Map<string, Uint8Array>, options?: AbortOptions): Promise<number> {
    const now = Date.now()
    let widening = this.widenings.get(blobId)
    if (widening == null || now - widening.at > this.init.providerCacheTime) {
      this.stats.providerWidenings++
      const peers = this.network.findProviders(blobId, { timeout: this.init.widenTimeout, exhaustive: true }).then(found => {
        if (found.length > 0) {
          const cached = this.providerCache.get(blobId)
          const merged = [...new Set([...found, ...(cached?.result ?? cached?.last ?? [])])]
          this.providerCache.set(blobId, { value: Promise.resolve(merged), result: merged, last: merged, lastAt: Date.now(), until: Date.now() + this.init.providerCacheTime })
        }
        return [...new Set([...found, ...this.network.seedPeers()])]
      }, (err: any) => {
        this.log('widened provider lookup for blob %s failed: %s', blobId, err?.message)
        return this.network.seedPeers()
      })
      widening = { peers, at: now }
      this.widenings.set(blobId, widening)
      if (this.widenings.size > 4096) this.widenings.delete(this.widenings.keys().next().value!)
    }
    const waited = await raceAbort(widening.peers, options)
    const fresh = waited.filter(peer => !bitmaps.has(peer) && !this.network.isBlocklisted(peer)).slice(0, this.init.maxPeersPerBlob)
    if (fresh.length === 0) return 0
    const before = bitmaps.size
    await this.addBitmaps(fresh, blobId, bitmaps, options)
    if (bitmaps.size > before) this.log('widened blob %s to %d more peer(s)', blobId, bitmaps.size - before)
    return bitmaps.size - before
  }

  /**
   * Assigns each pending chunk to the holder with the earliest expected finish, so load spreads.
   * Estimates from a few samples can be far off (one quick bitmap answer under load), so no peer
   * takes more than twice its fair share of a round while another holder could take the chunk.
   */
  private plan (pending: number[], refs: ChunkRef[], bitmaps: Map<string, Uint8Array>, triedFor: Map<number, Set<string>>): Map<string, number[]> {
    const load = new Map<string, number>()
    const plan = new Map<string, number[]>()
    const holders = [...bitmaps.keys()].filter(peer => !this.network.isBlocklisted(peer)).length
    const fairShare = Math.ceil(2 * pending.length / Math.max(1, holders))
    for (const position of pending) {
      const ref = refs[position]!
      let best: string | undefined
      let bestFinish = Infinity
      for (const capped of [true, false]) {
        for (const [peer, bits] of bitmaps) {
          if (this.network.isBlocklisted(peer) || triedFor.get(position)?.has(peer) === true || !bitmapHas(bits, ref.index)) continue
          if (capped && (plan.get(peer)?.length ?? 0) >= fairShare) continue
          const finish = (load.get(peer) ?? this.peerRecord(peer).inflight * this.expectedMs(peer, ref.uncompressedSize)) +
            this.expectedMs(peer, ref.uncompressedSize)
          if (finish < bestFinish) {
            bestFinish = finish
            best = peer
          }
        }
        if (best != null) break
      }
      if (best == null) continue
      load.set(best, bestFinish)
      const list = plan.get(best)
      if (list == null) plan.set(best, [position])
      else list.push(position)
    }
    return plan
  }

  private splitBatch (positions: number[]): number[][] {
    const parts: number[][] = []
    for (let i = 0; i < positions.length; i += this.init.maxChunksPerRequest) {
      parts.push(positions.slice(i, i + this.init.maxChunksPerRequest))
    }
    return parts
  }

  /**
   * Asks `primary` for a batch; when it runs past its expected time, asks the next best holder
   * for what is still missing. Each chunk is taken from whichever verified answer comes first.
   */
  private async runHedged (
    primary: string, batch: number[], refs: ChunkRef[], results: Array<Uint8Array | undefined>,
    bitmaps: Map<string, Uint8Array>, triedFor: Map<number, Set<string>>, options?: AbortOptions
  ): Promise<void> {
    const batchBytes = batch.reduce((sum, position) => sum + refs[position]!.uncompressedSize, 0)
    const hedgeAfter = Math.max(this.init.hedgeMinDelay, this.init.hedgeFactor * this.expectedMs(primary, batchBytes))
    const done = new AbortController()
    const onOuterAbort = (): void => { done.abort() }
    options?.signal?.addEventListener('abort', onOuterAbort, { once: true })
    const resolvedAll = (): boolean => batch.every(position => results[position] != null)
    let hedged: Promise<void> | undefined
    const timer = setTimeout(() => {
      const missing = batch.filter(position => results[position] == null)
      const second = this.pickHedge(primary, missing, refs, bitmaps, triedFor)
      if (second == null || missing.length === 0 || done.signal.aborted) return
      this.stats.hedgedRequests++
      this.metrics.onHedge?.()
      this.log('hedging %d chunks of blob %s from %s to %s after %d ms', missing.length, refs[batch[0]!]!.blobId, primary, second, Math.round(hedgeAfter))
      hedged = this.request(second, missing, refs, results, triedFor, done.signal).finally(() => {
        if (resolvedAll()) done.abort()
      })
    }, hedgeAfter)
    try {
      await this.request(primary, batch, refs, results, triedFor, done.signal)
      clearTimeout(timer)
      if (resolvedAll()) done.abort()
      // A primary that failed leaves the rest to a running hedge or to the next round.
      if (hedged != null) await hedged
    } finally {
      clearTimeout(timer)
      options?.signal?.removeEventListener('abort', onOuterAbort)
      done.abort()
    }
  }

  private pickHedge (primary: string, missing: number[], refs: ChunkRef[], bitmaps: Map<string, Uint8Array>, triedFor: Map<number, Set<string>>): string | undefined {
    let best: string | undefined
    let bestScore = -Infinity
    for (const [peer, bits] of bitmaps) {
      if (peer === primary || this.network.isBlocklisted(peer)) continue
      let holds = 0
      for (const position of missing) {
        if (triedFor.get(position)?.has(peer) !== true && bitmapHas(bits, refs[position]!.index)) holds++
      }
      if (holds === 0) continue
      const score = holds * 1e6 - this.expectedMs(peer, 1 << 20) - this.peerRecord(peer).inflight * 10
      if (score > bestScore) {
        bestScore = score
        best = peer
      }
    }
    return best
  }

  /** One request to one peer; records what was observed of it; never throws except on abort of the caller. */
  private async request (
    peer: string, positions: number[], refs: ChunkRef[], results: Array<Uint8Array | undefined>,
    triedFor: Map<number, Set<string>>, signal: AbortSignal
  ): Promise<void> {
    const wanted = positions.filter(position => results[position] == null)
    if (wanted.length === 0) return
    const record = this.peerRecord(peer)
    record.inflight++
    const started = performance.now()
    let firstAt = 0
    let bytes = 0
    const timeout = AbortSignal.timeout(this.init.requestTimeout)
    // Aborted when a chunk fails verification or when a hedged twin has delivered everything.
    const local = new AbortController()
    const requestSignal = AbortSignal.any([signal, timeout, local.signal])
    // Chunks are verified while the next ones are received (on a worker thread when there is one).
    const verifying: Array<Promise<void>> = []
    let badChunk: Error | undefined
    let complete = false
    const allDelivered = (): boolean => wanted.every(p => results[p] != null)
    let stream: Stream | undefined
    try {
      stream = await this.network.openChunkStream(peer, { signal: requestSignal })
      await requestChunks(stream, wanted.map(position => refs[position]!), peer, (chunk, at) => {
        const position = wanted[at]!
        if (firstAt === 0) firstAt = performance.now()
        markTried(triedFor, position, peer)
        if (chunk == null) return
        // Verify even when a hedged twin already delivered it: a liar is caught either way.
        verifying.push(this.verifier.verify(chunk, peer).then(verified => {
          bytes += verified.length
          if (results[position] == null) {
            results[position] = verified
            this.stats.chunksFromPeers++
            this.stats.bytesFromPeers += verified.length
            this.stats.bytesByPeer[peer] = (this.stats.bytesByPeer[peer] ?? 0) + verified.length
            this.metrics.onChunk?.(verified.length, performance.now() - started)
          }
          if (!complete && at < wanted.length - 1 && allDelivered()) {
            complete = true
            local.abort(new BatchComplete())
          }
        }, (err: Error) => {
          if (badChunk == null) {
            badChunk = err
            local.abort(err)
          }
        }))
      }, { signal: requestSignal })
      await Promise.all(verifying)
      if (badChunk != null) throw badChunk
      this.observe(record, started, firstAt, bytes)
    } catch (caught: any) {
      await Promise.all(verifying)
      const err = badChunk ?? caught
      if (badChunk == null && complete) {
        this.observe(record, started, firstAt, bytes)
        stream?.abort(new Error('batch complete'))
        return
      }
      stream?.abort(err instanceof Error ? err : new Error(String(err)))
      for (const position of wanted) markTried(triedFor, position, peer)
      if (err instanceof ChunkDigestMismatchError || err instanceof DecompressError || err instanceof SwarmProtocolError) {
        const kind = err instanceof ChunkDigestMismatchError ? 'digest' : err instanceof DecompressError ? 'decompress' : err.name === 'StreamTruncatedError' ? 'truncated' : 'protocol'
        this.stats.badChunks++
        this.metrics.onBadChunk?.(kind)
        if (!this.network.isBlocklisted(peer)) {
          this.stats.blocklistedPeers++
          this.metrics.onBlocklist?.()
        }
        this.network.blocklist(peer, err.message)
        this.log.error('blocklisted peer %s: %s', peer, err.message)
        return
      }
      if (signal.aborted) return
      // A slow, busy or vanished peer: rank it down, let the next round or source take over.
      record.latency = Math.min(record.latency * 2 + 50, 60_000)
      this.log('request to %s failed: %s', peer, err instanceof PeerRefusedError ? err.message : err?.message)
    } finally {
      record.inflight--
    }
  }

  private observe (record: PeerRecord, started: number, firstAt: number, bytes: number): void {
    if (firstAt === 0) return
    const now = performance.now()
    const latency = firstAt - started
    const weight = record.samples === 0 ? 1 : 0.3
    record.latency = record.latency * (1 - weight) + latency * weight
    if (bytes > 256 * 1024 && now > started) {
      const throughput = bytes / Math.max(now - started, 0.1)
      record.throughput = record.throughput * (1 - weight) + throughput * weight
    }
    record.samples++
  }

  /**
   * A peer's bitmap of a blob, fetched again past its cache time. Meanwhile, and for up to twice
   * the cache time after the last good answer, that answer is used: bits only go stale by
   * eviction, which costs one NO_CHUNK, while waiting on a busy peer's bitmap (or its timeout)
   * costs the whole request.
   */
  private async bitmap (peer: string, blobId: BlobId, options?: AbortOptions): Promise<Uint8Array | undefined> {
    const key = `${peer}/${blobId}`
    const now = Date.now()
    let entry = this.bitmapCache.get(key)
    if (entry == null) {
      entry = { fresh: Promise.resolve(undefined), until: 0, lastAt: 0, refreshing: false }
      this.bitmapCache.set(key, entry)
      if (this.bitmapCache.size > 4096) this.bitmapCache.delete(this.bitmapCache.keys().next().value!)
    }
    const usable = (e: CachedBitmap, at: number): boolean => e.last != null && at - e.lastAt <= 2 * this.init.bitmapCacheTime
    if (entry.until < now && !entry.refreshing) {
      const e = entry
      e.refreshing = true
      e.until = now + this.init.bitmapCacheTime
      // A caller waits on this fetch only when there is no usable answer: then its signal applies.
      const signal = AbortSignal.any([AbortSignal.timeout(this.init.bitmapTimeout), ...(!usable(e, now) && options?.signal != null ? [options.signal] : [])])
      e.fresh = (async () => {
        let stream: Stream | undefined
        try {
          stream = await this.network.openChunkStream(peer, { signal })
          const bits = await requestBitmap(stream, blobId, peer, { signal })
          e.last = bits
          e.lastAt = Date.now()
          return bits
        } catch (err: any) {
          stream?.abort(err instanceof Error ? err : new Error(String(err)))
          if (err instanceof SwarmProtocolError) this.network.blocklist(peer, err.message)
          this.log('bitmap of blob %s from %s failed: %s', blobId, peer, err?.message)
          e.until = 0
          return usable(e, Date.now()) ? e.last : undefined
        } finally {
          e.refreshing = false
        }
      })()
    }
    if (usable(entry, now)) return entry.last
    return await entry.fresh
  }

  private peerRecord (peer: string): PeerRecord {
    let record = this.peers.get(peer)
    if (record == null) {
      record = { latency: DEFAULT_LATENCY, throughput: DEFAULT_THROUGHPUT, samples: 0, inflight: 0 }
      this.peers.set(peer, record)
    }
    return record
  }

  private expectedMs (peer: string, bytes: number): number {
    const record = this.peerRecord(peer)
    return record.latency + bytes / record.throughput
  }
}

class BatchComplete extends Error {}

const INLINE_VERIFIER = new VerifyPool(0)

function markTried (triedFor: Map<number, Set<string>>, position: number, peer: string): void {
  let set = triedFor.get(position)
  if (set == null) {
    set = new Set()
    triedFor.set(position, set)
  }
  set.add(peer)
}
