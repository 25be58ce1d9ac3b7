/**
 * Nydus data blobs: compression, chunk digests, chunk decoding, blob.meta, the ToC, and a
 * streaming blob writer. Bytes in, bytes out.
 */
export { compress, compressChunk, decompress, compressorCode, compressorFromCode, MAX_DECOMPRESSED_SIZE } from './compression.js'
export { chunkDigest, sha256, toHex, digestsEqual, digesterCode, digesterFromCode, DIGEST_SIZE } from './digest.js'
export { decodeChunk, decodeChunkRef, chunkRefOf } from './chunk.js'
export {
  BLOB_META_MAGIC, BLOB_META_HEADER_SIZE, CHUNK_INFO_V1_SIZE, CHUNK_INFO_V2_SIZE, MAX_CHUNK_SIZE, MAX_CHUNKS_PER_BLOB,
  CHUNK_ALIGNMENT, BlobFeature, decodeBlobMetaHeader, encodeBlobMetaHeader, encodeChunkInfo, decodeChunkInfo,
  readBlobMeta, readBlobDigests, rafsChunkOf
} from './meta.js'
export type { BlobMetaHeader, BlobChunkInfo, BlobMeta, ReadBlobMetaOptions, ReadBlobDigestsOptions } from './meta.js'
export { TOC_ENTRY, TOC_ENTRY_SIZE, readBlobToc, findTocEntry, readTocEntry, encodeToc } from './toc.js'
export type { BlobToc, BlobTocEntry, BlobWindowOptions, ReadBlobTocOptions, ReadTocEntryOptions } from './toc.js'
export { TAR_HEADER_SIZE, encodeTarHeader, decodeTarHeader } from './tar.js'
export type { TarHeader } from './tar.js'
export { BlobWriter } from './writer.js'
export type { BlobWriterOptions, BlobWriterResult } from './writer.js'
