/**
 * Reads a whole RAFS v5 bootstrap into the shared `RafsImage` model. Every offset, size and count is
 * checked against the buffer before use; the tree is walked breadth first with an explicit queue, so
 * neither a deep nor a looping tree can exhaust the stack; total work is linear in the buffer size.
 */
import {
  RafsBadMagicError, RafsCorruptError, RafsLoopError, RafsOutOfRangeError, RafsUnsupportedError
} from '../errors.js'
import { nodeTypeOfMode } from '../model.js'
import type {
  Compressor, Digester, RafsBlob, RafsChunk, RafsEntry, RafsImage, RafsNode, RafsNodeType
} from '../model.js'
import {
  CHUNK, EXT_BLOB, INODE, RAFS_V4_VERSION, RAFS_V5_CHUNK_INFO_SIZE, RAFS_V5_DIGEST_SIZE,
  RAFS_V5_EXT_BLOB_ENTRY_SIZE, RAFS_V5_INODE_SIZE, RAFS_V5_KNOWN_SUPER_FLAGS, RAFS_V5_MAGIC,
  RAFS_V5_MAX_CHUNK_SIZE, RAFS_V5_MAX_NAME, RAFS_V5_MIN_CHUNK_SIZE, RAFS_V5_ROOT_INDEX,
  RAFS_V5_SUPERBLOCK_SIZE, RAFS_V5_VERSION, RAFS_V6_VERSION, RafsV5ChunkFlags, RafsV5InodeFlags,
  RafsV5SuperFlags, SB, alignV5
} from './layout.js'

/**
 * Blob ids become file names and URL path segments downstream, so only plain names pass
 * (Nydus writes sha256 hex). Longer or stranger ids are refused rather than trusted.
 */
const MAX_BLOB_ID_LENGTH = 256
const SAFE_BLOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/

/** File names are bytes; names that are not UTF-8 decode with U+FFFD rather than failing the image. */
const lenientUtf8 = new TextDecoder('utf-8')
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

interface Superblock {
  chunkSize: number
  flags: number
  compressor: Compressor
  digester: Digester
  inodeCount: number
  inodeTable: ByteRange
  inodeTableEntries: number
  prefetchTable: ByteRange
  prefetchTableEntries: number
  blobTable: ByteRange
  extBlobTable: ByteRange
  extBlobTableEntries: number
}

interface ByteRange { start: number, end: number }

/** One on-disk inode record: a table entry's view of an inode (hard links have one record per link). */
interface InodeRecord {
  offset: number
  ino: number
  type: RafsNodeType
  mode: number
  flags: number
  uid: number
  gid: number
  size: number
  mtime: number
  mtimeNsec: number
  nlink: number
  rdev: number
  childIndex: number
  childCount: number
  name: Uint8Array
  target?: Uint8Array
  /** Offset of the xattr table (its u64 size), when the inode has one. */
  xattrAt?: number
  /** Offset of the first chunk info, for regular files. */
  chunksAt: number
}

/** Where a value sits, for error messages: a string, or a function that builds one only when needed. */
type Describe = string | (() => string)

function describe (what: Describe): string {
  return typeof what === 'string' ? what : what()
}

class BootstrapBytes {
  readonly bytes: Uint8Array
  readonly view: DataView
  readonly length: number

  constructor (bytes: Uint8Array) {
    this.bytes = bytes
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.length = bytes.byteLength
  }

  /** Throws unless bytes [offset, offset + size) lie inside the buffer. `what` is built only on failure. */
  need (offset: number, size: number, what: Describe): void {
    if (offset < 0 || size < 0 || offset + size > this.length) {
      throw new RafsOutOfRangeError(`${describe(what)}: needs bytes ${offset}..${offset + size}, but the bootstrap is ${this.length} bytes`)
    }
  }

  u16 (at: number): number {
    return this.view.getUint16(at, true)
  }

  u32 (at: number): number {
    return this.view.getUint32(at, true)
  }

