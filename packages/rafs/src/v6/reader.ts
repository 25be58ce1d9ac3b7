/**
 * Reads a RAFS v6 bootstrap (an EROFS image plus Nydus's tables) into the shared model.
 * Every offset and count in the bytes is checked before use; directories are walked with an
 * explicit stack; the number of entries, chunks and inodes is bounded by what the buffer can hold.
 */
import { RafsCorruptError, RafsFormatError, RafsLoopError, RafsOutOfRangeError, RafsUnsupportedError, RafsBadMagicError } from '../errors.js'
import type { RafsBlob, RafsBlobMetaLocation, RafsChunk, RafsEntry, RafsImage, RafsNode } from '../model.js'
import { nodeTypeOfMode } from '../model.js'
import { CHUNK_INFO_V1_SIZE, CHUNK_INFO_V2_SIZE } from '../blob/meta.js'
import {
  BLOB_ENTRY_SIZE, BLOB_FEATURE_CHUNK_INFO_V2, CHUNK_ADDR_SIZE, CHUNK_FLAG_COMPRESSED, CHUNK_FORMAT_INDEXES, CHUNK_INFO_SIZE,
  COMPACT_INODE_SIZE, DEVICE_SLOT_SIZE, DIRENT_SIZE, EROFS_MAGIC, EXTENDED_INODE_SIZE, EXT_SUPER_OFFSET, FEATURE_COMPAT_RAFS_V6,
  FEATURE_INCOMPAT_KNOWN, LAYOUT_CHUNK_BASED, LAYOUT_FLAT_INLINE, LAYOUT_FLAT_PLAIN, MAX_BLOBS, MAX_CHUNK_SIZE, NAME_MAX, NULL_ADDR,
  SLOT_SIZE, SUPER_OFFSET, XATTR_ENTRY_HEADER_SIZE, XATTR_IBODY_HEADER_SIZE, XATTR_PREFIXES,
  compressorOfCode, compressorOfFlags, digesterOfCode, digesterOfFlags, xattrAreaSize
} from './layout.js'

const utf8 = new TextDecoder('utf-8')

/** Bounds-checked little-endian reads over the bootstrap. */
class Bytes {
  readonly view: DataView
  constructor (readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  get length (): number { return this.bytes.byteLength }

  need (offset: number, size: number, what: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(size) || offset < 0 || size < 0 || offset + size > this.bytes.byteLength) {
      throw new RafsOutOfRangeError(`${what}: ${size} bytes at offset ${offset} run past the end of the ${this.bytes.byteLength}-byte bootstrap`)
    }
  }

  u8 (offset: number): number { return this.view.getUint8(offset) }
  u16 (offset: number): number { return this.view.getUint16(offset, true) }
  u32 (offset: number): number { return this.view.getUint32(offset, true) }
  u64 (offset: number, what: string): number {
    const value = this.view.getBigUint64(offset, true)
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new RafsOutOfRangeError(`${what}: value ${value} at offset ${offset} is larger than this reader handles (2^53)`)
    }
    return Number(value)
  }

  slice (offset: number, size: number, what: string): Uint8Array {
    this.need(offset, size, what)
    // A copy, not a view: a Buffer's slice() would alias the whole bootstrap.
    return new Uint8Array(this.bytes.subarray(offset, offset + size))
  }

  view8 (offset: number, size: number, what: string): Uint8Array {
    this.need(offset, size, what)
    return this.bytes.subarray(offset, offset + size)
  }
}

interface Superblock {
  blockSize: number
  rootNid: number
  inodeCount: number
  buildTime: number
  buildTimeNsec: number
  metaAddr: number
  xattrAddr: number
  extraDevices: number
  deviceTableOffset: number
}

interface ExtSuperblock {
  flags: number
  blobTableOffset: number
  blobTableSize: number
  chunkSize: number
  chunkTableOffset: number
  chunkTableSize: number
  prefetchTableOffset: number
  prefetchTableSize: number
}

