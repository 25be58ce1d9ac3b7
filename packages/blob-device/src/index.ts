/**
 * The read path under a mount: chunk bytes from the cache or from ordered chunk sources, each
 * verified before use. For now: a local blob directory and verified chunk reads over any BlobBackend.
 */
export * from './blob-directory.js'
export * from './chunk-reader.js'
