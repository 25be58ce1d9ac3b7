/**
 * blob.meta: the chunk compression-info table Nydus appends to a data blob, so that a reader can
 * map any uncompressed range to the stored chunks without the bootstrap. In the blob it is
 * `chunk info array (maybe compressed) | 4096-byte header | tar header "blob.meta"`, followed by
 * the chunk digests (`blob.digest`). Layouts from storage/src/meta/{mod,chunk_info_v1,chunk_info_v2}.rs.
 */
import type { Compressor } from '@shoal/interface'
import { BlobFormatError, DecompressError, RafsUnsupportedError } from '../errors.js'
import type { RafsBlobMetaLocation, RafsChunk } from '../model.js'
import { compressorFromCode, decompress } from './compression.js'
import { readU64, sliceWindow, view, writeU64 } from './bytes.js'
import { DIGEST_SIZE, digestsEqual, sha256, toHex } from './digest.js'
import { TAR_HEADER_SIZE } from './tar.js'
import { TOC_ENTRY, findTocEntry, readBlobToc, readTocEntry, type BlobToc, type BlobWindowOptions } from './toc.js'

export const BLOB_META_MAGIC = 0xb10bb10b
export const BLOB_META_HEADER_SIZE = 4096
export const CHUNK_INFO_V1_SIZE = 16
/** Nydus's BlobChunkInfoV2Ondisk is 24 bytes (two info words and a data word), not 32. */
export const CHUNK_INFO_V2_SIZE = 24
/** Chunks are at most 16 MiB and a blob holds at most 2^24 of them (RAFS_MAX_CHUNK_SIZE, RAFS_MAX_CHUNKS_PER_BLOB). */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024
export const MAX_CHUNKS_PER_BLOB = 1 << 24
/** Uncompressed chunk offsets are aligned to this (BlobFeature.ALIGNED; the EROFS block size). */
export const CHUNK_ALIGNMENT = 4096

/** Blob feature bits, as stored in the blob.meta header and the v6 blob table (storage/src/device.rs). */
export const BlobFeature = {
  ALIGNED: 0x0000_0001,
  INLINED_FS_META: 0x0000_0002,
  CHUNK_INFO_V2: 0x0000_0004,
  ZRAN: 0x0000_0008,
  SEPARATE: 0x0000_0010,
  INLINED_CHUNK_DIGEST: 0x0000_0020,
  TARFS: 0x0000_0040,
  BATCH: 0x0000_0080,
  ENCRYPTED: 0x0000_0100,
  IS_CHUNKDICT_GENERATED: 0x0000_0200,
  IS_SEPARATED_WITH_PREFETCH_FILES: 0x0000_0400,
  EXTERNAL: 0x0000_0800,
  HAS_TAR_HEADER: 0x1000_0000,
  HAS_TOC: 0x2000_0000,
  CAP_TAR_TOC: 0x4000_0000,
  V5_NO_EXT_BLOB_TABLE: 0x8000_0000
} as const

/** Chunk info v2 flags (top byte of the uncompressed info word). */
const V2_FLAG_COMPRESSED = 0x01
const V2_FLAG_ZRAN = 0x02
const V2_FLAG_BATCH = 0x04
const V2_FLAG_ENCRYPTED = 0x08
const V2_FLAG_HAS_CRC32 = 0x10
const V2_FLAGS_KNOWN = 0x1f

const TWO_32 = 0x1_0000_0000

export interface BlobMetaHeader {
  features: number
  /** Compressor of the chunk info array. */
  compressor: Compressor
  /** Number of chunk info entries. */
  entries: number
  /** File offset of the (possibly compressed) chunk info array. */
  ciOffset: number
  ciCompressedSize: number
  ciUncompressedSize: number
  zranOffset: number
  zranSize: number
  zranCount: number
}