function readSuperblock (b: Bytes): Superblock {
  if (b.length < SUPER_OFFSET + 128) {
    throw new RafsOutOfRangeError(`bootstrap is ${b.length} bytes, too short for the EROFS superblock at ${SUPER_OFFSET}..${SUPER_OFFSET + 128}`)
  }
  const magic = b.u32(SUPER_OFFSET)
  if (magic !== EROFS_MAGIC) {
    throw new RafsBadMagicError(`EROFS magic 0x${magic.toString(16)} at offset ${SUPER_OFFSET}, expected 0x${EROFS_MAGIC.toString(16)}`)
  }
  const compat = b.u32(SUPER_OFFSET + 8)
  const blockBits = b.u8(SUPER_OFFSET + 12)
  if (blockBits < 9 || blockBits > 12) {
    throw new RafsUnsupportedError(`EROFS block size bits ${blockBits} at offset ${SUPER_OFFSET + 12}, expected 9..12`)
  }
  const incompat = b.u32(SUPER_OFFSET + 80)
  if ((incompat & ~FEATURE_INCOMPAT_KNOWN) !== 0) {
    throw new RafsUnsupportedError(`EROFS incompatible features 0x${incompat.toString(16)}: bits 0x${(incompat & ~FEATURE_INCOMPAT_KNOWN).toString(16)} are not RAFS v6 (compression, fragments, long xattr prefixes)`)
  }
  if ((compat & FEATURE_COMPAT_RAFS_V6) === 0) {
    throw new RafsUnsupportedError(`EROFS image without the RAFS v6 feature bit (compat 0x${compat.toString(16)}): not a Nydus bootstrap`)
  }
  const blockSize = 1 << blockBits
  return {
    blockSize,
    rootNid: b.u16(SUPER_OFFSET + 14),
    inodeCount: b.u64(SUPER_OFFSET + 16, 'superblock inode count'),
    buildTime: b.u64(SUPER_OFFSET + 24, 'superblock build time'),
    buildTimeNsec: b.u32(SUPER_OFFSET + 32),
    metaAddr: b.u32(SUPER_OFFSET + 40) * blockSize,
    xattrAddr: b.u32(SUPER_OFFSET + 44) * blockSize,
    extraDevices: b.u16(SUPER_OFFSET + 86),
    deviceTableOffset: b.u16(SUPER_OFFSET + 88) * DEVICE_SLOT_SIZE
  }
}

function readExtSuperblock (b: Bytes): ExtSuperblock {
  b.need(EXT_SUPER_OFFSET, 256, 'extended superblock')
  const o = EXT_SUPER_OFFSET
  return {
    flags: b.u32(o),
    blobTableOffset: b.u64(o + 8, 'blob table offset'),
    blobTableSize: b.u32(o + 16),
    chunkSize: b.u32(o + 20),
    chunkTableOffset: b.u64(o + 24, 'chunk table offset'),
    chunkTableSize: b.u64(o + 32, 'chunk table size'),
    prefetchTableOffset: b.u64(o + 40, 'prefetch table offset'),
    prefetchTableSize: b.u32(o + 48)
  }
}

function isPowerOfTwo (n: number): boolean {
  return n > 0 && Number.isSafeInteger(n) && (n & (n - 1)) === 0
}

/** The text of a NUL-padded ASCII field, or undefined when it holds anything else. */
function asciiField (bytes: Uint8Array): string | undefined {
  let end = bytes.indexOf(0)
  if (end === -1) end = bytes.length
  for (let i = end; i < bytes.length; i++) if (bytes[i] !== 0) return undefined
  let text = ''
  for (let i = 0; i < end; i++) {
    const c = bytes[i]
    if (c < 0x21 || c > 0x7e) return undefined
    text += String.fromCharCode(c)
  }
  return text
}

