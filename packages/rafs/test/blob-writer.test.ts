/**
 * BlobWriter round trips: what it writes, the readers parse back and decodeChunk restores.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { InvalidArgumentError, type Compressor, type Digester } from '@shoal/interface'
import {
  BlobWriter, readBlobToc, readBlobMeta, readBlobDigests, readTocEntry, decodeChunk, chunkDigest, sha256, toHex,
  BlobFeature, TOC_ENTRY, type BlobWriterResult
} from '../src/blob/index.js'
import type { RafsChunk } from '../src/model.js'

const CHUNK_SIZE = 64 * 1024

/** Chunks that exercise the writer: compressible, incompressible, tiny, full-size, odd-sized. */
function sampleChunks (): Uint8Array[] {
  const text = Buffer.from('the quick brown fox jumps over the lazy dog; '.repeat(2000)).subarray(0, CHUNK_SIZE)
  return [
    text,
    randomBytes(CHUNK_SIZE),
    Uint8Array.of(7),
    new Uint8Array(CHUNK_SIZE),
    randomBytes(5000),
    Buffer.from('a'.repeat(12345)),
    randomBytes(4096)
  ]
}

interface Written { file: Buffer, pieces: number, result: BlobWriterResult, chunks: RafsChunk[] }

function writeBlob (data: Uint8Array[], compressor: Compressor, digester: Digester, chunkInfoVersion: 1 | 2 = 1): Written {
  const pieces: Uint8Array[] = []
  const writer = new BlobWriter({ compressor, digester, chunkSize: CHUNK_SIZE, chunkInfoVersion, write: bytes => { pieces.push(bytes) } })
  const chunks = data.map(d => writer.addChunk(d))
  const result = writer.finish()
  return { file: Buffer.concat(pieces), pieces: pieces.length, result, chunks }
}

for (const compressor of ['none', 'lz4_block', 'zstd'] as const) {
  for (const digester of ['sha256', 'blake3'] as const) {
    for (const version of [1, 2] as const) {
      test(`BlobWriter ${compressor} × ${digester}, chunk info v${version}: readers give back every chunk`, () => {
        const data = sampleChunks()
        const { file, result, chunks } = writeBlob(data, compressor, digester, version)

        assert.equal(result.blobId, toHex(sha256(file)))
        assert.equal(result.fileSize, file.length)
        assert.equal(result.chunkCount, data.length)
        assert.equal(result.blob.blobId, result.blobId)
        assert.equal(result.features & BlobFeature.CHUNK_INFO_V2, version === 2 ? BlobFeature.CHUNK_INFO_V2 : 0)

        const toc = readBlobToc(file, { tocSize: result.toc.size, tocDigest: result.toc.digest })
        assert.equal(toc.offset, result.toc.offset)
        assert.deepEqual(toc.entries.map(e => e.name), ['image.blob', 'blob.meta', 'blob.meta.header', 'blob.digest'])
        for (const entry of toc.entries.filter(e => e.name !== TOC_ENTRY.blobData)) {
          assert.equal(readTocEntry(file, entry).length, entry.uncompressedSize, entry.name)
        }
        const blobData = toc.entries[0]
        assert.equal(blobData.compressedSize, result.compressedSize)
        assert.equal(blobData.uncompressedSize, result.uncompressedSize)
        assert.equal(toHex(blobData.digest), toHex(sha256(file.subarray(0, result.compressedSize + 512))))

        const meta = readBlobMeta(file)
        assert.deepEqual(meta.location, result.meta)
        assert.equal(meta.chunkInfoVersion, version)
        assert.equal(meta.dataSize, result.compressedSize)
        assert.equal(meta.header.features, result.features)
        assert.deepEqual(meta.chunks.map(c => [c.compressedOffset, c.compressedSize, c.uncompressedOffset, c.uncompressedSize, c.compressed]),
          chunks.map(c => [c.compressedOffset, c.compressedSize, c.uncompressedOffset, c.uncompressedSize, c.compressed]))

        const digests = readBlobDigests(file, { chunkCount: data.length })
        chunks.forEach((chunk, i) => {
          assert.equal(chunk.index, i)
          assert.equal(chunk.uncompressedOffset % 4096, 0)
          assert.equal(toHex(digests[i]), toHex(chunkDigest(data[i], digester)))
          assert.equal(toHex(chunk.digest), toHex(digests[i]))
          const stored = file.subarray(chunk.compressedOffset, chunk.compressedOffset + chunk.compressedSize)
          assert.equal(Buffer.compare(decodeChunk(stored, chunk, result.blob), data[i]), 0)
        })
        const last = chunks[chunks.length - 1]
        assert.equal(result.uncompressedSize, Math.ceil((last.uncompressedOffset + last.uncompressedSize) / 4096) * 4096)

        if (compressor === 'none') {
          // The blob is an EROFS device as it is: every chunk sits at its uncompressed offset.
          for (const chunk of chunks) {
            assert.equal(chunk.compressedOffset, chunk.uncompressedOffset)
            assert.equal(chunk.compressed, false)
          }
          assert.equal(result.compressedSize, result.uncompressedSize)
          assert.equal(result.meta.compressor, 'none')
        } else {
          assert.equal(chunks[0].compressed, true, 'text compresses')
          assert.equal(chunks[1].compressed, false, 'random bytes are stored as they are')
          assert.equal(chunks[1].compressedSize, CHUNK_SIZE)
          assert.equal(chunks[3].compressed, true, 'zeros compress')
          assert.ok(result.compressedSize < result.uncompressedSize / 2)
          // Compressed chunks are packed back to back, as nydus-image writes them.
          for (let i = 1; i < chunks.length; i++) {
            assert.equal(chunks[i].compressedOffset, chunks[i - 1].compressedOffset + chunks[i - 1].compressedSize)
          }
        }
      })
    }
  }
}

