import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import {
  closeSync, existsSync, linkSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync,
  symlinkSync, writeFileSync, writeSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync, zstdCompressSync } from 'node:zlib'
import { decodeChunk, readBootstrapV6, type Compressor, type RafsImage, type RafsNode } from '@shoal/rafs'
import { buildImage, buildFromDirectory, type BlobSink, type BuildProgressEvent } from '../src/index.js'
import { tarArchive, tarEntry, inPieces, type TestEntry } from './tar-writer.js'
import { listing, lookup } from './helpers.js'
import { nydusFixtures } from '@shoal/interface/test-fixtures'

const FIXTURES = join(nydusFixtures(), 'tar')

/** Blob files in `dir`, named by blob id once complete; `discarded` counts layers without a blob. */
function fileSink (dir: string): { sink: BlobSink, discarded: number[] } {
  const discarded: number[] = []
  const sink: BlobSink = (layerIndex) => {
    const temp = join(dir, `layer-${layerIndex}.partial`)
    const fd = openSync(temp, 'w')
    return {
      write: (bytes) => {
        for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done)
      },
      close: (blob) => { closeSync(fd); renameSync(temp, join(dir, blob.blobId)) },
      discard: () => { closeSync(fd); rmSync(temp); discarded.push(layerIndex) }
    }
  }
  return { sink, discarded }
}

/** Every regular file of the image, read back through its blobs and verified chunk by chunk. */
function readFiles (image: RafsImage, blobDir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  const fds = new Map<number, number>()
  const visit = (dir: RafsNode, prefix: string): void => {
    for (const { name, node } of dir.entries ?? []) {
      const path = `${prefix}/${name}`
      if (node.type === 'directory') visit(node, path)
      if (node.type !== 'file') continue
      const data = Buffer.alloc(node.size)
      for (const chunk of node.chunks ?? []) {
        const blob = image.blobs[chunk.blobIndex]
        let fd = fds.get(chunk.blobIndex)
        if (fd === undefined) { fd = openSync(join(blobDir, blob.blobId), 'r'); fds.set(chunk.blobIndex, fd) }
        const stored = Buffer.alloc(chunk.compressedSize)
        readSync(fd, stored, 0, stored.length, chunk.compressedOffset)
        data.set(decodeChunk(stored, chunk, blob), chunk.fileOffset)
      }
      out.set(path, data)
    }
  }
  try {
    visit(image.root, '')
  } finally {
    for (const fd of fds.values()) closeSync(fd)
  }
  return out
}

function withTempDir<T> (fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'builder-build-'))
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }))
}

const big = randomBytes(3 * 4096 + 123)
const shared = randomBytes(2 * 4096)

function threeLayers (): TestEntry[][] {
  return [
    [{ name: './', type: '5', mode: 0o755 }, { name: 'etc/', type: '5' }, { name: 'etc/passwd', data: 'root:x:0:0::/root:/bin/sh\n' },
      { name: 'bin/', type: '5' }, { name: 'bin/big', data: big, mode: 0o755 }, { name: 'bin/alias', type: '1', linkname: 'bin/big' },
      { name: 'opt/', type: '5' }, { name: 'opt/old', data: 'old' }, { name: 'gone', data: shared }],
    [{ name: 'etc/.wh.passwd' }, { name: 'opt/', type: '5' }, { name: 'opt/.wh..wh..opq' }, { name: 'opt/new', data: 'new' },
      { name: 'lib/', type: '5' }, { name: 'lib/copy', data: shared }, { name: 'lib/sym', type: '2', linkname: '/bin/big' },
      { name: 'dev/', type: '5' }, { name: 'dev/null', type: '3', devmajor: 1, devminor: 3, mode: 0o666 }],
    [{ name: 'etc/passwd', data: 'root:x:0:0::/root:/bin/bash\n', pax: { 'SCHILY.xattr.user.note': 'third' } }, { name: '.wh.gone' },
      { name: 'bin/big', data: big }]
  ]
}

const expectedFiles = new Map<string, Buffer>([
  ['/bin/alias', big], ['/bin/big', big], ['/etc/passwd', Buffer.from('root:x:0:0::/root:/bin/bash\n')], ['/lib/copy', shared], ['/opt/new', Buffer.from('new')]
])