  /** A u64 that must fit a JS number exactly; larger values are lies in any real bootstrap. */
  u64 (at: number, what: Describe): number {
    const high = this.view.getUint32(at + 4, true)
    if (high > 0x1f_ffff) {
      throw new RafsOutOfRangeError(`${describe(what)} at byte ${at} is ${this.view.getBigUint64(at, true)}, beyond 2^53`)
    }
    return high * 0x1_0000_0000 + this.view.getUint32(at, true)
  }
}

/** Parses a RAFS v5 bootstrap. Throws a `RafsFormatError` subclass on anything malformed. */
export function readBootstrapV5 (bytes: Uint8Array): RafsImage {
  const b = new BootstrapBytes(bytes)
  const sb = readSuperblock(b)
  const blobs = readBlobTable(b, sb)
  const records = new InodeRecords(b, sb)
  const { root, nodesByIno } = buildTree(b, sb, blobs, records)
  const prefetch = readPrefetchTable(b, sb, nodesByIno)
  return {
    version: 5,
    chunkSize: sb.chunkSize,
    compressor: sb.compressor,
    digester: sb.digester,
    blobs,
    root,
    prefetch,
    inodeCount: sb.inodeCount,
    explicitUidGid: (sb.flags & RafsV5SuperFlags.EXPLICIT_UID_GID) !== 0
  }
}

