/**
 * The host daemon: composes the chunk cache, the registry client, the swarm, the mounts, the API
 * and the metrics, and starts and stops them in order. It holds no protocol or format logic: the
 * swarm speaks the chunk protocol, blob-device verifies every chunk, the cache keeps them.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import type { Server } from 'node:http'
import { join, resolve as resolvePath } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { defaultLogger } from '@libp2p/logger'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { backendSource, blobDevice, type BlobDevice, type BlobDeviceStats } from '@shoal/blob-device'
import { cacheChunkStore, openChunkCache, type ChunkCache } from '@shoal/chunk-cache'
import { bootstrapLayerDirectory, openNydusImage, resolveManifest, type BootstrapLayerCache, type ImageLocation, type ResolvedManifest } from '@shoal/convert'
import { throwIfAborted, type AbortOptions, type BlobId, type ChunkSource } from '@shoal/interface'
import type { RafsImage, RafsNode } from '@shoal/rafs'
import { parseImageReference, registry, registryImageStore, type RegistryClient } from '@shoal/registry'
import { swarm, type Swarm, type SwarmStats } from '@shoal/swarm'
import { Registry } from 'prom-client'
import { serveApi } from './api.js'
import { parseLoopbackAddress, type DaemonConfig, type ServeFault } from './config.js'
import { DaemonConfigError, ImagePathError, MountNotFoundError, MountsUnsupportedError } from './errors.js'
import { registerDaemonMetrics, serveMetrics, type DaemonMetrics, type MetricsSnapshot } from './metrics.js'

export type DaemonInit = DaemonConfig

/** What the daemon asks of a mount implementation (@shoal/fuse's mountImage fits). */
export interface Mounter {
  mount: (init: { device: BlobDevice, mountpoint: string, workDir: string, mode?: 'fuse' | 'erofs', bootstrapPath?: string }, options?: AbortOptions) => Promise<MountHandle>
  /** Clears a mount left behind by a killed daemon (a dead FUSE mount); never throws. */
  forceUnmount?: (mountpoint: string) => Promise<void>
  /** Clears what a killed mount left in its work dir (loop devices, helper mounts) and removes it; never throws. */
  clearWorkDir?: (workDir: string) => Promise<void>
}

export interface MountHandle {
  readonly mode: string
  readonly fallbackReason?: string
  unmount: () => Promise<void>
}

export interface DaemonComponents {
  /** Without one, the daemon serves no mounts (preheat, status and file reads still work). */
  mounter?: Mounter
  /** One line per event worth a log (started, provided, a mount, a failure). */
  log?: (line: string) => void
}

export interface MountInfo {
  id: string
  image: string
  mountpoint: string
  mode: string
  fallbackReason?: string
  createdAt: string
}

export interface PreheatResult {
  image: string
  blobs: number
  chunks: number
  /** Uncompressed bytes now held for the image. */
  bytes: number
  /** Bytes fetched by this preheat, by source. */
  fetched: Record<string, number>
  milliseconds: number
}

export interface DaemonStatus {
  peerId: string
  addresses: string[]
  seed: boolean
  metricsUrl?: string
  peers: Array<{ peer: string, addresses: string[] }>
  blobsHeld: BlobId[]
  blobsProvided: BlobId[]
  cache: { path: string, bytes: number, chunks: number, blobs: number, evictions: number, hits: number, misses: number }
  /** Verified bytes read by this daemon's mounts, preheats and file reads, by source. */
  bytesBySource: Record<string, number>
  chunksBySource: Record<string, number>
  errors: Record<string, number>
  served: { requests: number, chunks: number, bytes: number, busy: number }
  /** The swarm client's counters: chunks peers could not give, DHT lookups and misses, hedges. */
  fetching: { chunksMissed: number, providerLookups: number, providerLookupMisses: number, providerWidenings: number, hedgedRequests: number, badChunks: number }
  blocklisted: SwarmStats['blocklisted']
  mounts: MountInfo[]
  images: string[]
  /** This process's memory (bytes): resident set and V8 heap in use. */
  memory: { rss: number, heapUsed: number }
}

