/**
 * The verification thread pool: the same answers as inline verification, buffers moved rather
 * than copied, and a lying chunk named as such.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { ChunkDigestMismatchError, type ChunkRef } from '@shoal/interface'
import { compressChunk, DecompressError } from '@shoal/rafs'
import { ChunkEncoding } from '../src/protocol.js'
import { INLINE_VERIFY_BELOW, VerifyPool } from '../src/verify-pool.js'

function chunkOf (size: number, seed: number): { bytes: Buffer, ref: ChunkRef, stored: Uint8Array } {
  const bytes = Buffer.alloc(size)
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed) % 251 < 200 ? 0x41 + (i % 7) : (i * seed) & 0xff
  const { bytes: stored, compressed } = compressChunk(bytes, 'zstd')
  const ref: ChunkRef = {
    blobId: 'a'.repeat(64), index: seed, compressedOffset: 0, compressedSize: stored.length, uncompressedOffset: 0,
    uncompressedSize: size, compressed, compressor: 'zstd', digester: 'sha256', digest: createHash('sha256').update(bytes).digest()
  }
  return { bytes, ref, stored }
}

/** A copy in a buffer of its own, as the chunk client hands over. */
function owned (bytes: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafeSlow(bytes.length)
  out.set(bytes)
  return out
}

describe('VerifyPool with a worker thread', () => {
  const pool = new VerifyPool(1)
  after(async () => { await pool.close() })

  it('returns verified uncompressed chunks, moved to the thread and back', async () => {
    const { bytes, ref } = chunkOf(1 << 20, 3)
    const sent = owned(bytes)
    const verified = await pool.verify({ ref, encoding: ChunkEncoding.UNCOMPRESSED, bytes: sent }, 'p')
    assert.equal(sent.byteLength, 0, 'the buffer was transferred, not copied')
    assert.deepEqual(Buffer.from(verified), bytes)
  })

  it('decodes stored (zstd) chunks on the thread', async () => {
    const { bytes, ref, stored } = chunkOf(512 * 1024, 5)
    assert.ok(ref.compressed && stored.length < bytes.length)
    const verified = await pool.verify({ ref, encoding: ChunkEncoding.STORED, bytes: owned(stored) }, 'p')
    assert.deepEqual(Buffer.from(verified), bytes)
  })

  it('names a corrupted chunk (digest) and a broken stored chunk (decompress)', async () => {
    const { bytes, ref, stored } = chunkOf(256 * 1024, 7)
    const bad = owned(bytes)
    bad[1000]! ^= 1
    await assert.rejects(pool.verify({ ref, encoding: ChunkEncoding.UNCOMPRESSED, bytes: bad }, 'liar'),
      (err: unknown) => err instanceof ChunkDigestMismatchError && err.chunkIndex === 7 && err.message.includes('liar'))
    const broken = owned(stored)
    broken.fill(0, 0, 16)
    await assert.rejects(pool.verify({ ref, encoding: ChunkEncoding.STORED, bytes: broken }, 'liar'), DecompressError)
  })

  it('verifies many chunks at once, each answer to its own request', async () => {
    const chunks = Array.from({ length: 12 }, (_, i) => chunkOf(INLINE_VERIFY_BELOW * 2 + i, 10 + i))
    const answers = await Promise.all(chunks.map(async c => await pool.verify({ ref: c.ref, encoding: ChunkEncoding.UNCOMPRESSED, bytes: owned(c.bytes) }, 'p')))
    answers.forEach((answer, i) => { assert.deepEqual(Buffer.from(answer), chunks[i]!.bytes) })
  })
})
