/**
 * What `mount` and `run` share: opening an image for a lazy mount (its bootstrap, its OCI config,
 * a blob device over the chunk cache and the image's blobs), and the mount state files that let
 * `umount` find the process serving a mount.
 */
import { createHash } from 'node:crypto'
import { mkdir, readFile, realpath, rm, writeFile, rename } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import type { AbortOptions, BlobBackend } from '@shoal/interface'
import { readBootstrap, type RafsImage } from '@shoal/rafs'
import { backendSource, blobDevice, type BlobDevice } from '@shoal/blob-device'
import { openChunkCache, type ChunkCache } from '@shoal/chunk-cache'
import type { ImageRunConfig } from '@shoal/fuse'
import { stringOption, UsageError, type CommandContext, type OptionSpec } from '../command.js'
import { isStoreReference, openImage, registryOptions, storeOptionsOf } from '../image-ref.js'

export const DEFAULT_CACHE_DIR = '/var/lib/shoal'
/** Where mount state files live, whatever the cache directory: `umount DIR` needs only DIR. */
export const MOUNT_STATE_DIR = process.env.SHOAL_RUN_DIR ?? '/run/shoal/mounts'
const DEFAULT_CACHE_BYTES = 10 * 2 ** 30

export const lazyMountOptions: Record<string, OptionSpec> = {
  mode: { type: 'string', valueName: 'fuse|erofs', default: 'erofs', description: 'erofs: the kernel reads the bootstrap, FUSE serves blob bytes (falls back to fuse); fuse: the whole tree in FUSE' },
  'cache-dir': { type: 'string', valueName: 'DIR', default: DEFAULT_CACHE_DIR, description: 'chunk cache and scratch space' },
  'cache-size': { type: 'string', valueName: 'BYTES', description: `cap of the chunk cache (default ${DEFAULT_CACHE_BYTES})` },
  'blob-dir': { type: 'string', valueName: 'DIR', description: 'read blobs from this directory of files named by blob id (default: beside a bootstrap:PATH, else the registry)' },
  stats: { type: 'boolean', description: 'print the bytes read from each source at the end' },
  verbose: { type: 'boolean', short: 'v', description: 'say which mode was used and print read statistics at the end' },
  ...registryOptions
}

export interface LazyImage {
  image: RafsImage
  /** The bootstrap file as published, when there is one on disk (mode erofs mounts it as is). */
  bootstrapPath?: string
  config?: ImageRunConfig
  device: BlobDevice
  /** Where chunks come from, for messages. */
  sourceName: string
  close: () => Promise<void>
}

export function modeOf (values: CommandContext['values']): 'fuse' | 'erofs' {
  const mode = stringOption(values, 'mode') ?? 'erofs'
  if (mode !== 'fuse' && mode !== 'erofs') throw new UsageError(`--mode: expected fuse or erofs, got '${mode}'`)
  return mode
}

function cacheDirOf (values: CommandContext['values']): string {
  return resolve(stringOption(values, 'cache-dir') ?? DEFAULT_CACHE_DIR)
}

async function openCache (values: CommandContext['values'], warn: (m: string) => void, options: AbortOptions): Promise<ChunkCache | undefined> {
  const dir = cacheDirOf(values)
  const sizeText = stringOption(values, 'cache-size')
  const maxBytes = sizeText != null ? Number(sizeText) : DEFAULT_CACHE_BYTES
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new UsageError(`--cache-size: expected a byte count, got '${sizeText}'`)
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    return await openChunkCache({ path: join(dir, 'cache'), maxBytes, logger: { warn } }, options)
  } catch (err: any) {
    // One process at a time holds a cache (its index is LevelDB): run uncached rather than not at all.
    warn(`chunk cache in ${dir} not used: ${String(err?.message ?? err)}`)
    return undefined
  }
}

