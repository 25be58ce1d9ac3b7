/**
 * The converter (nydusify's role): an OCI image in one ImageStore → a Nydus image in another,
 * through the builder; plus opening a Nydus image that lives in a store (its bootstrap, and its
 * blobs as a BlobBackend with Range reads).
 */
export * from './errors.js'
export { convertImage, BUILDER_VERSION } from './convert.js'
export type { ConvertOptions, ConvertTarget, ConvertSummary, ConvertLayerSummary, ConvertProgressEvent, PushedBlob } from './convert.js'
export { resolveManifest, storeBlobBackend, describeLocation } from './resolve.js'
export type { ImageLocation, ResolvedManifest, ResolveOptions } from './resolve.js'
export { openNydusImage, findBootstrapLayer } from './nydus-image.js'
export type { StoredNydusImage, OpenNydusImageOptions } from './nydus-image.js'
export { bootstrapLayerDirectory, type BootstrapLayerCache, type BootstrapLayerDirectory } from './bootstrap-cache.js'
export { makeBootstrapLayer, readBootstrapLayer, MAX_BOOTSTRAP_BYTES } from './bootstrap-layer.js'
export type { BootstrapLayer } from './bootstrap-layer.js'
