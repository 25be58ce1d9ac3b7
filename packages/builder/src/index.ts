/**
 * The Nydus image builder: OCI layers (tar, tar+gzip, tar+zstd) in, one data blob per layer and
 * one RAFS v6 bootstrap for the merged image out. Opens no sockets; layers and blob destinations
 * are given by the caller.
 */
export * from './errors.js'
export { readTar, type TarEntry, type TarEntryType } from './tar.js'
export { openLayer, detectLayerCompression, type LayerSource, type LayerCompression } from './layer-stream.js'
export { normalizeLayerPath, joinLayerPath } from './path.js'
export { LayerTree, encodeDevice, WHITEOUT_PREFIX, OPAQUE_WHITEOUT, type NodeSpec, type MergedTree } from './tree.js'
export { Chunker, validateChunkSize, emptyCounts, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE, type ChunkStore, type ChunkCounts } from './chunker.js'
export { applyLayer, type ApplyLayerContext } from './apply-layer.js'
export { applyDirectory, type ApplyDirectoryContext } from './directory.js'
export {
  buildImage, buildFromDirectory, resolvePrefetch,
  type BuildOptions, type BuildImageOptions, type BuildResult, type BuildRunOptions, type BuildProgressEvent,
  type BlobSink, type BlobTarget, type LayerBlob, type LayerBuildResult
} from './build.js'
