import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BlobWriter, readBlobMeta, readBootstrapV6, writeBootstrapV6, S_IFDIR, S_IFREG, type RafsImage } from '../src/index.js'

// The blob.meta location a v6 bootstrap records must lead readBlobMeta to the table, for chunk
// info v1 (16-byte entries) and v2 (24-byte entries) alike.
for (const chunkInfoVersion of [1, 2] as const) {
  test(`a v6 bootstrap's blob.meta location reads back the chunk info v${chunkInfoVersion} table`, () => {
    const parts: Uint8Array[] = []
    const writer = new BlobWriter({ compressor: 'zstd', digester: 'sha256', chunkSize: 4096, chunkInfoVersion, write: b => { parts.push(Buffer.from(b)) } })
    const data = Buffer.alloc(3 * 4096 + 100, 'shoal')
    const chunks = []
    for (let offset = 0; offset < data.length; offset += 4096) {
      chunks.push({ ...writer.addChunk(data.subarray(offset, offset + 4096)), fileOffset: offset })
    }
    const done = writer.finish()
    const now = 1_700_000_000
    const file = { ino: 2, type: 'file' as const, mode: S_IFREG | 0o644, uid: 0, gid: 0, size: data.length, mtime: now, mtimeNsec: 0, nlink: 1, rdev: 0, xattrs: new Map(), chunks }
    const image: RafsImage = {
      version: 6,
      chunkSize: 4096,
      compressor: 'zstd',
      digester: 'sha256',
      blobs: [{ ...done.blob, index: 0 }],
      root: { ino: 1, type: 'directory', mode: S_IFDIR | 0o755, uid: 0, gid: 0, size: 0, mtime: now, mtimeNsec: 0, nlink: 2, rdev: 0, xattrs: new Map(), entries: [{ name: 'f', node: file }] },
      prefetch: [],
      inodeCount: 2
    }
    const read = readBootstrapV6(writeBootstrapV6(image))
    const location = read.blobs[0].meta
    assert.ok(location != null)
    const meta = readBlobMeta(Buffer.concat(parts), { location })
    assert.equal(meta.chunks.length, 4)
    assert.deepEqual(meta.chunks.map(c => c.uncompressedSize), [4096, 4096, 4096, 100])
  })
}