export interface Daemon {
  readonly peerId: string
  readonly multiaddrs: string[]
  readonly metricsUrl: string | undefined
  start: (options?: AbortOptions) => Promise<void>
  /** Unmounts, withdraws every blob, stops the swarm, closes the cache; safe to call twice. */
  stop: () => Promise<void>
  preheat: (image: string, options?: AbortOptions) => Promise<PreheatResult>
  mount: (image: string, mountpoint: string, options?: AbortOptions & { mode?: 'fuse' | 'erofs' }) => Promise<MountInfo>
  unmount: (idOrMountpoint: string) => Promise<void>
  mounts: () => MountInfo[]
  readFile: (image: string, path: string, options?: AbortOptions) => Promise<Uint8Array>
  status: () => DaemonStatus
}

const DEFAULT_CACHE_BYTES = 10 * 1024 ** 3
/** Preheat reads each blob's address space in windows this large (the device splits them into runs). */
const PREHEAT_WINDOW = 16 * 1024 * 1024
const PREHEAT_CONCURRENCY = 2
/** How long start-up waits for each seed to answer before going on without it. */
const BOOTSTRAP_DIAL_TIMEOUT = 5_000
/** The status names sources by role; blob-device names the swarm's source `swarm`. */
const SOURCE_ROLES: Record<string, string> = { swarm: 'peers' }

export function daemon (init: DaemonInit): (components?: DaemonComponents) => Daemon {
  return (components = {}) => new ShoalDaemon(init, components)
}

interface OpenedImage {
  reference: string
  /** `REGISTRY/REPOSITORY@MANIFEST-DIGEST`: what the image is keyed by (a tag may move). */
  key: string
  image: RafsImage
  bootstrap: Uint8Array
  /** The image's blobs in its registry repository (Range reads). */
  registrySource: ChunkSource
  /** Shared by every mount and file read of the image. */
  device: BlobDevice
}

/** How long a tag's resolution to a manifest is reused by file reads (ms): a burst asks once. */
const TAG_RESOLVE_TTL = 5_000

interface ActiveMount { info: MountInfo, handle: MountHandle, workDir: string, imageKey: string }

function roleOf (source: string): string {
  return SOURCE_ROLES[source] ?? source
}

function addInto (into: Record<string, number>, from: Record<string, number>): void {
  for (const [key, value] of Object.entries(from)) into[roleOf(key)] = (into[roleOf(key)] ?? 0) + value
}

/** The node at an absolute path inside an image, following no symlinks. */
function lookup (image: RafsImage, path: string): RafsNode {
  if (!path.startsWith('/')) throw new ImagePathError(`path '${path}' is not absolute`)
  let node = image.root
  for (const name of path.split('/').filter(part => part !== '' && part !== '.')) {
    const entry = node.entries?.find(e => e.name === name)
    if (entry == null) throw new ImagePathError(`no '${name}' in ${path} of the image`)
    node = entry.node
  }
  return node
}

class ShoalDaemon implements Daemon {
  private cache: ChunkCache | undefined
  private swarmNode: Swarm | undefined
  private client: RegistryClient | undefined
  private apiServer: Server | undefined
  private metricsServer: Server | undefined
  private metricsAt: string | undefined
  private metrics: DaemonMetrics | undefined
  private unsubscribe: (() => void) | undefined
  private readonly images = new Map<string, Promise<OpenedImage>>()
  private readonly active = new Map<string, ActiveMount>()
  private readonly stopController = new AbortController()
  private readonly errors: Record<string, number> = {}
  private nextMountId = 1
  private stopping: Promise<void> | undefined
  private readonly log: (line: string) => void

  /** Bootstrap layers already seen, by digest: an image opened again (or after a restart) reads its bootstrap here. */
  private readonly bootstrapCache: BootstrapLayerCache

  constructor (private readonly init: DaemonInit, private readonly components: DaemonComponents) {
    this.log = components.log ?? (() => {})
    this.bootstrapCache = bootstrapLayerDirectory(join(resolvePath(init.stateDir), 'bootstraps'))
  }

