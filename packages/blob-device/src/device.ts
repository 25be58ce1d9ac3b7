/**
 * The blob device: verified, uncompressed chunk bytes from memory, the chunk cache, or an ordered
 * list of chunk sources, for files of an image and for each blob's uncompressed address space.
 * Every byte that leaves it was checked against its chunk digest from the bootstrap: bytes from a
 * source before they are cached or returned, bytes from the cache on every cache read.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import {
  raceAbort, ChunkDigestMismatchError, InvalidArgumentError, throwIfAborted,
  type AbortOptions, type ChunkRef, type ChunkSource
} from '@shoal/interface'
import {
  chunkDigest, chunkRefOf, decodeChunk, DecompressError, digestsEqual, toHex, walk,
  type RafsBlob, type RafsChunk, type RafsImage, type RafsNode
} from '@shoal/rafs'
import type { ChunkCache } from '@shoal/chunk-cache'
import { BlobDeviceClosedError, ChunkUnavailableError, type SourceFailure } from './errors.js'

export interface BlobDeviceLogger {
  warn: (message: string) => void
  debug?: (message: string) => void
}

export interface BlobDeviceInit {
  /** The bootstrap: blobs, chunks, digests. */
  image: RafsImage
  /** Verified chunks are stored here and read from here first; the device pins the image's blobs. */
  cache?: ChunkCache
  /** Tried in order for chunks the cache lacks: the first that sends bytes that verify wins. */
  sources: ChunkSource[]
  /**
   * Bytes fetched ahead of sequential reads of a file (default 4 MiB; 0 turns it off). Reads of a
   * blob's address space never read ahead: neighbouring bytes there belong to unrelated files, and
   * its reader (EROFS) reads ahead itself, within the file it is reading.
   */
  readahead?: number
  /** Background prefetch of image.prefetch under a cap in bytes per second (source bytes). */
  prefetch?: { bandwidth: number }
  /** Verified chunks kept in memory, in bytes (default 32 MiB): small reads of one chunk verify it once. */
  memoryBytes?: number
  /** Largest run of adjacent missing chunks asked of a source at once, in stored bytes (default 8 MiB). */
  maxRunBytes?: number
  /** Runs fetched at the same time (default 4). */
  concurrency?: number
  logger?: BlobDeviceLogger
}

export interface BlobDeviceStats {
  /**
   * Bytes of verified chunks by where they came from, as the source sent them (stored, or
   * uncompressed for sources that deliver so); `cache` and `memory` count uncompressed bytes.
   */
  bytesBySource: Record<string, number>
  chunksBySource: Record<string, number>
  cacheHits: number
  cacheMisses: number
  /** Chunks served from the in-memory set of recent chunks. */
  memoryHits: number
  /** Failures by source: bad bytes, errors thrown; `cache` counts cached chunks that failed their digest. */
  errors: Record<string, number>
  readaheadChunks: number
  prefetch: PrefetchResult & { running: boolean }
}

export interface PrefetchResult {
  /** Chunks the prefetch list names (deduplicated) and how many of them are now verified. */
  chunks: number
  fetched: number
  failed: number
  /** Stored bytes asked of sources by the prefetch. */
  bytes: number
}

export interface BlobDevice {
  readonly image: RafsImage
  /** Verified, uncompressed bytes of one chunk (memory → cache → sources; one fetch however many ask). */
  readChunk: (chunk: RafsChunk, options?: AbortOptions) => Promise<Uint8Array>
  /** Bytes [offset, offset + length) of a regular file, holes as zeros, clipped at EOF. */
  readFile: (node: RafsNode, offset: number, length: number, options?: AbortOptions) => Promise<Uint8Array>
  /** Bytes of a blob's uncompressed address space (an EROFS device file), zeros in gaps, clipped at its end. */
  readBlob: (blobIndex: number, offset: number, length: number, options?: AbortOptions) => Promise<Uint8Array>
  /**
   * readFile into `target` (up to its length) without an allocation of its own; resolves to the
   * byte count (clipped at EOF). What a FUSE read wants: its reply buffer is filled in place.
   */
  readFileInto: (node: RafsNode, offset: number, target: Uint8Array, options?: AbortOptions) => Promise<number>
  /** readBlob into `target` (up to its length); resolves to the byte count (clipped at the blob's end). */
  readBlobInto: (blobIndex: number, offset: number, target: Uint8Array, options?: AbortOptions) => Promise<number>
  /** Size of a blob's uncompressed address space (the size of its EROFS device file). */
  blobSize: (blobIndex: number) => number
  /** Starts the background prefetch once; resolves when it is over (it never rejects). */
  startPrefetch: () => Promise<PrefetchResult>
  stats: () => BlobDeviceStats
  /** Stops prefetch and readahead, waits for cache writes, unpins the blobs. Caches and sources stay open. */
  close: () => Promise<void>
}