function readBlobTable (b: Bytes, ext: ExtSuperblock): RafsBlob[] {
  const { blobTableOffset: offset, blobTableSize: size } = ext
  if (size % BLOB_ENTRY_SIZE !== 0) {
    throw new RafsCorruptError(`blob table size ${size} is not a multiple of ${BLOB_ENTRY_SIZE}`)
  }
  const count = size / BLOB_ENTRY_SIZE
  if (count > MAX_BLOBS) throw new RafsOutOfRangeError(`blob table holds ${count} entries, at most ${MAX_BLOBS} fit a chunk's 8-bit device id`)
  b.need(offset, size, 'blob table')
  const blobs: RafsBlob[] = []
  for (let i = 0; i < count; i++) {
    const o = offset + i * BLOB_ENTRY_SIZE
    const where = `blob table entry ${i} at offset ${o}`
    const blobId = asciiField(b.bytes.subarray(o, o + 64))
    if (blobId === undefined || blobId.length === 0) throw new RafsCorruptError(`${where}: blob id is not NUL-padded printable ASCII`)
    const index = b.u32(o + 64)
    if (index !== i) throw new RafsCorruptError(`${where}: blob index ${index}, expected ${i}`)
    const chunkSize = b.u32(o + 68)
    if (!isPowerOfTwo(chunkSize) || chunkSize > MAX_CHUNK_SIZE) throw new RafsCorruptError(`${where}: chunk size ${chunkSize} is not a power of two up to 16 MiB`)
    const compressor = compressorOfCode(b.u32(o + 76))
    if (compressor === undefined) throw new RafsUnsupportedError(`${where}: unknown compression algorithm ${b.u32(o + 76)}`)
    const digester = digesterOfCode(b.u32(o + 80))
    if (digester === undefined) throw new RafsUnsupportedError(`${where}: unknown digest algorithm ${b.u32(o + 80)}`)
    const cipher = b.u32(o + 212)
    if (cipher !== 0) throw new RafsUnsupportedError(`${where}: encrypted blob (cipher ${cipher})`)
    const features = b.u32(o + 84)
    const metaCompressor = compressorOfCode(b.u32(o + 108))
    if (metaCompressor === undefined) throw new RafsUnsupportedError(`${where}: unknown blob.meta compression algorithm ${b.u32(o + 108)}`)
    const metaOffset = b.u64(o + 112, `${where} blob.meta offset`)
    const metaCompressedSize = b.u64(o + 120, `${where} blob.meta size`)
    const metaUncompressedSize = b.u64(o + 128, `${where} blob.meta size`)
    const tocSize = b.u32(o + 104)
    const blob: RafsBlob = {
      index,
      blobId,
      compressor,
      digester,
      chunkSize,
      chunkCount: b.u32(o + 72),
      compressedSize: b.u64(o + 88, `${where} compressed size`),
      uncompressedSize: b.u64(o + 96, `${where} uncompressed size`),
      features
    }
    if (metaOffset !== 0 || metaCompressedSize !== 0 || metaUncompressedSize !== 0 || tocSize !== 0) {
      const meta: RafsBlobMetaLocation = {
        compressedOffset: metaOffset,
        compressedSize: metaCompressedSize,
        uncompressedSize: metaUncompressedSize,
        compressor: metaCompressor,
        entrySize: (features & BLOB_FEATURE_CHUNK_INFO_V2) !== 0 ? CHUNK_INFO_V2_SIZE : CHUNK_INFO_V1_SIZE
      }
      // The bootstrap knows the ToC's size only: it sits at the end of the blob file.
      if (tocSize !== 0) meta.tocSize = tocSize
      blob.meta = meta
    }
    blobs.push(blob)
  }
  return blobs
}

interface ChunkInfo {
  digest: Uint8Array
  blobIndex: number
  compressed: boolean
  compressedSize: number
  uncompressedSize: number
  compressedOffset: number
  uncompressedOffset: number
  index: number
}