/** One row of blob.meta: where chunk `index` is stored and how big it is. */
export interface BlobChunkInfo {
  index: number
  compressedOffset: number
  compressedSize: number
  uncompressedOffset: number
  uncompressedSize: number
  /** False when the chunk is stored as is. */
  compressed: boolean
}

export interface BlobMeta {
  header: BlobMetaHeader
  /** File offset of the 4096-byte header. */
  headerOffset: number
  /** The same facts in the shape the bootstrap's blob table gives them. */
  location: RafsBlobMetaLocation
  chunkInfoVersion: 1 | 2
  /** Bytes of chunk data at the start of the blob (every chunk ends within it). */
  dataSize: number
  chunks: BlobChunkInfo[]
}

export function decodeBlobMetaHeader (bytes: Uint8Array, at: number, where: number): BlobMetaHeader {
  if (at < 0 || at + BLOB_META_HEADER_SIZE > bytes.length) {
    throw new BlobFormatError(`blob.meta header at offset ${where}: needs ${BLOB_META_HEADER_SIZE} bytes, ${Math.max(0, bytes.length - at)} available`)
  }
  const dv = view(bytes.subarray(at, at + BLOB_META_HEADER_SIZE))
  const magic = dv.getUint32(0, true)
  const magic2 = dv.getUint32(BLOB_META_HEADER_SIZE - 4, true)
  if (magic !== BLOB_META_MAGIC || magic2 !== BLOB_META_MAGIC) {
    throw new BlobFormatError(`blob.meta header at offset ${where}: magic 0x${magic.toString(16)}/0x${magic2.toString(16)}, expected 0x${BLOB_META_MAGIC.toString(16)}`)
  }
  const code = dv.getUint32(8, true)
  const compressor = compressorFromCode(code)
  if (compressor === undefined) {
    throw new BlobFormatError(`blob.meta header at offset ${where}: unknown chunk info compressor ${code}`)
  }
  const what = (field: string): string => `blob.meta header at offset ${where}: ${field}`
  return {
    features: dv.getUint32(4, true),
    compressor,
    entries: dv.getUint32(12, true),
    ciOffset: readU64(dv, 16, what('chunk info offset')),
    ciCompressedSize: readU64(dv, 24, what('chunk info compressed size')),
    ciUncompressedSize: readU64(dv, 32, what('chunk info uncompressed size')),
    zranOffset: readU64(dv, 40, what('zran offset')),
    zranSize: readU64(dv, 48, what('zran size')),
    zranCount: dv.getUint32(56, true)
  }
}

export function encodeBlobMetaHeader (header: BlobMetaHeader): Uint8Array {
  const bytes = new Uint8Array(BLOB_META_HEADER_SIZE)
  const dv = view(bytes)
  dv.setUint32(0, BLOB_META_MAGIC, true)
  dv.setUint32(4, header.features >>> 0, true)
  dv.setUint32(8, compressorCodeOf(header.compressor), true)
  dv.setUint32(12, header.entries, true)
  writeU64(dv, 16, header.ciOffset)
  writeU64(dv, 24, header.ciCompressedSize)
  writeU64(dv, 32, header.ciUncompressedSize)
  writeU64(dv, 40, header.zranOffset)
  writeU64(dv, 48, header.zranSize)
  dv.setUint32(56, header.zranCount, true)
  dv.setUint32(BLOB_META_HEADER_SIZE - 4, BLOB_META_MAGIC, true)
  return bytes
}

function compressorCodeOf (compressor: Compressor): number {
  switch (compressor) {
    case 'none': return 0
    case 'lz4_block': return 1
    case 'gzip': return 2
    case 'zstd': return 3
  }
}

/**
 * Writes chunk info `info` at `array[at, at + 16 or 24)`. Throws RangeError for values the
 * layout cannot hold (v1: 40-bit compressed offsets, 44-bit 4 KiB-aligned uncompressed offsets,
 * sizes 1..16 MiB; v2: compressed sizes below 16 MiB).
 */
