/**
 * Writes a Nydus data blob as a stream, laid out as nydus-image lays it out:
 *
 *   chunk data | tar "image.blob" | chunk info array | blob.meta header | tar "blob.meta"
 *   | chunk digests | tar "blob.digest" | ToC entries | tar "rafs.blob.toc"
 *
 * Uncompressed chunk offsets are 4 KiB-aligned. With compressor `none` the chunk data is padded
 * so that every chunk's stored offset equals its uncompressed offset: the blob file is then an
 * EROFS device for a v6 bootstrap as it is.
 */
import { createHash, type Hash } from 'node:crypto'
import { InvalidArgumentError, type Compressor, type Digester } from '@shoal/interface'
import type { RafsBlob, RafsBlobMetaLocation, RafsChunk } from '../model.js'
import { compressChunk } from './compression.js'
import { DIGEST_SIZE, chunkDigest, sha256 } from './digest.js'
import {
  BLOB_META_HEADER_SIZE, BlobFeature, CHUNK_ALIGNMENT, CHUNK_INFO_V1_SIZE, CHUNK_INFO_V2_SIZE, MAX_CHUNKS_PER_BLOB,
  MAX_CHUNK_SIZE, encodeBlobMetaHeader, encodeChunkInfo
} from './meta.js'
import { TOC_ENTRY, encodeToc, type BlobTocEntry } from './toc.js'
import { encodeTarHeader } from './tar.js'

export interface BlobWriterOptions {
  compressor: Compressor
  digester: Digester
  /** The image's chunk size: a power of two from 4 KiB to 16 MiB. No chunk may be larger. */
  chunkSize: number
  /**
   * Receives the blob's bytes in order. Called synchronously; it must consume or copy the bytes
   * before the next call (they are not reused by the writer, but the caller's own chunk buffers
   * are never passed through).
   */
  write: (bytes: Uint8Array) => void
  /** blob.meta chunk info layout: 1 (16 bytes, what nydus-image writes by default) or 2 (24 bytes, with flags). */
  chunkInfoVersion?: 1 | 2
}

export interface BlobWriterResult {
  /** sha256 hex of the whole blob file: its OCI layer digest. */
  blobId: string
  /** Bytes of chunk data (with padding when the compressor is `none`). */
  compressedSize: number
  /** End of the last chunk once uncompressed, rounded up to 4 KiB (as Nydus records it). */
  uncompressedSize: number
  chunkCount: number
  meta: RafsBlobMetaLocation
  /** Size of the blob file. Nydus v6 blob tables store this as the blob's compressed_size. */
  fileSize: number
  /** Feature bits of the blob, for the bootstrap's blob table (same as the blob.meta header's). */
  features: number
  /** The ToC as a v6 blob table records it: offset, size and sha256 with its tar header. */
  toc: { offset: number, size: number, digest: Uint8Array }
  /** The blob as a bootstrap names it (index 0: the caller sets it). */
  blob: RafsBlob
}

const BASE_FEATURES = BlobFeature.ALIGNED | BlobFeature.INLINED_CHUNK_DIGEST | BlobFeature.HAS_TAR_HEADER |
  BlobFeature.HAS_TOC | BlobFeature.CAP_TAR_TOC

export class BlobWriter {
  private readonly compressor: Compressor
  private readonly digester: Digester
  private readonly chunkSize: number
  private readonly sink: (bytes: Uint8Array) => void
  private readonly version: 1 | 2
  private readonly entrySize: number
  private readonly hash: Hash = createHash('sha256')
  private position = 0
  /** Where the next chunk starts once uncompressed (4 KiB-aligned). */
  private nextUncompressedOffset = 0
  private uncompressedEnd = 0
  private count = 0
  private infos: Uint8Array
  private digests: Uint8Array
  private finished = false