test('BlobWriter streams: many writes, and the caller may reuse its chunk buffer at once', () => {
  const buffer = new Uint8Array(8192)
  const expected: Uint8Array[] = []
  const pieces: Uint8Array[] = []
  const writer = new BlobWriter({ compressor: 'none', digester: 'sha256', chunkSize: 8192, write: bytes => { pieces.push(bytes) } })
  const chunks: RafsChunk[] = []
  for (let i = 0; i < 10; i++) {
    buffer.set(randomBytes(buffer.length))
    expected.push(buffer.slice())
    chunks.push(writer.addChunk(buffer))
  }
  buffer.fill(0xee)
  const result = writer.finish()
  assert.ok(pieces.length >= 10 + 5)
  const file = Buffer.concat(pieces)
  chunks.forEach((chunk, i) => {
    assert.equal(Buffer.compare(decodeChunk(file.subarray(chunk.compressedOffset, chunk.compressedOffset + chunk.compressedSize), chunk, result.blob), expected[i]), 0)
  })
})

test('BlobWriter uses a digest the caller already has', () => {
  const data = Buffer.from('x'.repeat(9000))
  const digest = chunkDigest(data, 'blake3')
  const { chunks, result, file } = (() => {
    const pieces: Uint8Array[] = []
    const writer = new BlobWriter({ compressor: 'zstd', digester: 'blake3', chunkSize: CHUNK_SIZE, write: b => { pieces.push(b) } })
    const chunks = [writer.addChunk(data, digest)]
    return { chunks, result: writer.finish(), file: Buffer.concat(pieces) }
  })()
  assert.equal(chunks[0].digest, digest)
  assert.equal(toHex(readBlobDigests(file)[0]), toHex(digest))
  assert.equal(result.chunkCount, 1)
})

test('BlobWriter refuses what a blob cannot hold', () => {
  assert.throws(() => new BlobWriter({ compressor: 'zstd', digester: 'sha256', chunkSize: 3000, write: () => {} }), InvalidArgumentError)
  assert.throws(() => new BlobWriter({ compressor: 'zstd', digester: 'sha256', chunkSize: 32 * 1024 * 1024, write: () => {} }), InvalidArgumentError)
  assert.throws(() => new BlobWriter({ compressor: 'gzip', digester: 'sha256', chunkSize: 4096, write: () => {} }), InvalidArgumentError)
  const writer = new BlobWriter({ compressor: 'zstd', digester: 'sha256', chunkSize: 4096, write: () => {} })
  assert.throws(() => writer.addChunk(new Uint8Array(0)), InvalidArgumentError)
  assert.throws(() => writer.addChunk(new Uint8Array(4097)), InvalidArgumentError)
  assert.throws(() => writer.addChunk(new Uint8Array(10), new Uint8Array(31)), InvalidArgumentError)
  assert.throws(() => writer.finish(), /at least one chunk/)
  const other = new BlobWriter({ compressor: 'zstd', digester: 'sha256', chunkSize: 4096, write: () => {} })
  other.addChunk(new Uint8Array(10))
  other.finish()
  assert.throws(() => other.addChunk(new Uint8Array(10)), InvalidArgumentError)
  assert.throws(() => other.finish(), InvalidArgumentError)
})

test('BlobWriter: the same chunks give the same blob id', () => {
  const data = sampleChunks()
  const a = writeBlob(data, 'zstd', 'sha256')
  const b = writeBlob(data, 'zstd', 'sha256')
  assert.equal(a.result.blobId, b.result.blobId)
  const c = writeBlob(data.slice(1), 'zstd', 'sha256')
  assert.notEqual(a.result.blobId, c.result.blobId)
})
