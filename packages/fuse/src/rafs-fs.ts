/**
 * Mode `fuse`: the image's tree served by FUSE, metadata from the bootstrap, file bytes from the
 * device. Read-only, every byte verified by the device or the read fails with EIO.
 */
import type { RafsNode } from '@shoal/rafs'
import { Errno, type FuseOperations, type FuseStat, type FuseStatfs } from './fuse-native.js'
import type { MountDevice, MountLogger } from './device.js'
import { Limiter, ReadDeadlines } from './limiter.js'

export interface RafsFilesystemOptions {
  /** Device reads in flight at once; more wait. Default 16. */
  concurrency?: number
  /** A read that takes longer fails with EIO instead of hanging its caller. Default 120 s. */
  readTimeoutMs?: number
  logger?: MountLogger
  /** Owner for v5 images that recorded none (Nydus shows its own uid and gid). Default this process's. */
  defaultOwner?: { uid: number, gid: number }
}

const O_ACCMODE = 3
const O_RDONLY = 0
const BLOCK_SIZE = 4096
const MAX_PATH_DEPTH = 4096

const WRITE_OPERATIONS = [
  'write', 'create', 'truncate', 'ftruncate', 'unlink', 'rename', 'link', 'symlink', 'mkdir', 'rmdir',
  'chmod', 'chown', 'utimens', 'mknod', 'setxattr', 'removexattr'
]

/** The FUSE operations of one image; usable without a mount (unit tests call them directly). */
export class RafsFilesystem {
  private readonly children = new WeakMap<RafsNode, Map<string, RafsNode>>()
  private readonly handles = new Map<number, RafsNode>()
  private nextHandle = 1
  private readonly limiter: Limiter
  private readonly readTimeoutMs: number
  private readonly deadlines: ReadDeadlines
  private closed = false
  private readonly owner: { uid: number, gid: number } | undefined
  private readonly log: MountLogger
  /** Reads that failed (EIO) and bytes served, for reports. */
  readonly counters = { reads: 0, bytes: 0, readErrors: 0 }