export function encodeChunkInfo (array: Uint8Array, at: number, info: BlobChunkInfo, version: 1 | 2): void {
  const dv = view(array)
  const { compressedOffset: co, compressedSize: cs, uncompressedOffset: uo, uncompressedSize: us } = info
  if (!Number.isSafeInteger(co) || co < 0 || co >= 2 ** 40) throw new RangeError(`chunk ${info.index}: compressed offset ${co} does not fit 40 bits`)
  if (!Number.isSafeInteger(uo) || uo < 0 || uo >= 2 ** 44 || uo % CHUNK_ALIGNMENT !== 0) throw new RangeError(`chunk ${info.index}: uncompressed offset ${uo} is not a 4 KiB-aligned 44-bit offset`)
  if (!Number.isInteger(us) || us < 1 || us > MAX_CHUNK_SIZE) throw new RangeError(`chunk ${info.index}: uncompressed size ${us} is not in 1..${MAX_CHUNK_SIZE}`)
  if (version === 1) {
    if (!Number.isInteger(cs) || cs < 1 || cs > MAX_CHUNK_SIZE) throw new RangeError(`chunk ${info.index}: compressed size ${cs} is not in 1..${MAX_CHUNK_SIZE}`)
    if (info.compressed === (cs === us)) throw new RangeError(`chunk ${info.index}: chunk info v1 marks a chunk compressed exactly when its sizes differ (${cs}, ${us})`)
    const u = us - 1
    const c = cs - 1
    // uncompressed word: bits 8..11 size[20..23], bits 12..43 offset, bits 44..63 size[0..19]
    dv.setUint32(at, ((uo % TWO_32) | (((u >>> 20) & 0xf) << 8)) >>> 0, true)
    dv.setUint32(at + 4, ((Math.floor(uo / TWO_32) & 0xfff) | ((u & 0xfffff) << 12)) >>> 0, true)
    // compressed word: bits 0..39 offset, bits 40..43 size[20..23], bits 44..63 size[0..19]
    dv.setUint32(at + 8, co % TWO_32, true)
    dv.setUint32(at + 12, ((Math.floor(co / TWO_32) & 0xff) | (((c >>> 20) & 0xf) << 8) | ((c & 0xfffff) << 12)) >>> 0, true)
  } else {
    if (!Number.isInteger(cs) || cs < 1 || cs > 0xff_ffff) throw new RangeError(`chunk ${info.index}: compressed size ${cs} is not in 1..${0xff_ffff}`)
    const flags = info.compressed ? V2_FLAG_COMPRESSED : 0
    // uncompressed word: bits 0..31 offset / 4096, bits 32..55 size - 1, bits 56..63 flags
    dv.setUint32(at, uo / CHUNK_ALIGNMENT, true)
    dv.setUint32(at + 4, (((us - 1) & 0xff_ffff) | (flags << 24)) >>> 0, true)
    // compressed word: bits 0..39 offset, bits 40..63 size
    dv.setUint32(at + 8, co % TWO_32, true)
    dv.setUint32(at + 12, ((Math.floor(co / TWO_32) & 0xff) | (cs << 8)) >>> 0, true)
    writeU64(dv, at + 16, 0)
  }
}

