/**
 * Compressors and digests: round trips, exact sizes, and decompression bombs that must fail
 * without allocating what they claim.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { resourceUsage } from 'node:process'
import zlib from 'node:zlib'
import { once } from 'node:events'
import {
  compress, compressChunk, decompress, chunkDigest, toHex, compressorCode, compressorFromCode, digesterCode, digesterFromCode
} from '../src/blob/index.js'
import { DecompressError, RafsUnsupportedError } from '../src/errors.js'

const MiB = 1024 * 1024

/** Peak resident memory so far, in bytes. */
function peakRss (): number {
  return resourceUsage().maxRSS * 1024
}

/**
 * A zstd frame of `blocks` RLE blocks of 128 KiB zeros each: 4 bytes of input per 128 KiB of output.
 * Built by hand from RFC 8878 so that making a 1 GiB bomb costs nothing.
 */
function zstdRleBomb (blocks: number): Uint8Array {
  const out = new Uint8Array(4 + 2 + blocks * 4)
  out.set([0x28, 0xb5, 0x2f, 0xfd], 0) // magic
  out[4] = 0x00 // frame header descriptor: no content size, no checksum, not single-segment
  out[5] = 7 << 3 // window descriptor: 2^(10+7) = 128 KiB
  const blockSize = 128 * 1024
  for (let i = 0; i < blocks; i++) {
    const last = i === blocks - 1 ? 1 : 0
    const header = last | (1 << 1) | (blockSize << 3) // RLE block of blockSize copies
    const at = 6 + i * 4
    out[at] = header & 0xff
    out[at + 1] = (header >> 8) & 0xff
    out[at + 2] = (header >> 16) & 0xff
    out[at + 3] = 0 // the repeated byte
  }
  return out
}

async function gzipOfZeros (total: number): Promise<Buffer> {
  const gzip = zlib.createGzip({ level: 9 })
  const parts: Buffer[] = []
  gzip.on('data', (b: Buffer) => parts.push(b))
  const zeros = Buffer.alloc(MiB)
  for (let written = 0; written < total; written += MiB) {
    if (!gzip.write(zeros)) await once(gzip, 'drain')
  }
  gzip.end()
  await once(gzip, 'end')
  return Buffer.concat(parts)
}

// These run first, while the process's peak memory is still low.
test('a zstd bomb claiming 1 GiB fails at the expected size without allocating it', () => {
  const small = zstdRleBomb(8)
  assert.equal(Buffer.compare(decompress(small, 'zstd', MiB), Buffer.alloc(MiB)), 0, 'the hand-made frame is valid zstd')
  const bomb = zstdRleBomb(8192)
  const before = peakRss()
  assert.throws(() => decompress(bomb, 'zstd', 4096), (err: Error) => {
    assert.ok(err instanceof DecompressError)
    assert.match(err.message, /zstd: 32774 compressed bytes decompress to more than 4096 bytes/)
    return true
  })
  assert.throws(() => decompress(bomb, 'zstd', 16 * MiB), DecompressError)
  assert.ok(peakRss() - before < 64 * MiB, `peak memory grew by ${peakRss() - before} bytes`)
})

test('a gzip bomb of 256 MiB fails at the expected size without allocating it', async () => {
  const bomb = await gzipOfZeros(256 * MiB)
  const before = peakRss()
  assert.throws(() => decompress(bomb, 'gzip', 4096), /gzip: \d+ compressed bytes decompress to more than 4096 bytes/)
  assert.ok(peakRss() - before < 64 * MiB, `peak memory grew by ${peakRss() - before} bytes`)
})

test('lz4_block refuses sizes its input cannot produce, before allocating them', () => {
  const packed = compress(new Uint8Array(64 * 1024), 'lz4_block')
  const before = peakRss()
  assert.throws(() => decompress(packed, 'lz4_block', 1024 * MiB), /lz4_block: \d+ compressed bytes cannot hold 1073741824 bytes/)
  assert.ok(peakRss() - before < 64 * MiB)
  assert.throws(() => decompress(packed, 'lz4_block', 4096), (err: Error) => err instanceof DecompressError && /lz4_block/.test(err.message))
})

