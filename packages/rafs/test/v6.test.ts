import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import {
  RafsFormatError, RafsLoopError, RafsOutOfRangeError, decodeChunk, readBootstrapV6, writeBootstrapV6, walk
} from '../src/index.js'
import type { RafsChunk, RafsImage, RafsNode } from '../src/index.js'
import { MiB, dir, node, syntheticImage } from './v6-synthetic.js'
import { nydusFixtures } from '@shoal/interface/test-fixtures'

const FIXTURES = nydusFixtures()
const V6_BOOT = `${FIXTURES}/bootstrap/rafs-v6-2.2.boot`
const V6_BLOB = `${FIXTURES}/blobs/be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef`

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')

/** A comparable description of a tree: every path with everything the model says about it. */
function describe (image: RafsImage): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>()
  const one = (node: RafsNode): Record<string, unknown> => ({
    type: node.type,
    mode: node.mode,
    uid: node.uid,
    gid: node.gid,
    // Directory sizes are the writer's (dirent bytes), not the model's.
    size: node.type === 'directory' ? undefined : node.size,
    mtime: node.mtime,
    mtimeNsec: node.mtimeNsec,
    nlink: node.nlink,
    rdev: node.rdev,
    target: node.target,
    xattrs: [...node.xattrs].map(([k, v]) => `${k}=${hex(v)}`).sort(),
    chunks: node.chunks?.map(c => [c.blobIndex, c.index, hex(c.digest), c.compressedOffset, c.compressedSize, c.uncompressedOffset, c.uncompressedSize, c.fileOffset, c.compressed].join(' '))
  })
  out.set('/', one(image.root))
  walk(image.root, (p, node) => { out.set(p, one(node)) })
  return out
}

function nodeAt (image: RafsImage, p: string): RafsNode {
  let node = image.root
  for (const name of p.split('/').filter(s => s !== '')) {
    const next = node.entries?.find(e => e.name === name)?.node
    assert.ok(next !== undefined, `no ${p} in the image`)
    node = next
  }
  return node
}

test('the real v6 fixture reads: 3 inodes, zstd, blake3, 1 MiB chunks, one blob whose chunks decode', (t) => {
  const image = readBootstrapV6(readFileSync(V6_BOOT))
  assert.equal(image.version, 6)
  assert.equal(image.inodeCount, 3)
  assert.equal(image.compressor, 'zstd')
  assert.equal(image.digester, 'blake3')
  assert.equal(image.chunkSize, MiB)
  assert.equal(image.blobs.length, 1)
  const blob = image.blobs[0]
  t.diagnostic(`blob id ${blob.blobId}`)
  assert.equal(blob.blobId, 'be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef')
  assert.equal(blob.compressor, 'zstd')
  assert.equal(blob.digester, 'blake3')
  assert.equal(blob.chunkCount, 2)
  assert.equal(blob.uncompressedSize, 0x9000)
  assert.deepEqual(blob.meta, { compressedOffset: 0x207a, compressedSize: 32, uncompressedSize: 32, compressor: 'none', entrySize: 16, tocSize: 1024 })
  assert.equal(image.root.type, 'directory')
  assert.equal(image.root.ino, 128)
  assert.deepEqual(image.root.entries?.map(e => [e.name, e.node.type, e.node.size, e.node.mode]), [
    ['lib.rs', 'file', 16931, 0o100644],
    ['sync_io.rs', 'file', 13400, 0o100644]
  ])
  assert.deepEqual(image.prefetch, [])

  const blobBytes = readFileSync(V6_BLOB)
  let decoded = 0
  for (const entry of image.root.entries ?? []) {
    const file = entry.node
    const chunks = file.chunks as RafsChunk[]
    assert.equal(chunks.length, 1)
    const c = chunks[0]
    assert.equal(c.fileOffset, 0)
    assert.equal(c.uncompressedSize, file.size)
    assert.equal(c.uncompressedOffset % 4096, 0)
    // decodeChunk decompresses and checks the blake3 digest.
    const bytes = decodeChunk(blobBytes.subarray(c.compressedOffset, c.compressedOffset + c.compressedSize), c, blob)
    assert.equal(bytes.length, file.size)
    assert.match(Buffer.from(bytes).toString('utf8'), /\bfn \w+/)
    decoded++
  }
  assert.equal(decoded, 2)
})

test('the fixture survives write → read with the same tree, chunks and blob table', () => {
  const image = readBootstrapV6(readFileSync(V6_BOOT))
  const boot = writeBootstrapV6(image)
  const back = readBootstrapV6(boot)
  assert.deepEqual(describe(back), describe(image))
  assert.deepEqual(back.blobs, image.blobs.map(b => ({ ...b, features: b.features | 1 })))
  assert.equal(back.inodeCount, 3)
  assert.deepEqual(writeBootstrapV6(back), boot)
})

/** i_format of the inode a node was read from: 0 compact, 1 extended. */
function inodeVersion (boot: Uint8Array, nid: number): number {
  const view = new DataView(boot.buffer, boot.byteOffset, boot.byteLength)
  const metaAddr = view.getUint32(1024 + 40, true) * 4096
  return view.getUint16(metaAddr + nid * 32, true) & 1
}

