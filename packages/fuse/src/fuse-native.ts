/**
 * A typed door to npm `fuse-native` (libfuse 2 high-level API, one path per call), with the few
 * fixes a read-only image needs: mount options it has no switch for (`ro`, `use_ino`), and
 * getxattr/listxattr that answer ERANGE instead of overrunning a buffer that is too small.
 */
import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { FuseUnavailableError } from './errors.js'

/** What getattr answers; times in milliseconds since the epoch (fuse-native keeps no finer precision). */
export interface FuseStat {
  mode: number
  uid: number
  gid: number
  size: number
  dev?: number
  nlink: number
  ino: number
  rdev: number
  blksize: number
  blocks: number
  atime: number
  mtime: number
  ctime: number
}

export interface FuseStatfs {
  bsize: number, frsize: number, blocks: number, bfree: number, bavail: number
  files: number, ffree: number, favail: number, fsid: number, flag: number, namemax: number
}

/** Callbacks take 0 or a negative errno first (`Errno.ENOENT` is -2). */
export type Callback<T = never> = (errno: number, value?: T) => void

export interface FuseOperations {
  init?: (cb: (errno: number) => void) => void
  getattr: (path: string, cb: Callback<FuseStat>) => void
  fgetattr?: (path: string, fd: number, cb: Callback<FuseStat>) => void
  readdir?: (path: string, cb: (errno: number, names?: string[]) => void) => void
  readlink?: (path: string, cb: Callback<string>) => void
  open?: (path: string, flags: number, cb: Callback<number>) => void
  release?: (path: string, fd: number, cb: (errno: number) => void) => void
  read?: (path: string, fd: number, buffer: Buffer, length: number, position: number, cb: (result: number) => void) => void
  getxattr?: (path: string, name: string, cb: Callback<Uint8Array>) => void
  listxattr?: (path: string, cb: Callback<string[]>) => void
  statfs?: (path: string, cb: Callback<FuseStatfs>) => void
  [write: string]: unknown
}

export interface FuseMountOptions {
  /** Kernel entry and attribute cache lifetimes, seconds. */
  entryTimeout?: number
  attrTimeout?: number
  /** Keep file pages cached across opens: the content never changes. */
  kernelCache?: boolean
  allowOther?: boolean
  defaultPermissions?: boolean
  fsname?: string
  subtype?: string
  maxRead?: number
  /** Extra `-o` options, e.g. `ro`, `use_ino`. */
  extraOptions?: string[]
  /** Per-operation timeout of fuse-native in ms, or false for none (we time reads out ourselves). */
  timeout?: number | false
  debug?: boolean
}

export interface FuseHandle {
  mount: (cb: (err: Error | null) => void) => void
  unmount: (cb: (err: Error | null) => void) => void
}

interface FuseClass {
  new (mountpoint: string, ops: Record<string, unknown>, options: Record<string, unknown>): FuseHandle
  unmount: (mountpoint: string, cb: (err: Error | null) => void) => void
}

/** Negative errno values as fuse callbacks want them (Linux numbers). */
export const Errno = {
  EPERM: -1,
  ENOENT: -2,
  EIO: -5,
  EBADF: -9,
  EACCES: -13,
  ENOTDIR: -20,
  EISDIR: -21,
  EINVAL: -22,
  EROFS: -30,
  ERANGE: -34,
  ENAMETOOLONG: -36,
  ENOSYS: -38,
  ENODATA: -61,
  ENOTSUP: -95
} as const

let loaded: FuseClass | undefined

/**
 * Loads fuse-native once. Its prebuilt linux-x64 N-API binary needs libfuse.so.2 (Debian `libfuse2`);
 * npm 11 does not run its install script, which is fine as long as the prebuild loads.
 */
export function loadFuseNative (): FuseClass {
  if (loaded != null) return loaded
  if (!existsSync('/dev/fuse')) throw new FuseUnavailableError('/dev/fuse does not exist: load the fuse module or run with access to it')
  const require = createRequire(import.meta.url)
  let Base: FuseClass
  try {
    Base = require('fuse-native') as FuseClass
  } catch (err: any) {
    throw new FuseUnavailableError(`cannot load fuse-native (is Debian's libfuse2 installed?): ${String(err?.message ?? err)}`)
  }
  const BaseClass = Base as unknown as new (...args: any[]) => any
  class ShoalFuse extends BaseClass {
    _fuseOptions (): string {
      const base: string = super._fuseOptions()
      const extra: string[] = this.opts.extraOptions ?? []
      if (extra.length === 0) return base
      return base === '' ? `-o${extra.join(',')}` : `${base},${extra.join(',')}`
    }

    // fuse-native copies a value into a too-small buffer and reports the full length, which
    // libfuse then sends from past the buffer's end: answer ERANGE as getxattr(2) wants.
    _op_getxattr (signal: (result: number, buffer: ArrayBufferLike) => void, path: string, name: string, valueBuf: Buffer): void {
      this.ops.getxattr(path, name, (errno: number, value?: Uint8Array) => {
        if (errno !== 0) { signal(errno, valueBuf.buffer); return }
        if (value == null) { signal(Errno.ENODATA, valueBuf.buffer); return }
        if (valueBuf.length === 0) { signal(value.length, valueBuf.buffer); return }
        if (value.length > valueBuf.length) { signal(Errno.ERANGE, valueBuf.buffer); return }
        valueBuf.set(value)
        signal(value.length, valueBuf.buffer)
      })
    }

    _op_listxattr (signal: (result: number, buffer: ArrayBufferLike) => void, path: string, listBuf: Buffer): void {
      this.ops.listxattr(path, (errno: number, names?: string[]) => {
        if (errno !== 0 || names == null) { signal(errno !== 0 ? errno : Errno.EIO, listBuf.buffer); return }
        const list = Buffer.concat(names.map(n => Buffer.from(`${n}\0`)))
        if (listBuf.length === 0) { signal(list.length, listBuf.buffer); return }
        if (list.length > listBuf.length) { signal(Errno.ERANGE, listBuf.buffer); return }
        listBuf.set(list)
        signal(list.length, listBuf.buffer)
      })
    }
  }
  loaded = Object.assign(ShoalFuse, { unmount: Base.unmount }) as unknown as FuseClass
  return loaded
}

/** Creates (does not mount) a FUSE filesystem at `mountpoint`. */
export function createFuse (mountpoint: string, ops: FuseOperations, options: FuseMountOptions): FuseHandle {
  const Fuse = loadFuseNative()
  return new Fuse(mountpoint, ops as Record<string, unknown>, { ...options })
}

/** `fusermount -uz`: detaches a FUSE mount even when its process is gone. */
export async function forceUnmountFuse (mountpoint: string): Promise<void> {
  const Fuse = loadFuseNative()
  await new Promise<void>((resolve, reject) => { Fuse.unmount(mountpoint, err => { err != null ? reject(err) : resolve() }) })
}
