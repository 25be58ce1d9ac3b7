/**
 * The v5 reader on bootstraps written by the test builder: the parts of the format the Nydus vectors
 * do not exercise (xattrs, devices, fifos, sockets, sparse files, compressed chunks, several blobs,
 * explicit owners, the prefetch table, unsorted children), and records broken one field at a time.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  RafsCorruptError, RafsFormatError, RafsLoopError, RafsOutOfRangeError, RafsUnsupportedError
} from '../src/errors.js'
import type { RafsNode } from '../src/model.js'
import { treeJson } from '../src/tree-json.js'
import { RafsV5SuperFlags, readBootstrapV5 } from '../src/v5/index.js'
import { buildV5, writeInodeHeader } from './v5-builder.js'
import type { SynthImage, SynthInode } from './v5-builder.js'

const CHUNK = 0x1000
const digestOf = (seed: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (seed * 31 + i) & 0xff)
const capability = Uint8Array.from([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])

/** Root with children stored out of name order; `dir` holds one file; prefetch names dir and sparse. */
function sample (): SynthImage {
  const inodes: SynthInode[] = [
    { ino: 1, parent: 0, mode: 0o40755, name: '/', size: 4096, nlink: 3, childIndex: 2, childCount: 8 },
    { ino: 2, parent: 1, mode: 0o40700, name: 'zdir', size: 4096, nlink: 2, childIndex: 10, childCount: 1 },
    {
      ino: 3,
      parent: 1,
      mode: 0o100644,
      name: 'sparse',
      size: 3 * CHUNK + 100,
      flags: 0x8, // HAS_HOLE
      chunks: [
        // bytes 0..4096 from blob 0, stored compressed; 4096..8192 a hole; 8192..12288 from blob 1 as is
        { blobIndex: 0, index: 0, digest: digestOf(1), flags: 0x1, compressedOffset: 0, compressedSize: 1000, uncompressedOffset: 0, uncompressedSize: CHUNK, fileOffset: 0 },
        { blobIndex: 1, index: 1, digest: digestOf(2), compressedOffset: 500, compressedSize: CHUNK, uncompressedOffset: 4096, uncompressedSize: CHUNK, fileOffset: 2 * CHUNK },
        { blobIndex: 1, index: 2, digest: digestOf(3), compressedOffset: 4596, compressedSize: 100, uncompressedOffset: 8192, uncompressedSize: 100, fileOffset: 3 * CHUNK }
      ]
    },
    { ino: 4, parent: 1, mode: 0o60660, name: 'dev-blk', rdev: 0x801, uid: 0, gid: 6 },
    { ino: 5, parent: 1, mode: 0o20666, name: 'dev-chr', rdev: 0x103 },
    { ino: 6, parent: 1, mode: 0o10644, name: 'fifo' },
    { ino: 7, parent: 1, mode: 0o140755, name: 'sock' },
    { ino: 8, parent: 1, mode: 0o120777, name: 'link', target: 'zdir/', size: 5 },
    {
      ino: 9,
      parent: 1,
      mode: 0o100600,
      name: 'attrs',
      uid: 1000,
      gid: 1001,
      mtime: 1_700_000_000,
      mtimeNsec: 123_456_789,
      xattrs: [['user.a', Uint8Array.from([0x31])], ['security.capability', capability], ['trusted.overlay.opaque', Uint8Array.from([0x79])]]
    },
    { ino: 10, parent: 2, mode: 0o100644, name: 'inner', size: 0 }
  ]
  return {
    flags: RafsV5SuperFlags.COMPRESSION_LZ4 | RafsV5SuperFlags.HASH_SHA256 | RafsV5SuperFlags.EXPLICIT_UID_GID | RafsV5SuperFlags.HAS_XATTR,
    chunkSize: CHUNK,
    blobs: [
      { id: 'a'.repeat(64), chunkCount: 1, compressedSize: 1000, uncompressedSize: CHUNK },
      { id: 'blob-two.v1', chunkCount: 3, compressedSize: 4696, uncompressedSize: 8292, features: 0x4000_0000 }
    ],
    inodes,
    prefetch: [2, 3, 0, 9]
  }
}

function byName (dir: RafsNode, name: string): RafsNode {
  const entry = dir.entries?.find(e => e.name === name)
  assert.ok(entry !== undefined, `entry ${name}`)
  return entry.node
}