  constructor (private readonly device: MountDevice, options: RafsFilesystemOptions = {}) {
    this.limiter = new Limiter(options.concurrency ?? 16)
    this.readTimeoutMs = options.readTimeoutMs ?? 120_000
    this.deadlines = new ReadDeadlines(this.readTimeoutMs)
    this.log = options.logger ?? (() => {})
    this.owner = device.image.explicitUidGid === false
      ? options.defaultOwner ?? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }
      : undefined
  }

  /** Fails the reads in flight (EIO) and refuses new ones: the mount is going away. */
  close (): void {
    this.closed = true
    this.deadlines.close()
  }

  /** The node at an absolute path, or a negative errno. */
  resolve (path: string): RafsNode | number {
    let node = this.device.image.root
    if (path === '/' || path === '') return node
    const parts = path.split('/')
    if (parts.length > MAX_PATH_DEPTH) return Errno.ENAMETOOLONG
    for (const part of parts) {
      if (part === '') continue
      if (node.type !== 'directory') return Errno.ENOTDIR
      const next = this.childrenOf(node).get(part)
      if (next == null) return Errno.ENOENT
      node = next
    }
    return node
  }

  private childrenOf (dir: RafsNode): Map<string, RafsNode> {
    let map = this.children.get(dir)
    if (map == null) {
      map = new Map((dir.entries ?? []).map(e => [e.name, e.node]))
      this.children.set(dir, map)
    }
    return map
  }

  stat (node: RafsNode): FuseStat {
    const ms = node.mtime * 1000 + Math.floor(node.mtimeNsec / 1_000_000)
    // Blocks count stored data only, so holes show as holes to du and cp --sparse.
    let stored = 0
    if (node.type === 'file') {
      for (const c of node.chunks ?? []) stored += Math.max(0, Math.min(c.uncompressedSize, node.size - c.fileOffset))
    } else {
      stored = node.size
    }
    return {
      mode: node.mode,
      uid: this.owner?.uid ?? node.uid,
      gid: this.owner?.gid ?? node.gid,
      size: node.size,
      nlink: node.nlink,
      ino: node.ino >>> 0,
      rdev: node.type === 'char' || node.type === 'block' ? node.rdev : 0,
      blksize: BLOCK_SIZE,
      blocks: Math.ceil(stored / BLOCK_SIZE) * (BLOCK_SIZE / 512),
      atime: ms,
      mtime: ms,
      ctime: ms
    }
  }

  statfs (): FuseStatfs {
    const image = this.device.image
    const bytes = image.blobs.reduce((sum, b) => sum + b.uncompressedSize, 0)
    return {
      bsize: BLOCK_SIZE,
      frsize: BLOCK_SIZE,
      blocks: Math.min(0xffffffff, Math.ceil(bytes / BLOCK_SIZE)),
      bfree: 0,
      bavail: 0,
      files: Math.min(0xffffffff, image.inodeCount),
      ffree: 0,
      favail: 0,
      fsid: 0,
      flag: 1, // ST_RDONLY
      namemax: 255
    }
  }

  /** Reads into `buffer`; resolves to the byte count or a negative errno (EIO for any failed chunk). */
  async read (node: RafsNode, buffer: Uint8Array, length: number, position: number): Promise<number> {
    if (node.type === 'directory') return Errno.EISDIR
    if (node.type !== 'file') return Errno.EINVAL
    if (position >= node.size || length <= 0) return 0
    const want = Math.min(length, buffer.length, node.size - position)
    if (this.closed) return Errno.EIO
    const deadline = this.deadlines.start()
    const options = { signal: deadline.signal }
    try {
      const count = await this.limiter.run(async () => {
        // Straight into the reply buffer when the device can; else a copy of what it returns.
        if (this.device.readFileInto !== undefined) return await this.device.readFileInto(node, position, buffer.subarray(0, want), options)
        const bytes = await this.device.readFile(node, position, want, options)
        if (bytes.length > want) throw new RangeError(`the device returned ${bytes.length} bytes for a read of ${want}`)
        buffer.set(bytes, 0)
        return bytes.length
      })
      this.counters.reads++
      this.counters.bytes += count
      return count
    } catch (err: any) {
      this.counters.readErrors++
      this.log(`read of inode ${node.ino} at ${position} (+${want}) failed, answering EIO: ${err?.name ?? 'Error'}: ${String(err?.message ?? err)}`)
      return Errno.EIO
    } finally {
      this.deadlines.finish(deadline)
    }
  }

  operations (): FuseOperations {
    const ops: FuseOperations = {
      getattr: (path, cb) => {
        const node = this.resolve(path)
        if (typeof node === 'number') { cb(node); return }
        cb(0, this.stat(node))
      },
      readdir: (path, cb) => {
        const node = this.resolve(path)
        if (typeof node === 'number') { cb(node); return }
        if (node.type !== 'directory') { cb(Errno.ENOTDIR); return }
        cb(0, ['.', '..', ...(node.entries ?? []).map(e => e.name)])
      },
      readlink: (path, cb) => {
        const node = this.resolve(path)
        if (typeof node === 'number') { cb(node); return }
        if (node.type !== 'symlink' || node.target == null) { cb(Errno.EINVAL); return }
        cb(0, node.target)
      },
      open: (path, flags, cb) => {
        const node = this.resolve(path)
        if (typeof node === 'number') { cb(node); return }
        if ((flags & O_ACCMODE) !== O_RDONLY) { cb(Errno.EROFS); return }
        if (node.type === 'directory') { cb(Errno.EISDIR); return }
        // Handle numbers only need to be unique among open files; wrap long before 2^31.
        const handle = this.nextHandle
        this.nextHandle = this.nextHandle >= 0x7ffffff0 ? 1 : this.nextHandle + 1
        this.handles.set(handle, node)
        cb(0, handle)
      },
      release: (_path, fd, cb) => {
        this.handles.delete(fd)
        cb(0)
      },
      read: (path, fd, buffer, length, position, cb) => {
        const node = this.handles.get(fd) ?? this.resolve(path)
        if (typeof node === 'number') { cb(node); return }
        this.read(node, buffer, length, position).then(cb, () => { cb(Errno.EIO) })
      },
      getxattr: (path, name, cb) => {
        const node = this.resolve(path)
        if (typeof node === 'number') { cb(node); return }
        const value = node.xattrs.get(name)
        if (value == null) { cb(Errno.ENODATA); return }
        cb(0, value)
      },
      listxattr: (path, cb) => {
        const node = this.resolve(path)
        if (typeof node === 'number') { cb(node); return }
        cb(0, [...node.xattrs.keys()])
      },
      statfs: (_path, cb) => { cb(0, this.statfs()) }
    }
    for (const name of WRITE_OPERATIONS) {
      // Every mutating call has its callback last; answer it EROFS whatever else it was given.
      ops[name] = (...args: unknown[]) => { (args[args.length - 1] as (errno: number) => void)(Errno.EROFS) }
    }
    return ops
  }
}
