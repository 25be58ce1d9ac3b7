/**
 * The serving side of `/shoal/chunk/1.0.0`: answers bitmap and chunk requests from the local
 * chunk store, one request at a time per stream, with a host-wide cap on concurrent requests
 * and on upload bandwidth.
 */
import type { Connection, Logger, Stream } from '@libp2p/interface'
import type { AbortOptions, ChunkStore } from '@shoal/interface'
import { SwarmProtocolError } from './errors.js'
import { Semaphore, TokenBucket } from './limits.js'
import {
  BLOB_ID_SIZE, ChunkEncoding, encodeBitmap, encodeChunkHeader, encodeError, encodeNoChunk, ErrorCode,
  MAX_CHUNK_BYTES, MAX_CHUNKS_PER_REQUEST, MessageType, blobIdFromBytes
} from './protocol.js'
import { FrameReader, sendAll } from './stream-io.js'

export interface ChunkServerInit {
  /** Requests answered at once across all peers. */
  maxConcurrentRequests: number
  /** Requests that may wait for a slot; past it a request is answered BUSY. */
  maxQueuedRequests: number
  /** Upload bytes per second across all peers; Infinity for no limit. */
  uploadBandwidth: number
  /** Idle time after which a stream is dropped. */
  streamIdleTimeout: number
  /** 'stored' sends chunks as stored in their blob when the store keeps that form (docs/protocol.md). */
  wireEncoding?: WireEncoding
}

export type WireEncoding = 'uncompressed' | 'stored'

/**
 * A chunk store that also keeps chunks as they are stored in their blob (compressed), such as a
 * seed holding whole blob files. Only such a store can serve encoding 1 (STORED).
 */
export interface StoredChunkStore extends ChunkStore {
  /** The chunk's bytes as stored in its blob, or undefined when that form is not held. */
  getStored(blobId: string, index: number, options?: AbortOptions): Promise<Uint8Array | undefined>
}

function keepsStored (store: ChunkStore): store is StoredChunkStore {
  return typeof (store as Partial<StoredChunkStore>).getStored === 'function'
}

export interface ChunkServerStats {
  requests: number
  chunksServed: number
  chunksMissing: number
  bytesServed: number
  busy: number
  badRequests: number
}

export class ChunkServer {
  private readonly slots: Semaphore
  private readonly bucket: TokenBucket
  readonly stats: ChunkServerStats = { requests: 0, chunksServed: 0, chunksMissing: 0, bytesServed: 0, busy: 0, badRequests: 0 }
  /** Test hook: a fault-injecting test node rewrites what it sends here. */
  mutateChunk: ((blobId: string, index: number, bytes: Uint8Array) => { index: number, bytes: Uint8Array, truncate?: boolean }) | undefined

  constructor (private readonly store: ChunkStore, private readonly init: ChunkServerInit, private readonly log: Logger) {
    this.slots = new Semaphore(init.maxConcurrentRequests, init.maxQueuedRequests)
    this.bucket = new TokenBucket(init.uploadBandwidth)
  }

  readonly handle = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString()
    const reader = new FrameReader(stream, 64 * 1024, `peer ${peer}`)
    const controller = new AbortController()
    const options = { signal: controller.signal }
    stream.inactivityTimeout = this.init.streamIdleTimeout
    try {
      // Bounded: every pass reads one request frame, and the stream's idle timeout ends a silent peer.
      for (;;) {
        const header = await reader.readHeader(maxRequestBody, options)
        if (header == null) break
        this.stats.requests++
        if (!(await this.slots.acquire(options))) {
          this.stats.busy++
          await reader.skip(header.bodyLength, options)
          await sendAll(stream, [encodeError(ErrorCode.BUSY, 'too many requests, try another peer')], options)
          continue
        }
        try {
          if (header.type === MessageType.WANT_BITMAP) {
            const blobId = blobIdFromBytes(await reader.readBytes(BLOB_ID_SIZE, options))
            const bits = await this.store.bitmap(blobId, options)
            await sendAll(stream, [encodeBitmap(bits)], options)
          } else {
            await this.serveChunks(stream, reader, header.bodyLength, options)
          }
        } finally {
          this.slots.release()
        }
      }
      await stream.close(options)
    } catch (err: any) {
      if (err instanceof SwarmProtocolError) {
        this.stats.badRequests++
        this.log('bad request from %s: %s', peer, err.message)
        try { await sendAll(stream, [encodeError(ErrorCode.BAD_REQUEST, err.message)], options) } catch {}
      } else {
        this.log('stream from %s failed: %s', peer, err?.message)
      }
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      reader.release()
      controller.abort()
    }
  }

  private async serveChunks (stream: Stream, reader: FrameReader, bodyLength: number, options: { signal: AbortSignal }): Promise<void> {
    const blobId = blobIdFromBytes(await reader.readBytes(BLOB_ID_SIZE, options))
    const count = await reader.readU16(options)
    if (count === 0 || count > MAX_CHUNKS_PER_REQUEST || bodyLength !== BLOB_ID_SIZE + 2 + 4 * count) {
      throw new SwarmProtocolError(`WANT_CHUNKS of ${count} indexes in a body of ${bodyLength} bytes`)
    }
    const indexes: number[] = []
    for (let i = 0; i < count; i++) indexes.push(await reader.readU32(options))
    const sendStored = this.init.wireEncoding === 'stored' && keepsStored(this.store) ? this.store : undefined
    for (const index of indexes) {
      const stored = await sendStored?.getStored(blobId, index, options)
      const encoding = stored != null ? ChunkEncoding.STORED : ChunkEncoding.UNCOMPRESSED
      const bytes = stored ?? await this.store.getUncompressed(blobId, index, options)
      if (bytes == null || bytes.length > MAX_CHUNK_BYTES) {
        this.stats.chunksMissing++
        await sendAll(stream, [encodeNoChunk(index)], options)
        continue
      }
      await this.bucket.take(bytes.length, options)
      let sendIndex = index
      let sendBytes = bytes
      let truncate = false
      if (this.mutateChunk != null) {
        ({ index: sendIndex, bytes: sendBytes, truncate = false } = this.mutateChunk(blobId, index, bytes))
      }
      const header = encodeChunkHeader(sendIndex, encoding, bytes.length)
      await sendAll(stream, [header, sendBytes], options)
      this.stats.chunksServed++
      this.stats.bytesServed += sendBytes.length
      if (truncate) {
        // The announced length was longer than what went out: end the stream mid-frame.
        await stream.close(options)
        throw new Error('fault injection: truncated')
      }
    }
  }
}

function maxRequestBody (type: number): number {
  switch (type) {
    case MessageType.WANT_BITMAP: return BLOB_ID_SIZE
    case MessageType.WANT_CHUNKS: return BLOB_ID_SIZE + 2 + 4 * MAX_CHUNKS_PER_REQUEST
    default: return -1
  }
}
