import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { openSync, closeSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AbortOptions, ChunkRef, ChunkSource } from '@shoal/interface'
import { openChunkCache } from '@shoal/chunk-cache'
import { chunkRefOf, decodeChunk, decodeChunkRef, toHex, type RafsChunk, type RafsNode } from '@shoal/rafs'
import { blobDevice, blobDirectorySource, type BlobDirectorySource } from '../src/index.js'
import { buildTestImage, testBytes, type TestImage } from './images.js'

/** Wraps a source and records each call's chunk indexes and the stored bytes it answered. */
function counting (inner: ChunkSource, name = inner.name): ChunkSource & { calls: number[][], bytes: number, log: Array<{ at: number, bytes: number }> } {
  const out = {
    name,
    calls: [] as number[][],
    bytes: 0,
    log: [] as Array<{ at: number, bytes: number }>,
    async getChunks (refs: ChunkRef[], options?: AbortOptions) {
      out.calls.push(refs.map(r => r.index))
      const answers = await inner.getChunks(refs, options)
      const n = answers.reduce((sum, a) => sum + (a?.length ?? 0), 0)
      out.bytes += n
      out.log.push({ at: performance.now(), bytes: n })
      return answers
    }
  }
  return out
}

/** Flips one byte of every stored chunk it answers. */
function corrupting (inner: ChunkSource, name = 'corrupt peer'): ChunkSource {
  return {
    name,
    async getChunks (refs, options) {
      const answers = await inner.getChunks(refs, options)
      return answers.map(a => {
        if (a === undefined) return a
        const bad = Uint8Array.from(a)
        bad[bad.length >> 1] ^= 0x5a
        return bad
      })
    }
  }
}

const throwing: ChunkSource = { name: 'broken registry', getChunks: async () => { throw new Error('connection reset by test') } }
const empty: ChunkSource = { name: 'empty peer', getChunks: async (refs) => refs.map(() => undefined) }

