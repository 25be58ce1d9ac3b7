/**
 * The ToC ("table of contents") Nydus appends to a data blob: 128-byte entries naming the blob's
 * sections (chunk data, blob.meta and its header, chunk digests, an inlined bootstrap), followed
 * by a tar header named rafs.blob.toc. Layout from storage/src/meta/toc.rs.
 */
import type { Compressor } from '@shoal/interface'
import { BlobFormatError } from '../errors.js'
import { decompress, MAX_DECOMPRESSED_SIZE } from './compression.js'
import { sha256, digestsEqual, toHex } from './digest.js'
import { readU64, sliceWindow, view, writeU64 } from './bytes.js'
import { TAR_HEADER_SIZE, decodeTarHeader, encodeTarHeader } from './tar.js'

export const TOC_ENTRY_SIZE = 128
/** Names of ToC entries as Nydus writes them. */
export const TOC_ENTRY = {
  /** Chunk data. Its digest is sha256 of the chunk data and the tar header after it. */
  blobData: 'image.blob',
  /** A bootstrap inlined into the blob (not written by BlobWriter). */
  bootstrap: 'image.boot',
  /** The chunk info array (compressed as the blob.meta header says). */
  blobMeta: 'blob.meta',
  /** The 4096-byte blob.meta header that follows the chunk info array. */
  blobMetaHeader: 'blob.meta.header',
  /** The digests of all chunks, 32 bytes each, in chunk order. */
  blobDigest: 'blob.digest',
  /** The name of the tar header after the ToC itself. */
  toc: 'rafs.blob.toc'
} as const

/** Entry flags: the compressor of the entry's content. */
const TOC_FLAG_NONE = 0x1
const TOC_FLAG_ZSTD = 0x2
const TOC_FLAG_LZ4_BLOCK = 0x4
const TOC_FLAGS_KNOWN = 0xf
const TOC_NAME_SIZE = 16
/** nydusd reads at most the last 4 KiB to find the ToC; we accept far more, but not without bound. */
const MAX_TOC_ENTRIES = 1024

export interface BlobTocEntry {
  name: string
  compressor: Compressor
  /** sha256 of the uncompressed content (for image.blob: of chunk data plus its tar header). */
  digest: Uint8Array
  /**
   * File offset of the content. Nydus 2.2 recorded image.blob at the end of the chunk data
   * (the offset of its tar header) instead of 0: do not trust it for image.blob.
   */
  compressedOffset: number
  compressedSize: number
  uncompressedSize: number
}

export interface BlobToc {
  /** File offset of the first entry. */
  offset: number
  /** Bytes of the entries plus their tar header: what a v6 blob table stores as blob_toc_size. */
  size: number
  /** sha256 of the entries plus their tar header: a v6 blob table's blob_toc_digest. */
  digest: Uint8Array
  entries: BlobTocEntry[]
}

export interface BlobWindowOptions {
  /** File offset of `bytes[0]` when `bytes` is a window of the blob rather than all of it. */
  baseOffset?: number
}

export interface ReadBlobTocOptions extends BlobWindowOptions {
  /** Size of the ToC with its tar header, as the bootstrap's blob table states it, to check. */
  tocSize?: number
  /** sha256 of the ToC with its tar header, as the bootstrap's blob table states it, to check. */
  tocDigest?: Uint8Array
}

/**
 * Parses the ToC at the end of a blob. `bytes` must end where the blob ends: the whole blob,
 * or its last few KiB with `baseOffset` set to their file offset.
 */
export function readBlobToc (bytes: Uint8Array, options: ReadBlobTocOptions = {}): BlobToc {
  const base = options.baseOffset ?? 0
  const blobSize = base + bytes.length
  if (bytes.length < TAR_HEADER_SIZE) {
    throw new BlobFormatError(`blob of ${blobSize} bytes is too small to end with a ToC (needs ${TAR_HEADER_SIZE} bytes of tar header)`)
  }
  const headerAt = bytes.length - TAR_HEADER_SIZE
  const header = decodeTarHeader(bytes, headerAt, base + headerAt)
  if (header.name !== TOC_ENTRY.toc) {
    throw new BlobFormatError(`tar header at offset ${base + headerAt}: names ${JSON.stringify(header.name)}, expected ${TOC_ENTRY.toc}: the blob has no ToC`)
  }
  if (header.size % TOC_ENTRY_SIZE !== 0 || header.size === 0 || header.size > MAX_TOC_ENTRIES * TOC_ENTRY_SIZE) {
    throw new BlobFormatError(`ToC at the end of the blob: size ${header.size} is not a count of ${TOC_ENTRY_SIZE}-byte entries up to ${MAX_TOC_ENTRIES}`)
  }
  if (header.size > headerAt) {
    throw new BlobFormatError(`ToC of ${header.size} bytes does not fit in the ${headerAt} bytes before its tar header at offset ${base + headerAt}`)
  }
  const start = headerAt - header.size
  const offset = base + start
  const size = header.size + TAR_HEADER_SIZE
  if (options.tocSize !== undefined && options.tocSize !== size) {
    throw new BlobFormatError(`ToC at offset ${offset}: ${size} bytes with its tar header, the bootstrap says ${options.tocSize}`)
  }
  const digest = sha256(bytes.subarray(start))
  if (options.tocDigest !== undefined && !digestsEqual(digest, options.tocDigest)) {
    throw new BlobFormatError(`ToC at offset ${offset}: sha256 ${toHex(digest)}, the bootstrap says ${toHex(options.tocDigest)}`)
  }
  const entries: BlobTocEntry[] = []
  const names = new TextDecoder('utf-8', { fatal: true })
  for (let at = start; at < headerAt; at += TOC_ENTRY_SIZE) {
    const where = base + at
    const raw = bytes.subarray(at, at + TOC_ENTRY_SIZE)
    const dv = view(raw)
    const flags = dv.getUint32(0, true)
    const nameBytes = raw.subarray(8, 8 + TOC_NAME_SIZE)
    const nameEnd = nameBytes.indexOf(0)
    let name: string
    try {
      name = names.decode(nameBytes.subarray(0, nameEnd < 0 ? TOC_NAME_SIZE : nameEnd))
    } catch {
      throw new BlobFormatError(`ToC entry at offset ${where}: name is not UTF-8`)
    }
    const entry: BlobTocEntry = {
      name,
      compressor: tocCompressor(flags, name, where),
      digest: raw.slice(24, 56),
      compressedOffset: readU64(dv, 56, `ToC entry ${name} at offset ${where}: compressed offset`),
      compressedSize: readU64(dv, 64, `ToC entry ${name} at offset ${where}: compressed size`),
      uncompressedSize: readU64(dv, 72, `ToC entry ${name} at offset ${where}: uncompressed size`)
    }
    if (name !== TOC_ENTRY.blobData && entry.compressedOffset + entry.compressedSize > offset) {
      throw new BlobFormatError(`ToC entry ${name} at offset ${where}: content [${entry.compressedOffset}, ${entry.compressedOffset + entry.compressedSize}) does not end before the ToC at offset ${offset}`)
    }
    entries.push(entry)
  }
  return { offset, size, digest, entries }
}