for (const compressor of ['zstd', 'lz4_block', 'none'] as Compressor[]) {
  test(`round trip (${compressor}): three layers (tar, tar+gzip, tar+zstd) build, read back with readBootstrapV6, and every file's bytes come back`, async () => {
    await withTempDir(async (dir) => {
      const [l0, l1, l2] = threeLayers().map(entries => tarArchive(entries))
      const { sink, discarded } = fileSink(dir)
      const events: BuildProgressEvent[] = []
      const result = await buildImage({
        layers: [inPieces(l0, 777), inPieces(gzipSync(l1), 333), inPieces(zstdCompressSync(l2), 100)],
        chunkSize: 4096,
        compressor,
        blobSink: sink
      }, { onProgress: e => events.push(e) })
      const image = readBootstrapV6(result.bootstrap)
      assert.deepEqual(listing(image.root), [
        '/bin directory', '/bin/alias file', '/bin/big file', '/dev directory', '/dev/null char', '/etc directory', '/etc/passwd file',
        '/lib directory', '/lib/copy file', '/lib/sym symlink', '/opt directory', '/opt/new file'
      ])
      const files = readFiles(image, dir)
      assert.deepEqual([...files.keys()].sort(), [...expectedFiles.keys()].sort())
      for (const [path, data] of expectedFiles) assert.ok(files.get(path)?.equals(data), `${path} reads back equal`)
      // bin/big of layer 2 replaces the hard-linked original: /bin/alias keeps the layer-0 inode.
      assert.notEqual(lookup(image.root, 'bin/big')!.ino, lookup(image.root, 'bin/alias')!.ino)
      assert.equal(lookup(image.root, 'lib/sym')!.target, '/bin/big')
      assert.equal(Buffer.from(lookup(image.root, 'etc/passwd')!.xattrs.get('user.note') ?? []).toString(), 'third')
      // Layer 2 only adds the new passwd: big and the whited-out lines are already stored.
      assert.equal(result.layers[1].newChunks, 1, 'layer 1 stores only opt/new; lib/copy dedups against layer 0')
      assert.equal(result.layers[1].dedupChunks, 2)
      assert.equal(result.layers[2].newChunks, 1)
      assert.equal(result.layers[2].dedupChunks, 4)
      assert.deepEqual(discarded, [])
      // Blob ids are the sha256 of the blob files, and the table lists them in layer order.
      assert.deepEqual(image.blobs.map(b => b.blobId), result.layers.map(l => l.blob!.blobId))
      for (const layer of result.layers) {
        const bytes = readFileSync(join(dir, layer.blob!.blobId))
        assert.equal(createHash('sha256').update(bytes).digest('hex'), layer.blob!.blobId)
        assert.equal(bytes.length, layer.blob!.fileSize)
        assert.equal(layer.blob!.chunkCount, layer.newChunks)
      }
      assert.deepEqual(events.filter(e => e.type === 'builder:layer-done').map(e => (e.detail as { layerIndex: number }).layerIndex), [0, 1, 2])
      assert.equal(events.at(-1)?.type, 'builder:bootstrap-done')
    })
  })
}

test('a layer that adds no new chunk writes no blob; the fixtures all-entry-type.tar and empty.tar build', async () => {
  await withTempDir(async (dir) => {
    const { sink, discarded } = fileSink(dir)
    const data = randomBytes(10000)
    const result = await buildImage({
      layers: [join(FIXTURES, 'all-entry-type.tar'), join(FIXTURES, 'empty.tar'), inPieces(tarArchive([{ name: 'x', data }]), 512), inPieces(tarArchive([{ name: 'y', data }]), 512)],
      chunkSize: 4096,
      blobSink: sink
    })
    assert.deepEqual(discarded, [1, 3])
    assert.equal(result.layers[1].blob, undefined)
    assert.equal(result.layers[3].blob, undefined)
    assert.deepEqual(result.layers.map(l => l.blob?.blobIndex), [0, undefined, 1, undefined])
    assert.deepEqual(readdirSync(dir).sort(), [result.layers[0].blob!.blobId, result.layers[2].blob!.blobId].sort())
    const image = readBootstrapV6(result.bootstrap)
    const files = readFiles(image, dir)
    assert.equal(files.get('/tar/dir2/hardlink3.txt')?.toString(), 'This is a test\n')
    assert.ok(files.get('/x')?.equals(data))
    assert.ok(files.get('/y')?.equals(data))
    assert.equal(lookup(image.root, 'tar/dir1/dir3/hardlink1.txt')!.nlink, 4)
  })
})