/** Reads chunk info `index` from `array[at, at + 16 or 24)`. */
export function decodeChunkInfo (array: Uint8Array, at: number, index: number, version: 1 | 2): BlobChunkInfo {
  const dv = view(array)
  const uLo = dv.getUint32(at, true)
  const uHi = dv.getUint32(at + 4, true)
  const cLo = dv.getUint32(at + 8, true)
  const cHi = dv.getUint32(at + 12, true)
  const compressedOffset = cLo + (cHi & 0xff) * TWO_32
  if (version === 1) {
    const uncompressedSize = ((((uLo >>> 8) & 0xf) << 20) | (uHi >>> 12)) + 1
    const compressedSize = ((((cHi >>> 8) & 0xf) << 20) | (cHi >>> 12)) + 1
    return {
      index,
      compressedOffset,
      compressedSize,
      uncompressedOffset: ((uLo & 0xffff_f000) >>> 0) + (uHi & 0xfff) * TWO_32,
      uncompressedSize,
      compressed: compressedSize !== uncompressedSize
    }
  }
  const flags = uHi >>> 24
  if ((flags & ~V2_FLAGS_KNOWN) !== 0) {
    throw new BlobFormatError(`chunk info ${index}: unknown flags 0x${flags.toString(16)}`)
  }
  if ((flags & (V2_FLAG_ZRAN | V2_FLAG_BATCH | V2_FLAG_ENCRYPTED)) !== 0) {
    throw new RafsUnsupportedError(`chunk info ${index}: flags 0x${flags.toString(16)} (zran, batch or encrypted chunks are not supported)`)
  }
  void V2_FLAG_HAS_CRC32 // a CRC32 in the data word is allowed and ignored: chunk digests are checked instead
  return {
    index,
    compressedOffset,
    compressedSize: cHi >>> 8,
    uncompressedOffset: uLo * CHUNK_ALIGNMENT,
    uncompressedSize: (uHi & 0xff_ffff) + 1,
    compressed: (flags & V2_FLAG_COMPRESSED) !== 0
  }
}

export interface ReadBlobMetaOptions extends BlobWindowOptions {
  /** Where blob.meta is, as the bootstrap's blob table says; checked against the header. */
  location?: RafsBlobMetaLocation
  /** File offset of the 4096-byte header, when known otherwise. */
  headerOffset?: number
  /**
   * The blob's ToC, when already read; read from `bytes` when neither `headerOffset` nor
   * `location` is given. When known, the header and chunk info are checked against its sha256s.
   */
  toc?: BlobToc
}

/**
 * Parses blob.meta from blob bytes: the whole blob, or a window (`baseOffset`) that holds the
 * chunk info array and its header. The header is found from `headerOffset`, else `location`
 * (it follows the chunk info array), else the ToC at the end of `bytes`.
 * Every offset and size is checked; the chunk info array is decompressed only after its claimed
 * size agrees with the entry count and fits the limits Nydus sets.
 */
