/**
 * The RAFS format: read v5 and v6 bootstraps, write v6 bootstraps, read and write Nydus data
 * blobs (chunks, blob.meta, ToC), compression and digests. Bytes in, bytes out: no network,
 * no filesystem policy.
 */
export * from './model.js'
export * from './errors.js'
export * from './device-number.js'
export * from './blob/index.js'
export * from './v5/index.js'
export * from './v6/index.js'
export * from './tree-json.js'
export * from './bootstrap.js'
export * from './stats.js'
