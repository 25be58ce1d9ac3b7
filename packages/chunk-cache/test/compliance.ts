/**
 * The chunk cache contract, as a suite every implementation runs:
 *   chunkCacheCompliance('level cache', { open: (dir, maxBytes) => openChunkCache({ path: dir, maxBytes }) })
 * Each test gets a fresh temporary directory; `open` may be called again on it to test reopening.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import type { ChunkCache, ChunkCacheEvent } from '../src/index.js'
import { blobIdOf, chunkBytes, keyOf } from './chunk-data.js'

export { blobIdOf, chunkBytes, keyOf }

export interface ChunkCacheFactory {
  open: (dir: string, maxBytes: number) => Promise<ChunkCache>
}

async function withCache (factory: ChunkCacheFactory, maxBytes: number, run: (cache: ChunkCache, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-cache-compliance-'))
  const cache = await factory.open(dir, maxBytes)
  try {
    await run(cache, dir)
  } finally {
    await cache.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

export function chunkCacheCompliance (name: string, factory: ChunkCacheFactory): void {
  const A = blobIdOf('a')
  const B = blobIdOf('b')
  const MiB = 1024 * 1024

  describe(`chunk cache compliance: ${name}`, () => {
    test('put then get returns the same bytes; absent chunks miss; stats count both', async () => {
      await withCache(factory, 64 * MiB, async (cache) => {
        const key = keyOf(A, 3, 10_000, 16_384)
        assert.equal(await cache.get(key), undefined)
        assert.equal(cache.has(key), false)
        const bytes = chunkBytes(A, 3, 10_000)
        await cache.put(key, bytes)
        assert.equal(cache.has(key), true)
        assert.deepEqual(await cache.get(key), bytes)
        const stats = cache.stats()
        assert.equal(stats.hits, 1)
        assert.equal(stats.misses, 1)
        assert.equal(stats.bytes, 10_000)
        assert.equal(stats.chunks, 1)
        assert.equal(stats.blobs, 1)
        assert.deepEqual(cache.blobs(), [A])
        assert.deepEqual(cache.chunks(A), [3])
        assert.deepEqual(cache.chunks(B), [])
        assert.deepEqual(cache.locate(A, 3), key)
        assert.equal(cache.locate(A, 4), undefined)
      })
    })

    test('a get at another offset or size than stored misses', async () => {
      await withCache(factory, 64 * MiB, async (cache) => {
        await cache.put(keyOf(A, 1, 4096), chunkBytes(A, 1, 4096))
        assert.equal(await cache.get({ blobId: A, index: 1, uncompressedOffset: 0, uncompressedSize: 4096 }), undefined)
        assert.equal(await cache.get({ blobId: A, index: 1, uncompressedOffset: 4096, uncompressedSize: 4095 }), undefined)
        assert.equal(cache.stats().misses, 2)
      })
    })

    test('chunks persist across close and reopen, in their blobs', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'shoal-cache-compliance-'))
      try {
        let cache = await factory.open(dir, 64 * MiB)
        for (let i = 0; i < 5; i++) await cache.put(keyOf(A, i, 5000, 8192), chunkBytes(A, i, 5000))
        await cache.put(keyOf(B, 7, 100), chunkBytes(B, 7, 100))
        await cache.close()
        cache = await factory.open(dir, 64 * MiB)
        assert.deepEqual(cache.blobs().sort(), [A, B].sort())
        assert.deepEqual(cache.chunks(A), [0, 1, 2, 3, 4])
        for (let i = 0; i < 5; i++) assert.deepEqual(await cache.get(keyOf(A, i, 5000, 8192)), chunkBytes(A, i, 5000))
        assert.deepEqual(await cache.get(keyOf(B, 7, 100)), chunkBytes(B, 7, 100))
        assert.equal(cache.stats().bytes, 5 * 5000 + 100)
        await cache.close()
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })

    test('a second put of a present chunk is a no-op; concurrent puts of one chunk store it once', async () => {
      await withCache(factory, 64 * MiB, async (cache) => {
        const key = keyOf(A, 0, 4096)
        const bytes = chunkBytes(A, 0, 4096)
        await Promise.all([cache.put(key, bytes), cache.put(key, bytes), cache.put(key, bytes)])
        await cache.put(key, bytes)
        assert.equal(cache.stats().puts, 1)
        assert.equal(cache.stats().bytes, 4096)
      })
    })

    test('conflicting puts are refused: same index elsewhere, overlapping ranges, wrong length', async () => {
      await withCache(factory, 64 * MiB, async (cache) => {
        await cache.put(keyOf(A, 1, 4096), chunkBytes(A, 1, 4096))
        await assert.rejects(cache.put({ blobId: A, index: 1, uncompressedOffset: 0, uncompressedSize: 4096 }, chunkBytes(A, 1, 4096)), { name: 'ChunkCacheConflictError' })
        await assert.rejects(cache.put({ blobId: A, index: 2, uncompressedOffset: 6000, uncompressedSize: 4096 }, chunkBytes(A, 2, 4096)), { name: 'ChunkCacheConflictError' })
        await assert.rejects(cache.put(keyOf(A, 3, 4096), new Uint8Array(10)), { name: 'InvalidArgumentError' })
        await assert.rejects(cache.put({ blobId: '../etc', index: 0, uncompressedOffset: 0, uncompressedSize: 1 }, new Uint8Array(1)), { name: 'InvalidArgumentError' })
        assert.deepEqual(await cache.get(keyOf(A, 1, 4096)), chunkBytes(A, 1, 4096))
        assert.deepEqual(cache.chunks(A), [1])
      })
    })

    test('delete forgets one chunk and its bytes count', async () => {
      await withCache(factory, 64 * MiB, async (cache) => {
        await cache.put(keyOf(A, 0, 4096), chunkBytes(A, 0, 4096))
        await cache.put(keyOf(A, 1, 4096), chunkBytes(A, 1, 4096))
        await cache.delete(keyOf(A, 0, 4096))
        assert.equal(await cache.get(keyOf(A, 0, 4096)), undefined)
        assert.deepEqual(cache.chunks(A), [1])
        assert.equal(cache.stats().bytes, 4096)
      })
    })

    test('an aborted signal stops get and put up front', async () => {
      await withCache(factory, 64 * MiB, async (cache) => {
        const signal = AbortSignal.abort()
        await assert.rejects(cache.put(keyOf(A, 0, 16), chunkBytes(A, 0, 16), { signal }), { name: 'AbortError' })
        await assert.rejects(cache.get(keyOf(A, 0, 16), { signal }), { name: 'AbortError' })
        assert.equal(cache.stats().chunks, 0)
      })
    })

    test('the cap holds across many blobs; least recently used blobs go first; events name them', async () => {
      const cap = 256 * 1024
      await withCache(factory, cap, async (cache) => {
        const events: ChunkCacheEvent[] = []
        cache.subscribe(e => events.push(e))
        const ids = Array.from({ length: 20 }, (_, i) => blobIdOf(`many-${i}`))
        for (const [n, id] of ids.entries()) {
          for (let i = 0; i < 4; i++) await cache.put(keyOf(id, i, 16_384), chunkBytes(id, i, 16_384))
          // Keep blob 0 warm: it must outlive colder blobs.
          if (n > 0) assert.ok(await cache.get(keyOf(ids[0], 0, 16_384)) !== undefined, `blob 0 survives after blob ${n}`)
          assert.ok(cache.stats().bytes <= cap, `after blob ${n}: ${cache.stats().bytes} bytes > cap ${cap}`)
        }
        const stats = cache.stats()
        assert.ok(stats.evictions >= 20 - cap / (4 * 16_384), `evictions ${stats.evictions}`)
        assert.ok(cache.blobs().includes(ids[0]))
        assert.ok(cache.blobs().includes(ids[19]))
        const added = events.filter(e => e.type === 'blob-added').map(e => e.blobId)
        const evicted = events.filter(e => e.type === 'blob-evicted').map(e => e.blobId)
        assert.deepEqual(added, ids, 'one blob-added per blob, on its first chunk')
        assert.equal(evicted.length, stats.evictions)
        assert.equal(evicted[0], ids[1], 'the coldest blob goes first')
        for (const id of evicted) assert.deepEqual(cache.chunks(id), [])
        // What is left reads back right.
        for (const id of cache.blobs()) {
          for (const index of cache.chunks(id)) assert.deepEqual(await cache.get(keyOf(id, index, 16_384)), chunkBytes(id, index, 16_384))
        }
      })
    })

    test('pinned blobs are not evicted, even cold; unpinning lets the cap apply again', async () => {
      const cap = 64 * 1024
      await withCache(factory, cap, async (cache) => {
        const pinned = blobIdOf('pinned')
        cache.pin(pinned)
        for (let i = 0; i < 4; i++) await cache.put(keyOf(pinned, i, 16_384), chunkBytes(pinned, i, 16_384))
        for (let n = 0; n < 5; n++) {
          const id = blobIdOf(`other-${n}`)
          await cache.put(keyOf(id, 0, 16_384), chunkBytes(id, 0, 16_384))
        }
        assert.deepEqual(cache.chunks(pinned), [0, 1, 2, 3])
        assert.deepEqual(await cache.get(keyOf(pinned, 2, 16_384)), chunkBytes(pinned, 2, 16_384))
        cache.unpin(pinned)
        // A put to another blob makes room: the now unpinned blob is the least recently used no more
        // than the others, but the cap must hold once nothing is pinned.
        const last = blobIdOf('last')
        await cache.put(keyOf(last, 0, 16_384), chunkBytes(last, 0, 16_384))
        assert.ok(cache.stats().bytes <= cap, `${cache.stats().bytes} bytes > cap ${cap}`)
      })
    })
  })
}