function expectError (bytes: Uint8Array, type: new (...args: any[]) => RafsFormatError, message: RegExp): void {
  assert.throws(() => readBootstrapV5(bytes), (err: unknown) => {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`)
    assert.match((err as Error).message, message)
    return true
  })
}

describe('RAFS v5 reader: built images', () => {
  const layout = buildV5(sample())
  const image = readBootstrapV5(layout.bytes)

  it('reads image-wide settings and every blob, from the extended table too', () => {
    assert.equal(image.compressor, 'lz4_block')
    assert.equal(image.digester, 'sha256')
    assert.equal(image.chunkSize, CHUNK)
    assert.equal(image.explicitUidGid, true)
    assert.equal(image.inodeCount, 10)
    assert.deepEqual(image.blobs, [
      { index: 0, blobId: 'a'.repeat(64), compressor: 'lz4_block', digester: 'sha256', chunkSize: CHUNK, chunkCount: 1, compressedSize: 1000, uncompressedSize: CHUNK, features: 0 },
      { index: 1, blobId: 'blob-two.v1', compressor: 'lz4_block', digester: 'sha256', chunkSize: CHUNK, chunkCount: 3, compressedSize: 4696, uncompressedSize: 8292, features: 0x4000_0000 }
    ])
  })

  it('sorts entries by name whatever order the table holds them in', () => {
    assert.deepEqual(image.root.entries?.map(e => e.name), ['attrs', 'dev-blk', 'dev-chr', 'fifo', 'link', 'sock', 'sparse', 'zdir'])
  })

  it('reads devices, fifos, sockets and their modes', () => {
    const blk = byName(image.root, 'dev-blk')
    assert.equal(blk.type, 'block')
    assert.equal(blk.mode, 0o60660)
    assert.equal(blk.rdev, 0x801)
    assert.equal(blk.gid, 6)
    const chr = byName(image.root, 'dev-chr')
    assert.equal(chr.type, 'char')
    assert.equal(chr.rdev, 0x103)
    assert.equal(byName(image.root, 'fifo').type, 'fifo')
    assert.equal(byName(image.root, 'sock').type, 'socket')
    assert.equal(byName(image.root, 'sock').mode, 0o140755)
  })

  it('reads xattrs, owners and nanosecond times', () => {
    const attrs = byName(image.root, 'attrs')
    assert.deepEqual([...attrs.xattrs.keys()], ['user.a', 'security.capability', 'trusted.overlay.opaque'])
    assert.deepEqual(attrs.xattrs.get('user.a'), Uint8Array.from([0x31]))
    assert.deepEqual(attrs.xattrs.get('security.capability'), capability)
    assert.deepEqual(attrs.xattrs.get('trusted.overlay.opaque'), Uint8Array.from([0x79]))
    assert.equal(attrs.uid, 1000)
    assert.equal(attrs.gid, 1001)
    assert.equal(attrs.mtime, 1_700_000_000)
    assert.equal(attrs.mtimeNsec, 123_456_789)
    assert.deepEqual(attrs.chunks, [])
    // Values are copies: changing the bootstrap afterwards does not change the image.
    const copy = Uint8Array.from(layout.bytes)
    const again = readBootstrapV5(copy)
    copy.fill(0)
    assert.deepEqual(byName(again.root, 'attrs').xattrs.get('security.capability'), capability)
  })

  it('reads chunks of a sparse file across two blobs, compressed and not', () => {
    const sparse = byName(image.root, 'sparse')
    assert.deepEqual(sparse.chunks, [
      { blobIndex: 0, index: 0, digest: digestOf(1), compressedOffset: 0, compressedSize: 1000, uncompressedOffset: 0, uncompressedSize: CHUNK, fileOffset: 0, compressed: true },
      { blobIndex: 1, index: 1, digest: digestOf(2), compressedOffset: 500, compressedSize: CHUNK, uncompressedOffset: 4096, uncompressedSize: CHUNK, fileOffset: 2 * CHUNK, compressed: false },
      { blobIndex: 1, index: 2, digest: digestOf(3), compressedOffset: 4596, compressedSize: 100, uncompressedOffset: 8192, uncompressedSize: 100, fileOffset: 3 * CHUNK, compressed: false }
    ])
  })

  it('reads the prefetch table up to its terminating 0, as nodes', () => {
    assert.equal(image.prefetch.length, 2)
    assert.equal(image.prefetch[0], byName(image.root, 'zdir'))
    assert.equal(image.prefetch[1], byName(image.root, 'sparse'))
  })

  it('gives tree -J types for every kind of node; a link to a directory counts as one', () => {
    const [root, report] = treeJson(image)
    assert.deepEqual(root.contents?.map(e => [e.type, e.name]), [
      ['file', 'attrs'], ['block', 'dev-blk'], ['char', 'dev-chr'], ['fifo', 'fifo'], ['link', 'link'],
      ['socket', 'sock'], ['file', 'sparse'], ['directory', 'zdir']
    ])
    assert.deepEqual(root.contents?.[7], { type: 'directory', name: 'zdir', contents: [{ type: 'file', name: 'inner' }] })
    assert.deepEqual(report, { type: 'report', directories: 2, files: 7 })
  })

  it('takes the defaults Nydus takes when no compression or digest flag is set, and a missing extended table', () => {
    const spec = sample()
    spec.flags = 0
    spec.extended = false
    const bare = readBootstrapV5(buildV5(spec).bytes)
    assert.equal(bare.compressor, 'lz4_block')
    assert.equal(bare.digester, 'blake3')
    assert.equal(bare.explicitUidGid, false)
    assert.deepEqual(bare.blobs.map(b => [b.blobId, b.chunkCount, b.compressedSize, b.features]), [['a'.repeat(64), 0, 0, 0], ['blob-two.v1', 0, 0, 0]])
  })

  describe('refuses broken records with named errors', () => {
    /** Builds the sample with one inode changed. */
    function withInode (index: number, change: (inode: SynthInode) => void, imageChange?: (spec: SynthImage) => void): Uint8Array {
      const spec = sample()
      change(spec.inodes[index - 1])
      imageChange?.(spec)
      return buildV5(spec).bytes
    }

    it('a mode with no file type', () => {
      expectError(withInode(6, i => { i.mode = 0o644 }), RafsCorruptError, /ino 6: mode 0o644 has no known file type/)
    })
    it('a link count of 0', () => {
      expectError(withInode(6, i => { i.nlink = 0 }), RafsCorruptError, /ino 6: link count 0/)
    })
    it('two entries with one name', () => {
      expectError(withInode(6, i => { i.name = 'sock' }), RafsCorruptError, /two entries named "sock"/)
    })
    it('names no entry may have', () => {
      expectError(withInode(6, i => { i.name = '..' }), RafsCorruptError, /has the name "\.\."/)
      expectError(withInode(6, i => { i.name = 'a/b' }), RafsCorruptError, /has the name "a\/b"/)
      expectError(withInode(6, i => { i.name = '' }), RafsCorruptError, /name is 0 bytes/)
    })
    it('a symlink without a target', () => {
      expectError(withInode(8, i => { delete i.target; i.flags = 1 }), RafsCorruptError, /symlink with an empty target/)
    })
    it('hard-link copies that disagree', () => {
      expectError(withInode(7, i => { i.ino = 6 }), RafsCorruptError, /links ino 6 as socket .* earlier link has fifo/)
    })
    it('a directory that is also a file', () => {
      expectError(withInode(10, i => { i.ino = 2 }), RafsCorruptError, /links ino 2 as file/)
      // and the other way round: dev-blk becomes a directory numbered as the file before it, 'sparse'
      expectError(withInode(4, i => { i.ino = 3; i.mode = 0o40755 }), RafsCorruptError, /links ino 3 as directory mode 0o40755 size 0, but an earlier link has file/)
    })
    it('a chunk naming a blob that does not exist', () => {
      expectError(withInode(3, i => { (i.chunks ?? [])[1].blobIndex = 2 }), RafsOutOfRangeError, /ino 3, chunk 1 .*blob index 2, but the blob table has 2 blobs/)
    })
    it('chunks out of file order, overlapping, or past the file size', () => {
      expectError(withInode(3, i => { (i.chunks ?? [])[1].fileOffset = 100 }), RafsOutOfRangeError, /ino 3, chunk 1 .* overlap the previous chunk/)
      expectError(withInode(3, i => { i.size = 3 * CHUNK }), RafsOutOfRangeError, /ino 3, chunk 2 .* pass the file size 12288/)
    })
    it('a chunk larger than the chunk size, or stored at a size it cannot have', () => {
      expectError(withInode(3, i => { (i.chunks ?? [])[0].uncompressedSize = CHUNK + 1 }), RafsCorruptError, /uncompressed size 4097; expected 1\.\.4096/)
      expectError(withInode(3, i => { (i.chunks ?? [])[1].compressedSize = 10 }), RafsCorruptError, /stored size 10 for 4096 bytes stored as is/)
      expectError(withInode(3, i => { (i.chunks ?? [])[0].compressedSize = 0x7fff_0000 }), RafsCorruptError, /stored size 2147418112 for 4096 bytes compressed/)
    })
    it('a chunk outside its blob as the extended table sizes it', () => {
      expectError(withInode(3, i => { (i.chunks ?? [])[2].index = 3 }), RafsOutOfRangeError, /chunk index 3, but blob blob-two\.v1 has 3 chunks/)
      expectError(withInode(3, i => { (i.chunks ?? [])[2].compressedOffset = 4597 }), RafsOutOfRangeError, /pass the end of blob blob-two\.v1/)
    })
    it('encrypted or batch chunks', () => {
      expectError(withInode(3, i => { (i.chunks ?? [])[0].flags = 0x5 }), RafsUnsupportedError, /encrypted or batch/)
    })
    it('xattr pairs that run past their table', () => {
      const spec = sample()
      const bytes = buildV5(spec).bytes
      const at = buildV5(spec).recordOffsets[8] + 128 + 8 // attrs: header, name "attrs" padded to 8
      new DataView(bytes.buffer).setUint32(at + 8, 1000, true) // first pair's size
      expectError(bytes, RafsCorruptError, /ino 9: xattr pair at byte \d+ is 1000 bytes, past the table's end/)
    })
    it('a prefetch entry naming no inode of the tree', () => {
      expectError(withInode(1, () => {}, spec => { spec.prefetch = [2, 77] }), RafsOutOfRangeError, /prefetch table entry 1 .* names inode 77/)
    })
    it('a blob id that is not a plain name', () => {
      expectError(withInode(1, () => {}, spec => { spec.blobs[1].id = '../../etc/passwd' }), RafsCorruptError, /blob 1: id "\.\.\/\.\.\/etc\/passwd"/)
    })
    it('a blob table longer than its extended table', () => {
      const bytes = buildV5(sample()).bytes
      new DataView(bytes.buffer).setUint32(68, 1, true)
      expectError(bytes, RafsCorruptError, /names blob 1 \(blob-two\.v1\) but the extended blob table has only 1 entries/)
    })
    it('unknown, encrypted or TARFS superblock flags', () => {
      expectError(withInode(1, () => {}, spec => { spec.flags |= 0x400 }), RafsUnsupportedError, /unknown superblock flags 0x400 at byte 16/)
      expectError(withInode(1, () => {}, spec => { spec.flags |= 0x0200_0000 }), RafsUnsupportedError, /encrypted/)
      expectError(withInode(1, () => {}, spec => { spec.flags |= 0x200 }), RafsUnsupportedError, /TARFS/)
      // The reserved compatible bits are accepted.
      assert.equal(readBootstrapV5(withInode(1, () => {}, spec => { spec.flags = (spec.flags | 0x8000_0000) >>> 0 })).compressor, 'lz4_block')
    })
    it('a root that is not a directory', () => {
      expectError(withInode(1, i => { i.mode = 0o100644 }), RafsCorruptError, /root .* is a file, not a directory/)
    })
    it('a directory that is a child of two directories', () => {
      // zdir's child range moved to index 9, which is already one of the root's children.
      expectError(withInode(2, i => { i.childIndex = 9 }), RafsCorruptError, /table index 9 is already another directory's child/)
    })
    it('records that overlap each other, before their cost grows past the buffer', () => {
      // Three symlinks whose records nest inside one another's 60000-byte targets.
      const spec: SynthImage = {
        flags: RafsV5SuperFlags.COMPRESSION_NONE | RafsV5SuperFlags.HASH_SHA256,
        blobs: [],
        inodes: [
          { ino: 1, parent: 0, mode: 0o40755, name: '/', childIndex: 2, childCount: 3 },
          { ino: 2, parent: 1, mode: 0o120777, name: 'a', target: 'x'.repeat(60000) },
          { ino: 3, parent: 1, mode: 0o120777, name: 'b', target: 'y' },
          { ino: 4, parent: 1, mode: 0o120777, name: 'c', target: 'z' }
        ]
      }
      const { bytes, recordOffsets, inodeTableOffset } = buildV5(spec)
      const dv = new DataView(bytes.buffer)
      for (const [index, shift] of [[3, 136], [4, 272]]) {
        const at = recordOffsets[1] + shift
        const inode = spec.inodes[index - 1]
        writeInodeHeader(bytes, at, { ...inode, target: undefined, flags: 1 }, 1, 60000 - shift)
        bytes[at + 128] = (inode.name as string).charCodeAt(0)
        dv.setUint32(inodeTableOffset + (index - 1) * 4, at / 8, true)
      }
      expectError(bytes, RafsCorruptError, /inode records overlap/)
    })
    it('a directory whose children include itself', () => {
      expectError(withInode(2, i => { i.childIndex = 2; i.childCount = 1 }), RafsLoopError, /directory ino 2 .* the directory itself or its ancestor/)
    })
  })
})
