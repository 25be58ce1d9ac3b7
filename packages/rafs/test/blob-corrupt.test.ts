/**
 * Malformed blobs: every truncation and every single-bit flip ends in a named error or in
 * correct bytes, never in a crash, a hang, wrong bytes, or an allocation of a lie's size.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { resourceUsage } from 'node:process'
import { ChunkDigestMismatchError, type Compressor } from '@shoal/interface'
import {
  BlobWriter, readBlobToc, readBlobMeta, readBlobDigests, decodeChunk, rafsChunkOf, encodeTarHeader,
  BLOB_META_HEADER_SIZE, TAR_HEADER_SIZE, type BlobWriterResult
} from '../src/blob/index.js'
import { BlobFormatError, DecompressError, RafsFormatError } from '../src/errors.js'
import type { RafsChunk } from '../src/model.js'

const MiB = 1024 * 1024

interface Sample { file: Buffer, result: BlobWriterResult, chunks: RafsChunk[], data: Uint8Array[] }

function sample (compressor: Compressor, chunkInfoVersion: 1 | 2): Sample {
  const data = [
    Buffer.from('small text chunk, compressible '.repeat(100)).subarray(0, 3000),
    randomBytes(4096),
    Buffer.from('b'.repeat(4096)),
    randomBytes(700),
    Buffer.from('tail '.repeat(300))
  ]
  const pieces: Uint8Array[] = []
  const writer = new BlobWriter({ compressor, digester: 'sha256', chunkSize: 4096, chunkInfoVersion, write: b => { pieces.push(b) } })
  const chunks = data.map(d => writer.addChunk(d))
  const result = writer.finish()
  return { file: Buffer.concat(pieces), result, chunks, data }
}

/** Reads the blob the way a mount does, from its own metadata; returns the decoded chunks. */
function readEverything (file: Uint8Array, s: Sample): Uint8Array[] {
  const toc = readBlobToc(file)
  const meta = readBlobMeta(file, { toc })
  const digests = readBlobDigests(file, { toc, chunkCount: meta.chunks.length })
  return meta.chunks.map(info => {
    const chunk = rafsChunkOf(info, digests[info.index])
    return decodeChunk(file.subarray(chunk.compressedOffset, chunk.compressedOffset + chunk.compressedSize), chunk, s.result.blob)
  })
}

function isNamed (err: unknown): boolean {
  return err instanceof RafsFormatError || err instanceof ChunkDigestMismatchError
}

const CASES = [['zstd', 1], ['lz4_block', 2], ['none', 1]] as const

for (const [compressor, version] of CASES) {
  test(`${compressor} v${version}: every truncation of the blob is a named error`, () => {
    const s = sample(compressor, version)
    assert.equal(readEverything(s.file, s).length, s.data.length)
    for (let length = 0; length < s.file.length; length++) {
      const cut = s.file.subarray(0, length)
      assert.throws(() => readEverything(cut, s), isNamed, `truncated to ${length} bytes`)
    }
  })

  test(`${compressor} v${version}: every bit flip after the chunk data is detected or harmless`, () => {
    const s = sample(compressor, version)
    const file = Buffer.from(s.file)
    let detected = 0
    let harmless = 0
    // The sections whose every bit matters: chunk info, blob.meta header, chunk digests.
    const ciStart = s.result.meta.compressedOffset
    const headerEnd = ciStart + s.result.meta.compressedSize + BLOB_META_HEADER_SIZE
    const digestsStart = headerEnd + TAR_HEADER_SIZE
    const digestsEnd = digestsStart + 32 * s.chunks.length
    for (let at = s.result.compressedSize; at < file.length; at++) {
      const bit = 1 << (at % 8)
      file[at] ^= bit
      try {
        const chunks = readEverything(file, s)
        chunks.forEach((bytes, i) => assert.equal(Buffer.compare(bytes, s.data[i]), 0, `flip at ${at} gave wrong bytes for chunk ${i}`))
        harmless++
        const vital = (at >= ciStart && at < headerEnd) || (at >= digestsStart && at < digestsEnd)
        assert.ok(!vital, `flip at ${at} went unnoticed`)
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err
        assert.ok(isNamed(err), `flip at ${at}: ${String(err)}`)
        detected++
      } finally {
        file[at] ^= bit
      }
    }
    assert.ok(detected > harmless, `${detected} detected, ${harmless} harmless`)
  })

  test(`${compressor} v${version}: a bit flip inside a chunk fails its decode, or changes nothing`, () => {
    const s = sample(compressor, version)
    const file = Buffer.from(s.file)
    let detected = 0
    let harmless = 0
    s.chunks.forEach((chunk, i) => {
      for (let at = chunk.compressedOffset; at < chunk.compressedOffset + chunk.compressedSize; at++) {
        const bit = 1 << (at % 8)
        file[at] ^= bit
        try {
          const bytes = decodeChunk(file.subarray(chunk.compressedOffset, chunk.compressedOffset + chunk.compressedSize), chunk, s.result.blob)
          // Possible only where the format ignores the bit (an unused zstd header bit, an LZ4
          // match offset that lands on identical bytes); the digest guarantees the bytes.
          assert.equal(Buffer.compare(bytes, s.data[i]), 0, `flip at ${at} gave wrong bytes`)
          harmless++
        } catch (err) {
          if (err instanceof assert.AssertionError) throw err
          assert.ok(err instanceof DecompressError || err instanceof ChunkDigestMismatchError, `flip at ${at}: ${String(err)}`)
          detected++
        } finally {
          file[at] ^= bit
        }
      }
    })
    assert.ok(detected > 20 * harmless, `${detected} detected, ${harmless} harmless`)
  })
}