  constructor (options: BlobWriterOptions) {
    const { chunkSize } = options
    if (!Number.isInteger(chunkSize) || chunkSize < CHUNK_ALIGNMENT || chunkSize > MAX_CHUNK_SIZE || (chunkSize & (chunkSize - 1)) !== 0) {
      throw new InvalidArgumentError(`chunk size ${chunkSize} is not a power of two from ${CHUNK_ALIGNMENT} to ${MAX_CHUNK_SIZE}`)
    }
    if (options.compressor === 'gzip') {
      throw new InvalidArgumentError('a blob cannot be written with gzip: use zstd, lz4_block or none')
    }
    this.compressor = options.compressor
    this.digester = options.digester
    this.chunkSize = chunkSize
    this.sink = options.write
    this.version = options.chunkInfoVersion ?? 1
    this.entrySize = this.version === 2 ? CHUNK_INFO_V2_SIZE : CHUNK_INFO_V1_SIZE
    this.infos = new Uint8Array(64 * this.entrySize)
    this.digests = new Uint8Array(64 * DIGEST_SIZE)
  }

  /**
   * Compresses and writes one chunk; returns where it went. `digest`, when given, must be the
   * digest of `data` under the blob's digester (the builder often has it already for dedup).
   * The chunk's blobIndex and fileOffset are 0: the caller sets them.
   */
  addChunk (data: Uint8Array, digest?: Uint8Array): RafsChunk {
    if (this.finished) throw new InvalidArgumentError('addChunk after finish')
    if (data.length < 1 || data.length > this.chunkSize) {
      throw new InvalidArgumentError(`chunk ${this.count} of ${data.length} bytes, expected 1..${this.chunkSize}`)
    }
    if (this.count >= MAX_CHUNKS_PER_BLOB) {
      throw new InvalidArgumentError(`a blob holds at most ${MAX_CHUNKS_PER_BLOB} chunks`)
    }
    if (digest !== undefined && digest.length !== DIGEST_SIZE) {
      throw new InvalidArgumentError(`chunk ${this.count}: digest of ${digest.length} bytes, expected ${DIGEST_SIZE}`)
    }
    const chunkDigestBytes = digest ?? chunkDigest(data, this.digester)
    const { bytes, compressed } = compressChunk(data, this.compressor)
    const uncompressedOffset = this.nextUncompressedOffset
    if (this.compressor === 'none') this.pad(uncompressedOffset)
    const chunk: RafsChunk = {
      blobIndex: 0,
      index: this.count,
      digest: chunkDigestBytes,
      compressedOffset: this.position,
      compressedSize: bytes.length,
      uncompressedOffset,
      uncompressedSize: data.length,
      fileOffset: 0,
      compressed
    }
    if (this.version === 2 && !compressed && bytes.length > 0xff_ffff) {
      throw new InvalidArgumentError(`chunk ${this.count}: chunk info v2 cannot record ${bytes.length} bytes stored uncompressed; use v1`)
    }
    this.infos = grow(this.infos, (this.count + 1) * this.entrySize)
    encodeChunkInfo(this.infos, this.count * this.entrySize, chunk, this.version)
    this.digests = grow(this.digests, (this.count + 1) * DIGEST_SIZE)
    this.digests.set(chunkDigestBytes, this.count * DIGEST_SIZE)
    // Stored-as-is bytes are the caller's buffer: copy them so a sink that queues is safe.
    this.emit(bytes === data ? data.slice() : bytes)
    this.count++
    this.uncompressedEnd = uncompressedOffset + data.length
    this.nextUncompressedOffset = alignUp(this.uncompressedEnd)
    return chunk
  }