  get peerId (): string { return this.swarmOrThrow.peerId }
  get multiaddrs (): string[] { return this.swarmOrThrow.multiaddrs }
  get metricsUrl (): string | undefined { return this.metricsAt }

  private get swarmOrThrow (): Swarm {
    if (this.swarmNode == null) throw new Error('the daemon is not started')
    return this.swarmNode
  }

  async start (options: AbortOptions = {}): Promise<void> {
    throwIfAborted(options)
    const init = this.init
    if (init.stateDir == null || init.apiSocket == null) throw new DaemonConfigError('a state directory and an API socket path are required')
    const metricsAddress = init.metrics != null ? parseLoopbackAddress(init.metrics, 'metrics') : undefined
    const stateDir = resolvePath(init.stateDir)
    try {
      await mkdir(stateDir, { recursive: true, mode: 0o700 })
      this.cache = await openChunkCache({
        path: join(stateDir, 'cache'),
        maxBytes: init.cacheMaxBytes ?? DEFAULT_CACHE_BYTES,
        logger: { warn: (m) => { this.count('cache_damaged'); this.log(`cache: ${m}`) } }
      }, options)
      this.client = registry({ ...(init.insecureRegistries != null ? { insecureRegistries: init.insecureRegistries } : {}) })

      const promRegistry = new Registry()
      const libp2pMetrics = prometheusMetrics({ registry: promRegistry, statfsLocation: stateDir })({ logger: defaultLogger() })
      this.metrics = registerDaemonMetrics(promRegistry, () => this.metricsSnapshot())

      this.swarmNode = swarm({
        stateDir,
        ...(init.listen != null ? { listen: init.listen } : {}),
        ...(init.bootstrap != null ? { bootstrap: init.bootstrap } : {}),
        seed: init.seed === true,
        ...(init.swarmKey != null ? { swarmKeyFile: init.swarmKey } : {}),
        ...(init.allow != null ? { allow: init.allow } : {}),
        source: {
          ...(init.providerTimeout != null ? { providerTimeout: init.providerTimeout } : {}),
          ...(init.bitmapTimeout != null ? { bitmapTimeout: init.bitmapTimeout } : {})
        }
      })({ chunkStore: cacheChunkStore(this.cache), metrics: libp2pMetrics })
      await this.swarmNode.start()
      await this.joinBootstrapPeers(options)
      if (init.testServeFault != null) this.injectServeFault(init.testServeFault)

      // Provide on a blob's first chunk, withdraw on eviction; and announce what the cache already holds.
      this.unsubscribe = this.cache.subscribe(event => {
        if (event.type === 'blob-added') this.provide(event.blobId)
        else void this.swarmNode?.withdrawBlob(event.blobId).catch(err => { this.log(`withdraw ${event.blobId}: ${err?.message}`) })
      })
      for (const blobId of this.cache.blobs()) this.provide(blobId)

      await this.clearStaleMounts(stateDir)
      if (metricsAddress != null) {
        const served = await serveMetrics(promRegistry, metricsAddress.host, metricsAddress.port)
        this.metricsServer = served.server
        this.metricsAt = served.url
      }
      this.apiServer = await serveApi(init.apiSocket, {
        status: async () => this.status(),
        preheat: async (body, signal) => await this.preheat(body.image, { signal }),
        mounts: async () => this.mounts(),
        mount: async (body, signal) => await this.mount(body.image, body.mountpoint, { signal, ...(body.mode != null ? { mode: body.mode as 'fuse' | 'erofs' } : {}) }),
        unmount: async (id) => { await this.unmount(id); return { unmounted: id } },
        readFile: async (image, path, signal) => await this.readFile(image, path, { signal }),
        onError: (err: any) => { this.count('api'); this.log(`api: ${err?.name}: ${err?.message}`) }
      }, this.stopController.signal)
      this.log(`started ${this.peerId}${init.seed === true ? ' (seed)' : ''} on ${this.multiaddrs.join(' ')}`)
    } catch (err) {
      await this.stop().catch(() => {})
      throw err
    }
  }

  async stop (): Promise<void> {
    this.stopping ??= this.stopInOrder()
    await this.stopping
  }