/** Opens IMAGE for a lazy mount: bootstrap, config, and a device reading cache → blobs. */
export async function openLazyImage (reference: string, values: CommandContext['values'], warn: (m: string) => void, options: AbortOptions = {}): Promise<LazyImage> {
  const blobDir = stringOption(values, 'blob-dir')
  let image: RafsImage
  let blobs: BlobBackend
  let closeImage: () => Promise<void>
  let bootstrapPath: string | undefined
  let config: ImageRunConfig | undefined
  if (isStoreReference(reference)) {
    const opened = await openImage(reference, {
      ...options, ...storeOptionsOf(values), ...(blobDir != null ? { blobDir } : {}), bootstrapCacheDir: join(cacheDirOf(values), 'bootstraps')
    })
    const stored = opened.stored!
    const location = opened.location!
    image = stored.image
    blobs = opened.blobs
    closeImage = opened.close
    const configDescriptor = stored.manifest.manifest.config
    if (configDescriptor != null && configDescriptor.size <= 4 << 20) {
      const bytes = await location.store.getBlobBytes(configDescriptor.digest, { ...options, maxSize: Math.max(configDescriptor.size, 1) })
      config = JSON.parse(Buffer.from(bytes).toString('utf8'))?.config ?? undefined
    }
  } else {
    const opened = await openImage(reference, { ...options, ...(blobDir != null ? { blobDir } : {}) })
    image = opened.image
    blobs = opened.blobs
    closeImage = opened.close
    bootstrapPath = resolve(reference.startsWith('bootstrap:') ? reference.slice('bootstrap:'.length) : reference)
    // A bootstrap file may have the image config beside it (config.json), as `shoal build` can leave it.
    const beside = await readFile(join(dirname(bootstrapPath), 'config.json'), 'utf8').catch(() => undefined)
    if (beside != null) config = JSON.parse(beside)?.config ?? undefined
    // The bootstrap read by openImage is the one mounted: make sure it is still the same kind.
    readBootstrap(await readFile(bootstrapPath))
  }
  const cache = await openCache(values, warn, options)
  const sourceName = blobDir != null ? 'blob-dir' : isStoreReference(reference) ? (reference.startsWith('oci:') ? 'oci-layout' : 'registry') : 'blob-dir'
  const device = blobDevice({
    image,
    ...(cache != null ? { cache } : {}),
    sources: [backendSource(blobs, sourceName)],
    logger: { warn }
  })
  return {
    image,
    ...(bootstrapPath != null ? { bootstrapPath } : {}),
    ...(config != null ? { config } : {}),
    device,
    sourceName,
    close: async () => {
      await device.close()
      await cache?.close()
      await closeImage()
    }
  }
}

/** Bytes by source, as one line. */
export function formatStats (device: BlobDevice): string {
  const stats = device.stats()
  const parts = Object.entries(stats.bytesBySource).map(([source, bytes]) => `${source} ${bytes} bytes (${stats.chunksBySource[source] ?? 0} chunks)`)
  const errors = Object.entries(stats.errors).map(([source, n]) => `${source} ${n}`)
  return `read: ${parts.length > 0 ? parts.join(', ') : 'nothing'}; cache hits ${stats.cacheHits}, misses ${stats.cacheMisses}` +
    (errors.length > 0 ? `; errors: ${errors.join(', ')}` : '')
}

export interface MountState {
  pid: number
  mountpoint: string
  mode: 'fuse' | 'erofs'
  image: string
  fallbackReason?: string
  /** The serving process's scratch dir (erofs mode's blob-files FUSE mount and loop devices live there). */
  workDir?: string
  /** ok: serving; error: the mount failed (message says why). */
  status: 'ok' | 'error'
  message?: string
}

/** State file of the mount at `mountpoint` (resolved), named by a hash of the path. */
export async function stateFileOf (mountpoint: string): Promise<string> {
  const real = await realpath(mountpoint).catch(() => resolve(mountpoint))
  return join(MOUNT_STATE_DIR, `${createHash('sha256').update(real).digest('hex').slice(0, 24)}.json`)
}

export async function writeMountState (mountpoint: string, state: MountState): Promise<void> {
  const file = await stateFileOf(mountpoint)
  await mkdir(dirname(file), { recursive: true, mode: 0o700 })
  await writeFile(`${file}.tmp`, JSON.stringify(state))
  await rename(`${file}.tmp`, file)
}

export async function readMountState (mountpoint: string): Promise<MountState | undefined> {
  const file = await stateFileOf(mountpoint)
  const text = await readFile(file, 'utf8').catch(() => undefined)
  if (text == null) return undefined
  try { return JSON.parse(text) as MountState } catch { return undefined }
}

export async function removeMountState (mountpoint: string): Promise<void> {
  await rm(await stateFileOf(mountpoint), { force: true })
}

export function processAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err: any) { return err.code === 'EPERM' }
}