function readSuperblock (b: BootstrapBytes): Superblock {
  if (b.length < 8) {
    throw new RafsOutOfRangeError(`bootstrap is ${b.length} bytes; a RAFS v5 superblock is ${RAFS_V5_SUPERBLOCK_SIZE}`)
  }
  const magic = b.u32(SB.magic)
  if (magic !== RAFS_V5_MAGIC) {
    throw new RafsBadMagicError(`expected RAFS magic 0x${RAFS_V5_MAGIC.toString(16)} at byte 0, found 0x${magic.toString(16)}`)
  }
  const version = b.u32(SB.version)
  if (version === RAFS_V6_VERSION) {
    throw new RafsUnsupportedError('bootstrap is RAFS v6 (version 0x600); readBootstrapV5 reads v5 only')
  }
  if (version !== RAFS_V5_VERSION) {
    const v4 = version === RAFS_V4_VERSION ? ' (RAFS v4)' : ''
    throw new RafsUnsupportedError(`RAFS version 0x${version.toString(16)}${v4} at byte 4; expected 0x${RAFS_V5_VERSION.toString(16)}`)
  }
  if (b.length <= RAFS_V5_SUPERBLOCK_SIZE) {
    throw new RafsOutOfRangeError(`bootstrap is ${b.length} bytes; a RAFS v5 bootstrap is the ${RAFS_V5_SUPERBLOCK_SIZE}-byte superblock and more`)
  }
  const sbSize = b.u32(SB.sbSize)
  if (sbSize !== RAFS_V5_SUPERBLOCK_SIZE) {
    throw new RafsCorruptError(`superblock size is ${sbSize} at byte ${SB.sbSize}; expected ${RAFS_V5_SUPERBLOCK_SIZE}`)
  }
  const chunkSize = b.u32(SB.blockSize)
  if ((chunkSize & (chunkSize - 1)) !== 0 || chunkSize < RAFS_V5_MIN_CHUNK_SIZE || chunkSize > RAFS_V5_MAX_CHUNK_SIZE) {
    throw new RafsCorruptError(`chunk size ${chunkSize} at byte ${SB.blockSize}; expected a power of two from ${RAFS_V5_MIN_CHUNK_SIZE} to ${RAFS_V5_MAX_CHUNK_SIZE}`)
  }

  const flags = b.u32(SB.flags)
  const flagsHigh = b.u32(SB.flags + 4)
  const unknownFlags = (flags & ~RAFS_V5_KNOWN_SUPER_FLAGS) >>> 0
  if (flagsHigh !== 0 || unknownFlags !== 0) {
    const unknown = flagsHigh !== 0 ? `${flagsHigh.toString(16)}${unknownFlags.toString(16).padStart(8, '0')}` : unknownFlags.toString(16)
    throw new RafsUnsupportedError(`unknown superblock flags 0x${unknown} at byte ${SB.flags}`)
  }
  if ((flags & RafsV5SuperFlags.ENCRYPTION_AES_128_XTS) !== 0) {
    throw new RafsUnsupportedError('superblock flags say the chunks are encrypted (AES-128-XTS)')
  }
  if ((flags & RafsV5SuperFlags.TARTFS_MODE) !== 0) {
    throw new RafsUnsupportedError('superblock flags say TARFS mode, which RAFS v5 does not have')
  }

  const inodeTableEntries = b.u32(SB.inodeTableEntries)
  const inodesCount = b.view.getBigUint64(SB.inodesCount, true)
  if (inodeTableEntries < RAFS_V5_ROOT_INDEX) {
    throw new RafsOutOfRangeError(`inode table has ${inodeTableEntries} entries (byte ${SB.inodeTableEntries}); the root needs one`)
  }
  if (inodesCount > BigInt(inodeTableEntries)) {
    throw new RafsOutOfRangeError(`superblock says ${inodesCount} inodes (byte ${SB.inodesCount}) but the inode table has ${inodeTableEntries} entries`)
  }

  const meta: ByteRange = { start: RAFS_V5_SUPERBLOCK_SIZE, end: b.length }
  const inodeTable = metaRange(b, 'inode table', SB.inodeTableOffset, inodeTableEntries * 4, meta)
  const blobTable = metaRange(b, 'blob table', SB.blobTableOffset, b.u32(SB.blobTableSize), meta)
  disjoint('blob table', blobTable, 'inode table', inodeTable)

  const extBlobTableEntries = b.u32(SB.extendedBlobTableEntries)
  let extBlobTable: ByteRange = { start: 0, end: 0 }
  if (extBlobTableEntries > 0) {
    extBlobTable = metaRange(b, 'extended blob table', SB.extendedBlobTableOffset, extBlobTableEntries * RAFS_V5_EXT_BLOB_ENTRY_SIZE, meta)
    disjoint('extended blob table', extBlobTable, 'inode table', inodeTable)
    disjoint('extended blob table', extBlobTable, 'blob table', blobTable)
  }

  const prefetchTableEntries = b.u32(SB.prefetchTableEntries)
  let prefetchTable: ByteRange = { start: 0, end: 0 }
  if (prefetchTableEntries > 0) {
    prefetchTable = metaRange(b, 'prefetch table', SB.prefetchTableOffset, prefetchTableEntries * 4, meta)
    disjoint('prefetch table', prefetchTable, 'inode table', inodeTable)
    disjoint('prefetch table', prefetchTable, 'blob table', blobTable)
    if (extBlobTableEntries > 0) disjoint('prefetch table', prefetchTable, 'extended blob table', extBlobTable)
  }

  return {
    chunkSize,
    flags,
    compressor: compressorOfFlags(flags),
    digester: digesterOfFlags(flags),
    inodeCount: Number(inodesCount),
    inodeTable,
    inodeTableEntries,
    prefetchTable,
    prefetchTableEntries,
    blobTable,
    extBlobTable,
    extBlobTableEntries
  }
}

/** Nydus's precedence when several bits are set, and its default (lz4_block) when none is. */
function compressorOfFlags (flags: number): Compressor {
  if ((flags & RafsV5SuperFlags.COMPRESSION_NONE) !== 0) return 'none'
  if ((flags & RafsV5SuperFlags.COMPRESSION_LZ4) !== 0) return 'lz4_block'
  if ((flags & RafsV5SuperFlags.COMPRESSION_GZIP) !== 0) return 'gzip'
  if ((flags & RafsV5SuperFlags.COMPRESSION_ZSTD) !== 0) return 'zstd'
  return 'lz4_block'
}

/** Nydus's precedence, and its default (blake3) when neither bit is set. */
function digesterOfFlags (flags: number): Digester {
  if ((flags & RafsV5SuperFlags.HASH_BLAKE3) !== 0) return 'blake3'
  if ((flags & RafsV5SuperFlags.HASH_SHA256) !== 0) return 'sha256'
  return 'blake3'
}