  private async stopInOrder (): Promise<void> {
    this.stopController.abort()
    // No new requests; then the mounts, the images' devices, the announcements, the node, the cache.
    if (this.apiServer != null) {
      const server = this.apiServer
      await new Promise<void>(resolve => { server.close(() => { resolve() }); server.closeAllConnections() })
    }
    for (const id of [...this.active.keys()]) await this.unmount(id).catch(err => { this.log(`unmount ${id}: ${err?.message}`) })
    for (const opened of this.images.values()) {
      const image = await opened.catch(() => undefined)
      await image?.device.close().catch(() => {})
    }
    this.images.clear()
    this.unsubscribe?.()
    if (this.swarmNode != null) {
      for (const blobId of this.swarmNode.stats().provided) await this.swarmNode.withdrawBlob(blobId).catch(() => {})
      await this.swarmNode.stop()
    }
    await this.cache?.close()
    if (this.metricsServer != null) {
      const server = this.metricsServer
      await new Promise<void>(resolve => { server.close(() => { resolve() }); server.closeAllConnections() })
    }
    this.log('stopped')
  }

  async preheat (reference: string, options: AbortOptions = {}): Promise<PreheatResult> {
    const started = performance.now()
    const opened = await this.openImage(reference, options)
    const image = opened.image
    // A device of its own: closing it waits for every cache write, so the counts below are final.
    const device = this.makeDevice(opened.image, opened.registrySource)
    try {
      await this.preheatWith(device, options)
    } finally {
      await device.close()
    }
    // Kept so the status and metrics count what preheats fetched after their devices closed.
    this.closedDeviceStats.push(device.stats())
    // The cache provided each blob on its first chunk; provide again and wait, so peers find them now.
    await Promise.all(image.blobs.map(async blob => { await this.swarmOrThrow.provideBlob(blob.blobId, options) }))
    const fetched: Record<string, number> = {}
    addInto(fetched, device.stats().bytesBySource)
    const cache = this.cache!
    let chunks = 0
    let bytes = 0
    for (const blob of image.blobs) {
      for (const index of cache.chunks(blob.blobId)) {
        chunks++
        bytes += cache.locate(blob.blobId, index)?.uncompressedSize ?? 0
      }
    }
    const result = { image: reference, blobs: image.blobs.length, chunks, bytes, fetched, milliseconds: Math.round(performance.now() - started) }
    this.log(`preheated ${reference}: ${chunks} chunks, ${bytes} bytes in ${result.milliseconds} ms`)
    return result
  }

  /** Reads every blob's whole address space through `device`, a few windows at a time: each chunk fetched, verified, cached. */
  private async preheatWith (device: BlobDevice, options: AbortOptions): Promise<void> {
    const image = device.image
    const windows: Array<{ blob: number, offset: number, length: number }> = []
    for (const blob of image.blobs) {
      const size = device.blobSize(blob.index)
      for (let offset = 0; offset < size; offset += PREHEAT_WINDOW) windows.push({ blob: blob.index, offset, length: Math.min(PREHEAT_WINDOW, size - offset) })
    }
    let next = 0
    const worker = async (): Promise<void> => {
      // One buffer per worker, reused: a preheat wants the chunks cached, not the bytes, and
      // 16 MiB of fresh garbage per window kept the daemon's memory high long after.
      const into = Buffer.allocUnsafe(PREHEAT_WINDOW)
      while (next < windows.length) {
        throwIfAborted(options)
        const w = windows[next++]!
        await device.readBlobInto(w.blob, w.offset, into.subarray(0, w.length), options)
      }
    }
    await Promise.all(Array.from({ length: PREHEAT_CONCURRENCY }, worker))
  }

  async mount (reference: string, mountpoint: string, options: AbortOptions & { mode?: 'fuse' | 'erofs' } = {}): Promise<MountInfo> {
    const mounter = this.components.mounter
    if (mounter == null) throw new MountsUnsupportedError('this daemon was started without mount support')
    const target = resolvePath(mountpoint)
    if ([...this.active.values()].some(m => m.info.mountpoint === target)) throw new DaemonConfigError(`${target} is already mounted by this daemon`)
    return await this.withImage(reference, options, async opened => await this.mountOpened(reference, opened, target, mounter, options))
  }

