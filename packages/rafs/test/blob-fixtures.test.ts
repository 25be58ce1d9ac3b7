/**
 * The blob layer against blobs written by the real nydus-image (see the fixtures' README).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  readBlobToc, readBlobMeta, readBlobDigests, readTocEntry, findTocEntry, decodeChunk, rafsChunkOf, decompress,
  chunkDigest, sha256, toHex, encodeTarHeader, encodeBlobMetaHeader, encodeChunkInfo, BlobFeature, TOC_ENTRY
} from '../src/blob/index.js'
import type { RafsBlob } from '../src/model.js'
import { nydusFixtures } from '@shoal/interface/test-fixtures'

const FIXTURES = nydusFixtures()
const V6_BLOB = join(FIXTURES, 'blobs', 'be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef')
const RAW_BLOB = join(FIXTURES, 'repeatable', 'blobs', '7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00')
const LZ4_BLOB = join(FIXTURES, 'repeatable', 'blobs', 'd7b86b1e74e316fe945741d1a9fa1b271459fe41481e304977659e0c6ecf56ac')

test('v6 fixture blob: the ToC names blob.meta, its header and the chunk digests', () => {
  const blob = readFileSync(V6_BLOB)
  const toc = readBlobToc(blob)
  // The v6 bootstrap's blob table says: ToC of 0x400 bytes at the end of a 0x38da-byte blob.
  assert.equal(toc.size, 0x400)
  assert.equal(toc.offset, blob.length - 0x400)
  assert.deepEqual(toc.entries.map(e => [e.name, e.compressor, e.compressedOffset, e.compressedSize, e.uncompressedSize]), [
    ['image.blob', 'none', 0x1e7a, 0x1e7a, 0x9000],
    ['blob.meta', 'none', 0x207a, 0x20, 0x20],
    ['blob.meta.header', 'none', 0x209a, 0x1000, 0x1000],
    ['blob.digest', 'none', 0x329a, 0x40, 0x40]
  ])
  // Every entry but image.blob holds content whose sha256 is the entry's digest.
  for (const name of [TOC_ENTRY.blobMeta, TOC_ENTRY.blobMetaHeader, TOC_ENTRY.blobDigest]) {
    const entry = findTocEntry(toc, name)
    assert.ok(entry !== undefined)
    assert.equal(readTocEntry(blob, entry).length, entry.uncompressedSize)
  }
  // image.blob's digest covers the chunk data and the tar header after it.
  const data = findTocEntry(toc, TOC_ENTRY.blobData)
  assert.equal(toHex(sha256(blob.subarray(0, 0x1e7a + 512))), toHex(data!.digest))
  // The ToC digest a v6 blob table stores covers the entries and their tar header.
  assert.equal(toHex(toc.digest), toHex(sha256(blob.subarray(blob.length - 0x400))))
})

test('v6 fixture blob: blob.meta covers the chunk data and every chunk decodes to its stated size and digest', () => {
  const blob = readFileSync(V6_BLOB)
  const meta = readBlobMeta(blob)
  assert.equal(meta.header.features, BlobFeature.ALIGNED | BlobFeature.INLINED_CHUNK_DIGEST | BlobFeature.HAS_TAR_HEADER |
    BlobFeature.HAS_TOC | BlobFeature.CAP_TAR_TOC)
  assert.equal(meta.chunkInfoVersion, 1)
  assert.equal(meta.headerOffset, 0x209a)
  assert.equal(meta.dataSize, 0x1e7a)
  assert.deepEqual(meta.location, {
    compressedOffset: 0x207a, compressedSize: 32, uncompressedSize: 32, compressor: 'none', entrySize: 16, tocOffset: blob.length - 0x400, tocSize: 0x400, tocDigest: sha256(blob.subarray(blob.length - 0x400))
  })
  assert.deepEqual(meta.chunks.map(c => [c.compressedOffset, c.compressedSize, c.uncompressedOffset, c.uncompressedSize, c.compressed]), [
    [0, 4828, 0, 16931, true],
    [4828, 2974, 20480, 13400, true]
  ])
  // The chunks tile the chunk data region exactly.
  const last = meta.chunks[meta.chunks.length - 1]
  assert.equal(last.compressedOffset + last.compressedSize, meta.dataSize)

  const digests = readBlobDigests(blob, { chunkCount: meta.chunks.length })
  const rafsBlob: RafsBlob = {
    index: 0, blobId: 'be7d77ee', compressor: 'zstd', digester: 'blake3', chunkSize: 0x100000, chunkCount: 2,
    compressedSize: meta.dataSize, uncompressedSize: 0x9000, features: meta.header.features, meta: meta.location
  }
  let text = ''
  for (const info of meta.chunks) {
    const chunk = rafsChunkOf(info, digests[info.index])
    const bytes = decodeChunk(blob.subarray(chunk.compressedOffset, chunk.compressedOffset + chunk.compressedSize), chunk, rafsBlob)
    assert.equal(bytes.length, info.uncompressedSize)
    text += Buffer.from(bytes).toString('utf8')
  }
  assert.match(text, /^\/\/ Copyright \(C\) 2020 Alibaba Cloud\. All rights reserved\./)
})

test('v6 fixture blob: what BlobWriter encodes is byte for byte what nydus-image wrote', () => {
  const blob = readFileSync(V6_BLOB)
  const meta = readBlobMeta(blob)
  assert.deepEqual(encodeTarHeader('image.blob', 0x1e7a), new Uint8Array(blob.subarray(0x1e7a, 0x1e7a + 512)))
  assert.deepEqual(encodeTarHeader('rafs.blob.toc', 0x200), new Uint8Array(blob.subarray(blob.length - 512)))
  assert.deepEqual(encodeBlobMetaHeader(meta.header), new Uint8Array(blob.subarray(0x209a, 0x309a)))
  const infos = new Uint8Array(32)
  for (const info of meta.chunks) encodeChunkInfo(infos, info.index * 16, info, 1)
  assert.deepEqual(infos, new Uint8Array(blob.subarray(0x207a, 0x209a)))
})

test('v6 fixture blob: read through windows, as from registry Range requests', () => {
  const blob = readFileSync(V6_BLOB)
  const tailOffset = blob.length - 4096
  const toc = readBlobToc(blob.subarray(tailOffset), { baseOffset: tailOffset, tocSize: 0x400 })
  const header = findTocEntry(toc, TOC_ENTRY.blobMetaHeader)!
  const blobMeta = findTocEntry(toc, TOC_ENTRY.blobMeta)!
  const start = blobMeta.compressedOffset
  const window = blob.subarray(start, header.compressedOffset + header.compressedSize)
  const meta = readBlobMeta(window, { baseOffset: start, headerOffset: header.compressedOffset })
  assert.equal(meta.chunks.length, 2)
  // A location as the bootstrap gives it finds the same header.
  const viaLocation = readBlobMeta(window, { baseOffset: start, location: { ...meta.location } })
  assert.deepEqual(viaLocation.chunks, meta.chunks)
})

// The sizes of the 23 chunks of the v5 fixture blobs, in blob order, from the chunk table of
// repeatable/sha256-nocompress-repeatable (chunk size 1 MiB; they tile the 3,508,766-byte blob).
const V5_CHUNK_SIZES = [944, 1497, 203, 90, 3, 1174, 1048576, 367104, 307, 127, 340, 243, 441, 1048576, 7, 1016839,
  2055, 1024, 4096, 5000, 1024, 4096, 5000]

test('v5 fixture blobs carry no blob.meta and no ToC', () => {
  for (const path of [RAW_BLOB, LZ4_BLOB]) {
    const blob = readFileSync(path)
    assert.throws(() => readBlobToc(blob), { name: 'BlobFormatError' })
    assert.throws(() => readBlobMeta(blob), { name: 'BlobFormatError' })
    assert.equal(toHex(sha256(blob)), path.slice(-64), 'the file name is the blob id')
  }
})

test('v5 fixture blobs: chunk digests are sha256 and blake3 of the uncompressed bytes, as the bootstraps state', () => {
  const raw = readFileSync(RAW_BLOB)
  assert.equal(V5_CHUNK_SIZES.reduce((a, b) => a + b, 0), raw.length)
  const first = raw.subarray(0, 944)
  // Digests of chunk 0 in the sha256 and in the blake3 bootstrap (both point at this blob).
  assert.equal(toHex(chunkDigest(first, 'sha256')), 'fff49cf6925f933ae4e834b5d88d25ed06d40f3d70ff9b1916070596bf5649eb')
  assert.equal(toHex(chunkDigest(first, 'blake3')), '1d6c6721690cb5399df84c95901afda43192092f6ebecc8c6a10058b460dceeb')
  const second = raw.subarray(944, 944 + 1497)
  assert.equal(toHex(chunkDigest(second, 'sha256')), 'af2f74c517aac1d26793a6ed05ff45b299a037e1a9eefeae5eacda133e70a825')
  assert.equal(toHex(chunkDigest(second, 'blake3')), 'b98feba6955703140aa56755e645fec861024879b8d39fc4eaf5c78ed3b28fd5')
})

/**
 * Length of the raw LZ4 block at `buf[start...]` that yields `outputSize` bytes, found by walking
 * its sequences (a raw block has no length of its own). Test helper only.
 */
