/**
 * An on-disk cache of verified, uncompressed chunks keyed by (blob id, chunk index): one sparse
 * file per blob with chunks at their uncompressed offsets, a LevelDB index, crash-safe commits,
 * a size cap with LRU eviction of unpinned blobs, and events for the swarm.
 */
export * from './errors.js'
export * from './cache.js'
export * from './chunk-store.js'