/** Reads a table's u64 offset from the superblock and checks the table lies, aligned, inside `within`. */
function metaRange (b: BootstrapBytes, what: string, offsetField: number, size: number, within: ByteRange): ByteRange {
  const start = b.u64(offsetField, `${what} offset`)
  if (start % 8 !== 0) {
    throw new RafsCorruptError(`${what} offset ${start} (superblock byte ${offsetField}) is not 8-byte aligned`)
  }
  const end = start + size
  if (start < within.start || end > within.end) {
    throw new RafsOutOfRangeError(`${what} at bytes ${start}..${end} (superblock byte ${offsetField}) lies outside the metadata, bytes ${within.start}..${within.end}`)
  }
  return { start, end }
}

function disjoint (aName: string, a: ByteRange, bName: string, b: ByteRange): void {
  if (a.start < b.end && a.end > b.start) {
    throw new RafsCorruptError(`${aName} (bytes ${a.start}..${a.end}) overlaps ${bName} (bytes ${b.start}..${b.end})`)
  }
}

function readBlobTable (b: BootstrapBytes, sb: Superblock): RafsBlob[] {
  interface Extended { chunkCount: number, features: number, uncompressedSize: number, compressedSize: number }
  const extended: Extended[] = []
  for (let i = 0; i < sb.extBlobTableEntries; i++) {
    const at = sb.extBlobTable.start + i * RAFS_V5_EXT_BLOB_ENTRY_SIZE
    extended.push({
      chunkCount: b.u32(at + EXT_BLOB.chunkCount),
      features: b.u32(at + EXT_BLOB.features),
      uncompressedSize: b.u64(at + EXT_BLOB.uncompressedSize, `uncompressed size of blob ${i}`),
      compressedSize: b.u64(at + EXT_BLOB.compressedSize, `compressed size of blob ${i}`)
    })
  }

  // Entries: u32 readahead offset | u32 readahead size | id, separated by '\0'; the last has none,
  // and up to 7 bytes of padding follow. Each entry takes at least 9 bytes, so the loop ends.
  const blobs: RafsBlob[] = []
  const { end } = sb.blobTable
  let pos = sb.blobTable.start
  while (end - pos > 8) {
    const idStart = pos + 8
    let idEnd = idStart
    while (idEnd < end && b.bytes[idEnd] !== 0) idEnd++
    const index = blobs.length
    const blobId = decodeBlobId(b.bytes.subarray(idStart, idEnd), index, idStart)
    const ext = extended[index]
    if (extended.length > 0 && ext === undefined) {
      throw new RafsCorruptError(`blob table names blob ${index} (${blobId}) but the extended blob table has only ${extended.length} entries`)
    }
    blobs.push({
      index,
      blobId,
      compressor: sb.compressor,
      digester: sb.digester,
      chunkSize: sb.chunkSize,
      chunkCount: ext?.chunkCount ?? 0,
      compressedSize: ext?.compressedSize ?? 0,
      uncompressedSize: ext?.uncompressedSize ?? 0,
      features: ext?.features ?? 0
    })
    pos = idEnd === end ? end : idEnd + 1
  }
  return blobs
}

function decodeBlobId (raw: Uint8Array, index: number, at: number): string {
  let id: string
  try {
    id = strictUtf8.decode(raw)
  } catch {
    throw new RafsCorruptError(`blob ${index}: id at byte ${at} is not UTF-8`)
  }
  if (id.length === 0 || id.length > MAX_BLOB_ID_LENGTH || !SAFE_BLOB_ID.test(id)) {
    const shown = id.length > 80 ? `${id.slice(0, 80)}…` : id
    throw new RafsCorruptError(`blob ${index}: id ${JSON.stringify(shown)} at byte ${at} is not a plain name ([A-Za-z0-9._-], at most ${MAX_BLOB_ID_LENGTH} characters)`)
  }
  return id
}