test('a synthetic tree with every node type survives write → read', () => {
  const { image, deepPath } = syntheticImage()
  const boot = writeBootstrapV6(image)
  const back = readBootstrapV6(boot)

  assert.deepEqual(describe(back), describe(image))
  assert.deepEqual(back.blobs, image.blobs)
  assert.equal(back.chunkSize, MiB)
  assert.equal(back.compressor, 'zstd')
  assert.equal(back.digester, 'sha256')

  // Hard links: one node reached three times, the same object.
  const a = nodeAt(back, '/shared')
  assert.equal(nodeAt(back, '/sub/other-link'), a)
  assert.equal(nodeAt(back, '/sub/third-link'), a)
  assert.equal(nodeAt(back, '/many/link-here'), a)
  const distinct = new Set<RafsNode>([back.root])
  walk(back.root, (_p, n) => distinct.add(n))
  assert.equal(back.inodeCount, distinct.size)

  // The big directory needs several dirent blocks; the deep path is all there.
  assert.ok(nodeAt(back, '/many').size > 4 * 4096, `many/ is ${nodeAt(back, '/many').size} bytes of dirents`)
  assert.equal(nodeAt(back, '/many').entries?.length, 701)
  assert.equal(nodeAt(back, deepPath).target, '../'.repeat(10))

  // Holes stay holes; contiguous chunks are all listed although EROFS sees one extent.
  assert.deepEqual(nodeAt(back, '/with-hole').chunks?.map(c => c.fileOffset), [0, 3 * MiB])
  assert.equal(nodeAt(back, '/contiguous-big').chunks?.length, 5)

  // Both inode formats occur: compact where nothing is lost, extended for times and big ids.
  assert.equal(inodeVersion(boot, nodeAt(back, '/compact').ino), 0)
  assert.equal(inodeVersion(boot, nodeAt(back, '/many').ino), 0)
  assert.equal(inodeVersion(boot, nodeAt(back, `/${'n'.repeat(250)}.long`).ino), 1)
  assert.equal(inodeVersion(boot, nodeAt(back, '/small-file').ino), 1)

  assert.deepEqual(back.prefetch.map(n => n.size), [2 * MiB + 77, 5000])
  assert.equal(back.prefetch[1], a)

  // Deterministic: writing what was read gives the same bytes.
  assert.deepEqual(writeBootstrapV6(back), boot)
  assert.equal(boot.length % 4096, 0)
})

test('with compact inodes off, every inode is extended and the tree is the same', () => {
  const { image } = syntheticImage()
  const boot = writeBootstrapV6(image, { compactInodes: false, mergeContiguousChunks: false, buildTime: 42 })
  const back = readBootstrapV6(boot)
  assert.deepEqual(describe(back), describe(image))
  assert.equal(inodeVersion(boot, nodeAt(back, '/compact').ino), 1)
})

test('the writer refuses models it cannot lay out', () => {
  const { image } = syntheticImage()
  const bad = (mutate: (img: RafsImage) => void, pattern: RegExp): void => {
    const { image: copy } = syntheticImage()
    mutate(copy)
    assert.throws(() => writeBootstrapV6(copy), pattern)
  }
  bad(img => { img.root.entries?.push({ name: 'loop', node: img.root }) }, /directory reached twice/)
  bad(img => { nodeAt(img, '/xattrs').xattrs.set('weird.name', new Uint8Array(1)) }, /no EROFS name prefix/)
  bad(img => { (nodeAt(img, '/three-chunks').chunks as RafsChunk[])[1].fileOffset = 12345 }, /boundary/)
  bad(img => { (nodeAt(img, '/three-chunks').chunks as RafsChunk[])[1].uncompressedOffset = 100 }, /4096-aligned/)
  bad(img => { img.root.entries?.push({ name: 'a/b', node: nodeAt(img, '/symlink') }) }, /holds '\/'/)
  bad(img => { img.chunkSize = 1000 }, /chunk size/)
  assert.ok(writeBootstrapV6(image).length > 0)
})

// --- malformed input ---------------------------------------------------------------------------

function expectFormatErrorOrParse (bytes: Uint8Array, what: string): void {
  const started = performance.now()
  try {
    readBootstrapV6(bytes)
  } catch (err) {
    assert.ok(err instanceof RafsFormatError, `${what}: ${String(err)}`)
  }
  const took = performance.now() - started
  assert.ok(took < 2000, `${what}: took ${took} ms`)
}

