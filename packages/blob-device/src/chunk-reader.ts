import { throwIfAborted, type AbortOptions, type BlobBackend } from '@shoal/interface'
import { decodeChunk, RafsOutOfRangeError, type RafsChunk, type RafsImage } from '@shoal/rafs'

/**
 * Reads one chunk's stored bytes from a backend and returns them decompressed and verified
 * against the chunk's digest: the only way chunk bytes leave this package.
 */
export async function readVerifiedChunk (backend: BlobBackend, image: RafsImage, chunk: RafsChunk, options?: AbortOptions): Promise<Uint8Array> {
  throwIfAborted(options)
  const blob = image.blobs[chunk.blobIndex]
  if (blob == null) {
    throw new RafsOutOfRangeError(`chunk ${chunk.index} names blob index ${chunk.blobIndex}, but the image has ${image.blobs.length} blobs`)
  }
  const stored = await backend.read(blob.blobId, chunk.compressedOffset, chunk.compressedSize, options)
  return decodeChunk(stored, chunk, blob)
}