export function readBlobMeta (bytes: Uint8Array, options: ReadBlobMetaOptions = {}): BlobMeta {
  const base = options.baseOffset ?? 0
  let toc = options.toc
  let headerOffset = options.headerOffset
  if (headerOffset === undefined && options.location !== undefined) {
    headerOffset = options.location.compressedOffset + options.location.compressedSize
  }
  if (headerOffset === undefined) {
    toc ??= readBlobToc(bytes, { baseOffset: base })
    const entry = findTocEntry(toc, TOC_ENTRY.blobMetaHeader)
    if (entry === undefined) throw new BlobFormatError(`the blob's ToC at offset ${toc.offset} has no ${TOC_ENTRY.blobMetaHeader} entry`)
    if (entry.compressedSize !== BLOB_META_HEADER_SIZE) {
      throw new BlobFormatError(`ToC entry ${TOC_ENTRY.blobMetaHeader}: ${entry.compressedSize} bytes, expected ${BLOB_META_HEADER_SIZE}`)
    }
    headerOffset = entry.compressedOffset
  }
  const headerBytes = sliceWindow(bytes, base, headerOffset, BLOB_META_HEADER_SIZE, 'blob.meta header')
  if (toc !== undefined) checkTocDigest(toc, TOC_ENTRY.blobMetaHeader, headerOffset, headerBytes)
  const header = decodeBlobMetaHeader(headerBytes, 0, headerOffset)
  const where = `blob.meta header at offset ${headerOffset}`

  const unsupported = header.features & (BlobFeature.ZRAN | BlobFeature.BATCH | BlobFeature.ENCRYPTED)
  if (unsupported !== 0) {
    throw new RafsUnsupportedError(`${where}: features 0x${header.features.toString(16)} include zran, batch or encryption, which are not supported`)
  }
  if (header.ciOffset + header.ciCompressedSize !== headerOffset) {
    throw new BlobFormatError(`${where}: chunk info array [${header.ciOffset}, +${header.ciCompressedSize}) does not end at the header`)
  }
  const location = options.location
  if (location !== undefined && (location.compressedOffset !== header.ciOffset || location.compressedSize !== header.ciCompressedSize ||
    location.uncompressedSize !== header.ciUncompressedSize || location.compressor !== header.compressor)) {
    throw new BlobFormatError(`${where}: chunk info at ${header.ciOffset} (${header.ciCompressedSize}/${header.ciUncompressedSize} bytes, ${header.compressor}), the bootstrap says ${location.compressedOffset} (${location.compressedSize}/${location.uncompressedSize} bytes, ${location.compressor})`)
  }
  const version: 1 | 2 = (header.features & BlobFeature.CHUNK_INFO_V2) !== 0 ? 2 : 1
  const entrySize = version === 2 ? CHUNK_INFO_V2_SIZE : CHUNK_INFO_V1_SIZE
  if (location !== undefined && location.entrySize !== entrySize) {
    throw new BlobFormatError(`${where}: chunk info v${version} entries of ${entrySize} bytes, the bootstrap says ${location.entrySize}`)
  }
  const dataSize = (header.features & BlobFeature.HAS_TAR_HEADER) !== 0 ? header.ciOffset - TAR_HEADER_SIZE : header.ciOffset
  if (header.entries < 1 || header.entries > MAX_CHUNKS_PER_BLOB) {
    throw new BlobFormatError(`${where}: ${header.entries} chunks, expected 1..${MAX_CHUNKS_PER_BLOB}`)
  }
  if (header.ciUncompressedSize !== header.entries * entrySize) {
    throw new BlobFormatError(`${where}: chunk info array of ${header.ciUncompressedSize} bytes, expected ${header.entries} × ${entrySize}`)
  }
  // Every chunk occupies at least one byte of chunk data: more entries than bytes is a lie.
  if (dataSize < header.entries) {
    throw new BlobFormatError(`${where}: ${header.entries} chunks cannot fit in ${Math.max(0, dataSize)} bytes of chunk data`)
  }
  const stored = sliceWindow(bytes, base, header.ciOffset, header.ciCompressedSize, 'blob.meta chunk info array')
  let array: Uint8Array
  try {
    array = decompress(stored, header.compressor, header.ciUncompressedSize)
  } catch (err) {
    if (err instanceof DecompressError) throw new DecompressError(`blob.meta chunk info at offset ${header.ciOffset}: ${err.message}`)
    throw err
  }
  // The ToC carries sha256 of the header and of the chunk info: a flipped bit cannot pass unnoticed.
  if (toc !== undefined) checkTocDigest(toc, TOC_ENTRY.blobMeta, header.ciOffset, array)
  const aligned = (header.features & BlobFeature.ALIGNED) !== 0

  const chunks: BlobChunkInfo[] = new Array(header.entries)
  let previousEnd = 0
  for (let i = 0; i < header.entries; i++) {
    const info = decodeChunkInfo(array, i * entrySize, i, version)
    const chunkWhere = `chunk info ${i} of blob.meta at offset ${header.ciOffset}`
    if (info.compressedSize < 1 || info.compressedOffset + info.compressedSize > dataSize) {
      throw new BlobFormatError(`${chunkWhere}: stored at [${info.compressedOffset}, +${info.compressedSize}), outside the ${dataSize} bytes of chunk data`)
    }
    if (!info.compressed && info.compressedSize !== info.uncompressedSize) {
      throw new BlobFormatError(`${chunkWhere}: stored uncompressed but ${info.compressedSize} bytes stored for ${info.uncompressedSize}`)
    }
    if (aligned && info.uncompressedOffset % CHUNK_ALIGNMENT !== 0) {
      throw new BlobFormatError(`${chunkWhere}: uncompressed offset ${info.uncompressedOffset} is not 4 KiB-aligned`)
    }
    if (info.uncompressedOffset < previousEnd) {
      throw new BlobFormatError(`${chunkWhere}: uncompressed offset ${info.uncompressedOffset} overlaps the previous chunk, which ends at ${previousEnd}`)
    }
    previousEnd = info.uncompressedOffset + info.uncompressedSize
    chunks[i] = info
  }
  return {
    header,
    headerOffset,
    location: {
      compressedOffset: header.ciOffset,
      compressedSize: header.ciCompressedSize,
      uncompressedSize: header.ciUncompressedSize,
      compressor: header.compressor,
      entrySize,
      ...(toc !== undefined ? { tocOffset: toc.offset, tocSize: toc.size, tocDigest: toc.digest } : {})
    },
    chunkInfoVersion: version,
    dataSize,
    chunks
  }
}

