import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { AbortOptions, BlobBackend } from '@shoal/interface'
import { chunkRefOf, decodeChunkRef } from '@shoal/rafs'
import { backendSource, blobDirectory, blobDirectorySource, planRanges } from '../src/index.js'
import { chunkSourceCompliance } from './chunk-source-compliance.js'
import { buildTestImage, testBytes } from './images.js'

chunkSourceCompliance('blobDirectorySource', {
  create: async ({ blobDir }) => {
    const source = blobDirectorySource({ path: blobDir })
    return { source, close: source.close }
  }
})

chunkSourceCompliance('backendSource over a blob directory backend', {
  create: async ({ blobDir }) => {
    const backend = blobDirectory({ path: blobDir })
    return { source: backendSource(backend, 'test backend'), close: backend.close.bind(backend) }
  }
})

/** Records every range read. */
function recording (inner: BlobBackend): BlobBackend & { reads: Array<[string, number, number]> } {
  const reads: Array<[string, number, number]> = []
  return {
    name: inner.name,
    reads,
    size: async (blobId: string, options?: AbortOptions) => await inner.size(blobId, options),
    read: async (blobId: string, offset: number, length: number, options?: AbortOptions) => {
      reads.push([blobId, offset, length])
      return await inner.read(blobId, offset, length, options)
    }
  }
}

test('backendSource reads a run of adjacent chunks with one range and splits it', async () => {
  const fixture = await buildTestImage({ '/f': testBytes(20 * 4096, 7) })
  const backend = blobDirectory({ path: fixture.blobDir })
  try {
    const rec = recording(backend)
    const chunks = fixture.node('/f').chunks!
    const blob = fixture.image.blobs[0]
    const refs = chunks.map(c => chunkRefOf(c, blob))
    const answers = await backendSource(rec).getChunks(refs)
    assert.equal(rec.reads.length, 1)
    const last = chunks.at(-1)!
    assert.deepEqual(rec.reads[0], [blob.blobId, chunks[0].compressedOffset, last.compressedOffset + last.compressedSize - chunks[0].compressedOffset])
    for (const [i, stored] of answers.entries()) decodeChunkRef(stored!, refs[i])

    // Two runs far apart (gap above maxGap) and a size cap that splits the first run.
    rec.reads.length = 0
    const picked = [...refs.slice(0, 4), ...refs.slice(15, 17)]
    const gapSource = backendSource(rec, 'gapped', { maxGap: 0, maxRangeBytes: 2 * Math.max(...picked.map(r => r.compressedSize)) })
    const again = await gapSource.getChunks(picked)
    assert.ok(rec.reads.length >= 3, `${rec.reads.length} reads`)
    for (const [i, stored] of again.entries()) decodeChunkRef(stored!, picked[i])
  } finally {
    await backend.close()
    await fixture.cleanup()
  }
})

test('planRanges: sorts by offset, merges within the gap, never across blobs', () => {
  const ref = (blobId: string, offset: number, size: number): any => ({ blobId, compressedOffset: offset, compressedSize: size })
  const ranges = planRanges([ref('b', 100, 10), ref('a', 0, 10), ref('a', 10, 5), ref('a', 40, 10), ref('b', 0, 10)], 25, 1000)
  assert.deepEqual(ranges.map(r => [r.blobId, r.offset, r.length, r.chunks.map(c => c.position)]), [
    ['a', 0, 50, [1, 2, 3]],
    ['b', 0, 10, [4]],
    ['b', 100, 10, [0]]
  ])
})