  private async mountOpened (reference: string, opened: OpenedImage, target: string, mounter: Mounter, options: AbortOptions & { mode?: 'fuse' | 'erofs' }): Promise<MountInfo> {
    const id = `m${this.nextMountId++}-${Date.now().toString(36)}`
    const workDir = join(resolvePath(this.init.stateDir), 'mounts', id)
    await mkdir(workDir, { recursive: true, mode: 0o700 })
    // Written first, so a daemon killed while mounted can clear the mount when it starts again.
    await writeFile(join(workDir, 'mount.json'), JSON.stringify({ mountpoint: target, image: reference }))
    const bootstrapPath = join(workDir, 'image.boot')
    await writeFile(bootstrapPath, opened.bootstrap)
    let handle: MountHandle
    try {
      const mode = options.mode ?? this.init.mountMode
      handle = await mounter.mount({ device: opened.device, mountpoint: target, workDir, bootstrapPath, ...(mode != null ? { mode } : {}) }, options)
    } catch (err) {
      await rm(workDir, { recursive: true, force: true })
      throw err
    }
    const info: MountInfo = {
      id,
      image: reference,
      mountpoint: target,
      mode: handle.mode,
      ...(handle.fallbackReason != null ? { fallbackReason: handle.fallbackReason } : {}),
      createdAt: new Date().toISOString()
    }
    this.active.set(id, { info, handle, workDir, imageKey: opened.key })
    this.log(`mounted ${reference} at ${target} (${handle.mode})`)
    return info
  }

  async unmount (idOrMountpoint: string): Promise<void> {
    const target = idOrMountpoint.startsWith('/') ? resolvePath(idOrMountpoint) : idOrMountpoint
    const entry = this.active.get(idOrMountpoint) ?? [...this.active.values()].find(m => m.info.mountpoint === target)
    if (entry == null) throw new MountNotFoundError(`no mount ${idOrMountpoint} (mounted: ${[...this.active.values()].map(m => m.info.mountpoint).join(', ') || 'none'})`)
    await entry.handle.unmount()
    this.active.delete(entry.info.id)
    await rm(entry.workDir, { recursive: true, force: true })
    await this.closeSuperseded()
    this.log(`unmounted ${entry.info.mountpoint}`)
  }

  mounts (): MountInfo[] {
    return [...this.active.values()].map(m => ({ ...m.info }))
  }

  async readFile (reference: string, path: string, options: AbortOptions = {}): Promise<Uint8Array> {
    return await this.withImage(reference, { ...options, tagMaxAge: TAG_RESOLVE_TTL }, async ({ device, image }) => {
      const node = lookup(image, path)
      if (node.type !== 'file') throw new ImagePathError(`${path} in ${reference} is a ${node.type}, not a regular file`)
      return await device.readFile(node, 0, node.size, options)
    })
  }

  status (): DaemonStatus {
    const node = this.swarmOrThrow
    const stats = node.stats()
    const cache = this.cache!
    const cacheStats = cache.stats()
    const { bytesBySource, chunksBySource, errors } = this.readTotals()
    const peers = new Map<string, string[]>()
    for (const connection of node.node.getConnections()) {
      const peer = connection.remotePeer.toString()
      peers.set(peer, [...(peers.get(peer) ?? []), connection.remoteAddr.toString()])
    }
    return {
      peerId: node.peerId,
      addresses: node.multiaddrs,
      seed: this.init.seed === true,
      ...(this.metricsAt != null ? { metricsUrl: this.metricsAt } : {}),
      peers: [...peers].map(([peer, addresses]) => ({ peer, addresses })),
      blobsHeld: cache.blobs(),
      blobsProvided: stats.provided,
      cache: {
        path: cache.path,
        bytes: cacheStats.bytes,
        chunks: cacheStats.chunks,
        blobs: cacheStats.blobs,
        evictions: cacheStats.evictions,
        hits: cacheStats.hits,
        misses: cacheStats.misses
      },
      bytesBySource,
      chunksBySource,
      errors,
      served: { requests: stats.server.requests, chunks: stats.server.chunksServed, bytes: stats.server.bytesServed, busy: stats.server.busy },
      fetching: {
        chunksMissed: stats.source.chunksMissed,
        providerLookups: stats.source.providerLookups,
        providerLookupMisses: stats.source.providerLookupMisses,
        providerWidenings: stats.source.providerWidenings,
        hedgedRequests: stats.source.hedgedRequests,
        badChunks: stats.source.badChunks
      },
      blocklisted: stats.blocklisted,
      mounts: this.mounts(),
      images: [...this.images.keys()],
      memory: { rss: process.memoryUsage.rss(), heapUsed: process.memoryUsage().heapUsed }
    }
  }