const DEFAULT_READAHEAD = 4 * 1024 * 1024
const DEFAULT_MEMORY_BYTES = 32 * 1024 * 1024
const DEFAULT_MAX_RUN_BYTES = 8 * 1024 * 1024
const DEFAULT_CONCURRENCY = 4
/** A read that starts within this distance of where the last one ended counts as sequential. */
const SEQUENTIAL_SLACK = 256 * 1024

interface Pending {
  chunk: RafsChunk
  blob: RafsBlob
  ref: ChunkRef
  resolve: (bytes: Uint8Array) => void
  reject: (err: unknown) => void
}

/** What a sequence of reads of one file or blob looked like so far. */
interface ReadPattern { lastEnd: number, aheadUntil: number }

function nonNegativeInteger (value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new InvalidArgumentError(`${what} must be a non-negative integer, got ${value}`)
}

/** Index of the first chunk whose range [start, start + size) ends after `offset`. */
function firstEndingAfter (chunks: RafsChunk[], startOf: (c: RafsChunk) => number, offset: number): number {
  let lo = 0
  let hi = chunks.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (startOf(chunks[mid]) + chunks[mid].uncompressedSize <= offset) lo = mid + 1
    else hi = mid
  }
  return lo
}

const fileOffsetOf = (c: RafsChunk): number => c.fileOffset

/**
 * A plain Uint8Array of `size` bytes, not zeroed (every byte is written before it is returned).
 * A zeroed one of a chunk's size is a fresh mmap whose page faults cost more than filling it.
 */
function uninitialized (size: number): Uint8Array {
  const buffer = Buffer.allocUnsafeSlow(size)
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
}
/** A chunk's key in memory and in flight: blob index and chunk index in one number (indexes are below 2^32). */
const chunkKey = (c: RafsChunk): number => c.blobIndex * 0x1_0000_0000 + c.index
const blobOffsetOf = (c: RafsChunk): number => c.uncompressedOffset

class Device implements BlobDevice {
  private readonly inflight = new Map<number, Promise<Uint8Array>>()
  /**
   * Recently verified chunks, least recently used first (Map keeps insertion order). They were
   * hashed when they entered (from a source or the cache) and are never handed out for writing,
   * so a hit here is served without hashing again.
   */
  private readonly memory = new Map<number, Uint8Array>()
  private memoryUsed = 0
  private readonly memoryBytes: number
  private readonly readahead: number
  private readonly maxRunBytes: number
  private readonly closing = new AbortController()
  private readonly patterns = new WeakMap<object, ReadPattern>()
  private readonly cacheWrites = new Set<Promise<void>>()
  private blobChunks?: RafsChunk[][]
  private prefetching?: Promise<PrefetchResult>
  private readonly prefetchState: PrefetchResult & { running: boolean } = { chunks: 0, fetched: 0, failed: 0, bytes: 0, running: false }
  private readonly slots: Array<() => void> = []
  private active = 0
  private readonly concurrency: number
  private readonly counters = {
    bytesBySource: {} as Record<string, number>,
    chunksBySource: {} as Record<string, number>,
    errors: {} as Record<string, number>,
    cacheHits: 0,
    cacheMisses: 0,
    memoryHits: 0,
    readaheadChunks: 0
  }

  private readonly cache?: ChunkCache
  private readonly sources: ChunkSource[]
  private readonly logger?: BlobDeviceLogger

