/**
 * The chunk protocol `/shoal/chunk/1.0.0` (docs/protocol.md): frames are a u32 big-endian
 * length, then a one-byte type, then the body; the length counts the type and the body.
 */
import { InvalidArgumentError, type BlobId } from '@shoal/interface'

export const CHUNK_PROTOCOL = '/shoal/chunk/1.0.0'
export const DHT_PROTOCOL = '/shoal/kad/1.0.0'

export const FRAME_HEADER_SIZE = 5
export const BLOB_ID_SIZE = 32

export const MessageType = {
  /** client → server: blobId[32] */
  WANT_BITMAP: 0x01,
  /** client → server: blobId[32], u16 count, count × u32 index */
  WANT_CHUNKS: 0x02,
  /** server → client: u32 bit count, ceil(bits / 8) bytes, least significant bit first */
  BITMAP: 0x11,
  /** server → client: u32 index, u8 encoding, the chunk bytes */
  CHUNK: 0x12,
  /** server → client: u32 index */
  NO_CHUNK: 0x13,
  /** server → client: u16 code, UTF-8 text */
  ERROR: 0x1f
} as const

export const ChunkEncoding = {
  /** The uncompressed chunk bytes. */
  UNCOMPRESSED: 0,
  /** The chunk as stored in its blob (compressed with the blob's compressor unless marked raw). */
  STORED: 1
} as const

export const ErrorCode = {
  BAD_REQUEST: 1,
  BUSY: 2,
  INTERNAL: 3
} as const

/** Largest chunk Nydus allows (16 MiB): no CHUNK frame may be longer than this plus its header. */
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024
export const CHUNK_BODY_HEADER_SIZE = 5
export const MAX_CHUNK_FRAME = 1 + CHUNK_BODY_HEADER_SIZE + MAX_CHUNK_BYTES
/** A blob has at most 2^24 chunks (Nydus's limit), so a bitmap is at most 2 MiB. */
export const MAX_BITMAP_BITS = 1 << 24
export const MAX_BITMAP_FRAME = 1 + 4 + MAX_BITMAP_BITS / 8
export const MAX_CHUNKS_PER_REQUEST = 1024
export const MAX_REQUEST_FRAME = 1 + BLOB_ID_SIZE + 2 + 4 * MAX_CHUNKS_PER_REQUEST
export const MAX_ERROR_TEXT = 1024

const HEX64 = /^[0-9a-f]{64}$/

export function blobIdBytes (blobId: BlobId): Uint8Array {
  if (!HEX64.test(blobId)) {
    throw new InvalidArgumentError(`blob id must be 64 lower-case hex digits, got ${JSON.stringify(blobId.slice(0, 80))}`)
  }
  return Buffer.from(blobId, 'hex')
}

export function blobIdFromBytes (bytes: Uint8Array): BlobId {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

function frame (type: number, bodyLength: number): { bytes: Buffer, view: DataView } {
  const bytes = Buffer.allocUnsafe(FRAME_HEADER_SIZE + bodyLength)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  view.setUint32(0, 1 + bodyLength)
  view.setUint8(4, type)
  return { bytes, view }
}

export function encodeWantBitmap (blobId: BlobId): Uint8Array {
  const { bytes } = frame(MessageType.WANT_BITMAP, BLOB_ID_SIZE)
  bytes.set(blobIdBytes(blobId), FRAME_HEADER_SIZE)
  return bytes
}

export function encodeWantChunks (blobId: BlobId, indexes: readonly number[]): Uint8Array {
  if (indexes.length === 0 || indexes.length > MAX_CHUNKS_PER_REQUEST) {
    throw new InvalidArgumentError(`a request names 1 to ${MAX_CHUNKS_PER_REQUEST} chunks, got ${indexes.length}`)
  }
  const { bytes, view } = frame(MessageType.WANT_CHUNKS, BLOB_ID_SIZE + 2 + 4 * indexes.length)
  bytes.set(blobIdBytes(blobId), FRAME_HEADER_SIZE)
  let at = FRAME_HEADER_SIZE + BLOB_ID_SIZE
  view.setUint16(at, indexes.length)
  at += 2
  for (const index of indexes) {
    if (!Number.isInteger(index) || index < 0 || index >= MAX_BITMAP_BITS) {
      throw new InvalidArgumentError(`chunk index ${index} is not in [0, ${MAX_BITMAP_BITS})`)
    }
    view.setUint32(at, index)
    at += 4
  }
  return bytes
}

export function encodeBitmap (bits: Uint8Array | undefined): Uint8Array {
  const length = Math.min(bits?.length ?? 0, MAX_BITMAP_BITS / 8)
  const { bytes, view } = frame(MessageType.BITMAP, 4 + length)
  view.setUint32(FRAME_HEADER_SIZE, length * 8)
  if (bits != null && length > 0) bytes.set(bits.subarray(0, length), FRAME_HEADER_SIZE + 4)
  return bytes
}

/** Only the header of a CHUNK frame: the data is sent after it as is, without a copy. */
export function encodeChunkHeader (index: number, encoding: number, dataLength: number): Uint8Array {
  const bytes = Buffer.allocUnsafe(FRAME_HEADER_SIZE + CHUNK_BODY_HEADER_SIZE)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  view.setUint32(0, 1 + CHUNK_BODY_HEADER_SIZE + dataLength)
  view.setUint8(4, MessageType.CHUNK)
  view.setUint32(FRAME_HEADER_SIZE, index)
  view.setUint8(FRAME_HEADER_SIZE + 4, encoding)
  return bytes
}

export function encodeNoChunk (index: number): Uint8Array {
  const { bytes, view } = frame(MessageType.NO_CHUNK, 4)
  view.setUint32(FRAME_HEADER_SIZE, index)
  return bytes
}

export function encodeError (code: number, text: string): Uint8Array {
  const message = Buffer.from(text.slice(0, MAX_ERROR_TEXT / 4), 'utf8').subarray(0, MAX_ERROR_TEXT)
  const { bytes, view } = frame(MessageType.ERROR, 2 + message.length)
  view.setUint16(FRAME_HEADER_SIZE, code)
  bytes.set(message, FRAME_HEADER_SIZE + 2)
  return bytes
}

/** Whether bit `index` is set in a bitmap as the BITMAP frame carries it. */
export function bitmapHas (bits: Uint8Array, index: number): boolean {
  const byte = index >>> 3
  return byte < bits.length && (bits[byte]! & (1 << (index & 7))) !== 0
}
