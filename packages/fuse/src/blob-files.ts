/**
 * The FUSE side of mode `erofs`: one read-only file per blob, named by blob id, whose bytes are
 * the blob's uncompressed address space (what EROFS reads through `device=`).
 */
import { Errno, type FuseOperations, type FuseStat } from './fuse-native.js'
import type { MountDevice, MountLogger } from './device.js'
import { Limiter, ReadDeadlines } from './limiter.js'

export interface BlobFilesOptions {
  concurrency?: number
  readTimeoutMs?: number
  logger?: MountLogger
}

export class BlobFilesFilesystem {
  private readonly limiter: Limiter
  private readonly deadlines: ReadDeadlines
  private closed = false
  private readonly byName = new Map<string, number>()
  private readonly readTimeoutMs: number
  private readonly log: MountLogger
  private readonly time = Date.now()
  readonly counters = { reads: 0, bytes: 0, readErrors: 0 }

  constructor (private readonly device: MountDevice, options: BlobFilesOptions = {}) {
    this.limiter = new Limiter(options.concurrency ?? 16)
    this.readTimeoutMs = options.readTimeoutMs ?? 120_000
    this.deadlines = new ReadDeadlines(this.readTimeoutMs)
    this.log = options.logger ?? (() => {})
    for (const blob of device.image.blobs) this.byName.set(blobFileName(blob.index, blob.blobId), blob.index)
  }

  close (): void {
    this.closed = true
    this.deadlines.close()
  }

  private blobOf (path: string): number | undefined {
    return path.startsWith('/') ? this.byName.get(path.slice(1)) : undefined
  }

  private stat (mode: number, size: number, ino: number, nlink: number): FuseStat {
    return { mode, uid: 0, gid: 0, size, nlink, ino, rdev: 0, blksize: 4096, blocks: Math.ceil(size / 512), atime: this.time, mtime: this.time, ctime: this.time }
  }

  async read (blobIndex: number, buffer: Uint8Array, length: number, position: number): Promise<number> {
    const size = this.device.image.blobs[blobIndex].uncompressedSize
    if (position >= size || length <= 0) return 0
    const want = Math.min(length, buffer.length, size - position)
    if (this.closed) return Errno.EIO
    const deadline = this.deadlines.start()
    const options = { signal: deadline.signal }
    try {
      const count = await this.limiter.run(async () => {
        // Straight into the reply buffer when the device can; else a copy of what it returns.
        if (this.device.readBlobInto !== undefined) return await this.device.readBlobInto(blobIndex, position, buffer.subarray(0, want), options)
        const bytes = await this.device.readBlob(blobIndex, position, want, options)
        buffer.set(bytes.subarray(0, want), 0)
        return bytes.length
      })
      if (count !== want) throw new RangeError(`the device returned ${count} bytes for a read of ${want}`)
      this.counters.reads++
      this.counters.bytes += want
      return want
    } catch (err: any) {
      this.counters.readErrors++
      this.log(`read of blob ${blobIndex} at ${position} (+${want}) failed, answering EIO: ${err?.name ?? 'Error'}: ${String(err?.message ?? err)}`)
      return Errno.EIO
    } finally {
      this.deadlines.finish(deadline)
    }
  }

  operations (): FuseOperations {
    const blobs = this.device.image.blobs
    const ops: FuseOperations = {
      getattr: (path, cb) => {
        if (path === '/') { cb(0, this.stat(0o40555, 0, 1, 2)); return }
        const index = this.blobOf(path)
        if (index == null) { cb(Errno.ENOENT); return }
        cb(0, this.stat(0o100444, blobs[index].uncompressedSize, index + 2, 1))
      },
      readdir: (path, cb) => {
        if (path !== '/') { cb(this.blobOf(path) != null ? Errno.ENOTDIR : Errno.ENOENT); return }
        cb(0, ['.', '..', ...this.byName.keys()])
      },
      open: (path, flags, cb) => {
        const index = this.blobOf(path)
        if (index == null) { cb(Errno.ENOENT); return }
        if ((flags & 3) !== 0) { cb(Errno.EROFS); return }
        cb(0, index)
      },
      release: (_path, _fd, cb) => { cb(0) },
      read: (path, _fd, buffer, length, position, cb) => {
        const index = this.blobOf(path)
        if (index == null) { cb(Errno.ENOENT); return }
        this.read(index, buffer, length, position).then(cb, () => { cb(Errno.EIO) })
      }
    }
    return ops
  }
}

/** File name of a blob in the blob-files mount: its table index (for order) and its id. */
export function blobFileName (index: number, blobId: string): string {
  // Blob ids are hex in practice; anything else is reduced to safe characters for a file name.
  return `${index}-${blobId.replace(/[^0-9A-Za-z._-]/g, '_').slice(0, 200)}`
}