/**
 * Inode records by table index, each parsed once. Records of a real bootstrap never overlap, so the
 * bytes they span add up to less than the buffer; a budget on that sum keeps a table whose entries
 * point into each other's chunk arrays from costing more than linear work.
 */
class InodeRecords {
  private readonly b: BootstrapBytes
  private readonly sb: Superblock
  private readonly byOffset = new Map<number, InodeRecord>()
  private spanned = 0

  constructor (b: BootstrapBytes, sb: Superblock) {
    this.b = b
    this.sb = sb
  }

  get (index: number, referrer: string): InodeRecord {
    const { b, sb } = this
    if (index < 1 || index > sb.inodeTableEntries) {
      throw new RafsOutOfRangeError(`${referrer}: child index ${index} is outside the inode table (1..${sb.inodeTableEntries})`)
    }
    const offset = b.u32(sb.inodeTable.start + (index - 1) * 4) * 8
    const where = (): string => `inode table entry ${index} (record at byte ${offset})`
    if (offset <= RAFS_V5_SUPERBLOCK_SIZE) {
      throw new RafsOutOfRangeError(`${where()}: points inside the superblock`)
    }
    const known = this.byOffset.get(offset)
    if (known !== undefined) return known

    b.need(offset, RAFS_V5_INODE_SIZE, where)
    const at = (field: number): number => offset + field
    const ino = b.u64(at(INODE.ino), () => `${where()}: inode number`)
    const mode = b.u32(at(INODE.mode))
    const type = nodeTypeOfMode(mode)
    if (ino === 0) throw new RafsCorruptError(`${where()}: inode number 0`)
    if (type === undefined) {
      throw new RafsCorruptError(`${where()}, ino ${ino}: mode 0o${mode.toString(8)} has no known file type`)
    }
    const flags = b.u32(at(INODE.flags))
    const nlink = b.u32(at(INODE.nlink))
    if (nlink === 0) throw new RafsCorruptError(`${where()}, ino ${ino}: link count 0`)
    const childCount = b.u32(at(INODE.childCount))
    const nameSize = b.u16(at(INODE.nameSize))
    const symlinkSize = b.u16(at(INODE.symlinkSize))
    if (nameSize === 0 || nameSize > RAFS_V5_MAX_NAME) {
      throw new RafsCorruptError(`${where()}, ino ${ino}: name is ${nameSize} bytes; expected 1..${RAFS_V5_MAX_NAME}`)
    }
    if (type === 'symlink' && symlinkSize === 0) {
      throw new RafsCorruptError(`${where()}, ino ${ino}: symlink with an empty target`)
    }

    const nameAt = offset + RAFS_V5_INODE_SIZE
    const targetAt = nameAt + alignV5(nameSize)
    let extent = RAFS_V5_INODE_SIZE + alignV5(nameSize) + alignV5(symlinkSize)
    let xattrAt: number | undefined
    if ((flags & RafsV5InodeFlags.XATTR) !== 0) {
      xattrAt = offset + extent
      b.need(xattrAt, 8, () => `${where()}, ino ${ino}: xattr table size`)
      const xattrSize = b.u64(xattrAt, () => `${where()}, ino ${ino}: xattr table size`)
      extent += 8 + alignV5(xattrSize)
    }
    const chunksAt = offset + extent
    if (type === 'file') extent += childCount * RAFS_V5_CHUNK_INFO_SIZE
    b.need(offset, extent, () => `${where()}, ino ${ino}: inode record`)
    this.spanned += extent
    if (this.spanned > b.length) {
      throw new RafsCorruptError(`${where()}, ino ${ino}: inode records overlap (${this.spanned} bytes of records in a ${b.length}-byte bootstrap)`)
    }

    const record: InodeRecord = {
      offset,
      ino,
      type,
      mode,
      flags,
      uid: b.u32(at(INODE.uid)),
      gid: b.u32(at(INODE.gid)),
      size: b.u64(at(INODE.size), () => `${where()}, ino ${ino}: size`),
      mtime: b.u64(at(INODE.mtime), () => `${where()}, ino ${ino}: mtime`),
      mtimeNsec: b.u32(at(INODE.mtimeNsec)),
      nlink,
      rdev: b.u32(at(INODE.rdev)),
      childIndex: b.u32(at(INODE.childIndex)),
      childCount,
      name: b.bytes.subarray(nameAt, nameAt + nameSize),
      xattrAt,
      chunksAt
    }
    if (type === 'symlink') record.target = b.bytes.subarray(targetAt, targetAt + symlinkSize)
    this.byOffset.set(offset, record)
    return record
  }
}

