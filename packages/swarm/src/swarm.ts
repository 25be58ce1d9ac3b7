/**
 * The swarm component: a libp2p node (TCP, Noise or TLS, Yamux, Identify, Ping, a private
 * Kademlia DHT under /shoal), content routing of blobs, the chunk protocol server, and the
 * SwarmChunkSource that blob-device reads through.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { identify } from '@libp2p/identify'
import type { ComponentLogger, Logger, Metrics, PeerId, PrivateKey } from '@libp2p/interface'
import { kadDHT, removePublicAddressesMapper, type KadDHT, type SingleKadDHT } from '@libp2p/kad-dht'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { multiaddr } from '@multiformats/multiaddr'
import { AbortError, throwIfAborted, type AbortOptions, type BlobId, type ChunkStore } from '@shoal/interface'
import { createLibp2p, type Libp2p } from 'libp2p'
import { ChunkServer, type ChunkServerStats, type WireEncoding } from './chunk-server.js'
import { blobCid } from './cid.js'
import { loadOrCreatePeerKey, readSwarmKey } from './keys.js'
import { CHUNK_PROTOCOL, DHT_PROTOCOL } from './protocol.js'
import { defaultVerifyThreads, VerifyPool } from './verify-pool.js'
import { SwarmChunkSource, type PeerNetwork, type SwarmSourceInit, type SwarmSourceStats } from './swarm-source.js'

export interface SwarmInit {
  /** Directory for the peer key (`peer-key`); without it the peer id changes on every start. */
  stateDir?: string
  /** Multiaddrs to listen on; default `/ip4/127.0.0.1/tcp/0`. */
  listen?: string[]
  /** Multiaddrs (with /p2p/ID) of seed nodes to join through. */
  bootstrap?: string[]
  /** A seed serves with higher limits. */
  seed?: boolean
  /** Path of a swarm key file (`/key/swarm/psk/1.0.0/`); only hosts with the same key connect. */
  swarmKeyFile?: string
  /** The swarm key's bytes, instead of a file. */
  swarmKey?: Uint8Array
  /** Connection encryption; default noise. */
  encryption?: 'noise' | 'tls'
  /** Multiaddr prefixes always allowed past connection limits (loopback in tests). */
  allow?: string[]
  /** How long other peers keep our provider records (ms); default 20 minutes. */
  provideValidity?: number
  /** How often every held blob is provided again (ms); default 5 minutes. */
  reprovideInterval?: number
  /** Chunk server limits; defaults depend on `seed`. */
  maxConcurrentRequests?: number
  maxQueuedRequests?: number
  uploadBandwidth?: number
  /** Client tuning (see SwarmSourceInit). */
  source?: Partial<SwarmSourceInit>
  /** How long a misbehaving peer stays blocklisted (ms); default 1 hour. */
  blocklistTime?: number
  /** DHT self-query delay after start (ms): shortens the time to the first successful provide. */
  initialQuerySelfInterval?: number
  /**
   * Worker threads that verify (hash, and decompress when sent stored) received chunks, so that
   * runs beside the transport on another core; 0 verifies on the event loop. Default: cores
   * minus 2, at most 4 (so none on a 2-core host, where a thread did not pay for itself).
   */
  verifyThreads?: number
  /**
   * What the chunk server puts on the wire: 'stored' (default), the chunk as stored in its blob,
   * whenever the chunk store keeps that form (a StoredChunkStore), else its uncompressed bytes;
   * 'uncompressed' always sends uncompressed bytes. Measured in docs/protocol.md: for zstd blobs
   * of real files, stored costs both ends less CPU per MiB delivered.
   */
  wireEncoding?: WireEncoding
}

export interface FindProvidersOptions extends AbortOptions {
  /** Wait at most this long for the first provider (ms); after it, gather more for as long again (20 ms at least). */
  timeout?: number
  /** Stop once this many providers are found (default 20). */
  max?: number
  /** Gather until the DHT walk ends (or `timeout`), not just briefly after the first provider. */
  exhaustive?: boolean
}