  private readTotals (): { bytesBySource: Record<string, number>, chunksBySource: Record<string, number>, errors: Record<string, number> } {
    const bytesBySource: Record<string, number> = {}
    const chunksBySource: Record<string, number> = {}
    const errors: Record<string, number> = { ...this.errors }
    for (const stats of [...this.closedDeviceStats, ...[...this.openedImages()].map(image => image.device.stats())]) {
      addInto(bytesBySource, stats.bytesBySource)
      addInto(chunksBySource, stats.chunksBySource)
      for (const [source, count] of Object.entries(stats.errors)) {
        const kind = source === 'cache' ? 'cache_damaged' : `source_${roleOf(source)}`
        errors[kind] = (errors[kind] ?? 0) + count
      }
    }
    const badChunks = this.swarmNode?.stats().source.badChunks ?? 0
    if (badChunks > 0) errors.peer_bad_chunk = badChunks
    return { bytesBySource, chunksBySource, errors }
  }

  private metricsSnapshot (): MetricsSnapshot {
    const totals = this.readTotals()
    const cacheStats = this.cache?.stats()
    return {
      ...totals,
      peers: this.swarmNode != null ? new Set(this.swarmNode.node.getConnections().map(c => c.remotePeer.toString())).size : 0,
      cacheBytes: cacheStats?.bytes ?? 0,
      cacheBlobs: cacheStats?.blobs ?? 0,
      cacheChunks: cacheStats?.chunks ?? 0,
      providedBlobs: this.swarmNode?.stats().provided.length ?? 0,
      mounts: this.active.size
    }
  }

  /** Images opened so far and settled (a failed open is dropped from the map). */
  private * openedImages (): Generator<OpenedImage> {
    for (const opened of this.settled.values()) yield opened
  }

  private readonly settled = new Map<string, OpenedImage>()
  private readonly closedDeviceStats: BlobDeviceStats[] = []

  /**
   * The image a reference names now, and its device: opened once per manifest, so every mount and
   * read of it shares one device. A tag is resolved again (it may have moved); a bootstrap already
   * seen is read from the state dir, not the registry.
   */
  private async openImage (reference: string, options: AbortOptions & { tagMaxAge?: number }): Promise<OpenedImage> {
    throwIfAborted(options)
    if (this.stopController.signal.aborted) throw new Error('the daemon is stopping')
    if (!reference.startsWith('docker://')) throw new DaemonConfigError(`image '${reference}': the daemon reads images from registries, expected docker://HOST/REPO[:TAG|@DIGEST]`)
    const parsed = parseImageReference(reference)
    const location: ImageLocation = { store: registryImageStore(this.client!, parsed), reference: parsed.digest ?? parsed.tag ?? 'latest' }
    const signal = AbortSignal.any([this.stopController.signal, ...(options.signal != null ? [options.signal] : [])])
    // A digest names one manifest for ever; a tag is asked again once its answer is older than
    // tagMaxAge (mounts and preheats: always; file reads: a burst asks once).
    const known = this.currentKeys.get(reference)
    const fresh = known != null && Date.now() - known.at < (options.tagMaxAge ?? 0) ? known.key : undefined
    const manifest = parsed.digest == null && fresh == null ? await resolveManifest(location, { signal }) : undefined
    const key = fresh ?? `${parsed.registry}/${parsed.repository}@${manifest?.digest ?? parsed.digest!}`
    let opening = this.images.get(key)
    if (opening == null) {
      opening = this.openImageOnce(reference, key, location, manifest)
      this.images.set(key, opening)
      opening.then(opened => { this.settled.set(key, opened) }, () => { this.images.delete(key) })
    }
    if (fresh == null) this.currentKeys.set(reference, { key, at: Date.now() })
    if (known != null && known.key !== key) {
      this.log(`${reference} moved from ${known.key} to ${key}`)
      await this.closeSuperseded()
    }
    return await opening
  }