  constructor (readonly image: RafsImage, private readonly init: BlobDeviceInit) {
    this.cache = init.cache
    this.sources = [...init.sources]
    this.logger = init.logger
    this.memoryBytes = init.memoryBytes ?? DEFAULT_MEMORY_BYTES
    this.readahead = init.readahead ?? DEFAULT_READAHEAD
    this.maxRunBytes = init.maxRunBytes ?? DEFAULT_MAX_RUN_BYTES
    this.concurrency = Math.max(1, init.concurrency ?? DEFAULT_CONCURRENCY)
    nonNegativeInteger(this.memoryBytes, 'memoryBytes')
    nonNegativeInteger(this.readahead, 'readahead')
    nonNegativeInteger(this.maxRunBytes, 'maxRunBytes')
    if (init.prefetch != null && !(init.prefetch.bandwidth > 0)) {
      throw new InvalidArgumentError(`prefetch bandwidth must be a positive number of bytes per second, got ${init.prefetch.bandwidth}`)
    }
    for (const blob of image.blobs) this.cache?.pin(blob.blobId)
  }

  private count (table: Record<string, number>, key: string, n = 1): void {
    table[key] = (table[key] ?? 0) + n
  }

  private blobOf (chunk: RafsChunk): RafsBlob {
    const blob = this.image.blobs[chunk.blobIndex]
    if (blob == null) {
      throw new InvalidArgumentError(`chunk ${chunk.index} names blob index ${chunk.blobIndex}, but the image has ${this.image.blobs.length} blobs`)
    }
    return blob
  }

  private checkOpen (): void {
    if (this.closing.signal.aborted) throw new BlobDeviceClosedError()
  }

  private remember (key: number, bytes: Uint8Array): void {
    if (bytes.length > this.memoryBytes || this.memory.has(key)) return
    this.memory.set(key, bytes)
    this.memoryUsed += bytes.length
    // Bounded: each pass removes one entry.
    for (const [oldKey, old] of this.memory) {
      if (this.memoryUsed <= this.memoryBytes) break
      this.memory.delete(oldKey)
      this.memoryUsed -= old.length
    }
  }

  /** One promise per chunk, in order; starts fetching the ones nobody is fetching yet. */
  private load (chunks: RafsChunk[]): Array<Promise<Uint8Array>> {
    const promises: Array<Promise<Uint8Array>> = []
    const fresh: Pending[] = []
    for (const chunk of chunks) {
      const blob = this.blobOf(chunk)
      const key = chunkKey(chunk)
      const remembered = this.memory.get(key)
      if (remembered !== undefined && remembered.length === chunk.uncompressedSize) {
        // Refresh its place in the LRU order.
        this.memory.delete(key)
        this.memory.set(key, remembered)
        this.counters.memoryHits++
        this.count(this.counters.bytesBySource, 'memory', remembered.length)
        promises.push(Promise.resolve(remembered))
        continue
      }
      let promise = this.inflight.get(key)
      if (promise === undefined) {
        let pending!: Pending
        promise = new Promise<Uint8Array>((resolve, reject) => {
          pending = { chunk, blob, ref: chunkRefOf(chunk, blob), resolve, reject }
        })
        this.inflight.set(key, promise)
        // Readahead and prefetch may never await their promise: mark rejections handled here.
        promise.then(bytes => { this.remember(key, bytes) }, () => {}).finally(() => { this.inflight.delete(key) }).catch(() => {})
        fresh.push(pending)
      }
      promises.push(promise)
    }
    if (fresh.length > 0) {
      this.fetch(fresh).catch(err => { for (const p of fresh) p.reject(err) })
    }
    return promises
  }

  private async fromCache (p: Pending): Promise<Uint8Array | undefined> {
    if (this.cache == null) return undefined
    let bytes: Uint8Array | undefined
    try {
      bytes = await this.cache.get(p.ref)
    } catch (err: any) {
      this.logger?.debug?.(`cache: chunk ${p.chunk.index} of blob ${p.blob.blobId}: ${err?.message ?? err}`)
      return undefined
    }
    if (bytes === undefined) {
      this.counters.cacheMisses++
      return undefined
    }
    const actual = chunkDigest(bytes, p.blob.digester)
    if (!digestsEqual(actual, p.chunk.digest)) {
      this.count(this.counters.errors, 'cache')
      this.logger?.warn(`cache: chunk ${p.chunk.index} of blob ${p.blob.blobId}: digest ${toHex(actual)}, expected ${toHex(p.chunk.digest)}; dropped, fetching it again`)
      await this.cache.delete(p.ref).catch(() => {})
      return undefined
    }
    this.counters.cacheHits++
    this.count(this.counters.bytesBySource, 'cache', bytes.length)
    this.count(this.counters.chunksBySource, 'cache')
    return bytes
  }

