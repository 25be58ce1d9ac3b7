/**
 * `shoal mount`, `umount` and `run` through a running daemon (--daemon PATH or SHOAL_DAEMON): the
 * daemon serves the mount in its own process, so every container on the host shares its cache
 * and its peers. Without a daemon those commands mount in their own process as before.
 */
import { mkdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import { daemonClient, type DaemonClient } from '@shoal/daemon/client'
import type { DaemonStatus } from '@shoal/daemon'
import { resolveManifest } from '@shoal/convert'
import type { AbortOptions } from '@shoal/interface'
import type { ImageRunConfig } from '@shoal/fuse'
import type { CommandContext } from './command.js'
import { chosenDaemonSocket } from './daemon-socket.js'
import { openStore, registryClient, storeOptionsOf } from './image-ref.js'

/** A client of the daemon chosen for this command, when one was chosen and the image is one it can mount. */
export function daemonFor (values: CommandContext['values'], reference: string, warn: (m: string) => void): DaemonClient | undefined {
  const socket = chosenDaemonSocket(values)
  if (socket == null) return undefined
  if (!reference.startsWith('docker://')) {
    warn(`the daemon at ${socket} mounts docker:// images only; mounting ${reference} in this process`)
    return undefined
  }
  return daemonClient(socket)
}

/** The image's OCI config (entrypoint, cmd, env, user…), read from its registry; small and digest-checked. */
export async function imageRunConfig (reference: string, values: CommandContext['values'], options: AbortOptions = {}): Promise<ImageRunConfig | undefined> {
  const store = storeOptionsOf(values)
  const location = openStore(reference, registryClient([reference], store))
  const resolved = await resolveManifest(location, { ...options, ...(store.platform != null ? { platform: store.platform } : {}) })
  const descriptor = resolved.manifest.config
  if (descriptor == null || descriptor.size > 4 << 20) return undefined
  const bytes = await location.store.getBlobBytes(descriptor.digest, { ...options, maxSize: Math.max(descriptor.size, 1) })
  return JSON.parse(Buffer.from(bytes).toString('utf8'))?.config ?? undefined
}

/** Mounts through the daemon; the mount lives until `shoal umount DIR` (or the daemon stops). */
export async function mountThroughDaemon (client: DaemonClient, reference: string, dir: string, mode: 'fuse' | 'erofs', context: CommandContext): Promise<number> {
  const mountpoint = resolve(dir)
  await mkdir(mountpoint, { recursive: true })
  const info = await client.mount(reference, mountpoint, { mode, signal: context.signal })
  context.stdout.write(`mounted ${reference} at ${info.mountpoint} (mode ${info.mode}${info.fallbackReason != null ? `; erofs not used: ${info.fallbackReason}` : ''}), served by the daemon at ${client.socketPath}\n`)
  return 0
}

/** Unmounts DIR if the chosen daemon serves it; false when no daemon was chosen or it does not. */
export async function unmountThroughDaemon (values: CommandContext['values'], dir: string, options: AbortOptions = {}): Promise<boolean> {
  const socket = chosenDaemonSocket(values)
  if (socket == null) return false
  const client = daemonClient(socket)
  const mountpoint = resolve(dir)
  if (!(await client.mounts(options)).some(m => m.mountpoint === mountpoint)) return false
  await client.unmount(mountpoint, options)
  return true
}

/** What the daemon read between two status snapshots, in the line format of `formatStats`. */
export function formatDaemonDelta (before: DaemonStatus, after: DaemonStatus): string {
  const parts = Object.entries(after.bytesBySource)
    .map(([source, bytes]) => [source, bytes - (before.bytesBySource[source] ?? 0), (after.chunksBySource[source] ?? 0) - (before.chunksBySource[source] ?? 0)] as const)
    .filter(([, bytes]) => bytes > 0)
    .map(([source, bytes, chunks]) => `${source} ${bytes} bytes (${chunks} chunks)`)
  return `read through the daemon: ${parts.length > 0 ? parts.join(', ') : 'nothing'}; cache hits ${after.cache.hits - before.cache.hits}, misses ${after.cache.misses - before.cache.misses}`
}