  /** Runs `use` on the image `reference` names, its device kept open meanwhile even if the tag moves. */
  private async withImage<T> (reference: string, options: AbortOptions & { tagMaxAge?: number }, use: (opened: OpenedImage) => Promise<T>): Promise<T> {
    const opened = await this.openImage(reference, options)
    this.inUse.set(opened.key, (this.inUse.get(opened.key) ?? 0) + 1)
    try {
      return await use(opened)
    } finally {
      const left = (this.inUse.get(opened.key) ?? 1) - 1
      if (left > 0) this.inUse.set(opened.key, left)
      else {
        this.inUse.delete(opened.key)
        await this.closeSuperseded()
      }
    }
  }

  /** Image key → calls using its device right now. */
  private readonly inUse = new Map<string, number>()

  /** Reference → the key it last resolved to, and when. */
  private readonly currentKeys = new Map<string, { key: string, at: number }>()

  private async openImageOnce (reference: string, key: string, location: ImageLocation, manifest: ResolvedManifest | undefined): Promise<OpenedImage> {
    const stored = await openNydusImage(location, {
      signal: this.stopController.signal,
      ...(manifest != null ? { manifest } : {}),
      bootstrapCache: this.bootstrapCache
    })
    const registrySource = this.timed(backendSource(stored.blobs, 'registry'))
    const device = this.makeDevice(stored.image, registrySource)
    this.log(`opened ${reference} (manifest ${stored.manifest.digest}, ${stored.image.blobs.length} blobs)`)
    return { reference, key, image: stored.image, bootstrap: stored.bootstrap, registrySource, device }
  }

  /** Closes the devices of images no reference names any more and no mount or call uses. */
  private async closeSuperseded (): Promise<void> {
    const wanted = new Set([...[...this.currentKeys.values()].map(k => k.key), ...[...this.active.values()].map(m => m.imageKey), ...this.inUse.keys()])
    for (const [key, opened] of [...this.settled]) {
      if (wanted.has(key)) continue
      this.settled.delete(key)
      this.images.delete(key)
      await opened.device.close().catch(() => {})
      this.closedDeviceStats.push(opened.device.stats())
      this.log(`closed ${key}: no reference names it and no mount uses it`)
    }
  }

  /**
   * The read path of an image: cache, then peers (which widen to the whole DHT and the seeds
   * before giving up on a chunk their first providers lacked), then the registry. A DHT miss goes
   * to the registry at once.
   */
  private makeDevice (image: RafsImage, registrySource: ChunkSource): BlobDevice {
    const peers = this.timed(this.swarmOrThrow.chunkSource)
    return blobDevice({
      image,
      cache: this.timedCache(this.cache!),
      sources: [peers, registrySource],
      logger: { warn: (m) => { this.log(`read: ${m}`) } }
    })
  }

  /** The same source, its answers timed into the latency histogram. */
  private timed (source: ChunkSource): ChunkSource {
    const metrics = this.metrics
    const role = roleOf(source.name)
    return {
      name: source.name,
      ...(source.delivers != null ? { delivers: source.delivers } : {}),
      getChunks: async (refs, options) => {
        const started = performance.now()
        try {
          return await source.getChunks(refs, options)
        } finally {
          metrics?.observeFetch(role, (performance.now() - started) / 1000)
        }
      }
    }
  }

