/**
 * Cuts file contents into fixed-size chunks, names each by its digest, and stores only chunks
 * never seen before (in this image, an earlier layer, or a chunk dictionary). A file's chunk
 * list refers to wherever each chunk already lives.
 */
import { throwIfAborted, InvalidArgumentError, type AbortOptions } from '@shoal/interface'
import type { RafsChunk } from '@shoal/rafs'
import { isHolePiece } from './tar.js'

/** Where new chunks go: the current layer's blob. `data` is only valid during the call. */
export interface ChunkStore {
  add: (data: Uint8Array, digest: Uint8Array) => RafsChunk
}

export interface ChunkCounts {
  /** Chunks stored in this layer's blob, and their uncompressed bytes. */
  newChunks: number
  newBytes: number
  /** Chunk references satisfied by a chunk stored before (earlier layer, earlier in this layer, or the dictionary). */
  dedupChunks: number
  dedupBytes: number
}

export const MIN_CHUNK_SIZE = 0x1000
export const MAX_CHUNK_SIZE = 0x1000000

export function validateChunkSize (chunkSize: number): void {
  if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE || (chunkSize & (chunkSize - 1)) !== 0) {
    throw new InvalidArgumentError(`chunk size ${chunkSize}: expected a power of two from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`)
  }
}

export function emptyCounts (): ChunkCounts {
  return { newChunks: 0, newBytes: 0, dedupChunks: 0, dedupBytes: 0 }
}

function hex (digest: Uint8Array): string {
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex')
}

export class Chunker {
  readonly chunkSize: number
  private readonly digest: (data: Uint8Array) => Uint8Array
  private readonly known = new Map<string, RafsChunk>()
  private readonly buffer: Uint8Array

  constructor (options: { chunkSize: number, digest: (data: Uint8Array) => Uint8Array }) {
    validateChunkSize(options.chunkSize)
    this.chunkSize = options.chunkSize
    this.digest = options.digest
    this.buffer = new Uint8Array(options.chunkSize)
  }

  /** Makes a chunk that already lives in some blob available for reference (chunk dictionary). */
  addKnown (chunk: RafsChunk): void {
    const key = hex(chunk.digest)
    if (!this.known.has(key)) this.known.set(key, chunk)
  }

  get knownCount (): number {
    return this.known.size
  }

  private place (data: Uint8Array, fileOffset: number, store: ChunkStore, counts: ChunkCounts): RafsChunk {
    const digest = this.digest(data)
    const key = hex(digest)
    let stored = this.known.get(key)
    if (stored === undefined) {
      stored = store.add(data, digest)
      this.known.set(key, stored)
      counts.newChunks++
      counts.newBytes += data.length
    } else {
      counts.dedupChunks++
      counts.dedupBytes += data.length
    }
    return { ...stored, fileOffset }
  }

  /**
   * Reads a file body to its end and returns its chunks in file order, with `size` the number
   * of bytes read. Only one chunk of the file is in memory at a time. A chunk that lies wholly
   * in a hole of a sparse file is left out (a gap reads as zeros), so a huge sparse file costs
   * only its data.
   */
  async chunkFile (body: AsyncIterable<Uint8Array>, store: ChunkStore, counts: ChunkCounts, options: AbortOptions = {}): Promise<{ chunks: RafsChunk[], size: number }> {
    const chunks: RafsChunk[] = []
    const size = this.chunkSize
    let filled = 0
    let fileOffset = 0
    /** Whether the bytes gathered for the current chunk all come from holes. */
    let allHole = true
    const flush = (length: number): void => {
      if (!allHole) chunks.push(this.place(this.buffer.subarray(0, length), fileOffset, store, counts))
      fileOffset += length
      filled = 0
      allHole = true
    }
    for await (const piece of body) {
      throwIfAborted(options)
      const hole = isHolePiece(piece)
      let at = 0
      while (at < piece.length) {
        if (filled === 0 && piece.length - at >= size) {
          // A whole chunk inside the piece: digest it where it lies (or skip it, in a hole).
          if (!hole) chunks.push(this.place(piece.subarray(at, at + size), fileOffset, store, counts))
          at += size
          fileOffset += size
          continue
        }
        const take = Math.min(size - filled, piece.length - at)
        if (hole) this.buffer.fill(0, filled, filled + take)
        else {
          this.buffer.set(piece.subarray(at, at + take), filled)
          allHole = false
        }
        filled += take
        at += take
        if (filled === size) flush(size)
      }
    }
    if (filled > 0) flush(filled)
    return { chunks, size: fileOffset }
  }
}
