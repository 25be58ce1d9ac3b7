/** Little-endian field access with every offset checked against the buffer. */
import { BlobFormatError } from '../errors.js'

export function view (bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** A u64 field as a JavaScript number; larger than 2^53 means a corrupt blob. */
export function readU64 (dv: DataView, at: number, what: string): number {
  const value = dv.getBigUint64(at, true)
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new BlobFormatError(`${what} is ${value}, beyond any blob size`)
  }
  return Number(value)
}

export function writeU64 (dv: DataView, at: number, value: number): void {
  dv.setBigUint64(at, BigInt(value), true)
}

/**
 * The bytes at file offsets [offset, offset + size) from a window of the blob that starts at
 * file offset `baseOffset`; BlobFormatError naming `what` when the range is not inside it.
 */
export function sliceWindow (bytes: Uint8Array, baseOffset: number, offset: number, size: number, what: string): Uint8Array {
  const start = offset - baseOffset
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || size < 0 || start < 0 || start + size > bytes.length) {
    throw new BlobFormatError(`${what} at offset ${offset} size ${size} is outside the ${bytes.length} bytes given at offset ${baseOffset}`)
  }
  return bytes.subarray(start, start + size)
}
