/** Deterministic test chunks: any reader can tell right bytes from wrong without keeping copies. */
import { createHash } from 'node:crypto'
import type { CachedChunkKey } from '../src/index.js'

export function blobIdOf (name: string): string {
  return createHash('sha256').update(name).digest('hex')
}

/** Deterministic bytes for (blob, index), so any later reader can tell right from wrong. */
export function chunkBytes (blobId: string, index: number, size: number): Uint8Array {
  const out = new Uint8Array(size)
  const words = new Uint32Array(out.buffer, 0, size >>> 2)
  // xorshift32 seeded from the digest of the name: fast enough to make megabytes per test.
  let x = createHash('sha256').update(`${blobId}/${index}`).digest().readUInt32LE(0) | 1
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    words[i] = x
  }
  for (let i = words.length * 4; i < size; i++) out[i] = (index + i) & 0xff
  return out
}

export function keyOf (blobId: string, index: number, size: number, stride = size): CachedChunkKey {
  return { blobId, index, uncompressedOffset: index * stride, uncompressedSize: size }
}

/** Chunks of the crash test: sizes vary with (blob, index), each inside its 64 KiB slot. */
export function crashChunkKey (blobId: string, index: number): CachedChunkKey {
  const seed = createHash('sha256').update(`${blobId}#${index}`).digest()
  return { blobId, index, uncompressedOffset: index * 65_536, uncompressedSize: 1 + seed.readUInt16LE(0) }
}

export function crashChunkBytes (blobId: string, index: number): Uint8Array {
  return chunkBytes(blobId, index, crashChunkKey(blobId, index).uncompressedSize)
}
