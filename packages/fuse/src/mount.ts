/**
 * Mounting an image: mode `fuse` (the whole tree in FUSE) or mode `erofs` (the kernel reads the v6
 * bootstrap; FUSE only serves blob bytes), falling back to `fuse` when the kernel cannot.
 */
import { mkdir, readFile, rm, writeFile, realpath } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { throwIfAborted, type AbortOptions } from '@shoal/interface'
import { writeBootstrapV6 } from '@shoal/rafs'
import { createFuse, forceUnmountFuse, type FuseHandle, type FuseMountOptions, type FuseOperations } from './fuse-native.js'
import { RafsFilesystem, type RafsFilesystemOptions } from './rafs-fs.js'
import { BlobFilesFilesystem, blobFileName } from './blob-files.js'
import type { MountDevice, MountLogger } from './device.js'
import { MountError } from './errors.js'
import { isMountPoint, run, unmountPath } from './exec.js'

export type MountMode = 'fuse' | 'erofs'

export interface MountImageInit {
  device: MountDevice
  mountpoint: string
  /** Wanted mode; `erofs` falls back to `fuse` when it cannot be used. Default `erofs`. */
  mode?: MountMode
  /** A private directory for the blob-files mount and a bootstrap copy (mode `erofs`). */
  workDir?: string
  /** The bootstrap file as published; without it mode `erofs` writes one from the parsed image. */
  bootstrapPath?: string
  concurrency?: number
  readTimeoutMs?: number
  logger?: MountLogger
}

export interface ImageMount {
  readonly mountpoint: string
  /** The mode in use. */
  readonly mode: MountMode
  /** Why mode `erofs` was not used, when it was asked for. */
  readonly fallbackReason?: string
  /** Reads answered and failed (EIO) by this mount's FUSE side. */
  counters: () => { reads: number, bytes: number, readErrors: number }
  /** Unmounts in order (EROFS, loop devices, FUSE); safe to call twice. */
  unmount: () => Promise<void>
}

/** Kernel cache lifetimes: the image never changes, so a day is as good as forever. */
const CACHE_SECONDS = 86400

function fuseOptions (fsname: string): FuseMountOptions {
  const root = process.getuid?.() === 0
  return {
    entryTimeout: CACHE_SECONDS,
    attrTimeout: CACHE_SECONDS,
    kernelCache: true,
    // Containers run processes as other users: let them in, and let the kernel check modes.
    allowOther: root,
    defaultPermissions: true,
    fsname,
    subtype: 'shoal',
    extraOptions: ['ro', 'use_ino'],
    // Reads carry their own deadline (readTimeoutMs) and answer EIO; no second timer in fuse-native.
    timeout: false
  }
}

export interface FuseMount {
  mountpoint: string
  unmount: () => Promise<void>
}

/** Mounts FUSE operations at `mountpoint` and resolves once the kernel has sent init. */
export async function mountFuse (mountpoint: string, ops: FuseOperations, options: FuseMountOptions, abort: AbortOptions = {}): Promise<FuseMount> {
  throwIfAborted(abort)
  const handle: FuseHandle = createFuse(mountpoint, ops, options)
  // fuse-native unrefs its libuv handles: without a handle of our own, the event loop can run dry
  // while the kernel's requests (init first) wait for it, and the process exits under its mount.
  const keepAlive = setInterval(() => {}, 1 << 30)
  try {
    await new Promise<void>((resolve, reject) => {
      handle.mount(err => { err != null ? reject(new MountError(`FUSE mount at ${mountpoint} failed: ${err.message}`)) : resolve() })
    })
  } catch (err) {
    clearInterval(keepAlive)
    throw err
  }
  let unmounted = false
  return {
    mountpoint,
    unmount: async () => {
      if (unmounted) return
      unmounted = true
      clearInterval(keepAlive)
      await new Promise<void>((resolve, reject) => {
        handle.unmount(err => { err != null ? reject(new MountError(`FUSE unmount of ${mountpoint} failed: ${err.message}`)) : resolve() })
      }).catch(async (err) => {
        // The kernel side may already be gone (fusermount -uz by someone else): detach what is left.
        if (await isMountPoint(mountpoint)) {
          await forceUnmountFuse(mountpoint).catch(() => {})
          if (await isMountPoint(mountpoint)) throw err
        }
      })
    }
  }
}

