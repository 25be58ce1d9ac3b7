import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { InvalidArgumentError } from '@shoal/interface'
import { Chunker, emptyCounts } from '../src/chunker.js'
import { applyLayer } from '../src/apply-layer.js'
import { LayerTree } from '../src/tree.js'
import { tarEntry } from './tar-writer.js'
import { mergeLayers, lookup, fileBytes, sha256, CountingStore, MemoryStore } from './helpers.js'
import { inPieces } from './tar-writer.js'

test('chunk sizes must be powers of two from 4 KiB to 16 MiB', () => {
  for (const bad of [0, 1000, 4095, 6144, 32 << 20, 2048]) {
    assert.throws(() => new Chunker({ chunkSize: bad, digest: sha256 }), InvalidArgumentError, String(bad))
  }
  for (const good of [4096, 1 << 20, 16 << 20]) new Chunker({ chunkSize: good, digest: sha256 })
})

test('files are cut at chunk-size boundaries whatever the read pieces, and read back byte for byte', async () => {
  const chunker = new Chunker({ chunkSize: 4096, digest: sha256 })
  const store = new MemoryStore(0)
  const counts = emptyCounts()
  const data = randomBytes(3 * 4096 + 100)
  const { chunks, size } = await chunker.chunkFile(inPieces(data, 1000), store, counts)
  assert.equal(size, data.length)
  assert.deepEqual(chunks.map(c => [c.fileOffset, c.uncompressedSize]), [[0, 4096], [4096, 4096], [8192, 4096], [12288, 100]])
  assert.deepEqual(chunks[1].digest, sha256(data.subarray(4096, 8192)))
  const node = { size, chunks } as unknown as Parameters<typeof fileBytes>[0]
  assert.ok(fileBytes(node, [store]).equals(data))
  assert.deepEqual(counts, { newChunks: 4, newBytes: data.length, dedupChunks: 0, dedupBytes: 0 })
})

test('the same file in two layers is stored once: the second layer stores nothing and references the first blob', async () => {
  const data = randomBytes(5 * 4096 + 7)
  const { merged, stores, counts } = await mergeLayers([
    [{ name: 'lib/a.so', data }],
    [{ name: 'usr/lib/copy.so', data }, { name: 'new', data: 'fresh bytes' }]
  ])
  assert.deepEqual(counts[0], { newChunks: 6, newBytes: data.length, dedupChunks: 0, dedupBytes: 0 })
  assert.deepEqual(counts[1], { newChunks: 1, newBytes: 11, dedupChunks: 6, dedupBytes: data.length })
  assert.equal(stores[1].chunks.length, 1)
  const copy = lookup(merged.root, 'usr/lib/copy.so')!
  assert.ok(copy.chunks!.every(c => c.blobIndex === 0))
  assert.ok(fileBytes(copy, stores).equals(data))
})

test('repeated content within one file and one layer is stored once', async () => {
  const block = randomBytes(4096)
  const data = Buffer.concat([block, block, block, randomBytes(4096), block])
  const { merged, stores, counts } = await mergeLayers([[{ name: 'rep', data }, { name: 'again', data: block }]])
  assert.equal(stores[0].chunks.length, 2)
  assert.deepEqual(counts[0], { newChunks: 2, newBytes: 8192, dedupChunks: 4, dedupBytes: 4 * 4096 })
  assert.ok(fileBytes(lookup(merged.root, 'rep')!, stores).equals(data))
})

test('a chunk dictionary makes a layer store nothing it already knows', async () => {
  const known = randomBytes(3 * 4096)
  // The "earlier image": its chunks live in a blob of its own (here index 7).
  const dictionaryStore = new MemoryStore(7)
  const chunker = new Chunker({ chunkSize: 4096, digest: sha256 })
  for (let i = 0; i < 3; i++) {
    const piece = known.subarray(i * 4096, (i + 1) * 4096)
    chunker.addKnown(dictionaryStore.add(piece, sha256(piece)))
  }
  const { merged, counts } = await mergeLayers([[{ name: 'same', data: known }]], { chunker })
  assert.deepEqual(counts[0], { newChunks: 0, newBytes: 0, dedupChunks: 3, dedupBytes: known.length })
  assert.deepEqual(lookup(merged.root, 'same')!.chunks!.map(c => [c.blobIndex, c.index, c.fileOffset]), [[7, 0, 0], [7, 1, 4096], [7, 2, 8192]])
})

test('memory stays flat while ~300 MB of file data streams through one layer', async (t) => {
  const fileSize = 300 * 1024 * 1024
  const piece = 1024 * 1024
  let counter = 0
  async function * layer (): AsyncGenerator<Uint8Array> {
    yield tarEntry({ name: 'big.bin', sizeOverride: fileSize })
    for (let sent = 0; sent < fileSize; sent += piece) {
      const buf = Buffer.allocUnsafe(piece)
      buf.fill(counter & 0xff)
      buf.writeUInt32LE(counter++, 0) // every chunk unique, so nothing dedups away
      yield buf
    }
    yield new Uint8Array(1024)
  }
  global.gc?.()
  const before = process.memoryUsage().rss
  let peak = before
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 20)
  const tree = new LayerTree()
  const store = new CountingStore()
  const counts = emptyCounts()
  try {
    await applyLayer(tree, layer(), { index: 0, chunker: new Chunker({ chunkSize: 1 << 20, digest: sha256 }), store, counts })
  } finally {
    clearInterval(sampler)
  }
  peak = Math.max(peak, process.memoryUsage().rss)
  assert.equal(store.count, 300)
  assert.equal(counts.newBytes, fileSize)
  const growth = (peak - before) / (1024 * 1024)
  t.diagnostic(`rss grew by ${growth.toFixed(1)} MB`)
  assert.ok(growth < 150, `rss grew by ${growth.toFixed(1)} MB`)
})

test('a huge sparse file costs only its data: chunks wholly in holes are left out', async () => {
  // PAX sparse 0.1: 64 GiB logical, 5000 bytes of data at 40 GiB + 100.
  const data = randomBytes(5000)
  const offset = 40 * 2 ** 30 + 100
  const { merged, stores, counts } = await mergeLayers([[{
    name: 'GNUSparseFile.0/lastlog',
    data,
    pax: { 'GNU.sparse.size': String(64 * 2 ** 30), 'GNU.sparse.map': `${offset},5000`, 'GNU.sparse.name': 'var/log/lastlog' }
  }]], { chunkSize: 1 << 20 })
  const node = lookup(merged.root, 'var/log/lastlog')!
  assert.equal(node.size, 64 * 2 ** 30)
  assert.deepEqual(node.chunks!.map(c => c.fileOffset), [40 * 2 ** 30])
  assert.equal(counts[0].newChunks, 1)
  const expected = Buffer.alloc(1 << 20)
  expected.set(data, 100)
  assert.ok(Buffer.from(stores[0].chunks[0]).equals(expected))
})