interface Tree {
  root: RafsNode
  nodesByIno: Map<number, RafsNode>
}

function buildTree (b: BootstrapBytes, sb: Superblock, blobs: RafsBlob[], records: InodeRecords): Tree {
  const nodesByIno = new Map<number, RafsNode>()
  const recordOfDir = new Map<RafsNode, InodeRecord>()
  // Parent of each directory as the walk found it: a tree by construction, so walking it up ends.
  const parentOfDir = new Map<RafsNode, RafsNode | undefined>()
  // Each table index may be one directory's child, once: that bounds the walk by the table size.
  const claimed = new Uint8Array(sb.inodeTableEntries + 1)

  const rootRecord = records.get(RAFS_V5_ROOT_INDEX, 'root')
  if (rootRecord.type !== 'directory') {
    throw new RafsCorruptError(`root (inode table entry 1, ino ${rootRecord.ino}) is a ${rootRecord.type}, not a directory`)
  }
  claimed[RAFS_V5_ROOT_INDEX] = 1
  const root = makeNode(b, sb, blobs, rootRecord)
  nodesByIno.set(root.ino, root)
  recordOfDir.set(root, rootRecord)
  parentOfDir.set(root, undefined)

  const queue: RafsNode[] = [root]
  for (let head = 0; head < queue.length; head++) {
    const dir = queue[head]
    const dirRecord = recordOfDir.get(dir) as InodeRecord
    const count = dirRecord.childCount
    if (count === 0) continue
    const first = dirRecord.childIndex
    const last = first + count - 1
    const referrer = `directory ino ${dir.ino} (children at table indexes ${first}..${last})`
    if (first < 1 || last > sb.inodeTableEntries) {
      throw new RafsOutOfRangeError(`${referrer}: outside the inode table (1..${sb.inodeTableEntries})`)
    }

    const named: Array<{ name: Uint8Array, node: RafsNode }> = []
    for (let index = first; index <= last; index++) {
      const record = records.get(index, referrer)
      const existing = nodesByIno.get(record.ino)
      if (record.type === 'directory' && existing?.type === 'directory') {
        if (isDirOrAncestor(existing, dir, parentOfDir)) {
          throw new RafsLoopError(`${referrer}: child at table index ${index} is directory ino ${record.ino}, which is the directory itself or its ancestor`)
        }
        throw new RafsCorruptError(`${referrer}: child at table index ${index} is directory ino ${record.ino}, already a child of another directory`)
      }
      if (claimed[index] !== 0) {
        throw new RafsCorruptError(`${referrer}: table index ${index} is already another directory's child`)
      }
      claimed[index] = 1

      let node: RafsNode
      if (existing === undefined) {
        node = makeNode(b, sb, blobs, record)
        nodesByIno.set(node.ino, node)
        if (node.type === 'directory') {
          recordOfDir.set(node, record)
          parentOfDir.set(node, dir)
          queue.push(node)
        }
      } else {
        // Another link to an inode met before: the copies must describe the same inode.
        if (existing.type !== record.type || existing.mode !== record.mode || existing.size !== record.size) {
          throw new RafsCorruptError(`${referrer}: table index ${index} links ino ${record.ino} as ${record.type} mode 0o${record.mode.toString(8)} size ${record.size}, but an earlier link has ${existing.type} mode 0o${existing.mode.toString(8)} size ${existing.size}`)
        }
        node = existing
      }
      named.push({ name: checkEntryName(record, index, referrer), node })
    }

    named.sort((x, y) => compareBytes(x.name, y.name))
    const entries: RafsEntry[] = []
    for (let i = 0; i < named.length; i++) {
      if (i > 0 && compareBytes(named[i - 1].name, named[i].name) === 0) {
        throw new RafsCorruptError(`${referrer}: two entries named ${JSON.stringify(lenientUtf8.decode(named[i].name))}`)
      }
      entries.push({ name: lenientUtf8.decode(named[i].name), node: named[i].node })
    }
    dir.entries = entries
  }
  return { root, nodesByIno }
}