function mulberry32 (seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

test('truncated v6 bootstraps parse or throw RafsFormatError, quickly', () => {
  const fixture = readFileSync(V6_BOOT)
  const small = writeBootstrapV6({ ...syntheticImage().image })
  for (const boot of [new Uint8Array(fixture), small]) {
    for (let length = 0; length < boot.length; length += length < 2048 ? 13 : 509) {
      expectFormatErrorOrParse(boot.subarray(0, length), `truncated to ${length}`)
    }
  }
  assert.throws(() => readBootstrapV6(fixture.subarray(0, 1100)), RafsOutOfRangeError)
})

test('a few hundred seeded bit flips parse or throw RafsFormatError, quickly', () => {
  const fixture = new Uint8Array(readFileSync(V6_BOOT))
  const synthetic = writeBootstrapV6(syntheticImage().image)
  const random = mulberry32(0x5eed)
  let thrown = 0
  for (const boot of [fixture, synthetic]) {
    // Aim most flips at bytes that mean something: non-zero bytes and the superblocks.
    const meaningful: number[] = []
    for (let i = 0; i < boot.length; i++) if (boot[i] !== 0 || (i >= 1024 && i < 1408)) meaningful.push(i)
    for (let n = 0; n < 200; n++) {
      const copy = boot.slice()
      const flips = 1 + Math.floor(random() * 3)
      for (let f = 0; f < flips; f++) {
        const at = random() < 0.8 ? meaningful[Math.floor(random() * meaningful.length)] : Math.floor(random() * copy.length)
        copy[at] ^= 1 << Math.floor(random() * 8)
      }
      try {
        expectFormatErrorOrParse(copy, `flip set ${n}`)
        readBootstrapV6(copy)
      } catch (err) {
        if (!(err instanceof RafsFormatError)) throw err
        thrown++
      }
    }
  }
  assert.ok(thrown > 50, `only ${thrown} of 400 corrupted bootstraps were rejected`)
})

/**
 * Finds the dirent (12 bytes) of a named subdirectory `nid`: a directory-typed dirent whose name
 * does not start right after the dirents (which would make it a block's first entry, its own '.').
 */
function findDirent (boot: Uint8Array, nid: number): number {
  const view = new DataView(boot.buffer, boot.byteOffset, boot.byteLength)
  for (let at = 4096; at + 12 <= boot.length; at += 4) {
    if (view.getBigUint64(at, true) === BigInt(nid) && boot[at + 10] === 2 && view.getUint16(at + 8, true) % 12 !== 0) return at
  }
  throw new Error(`no dirent for nid ${nid}`)
}

test('a directory loop is a RafsLoopError', () => {
  const inner = dir({ leaf: node('file') })
  const outer = dir({ inner })
  const image: RafsImage = { version: 6, chunkSize: MiB, compressor: 'none', digester: 'sha256', blobs: [], root: dir({ outer }), prefetch: [], inodeCount: 0 }
  const boot = writeBootstrapV6(image)
  const back = readBootstrapV6(boot)
  const outerNid = nodeAt(back, '/outer').ino
  const innerNid = nodeAt(back, '/outer/inner').ino
  // Point outer/inner back at outer, and separately at the root.
  for (const target of [outerNid, back.root.ino]) {
    const copy = boot.slice()
    new DataView(copy.buffer).setBigUint64(findDirent(copy, innerNid), BigInt(target), true)
    assert.throws(() => readBootstrapV6(copy), RafsLoopError)
  }
})

test('absurd counts and sizes are refused without allocating them', () => {
  const { image } = syntheticImage()
  const boot = writeBootstrapV6(image)
  const back = readBootstrapV6(boot)
  const metaAddr = new DataView(boot.buffer).getUint32(1024 + 40, true) * 4096
  const patch = (mutate: (view: DataView) => void): Uint8Array => {
    const copy = boot.slice()
    mutate(new DataView(copy.buffer))
    return copy
  }
  const fileNid = nodeAt(back, `/${'n'.repeat(250)}.long`).ino // an extended inode
  const rootNid = back.root.ino
  const cases: Array<[string, Uint8Array]> = [
    ['blob table of 2^32 - 256 bytes', patch(v => { v.setUint32(1152 + 16, 0xffffff00, true) })],
    ['chunk table of 2^52 bytes', patch(v => { v.setBigUint64(1152 + 32, 80n * (1n << 45n), true) })],
    ['file of 2^50 bytes', patch(v => { v.setBigUint64(metaAddr + fileNid * 32 + 8, 1n << 50n, true) })],
    ['file of 2^63 bytes', patch(v => { v.setBigUint64(metaAddr + fileNid * 32 + 8, 1n << 63n, true) })],
    ['root directory of 2^40 bytes', patch(v => { v.setBigUint64(metaAddr + rootNid * 32 + 8, 1n << 40n, true) })],
    ['65535 xattr slots', patch(v => { v.setUint16(metaAddr + fileNid * 32 + 2, 0xffff, true) })],
    ['prefetch table of 2^32 - 4 bytes', patch(v => { v.setUint32(1152 + 48, 0xfffffffc, true) })],
    ['255 devices past the end', patch(v => { v.setUint16(1024 + 86, 255, true); v.setUint16(1024 + 88, 0xffff, true) })],
    ['root nid past the end', patch(v => { v.setUint16(1024 + 14, 0xffff, true); v.setUint32(1024 + 40, 0xfffff, true) })]
  ]
  for (const [what, bytes] of cases) {
    const started = performance.now()
    assert.throws(() => readBootstrapV6(bytes), (err: unknown) => err instanceof RafsFormatError, what)
    assert.ok(performance.now() - started < 500, `${what} took too long`)
  }
})
