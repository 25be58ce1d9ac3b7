import { throwIfAborted, type AbortOptions, type BlobId, type ChunkStore } from '@shoal/interface'
import type { ChunkCache } from './cache.js'

/**
 * The cache as the swarm's ChunkStore: what peers may ask for. Bytes were verified when they were
 * put; the receiving peer verifies them again, as it must with anything from the network.
 */
export function cacheChunkStore (cache: ChunkCache): ChunkStore {
  return {
    async has (blobId: BlobId, index: number, options?: AbortOptions): Promise<boolean> {
      throwIfAborted(options)
      return cache.locate(blobId, index) !== undefined
    },
    async bitmap (blobId: BlobId, options?: AbortOptions): Promise<Uint8Array | undefined> {
      throwIfAborted(options)
      const indexes = cache.chunks(blobId)
      if (indexes.length === 0) return undefined
      const bits = new Uint8Array((indexes[indexes.length - 1] >> 3) + 1)
      for (const i of indexes) bits[i >> 3] |= 1 << (i & 7)
      return bits
    },
    async getUncompressed (blobId: BlobId, index: number, options?: AbortOptions): Promise<Uint8Array | undefined> {
      throwIfAborted(options)
      const key = cache.locate(blobId, index)
      return key === undefined ? undefined : await cache.get(key, options)
    }
  }
}