/** Mounts the image's whole tree with FUSE. */
export async function mountFuseTree (device: MountDevice, mountpoint: string, options: RafsFilesystemOptions & AbortOptions = {}): Promise<ImageMount & { filesystem: RafsFilesystem }> {
  const filesystem = new RafsFilesystem(device, options)
  const fuse = await mountFuse(mountpoint, filesystem.operations(), fuseOptions('shoal'), options)
  return {
    mountpoint,
    mode: 'fuse',
    filesystem,
    counters: () => ({ ...filesystem.counters }),
    unmount: async () => {
      filesystem.close()
      await fuse.unmount()
    }
  }
}

/** Whether the running kernel has EROFS (loading the module when it is one). */
export async function kernelHasErofs (): Promise<boolean> {
  const has = async (): Promise<boolean> => (await readFile('/proc/filesystems', 'utf8')).split('\n').some(l => l.trim().endsWith('erofs'))
  if (await has()) return true
  await run('modprobe', ['-q', 'erofs']).catch(() => {})
  return await has()
}

/** Readahead of the loop devices under an EROFS mount (KiB). */
const LOOP_READ_AHEAD_KIB = 128

/**
 * Turns on direct I/O of a loop device over a blob file, so that it reads from FUSE exactly the
 * ranges EROFS asks of it. Through the page cache, the blob file's own readahead widens each read
 * across the neighbouring, unrelated files packed beside it in the blob, and every chunk it touches
 * is fetched (python3 -c 'print(42)': 27 chunks instead of 23). EROFS caches the file pages; a
 * second copy in the blob file's page cache is no use. Without it (a kernel that refuses), reads
 * still work and are only a little wider: logged, not fatal.
 */
async function useDirectIo (loop: string, options: RafsFilesystemOptions & AbortOptions): Promise<void> {
  let why: string | undefined
  try {
    await run('losetup', ['--direct-io=on', loop], options)
    const state = (await readFile(`/sys/block/${basename(loop)}/loop/dio`, 'utf8')).trim()
    if (state !== '1') why = `the kernel left direct I/O off (loop/dio is '${state}')`
  } catch (err: any) {
    throwIfAborted(options)
    why = String(err?.message ?? err)
  }
  if (why != null) options.logger?.(`${loop} reads its blob file through the page cache, whose readahead fetches chunks of neighbouring files: ${why}`)
}

/**
 * Mode `erofs`: blob files in FUSE under workDir, loop devices over them and over the bootstrap,
 * and the kernel's EROFS mount. Throws (having undone every step) when any step fails.
 */