/** The chunk info table, keyed as the inodes' chunk indexes address it: blob, chunk index, block. */
function readChunkTable (b: Bytes, ext: ExtSuperblock, blobs: RafsBlob[], blockSize: number): Map<string, ChunkInfo> {
  const table = new Map<string, ChunkInfo>()
  const { chunkTableOffset: offset, chunkTableSize: size } = ext
  if (size === 0) return table
  if (size % CHUNK_INFO_SIZE !== 0) throw new RafsCorruptError(`chunk info table size ${size} is not a multiple of ${CHUNK_INFO_SIZE}`)
  b.need(offset, size, 'chunk info table')
  const count = size / CHUNK_INFO_SIZE
  for (let i = 0; i < count; i++) {
    const o = offset + i * CHUNK_INFO_SIZE
    const where = `chunk info ${i} at offset ${o}`
    const blobIndex = b.u32(o + 32)
    if (blobIndex >= blobs.length) throw new RafsCorruptError(`${where}: blob index ${blobIndex}, the blob table has ${blobs.length}`)
    const info: ChunkInfo = {
      digest: b.slice(o, 32, where),
      blobIndex,
      compressed: (b.u32(o + 36) & CHUNK_FLAG_COMPRESSED) !== 0,
      compressedSize: b.u32(o + 40),
      uncompressedSize: b.u32(o + 44),
      compressedOffset: b.u64(o + 48, `${where} compressed offset`),
      uncompressedOffset: b.u64(o + 56, `${where} uncompressed offset`),
      index: b.u32(o + 72)
    }
    const key = `${blobIndex}/${info.index}/${Math.floor(info.uncompressedOffset / blockSize)}`
    if (!table.has(key)) table.set(key, info)
  }
  return table
}

interface InodeRecord {
  node: RafsNode
  /** Raw data layout and the bytes the layout needs. */
  layout: number
  union: number
  offset: number
  /** Bytes of inode plus inline xattrs: where tail data or chunk indexes start. */
  headerSize: number
}

class V6Reader {
  readonly b: Bytes
  readonly sb: Superblock
  readonly ext: ExtSuperblock
  readonly blobs: RafsBlob[]
  readonly chunkTable: Map<string, ChunkInfo>
  readonly chunkSize: number
  /** Work budgets: a valid image stores every dirent and chunk index in bytes of its own. */
  direntBudget: number
  chunkBudget: number

  constructor (bytes: Uint8Array) {
    this.b = new Bytes(bytes)
    this.sb = readSuperblock(this.b)
    this.ext = readExtSuperblock(this.b)
    if (this.sb.metaAddr > this.b.length) throw new RafsOutOfRangeError(`metadata area at ${this.sb.metaAddr} is past the end of the ${this.b.length}-byte bootstrap`)
    const chunkSize = this.ext.chunkSize
    if (!isPowerOfTwo(chunkSize) || chunkSize < 4096 || chunkSize > MAX_CHUNK_SIZE) {
      throw new RafsCorruptError(`chunk size ${chunkSize} in the extended superblock is not a power of two in 4 KiB..16 MiB`)
    }
    this.chunkSize = chunkSize
    if (this.sb.extraDevices > MAX_BLOBS) throw new RafsOutOfRangeError(`${this.sb.extraDevices} extra devices, at most ${MAX_BLOBS}`)
    this.b.need(this.sb.deviceTableOffset, this.sb.extraDevices * DEVICE_SLOT_SIZE, 'EROFS device table')
    this.blobs = readBlobTable(this.b, this.ext)
    this.chunkTable = readChunkTable(this.b, this.ext, this.blobs, this.sb.blockSize)
    this.direntBudget = Math.ceil(this.b.length / DIRENT_SIZE) + 2
    this.chunkBudget = Math.ceil(this.b.length / CHUNK_ADDR_SIZE)
  }

  inodeOffset (nid: number, where: string): number {
    const offset = this.sb.metaAddr + nid * SLOT_SIZE
    this.b.need(offset, COMPACT_INODE_SIZE, `inode nid ${nid} (${where})`)
    return offset
  }