test('a chunk dictionary (an earlier image) makes a layer store nothing it knows; files read through the old blob', async () => {
  await withTempDir(async (dir) => {
    const data = randomBytes(5 * 4096)
    const first = await buildImage({ layers: [inPieces(tarArchive([{ name: 'app/lib.so', data }]), 4096)], chunkSize: 4096, blobSink: fileSink(dir).sink })
    const dict = readBootstrapV6(first.bootstrap)
    const { sink, discarded } = fileSink(dir)
    const second = await buildImage({
      layers: [inPieces(tarArchive([{ name: 'other/place.so', data }, { name: 'new.txt', data: 'new' }]), 4096), inPieces(tarArchive([{ name: 'again.so', data }]), 4096)],
      chunkSize: 4096,
      chunkDict: dict,
      blobSink: sink
    })
    assert.deepEqual([second.layers[0].newChunks, second.layers[0].dedupChunks], [1, 5])
    assert.deepEqual(discarded, [1])
    const image = readBootstrapV6(second.bootstrap)
    assert.deepEqual(image.blobs.map(b => b.blobId), [first.layers[0].blob!.blobId, second.layers[0].blob!.blobId])
    const files = readFiles(image, dir)
    assert.ok(files.get('/other/place.so')?.equals(data))
    assert.ok(files.get('/again.so')?.equals(data))
    assert.equal(files.get('/new.txt')?.toString(), 'new')
    await assert.rejects(buildImage({ layers: [], chunkSize: 8192, chunkDict: dict, blobSink: sink }), /chunk dictionary has 4096-byte chunks/)
  })
})

test('prefetch files become the image prefetch inodes, in order; missing paths are reported', async () => {
  await withTempDir(async (dir) => {
    const result = await buildImage({
      layers: [inPieces(tarArchive([{ name: 'usr/bin/python3', data: 'py' }, { name: 'etc/hosts', data: 'h' }, { name: 'lib/', type: '5' }]), 512)],
      chunkSize: 4096,
      prefetchFiles: ['/etc/hosts', 'usr/bin/python3', '/nope', '/lib', '/etc/hosts'],
      blobSink: fileSink(dir).sink
    })
    assert.deepEqual(result.missingPrefetch, ['/nope'])
    const image = readBootstrapV6(result.bootstrap)
    const expected = ['etc/hosts', 'usr/bin/python3', 'lib'].map(p => lookup(image.root, p)!.ino)
    assert.deepEqual(image.prefetch.map(n => n.ino), expected)
  })
})

test('buildFromDirectory: files, hard links, symlinks, fifos, empty files and nested dirs; fsck.erofs accepts the result', async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src')
    const blobs = join(dir, 'blobs')
    mkdirSync(join(src, 'a/b/c'), { recursive: true })
    mkdirSync(blobs)
    const contents = new Map<string, Buffer>([
      ['/a/file', randomBytes(9000)], ['/a/b/c/deep', randomBytes(100)], ['/empty', Buffer.alloc(0)], ['/top', Buffer.from('top')]
    ])
    for (const [path, data] of contents) writeFileSync(join(src, path), data)
    linkSync(join(src, 'a/file'), join(src, 'a/b/hard'))
    symlinkSync('../outside/of/root', join(src, 'a/link'))
    execFileSync('mkfifo', [join(src, 'fifo')])
    const result = await buildFromDirectory(src, { chunkSize: 4096, compressor: 'none', blobSink: fileSink(blobs).sink })
    const image = readBootstrapV6(result.bootstrap)
    assert.deepEqual(listing(image.root), [
      '/a directory', '/a/b directory', '/a/b/c directory', '/a/b/c/deep file', '/a/b/hard file', '/a/file file', '/a/link symlink',
      '/empty file', '/fifo fifo', '/top file'
    ])
    const files = readFiles(image, blobs)
    for (const [path, data] of contents) assert.ok(files.get(path)?.equals(data), path)
    assert.ok(files.get('/a/b/hard')?.equals(contents.get('/a/file')!))
    assert.equal(lookup(image.root, 'a/b/hard')!.ino, lookup(image.root, 'a/file')!.ino)
    assert.equal(lookup(image.root, 'a/link')!.target, '../outside/of/root')

    // With compressor none, the blob file is the EROFS device of the bootstrap as it is.
    const boot = join(dir, 'image.boot')
    writeFileSync(boot, result.bootstrap)
    const blobPath = join(blobs, result.layers[0].blob!.blobId)
    const out = join(dir, 'extracted')
    execFileSync('fsck.erofs', [`--device=${blobPath}`, `--extract=${out}`, boot], { stdio: 'pipe' })
    for (const [path, data] of contents) assert.ok(readFileSync(join(out, path)).equals(data), `fsck.erofs extracted ${path}`)
    assert.ok(existsSync(join(out, 'a/b/c')))
  })
})