  /** Writes blob.meta, the chunk digests and the ToC; returns what the bootstrap needs. */
  finish (): BlobWriterResult {
    if (this.finished) throw new InvalidArgumentError('finish called twice')
    if (this.count === 0) {
      throw new InvalidArgumentError('a blob needs at least one chunk (Nydus writes no blob for a layer without file data)')
    }
    this.finished = true
    const uncompressedSize = alignUp(this.uncompressedEnd)
    if (this.compressor === 'none') this.pad(uncompressedSize)
    const dataSize = this.position
    const entries: BlobTocEntry[] = []

    this.emit(encodeTarHeader(TOC_ENTRY.blobData, dataSize))
    // As nydus-image does: the digest covers the chunk data and the tar header after it.
    entries.push({
      name: TOC_ENTRY.blobData,
      compressor: 'none',
      digest: this.hash.copy().digest(),
      compressedOffset: 0,
      compressedSize: dataSize,
      uncompressedSize
    })

    const features = BASE_FEATURES | (this.version === 2 ? BlobFeature.CHUNK_INFO_V2 : 0)
    const infos = this.infos.subarray(0, this.count * this.entrySize)
    const packed = compressChunk(infos, this.compressor)
    const ciCompressor: Compressor = packed.compressed ? this.compressor : 'none'
    const ciOffset = this.position
    this.emit(packed.bytes === infos ? infos.slice() : packed.bytes)
    const header = encodeBlobMetaHeader({
      features,
      compressor: ciCompressor,
      entries: this.count,
      ciOffset,
      ciCompressedSize: packed.bytes.length,
      ciUncompressedSize: infos.length,
      zranOffset: 0,
      zranSize: 0,
      zranCount: 0
    })
    const headerOffset = this.position
    this.emit(header)
    this.emit(encodeTarHeader(TOC_ENTRY.blobMeta, packed.bytes.length + BLOB_META_HEADER_SIZE))
    entries.push({
      name: TOC_ENTRY.blobMeta,
      compressor: ciCompressor,
      digest: sha256(infos),
      compressedOffset: ciOffset,
      compressedSize: packed.bytes.length,
      uncompressedSize: infos.length
    }, {
      name: TOC_ENTRY.blobMetaHeader,
      compressor: 'none',
      digest: sha256(header),
      compressedOffset: headerOffset,
      compressedSize: BLOB_META_HEADER_SIZE,
      uncompressedSize: BLOB_META_HEADER_SIZE
    })

    const digests = this.digests.slice(0, this.count * DIGEST_SIZE)
    const digestsOffset = this.position
    this.emit(digests)
    this.emit(encodeTarHeader(TOC_ENTRY.blobDigest, digests.length))
    entries.push({
      name: TOC_ENTRY.blobDigest,
      compressor: 'none',
      digest: sha256(digests),
      compressedOffset: digestsOffset,
      compressedSize: digests.length,
      uncompressedSize: digests.length
    })

    const toc = encodeToc(entries)
    const tocOffset = this.position
    this.emit(toc)
    const blobId = this.hash.digest('hex')
    const tocDigest = sha256(toc)
    const meta: RafsBlobMetaLocation = {
      compressedOffset: ciOffset,
      compressedSize: packed.bytes.length,
      uncompressedSize: infos.length,
      compressor: ciCompressor,
      entrySize: this.entrySize,
      tocOffset,
      tocSize: toc.length,
      tocDigest
    }
    return {
      blobId,
      compressedSize: dataSize,
      uncompressedSize,
      chunkCount: this.count,
      meta,
      fileSize: this.position,
      features,
      toc: { offset: tocOffset, size: toc.length, digest: tocDigest },
      blob: {
        index: 0,
        blobId,
        compressor: this.compressor,
        digester: this.digester,
        chunkSize: this.chunkSize,
        chunkCount: this.count,
        compressedSize: dataSize,
        uncompressedSize,
        meta,
        features
      }
    }
  }

  private emit (bytes: Uint8Array): void {
    if (bytes.length === 0) return
    this.hash.update(bytes)
    this.position += bytes.length
    this.sink(bytes)
  }

  private pad (to: number): void {
    if (to > this.position) this.emit(new Uint8Array(to - this.position))
  }
}

function alignUp (n: number): number {
  return Math.ceil(n / CHUNK_ALIGNMENT) * CHUNK_ALIGNMENT
}

function grow (buffer: Uint8Array, needed: number): Uint8Array {
  if (needed <= buffer.length) return buffer
  const next = new Uint8Array(Math.max(needed, buffer.length * 2))
  next.set(buffer)
  return next
}