  private timedCache (cache: ChunkCache): ChunkCache {
    const metrics = this.metrics
    return new Proxy(cache, {
      get (target, key, receiver) {
        if (key === 'get') {
          return async (...args: Parameters<ChunkCache['get']>) => {
            const started = performance.now()
            const bytes = await target.get(...args)
            if (bytes != null) metrics?.observeFetch('cache', (performance.now() - started) / 1000)
            return bytes
          }
        }
        const value = Reflect.get(target, key, receiver)
        return typeof value === 'function' ? value.bind(target) : value
      }
    })
  }

  private provide (blobId: BlobId): void {
    const node = this.swarmNode
    if (node == null || this.stopController.signal.aborted) return
    node.provideBlob(blobId, { signal: this.stopController.signal }).catch(err => {
      if (!this.stopController.signal.aborted) this.log(`provide ${blobId}: ${err?.message}`)
    })
  }

  private count (kind: string): void {
    this.errors[kind] = (this.errors[kind] ?? 0) + 1
  }

  /** Mounts recorded under the state dir belong to a daemon that died: clear them before serving. */
  private async clearStaleMounts (stateDir: string): Promise<void> {
    const dir = join(stateDir, 'mounts')
    const names = await readdir(dir).catch(() => [] as string[])
    for (const name of names) {
      const workDir = join(dir, name)
      const record = await readFile(join(workDir, 'mount.json'), 'utf8').then(text => JSON.parse(text) as { mountpoint?: unknown }, () => undefined)
      if (typeof record?.mountpoint === 'string') {
        await this.components.mounter?.forceUnmount?.(record.mountpoint)
        this.log(`cleared a mount left by an earlier run at ${record.mountpoint}`)
      }
      await this.components.mounter?.clearWorkDir?.(workDir)
      await rm(workDir, { recursive: true, force: true }).catch((err: any) => { this.log(`could not remove ${workDir}: ${err?.message}`) })
    }
  }

  /**
   * Dials the seeds before the daemon calls itself ready, so its first lookup already has a routing
   * table; a seed that cannot be reached is logged and retried by libp2p's bootstrap discovery.
   */
  private async joinBootstrapPeers (options: AbortOptions): Promise<void> {
    const node = this.swarmOrThrow
    let reached = 0
    await Promise.all((this.init.bootstrap ?? []).map(async address => {
      const signal = AbortSignal.any([AbortSignal.timeout(BOOTSTRAP_DIAL_TIMEOUT), ...(options.signal != null ? [options.signal] : [])])
      await node.dial(address, { signal }).then(() => { reached++ }, (err: any) => { this.log(`bootstrap peer ${address} not reached: ${err?.message}`) })
    }))
    if (reached === 0) return
    // A connection is not yet a DHT peer: identify must finish first. A lookup before that finds
    // nobody and goes to the registry, so wait (bounded) for the routing table to hold a peer.
    const dht = (node.node as unknown as { services: { dht?: { routingTable?: { size: number } } } }).services.dht
    const deadline = Date.now() + BOOTSTRAP_DIAL_TIMEOUT
    while ((dht?.routingTable?.size ?? 1) === 0 && Date.now() < deadline) {
      throwIfAborted(options)
      await sleep(20)
    }
    if ((dht?.routingTable?.size ?? 1) === 0) this.log('no DHT peer yet after reaching a seed; lookups go to the registry until one joins')
  }

  /** TESTS ONLY: make this daemon's chunk server lie, through the swarm's test hook. */
  private injectServeFault (fault: ServeFault): void {
    const server = (this.swarmOrThrow as unknown as { chunkServer?: { mutateChunk?: unknown } }).chunkServer
    if (server == null) throw new DaemonConfigError('testServeFault: this swarm has no chunk server test hook')
    this.log(`TEST FAULT: serving peers ${fault} chunks`)
    server.mutateChunk = (_blob: string, index: number, bytes: Uint8Array) => {
      if (fault === 'corrupt') {
        const copy = Uint8Array.from(bytes)
        copy[copy.length >> 1]! ^= 0x40
        return { index, bytes: copy }
      }
      if (fault === 'truncate') return { index, bytes: bytes.subarray(0, bytes.length >> 1), truncate: true }
      return { index: index + 1, bytes }
    }
  }
}
