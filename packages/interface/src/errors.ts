/** Base of every error Shoal raises on purpose; `code` is stable for programs, `message` is for people. */
export class ShoalError extends Error {
  override name = 'ShoalError'
  readonly code: string = 'ERR_SHOAL'
}

export class AbortError extends ShoalError {
  override name = 'AbortError'
  override readonly code = 'ABORT_ERR'
  constructor (message = 'The operation was aborted') {
    super(message)
  }
}

export class BlobNotFoundError extends ShoalError {
  override name = 'BlobNotFoundError'
  override readonly code = 'ERR_BLOB_NOT_FOUND'
  constructor (readonly blobId: string, where: string) {
    super(`blob ${blobId} not found in ${where}`)
  }
}

export class ChunkDigestMismatchError extends ShoalError {
  override name = 'ChunkDigestMismatchError'
  override readonly code = 'ERR_CHUNK_DIGEST_MISMATCH'
  constructor (
    readonly blobId: string,
    readonly chunkIndex: number,
    readonly expected: string,
    readonly actual: string,
    readonly source?: string
  ) {
    super(`chunk ${chunkIndex} of blob ${blobId}${source != null ? ` from ${source}` : ''}: digest ${actual}, expected ${expected}`)
  }
}

export class InvalidArgumentError extends ShoalError {
  override name = 'InvalidArgumentError'
  override readonly code = 'ERR_INVALID_ARGUMENT'
}

export class ManifestNotFoundError extends ShoalError {
  override name = 'ManifestNotFoundError'
  override readonly code = 'ERR_MANIFEST_NOT_FOUND'
  constructor (readonly reference: string, where: string) {
    super(`manifest ${reference} not found in ${where}`)
  }
}