  private store (p: Pending, bytes: Uint8Array): void {
    if (this.cache == null) return
    const write = this.cache.put(p.ref, bytes).catch((err: any) => {
      this.logger?.warn(`cache: storing chunk ${p.chunk.index} of blob ${p.blob.blobId}: ${err?.message ?? err}`)
    }).finally(() => { this.cacheWrites.delete(write) })
    this.cacheWrites.add(write)
  }

  private async fetch (fresh: Pending[]): Promise<void> {
    const missing: Pending[] = []
    await Promise.all(fresh.map(async (p) => {
      const bytes = await this.fromCache(p)
      if (bytes !== undefined) p.resolve(bytes)
      else missing.push(p)
    }))
    await Promise.all(this.runs(missing).map(async run => { await this.withSlot(async () => { await this.fetchRun(run) }) }))
  }

  private async withSlot (work: () => Promise<void>): Promise<void> {
    if (this.active >= this.concurrency) await new Promise<void>(resolve => this.slots.push(resolve))
    this.active++
    try {
      await work()
    } finally {
      this.active--
      this.slots.shift()?.()
    }
  }

  /** Splits chunks into runs adjacent in one blob (by stored offset), each at most maxRunBytes. */
  private runs (chunks: Pending[]): Pending[][] {
    const sorted = [...chunks].sort((a, b) => a.chunk.blobIndex - b.chunk.blobIndex || a.chunk.compressedOffset - b.chunk.compressedOffset)
    const runs: Pending[][] = []
    let run: Pending[] = []
    let runBytes = 0
    for (const p of sorted) {
      const last = run.at(-1)
      const adjacent = last != null && last.chunk.blobIndex === p.chunk.blobIndex &&
        p.chunk.compressedOffset === last.chunk.compressedOffset + last.chunk.compressedSize
      if (last != null && (!adjacent || runBytes + p.chunk.compressedSize > this.maxRunBytes)) {
        runs.push(run)
        run = []
        runBytes = 0
      }
      run.push(p)
      runBytes += p.chunk.compressedSize
    }
    if (run.length > 0) runs.push(run)
    return runs
  }

  /** Asks each source in turn for the chunks still missing; what verifies is delivered, the rest fail. */
  private async fetchRun (run: Pending[]): Promise<void> {
    const failures = new Map<Pending, SourceFailure[]>(run.map(p => [p, []]))
    let missing = run
    for (const source of this.sources) {
      if (missing.length === 0) break
      if (this.closing.signal.aborted) break
      let answers: Array<Uint8Array | undefined>
      try {
        answers = await source.getChunks(missing.map(p => p.ref), { signal: this.closing.signal })
        if (!Array.isArray(answers) || answers.length !== missing.length) {
          throw new Error(`answered ${Array.isArray(answers) ? answers.length : typeof answers} results for ${missing.length} chunks`)
        }
      } catch (err: any) {
        this.count(this.counters.errors, source.name)
        for (const p of missing) failures.get(p)?.push({ source: source.name, error: `${err?.name ?? 'Error'}: ${err?.message ?? err}` })
        continue
      }
      const still: Pending[] = []
      for (const [i, p] of missing.entries()) {
        const stored = answers[i]
        if (stored == null) {
          failures.get(p)?.push({ source: source.name, error: 'does not have it' })
          still.push(p)
          continue
        }
        let bytes: Uint8Array
        try {
          // A source may deliver chunks already decompressed (a peer's cache): verify them as stored uncompressed.
          const asStored = source.delivers === 'uncompressed' ? { ...p.chunk, compressed: false, compressedSize: p.chunk.uncompressedSize } : p.chunk
          bytes = decodeChunk(stored, asStored, p.blob)
        } catch (err: any) {
          this.count(this.counters.errors, source.name)
          if (err instanceof ChunkDigestMismatchError) {
            this.logger?.warn(`${source.name}: chunk ${p.chunk.index} of blob ${p.blob.blobId}: digest ${err.actual}, expected ${err.expected}; trying the next source`)
          } else if (err instanceof DecompressError) {
            this.logger?.warn(`${source.name}: chunk ${p.chunk.index} of blob ${p.blob.blobId} (digest ${toHex(p.chunk.digest)}): ${err.message}; trying the next source`)
          } else {
            this.logger?.warn(`${source.name}: chunk ${p.chunk.index} of blob ${p.blob.blobId}: ${err?.message ?? err}; trying the next source`)
          }
          failures.get(p)?.push({ source: source.name, error: `${err?.name ?? 'Error'}: ${err?.message ?? err}` })
          still.push(p)
          continue
        }
        this.count(this.counters.bytesBySource, source.name, stored.length)
        this.count(this.counters.chunksBySource, source.name)
        this.store(p, bytes)
        p.resolve(bytes)
      }
      missing = still
    }
    for (const p of missing) {
      p.reject(this.closing.signal.aborted ? new BlobDeviceClosedError() : new ChunkUnavailableError(p.blob.blobId, p.chunk.index, failures.get(p) ?? []))
    }
  }