  readInode (nid: number, where: string): InodeRecord {
    const b = this.b
    const o = this.inodeOffset(nid, where)
    const format = b.u16(o)
    const extended = (format & 1) === 1
    if ((format >> 4) !== 0) throw new RafsUnsupportedError(`inode nid ${nid} at ${o}: format 0x${format.toString(16)} has bits this reader does not know`)
    const layout = (format >> 1) & 0x7
    const inodeSize = extended ? EXTENDED_INODE_SIZE : COMPACT_INODE_SIZE
    b.need(o, inodeSize, `inode nid ${nid}`)
    const xattrCount = b.u16(o + 2)
    const xattrSize = xattrAreaSize(xattrCount)
    const mode = b.u16(o + 4)
    const type = nodeTypeOfMode(mode)
    if (type === undefined) throw new RafsCorruptError(`inode nid ${nid} at ${o}: mode 0o${mode.toString(8)} has no file type`)
    let size: number, union: number, uid: number, gid: number, mtime: number, mtimeNsec: number, nlink: number
    if (extended) {
      size = b.u64(o + 8, `inode nid ${nid} size`)
      union = b.u32(o + 16)
      uid = b.u32(o + 24)
      gid = b.u32(o + 28)
      mtime = b.u64(o + 32, `inode nid ${nid} mtime`)
      mtimeNsec = b.u32(o + 40)
      nlink = b.u32(o + 44)
    } else {
      nlink = b.u16(o + 6)
      size = b.u32(o + 8)
      // Compact inodes take their time from the superblock; newer EROFS adds a u32 delta here.
      mtime = this.sb.buildTime + b.u32(o + 12)
      mtimeNsec = this.sb.buildTimeNsec
      union = b.u32(o + 16)
      uid = b.u16(o + 24)
      gid = b.u16(o + 26)
    }
    const headerSize = inodeSize + xattrSize
    b.need(o, headerSize, `inode nid ${nid} with ${xattrCount} xattr slots`)
    const node: RafsNode = {
      ino: nid,
      type,
      mode,
      uid,
      gid,
      size,
      mtime,
      mtimeNsec,
      nlink,
      rdev: type === 'char' || type === 'block' ? union : 0,
      xattrs: xattrSize === 0 ? new Map() : this.readXattrs(nid, o + inodeSize, xattrSize)
    }
    return { node, layout, union, offset: o, headerSize }
  }

  readXattrEntry (offset: number, end: number, where: string, into: Map<string, Uint8Array>): number {
    const b = this.b
    if (offset + XATTR_ENTRY_HEADER_SIZE > end) throw new RafsOutOfRangeError(`${where}: xattr entry header at ${offset} runs past ${end}`)
    const nameLength = b.u8(offset)
    const nameIndex = b.u8(offset + 1)
    const valueSize = b.u16(offset + 2)
    const total = Math.ceil((XATTR_ENTRY_HEADER_SIZE + nameLength + valueSize) / 4) * 4
    if (offset + XATTR_ENTRY_HEADER_SIZE + nameLength + valueSize > end) {
      throw new RafsOutOfRangeError(`${where}: xattr entry at ${offset} (name ${nameLength} bytes, value ${valueSize} bytes) runs past ${end}`)
    }
    if (nameLength === 0 && nameIndex === 0 && valueSize === 0) return total
    let prefix = ''
    if (nameIndex !== 0) {
      const known = XATTR_PREFIXES.find(p => p.index === nameIndex)
      if (known === undefined) throw new RafsUnsupportedError(`${where}: xattr entry at ${offset} has name index ${nameIndex} (long name prefixes are not RAFS v6)`)
      prefix = known.prefix
    }
    const name = prefix + utf8.decode(b.bytes.subarray(offset + 4, offset + 4 + nameLength))
    into.set(name, b.slice(offset + 4 + nameLength, valueSize, where))
    return total
  }

  readXattrs (nid: number, offset: number, size: number): Map<string, Uint8Array> {
    const b = this.b
    const where = `inode nid ${nid} xattrs`
    const xattrs = new Map<string, Uint8Array>()
    const end = offset + size
    const sharedCount = b.u8(offset + 4)
    let cursor = offset + XATTR_IBODY_HEADER_SIZE
    if (cursor + sharedCount * 4 > end) throw new RafsOutOfRangeError(`${where}: ${sharedCount} shared xattr ids do not fit the ${size}-byte xattr area`)
    for (let i = 0; i < sharedCount; i++) {
      const id = b.u32(cursor + i * 4)
      const at = this.sb.xattrAddr + id * 4
      b.need(at, XATTR_ENTRY_HEADER_SIZE, `${where}: shared xattr ${id}`)
      this.readXattrEntry(at, b.length, `${where}: shared xattr ${id}`, xattrs)
    }
    cursor += sharedCount * 4
    while (cursor + XATTR_ENTRY_HEADER_SIZE <= end) {
      cursor += this.readXattrEntry(cursor, end, where, xattrs)
    }
    return xattrs
  }