for (const compressor of ['none', 'lz4_block', 'zstd'] as const) {
  test(`${compressor}: round trips and insists on the exact size`, () => {
    for (const data of [Uint8Array.of(1), Buffer.from('hello '.repeat(1000)), randomBytes(70000), new Uint8Array(MiB)]) {
      const packed = compress(data, compressor)
      assert.equal(Buffer.compare(decompress(packed, compressor, data.length), data), 0)
      for (const wrong of [data.length - 1, data.length + 1]) {
        assert.throws(() => decompress(packed, compressor, wrong), (err: Error) => {
          assert.ok(err instanceof DecompressError, `${err.name}: ${err.message}`)
          assert.ok(err.message.startsWith(`${compressor}: `), err.message)
          assert.ok(err.message.includes(String(wrong)), err.message)
          return true
        })
      }
    }
  })
}

test('lz4_block is a raw block: no size prefix, no frame', () => {
  const data = Buffer.from('abcabcabcabcabcabcabcabcabcabcabc')
  const packed = compress(data, 'lz4_block')
  // First byte is a sequence token (literals in the high nibble), not a little-endian length.
  assert.notEqual(packed[0] | (packed[1] << 8) | (packed[2] << 16) | (packed[3] << 24), data.length)
  assert.equal(packed[0] >> 4, 3, 'three literals "abc", then a match')
  assert.equal(Buffer.from(packed.subarray(1, 4)).toString(), 'abc')
})

test('gzip decompresses; compressing with gzip is not supported', () => {
  const data = Buffer.from('gzip chunk '.repeat(500))
  assert.equal(Buffer.compare(decompress(zlib.gzipSync(data), 'gzip', data.length), data), 0)
  assert.throws(() => compress(data, 'gzip'), RafsUnsupportedError)
})

test('garbage never decompresses and never crashes', () => {
  for (let i = 0; i < 200; i++) {
    const junk = randomBytes(1 + (i * 37) % 3000)
    for (const compressor of ['lz4_block', 'zstd', 'gzip'] as const) {
      assert.throws(() => decompress(junk, compressor, 4096), DecompressError)
    }
  }
})

test('compressChunk keeps a chunk as is when compression does not make it smaller', () => {
  const random = randomBytes(4096)
  for (const compressor of ['lz4_block', 'zstd'] as const) {
    const kept = compressChunk(random, compressor)
    assert.equal(kept.compressed, false)
    assert.equal(kept.bytes, random)
    const text = compressChunk(Buffer.from('z'.repeat(4096)), compressor)
    assert.equal(text.compressed, true)
    assert.ok(text.bytes.length < 100)
  }
  assert.deepEqual(compressChunk(Buffer.from('z'.repeat(4096)), 'none').compressed, false)
})

test('chunk digests: sha256 and blake3 known answers', () => {
  const abc = Buffer.from('abc')
  assert.equal(toHex(chunkDigest(abc, 'sha256')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  assert.equal(toHex(chunkDigest(abc, 'blake3')), '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85')
  assert.equal(toHex(chunkDigest(new Uint8Array(0), 'blake3')), 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262')
  // The shared blake3 hasher leaves nothing behind between calls.
  assert.equal(toHex(chunkDigest(abc, 'blake3')), '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85')
})

test('compressor and digester codes are the ones Nydus stores', () => {
  assert.deepEqual(['none', 'lz4_block', 'gzip', 'zstd'].map(c => compressorCode(c as 'none')), [0, 1, 2, 3])
  assert.equal(compressorFromCode(3), 'zstd')
  assert.equal(compressorFromCode(4), undefined)
  assert.equal(digesterCode('blake3'), 0)
  assert.equal(digesterCode('sha256'), 1)
  assert.equal(digesterFromCode(1), 'sha256')
  assert.equal(digesterFromCode(2), undefined)
})