function lz4BlockLength (buf: Uint8Array, start: number, outputSize: number): number {
  let p = start
  let produced = 0
  for (let guard = 0; guard < outputSize + 1; guard++) {
    const token = buf[p++]
    let literals = token >> 4
    if (literals === 15) { let b; do { b = buf[p++]; literals += b } while (b === 255 && p < buf.length) }
    p += literals
    produced += literals
    if (produced >= outputSize) return p - start
    p += 2
    let match = token & 15
    if (match === 15) { let b; do { b = buf[p++]; match += b } while (b === 255 && p < buf.length) }
    produced += match + 4
  }
  throw new Error(`no LZ4 block end at ${start}`)
}

test('v5 lz4_block fixture blob: every chunk is a raw LZ4 block (or stored as is) of the uncompressed blob', () => {
  const raw = readFileSync(RAW_BLOB)
  const lz4 = readFileSync(LZ4_BLOB)
  let stored = 0
  let uncompressed = 0
  let compressedChunks = 0
  for (const size of V5_CHUNK_SIZES) {
    const expected = raw.subarray(uncompressed, uncompressed + size)
    // nydus-image keeps a chunk as is when LZ4 does not make it smaller.
    if (Buffer.compare(lz4.subarray(stored, stored + size), expected) === 0) {
      stored += size
    } else {
      const length = lz4BlockLength(lz4, stored, size)
      const bytes = decompress(lz4.subarray(stored, stored + length), 'lz4_block', size)
      assert.equal(Buffer.compare(bytes, expected), 0, `chunk at ${uncompressed}`)
      stored += length
      compressedChunks++
    }
    uncompressed += size
  }
  assert.equal(stored, lz4.length, 'the chunks tile the whole lz4 blob')
  assert.equal(compressedChunks, 19)
})