  /** Views of the data blocks of a flat (plain or tail-packed) inode, the last one short. */
  flatData (record: InodeRecord, nid: number): Uint8Array[] {
    const { node, layout, union, offset, headerSize } = record
    const bs = this.sb.blockSize
    const size = node.size
    if (layout !== LAYOUT_FLAT_PLAIN && layout !== LAYOUT_FLAT_INLINE) {
      throw new RafsUnsupportedError(`inode nid ${nid} (${node.type}): data layout ${layout}, expected flat plain or inline`)
    }
    // Nothing but the buffer's own bytes can back the data: check before making views.
    if (size > this.b.length) throw new RafsOutOfRangeError(`inode nid ${nid}: size ${size} is larger than the ${this.b.length}-byte bootstrap`)
    const blocks: Uint8Array[] = []
    const fullBlocks = layout === LAYOUT_FLAT_INLINE ? Math.floor(size / bs) : Math.ceil(size / bs)
    const start = union * bs
    for (let i = 0; i < fullBlocks; i++) {
      const length = Math.min(bs, size - i * bs)
      blocks.push(this.b.view8(start + i * bs, length, `inode nid ${nid} data block ${i}`))
    }
    if (layout === LAYOUT_FLAT_INLINE && size % bs !== 0) {
      const tail = size % bs
      const tailOffset = offset + headerSize
      if ((tailOffset % bs) + tail > bs) {
        throw new RafsCorruptError(`inode nid ${nid} at ${offset}: ${tail} bytes of inline data cross a block boundary`)
      }
      blocks.push(this.b.view8(tailOffset, tail, `inode nid ${nid} inline data`))
    }
    return blocks
  }

  readDirentBlock (block: Uint8Array, nid: number, blockIndex: number, out: Array<{ name: string, nid: number }>): void {
    const where = `directory nid ${nid} block ${blockIndex}`
    if (block.length < DIRENT_SIZE) throw new RafsCorruptError(`${where}: ${block.length} bytes, too short for a dirent`)
    const view = new DataView(block.buffer, block.byteOffset, block.byteLength)
    const firstNameOffset = view.getUint16(8, true)
    if (firstNameOffset < DIRENT_SIZE || firstNameOffset % DIRENT_SIZE !== 0 || firstNameOffset > block.length) {
      throw new RafsCorruptError(`${where}: first name offset ${firstNameOffset} is not a multiple of ${DIRENT_SIZE} within ${block.length} bytes`)
    }
    const count = firstNameOffset / DIRENT_SIZE
    this.direntBudget -= count
    if (this.direntBudget < 0) throw new RafsOutOfRangeError(`${where}: more directory entries than the bootstrap can hold`)
    for (let i = 0; i < count; i++) {
      const start = view.getUint16(i * DIRENT_SIZE + 8, true)
      let end = i + 1 < count ? view.getUint16((i + 1) * DIRENT_SIZE + 8, true) : block.length
      if (start < firstNameOffset || end < start || end > block.length) {
        throw new RafsCorruptError(`${where}: dirent ${i} name spans ${start}..${end}, outside ${firstNameOffset}..${block.length}`)
      }
      if (i + 1 === count) {
        // The last name runs to the end of the block's used bytes or to the NUL padding.
        const nul = block.subarray(start, end).indexOf(0)
        if (nul !== -1) end = start + nul
      }
      const nameBytes = block.subarray(start, end)
      if (nameBytes.length === 0 || nameBytes.length > NAME_MAX || nameBytes.includes(0x2f) || nameBytes.includes(0)) {
        throw new RafsCorruptError(`${where}: dirent ${i} has a name of ${nameBytes.length} bytes that is empty, too long or holds '/' or NUL`)
      }
      const entryNid = view.getBigUint64(i * DIRENT_SIZE, true)
      if (entryNid > BigInt(this.b.length)) throw new RafsOutOfRangeError(`${where}: dirent ${i} nid ${entryNid} points past the bootstrap`)
      out.push({ name: utf8.decode(nameBytes), nid: Number(entryNid) })
    }
  }

