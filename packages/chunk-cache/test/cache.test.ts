import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { appendFileSync, existsSync, readdirSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { cacheChunkStore, openChunkCache } from '../src/index.js'
import { chunkCacheCompliance } from './compliance.js'
import { blobIdOf, chunkBytes, crashChunkBytes, crashChunkKey, keyOf } from './chunk-data.js'

chunkCacheCompliance('level + sparse blob files', {
  open: async (dir, maxBytes) => await openChunkCache({ path: dir, maxBytes })
})

async function withDir (run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-cache-'))
  try {
    await run(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

test('open drops entries whose data file is missing or short, and removes files no entry names', async () => {
  await withDir(async (dir) => {
    const [A, B, C] = [blobIdOf('A'), blobIdOf('B'), blobIdOf('C')]
    let cache = await openChunkCache({ path: dir, maxBytes: 1 << 30 })
    for (let i = 0; i < 4; i++) {
      await cache.put(keyOf(A, i, 4096), chunkBytes(A, i, 4096))
      await cache.put(keyOf(B, i, 4096), chunkBytes(B, i, 4096))
    }
    await cache.close()
    // A's file loses its last chunk and half of the one before; B's file disappears; an orphan appears.
    truncateSync(join(dir, 'data', A), 2 * 4096 + 100)
    unlinkSync(join(dir, 'data', B))
    writeFileSync(join(dir, 'data', C), 'left by a crash')
    cache = await openChunkCache({ path: dir, maxBytes: 1 << 30 })
    assert.deepEqual(cache.chunks(A), [0, 1])
    assert.deepEqual(cache.chunks(B), [])
    assert.deepEqual(cache.blobs(), [A])
    assert.equal(cache.stats().dropped, 6)
    assert.equal(cache.stats().bytes, 2 * 4096)
    assert.deepEqual(await cache.get(keyOf(A, 1, 4096)), chunkBytes(A, 1, 4096))
    assert.equal(existsSync(join(dir, 'data', C)), false)
    await cache.close()
  })
})

test('a data file cut while open: the get misses and drops the entry rather than serve short bytes', async () => {
  await withDir(async (dir) => {
    const A = blobIdOf('A')
    const cache = await openChunkCache({ path: dir, maxBytes: 1 << 30 })
    await cache.put(keyOf(A, 0, 4096), chunkBytes(A, 0, 4096))
    await cache.put(keyOf(A, 1, 4096), chunkBytes(A, 1, 4096))
    truncateSync(join(dir, 'data', A), 4096 + 10)
    assert.equal(await cache.get(keyOf(A, 1, 4096)), undefined)
    assert.deepEqual(cache.chunks(A), [0])
    assert.deepEqual(await cache.get(keyOf(A, 0, 4096)), chunkBytes(A, 0, 4096))
    await cache.close()
  })
})

test('chunks sit at their uncompressed offsets in one sparse file per blob', async () => {
  await withDir(async (dir) => {
    const A = blobIdOf('A')
    const cache = await openChunkCache({ path: dir, maxBytes: 1 << 30 })
    await cache.put({ blobId: A, index: 5, uncompressedOffset: 1 << 20, uncompressedSize: 3000 }, chunkBytes(A, 5, 3000))
    await cache.close()
    const { readFileSync } = await import('node:fs')
    const file = readFileSync(join(dir, 'data', A))
    assert.equal(file.length, (1 << 20) + 3000)
    assert.deepEqual(new Uint8Array(file.subarray(1 << 20)), chunkBytes(A, 5, 3000))
    assert.ok(file.subarray(0, 1 << 20).every(b => b === 0))
    // Appended garbage past the last chunk is harmless.
    appendFileSync(join(dir, 'data', A), 'xyz')
    const again = await openChunkCache({ path: dir, maxBytes: 1 << 30 })
    assert.deepEqual(again.chunks(A), [5])
    await again.close()
  })
})

test('SIGKILL in the middle of cache writes, eight times: every chunk present after reopening is right', async () => {
  const child = join(fileURLToPath(new URL('.', import.meta.url)), 'crash-writer.js')
  await withDir(async (dir) => {
    let lastCount = 0
    let grew = 0
    for (let round = 0; round < 8; round++) {
      const proc = spawn(process.execPath, [child, dir], { stdio: ['ignore', 'pipe', 'inherit'] })
      await new Promise<void>((resolve, reject) => {
        proc.once('error', reject)
        proc.once('exit', (code) => { reject(new Error(`crash writer exited early with ${code}`)) })
        proc.stdout.once('data', () => { resolve() })
      })
      proc.removeAllListeners('exit')
      await new Promise(resolve => setTimeout(resolve, 100 + Math.floor(Math.random() * 300)))
      const exited = new Promise(resolve => proc.once('exit', resolve))
      proc.kill('SIGKILL')
      assert.equal(await exited, null)

      const cache = await openChunkCache({ path: dir, maxBytes: 4 * 1024 * 1024 })
      let count = 0
      for (const blobId of cache.blobs()) {
        for (const index of cache.chunks(blobId)) {
          const bytes = await cache.get(crashChunkKey(blobId, index))
          assert.ok(bytes !== undefined, `chunk ${index} of ${blobId} listed but not readable`)
          assert.ok(Buffer.from(bytes).equals(crashChunkBytes(blobId, index)), `chunk ${index} of blob ${blobId} has wrong bytes after SIGKILL round ${round}`)
          count++
        }
      }
      assert.ok(cache.stats().bytes <= 4 * 1024 * 1024 + 8 * 65_536, `bytes ${cache.stats().bytes}`)
      // Every file on disk belongs to a blob the index holds.
      assert.deepEqual(readdirSync(join(dir, 'data')).sort(), cache.blobs().sort())
      if (count !== lastCount) grew++
      lastCount = count
      await cache.close()
    }
    assert.ok(lastCount > 0, 'the writer stored chunks before it was killed')
    assert.ok(grew > 0)
  })
})

test('cacheChunkStore: has, bitmap (bit i of byte i >> 3, least significant first) and bytes by index', async () => {
  await withDir(async (dir) => {
    const A = blobIdOf('A')
    const cache = await openChunkCache({ path: dir, maxBytes: 1 << 30 })
    const store = cacheChunkStore(cache)
    assert.equal(await store.bitmap(A), undefined)
    for (const i of [0, 3, 9]) await cache.put(keyOf(A, i, 4096), chunkBytes(A, i, 4096))
    assert.equal(await store.has(A, 3), true)
    assert.equal(await store.has(A, 4), false)
    assert.deepEqual(await store.bitmap(A), Uint8Array.from([0b0000_1001, 0b0000_0010]))
    assert.deepEqual(await store.getUncompressed(A, 9), chunkBytes(A, 9, 4096))
    assert.equal(await store.getUncompressed(A, 8), undefined)
    await cache.close()
  })
})