function checkTocDigest (toc: BlobToc, name: string, offset: number, content: Uint8Array): void {
  const entry = findTocEntry(toc, name)
  if (entry === undefined) return
  if (entry.compressedOffset !== offset) {
    throw new BlobFormatError(`ToC entry ${name} is at offset ${entry.compressedOffset}, the blob.meta header says ${offset}`)
  }
  const digest = sha256(content)
  if (!digestsEqual(digest, entry.digest)) {
    throw new BlobFormatError(`${name} at offset ${offset}: sha256 ${toHex(digest)}, the ToC says ${toHex(entry.digest)}`)
  }
}

export interface ReadBlobDigestsOptions extends BlobWindowOptions {
  toc?: BlobToc
  /** Number of chunks the digests must cover (from blob.meta or the bootstrap). */
  chunkCount?: number
}

/**
 * The chunk digests a blob carries in its blob.digest section (BlobFeature.INLINED_CHUNK_DIGEST),
 * one 32-byte digest per chunk, checked against the ToC's sha256 of the section.
 */
export function readBlobDigests (bytes: Uint8Array, options: ReadBlobDigestsOptions = {}): Uint8Array[] {
  const base = options.baseOffset ?? 0
  const toc = options.toc ?? readBlobToc(bytes, { baseOffset: base })
  const entry = findTocEntry(toc, TOC_ENTRY.blobDigest)
  if (entry === undefined) throw new BlobFormatError(`the blob's ToC at offset ${toc.offset} has no ${TOC_ENTRY.blobDigest} entry`)
  if (entry.uncompressedSize % DIGEST_SIZE !== 0 || entry.uncompressedSize > MAX_CHUNKS_PER_BLOB * DIGEST_SIZE) {
    throw new BlobFormatError(`ToC entry ${TOC_ENTRY.blobDigest}: ${entry.uncompressedSize} bytes is not a whole number of up to ${MAX_CHUNKS_PER_BLOB} digests`)
  }
  const count = entry.uncompressedSize / DIGEST_SIZE
  if (options.chunkCount !== undefined && count !== options.chunkCount) {
    throw new BlobFormatError(`ToC entry ${TOC_ENTRY.blobDigest}: ${count} digests for ${options.chunkCount} chunks`)
  }
  const content = readTocEntry(bytes, entry, { baseOffset: base })
  const digests: Uint8Array[] = new Array(count)
  for (let i = 0; i < count; i++) digests[i] = content.slice(i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE)
  return digests
}

/** A RafsChunk for blob.meta row `info` with its digest (blobIndex 0, fileOffset 0: callers set them). */
export function rafsChunkOf (info: BlobChunkInfo, digest: Uint8Array): RafsChunk {
  return {
    blobIndex: 0,
    index: info.index,
    digest,
    compressedOffset: info.compressedOffset,
    compressedSize: info.compressedSize,
    uncompressedOffset: info.uncompressedOffset,
    uncompressedSize: info.uncompressedSize,
    fileOffset: 0,
    compressed: info.compressed
  }
}