  readChunks (record: InodeRecord, nid: number): RafsChunk[] {
    const { node, layout, union, offset, headerSize } = record
    if (layout !== LAYOUT_CHUNK_BASED) {
      if (node.size === 0 && (layout === LAYOUT_FLAT_PLAIN || layout === LAYOUT_FLAT_INLINE)) return []
      throw new RafsUnsupportedError(`regular file nid ${nid}: data layout ${layout} keeps data in the bootstrap, not in chunks`)
    }
    if ((union & CHUNK_FORMAT_INDEXES) === 0) {
      throw new RafsUnsupportedError(`regular file nid ${nid}: chunk format 0x${(union & 0xffff).toString(16)} has block maps, not chunk indexes`)
    }
    const count = Math.ceil(node.size / this.chunkSize)
    const start = Math.ceil((offset + headerSize) / CHUNK_ADDR_SIZE) * CHUNK_ADDR_SIZE
    this.b.need(start, count * CHUNK_ADDR_SIZE, `regular file nid ${nid}: ${count} chunk indexes`)
    this.chunkBudget -= count
    if (this.chunkBudget < 0) throw new RafsOutOfRangeError(`regular file nid ${nid}: more chunk indexes than the bootstrap can hold`)
    const chunks: RafsChunk[] = []
    for (let i = 0; i < count; i++) {
      const o = start + i * CHUNK_ADDR_SIZE
      const blockAddr = this.b.u32(o + 4)
      if (blockAddr === NULL_ADDR) continue
      const hi = this.b.u16(o + 2)
      const device = hi & 0xff
      const chunkIndex = ((hi >> 8) << 16) | this.b.u16(o)
      if (device === 0 || device > this.blobs.length) {
        throw new RafsCorruptError(`regular file nid ${nid} chunk ${i}: device ${device}, expected a blob device 1..${this.blobs.length}`)
      }
      const blobIndex = device - 1
      const info = this.chunkTable.get(`${blobIndex}/${chunkIndex}/${blockAddr}`)
      if (info === undefined) {
        throw new RafsCorruptError(`regular file nid ${nid} chunk ${i}: blob ${blobIndex} chunk ${chunkIndex} at block ${blockAddr} is not in the chunk info table`)
      }
      chunks.push({
        blobIndex,
        index: chunkIndex,
        digest: info.digest,
        compressedOffset: info.compressedOffset,
        compressedSize: info.compressedSize,
        uncompressedOffset: info.uncompressedOffset,
        uncompressedSize: info.uncompressedSize,
        fileOffset: i * this.chunkSize,
        compressed: info.compressed
      })
    }
    return chunks
  }

  /** Fills in what a non-directory needs beyond its inode: symlink target or chunks. */
  completeLeaf (record: InodeRecord, nid: number): void {
    const node = record.node
    if (node.type === 'symlink') {
      if (node.size > 65536) throw new RafsOutOfRangeError(`symlink nid ${nid}: target of ${node.size} bytes`)
      const parts = this.flatData(record, nid)
      node.target = utf8.decode(Buffer.concat(parts))
    } else if (node.type === 'file') {
      node.chunks = this.readChunks(record, nid)
    }
  }

