import { ShoalError } from '@shoal/interface'

/**
 * A put that disagrees with what the cache holds for its blob: the same chunk index at another
 * offset or size, or a byte range overlapping another chunk. Two bootstraps that describe one blob
 * differently cannot both be right; the cache keeps what it has.
 */
export class ChunkCacheConflictError extends ShoalError {
  override name = 'ChunkCacheConflictError'
  override readonly code = 'ERR_CHUNK_CACHE_CONFLICT'
}

export class ChunkCacheClosedError extends ShoalError {
  override name = 'ChunkCacheClosedError'
  override readonly code = 'ERR_CHUNK_CACHE_CLOSED'
  constructor (path: string) {
    super(`chunk cache ${path} is closed`)
  }
}