function isDirOrAncestor (candidate: RafsNode, dir: RafsNode, parentOfDir: Map<RafsNode, RafsNode | undefined>): boolean {
  for (let d: RafsNode | undefined = dir; d !== undefined; d = parentOfDir.get(d)) {
    if (d === candidate) return true
  }
  return false
}

function checkEntryName (record: InodeRecord, index: number, referrer: string): Uint8Array {
  const name = record.name
  const dots = (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)
  if (dots || name.includes(0x2f) || name.includes(0)) {
    throw new RafsCorruptError(`${referrer}: child at table index ${index} (ino ${record.ino}) has the name ${JSON.stringify(lenientUtf8.decode(name))}, which no directory entry may have`)
  }
  return name
}

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i]
  }
  return a.length - b.length
}

function makeNode (b: BootstrapBytes, sb: Superblock, blobs: RafsBlob[], record: InodeRecord): RafsNode {
  const node: RafsNode = {
    ino: record.ino,
    type: record.type,
    mode: record.mode,
    uid: record.uid,
    gid: record.gid,
    size: record.size,
    mtime: record.mtime,
    mtimeNsec: record.mtimeNsec,
    nlink: record.nlink,
    rdev: record.rdev,
    xattrs: record.xattrAt === undefined ? new Map() : readXattrs(b, record.xattrAt, record.ino)
  }
  if (record.target !== undefined) node.target = lenientUtf8.decode(record.target)
  if (record.type === 'file') node.chunks = readChunks(b, sb, blobs, record)
  if (record.type === 'directory') node.entries = []
  return node
}

/** The xattr table: u64 size, then pairs of u32 pair size | name | '\0' | value (layout/mod.rs). */
function readXattrs (b: BootstrapBytes, at: number, ino: number): Map<string, Uint8Array> {
  const xattrs = new Map<string, Uint8Array>()
  const size = b.u64(at, () => `ino ${ino}: xattr table size`)
  let pos = at + 8
  const end = pos + size
  // The record's extent was checked against the buffer already; each pair consumes 4 bytes or more.
  while (pos < end) {
    if (end - pos < 4) {
      throw new RafsCorruptError(`ino ${ino}: xattr table at byte ${at} ends inside a pair size at byte ${pos}`)
    }
    const pairSize = b.u32(pos)
    pos += 4
    if (pairSize > end - pos) {
      throw new RafsCorruptError(`ino ${ino}: xattr pair at byte ${pos - 4} is ${pairSize} bytes, past the table's end at byte ${end}`)
    }
    const pair = b.bytes.subarray(pos, pos + pairSize)
    const nul = pair.indexOf(0)
    // Nydus skips a pair without a NUL; so do we.
    if (nul > 0) xattrs.set(lenientUtf8.decode(pair.subarray(0, nul)), pair.slice(nul + 1))
    pos += pairSize
  }
  return xattrs
}