export async function mountErofs (device: MountDevice, mountpoint: string, workDir: string, options: RafsFilesystemOptions & AbortOptions & { bootstrapPath?: string } = {}): Promise<ImageMount> {
  const image = device.image
  if (image.version !== 6) throw new MountError(`the bootstrap is RAFS v${image.version}; the kernel mounts only v6 (EROFS)`)
  if (process.getuid?.() !== 0) throw new MountError('mounting EROFS and setting up loop devices needs root')
  if (!await kernelHasErofs()) throw new MountError('this kernel has no EROFS (not in /proc/filesystems, modprobe erofs failed)')

  const undo: Array<() => Promise<void>> = []
  const teardown = async (): Promise<void> => {
    const errors: unknown[] = []
    for (const step of undo.splice(0).reverse()) {
      try { await step() } catch (err) { errors.push(err) }
    }
    if (errors.length > 0) throw new MountError(`teardown of ${mountpoint}: ${errors.map(e => String((e as Error).message ?? e)).join('; ')}`)
  }
  try {
    const blobDir = join(workDir, 'blobs')
    await mkdir(blobDir, { recursive: true })
    const files = new BlobFilesFilesystem(device, options)
    const fuse = await mountFuse(blobDir, files.operations(), fuseOptions('shoal-blobs'), options)
    undo.push(async () => { files.close(); await fuse.unmount() })

    let bootstrapPath = options.bootstrapPath
    if (bootstrapPath == null) {
      bootstrapPath = join(workDir, 'bootstrap')
      await writeFile(bootstrapPath, writeBootstrapV6(image))
      const written = bootstrapPath
      undo.push(async () => { await rm(written, { force: true }) })
    }
    const attach = async (file: string, { directIo = false } = {}): Promise<string> => {
      const loop = (await run('losetup', ['-r', '-f', '--show', file], options)).trim()
      if (!/^\/dev\/loop\d+$/.test(loop)) throw new MountError(`losetup -r -f --show ${file} printed '${loop}', expected /dev/loopN`)
      undo.push(async () => { await run('losetup', ['-d', loop]) })
      // Loop devices start with a 2.5 MiB readahead here; every page the kernel reads ahead is a
      // chunk fetched (from peers or the registry), so keep it to the page cache's usual 128 KiB.
      await writeFile(`/sys/block/${basename(loop)}/queue/read_ahead_kb`, String(LOOP_READ_AHEAD_KIB)).catch((err: Error) => {
        options.logger?.(`could not set the readahead of ${loop}: ${err.message}`)
      })
      if (directIo) await useDirectIo(loop, options)
      return loop
    }
    const bootLoop = await attach(bootstrapPath)
    const blobLoops: string[] = []
    for (const blob of image.blobs) blobLoops.push(await attach(join(blobDir, blobFileName(blob.index, blob.blobId)), { directIo: true }))
    const target = await realpath(mountpoint)
    await run('mount', ['-t', 'erofs', '-o', ['ro', ...blobLoops.map(l => `device=${l}`)].join(','), bootLoop, target], options)
    undo.push(async () => { await unmountPath(target) })
    let done = false
    return {
      mountpoint,
      mode: 'erofs',
      counters: () => ({ ...files.counters }),
      unmount: async () => {
        if (done) return
        done = true
        await teardown()
      }
    }
  } catch (err) {
    await teardown().catch(() => {})
    throw err
  }
}

/** Mounts an image in the mode asked for, or in `fuse` mode when `erofs` cannot be used. */
export async function mountImage (init: MountImageInit, options: AbortOptions = {}): Promise<ImageMount> {
  const fsOptions = {
    ...(init.concurrency != null ? { concurrency: init.concurrency } : {}),
    ...(init.readTimeoutMs != null ? { readTimeoutMs: init.readTimeoutMs } : {}),
    ...(init.logger != null ? { logger: init.logger } : {}),
    ...(options.signal != null ? { signal: options.signal } : {})
  }
  const mode = init.mode ?? 'erofs'
  let fallbackReason: string | undefined
  if (mode === 'erofs') {
    if (init.workDir == null) {
      fallbackReason = 'no work directory for the blob files was given'
    } else {
      try {
        return await mountErofs(init.device, init.mountpoint, init.workDir, { ...fsOptions, ...(init.bootstrapPath != null ? { bootstrapPath: init.bootstrapPath } : {}) })
      } catch (err: any) {
        throwIfAborted(options)
        fallbackReason = String(err?.message ?? err)
      }
    }
    init.logger?.(`mode erofs not used, falling back to fuse: ${fallbackReason}`)
  }
  const mount = await mountFuseTree(init.device, init.mountpoint, fsOptions)
  return fallbackReason != null ? Object.assign(mount, { fallbackReason }) : mount
}
