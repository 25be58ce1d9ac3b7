/**
 * The read path under a mount: chunk bytes from memory, the chunk cache or ordered chunk sources
 * (single flight, runs of adjacent chunks, readahead, bandwidth-capped prefetch), each verified
 * against its digest before use. Also the sources built on whole-blob backends.
 */
export * from './errors.js'
export * from './blob-directory.js'
export * from './chunk-reader.js'
export * from './sources.js'
export * from './device.js'
