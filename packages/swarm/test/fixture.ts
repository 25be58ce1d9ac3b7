/**
 * Deterministic test blobs and an in-memory ChunkStore, shared by the test node process and
 * the tests (both derive the same chunks from the same seed).
 */
import { createHash } from 'node:crypto'
import type { AbortOptions, BlobId, ChunkRef, ChunkStore } from '@shoal/interface'

export interface TestBlob {
  blobId: BlobId
  chunks: Uint8Array[]
  refs: ChunkRef[]
}

export function makeBlob (seed: string, count: number, chunkSize: number): TestBlob {
  const chunks: Uint8Array[] = []
  for (let i = 0; i < count; i++) {
    const bytes = Buffer.allocUnsafe(chunkSize - (i % 3) * 1000)
    // sha256 counter mode: fast enough, incompressible, different for every chunk.
    let at = 0
    for (let block = 0; at < bytes.length; block++) {
      const digest = createHash('sha256').update(`${seed}/${i}/${block}`).digest()
      at += digest.copy(bytes, at)
      if (block === 0) digest.copy(bytes, bytes.length - 32)
    }
    chunks.push(bytes)
  }
  const blobId = createHash('sha256').update(`blob ${seed} ${count} ${chunkSize}`).digest('hex')
  let uncompressedOffset = 0
  const refs = chunks.map((bytes, index): ChunkRef => {
    const ref: ChunkRef = {
      blobId,
      index,
      // Stored sizes as if zstd had shrunk them: the swarm moves uncompressed bytes, so these
      // only have to be there, as they are for a real blob.
      compressedOffset: index * chunkSize,
      compressedSize: Math.ceil(bytes.length / 2),
      uncompressedOffset,
      uncompressedSize: bytes.length,
      compressed: true,
      compressor: 'zstd',
      digester: 'sha256',
      digest: createHash('sha256').update(bytes).digest()
    }
    uncompressedOffset += bytes.length
    return ref
  })
  return { blobId, chunks, refs }
}

export class MemoryChunkStore implements ChunkStore {
  private readonly blobs = new Map<BlobId, Map<number, Uint8Array>>()

  put (blobId: BlobId, index: number, bytes: Uint8Array): void {
    let blob = this.blobs.get(blobId)
    if (blob == null) {
      blob = new Map()
      this.blobs.set(blobId, blob)
    }
    blob.set(index, bytes)
  }

  delete (blobId: BlobId): void {
    this.blobs.delete(blobId)
  }

  async has (blobId: BlobId, index: number, _options?: AbortOptions): Promise<boolean> {
    return this.blobs.get(blobId)?.has(index) === true
  }

  async bitmap (blobId: BlobId, _options?: AbortOptions): Promise<Uint8Array | undefined> {
    const blob = this.blobs.get(blobId)
    if (blob == null || blob.size === 0) return undefined
    const bits = new Uint8Array(Math.ceil((Math.max(...blob.keys()) + 1) / 8))
    for (const index of blob.keys()) bits[index >> 3]! |= 1 << (index & 7)
    return bits
  }

  async getUncompressed (blobId: BlobId, index: number, _options?: AbortOptions): Promise<Uint8Array | undefined> {
    return this.blobs.get(blobId)?.get(index)
  }
}