  async readChunk (chunk: RafsChunk, options?: AbortOptions): Promise<Uint8Array> {
    throwIfAborted(options)
    this.checkOpen()
    return await raceAbort(this.load([chunk])[0], options)
  }

  /**
   * Reads [offset, offset + target.length) of a space laid out by `chunks` (sorted by `startOf`)
   * into `target`, zeros where no chunk is; clipped at `size`. Chunks already in memory are copied
   * at once; only a read that needs a chunk from the cache or a source waits. Reads ahead when
   * given the `pattern` key its reads are tracked under.
   */
  private async readSpace (chunks: RafsChunk[], startOf: (c: RafsChunk) => number, size: number, offset: number, target: Uint8Array, pattern: object | undefined, options?: AbortOptions): Promise<number> {
    const end = Math.min(size, offset + target.length)
    if (offset >= end) return 0
    const first = firstEndingAfter(chunks, startOf, offset)
    let next = first
    // The bytes of each chunk in [first, next); held here, since memory may evict while we wait.
    const datas: Array<Uint8Array | undefined> = []
    let waiting: RafsChunk[] | undefined
    for (; next < chunks.length && startOf(chunks[next]) < end; next++) {
      const chunk = chunks[next]
      const key = chunkKey(chunk)
      const remembered = this.memory.get(key)
      if (remembered === undefined || remembered.length !== chunk.uncompressedSize) {
        datas.push(undefined)
        waiting ??= []
        waiting.push(chunk)
        continue
      }
      datas.push(remembered)
      this.memory.delete(key)
      this.memory.set(key, remembered)
      this.counters.memoryHits++
      this.count(this.counters.bytesBySource, 'memory', remembered.length)
    }
    const promises = waiting !== undefined ? this.load(waiting) : undefined
    if (pattern !== undefined) this.readAhead(chunks, startOf, size, offset, end, next, pattern)
    const fetched = promises !== undefined ? await raceAbort(Promise.all(promises), options) : undefined
    // Copy in order, zero-filling the gaps between chunks (target may hold anything).
    let at = offset
    let w = 0
    for (let i = first; i < next; i++) {
      const chunk = chunks[i]
      const start = startOf(chunk)
      const data = datas[i - first] ?? fetched![w++]
      const from = Math.max(at, start)
      const to = Math.min(end, start + chunk.uncompressedSize)
      if (from > at) target.fill(0, at - offset, from - offset)
      if (from < to) {
        target.set(data.subarray(from - start, to - start), from - offset)
        at = to
      }
    }
    if (at < end) target.fill(0, at - offset, end - offset)
    return end - offset
  }

