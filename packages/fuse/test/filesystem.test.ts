/** The FUSE operations of an image without a mount: errno for every case, EIO for failed reads, bounded reads. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { RafsImage, RafsNode } from '@shoal/rafs'
import { Errno, Limiter, RafsFilesystem, type MountDevice } from '../src/index.js'

function node (partial: Partial<RafsNode> & Pick<RafsNode, 'type' | 'mode'>): RafsNode {
  return { ino: 0, uid: 0, gid: 0, size: 0, mtime: 1_700_000_000, mtimeNsec: 123_456_789, nlink: 1, rdev: 0, xattrs: new Map(), ...partial }
}

const file = node({ ino: 3, type: 'file', mode: 0o100644, size: 10_000, chunks: [{ blobIndex: 0, index: 0, digest: new Uint8Array(32), compressedOffset: 0, compressedSize: 4096, uncompressedOffset: 0, uncompressedSize: 4096, fileOffset: 0, compressed: false }], xattrs: new Map([['user.a', new Uint8Array([1, 2, 3])]]) })
const link = node({ ino: 4, type: 'symlink', mode: 0o120777, size: 4, target: 'file' })
const dev = node({ ino: 5, type: 'char', mode: 0o20644, rdev: (1 << 8) | 3 })
const dir = node({ ino: 2, type: 'directory', mode: 0o40755, nlink: 2, entries: [{ name: 'dev', node: dev }, { name: 'file', node: file }, { name: 'link', node: link }] })
const root = node({ ino: 1, type: 'directory', mode: 0o40755, nlink: 3, entries: [{ name: 'dir', node: dir }] })
const image: RafsImage = { version: 6, chunkSize: 4096, compressor: 'none', digester: 'sha256', blobs: [], root, prefetch: [], inodeCount: 5 }

function device (read: MountDevice['readFile']): MountDevice {
  return { image, readFile: read, readBlob: async () => new Uint8Array() }
}

async function call<T> (fn: (cb: (errno: number, value?: T) => void) => void): Promise<[number, T | undefined]> {
  return await new Promise(resolve => { fn((errno, value) => { resolve([errno, value]) }) })
}

test('lookup, getattr, readdir, readlink and xattrs answer from the bootstrap with the right errno', async () => {
  const ops = new RafsFilesystem(device(async () => new Uint8Array())).operations()
  const [e1, st] = await call<any>(cb => { ops.getattr('/dir/file', cb) })
  assert.equal(e1, 0)
  assert.equal(st.ino, 3)
  assert.equal(st.mode, 0o100644)
  assert.equal(st.mtime, 1_700_000_000_123)
  assert.equal(st.blocks, 8, 'one 4 KiB chunk stored: 8 sectors, the rest is a hole')
  assert.equal((await call<any>(cb => { ops.getattr('/dir/dev', cb) }))[1].rdev, (1 << 8) | 3)
  assert.equal((await call(cb => { ops.getattr('/dir/missing', cb) }))[0], Errno.ENOENT)
  assert.equal((await call(cb => { ops.getattr('/dir/file/below', cb) }))[0], Errno.ENOTDIR)
  assert.deepEqual((await call<string[]>(cb => { ops.readdir!('/dir', cb) }))[1], ['.', '..', 'dev', 'file', 'link'])
  assert.equal((await call(cb => { ops.readdir!('/dir/file', cb) }))[0], Errno.ENOTDIR)
  assert.deepEqual(await call(cb => { ops.readlink!('/dir/link', cb) }), [0, 'file'])
  assert.equal((await call(cb => { ops.readlink!('/dir/file', cb) }))[0], Errno.EINVAL)
  assert.deepEqual((await call<Uint8Array>(cb => { ops.getxattr!('/dir/file', 'user.a', cb) }))[1], new Uint8Array([1, 2, 3]))
  assert.equal((await call(cb => { ops.getxattr!('/dir/file', 'user.none', cb) }))[0], Errno.ENODATA)
  assert.deepEqual((await call(cb => { ops.listxattr!('/dir/file', cb) }))[1], ['user.a'])
  assert.equal((await call(cb => { ops.open!('/dir/file', 1 /* O_WRONLY */, cb) }))[0], Errno.EROFS)
  for (const name of ['write', 'unlink', 'mkdir', 'rename', 'setxattr', 'chmod', 'truncate']) {
    const errno = await new Promise<number>(resolve => { (ops[name] as (...a: unknown[]) => void)('/dir/file', 0, 0, resolve) })
    assert.equal(errno, Errno.EROFS, name)
  }
})

test('reads: bytes from the device, EIO when it fails, clipped at EOF, never more than asked', async () => {
  let failing = false
  const fs = new RafsFilesystem(device(async (_n, offset, length) => {
    if (failing) throw new Error('digest mismatch')
    return new Uint8Array(length).fill(offset % 251)
  }), { logger: () => {} })
  const buffer = Buffer.alloc(8192)
  assert.equal(await fs.read(file, buffer, 8192, 0), 8192)
  assert.equal(await fs.read(file, buffer, 8192, 8192), 10_000 - 8192)
  assert.equal(await fs.read(file, buffer, 8192, 10_000), 0)
  assert.equal(await fs.read(dir, buffer, 10, 0), Errno.EISDIR)
  failing = true
  assert.equal(await fs.read(file, buffer, 100, 0), Errno.EIO)
  assert.equal(fs.counters.readErrors, 1)
  const liar = new RafsFilesystem(device(async (_n, _o, length) => new Uint8Array(length + 1)), { logger: () => {} })
  assert.equal(await liar.read(file, buffer, 100, 0), Errno.EIO, 'a device that returns too much is an error, not an overrun')
  const closed = new RafsFilesystem(device(async (_n, _o, length) => new Uint8Array(length)))
  closed.close()
  assert.equal(await closed.read(file, buffer, 100, 0), Errno.EIO)
})

test('a slow read times out with EIO instead of hanging its caller', async () => {
  const fs = new RafsFilesystem(device(async (_n, _o, _l, options) => await new Promise((_resolve, reject) => {
    options?.signal?.addEventListener('abort', () => { reject(options.signal?.reason) })
  })), { readTimeoutMs: 50, logger: () => {} })
  assert.equal(await fs.read(file, Buffer.alloc(10), 10, 0), Errno.EIO)
})

test('the limiter runs at most N tasks at once, in arrival order', async () => {
  const limiter = new Limiter(3)
  let running = 0
  let peak = 0
  const order: number[] = []
  await Promise.all(Array.from({ length: 20 }, async (_, i) => await limiter.run(async () => {
    running++
    peak = Math.max(peak, running)
    order.push(i)
    await new Promise(resolve => setTimeout(resolve, 2))
    running--
  })))
  assert.equal(peak, 3)
  assert.deepEqual(order, Array.from({ length: 20 }, (_, i) => i))
  assert.equal(limiter.active, 0)
})