export function findTocEntry (toc: BlobToc, name: string): BlobTocEntry | undefined {
  return toc.entries.find(e => e.name === name)
}

export interface ReadTocEntryOptions extends BlobWindowOptions {
  /** Refuse content larger than this once uncompressed (default 2 GiB - 1). */
  maxSize?: number
}

/**
 * The content of a ToC entry, decompressed and checked against its sha256. `bytes` is the blob
 * or a window of it that holds the entry. Not for image.blob, whose digest covers a tar header.
 */
export function readTocEntry (bytes: Uint8Array, entry: BlobTocEntry, options: ReadTocEntryOptions = {}): Uint8Array {
  const maxSize = options.maxSize ?? MAX_DECOMPRESSED_SIZE
  if (entry.uncompressedSize > maxSize) {
    throw new BlobFormatError(`ToC entry ${entry.name}: ${entry.uncompressedSize} bytes uncompressed, more than the ${maxSize} allowed`)
  }
  const stored = sliceWindow(bytes, options.baseOffset ?? 0, entry.compressedOffset, entry.compressedSize, `ToC entry ${entry.name}`)
  const content = decompress(stored, entry.compressor, entry.uncompressedSize)
  const digest = sha256(content)
  if (!digestsEqual(digest, entry.digest)) {
    throw new BlobFormatError(`ToC entry ${entry.name} at offset ${entry.compressedOffset}: sha256 ${toHex(digest)}, the ToC says ${toHex(entry.digest)}`)
  }
  return content
}

/** The ToC entries followed by their tar header, as they end a blob. */
export function encodeToc (entries: BlobTocEntry[]): Uint8Array {
  const body = new Uint8Array(entries.length * TOC_ENTRY_SIZE)
  const dv = view(body)
  entries.forEach((entry, i) => {
    const at = i * TOC_ENTRY_SIZE
    const name = new TextEncoder().encode(entry.name)
    if (name.length > TOC_NAME_SIZE) throw new RangeError(`ToC entry name ${entry.name} is longer than ${TOC_NAME_SIZE} bytes`)
    if (entry.digest.length !== 32) throw new RangeError(`ToC entry ${entry.name}: digest of ${entry.digest.length} bytes, expected 32`)
    dv.setUint32(at, tocFlags(entry.compressor), true)
    body.set(name, at + 8)
    body.set(entry.digest, at + 24)
    writeU64(dv, at + 56, entry.compressedOffset)
    writeU64(dv, at + 64, entry.compressedSize)
    writeU64(dv, at + 72, entry.uncompressedSize)
  })
  const out = new Uint8Array(body.length + TAR_HEADER_SIZE)
  out.set(body, 0)
  out.set(encodeTarHeader(TOC_ENTRY.toc, body.length), body.length)
  return out
}

function tocCompressor (flags: number, name: string, where: number): Compressor {
  if ((flags & ~TOC_FLAGS_KNOWN) !== 0) {
    throw new BlobFormatError(`ToC entry ${name} at offset ${where}: unknown flags 0x${flags.toString(16)}`)
  }
  switch (flags & TOC_FLAGS_KNOWN) {
    case TOC_FLAG_NONE: return 'none'
    case TOC_FLAG_ZSTD: return 'zstd'
    case TOC_FLAG_LZ4_BLOCK: return 'lz4_block'
    default:
      throw new BlobFormatError(`ToC entry ${name} at offset ${where}: compression flags 0x${flags.toString(16)} name no single compressor`)
  }
}

function tocFlags (compressor: Compressor): number {
  switch (compressor) {
    case 'none': return TOC_FLAG_NONE
    case 'zstd': return TOC_FLAG_ZSTD
    case 'lz4_block': return TOC_FLAG_LZ4_BLOCK
    default: throw new RangeError(`a ToC entry cannot be compressed with ${compressor}`)
  }
}