export interface SwarmComponents {
  chunkStore: ChunkStore
  logger?: ComponentLogger
  metrics?: Metrics
}

export interface SwarmStats {
  peerId: string
  connections: number
  provided: BlobId[]
  server: ChunkServerStats
  source: SwarmSourceStats
  blocklisted: Array<{ peer: string, reason: string, until: number }>
  peers: ReturnType<SwarmChunkSource['peerSummaries']>
}

export interface Swarm {
  readonly peerId: string
  /** Addresses peers can dial, each ending in /p2p/<peer id>. */
  readonly multiaddrs: string[]
  readonly chunkSource: SwarmChunkSource
  /** The underlying node, for the daemon's status page and for benchmarks. */
  readonly node: Libp2p
  start(): Promise<void>
  stop(): Promise<void>
  /** Announce that we hold chunks of `blobId` (call on its first chunk); idempotent. */
  provideBlob(blobId: BlobId, options?: AbortOptions): Promise<void>
  /** Stop announcing `blobId` (call on eviction of its last chunk). See docs/protocol.md. */
  withdrawBlob(blobId: BlobId, options?: AbortOptions): Promise<void>
  /** Peer ids providing `blobId` (never ourselves), waiting at most `timeout` ms for the first. */
  findProviders(blobId: BlobId, options?: FindProvidersOptions): Promise<string[]>
  dial(address: string, options?: AbortOptions): Promise<void>
  blocklist(peer: string, reason: string): void
  stats(): SwarmStats
}

const MINUTE = 60_000
/** How long a blob's last non-empty provider list answers a lookup that found none in time. */
const RECENT_PROVIDERS_TIME = MINUTE

export const SOURCE_DEFAULTS: SwarmSourceInit = {
  providerTimeout: 100,
  providerCacheTime: 10_000,
  bitmapCacheTime: 2_000,
  bitmapTimeout: 1_000,
  maxPeersPerBlob: 8,
  maxChunksPerRequest: 16,
  hedgeFactor: 3,
  hedgeMinDelay: 30,
  requestTimeout: 10_000,
  widenTimeout: 1_000
}

export function swarm (init: SwarmInit = {}): (components: SwarmComponents) => Swarm {
  return (components) => new ShoalSwarm(init, components)
}

class ShoalSwarm implements Swarm {
  readonly chunkSource: SwarmChunkSource
  private libp2p: Libp2p<{ dht: KadDHT }> | undefined
  private readonly log: Logger
  private readonly logger: ComponentLogger
  private readonly server: ChunkServer
  private readonly provided = new Set<BlobId>()
  private readonly blocked = new Map<string, { reason: string, until: number }>()
  private reprovideTimer: NodeJS.Timeout | undefined
  private reproviding: Promise<void> | undefined
  private readonly stopController = new AbortController()
  private readonly verifyPool: VerifyPool
  private readonly recentProviders = new Map<BlobId, { peers: string[], at: number }>()
  /** Some blob was provided while the routing table was empty. */
  private providedAlone = false
  private joinTimer: NodeJS.Timeout | undefined
  /** Peer ids of the bootstrap peers (the seeds), from their /p2p/ addresses. */
  private readonly seeds: string[]