  read (): RafsImage {
    const rootNid = this.sb.rootNid
    const rootRecord = this.readInode(rootNid, 'root')
    if (rootRecord.node.type !== 'directory') throw new RafsCorruptError(`root nid ${rootNid} is a ${rootRecord.node.type}, not a directory`)
    const nodes = new Map<number, RafsNode>([[rootNid, rootRecord.node]])
    const pending: Array<{ record: InodeRecord, nid: number }> = [{ record: rootRecord, nid: rootNid }]
    // Each directory is expanded once: reaching a directory's nid a second time is a loop.
    while (pending.length > 0) {
      const { record, nid } = pending.pop() as { record: InodeRecord, nid: number }
      const raw: Array<{ name: string, nid: number }> = []
      const blocks = this.flatData(record, nid)
      for (let i = 0; i < blocks.length; i++) this.readDirentBlock(blocks[i], nid, i, raw)
      const entries: RafsEntry[] = []
      for (const { name, nid: childNid } of raw) {
        if (name === '.' || name === '..') continue
        let child = nodes.get(childNid)
        if (child !== undefined) {
          if (child.type === 'directory') {
            throw new RafsLoopError(`directory nid ${nid} entry '${name}' reaches directory nid ${childNid} a second time`)
          }
        } else {
          const childRecord = this.readInode(childNid, `entry '${name}' of directory nid ${nid}`)
          child = childRecord.node
          nodes.set(childNid, child)
          if (child.type === 'directory') pending.push({ record: childRecord, nid: childNid })
          else this.completeLeaf(childRecord, childNid)
        }
        entries.push({ name, node: child })
      }
      const keyed = entries.map(e => ({ e, key: Buffer.from(e.name, 'utf8') }))
      keyed.sort((x, y) => Buffer.compare(x.key, y.key))
      for (let i = 1; i < keyed.length; i++) {
        if (Buffer.compare(keyed[i - 1].key, keyed[i].key) === 0) {
          throw new RafsCorruptError(`directory nid ${nid} has two entries named '${keyed[i].e.name}'`)
        }
      }
      record.node.entries = keyed.map(k => k.e)
    }
    return {
      version: 6,
      chunkSize: this.chunkSize,
      compressor: this.imageCompressor(),
      digester: this.imageDigester(),
      blobs: this.blobs,
      root: rootRecord.node,
      prefetch: this.readPrefetch(nodes),
      inodeCount: this.sb.inodeCount
    }
  }

  imageCompressor (): RafsImage['compressor'] {
    const compressor = compressorOfFlags(this.ext.flags)
    if (compressor === undefined) throw new RafsCorruptError(`extended superblock flags 0x${this.ext.flags.toString(16)} name no single compressor`)
    return compressor
  }

  imageDigester (): RafsImage['digester'] {
    const digester = digesterOfFlags(this.ext.flags)
    if (digester === undefined) throw new RafsCorruptError(`extended superblock flags 0x${this.ext.flags.toString(16)} name no single digester`)
    return digester
  }

  readPrefetch (nodes: Map<number, RafsNode>): RafsNode[] {
    const { prefetchTableOffset: offset, prefetchTableSize: size } = this.ext
    // Old builders left a size with a zero offset on empty images.
    if (size === 0 || offset === 0) return []
    if (size % 4 !== 0) throw new RafsCorruptError(`prefetch table size ${size} is not a multiple of 4`)
    this.b.need(offset, size, 'prefetch table')
    const prefetch: RafsNode[] = []
    for (let i = 0; i < size / 4; i++) {
      const nid = this.b.u32(offset + i * 4)
      if (nid === 0) continue // unused slot: a prefetch rule that matched nothing
      const node = nodes.get(nid)
      if (node === undefined) throw new RafsCorruptError(`prefetch table entry ${i} names nid ${nid}, which no directory reaches`)
      prefetch.push(node)
    }
    return prefetch
  }
}

/**
 * Parses a RAFS v6 bootstrap. Hard links come back as one RafsNode reached from several entries.
 * Throws a RafsFormatError subclass for anything malformed.
 */
export function readBootstrapV6 (bytes: Uint8Array): RafsImage {
  try {
    return new V6Reader(bytes).read()
  } catch (err) {
    if (err instanceof RafsFormatError) throw err
    // DataView and TextDecoder raise RangeError on paths the checks above should already cover.
    if (err instanceof RangeError) throw new RafsOutOfRangeError(`malformed RAFS v6 bootstrap: ${err.message}`)
    throw err
  }
}

