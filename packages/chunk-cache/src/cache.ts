/**
 * An on-disk cache of verified, uncompressed chunks. Each blob has one sparse data file in which
 * every cached chunk sits at its uncompressed offset (so the file *is* the blob's uncompressed
 * address space, holes where nothing is cached); a LevelDB index (npm `level`) says which chunks
 * are present. Bytes are written and fdatasync'd before their index entry is committed, and index
 * entries are deleted before their data file is removed, so no crash leaves an entry pointing at
 * bytes that were not written.
 */
import { constants } from 'node:fs'
import { mkdir, open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { InvalidArgumentError, throwIfAborted, type AbortOptions, type BlobId } from '@shoal/interface'
import { ChunkCacheClosedError, ChunkCacheConflictError } from './errors.js'

/** Where a chunk sits in its blob's uncompressed address space: what a put or get names. */
export interface CachedChunkKey {
  blobId: BlobId
  index: number
  uncompressedOffset: number
  uncompressedSize: number
}

export interface ChunkCacheStats {
  /** Gets answered with bytes. */
  hits: number
  /** Gets answered with nothing (absent, another offset or size, or data found short). */
  misses: number
  /** Bytes of chunk data held now (sum of chunk sizes). */
  bytes: number
  chunks: number
  blobs: number
  /** Blobs evicted to keep under the cap, and their bytes. */
  evictions: number
  evictedBytes: number
  /** Chunks stored by put since open. */
  puts: number
  /** Index entries dropped because their data was missing or short (at open or on a get). */
  dropped: number
}

export type ChunkCacheEvent =
  | { type: 'blob-added', blobId: BlobId }
  | { type: 'blob-evicted', blobId: BlobId, bytes: number }

export interface ChunkCacheLogger {
  warn: (message: string) => void
}

export interface ChunkCacheInit {
  /** Directory of the cache (created): `index/` (LevelDB) and `data/` (one file per blob). */
  path: string
  /** Cap on the bytes of chunk data; least recently used blobs that no one pins are evicted past it. */
  maxBytes: number
  /**
   * fdatasync a blob file before its index entries are committed (default true). SIGKILL needs no
   * sync (the page cache survives the process); power loss does.
   */
  durable?: boolean
  logger?: ChunkCacheLogger
}

/**
 * The cache contract. The cache checks offsets and lengths; it never sees digests. Callers put
 * only bytes they verified, and verify the digest of what a get returns before they use it
 * (blob-device does both), so a cache file changed behind the cache's back is caught too.
 */
export interface ChunkCache {
  readonly path: string
  /** The chunk's bytes when present at exactly this offset and size, else undefined. */
  get: (key: CachedChunkKey, options?: AbortOptions) => Promise<Uint8Array | undefined>
  /** Whether the chunk is present (no I/O, no stats). */
  has: (key: CachedChunkKey) => boolean
  /** Where a present chunk sits, by blob and index alone (for peers, who ask by index). */
  locate: (blobId: BlobId, index: number) => CachedChunkKey | undefined
  /**
   * Stores verified bytes. Resolves once the chunk is durable and visible (unless the cap evicts
   * its blob at once, when every other blob is pinned); a second put of a present chunk is a no-op. Throws ChunkCacheConflictError for a disagreeing offset or size.
   */
  put: (key: CachedChunkKey, bytes: Uint8Array, options?: AbortOptions) => Promise<void>
  /** Forgets one chunk (say, one whose digest failed). */
  delete: (key: CachedChunkKey, options?: AbortOptions) => Promise<void>
  /** A pinned blob (a mount uses it) is never evicted; pins count, and may precede any chunk. */
  pin: (blobId: BlobId) => void
  unpin: (blobId: BlobId) => void
  /** Blobs holding at least one chunk. */
  blobs: () => BlobId[]
  /** Present chunk indexes of a blob, ascending (what a peer's "which chunks" answer needs). */
  chunks: (blobId: BlobId) => number[]
  stats: () => ChunkCacheStats
  /** Called on a blob's first chunk and on its eviction; returns a function that unsubscribes. */
  subscribe: (listener: (event: ChunkCacheEvent) => void) => () => void
  close: () => Promise<void>
}

const BLOB_ID = /^[0-9a-f]{64}$/
const CHUNK_PREFIX = 'c!'
const BLOB_PREFIX = 'b!'
/** lastUsed is persisted on a hit at most this often per blob; commits always persist it. */
const TOUCH_PERSIST_MS = 30_000
/** A chunk is never larger than Nydus's 16 MiB maximum; refusing more bounds every allocation. */
const MAX_CHUNK_BYTES = 16 * 1024 * 1024

interface ChunkEntry { offset: number, size: number }

/** One stored index value; short names keep the index small. */
interface IndexValue { o: number, s: number }

interface Range { start: number, end: number, index: number }

class BlobState {
  readonly entries = new Map<number, ChunkEntry>()
  /** Present and in-flight chunk ranges sorted by start: refuses overlapping puts. */
  readonly ranges: Range[] = []
  /** In-flight puts by chunk index, so a concurrent put of the same chunk waits for the first. */
  readonly pending = new Map<number, Promise<void>>()
  bytes = 0
  lastUsed = 0
  lastPersisted = 0
  /** Reads and writes in progress on the file handle; the handle closes only when this is zero. */
  busy = 0
  idle?: () => void
  handle?: Promise<FileHandle>
  constructor (readonly blobId: BlobId, readonly file: string) {}

  /** Position of the first range whose start is >= offset. */
  private search (offset: number): number {
    let lo = 0
    let hi = this.ranges.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.ranges[mid].start < offset) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** The chunk index whose range overlaps [start, end), if any. */
  overlapping (start: number, end: number): number | undefined {
    const at = this.search(start)
    if (at < this.ranges.length && this.ranges[at].start < end) return this.ranges[at].index
    if (at > 0 && this.ranges[at - 1].end > start) return this.ranges[at - 1].index
    return undefined
  }

  addRange (start: number, end: number, index: number): void {
    this.ranges.splice(this.search(start), 0, { start, end, index })
  }

  removeRange (start: number, index: number): void {
    const at = this.search(start)
    if (this.ranges[at]?.index === index) this.ranges.splice(at, 1)
  }
}

interface QueuedCommit {
  state: BlobState
  index: number
  entry: ChunkEntry
  resolve: () => void
  reject: (err: unknown) => void
}

function chunkKey (blobId: BlobId, index: number): string {
  return `${CHUNK_PREFIX}${blobId}!${index.toString(16).padStart(8, '0')}`
}

function checkKey (key: CachedChunkKey): void {
  if (!BLOB_ID.test(key.blobId)) throw new InvalidArgumentError(`invalid blob id '${key.blobId}' (expected 64 lower-case hex digits)`)
  if (!Number.isSafeInteger(key.index) || key.index < 0 || key.index > 0xffff_ffff) {
    throw new InvalidArgumentError(`blob ${key.blobId}: invalid chunk index ${key.index}`)
  }
  if (!Number.isSafeInteger(key.uncompressedOffset) || key.uncompressedOffset < 0) {
    throw new InvalidArgumentError(`chunk ${key.index} of blob ${key.blobId}: invalid offset ${key.uncompressedOffset}`)
  }
  if (!Number.isSafeInteger(key.uncompressedSize) || key.uncompressedSize <= 0 || key.uncompressedSize > MAX_CHUNK_BYTES) {
    throw new InvalidArgumentError(`chunk ${key.index} of blob ${key.blobId}: invalid size ${key.uncompressedSize} (1..${MAX_CHUNK_BYTES})`)
  }
}

class LevelChunkCache implements ChunkCache {
  private readonly blobStates = new Map<BlobId, BlobState>()
  private readonly pins = new Map<BlobId, number>()
  /** Evictions in progress: a new put to the same blob waits until the old file is gone. */
  private readonly evicting = new Map<BlobId, Promise<void>>()
  /** Bytes of puts between their first write and their commit: counted against the cap early. */
  private inFlightBytes = 0
  private readonly listeners = new Set<(event: ChunkCacheEvent) => void>()
  private readonly queue: QueuedCommit[] = []
  private flushing?: Promise<void>
  private totalBytes = 0
  private clock = 0
  private totalChunks = 0
  private closed = false
  private readonly counters = { hits: 0, misses: 0, evictions: 0, evictedBytes: 0, puts: 0, dropped: 0 }
  private readonly durable: boolean

  constructor (
    readonly path: string,
    private readonly dataDir: string,
    private readonly db: Level<string, IndexValue>,
    private readonly maxBytes: number,
    init: ChunkCacheInit
  ) {
    this.durable = init.durable ?? true
    this.logger = init.logger
  }

  private readonly logger?: ChunkCacheLogger

  /** Loads the index, dropping entries whose data is missing or short, and files nothing names. */
  async load (): Promise<void> {
    const lastUsed = new Map<BlobId, number>()
    for await (const [key, value] of this.db.iterator({ gt: BLOB_PREFIX, lt: `${BLOB_PREFIX}~` })) {
      lastUsed.set(key.slice(BLOB_PREFIX.length), Number(value.o) || 0)
    }
    const drops: string[] = []
    const fileSizes = new Map<BlobId, number | undefined>()
    for await (const [key, value] of this.db.iterator({ gt: CHUNK_PREFIX, lt: `${CHUNK_PREFIX}~` })) {
      const blobId = key.slice(CHUNK_PREFIX.length, CHUNK_PREFIX.length + 64)
      const index = Number.parseInt(key.slice(CHUNK_PREFIX.length + 65), 16)
      const entry = { offset: value?.o, size: value?.s }
      if (!BLOB_ID.test(blobId) || !Number.isSafeInteger(index) || !Number.isSafeInteger(entry.offset) || !Number.isSafeInteger(entry.size) ||
        entry.offset < 0 || entry.size <= 0 || entry.size > MAX_CHUNK_BYTES) {
        drops.push(key)
        continue
      }
      if (!fileSizes.has(blobId)) {
        fileSizes.set(blobId, await stat(join(this.dataDir, blobId)).then(s => s.size, () => undefined))
      }
      const fileSize = fileSizes.get(blobId)
      let state = this.blobStates.get(blobId)
      if (fileSize === undefined || entry.offset + entry.size > fileSize || state?.overlapping(entry.offset, entry.offset + entry.size) !== undefined) {
        drops.push(key)
        continue
      }
      if (state === undefined) {
        state = new BlobState(blobId, join(this.dataDir, blobId))
        state.lastUsed = state.lastPersisted = lastUsed.get(blobId) ?? 0
        this.clock = Math.max(this.clock, state.lastUsed)
        this.blobStates.set(blobId, state)
      }
      state.entries.set(index, entry)
      state.addRange(entry.offset, entry.offset + entry.size, index)
      state.bytes += entry.size
      this.totalBytes += entry.size
      this.totalChunks++
    }
    for (const blobId of lastUsed.keys()) {
      if (!this.blobStates.has(blobId)) drops.push(`${BLOB_PREFIX}${blobId}`)
    }
    if (drops.length > 0) {
      this.counters.dropped += drops.filter(k => k.startsWith(CHUNK_PREFIX)).length
      await this.db.batch(drops.map(key => ({ type: 'del' as const, key })))
    }
    // Files that no entry names: a blob evicted or never committed before a crash.
    for (const name of await readdir(this.dataDir)) {
      if (!this.blobStates.has(name)) await unlink(join(this.dataDir, name)).catch(() => {})
    }
    this.evictIfNeeded()
  }

  private checkOpen (): void {
    if (this.closed) throw new ChunkCacheClosedError(this.path)
  }

  private emit (event: ChunkCacheEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event)
      } catch (err: any) {
        this.logger?.warn(`chunk cache ${this.path}: a ${event.type} listener threw: ${err?.message ?? err}`)
      }
    }
  }

  private handleOf (state: BlobState): Promise<FileHandle> {
    state.handle ??= open(state.file, constants.O_RDWR | constants.O_CREAT, 0o600)
    return state.handle
  }

  private release (state: BlobState): void {
    state.busy--
    if (state.busy === 0) state.idle?.()
  }

  /** A strictly increasing clock: LRU order never ties, and survives restarts (it follows Date.now). */
  private tick (): number {
    this.clock = Math.max(Date.now(), this.clock + 1)
    return this.clock
  }

  private touch (state: BlobState): void {
    const now = Date.now()
    state.lastUsed = this.tick()
    if (now - state.lastPersisted > TOUCH_PERSIST_MS && !this.closed) {
      state.lastPersisted = now
      this.db.put(`${BLOB_PREFIX}${state.blobId}`, { o: state.lastUsed, s: 0 }).catch(() => {})
    }
  }

  has (key: CachedChunkKey): boolean {
    const entry = this.blobStates.get(key.blobId)?.entries.get(key.index)
    return entry !== undefined && entry.offset === key.uncompressedOffset && entry.size === key.uncompressedSize
  }

  locate (blobId: BlobId, index: number): CachedChunkKey | undefined {
    const entry = this.blobStates.get(blobId)?.entries.get(index)
    return entry === undefined ? undefined : { blobId, index, uncompressedOffset: entry.offset, uncompressedSize: entry.size }
  }

  async get (key: CachedChunkKey, options?: AbortOptions): Promise<Uint8Array | undefined> {
    throwIfAborted(options)
    this.checkOpen()
    checkKey(key)
    const state = this.blobStates.get(key.blobId)
    const entry = state?.entries.get(key.index)
    if (state === undefined || entry === undefined || entry.offset !== key.uncompressedOffset || entry.size !== key.uncompressedSize) {
      this.counters.misses++
      return undefined
    }
    state.busy++
    let bytesRead = 0
    // Not zero-filled: every byte is read over (a short read is dropped below). A zeroed buffer of a
    // chunk's size is a fresh mmap whose page faults cost more than the read itself.
    const slow = Buffer.allocUnsafeSlow(entry.size)
    const buffer = new Uint8Array(slow.buffer, slow.byteOffset, slow.byteLength)
    try {
      const handle = await this.handleOf(state)
      // Bounded: each pass reads at least one byte or stops.
      while (bytesRead < entry.size) {
        const { bytesRead: n } = await handle.read(buffer, bytesRead, entry.size - bytesRead, entry.offset + bytesRead)
        if (n === 0) break
        bytesRead += n
      }
    } finally {
      this.release(state)
    }
    if (bytesRead !== entry.size) {
      // The file was cut behind our back: forget the entry rather than serve a short chunk.
      this.logger?.warn(`chunk cache ${this.path}: chunk ${key.index} of blob ${key.blobId}: read ${bytesRead} bytes at ${entry.offset}, expected ${entry.size}; dropped`)
      this.counters.dropped++
      await this.delete(key).catch(() => {})
      this.counters.misses++
      return undefined
    }
    this.counters.hits++
    this.touch(state)
    return buffer
  }

  async put (key: CachedChunkKey, bytes: Uint8Array, options?: AbortOptions): Promise<void> {
    throwIfAborted(options)
    this.checkOpen()
    checkKey(key)
    if (bytes.length !== key.uncompressedSize) {
      throw new InvalidArgumentError(`chunk ${key.index} of blob ${key.blobId}: ${bytes.length} bytes given, the key says ${key.uncompressedSize}`)
    }
    const eviction = this.evicting.get(key.blobId)
    if (eviction !== undefined) await eviction
    this.checkOpen()
    let state = this.blobStates.get(key.blobId)
    if (state === undefined) {
      state = new BlobState(key.blobId, join(this.dataDir, key.blobId))
      this.blobStates.set(key.blobId, state)
    }
    const start = key.uncompressedOffset
    const end = start + key.uncompressedSize
    const present = state.entries.get(key.index)
    if (present !== undefined) {
      if (present.offset === start && present.size === key.uncompressedSize) return
      throw new ChunkCacheConflictError(`chunk ${key.index} of blob ${key.blobId}: put at ${start} (${key.uncompressedSize} bytes), but the cache holds it at ${present.offset} (${present.size} bytes)`)
    }
    const inFlight = state.pending.get(key.index)
    if (inFlight !== undefined) {
      await inFlight
      if (this.has(key)) return
      throw new ChunkCacheConflictError(`chunk ${key.index} of blob ${key.blobId}: a concurrent put stored it at another offset or size than ${start} (${key.uncompressedSize} bytes)`)
    }
    const other = state.overlapping(start, end)
    if (other !== undefined) {
      throw new ChunkCacheConflictError(`chunk ${key.index} of blob ${key.blobId}: bytes ${start}..${end} overlap chunk ${other}`)
    }
    state.addRange(start, end, key.index)
    // Room is made before the bytes reach the disk, so the cap holds on disk too, not only once
    // the write has been committed.
    this.inFlightBytes += key.uncompressedSize
    const done = this.write(state, key.index, { offset: start, size: key.uncompressedSize }, bytes)
    state.pending.set(key.index, done)
    // After pending is set, so this blob itself is never the one evicted to make room.
    this.evictIfNeeded()
    try {
      await done
    } catch (err) {
      state.removeRange(start, key.index)
      throw err
    } finally {
      state.pending.delete(key.index)
    }
    // Blobs being written are spared while in flight; once this put is done the cap applies to it too.
    this.evictIfNeeded()
  }

  private async write (state: BlobState, index: number, entry: ChunkEntry, bytes: Uint8Array): Promise<void> {
    state.busy++
    try {
      try {
        const handle = await this.handleOf(state)
        let written = 0
        while (written < bytes.length) {
          const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, entry.offset + written)
          written += bytesWritten
        }
      } catch (err) {
        this.inFlightBytes -= entry.size
        throw err
      }
      // The index entry is committed only after the bytes are in the file (and synced, in the batch).
      await new Promise<void>((resolve, reject) => {
        this.queue.push({ state, index, entry, resolve, reject })
        this.flushing ??= this.flush()
      })
    } finally {
      this.release(state)
    }
  }

  /** Group commit: one fdatasync per touched file and one index batch for every chunk queued so far. */
  private async flush (): Promise<void> {
    await new Promise(resolve => setImmediate(resolve))
    // Bounded: each pass takes everything queued; the loop ends when a pass finds the queue empty.
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.queue.length)
      try {
        const states = new Set(batch.map(c => c.state))
        if (this.durable) {
          await Promise.all([...states].map(async s => { await (await this.handleOf(s)).datasync() }))
        }
        const now = Date.now()
        const ops: Array<{ type: 'put', key: string, value: IndexValue }> = batch.map(c => ({ type: 'put', key: chunkKey(c.state.blobId, c.index), value: { o: c.entry.offset, s: c.entry.size } }))
        for (const s of states) {
          s.lastUsed = this.tick()
          s.lastPersisted = now
          ops.push({ type: 'put', key: `${BLOB_PREFIX}${s.blobId}`, value: { o: s.lastUsed, s: 0 } })
        }
        await this.db.batch(ops)
        for (const c of batch) {
          this.inFlightBytes -= c.entry.size
          const first = c.state.entries.size === 0
          c.state.entries.set(c.index, c.entry)
          c.state.bytes += c.entry.size
          this.totalBytes += c.entry.size
          this.totalChunks++
          this.counters.puts++
          if (first) this.emit({ type: 'blob-added', blobId: c.state.blobId })
        }
        for (const c of batch) c.resolve()
      } catch (err) {
        for (const c of batch) {
          this.inFlightBytes -= c.entry.size
          c.reject(err)
        }
      }
      this.evictIfNeeded()
    }
    this.flushing = undefined
  }

  /** Evicts least recently used blobs that are unpinned and idle until the cap holds (or none is left). */
  private evictIfNeeded (): void {
    if (this.totalBytes + this.inFlightBytes <= this.maxBytes) return
    const candidates = [...this.blobStates.values()]
      .filter(s => (this.pins.get(s.blobId) ?? 0) === 0 && s.pending.size === 0 && s.entries.size > 0)
      .sort((a, b) => a.lastUsed - b.lastUsed)
    for (const state of candidates) {
      if (this.totalBytes + this.inFlightBytes <= this.maxBytes) break
      this.evict(state)
    }
  }

  private evict (state: BlobState): void {
    const blobId = state.blobId
    this.blobStates.delete(blobId)
    this.totalBytes -= state.bytes
    this.totalChunks -= state.entries.size
    this.counters.evictions++
    this.counters.evictedBytes += state.bytes
    const keys = [...state.entries.keys()].map(index => chunkKey(blobId, index))
    const work = (async () => {
      // Index first: a crash after this leaves an orphan file (removed at open), never an entry without bytes.
      await this.db.batch([...keys, `${BLOB_PREFIX}${blobId}`].map(key => ({ type: 'del' as const, key })))
      await unlink(state.file).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err })
      if (state.busy > 0) await new Promise<void>(resolve => { state.idle = resolve })
      await (await state.handle?.catch(() => undefined))?.close()
    })().catch((err: any) => {
      this.logger?.warn(`chunk cache ${this.path}: evicting blob ${blobId}: ${err?.message ?? err}`)
    }).finally(() => {
      if (this.evicting.get(blobId) === work) this.evicting.delete(blobId)
    })
    this.evicting.set(blobId, work)
    this.emit({ type: 'blob-evicted', blobId, bytes: state.bytes })
  }

  async delete (key: CachedChunkKey, options?: AbortOptions): Promise<void> {
    throwIfAborted(options)
    this.checkOpen()
    const state = this.blobStates.get(key.blobId)
    const entry = state?.entries.get(key.index)
    if (state === undefined || entry === undefined) return
    // Memory first, so nothing serves the entry while the index forgets it.
    state.entries.delete(key.index)
    state.removeRange(entry.offset, key.index)
    state.bytes -= entry.size
    this.totalBytes -= entry.size
    this.totalChunks--
    await this.db.del(chunkKey(key.blobId, key.index))
  }

  pin (blobId: BlobId): void {
    this.pins.set(blobId, (this.pins.get(blobId) ?? 0) + 1)
  }

  unpin (blobId: BlobId): void {
    const count = (this.pins.get(blobId) ?? 0) - 1
    if (count > 0) this.pins.set(blobId, count)
    else this.pins.delete(blobId)
    if (count <= 0 && !this.closed) this.evictIfNeeded()
  }

  blobs (): BlobId[] {
    return [...this.blobStates.values()].filter(s => s.entries.size > 0).map(s => s.blobId)
  }

  chunks (blobId: BlobId): number[] {
    return [...(this.blobStates.get(blobId)?.entries.keys() ?? [])].sort((a, b) => a - b)
  }

  stats (): ChunkCacheStats {
    return { ...this.counters, bytes: this.totalBytes, chunks: this.totalChunks, blobs: this.blobs().length }
  }

  subscribe (listener: (event: ChunkCacheEvent) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    // Let queued commits and evictions finish: both keep index and files consistent.
    // Bounded: flush() runs until its queue is empty, and no new put is accepted once closed.
    while (this.flushing !== undefined) await this.flushing
    await Promise.all([...this.evicting.values()])
    const ops = [...this.blobStates.values()]
      .filter(s => s.lastUsed > s.lastPersisted && s.entries.size > 0)
      .map(s => ({ type: 'put' as const, key: `${BLOB_PREFIX}${s.blobId}`, value: { o: s.lastUsed, s: 0 } }))
    if (ops.length > 0) await this.db.batch(ops).catch(() => {})
    for (const state of this.blobStates.values()) {
      if (state.busy > 0) await new Promise<void>(resolve => { state.idle = resolve })
      await (await state.handle?.catch(() => undefined))?.close()
    }
    await this.db.close()
  }
}

/** Opens (creating) a chunk cache; recovers from any earlier crash before it answers. */
export async function openChunkCache (init: ChunkCacheInit, options?: AbortOptions): Promise<ChunkCache> {
  throwIfAborted(options)
  if (!Number.isSafeInteger(init.maxBytes) || init.maxBytes < 0) {
    throw new InvalidArgumentError(`maxBytes must be a non-negative integer, got ${init.maxBytes}`)
  }
  const dataDir = join(init.path, 'data')
  await mkdir(dataDir, { recursive: true })
  const db = new Level<string, IndexValue>(join(init.path, 'index'), { valueEncoding: 'json' })
  await db.open()
  const cache = new LevelChunkCache(init.path, dataDir, db, init.maxBytes, init)
  try {
    await cache.load()
  } catch (err) {
    await db.close().catch(() => {})
    throw err
  }
  return cache
}
