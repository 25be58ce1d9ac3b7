import { ShoalError } from '@shoal/interface'

export interface SourceFailure {
  source: string
  error: string
}

/**
 * No source delivered a chunk whose bytes verify. The message names the blob, the chunk, and
 * what each source did (threw, did not have it, sent bytes that failed their digest).
 */
export class ChunkUnavailableError extends ShoalError {
  override name = 'ChunkUnavailableError'
  override readonly code = 'ERR_CHUNK_UNAVAILABLE'
  constructor (readonly blobId: string, readonly chunkIndex: number, readonly failures: SourceFailure[]) {
    const tried = failures.length === 0 ? 'no source is configured' : failures.map(f => `${f.source}: ${f.error}`).join('; ')
    super(`chunk ${chunkIndex} of blob ${blobId} is unavailable (${tried})`)
  }
}

export class BlobDeviceClosedError extends ShoalError {
  override name = 'BlobDeviceClosedError'
  override readonly code = 'ERR_BLOB_DEVICE_CLOSED'
  constructor () {
    super('the blob device is closed')
  }
}