function readChunks (b: BootstrapBytes, sb: Superblock, blobs: RafsBlob[], record: InodeRecord): RafsChunk[] {
  const chunks: RafsChunk[] = []
  const hasExtendedTable = sb.extBlobTableEntries > 0
  const maxStoredSize = 2 * sb.chunkSize
  let fileEnd = 0
  for (let i = 0; i < record.childCount; i++) {
    const at = record.chunksAt + i * RAFS_V5_CHUNK_INFO_SIZE
    const where = (): string => `ino ${record.ino}, chunk ${i} (byte ${at})`
    const blobIndex = b.u32(at + CHUNK.blobIndex)
    const flags = b.u32(at + CHUNK.flags)
    const compressedSize = b.u32(at + CHUNK.compressedSize)
    const uncompressedSize = b.u32(at + CHUNK.uncompressedSize)
    const compressedOffset = b.u64(at + CHUNK.compressedOffset, () => `${where()}: compressed offset`)
    const uncompressedOffset = b.u64(at + CHUNK.uncompressedOffset, () => `${where()}: uncompressed offset`)
    const fileOffset = b.u64(at + CHUNK.fileOffset, () => `${where()}: file offset`)
    const index = b.u32(at + CHUNK.index)
    const compressed = (flags & RafsV5ChunkFlags.COMPRESSED) !== 0

    const blob = blobs[blobIndex]
    if (blob === undefined) {
      throw new RafsOutOfRangeError(`${where()}: blob index ${blobIndex}, but the blob table has ${blobs.length} blobs`)
    }
    if ((flags & (RafsV5ChunkFlags.ENCRYPTED | RafsV5ChunkFlags.BATCH)) !== 0) {
      throw new RafsUnsupportedError(`${where()}: chunk flags 0x${flags.toString(16)} (encrypted or batch chunks)`)
    }
    if (uncompressedSize === 0 || uncompressedSize > sb.chunkSize) {
      throw new RafsCorruptError(`${where()}: uncompressed size ${uncompressedSize}; expected 1..${sb.chunkSize}`)
    }
    if (compressed ? compressedSize === 0 || compressedSize > maxStoredSize : compressedSize !== uncompressedSize) {
      throw new RafsCorruptError(`${where()}: stored size ${compressedSize} for ${uncompressedSize} bytes ${compressed ? 'compressed' : 'stored as is'}`)
    }
    if (fileOffset < fileEnd || fileOffset + uncompressedSize > record.size) {
      throw new RafsOutOfRangeError(`${where()}: file bytes ${fileOffset}..${fileOffset + uncompressedSize} overlap the previous chunk (ends at ${fileEnd}) or pass the file size ${record.size}`)
    }
    if (hasExtendedTable) {
      if (index >= blob.chunkCount) {
        throw new RafsOutOfRangeError(`${where()}: chunk index ${index}, but blob ${blob.blobId} has ${blob.chunkCount} chunks`)
      }
      if (compressedOffset + compressedSize > blob.compressedSize || uncompressedOffset + uncompressedSize > blob.uncompressedSize) {
        throw new RafsOutOfRangeError(`${where()}: blob bytes ${compressedOffset}+${compressedSize} (uncompressed ${uncompressedOffset}+${uncompressedSize}) pass the end of blob ${blob.blobId} (${blob.compressedSize}, uncompressed ${blob.uncompressedSize})`)
      }
    }
    fileEnd = fileOffset + uncompressedSize
    chunks.push({
      blobIndex,
      index,
      digest: b.bytes.slice(at + CHUNK.digest, at + CHUNK.digest + RAFS_V5_DIGEST_SIZE),
      compressedOffset,
      compressedSize,
      uncompressedOffset,
      uncompressedSize,
      fileOffset,
      compressed
    })
  }
  return chunks
}

function readPrefetchTable (b: BootstrapBytes, sb: Superblock, nodesByIno: Map<number, RafsNode>): RafsNode[] {
  const prefetch: RafsNode[] = []
  for (let i = 0; i < sb.prefetchTableEntries; i++) {
    const at = sb.prefetchTable.start + i * 4
    const ino = b.u32(at)
    // 0 pads the table to 8 bytes and ends it.
    if (ino === 0) break
    const node = nodesByIno.get(ino)
    if (node === undefined) {
      throw new RafsOutOfRangeError(`prefetch table entry ${i} (byte ${at}) names inode ${ino}, which is not in the tree`)
    }
    prefetch.push(node)
  }
  return prefetch
}