test('decodeChunk names the blob, the chunk and both digests', () => {
  const s = sample('zstd', 1)
  const chunk = s.chunks[2]
  const stored = s.file.subarray(chunk.compressedOffset, chunk.compressedOffset + chunk.compressedSize)
  const wrong = { ...chunk, digest: new Uint8Array(32) }
  assert.throws(() => decodeChunk(stored, wrong, s.result.blob), (err: Error) => {
    assert.ok(err instanceof ChunkDigestMismatchError)
    assert.equal(err.blobId, s.result.blobId)
    assert.equal(err.chunkIndex, 2)
    assert.equal(err.expected, '00'.repeat(32))
    assert.equal(err.actual, Buffer.from(chunk.digest).toString('hex'))
    return true
  })
  assert.throws(() => decodeChunk(stored.subarray(1), chunk, s.result.blob),
    new RegExp(`chunk 2 of blob ${s.result.blobId}: got ${stored.length - 1} stored bytes, expected ${stored.length}`))
})

/** The sample blob with its blob.meta header fields replaced. */
function withHeader (s: Sample, edit: (dv: DataView) => void): { file: Buffer, headerOffset: number } {
  const file = Buffer.from(s.file)
  const headerOffset = s.result.meta.compressedOffset + s.result.meta.compressedSize
  edit(new DataView(file.buffer, file.byteOffset + headerOffset, BLOB_META_HEADER_SIZE))
  return { file, headerOffset }
}

test('a blob.meta header that claims huge sizes errors without allocating them', () => {
  const s = sample('zstd', 1)
  const lies: Array<[string, (dv: DataView) => void, RegExp]> = [
    ['uncompressed size 2^40', dv => dv.setBigUint64(32, 1n << 40n, true), /chunk info array of 1099511627776 bytes, expected 5 × 16/],
    ['2^24 entries to match', dv => { dv.setUint32(12, 1 << 24, true); dv.setBigUint64(32, BigInt((1 << 24) * 16), true) }, /16777216 chunks cannot fit in \d+ bytes of chunk data/],
    ['2^32-1 entries', dv => dv.setUint32(12, 0xffffffff, true), /4294967295 chunks, expected 1\.\.16777216/],
    ['compressed size 2^50', dv => dv.setBigUint64(24, 1n << 50n, true), /does not end at the header/],
    ['offset 2^60', dv => dv.setBigUint64(16, 1n << 60n, true), /chunk info offset is 1152921504606846976, beyond any blob size/],
    ['unknown compressor', dv => dv.setUint32(8, 9, true), /unknown chunk info compressor 9/],
    ['bad magic', dv => dv.setUint32(0, 0x12345678, true), /magic 0x12345678\/0xb10bb10b, expected 0xb10bb10b/]
  ]
  const before = resourceUsage().maxRSS * 1024
  for (const [what, edit, message] of lies) {
    const { file, headerOffset } = withHeader(s, edit)
    assert.throws(() => readBlobMeta(file, { headerOffset }), (err: Error) => {
      assert.ok(err instanceof BlobFormatError, `${what}: ${err.name} ${err.message}`)
      assert.match(err.message, message, what)
      assert.match(err.message, new RegExp(`blob.meta header at offset ${headerOffset}`), what)
      return true
    })
    // Found through the ToC, the header fails its sha256 before any field is believed.
    assert.throws(() => readBlobMeta(file), /blob\.meta\.header at offset \d+: sha256 [0-9a-f]{64}, the ToC says/, what)
  }
  assert.ok(resourceUsage().maxRSS * 1024 - before < 64 * MiB)
})

test('a ToC whose tar header claims a huge size is refused', () => {
  const s = sample('zstd', 1)
  for (const size of [2 ** 33, 128 * 100000, 129, s.result.toc.size]) {
    const file = Buffer.from(s.file)
    file.set(encodeTarHeader('rafs.blob.toc', size), file.length - TAR_HEADER_SIZE)
    assert.throws(() => readBlobToc(file), BlobFormatError, `size ${size}`)
  }
  const renamed = Buffer.from(s.file)
  renamed.set(encodeTarHeader('image.boot', 512), renamed.length - TAR_HEADER_SIZE)
  assert.throws(() => readBlobToc(renamed), /names "image.boot", expected rafs.blob.toc: the blob has no ToC/)
  assert.throws(() => readBlobToc(s.file, { tocSize: 99 }), /the bootstrap says 99/)
  assert.throws(() => readBlobToc(s.file, { tocDigest: new Uint8Array(32) }), /sha256 [0-9a-f]{64}, the bootstrap says 0{64}/)
})

test('a location from the bootstrap that disagrees with the blob is refused', () => {
  const s = sample('zstd', 2)
  assert.equal(readBlobMeta(s.file, { location: s.result.meta }).chunks.length, 5)
  assert.throws(() => readBlobMeta(s.file, { location: { ...s.result.meta, uncompressedSize: 999 } }), /the bootstrap says/)
  assert.throws(() => readBlobMeta(s.file, { location: { ...s.result.meta, entrySize: 16 } }), /chunk info v2 entries of 24 bytes, the bootstrap says 16/)
  assert.throws(() => readBlobMeta(s.file, { location: { ...s.result.meta, compressedOffset: s.result.meta.compressedOffset + 1 } }), BlobFormatError)
})