  /** After a sequential read, starts fetching the chunks of the next `readahead` bytes (once each). */
  private readAhead (chunks: RafsChunk[], startOf: (c: RafsChunk) => number, size: number, offset: number, end: number, next: number, key: object): void {
    if (this.readahead === 0) return
    const pattern = this.patterns.get(key)
    const sequential = offset === 0 || (pattern !== undefined && Math.abs(offset - pattern.lastEnd) <= SEQUENTIAL_SLACK)
    const state = pattern ?? { lastEnd: end, aheadUntil: 0 }
    state.lastEnd = end
    this.patterns.set(key, state)
    if (!sequential) return
    const aheadEnd = Math.min(size, end + this.readahead)
    const from = Math.max(end, state.aheadUntil)
    if (from >= aheadEnd) return
    state.aheadUntil = aheadEnd
    const ahead: RafsChunk[] = []
    let i = Math.max(next, firstEndingAfter(chunks, startOf, from))
    for (; i < chunks.length && startOf(chunks[i]) < aheadEnd; i++) {
      // Chunks already in memory need nothing (and are not memory hits: nobody read them yet).
      if (!this.memory.has(chunkKey(chunks[i]))) ahead.push(chunks[i])
    }
    if (ahead.length === 0) return
    this.counters.readaheadChunks += ahead.length
    this.load(ahead)
  }

  async readFile (node: RafsNode, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    throwIfAborted(options)
    this.checkOpen()
    if (node.type !== 'file') throw new InvalidArgumentError(`inode ${node.ino} is a ${node.type}, not a regular file`)
    nonNegativeInteger(offset, 'offset')
    nonNegativeInteger(length, 'length')
    const out = uninitialized(Math.max(0, Math.min(node.size, offset + length) - offset))
    await this.readSpace(node.chunks ?? [], fileOffsetOf, node.size, offset, out, node, options)
    return out
  }

  async readFileInto (node: RafsNode, offset: number, target: Uint8Array, options?: AbortOptions): Promise<number> {
    throwIfAborted(options)
    this.checkOpen()
    if (node.type !== 'file') throw new InvalidArgumentError(`inode ${node.ino} is a ${node.type}, not a regular file`)
    nonNegativeInteger(offset, 'offset')
    return await this.readSpace(node.chunks ?? [], fileOffsetOf, node.size, offset, target, node, options)
  }

  /** Every chunk of each blob that some file uses, once, sorted by uncompressed offset. */
  private chunksOfBlobs (): RafsChunk[][] {
    if (this.blobChunks !== undefined) return this.blobChunks
    const byBlob = this.image.blobs.map(() => new Map<number, RafsChunk>())
    const add = (node: RafsNode): void => {
      for (const chunk of node.chunks ?? []) byBlob[chunk.blobIndex]?.set(chunk.index, chunk)
    }
    walk(this.image.root, (_path, node) => { if (node.type === 'file') add(node) })
    this.blobChunks = byBlob.map(m => [...m.values()].sort((a, b) => a.uncompressedOffset - b.uncompressedOffset))
    return this.blobChunks
  }

  blobSize (blobIndex: number): number {
    const blob = this.image.blobs[blobIndex]
    if (blob == null) throw new InvalidArgumentError(`blob index ${blobIndex} is out of range (the image has ${this.image.blobs.length} blobs)`)
    const last = this.chunksOfBlobs()[blobIndex].at(-1)
    return Math.max(blob.uncompressedSize, last != null ? last.uncompressedOffset + last.uncompressedSize : 0)
  }

  async readBlob (blobIndex: number, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    throwIfAborted(options)
    this.checkOpen()
    nonNegativeInteger(offset, 'offset')
    nonNegativeInteger(length, 'length')
    const size = this.blobSize(blobIndex)
    const out = uninitialized(Math.max(0, Math.min(size, offset + length) - offset))
    await this.readSpace(this.chunksOfBlobs()[blobIndex], blobOffsetOf, size, offset, out, undefined, options)
    return out
  }

  async readBlobInto (blobIndex: number, offset: number, target: Uint8Array, options?: AbortOptions): Promise<number> {
    throwIfAborted(options)
    this.checkOpen()
    nonNegativeInteger(offset, 'offset')
    const size = this.blobSize(blobIndex)
    return await this.readSpace(this.chunksOfBlobs()[blobIndex], blobOffsetOf, size, offset, target, undefined, options)
  }

