/**
 * The one way stored chunk bytes become usable: decompress, then check the digest.
 */
import { ChunkDigestMismatchError, type ChunkRef } from '@shoal/interface'
import { DecompressError } from '../errors.js'
import type { RafsBlob, RafsChunk } from '../model.js'
import { decompress } from './compression.js'
import { chunkDigest, digestsEqual, toHex } from './digest.js'

/**
 * Turns the stored bytes of `chunk` (as they sit in `blob`, possibly compressed) into its
 * uncompressed bytes, verified against the chunk's digest.
 * Throws DecompressError (naming the blob and chunk) or ChunkDigestMismatchError.
 */
export function decodeChunk (stored: Uint8Array, chunk: RafsChunk, blob: RafsBlob): Uint8Array {
  return decodeStored(stored, blob.blobId, chunk.index, chunk.compressedSize, chunk.uncompressedSize,
    chunk.compressed ? blob.compressor : 'none', blob.digester, chunk.digest)
}

/** decodeChunk for the shared ChunkRef shape (what chunk sources and peers speak). */
export function decodeChunkRef (stored: Uint8Array, ref: ChunkRef): Uint8Array {
  return decodeStored(stored, ref.blobId, ref.index, ref.compressedSize, ref.uncompressedSize,
    ref.compressed ? ref.compressor : 'none', ref.digester, ref.digest)
}

/** The ChunkRef of a chunk of a blob, for fetching it through a ChunkSource. */
export function chunkRefOf (chunk: RafsChunk, blob: RafsBlob): ChunkRef {
  return {
    blobId: blob.blobId,
    index: chunk.index,
    compressedOffset: chunk.compressedOffset,
    compressedSize: chunk.compressedSize,
    uncompressedOffset: chunk.uncompressedOffset,
    uncompressedSize: chunk.uncompressedSize,
    compressed: chunk.compressed,
    compressor: blob.compressor,
    digester: blob.digester,
    digest: chunk.digest
  }
}

function decodeStored (
  stored: Uint8Array, blobId: string, index: number, compressedSize: number, uncompressedSize: number,
  compressor: RafsBlob['compressor'], digester: RafsBlob['digester'], expected: Uint8Array
): Uint8Array {
  if (stored.length !== compressedSize) {
    throw new DecompressError(`chunk ${index} of blob ${blobId}: got ${stored.length} stored bytes, expected ${compressedSize}`)
  }
  let data: Uint8Array
  try {
    data = decompress(stored, compressor, uncompressedSize)
  } catch (err) {
    if (err instanceof DecompressError) {
      throw new DecompressError(`chunk ${index} of blob ${blobId}: ${err.message}`)
    }
    throw err
  }
  const actual = chunkDigest(data, digester)
  if (!digestsEqual(actual, expected)) {
    throw new ChunkDigestMismatchError(blobId, index, toHex(expected), toHex(actual))
  }
  return data
}
