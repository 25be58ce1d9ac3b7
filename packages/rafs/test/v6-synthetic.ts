/**
 * A made-up image for the v6 tests: every node type, xattrs of each namespace, long and
 * multi-byte names, a directory of several dirent blocks, hard links, holes, files of several
 * chunks in two blobs, and a path `depth` directories deep.
 */
import { createHash } from 'node:crypto'
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK } from '../src/index.js'
import type { RafsBlob, RafsChunk, RafsImage, RafsNode, RafsNodeType } from '../src/index.js'

export const MiB = 1024 * 1024

/** A made-up blob with chunks at 4 KiB-aligned uncompressed offsets. */
export class FakeBlob {
  chunks: RafsChunk[] = []
  end = 0
  constructor (readonly blobIndex: number) {}

  chunk (size: number, seed: string, compressed = true): RafsChunk {
    const chunk: RafsChunk = {
      blobIndex: this.blobIndex,
      index: this.chunks.length,
      digest: createHash('sha256').update(seed).digest(),
      compressedOffset: this.end,
      compressedSize: compressed ? Math.ceil(size / 3) : size,
      uncompressedOffset: this.end,
      uncompressedSize: size,
      fileOffset: 0,
      compressed
    }
    this.chunks.push(chunk)
    this.end += Math.ceil(size / 4096) * 4096
    return chunk
  }

  blob (id: string): RafsBlob {
    return {
      index: this.blobIndex,
      blobId: id,
      compressor: 'zstd',
      digester: 'sha256',
      chunkSize: MiB,
      chunkCount: this.chunks.length,
      compressedSize: this.end,
      uncompressedSize: this.end,
      meta: { compressedOffset: this.end, compressedSize: this.chunks.length * 16, uncompressedSize: this.chunks.length * 16, compressor: 'none', entrySize: 16, tocSize: 512 },
      features: 0x70000021
    }
  }
}

const TYPE_BITS: Record<RafsNodeType, number> = { file: S_IFREG, directory: S_IFDIR, symlink: S_IFLNK, char: S_IFCHR, block: S_IFBLK, fifo: S_IFIFO, socket: S_IFSOCK }

export function node (type: RafsNodeType, extra: Partial<RafsNode> = {}): RafsNode {
  return {
    ino: 0,
    type,
    mode: TYPE_BITS[type] | (type === 'directory' ? 0o755 : 0o644),
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 1_700_000_000,
    mtimeNsec: 123_456_789,
    nlink: type === 'directory' ? 2 : 1,
    rdev: 0,
    xattrs: new Map(),
    ...(type === 'directory' ? { entries: [] } : {}),
    ...(type === 'file' ? { chunks: [] } : {}),
    ...extra
  }
}

export function dir (entries: Record<string, RafsNode>, extra: Partial<RafsNode> = {}): RafsNode {
  const names = Object.keys(entries).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
  return node('directory', { entries: names.map(name => ({ name, node: entries[name] })), ...extra })
}

export function fileOf (blob: FakeBlob, size: number, seed: string, skip: number[] = []): RafsNode {
  const chunks: RafsChunk[] = []
  for (let at = 0, i = 0; at < size; at += MiB, i++) {
    if (skip.includes(i)) continue
    chunks.push({ ...blob.chunk(Math.min(MiB, size - at), `${seed}/${i}`, i % 2 === 0), fileOffset: at })
  }
  return node('file', { size, chunks })
}

/** A tree with every node type, xattrs, long names, a many-block directory, hard links, holes and a deep path. */
export function syntheticImage (depth = 400): { image: RafsImage, shared: RafsNode, deepPath: string } {
  const b0 = new FakeBlob(0)
  const b1 = new FakeBlob(1)
  const shared = fileOf(b0, 5000, 'shared')
  shared.nlink = 3
  shared.xattrs.set('user.linked', Buffer.from('yes'))
  const many: Record<string, RafsNode> = {}
  for (let i = 0; i < 700; i++) many[`file-number-${String(i).padStart(5, '0')}-${'q'.repeat(i % 37)}`] = node('file', { mtime: 0, mtimeNsec: 0 })
  many['link-here'] = shared
  let deep: RafsNode = dir({ bottom: node('symlink', { target: '../'.repeat(10), size: 30 }) })
  let deepPath = '/bottom'
  for (let i = depth - 1; i >= 0; i--) {
    deep = dir({ [`level-${i}`]: deep })
    deepPath = `/level-${i}${deepPath}`
  }
  deepPath = `/deep${deepPath}`
  const longTarget = 'x/'.repeat(2000) + 'y'
  const root = dir({
    '!before-dot': node('file', { mode: S_IFREG | 0o600 }),
    '-dash': node('fifo'),
    'empty-file': node('file', { size: 0, chunks: [] }),
    'small-file': fileOf(b0, 100, 'small'),
    'three-chunks': fileOf(b0, 2 * MiB + 77, 'three'),
    'contiguous-big': fileOf(b1, 5 * MiB, 'big'),
    'with-hole': fileOf(b1, 4 * MiB, 'hole', [1, 2]),
    shared,
    [`${'n'.repeat(250)}.long`]: node('file', { uid: 70000, gid: 80000 }),
    'ünïcødé-名前': node('file'),
    symlink: node('symlink', { target: 'small-file', size: 10 }),
    'long-symlink': node('symlink', { target: longTarget, size: longTarget.length }),
    'max-symlink': node('symlink', { target: 'z'.repeat(4095), size: 4095 }),
    char: node('char', { rdev: (1 << 8) | 3, mode: S_IFCHR | 0o666 }),
    block: node('block', { rdev: ((300000 & 0xff) | (259 << 8) | ((300000 & ~0xff) << 12)) >>> 0, mode: S_IFBLK | 0o660 }),
    socket: node('socket', { mode: S_IFSOCK | 0o777 }),
    compact: node('file', { mtime: 0, mtimeNsec: 0, uid: 7, gid: 8 }),
    many: dir(many, { mtime: 0, mtimeNsec: 0, xattrs: new Map([['user.dir', Buffer.from('many')]]) }),
    sub: dir({ 'other-link': shared, 'third-link': shared }, { mode: S_IFDIR | 0o1777, xattrs: new Map([['trusted.overlay.opaque', Buffer.from('y')]]) }),
    xattrs: node('file', {
      xattrs: new Map<string, Uint8Array>([
        ['user.a', Buffer.from('1')],
        ['user.empty', new Uint8Array(0)],
        ['security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex')],
        ['security.selinux', Buffer.from('system_u:object_r:bin_t:s0\0')],
        ['trusted.big', Buffer.alloc(2000, 7)],
        // A valid minimal ACL (user::rw- group::r-- other::r--): the kernel parses it.
        ['system.posix_acl_access', Buffer.from('02000000' + '01000600ffffffff' + '04000400ffffffff' + '20000400ffffffff', 'hex')]
      ])
    }),
    deep
  })
  root.xattrs.set('user.root', Buffer.from('r'))
  const image: RafsImage = {
    version: 6,
    chunkSize: MiB,
    compressor: 'zstd',
    digester: 'sha256',
    blobs: [b0.blob('a'.repeat(64)), b1.blob('b'.repeat(64))],
    root,
    prefetch: [root.entries?.find(e => e.name === 'three-chunks')?.node as RafsNode, shared],
    inodeCount: 0
  }
  return { image, shared, deepPath }
}
