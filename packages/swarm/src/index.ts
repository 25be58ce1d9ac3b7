/**
 * The Shoal swarm: a libp2p node whose hosts find each other's blobs through a private
 * Kademlia DHT and exchange verified chunks over `/shoal/chunk/1.0.0` (docs/protocol.md).
 *
 *   const s = swarm({ stateDir, bootstrap: [seedAddr] })({ chunkStore })
 *   await s.start()
 *   const device = blobDevice({ image, sources: [s.chunkSource, registrySource] })
 */
export { swarm, SOURCE_DEFAULTS } from './swarm.js'
export type { Swarm, SwarmInit, SwarmComponents, SwarmStats, FindProvidersOptions } from './swarm.js'
export { SwarmChunkSource } from './swarm-source.js'
export type { SwarmSourceInit, SwarmSourceStats, PeerNetwork } from './swarm-source.js'
export type { ChunkServerStats, StoredChunkStore, WireEncoding } from './chunk-server.js'
export { blobCid } from './cid.js'
export { loadOrCreatePeerKey, generateSwarmKey, writeSwarmKey, parseSwarmKey, readSwarmKey, PEER_KEY_FILE } from './keys.js'
export { CHUNK_PROTOCOL, DHT_PROTOCOL, MessageType, ChunkEncoding, ErrorCode, MAX_CHUNKS_PER_REQUEST, MAX_CHUNK_BYTES } from './protocol.js'
export * from './errors.js'
