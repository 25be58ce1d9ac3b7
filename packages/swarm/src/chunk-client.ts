/**
 * The asking side of `/shoal/chunk/1.0.0`: one request per stream, answers read with bounded
 * memory. Nothing here trusts the peer: sizes are checked against what the caller expects
 * before any body is read, and every chunk is verified by the caller (SwarmChunkSource).
 */
import type { Stream } from '@libp2p/interface'
import type { AbortOptions, BlobId, ChunkRef } from '@shoal/interface'
import { PeerRefusedError, SwarmProtocolError } from './errors.js'
import {
  CHUNK_BODY_HEADER_SIZE, ChunkEncoding, encodeWantBitmap, encodeWantChunks, MAX_BITMAP_BITS, MAX_CHUNK_BYTES,
  MAX_ERROR_TEXT, MessageType
} from './protocol.js'
import { FrameReader, sendAll } from './stream-io.js'

export async function requestBitmap (stream: Stream, blobId: BlobId, peer: string, options?: AbortOptions): Promise<Uint8Array> {
  const reader = new FrameReader(stream, 64 * 1024, `peer ${peer}`)
  try {
    await sendAll(stream, [encodeWantBitmap(blobId)], options)
    await stream.close(options)
    const header = await reader.readHeader(type => type === MessageType.BITMAP ? 4 + MAX_BITMAP_BITS / 8 : type === MessageType.ERROR ? 2 + MAX_ERROR_TEXT : -1, options)
    if (header == null) throw new SwarmProtocolError(`peer ${peer}: stream ended before the bitmap of blob ${blobId}`)
    if (header.type === MessageType.ERROR) throw await readRefusal(reader, header.bodyLength, peer, options)
    const bitCount = await reader.readU32(options)
    if (header.bodyLength !== 4 + Math.ceil(bitCount / 8)) {
      throw new SwarmProtocolError(`peer ${peer}: bitmap of ${bitCount} bits in ${header.bodyLength - 4} bytes`)
    }
    const bits = await reader.readBytes(header.bodyLength - 4, options)
    return Uint8Array.from(bits)
  } finally {
    reader.release()
  }
}

export interface ReceivedChunk {
  ref: ChunkRef
  encoding: number
  /** The chunk's bytes in a buffer of their own (its whole ArrayBuffer): the receiver may keep or transfer it. */
  bytes: Uint8Array
}

/**
 * Asks for `refs` (all of one blob) and calls `onChunk` for each answer, in request order:
 * with the bytes, or with undefined for "don't have". `onChunk` may return a promise (the
 * next frame is not read before it settles). Throws on any protocol violation.
 */
export async function requestChunks (
  stream: Stream, refs: readonly ChunkRef[], peer: string,
  onChunk: (chunk: ReceivedChunk | undefined, position: number) => void | Promise<void>,
  options?: AbortOptions
): Promise<void> {
  const blobId = refs[0]!.blobId
  const reader = new FrameReader(stream, 8 * 1024 * 1024, `peer ${peer}`)
  try {
    await sendAll(stream, [encodeWantChunks(blobId, refs.map(ref => ref.index))], options)
    await stream.close(options)
    for (let position = 0; position < refs.length; position++) {
      const ref = refs[position]!
      const header = await reader.readHeader(type => {
        switch (type) {
          case MessageType.CHUNK: return CHUNK_BODY_HEADER_SIZE + Math.min(MAX_CHUNK_BYTES, Math.max(ref.uncompressedSize, ref.compressedSize))
          case MessageType.NO_CHUNK: return 4
          case MessageType.ERROR: return 2 + MAX_ERROR_TEXT
          default: return -1
        }
      }, options)
      if (header == null) {
        throw new SwarmProtocolError(`peer ${peer}: stream ended after ${position} of ${refs.length} chunks of blob ${blobId}`)
      }
      if (header.type === MessageType.ERROR) throw await readRefusal(reader, header.bodyLength, peer, options)
      if (header.type === MessageType.NO_CHUNK) {
        if (header.bodyLength !== 4) throw new SwarmProtocolError(`peer ${peer}: NO_CHUNK body of ${header.bodyLength} bytes`)
        const index = await reader.readU32(options)
        if (index !== ref.index) throw new SwarmProtocolError(`peer ${peer}: NO_CHUNK for chunk ${index} of blob ${blobId}, expected chunk ${ref.index}`)
        await onChunk(undefined, position)
        continue
      }
      if (header.bodyLength < CHUNK_BODY_HEADER_SIZE) throw new SwarmProtocolError(`peer ${peer}: CHUNK body of ${header.bodyLength} bytes`)
      const index = await reader.readU32(options)
      const encoding = await reader.readU8(options)
      const length = header.bodyLength - CHUNK_BODY_HEADER_SIZE
      if (index !== ref.index) {
        throw new SwarmProtocolError(`peer ${peer}: sent chunk ${index} of blob ${blobId} where chunk ${ref.index} was due`)
      }
      const expected = encoding === ChunkEncoding.UNCOMPRESSED ? ref.uncompressedSize : encoding === ChunkEncoding.STORED ? ref.compressedSize : -1
      if (expected < 0) throw new SwarmProtocolError(`peer ${peer}: chunk ${index} of blob ${blobId} in unknown encoding ${encoding}`)
      if (length !== expected) {
        throw new SwarmProtocolError(`peer ${peer}: chunk ${index} of blob ${blobId} has ${length} bytes, expected ${expected}`)
      }
      const bytes = await reader.readOwnedBytes(length, options)
      await onChunk({ ref, encoding, bytes }, position)
    }
  } finally {
    reader.release()
  }
}

async function readRefusal (reader: FrameReader, bodyLength: number, peer: string, options?: AbortOptions): Promise<Error> {
  if (bodyLength < 2) return new SwarmProtocolError(`peer ${peer}: ERROR body of ${bodyLength} bytes`)
  const code = await reader.readU16(options)
  const text = Buffer.from(await reader.readBytes(bodyLength - 2, options)).toString('utf8')
  return new PeerRefusedError(peer, code, text)
}
