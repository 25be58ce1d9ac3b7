/**
 * Chunk sources over whole-blob byte ranges: any BlobBackend (a registry, a directory) becomes a
 * ChunkSource that reads a run of adjacent chunks with one range read and splits the result.
 */
import { BlobNotFoundError, throwIfAborted, type AbortOptions, type BlobBackend, type ChunkRef, type ChunkSource } from '@shoal/interface'
import { blobDirectory, type BlobDirectory } from './blob-directory.js'

export interface BackendSourceOptions {
  /** Bytes of unwanted data between two chunks that may still be read in one range (default 64 KiB). */
  maxGap?: number
  /** Largest single range read (default 16 MiB); a longer run is split. */
  maxRangeBytes?: number
}

const DEFAULT_MAX_GAP = 64 * 1024
const DEFAULT_MAX_RANGE_BYTES = 16 * 1024 * 1024

interface Wanted { ref: ChunkRef, position: number }

/** Groups requested chunks into ranges: same blob, ascending offsets, gaps and sizes bounded. */
export function planRanges (refs: ChunkRef[], maxGap = DEFAULT_MAX_GAP, maxRangeBytes = DEFAULT_MAX_RANGE_BYTES): Array<{ blobId: string, offset: number, length: number, chunks: Wanted[] }> {
  const sorted = refs.map((ref, position) => ({ ref, position }))
    .sort((a, b) => a.ref.blobId < b.ref.blobId ? -1 : a.ref.blobId > b.ref.blobId ? 1 : a.ref.compressedOffset - b.ref.compressedOffset)
  const ranges: Array<{ blobId: string, offset: number, length: number, chunks: Wanted[] }> = []
  for (const wanted of sorted) {
    const { blobId, compressedOffset: start, compressedSize: size } = wanted.ref
    const last = ranges.at(-1)
    const end = Math.max(last != null ? last.offset + last.length : 0, start + size)
    if (last != null && last.blobId === blobId && start <= last.offset + last.length + maxGap && end - last.offset <= maxRangeBytes) {
      last.length = end - last.offset
      last.chunks.push(wanted)
    } else {
      ranges.push({ blobId, offset: start, length: size, chunks: [wanted] })
    }
  }
  return ranges
}

/**
 * A BlobBackend as a ChunkSource. A blob the backend does not hold answers undefined for its
 * chunks; other errors (network, I/O) reject, and the caller tries its next source.
 */
export function backendSource (backend: BlobBackend, name = backend.name, options: BackendSourceOptions = {}): ChunkSource {
  const maxGap = options.maxGap ?? DEFAULT_MAX_GAP
  const maxRangeBytes = options.maxRangeBytes ?? DEFAULT_MAX_RANGE_BYTES
  return {
    name,
    async getChunks (refs: ChunkRef[], callOptions?: AbortOptions): Promise<Array<Uint8Array | undefined>> {
      throwIfAborted(callOptions)
      const out = new Array<Uint8Array | undefined>(refs.length).fill(undefined)
      for (const range of planRanges(refs, maxGap, maxRangeBytes)) {
        let bytes: Uint8Array
        try {
          bytes = await backend.read(range.blobId, range.offset, range.length, callOptions)
        } catch (err) {
          if (err instanceof BlobNotFoundError) continue
          throw err
        }
        for (const { ref, position } of range.chunks) {
          const from = ref.compressedOffset - range.offset
          // A short answer leaves the chunks it does not cover undefined rather than padding them.
          if (from + ref.compressedSize <= bytes.length) out[position] = bytes.subarray(from, from + ref.compressedSize)
        }
      }
      return out
    }
  }
}

export interface BlobDirectorySourceInit extends BackendSourceOptions {
  /** A directory of blob files named by blob id. */
  path: string
  name?: string
}

export interface BlobDirectorySource extends ChunkSource {
  close: () => Promise<void>
}

/** A ChunkSource over a directory of blob files (as nydus-image and the builder write them). */
export function blobDirectorySource (init: BlobDirectorySourceInit): BlobDirectorySource {
  const directory: BlobDirectory = blobDirectory({ path: init.path })
  const source = backendSource(directory, init.name ?? directory.name, init)
  return { name: source.name, getChunks: source.getChunks, close: directory.close.bind(directory) }
}