  constructor (private readonly init: SwarmInit, private readonly components: SwarmComponents) {
    this.logger = components.logger ?? defaultLogger()
    this.seeds = [...new Set((init.bootstrap ?? []).flatMap(address => multiaddr(address).getComponents().filter(c => c.name === 'p2p' && c.value != null).map(c => c.value!)))]
    this.log = this.logger.forComponent('shoal:swarm')
    const seed = init.seed === true
    this.server = new ChunkServer(components.chunkStore, {
      maxConcurrentRequests: init.maxConcurrentRequests ?? (seed ? 64 : 8),
      maxQueuedRequests: init.maxQueuedRequests ?? (seed ? 256 : 32),
      uploadBandwidth: init.uploadBandwidth ?? (seed ? Infinity : 200 * 1024 * 1024),
      streamIdleTimeout: 30_000,
      wireEncoding: init.wireEncoding ?? 'stored'
    }, this.logger.forComponent('shoal:swarm:server'))
    const network: PeerNetwork = {
      findProviders: async (blobId, options) => await this.findProviders(blobId, options),
      seedPeers: () => this.seedPeers,
      openChunkStream: async (peer, options) => await this.node.dialProtocol(peerIdFromString(peer), CHUNK_PROTOCOL, options),
      blocklist: (peer, reason) => { this.blocklist(peer, reason) },
      isBlocklisted: (peer) => this.isBlocklisted(peer)
    }
    const metrics = components.metrics
    const chunks = metrics?.registerCounter('shoal_swarm_chunks_received_total', { help: 'verified chunks received from peers' })
    const bytes = metrics?.registerCounter('shoal_swarm_bytes_received_total', { help: 'verified bytes received from peers' })
    const bad = metrics?.registerCounterGroup('shoal_swarm_bad_chunks_total', { help: 'chunks from peers that failed verification, by kind', label: 'kind' })
    const blocklisted = metrics?.registerCounter('shoal_swarm_peers_blocklisted_total', { help: 'peers blocklisted for sending bad data' })
    const hedges = metrics?.registerCounter('shoal_swarm_hedged_requests_total', { help: 'requests hedged to a second peer' })
    const latency = metrics?.registerHistogram('shoal_swarm_chunk_seconds', { help: 'time from request to verified chunk', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5] })
    this.verifyPool = new VerifyPool(init.verifyThreads ?? defaultVerifyThreads())
    this.chunkSource = new SwarmChunkSource(network, { ...SOURCE_DEFAULTS, ...init.source }, this.logger.forComponent('shoal:swarm:source'), {
      onChunk: (n, ms) => { chunks?.increment(); bytes?.increment(n); latency?.observe(ms / 1000) },
      onBadChunk: (kind) => { bad?.increment({ [kind]: true }) },
      onBlocklist: () => { blocklisted?.increment() },
      onHedge: () => { hedges?.increment() }
    }, this.verifyPool)
  }

  get node (): Libp2p {
    if (this.libp2p == null) throw new Error('the swarm is not started')
    return this.libp2p
  }

  get peerId (): string { return this.node.peerId.toString() }

  get multiaddrs (): string[] { return this.node.getMultiaddrs().map(ma => ma.toString()) }

  async start (): Promise<void> {
    if (this.libp2p != null) return
    const init = this.init
    const privateKey: PrivateKey | undefined = init.stateDir != null ? await loadOrCreatePeerKey(init.stateDir) : undefined
    const psk = init.swarmKey ?? (init.swarmKeyFile != null ? await readSwarmKey(init.swarmKeyFile) : undefined)
    const provideValidity = init.provideValidity ?? 20 * MINUTE
    this.libp2p = await createLibp2p({
      ...(privateKey != null ? { privateKey } : {}),
      addresses: { listen: init.listen ?? ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [init.encryption === 'tls' ? tls() : noise()],
      streamMuxers: [yamux()],
      ...(psk != null ? { connectionProtector: preSharedKey({ psk }) } : {}),
      connectionManager: { allow: init.allow ?? [] },
      connectionGater: {
        denyDialPeer: (peerId: PeerId) => this.isBlocklisted(peerId.toString()),
        denyInboundEncryptedConnection: (peerId: PeerId) => this.isBlocklisted(peerId.toString())
      },
      peerDiscovery: (init.bootstrap?.length ?? 0) > 0 ? [bootstrap({ list: init.bootstrap!, timeout: 0 })] : [],
      logger: this.logger,
      ...(this.components.metrics != null ? { metrics: () => this.components.metrics! } : {}),
      services: {
        identify: identify(),
        ping: ping(),
        dht: kadDHT({
          protocol: DHT_PROTOCOL,
          clientMode: false,
          // Our peers live on private and loopback addresses; the default mapper would drop them.
          peerInfoMapper: removePublicAddressesMapper,
          initialQuerySelfInterval: init.initialQuerySelfInterval ?? 100,
          allowQueryWithZeroPeers: true,
          providers: { provideValidity: Math.ceil(provideValidity / 1000) },
          reprovide: { validity: provideValidity, threshold: provideValidity / 2, interval: Math.min(provideValidity / 4, 5 * MINUTE) }
        })
      }
    })
    await this.libp2p.handle(CHUNK_PROTOCOL, this.server.handle, {
      maxInboundStreams: (init.seed === true ? 256 : 64),
      maxOutboundStreams: 256,
      runOnLimitedConnection: false
    })
    const interval = init.reprovideInterval ?? 5 * MINUTE
    this.reprovideTimer = setInterval(() => { this.startReprovide() }, interval)
    this.reprovideTimer.unref()
    this.libp2p.addEventListener('peer:identify', this.onPeerIdentified)
    this.log('started %s on %s', this.peerId, this.multiaddrs.join(' '))
  }

  async stop (): Promise<void> {
    if (this.libp2p == null) return
    clearInterval(this.reprovideTimer)
    clearTimeout(this.joinTimer)
    this.libp2p.removeEventListener('peer:identify', this.onPeerIdentified)
    this.stopController.abort()
    await this.reproviding
    await this.libp2p.stop()
    this.libp2p = undefined
    await this.verifyPool.close()
  }

  async provideBlob (blobId: BlobId, options?: AbortOptions): Promise<void> {
    const cid = blobCid(blobId)
    this.provided.add(blobId)
    // Provided before the DHT knows any peer, the record stays here alone: provide again on joining.
    if (this.routingTableSize === 0) {
      this.providedAlone = true
      this.onPeerIdentified()
    }
    const signal = AbortSignal.any([this.stopController.signal, ...(options?.signal != null ? [options.signal] : [])])
    try {
      await this.node.contentRouting.provide(cid, { signal })
    } catch (err: any) {
      if (options?.signal?.aborted === true) throw new AbortError()
      // Kept in `provided`: the next re-provide tries again (e.g. before any peer is known).
      this.log('provide of blob %s failed: %s', blobId, err?.message)
    }
  }

  async withdrawBlob (blobId: BlobId, options?: AbortOptions): Promise<void> {
    this.provided.delete(blobId)
    await this.dht.cancelReprovide(blobCid(blobId), options)
  }

  async findProviders (blobId: BlobId, options: FindProvidersOptions = {}): Promise<string[]> {
    if (options.signal?.aborted === true) throw new AbortError()
    const firstTimeout = options.timeout ?? SOURCE_DEFAULTS.providerTimeout
    const controller = new AbortController()
    const onAbort = (): void => { controller.abort() }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    // Wait `firstTimeout` for the first provider; after it, gather others briefly (or, exhaustive,
    // until the walk ends).
    let timer = setTimeout(() => { controller.abort() }, firstTimeout)
    const self = this.peerId
    const found = new Set<string>()
    const started = performance.now()
    try {
      for await (const provider of this.node.contentRouting.findProviders(blobCid(blobId), { signal: controller.signal })) {
        const id = provider.id.toString()
        if (id === self || found.has(id)) continue
        if (provider.multiaddrs.length > 0) {
          await this.node.peerStore.merge(provider.id, { multiaddrs: provider.multiaddrs }).catch(() => {})
        }
        found.add(id)
        if (found.size === 1 && options.exhaustive !== true) {
          // Others get as long again as the first took (at least 20 ms): on a loaded host every
          // answer is slower, and a list of one puts all the work on one peer.
          clearTimeout(timer)
          timer = setTimeout(() => { controller.abort() }, Math.min(firstTimeout, Math.max(20, performance.now() - started)))
        }
        if (found.size >= (options.max ?? 20)) break
      }
    } catch (err: any) {
      throwIfAborted(options)
      if (!controller.signal.aborted) this.log('findProviders of blob %s failed: %s', blobId, err?.message)
    } finally {
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      controller.abort()
    }
    // A DHT walk on a loaded host can miss the first-result window; providers seen in the last
    // minute are still a better answer than none (their records live provideValidity anyway).
    const now = Date.now()
    if (found.size > 0) {
      this.recentProviders.delete(blobId)
      this.recentProviders.set(blobId, { peers: [...found], at: now })
      if (this.recentProviders.size > 4096) this.recentProviders.delete(this.recentProviders.keys().next().value!)
      return [...found]
    }
    const recent = this.recentProviders.get(blobId)
    if (recent != null && now - recent.at <= RECENT_PROVIDERS_TIME) return recent.peers.slice(0, options.max ?? 20)
    return []
  }

  async dial (address: string, options?: AbortOptions): Promise<void> {
    await this.node.dial(multiaddr(address), options)
  }

  blocklist (peer: string, reason: string): void {
    this.blocked.set(peer, { reason, until: Date.now() + (this.init.blocklistTime ?? 60 * MINUTE) })
    if (this.libp2p != null) {
      this.libp2p.hangUp(peerIdFromString(peer)).catch(() => {})
    }
  }

  stats (): SwarmStats {
    return {
      peerId: this.peerId,
      connections: this.node.getConnections().length,
      provided: [...this.provided],
      server: { ...this.server.stats },
      source: { ...this.chunkSource.stats, bytesByPeer: { ...this.chunkSource.stats.bytesByPeer } },
      blocklisted: [...this.blocked].map(([peer, entry]) => ({ peer, ...entry })),
      peers: this.chunkSource.peerSummaries()
    }
  }

  /** The chunk server, for a fault-injecting test node. */
  get chunkServer (): ChunkServer { return this.server }

  /** The seeds other than ourselves. */
  private get seedPeers (): string[] {
    const self = this.libp2p?.peerId.toString()
    return this.seeds.filter(peer => peer !== self)
  }

  private isBlocklisted (peer: string): boolean {
    const entry = this.blocked.get(peer)
    if (entry == null) return false
    if (entry.until < Date.now()) {
      this.blocked.delete(peer)
      return false
    }
    return true
  }

  private get dht (): KadDHT {
    return (this.node as Libp2p<{ dht: KadDHT }>).services.dht
  }

  /** Peers in the DHT's routing table (kadDHT with one protocol is a SingleKadDHT). */
  private get routingTableSize (): number {
    return (this.dht as SingleKadDHT).routingTable?.size ?? 0
  }

  private startReprovide (): void {
    if (this.reproviding != null) return
    this.reproviding = this.reprovideAll().finally(() => { this.reproviding = undefined })
  }

  /**
   * A host gets its first chunk (from the registry) and provides before it has joined the DHT:
   * once a peer is in the routing table (the DHT adds it after identify), provide everything again.
   * Runs on each identify and on a provide made alone; checks for at most 2 s each time.
   */
  private readonly onPeerIdentified = (): void => {
    if (!this.providedAlone || this.joinTimer != null) return
    // The DHT adds the peer a moment after identify: look for it a few times, 50 ms apart.
    let checks = 0
    const check = (): void => {
      this.joinTimer = undefined
      if (this.libp2p == null || !this.providedAlone) return
      if (this.routingTableSize === 0) {
        if (++checks < 40) this.joinTimer = setTimeout(check, 50)
        return
      }
      this.providedAlone = false
      this.log('joined the DHT after providing alone: providing %d blob(s) again', this.provided.size)
      this.startReprovide()
    }
    this.joinTimer = setTimeout(check, 50)
  }

  private async reprovideAll (): Promise<void> {
    // Bounded: one pass over a snapshot of the set.
    for (const blobId of [...this.provided]) {
      if (this.stopController.signal.aborted) return
      await this.provideBlob(blobId).catch(() => {})
    }
  }
}