test('memory stays flat while a ~300 MB layer builds into a zstd blob on disk', async (t) => {
  await withTempDir(async (dir) => {
    const fileSize = 300 * 1024 * 1024
    const piece = 1024 * 1024
    let counter = 0
    async function * layer (): AsyncGenerator<Uint8Array> {
      yield tarEntry({ name: 'big.bin', sizeOverride: fileSize })
      for (let sent = 0; sent < fileSize; sent += piece) {
        const buf = randomBytes(piece) // incompressible and unique: every chunk is stored
        buf.writeUInt32LE(counter++, 0)
        yield buf
      }
      yield new Uint8Array(1024)
    }
    const before = process.memoryUsage().rss
    let peak = before
    const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 20)
    let result
    try {
      result = await buildImage({ layers: [layer()], blobSink: fileSink(dir).sink })
    } finally {
      clearInterval(sampler)
    }
    peak = Math.max(peak, process.memoryUsage().rss)
    const growth = (peak - before) / (1024 * 1024)
    t.diagnostic(`rss grew by ${growth.toFixed(1)} MB`)
    assert.equal(result.layers[0].blob!.chunkCount, 300)
    assert.ok(result.layers[0].blob!.fileSize > fileSize)
    assert.ok(growth < 150, `rss grew by ${growth.toFixed(1)} MB`)
  })
})

test('an abort mid-layer rejects with AbortError and discards the partial blob', async () => {
  await withTempDir(async (dir) => {
    const controller = new AbortController()
    async function * layer (): AsyncGenerator<Uint8Array> {
      yield tarEntry({ name: 'f', sizeOverride: 64 * 4096 })
      for (let i = 0; i < 64; i++) {
        if (i === 10) controller.abort()
        yield randomBytes(4096)
      }
      yield new Uint8Array(1024)
    }
    const { sink, discarded } = fileSink(dir)
    await assert.rejects(buildImage({ layers: [layer()], chunkSize: 4096, blobSink: sink }, { signal: controller.signal }), { name: 'AbortError' })
    assert.deepEqual(discarded, [0])
    assert.deepEqual(readdirSync(dir), [])
  })
})

test('a layer written by GNU tar (--format=gnu, gzip) with a sparse file builds and reads back', async () => {
  await withTempDir(async (dir) => {
    const src = join(dir, 'src')
    mkdirSync(join(src, 'd'), { recursive: true })
    const head = randomBytes(5000)
    const fd = openSync(join(src, 'd/sparse'), 'w')
    writeSync(fd, head, 0, head.length, 3 << 20)
    closeSync(fd)
    execFileSync('truncate', ['-s', String(6 << 20), join(src, 'd/sparse')])
    writeFileSync(join(src, 'd/plain'), 'plain')
    const layerPath = join(dir, 'layer.tar.gz')
    execFileSync('tar', ['-c', '-z', '-S', '--format=gnu', '-f', layerPath, '-C', src, '.'])
    const blobs = join(dir, 'blobs')
    mkdirSync(blobs)
    const result = await buildImage({ layers: [layerPath], blobSink: fileSink(blobs).sink })
    const files = readFiles(readBootstrapV6(result.bootstrap), blobs)
    assert.equal(files.get('/d/sparse')?.length, 6 << 20)
    assert.ok(files.get('/d/sparse')?.equals(readFileSync(join(src, 'd/sparse'))))
    assert.equal(files.get('/d/plain')?.toString(), 'plain')
    // Six 1 MiB chunks, five of them wholly in holes: those are left out as gaps.
    assert.equal(result.layers[0].newChunks, 2)
    const image = readBootstrapV6(result.bootstrap)
    assert.deepEqual(lookup(image.root, 'd/sparse')!.chunks!.map(c => c.fileOffset), [3 << 20])
  })
})