function sha256Hex (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

function warnings (): { warn: (m: string) => void, lines: string[] } {
  const lines: string[] = []
  return { lines, warn: (m) => { lines.push(m) } }
}

async function withImage (files: Record<string, Uint8Array>, options: Parameters<typeof buildTestImage>[1], run: (fixture: TestImage, dir: BlobDirectorySource) => Promise<void>): Promise<void> {
  const fixture = await buildTestImage(files, options)
  const dir = blobDirectorySource({ path: fixture.blobDir })
  try {
    await run(fixture, dir)
  } finally {
    await dir.close()
    await fixture.cleanup()
  }
}

function same (actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`)
  assert.ok(Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected), `${what}: bytes differ`)
}

test('readFile: any window of a file, clipped at EOF; empty past EOF; readChunk verifies', async () => {
  const big = testBytes(9 * 4096 + 1234, 1, true)
  await withImage({ '/big': big, '/tiny': testBytes(5, 2) }, {}, async (fixture, dir) => {
    const device = blobDevice({ image: fixture.image, sources: [dir], readahead: 0 })
    const node = fixture.node('/big')
    for (const [offset, length] of [[0, big.length], [0, 1], [4095, 2], [5000, 20_000], [big.length - 10, 100], [big.length, 10], [big.length + 5000, 10], [3, 0]]) {
      const got = await device.readFile(node, offset, length)
      same(got, big.subarray(Math.min(offset, big.length), Math.min(big.length, offset + length)), `big [${offset}, +${length})`)
    }
    same(await device.readFile(fixture.node('/tiny'), 0, 4096), testBytes(5, 2), 'tiny')
    const chunk = node.chunks![3]
    same(await device.readChunk(chunk), big.subarray(chunk.fileOffset, chunk.fileOffset + chunk.uncompressedSize), 'chunk 3')
    await assert.rejects(device.readFile(fixture.image.root, 0, 1), { name: 'InvalidArgumentError' })
    await assert.rejects(device.readFile(node, -1, 1), { name: 'InvalidArgumentError' })
    await device.close()
  })
})

test('readFile over holes: a gap in the chunk list reads as zeros', async () => {
  const data = testBytes(6 * 4096, 3)
  await withImage({ '/f': data }, {}, async (fixture, dir) => {
    const original = fixture.node('/f')
    // A sparse file as the builder stores it: chunks 2 and 3 left out.
    const holey: RafsNode = { ...original, chunks: original.chunks!.filter((_c, i) => i !== 2 && i !== 3) }
    const expected = Uint8Array.from(data)
    expected.fill(0, 2 * 4096, 4 * 4096)
    const device = blobDevice({ image: fixture.image, sources: [dir] })
    same(await device.readFile(holey, 0, data.length), expected, 'whole file')
    same(await device.readFile(holey, 2 * 4096 + 7, 100), new Uint8Array(100), 'inside the hole')
    same(await device.readFile(holey, 4 * 4096 - 50, 100), expected.subarray(4 * 4096 - 50, 4 * 4096 + 50), 'across the hole end')
    await device.close()
  })
})

test('readBlob: the uncompressed address space, zeros in the gaps between chunks, clipped at its end', async () => {
  // Sizes that are not multiples of 4 KiB leave gaps: Nydus aligns uncompressed offsets to 4 KiB.
  await withImage({ '/a': testBytes(700, 4), '/b': testBytes(2 * 4096 + 1, 5), '/c': testBytes(4096, 6) }, {}, async (fixture, dir) => {
    const device = blobDevice({ image: fixture.image, sources: [dir] })
    const blob = fixture.image.blobs[0]
    const size = device.blobSize(0)
    assert.ok(size >= blob.uncompressedSize)
    const expected = new Uint8Array(size)
    const seen = new Set<number>()
    let covered = 0
    for (const path of ['/a', '/b', '/c']) {
      for (const chunk of fixture.node(path).chunks!) {
        const data = fixture.contents.get(path)!.subarray(chunk.fileOffset, chunk.fileOffset + chunk.uncompressedSize)
        expected.set(data, chunk.uncompressedOffset)
        if (!seen.has(chunk.index)) covered += chunk.uncompressedSize
        seen.add(chunk.index)
      }
    }
    assert.ok(covered < size, 'the blob has gaps')
    same(await device.readBlob(0, 0, size), expected, 'whole blob')
    same(await device.readBlob(0, 600, 4000), expected.subarray(600, 4600), 'across the first gap')
    same(await device.readBlob(0, size - 3, 100), expected.subarray(size - 3), 'clipped at the end')
    assert.equal((await device.readBlob(0, size, 10)).length, 0)
    await assert.rejects(device.readBlob(5, 0, 1), { name: 'InvalidArgumentError' })
    await device.close()
  })
})

test('single flight: many concurrent reads of one chunk ask the source once', async () => {
  await withImage({ '/f': testBytes(4 * 4096, 7) }, {}, async (fixture, dir) => {
    const source = counting(dir)
    const device = blobDevice({ image: fixture.image, sources: [source], readahead: 0, memoryBytes: 0 })
    const chunk = fixture.node('/f').chunks![1]
    const results = await Promise.all(Array.from({ length: 20 }, async () => await device.readChunk(chunk)))
    assert.equal(source.calls.length, 1)
    assert.deepEqual(source.calls[0], [chunk.index])
    for (const r of results) same(r, results[0], 'every reader gets the bytes')
    // Overlapping file reads too.
    source.calls.length = 0
    await Promise.all(Array.from({ length: 10 }, async () => await device.readFile(fixture.node('/f'), 2 * 4096, 100)))
    assert.equal(source.calls.length, 1)
    await device.close()
  })
})

test('range merging: a cold read of many adjacent chunks is one source call; maxRunBytes splits it', async () => {
  const data = testBytes(24 * 4096, 8)
  await withImage({ '/f': data }, { compressor: 'none' }, async (fixture, dir) => {
    const node = fixture.node('/f')
    const source = counting(dir)
    const device = blobDevice({ image: fixture.image, sources: [source], readahead: 0 })
    same(await device.readFile(node, 0, data.length), data, 'whole file')
    assert.equal(source.calls.length, 1)
    assert.deepEqual(source.calls[0], node.chunks!.map(c => c.index))
    await device.close()

    const split = counting(dir)
    const small = blobDevice({ image: fixture.image, sources: [split], readahead: 0, maxRunBytes: 8 * 4096 })
    same(await small.readFile(node, 0, data.length), data, 'whole file, small runs')
    assert.equal(split.calls.length, 3)
    assert.deepEqual(split.calls.map(c => c.length), [8, 8, 8])
    await small.close()
  })
})

test('readahead: sequential reads fetch ahead; a random read does not', async () => {
  const data = testBytes(128 * 4096, 9)
  await withImage({ '/f': data }, { compressor: 'none' }, async (fixture, dir) => {
    const node = fixture.node('/f')
    const source = counting(dir)
    const device = blobDevice({ image: fixture.image, sources: [source], readahead: 4 * 4096 })
    same(await device.readFile(node, 0, 4096), data.subarray(0, 4096), 'first block')
    await sleep(50)
    assert.deepEqual(source.calls.flat().sort((a, b) => a - b), node.chunks!.slice(0, 5).map(c => c.index))
    // The next reads are answered from what readahead brought: no new call for chunks 1..4.
    const before = source.calls.length
    same(await device.readFile(node, 4096, 4 * 4096), data.subarray(4096, 5 * 4096), 'next blocks')
    await sleep(50)
    const newCalls = source.calls.slice(before).flat()
    assert.ok(newCalls.every(i => i >= node.chunks![5].index), `chunks 1..4 came from readahead (new calls ${newCalls.join(',')})`)
    assert.ok(device.stats().readaheadChunks >= 8)
    // A jump far ahead (more than 256 KiB) is not sequential: only its own chunk.
    source.calls.length = 0
    same(await device.readFile(node, 120 * 4096, 10), data.subarray(120 * 4096, 120 * 4096 + 10), 'random read')
    await sleep(50)
    assert.deepEqual(source.calls, [[node.chunks![120].index]])
    await device.close()
  })
})

test('readBlob never reads ahead: the next bytes of a blob belong to other files (EROFS reads ahead within a file itself)', async () => {
  // Small files packed one after another, as in a real blob: each has one chunk.
  const files: Record<string, Uint8Array> = {}
  for (let i = 0; i < 32; i++) files[`/f${String(i).padStart(2, '0')}`] = testBytes(3000, 20 + i)
  await withImage(files, { compressor: 'none' }, async (fixture, dir) => {
    const source = counting(dir)
    const device = blobDevice({ image: fixture.image, sources: [source], readahead: 64 * 4096 })
    const first = fixture.node('/f00').chunks![0]
    const second = fixture.node('/f01').chunks![0]
    // From offset 0, then the very next bytes: what a file read would call sequential.
    same(await device.readBlob(0, first.uncompressedOffset, first.uncompressedSize), files['/f00'], 'first file')
    same(await device.readBlob(0, second.uncompressedOffset, second.uncompressedSize), files['/f01'], 'second file')
    const into = new Uint8Array(4096)
    assert.equal(await device.readBlobInto(0, second.uncompressedOffset, into), 4096)
    await sleep(50)
    assert.deepEqual(source.calls.flat().sort((a, b) => a - b), [first.index, second.index].sort((a, b) => a - b))
    assert.equal(device.stats().readaheadChunks, 0)
    await device.close()
  })
})

test('prefetch: the prefetch list is fetched in the background under the bandwidth cap, into the cache', async () => {
  const chunkCount = 40
  await withImage({ '/hot': testBytes(chunkCount * 4096, 10), '/cold': testBytes(8 * 4096, 11) }, { compressor: 'none', prefetchFiles: ['/hot'] }, async (fixture, dir) => {
    const cache = await openChunkCache({ path: join(fixture.dir, 'cache'), maxBytes: 1 << 30 })
    const source = counting(dir)
    const bandwidth = 128 * 1024
    const device = blobDevice({ image: fixture.image, cache, sources: [source], prefetch: { bandwidth } })
    const started = performance.now()
    const result = await device.startPrefetch()
    const elapsed = (performance.now() - started) / 1000
    const total = chunkCount * 4096
    assert.deepEqual(result, { chunks: chunkCount, fetched: chunkCount, failed: 0, bytes: total })
    assert.equal(source.bytes, total)
    // Never ahead of the cap by more than one run (a quarter second of bandwidth), with a margin.
    let sum = 0
    for (const { at, bytes } of source.log) {
      sum += bytes
      const t = (at - started) / 1000
      assert.ok(sum <= bandwidth * t * 1.25 + bandwidth / 4 + 4096, `${sum} bytes after ${t.toFixed(2)} s at ${bandwidth} B/s`)
    }
    assert.ok(elapsed >= (total - bandwidth / 4) / bandwidth * 0.8, `took ${elapsed.toFixed(2)} s for ${total} bytes at ${bandwidth} B/s`)
    await device.close()
    const blob = fixture.image.blobs[0]
    for (const chunk of fixture.node('/hot').chunks!) assert.ok(cache.has(chunkRefOf(chunk, blob)), `chunk ${chunk.index} cached`)
    assert.ok(fixture.node('/cold').chunks!.every(c => !cache.has(chunkRefOf(c, blob))), 'files off the list are not prefetched')
    await cache.close()
  })
})

test('a source sending bad bytes is logged (blob, chunk, both digests) and skipped; never wrong bytes', async () => {
  const data = testBytes(4 * 4096, 12)
  await withImage({ '/f': data }, { compressor: 'none' }, async (fixture, dir) => {
    const node = fixture.node('/f')
    const blob = fixture.image.blobs[0]
    const log = warnings()
    const device = blobDevice({ image: fixture.image, sources: [corrupting(dir), dir], logger: log })
    same(await device.readFile(node, 0, data.length), data, 'the good source wins')
    assert.equal(device.stats().errors['corrupt peer'], 4)
    assert.equal(device.stats().chunksBySource[dir.name], 4)
    const chunk = node.chunks![1]
    const stored = (await dir.getChunks([chunkRefOf(chunk, blob)]))[0]!
    const bad = Uint8Array.from(stored)
    bad[bad.length >> 1] ^= 0x5a
    const line = log.lines.find(l => l.includes(`chunk ${chunk.index} of blob ${blob.blobId}`))
    assert.ok(line !== undefined, log.lines.join('\n'))
    assert.ok(line.includes('corrupt peer'))
    assert.ok(line.includes(toHex(chunk.digest)), 'expected digest')
    assert.ok(line.includes(sha256Hex(bad)), 'actual digest')
    await device.close()

    const onlyBad = blobDevice({ image: fixture.image, sources: [corrupting(dir)], logger: warnings() })
    await assert.rejects(onlyBad.readFile(node, 0, 10), (err: any) => {
      assert.equal(err.name, 'ChunkUnavailableError')
      assert.equal(err.blobId, blob.blobId)
      assert.equal(err.chunkIndex, node.chunks![0].index)
      assert.match(err.message, /corrupt peer: ChunkDigestMismatchError/)
      return true
    })
    await onlyBad.close()
  })
})

test('a source that delivers uncompressed chunks is verified as such; bad ones are skipped', async () => {
  const data = testBytes(5 * 4096, 17, true)
  await withImage({ '/f': data }, {}, async (fixture, dir) => {
    const uncompressed = (corrupt: boolean, name: string): ChunkSource => ({
      name,
      delivers: 'uncompressed',
      async getChunks (refs, options) {
        const stored = await dir.getChunks(refs, options)
        return stored.map((s, i) => {
          if (s === undefined) return s
          const plain = Uint8Array.from(decodeChunkRef(s, refs[i]))
          if (corrupt) plain[3] ^= 1
          return plain
        })
      }
    })
    const log = warnings()
    const device = blobDevice({ image: fixture.image, sources: [uncompressed(true, 'bad peer'), uncompressed(false, 'good peer')], logger: log })
    same(await device.readFile(fixture.node('/f'), 0, data.length), data, 'file')
    assert.equal(device.stats().errors['bad peer'], 5)
    assert.equal(device.stats().chunksBySource['good peer'], 5)
    assert.equal(device.stats().bytesBySource['good peer'], 5 * 4096)
    await device.close()
  })
})

test('all sources failing: ChunkUnavailableError names the blob, the chunk and what each source did', async () => {
  await withImage({ '/f': testBytes(3 * 4096, 13) }, {}, async (fixture) => {
    const node = fixture.node('/f')
    const device = blobDevice({ image: fixture.image, sources: [throwing, empty] })
    await assert.rejects(device.readChunk(node.chunks![2]), (err: any) => {
      assert.equal(err.name, 'ChunkUnavailableError')
      assert.deepEqual(err.failures.map((f: any) => f.source), ['broken registry', 'empty peer'])
      assert.match(err.message, new RegExp(`chunk ${node.chunks![2].index} of blob ${fixture.image.blobs[0].blobId}`))
      assert.match(err.message, /connection reset by test/)
      assert.match(err.message, /empty peer: does not have it/)
      return true
    })
    assert.equal(device.stats().errors['broken registry'], 1)
    const none = blobDevice({ image: fixture.image, sources: [] })
    await assert.rejects(none.readChunk(node.chunks![0]), { name: 'ChunkUnavailableError' })
    await device.close()
    await none.close()
  })
})

test('cache: a second device reads from it without sources; a corrupted cache file is caught and refetched', async () => {
  const data = testBytes(6 * 4096, 14, true)
  await withImage({ '/f': data }, {}, async (fixture, dir) => {
    const node = fixture.node('/f')
    const cache = await openChunkCache({ path: join(fixture.dir, 'cache'), maxBytes: 1 << 30 })
    const first = blobDevice({ image: fixture.image, cache, sources: [dir] })
    same(await first.readFile(node, 0, data.length), data, 'cold')
    await first.close()

    const second = blobDevice({ image: fixture.image, cache, sources: [throwing] })
    same(await second.readFile(node, 0, data.length), data, 'warm')
    assert.equal(second.stats().cacheHits, 6)
    assert.equal(second.stats().bytesBySource.cache, data.length)
    assert.equal(second.stats().errors['broken registry'], undefined)
    await second.close()

    // Damage chunk 2 in the cache's blob file behind its back.
    const chunk = node.chunks![2]
    const blob = fixture.image.blobs[0]
    const fd = openSync(join(fixture.dir, 'cache', 'data', blob.blobId), 'r+')
    writeSync(fd, Buffer.from('garbage'), 0, 7, chunk.uncompressedOffset + 100)
    closeSync(fd)
    const log = warnings()
    const source = counting(dir)
    const third = blobDevice({ image: fixture.image, cache, sources: [source], logger: log })
    same(await third.readFile(node, 0, data.length), data, 'after damage')
    assert.deepEqual(source.calls, [[chunk.index]])
    assert.equal(third.stats().errors.cache, 1)
    assert.ok(log.lines.some(l => l.startsWith('cache:') && l.includes(`chunk ${chunk.index} of blob ${blob.blobId}`) && l.includes(toHex(chunk.digest))), log.lines.join('\n'))
    await third.close()
    // The refetched chunk replaced the damaged one.
    const fourth = blobDevice({ image: fixture.image, cache, sources: [] })
    same(await fourth.readChunk(chunk), data.subarray(chunk.fileOffset, chunk.fileOffset + chunk.uncompressedSize), 'repaired')
    await fourth.close()
    await cache.close()
  })
})

test('the device pins its blobs: the cache keeps them past its cap until the device closes', async () => {
  const data = testBytes(16 * 4096, 15)
  await withImage({ '/f': data }, { compressor: 'none' }, async (fixture, dir) => {
    const cache = await openChunkCache({ path: join(fixture.dir, 'cache'), maxBytes: 8 * 4096 })
    const device = blobDevice({ image: fixture.image, cache, sources: [dir] })
    same(await device.readFile(fixture.node('/f'), 0, data.length), data, 'read')
    await device.close()
    const blobId = fixture.image.blobs[0].blobId
    // close() waited for the cache writes and unpinned: the cap applies again.
    assert.ok(cache.stats().bytes <= 8 * 4096, `${cache.stats().bytes} bytes`)
    assert.deepEqual(cache.chunks(blobId), [])
    await cache.close()
  })
})

test('abort: a reader that gives up gets AbortError; the shared fetch still serves the others', async () => {
  const data = testBytes(2 * 4096, 16)
  await withImage({ '/f': data }, {}, async (fixture, dir) => {
    const slow: ChunkSource = { name: 'slow', getChunks: async (refs, options) => { await sleep(100); return await dir.getChunks(refs, options) } }
    const device = blobDevice({ image: fixture.image, sources: [slow] })
    const chunk: RafsChunk = fixture.node('/f').chunks![0]
    await assert.rejects(device.readChunk(chunk, { signal: AbortSignal.abort() }), { name: 'AbortError' })
    const controller = new AbortController()
    const quitter = device.readChunk(chunk, { signal: controller.signal })
    const stayer = device.readChunk(chunk)
    controller.abort()
    await assert.rejects(quitter, { name: 'AbortError' })
    same(await stayer, decodeChunk((await dir.getChunks([chunkRefOf(chunk, fixture.image.blobs[0])]))[0]!, chunk, fixture.image.blobs[0]), 'stayer')
    await device.close()
    await assert.rejects(device.readChunk(chunk), { name: 'BlobDeviceClosedError' })
  })
})
