/**
 * The receiver-verifies rule: a chunk from a peer becomes usable only once its uncompressed
 * bytes hash to the digest the bootstrap names.
 */
import { ChunkDigestMismatchError } from '@shoal/interface'
import { chunkDigest, decodeChunkRef, digestsEqual, toHex } from '@shoal/rafs'
import { SwarmProtocolError } from './errors.js'
import { ChunkEncoding } from './protocol.js'
import type { ReceivedChunk } from './chunk-client.js'

/** The verified uncompressed bytes of `chunk`; throws ChunkDigestMismatchError, DecompressError or SwarmProtocolError. */
export function verifyReceived (chunk: ReceivedChunk, peer: string): Uint8Array {
  const { ref, encoding, bytes } = chunk
  if (encoding === ChunkEncoding.STORED) return decodeChunkRef(bytes, ref)
  if (encoding !== ChunkEncoding.UNCOMPRESSED) {
    throw new SwarmProtocolError(`peer ${peer}: chunk ${ref.index} of blob ${ref.blobId} in unknown encoding ${encoding}`)
  }
  if (bytes.length !== ref.uncompressedSize) {
    throw new SwarmProtocolError(`peer ${peer}: chunk ${ref.index} of blob ${ref.blobId} has ${bytes.length} bytes, expected ${ref.uncompressedSize}`)
  }
  const actual = chunkDigest(bytes, ref.digester)
  if (!digestsEqual(actual, ref.digest)) {
    throw new ChunkDigestMismatchError(ref.blobId, ref.index, toHex(ref.digest), toHex(actual), `peer ${peer}`)
  }
  return bytes
}