  startPrefetch (): Promise<PrefetchResult> {
    this.prefetching ??= this.runPrefetch().catch((err: any) => {
      // Closing the device ends the prefetch on purpose; anything else is worth a line.
      if (!this.closing.signal.aborted) this.logger?.warn(`prefetch stopped: ${err?.message ?? err}`)
      return this.prefetchResult()
    })
    return this.prefetching
  }

  private prefetchResult (): PrefetchResult {
    const { chunks, fetched, failed, bytes } = this.prefetchState
    return { chunks, fetched, failed, bytes }
  }

  /** The prefetch list's chunks in list order, once each; directories stand for every file under them. */
  private prefetchChunks (): RafsChunk[] {
    const seen = new Set<string>()
    const out: RafsChunk[] = []
    const addFile = (node: RafsNode): void => {
      for (const chunk of node.chunks ?? []) {
        const key = `${chunk.blobIndex}:${chunk.index}`
        if (!seen.has(key) && this.image.blobs[chunk.blobIndex] != null) {
          seen.add(key)
          out.push(chunk)
        }
      }
    }
    for (const node of this.image.prefetch) {
      if (node.type === 'file') addFile(node)
      else if (node.type === 'directory') walk(node, (_path, child) => { if (child.type === 'file') addFile(child) })
    }
    return out
  }

  private async runPrefetch (): Promise<PrefetchResult> {
    const state = this.prefetchState
    state.running = true
    try {
      const chunks = this.prefetchChunks()
      state.chunks = chunks.length
      const bandwidth = this.init.prefetch?.bandwidth ?? Number.POSITIVE_INFINITY
      // Runs no longer than a quarter second of bandwidth keep the pace smooth.
      const runLimit = Math.max(1, Math.min(this.maxRunBytes, Math.floor(bandwidth / 4)))
      const started = performance.now()
      let asked = 0
      let run: RafsChunk[] = []
      let runBytes = 0
      const flush = async (): Promise<void> => {
        if (run.length === 0) return
        const batch = run
        const bytes = runBytes
        run = []
        runBytes = 0
        // Token bucket without a burst: bytes asked by time t stay under bandwidth * t + one run.
        const due = started + asked / bandwidth * 1000
        const wait = due - performance.now()
        if (wait > 0) await sleep(wait, undefined, { signal: this.closing.signal })
        asked += bytes
        state.bytes += bytes
        const results = await Promise.allSettled(this.load(batch))
        for (const r of results) {
          if (r.status === 'fulfilled') state.fetched++
          else state.failed++
        }
      }
      for (const chunk of chunks) {
        if (this.closing.signal.aborted) break
        const blob = this.image.blobs[chunk.blobIndex]
        if (this.memory.has(chunkKey(chunk)) || this.cache?.has(chunkRefOf(chunk, blob)) === true) {
          state.fetched++
          continue
        }
        const last = run.at(-1)
        const adjacent = last != null && last.blobIndex === chunk.blobIndex && chunk.compressedOffset === last.compressedOffset + last.compressedSize
        if (last != null && (!adjacent || runBytes + chunk.compressedSize > runLimit)) await flush()
        run.push(chunk)
        runBytes += chunk.compressedSize
      }
      if (!this.closing.signal.aborted) await flush()
      return this.prefetchResult()
    } finally {
      state.running = false
    }
  }

  stats (): BlobDeviceStats {
    const c = this.counters
    return {
      bytesBySource: { ...c.bytesBySource },
      chunksBySource: { ...c.chunksBySource },
      cacheHits: c.cacheHits,
      cacheMisses: c.cacheMisses,
      memoryHits: c.memoryHits,
      errors: { ...c.errors },
      readaheadChunks: c.readaheadChunks,
      prefetch: { ...this.prefetchState }
    }
  }

  async close (): Promise<void> {
    if (this.closing.signal.aborted) return
    this.closing.abort()
    await this.prefetching
    // Bounded: every write settles; new ones cannot start once closed (fetches stop at the signal).
    while (this.cacheWrites.size > 0) await Promise.allSettled([...this.cacheWrites])
    for (const blob of this.image.blobs) this.cache?.unpin(blob.blobId)
    this.memory.clear()
    this.memoryUsed = 0
  }
}

/** The read path of one image: cache → ordered sources, every chunk verified. */
export function blobDevice (init: BlobDeviceInit): BlobDevice {
  return new Device(init.image, init)
}
