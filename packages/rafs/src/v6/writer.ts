/**
 * Lays a RafsImage out as a RAFS v6 bootstrap the way nydus-image does: superblock, extended
 * superblock and device table in block 0, the blob table and the prefetch table in the blocks
 * after it, then the metadata area (inodes with inline xattrs, directory blocks, tail-packed
 * directory and symlink data, chunk index arrays), then the chunk info table.
 */
import { InvalidArgumentError } from '@shoal/interface'
import type { RafsBlob, RafsChunk, RafsImage, RafsNode, RafsNodeType } from '../model.js'
import {
  BLOB_ENTRY_SIZE, BLOB_FEATURE_ALIGNED, BLOB_FEATURE_INLINED_CHUNK_DIGEST, BLOCK_BITS, BLOCK_SIZE, CHUNK_ADDR_SIZE, CHUNK_FLAG_COMPRESSED,
  CHUNK_FORMAT_INDEXES, CHUNK_INFO_SIZE, COMPACT_INODE_SIZE, DEVICE_MAP_ALIGNMENT, DEVICE_SLOT_SIZE, DEVICE_TABLE_OFFSET, DIRENT_SIZE,
  EROFS_MAGIC, EXTENDED_INODE_SIZE, EXT_SUPER_OFFSET, FEATURE_COMPAT_RAFS_V6, FEATURE_INCOMPAT_CHUNKED_FILE, FEATURE_INCOMPAT_DEVICE_TABLE,
  FLAG_ENCRYPTION_NONE, FLAG_EXPLICIT_UID_GID, FLAG_HAS_XATTR, FLAG_INLINED_CHUNK_DIGEST, FT_BLKDEV, FT_CHRDEV, FT_DIR, FT_FIFO,
  FT_REG_FILE, FT_SOCK, FT_SYMLINK, LAYOUT_CHUNK_BASED, LAYOUT_FLAT_INLINE, LAYOUT_FLAT_PLAIN, MAX_BLOBS, MAX_CHUNK_INDEX, MAX_CHUNK_SIZE,
  NAME_MAX, NULL_ADDR, SLOT_SIZE, SUPER_OFFSET, XATTR_IBODY_HEADER_SIZE, XATTR_PREFIXES, alignUp, codeOfCompressor, codeOfDigester,
  flagOfCompressor, flagOfDigester
} from './layout.js'

export interface WriteBootstrapV6Options {
  /** Seconds since the epoch stored as the build time; compact inodes take their mtime from it. Default 0. */
  buildTime?: number
  buildTimeNsec?: number
  /** Use 32-byte compact inodes where they lose nothing (mtime equal to the build time, small ids). Default true. */
  compactInodes?: boolean
  /**
   * Give EROFS one chunk covering a whole file when its chunks lie back to back in one blob, as
   * nydus-image does, so the kernel maps it in one extent. The chunk index array keeps every chunk.
   * Default true.
   */
  mergeContiguousChunks?: boolean
  /** 16 bytes for the EROFS volume uuid. Default zeros. */
  uuid?: Uint8Array
  /** Up to 16 bytes of ASCII. */
  volumeName?: string
}

const encoder = new TextEncoder()

const FILE_TYPES: Record<RafsNodeType, number> = {
  file: FT_REG_FILE,
  directory: FT_DIR,
  symlink: FT_SYMLINK,
  char: FT_CHRDEV,
  block: FT_BLKDEV,
  fifo: FT_FIFO,
  socket: FT_SOCK
}

interface DirentOut {
  name: Uint8Array
  node: RafsNode
}

interface Plan {
  node: RafsNode
  offset: number
  ino: number
  compact: boolean
  layout: number
  xattrs: Uint8Array
  headerSize: number
  /** Directories and symlinks: data size, first data block, data blocks. */
  dataSize: number
  blockAddr: number
  dirBlocks?: DirentOut[][]
  parent?: RafsNode
  /** Regular files: chunk index slots (holes included) and the EROFS chunk size bits. */
  chunkSlots?: Array<RafsChunk | undefined>
  chunkBits?: number
}

/** Hands out 32-byte-aligned metadata space and whole blocks; reuses the gaps block alignment leaves. */
class MetaAllocator {
  cursor: number
  private readonly holes: Array<{ start: number, end: number }> = []

  constructor (start: number) {
    this.cursor = start
  }

  /** Space for `size` bytes whose first `keepInBlock` bytes must not cross a block boundary. */
  slots (size: number, keepInBlock: number): number {
    const length = alignUp(Math.max(size, 1), SLOT_SIZE)
    if (length < BLOCK_SIZE) {
      for (let i = 0; i < this.holes.length; i++) {
        const hole = this.holes[i]
        if (hole.end - hole.start >= length) {
          const offset = hole.start
          hole.start += length
          if (hole.end - hole.start < SLOT_SIZE) this.holes.splice(i, 1)
          return offset
        }
      }
    }
    const used = this.cursor % BLOCK_SIZE
    if (used !== 0 && used + Math.min(keepInBlock, BLOCK_SIZE) > BLOCK_SIZE) this.skipToBlock()
    const offset = this.cursor
    this.cursor += length
    return offset
  }

  blocks (count: number): number {
    if (count === 0) return 0
    this.skipToBlock()
    const offset = this.cursor
    this.cursor += count * BLOCK_SIZE
    return offset
  }

  private skipToBlock (): void {
    const next = alignUp(this.cursor, BLOCK_SIZE)
    if (next - this.cursor >= SLOT_SIZE) this.holes.push({ start: this.cursor, end: next })
    this.cursor = next
  }
}

function fail (message: string): never {
  throw new InvalidArgumentError(message)
}

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b)
}

/** The inline xattr area of one inode: ibody header, then entries, each padded to 4 bytes. */
function encodeXattrs (xattrs: Map<string, Uint8Array>, where: string): Uint8Array {
  if (xattrs.size === 0) return new Uint8Array(0)
  const parts: Uint8Array[] = []
  let size = XATTR_IBODY_HEADER_SIZE
  for (const name of [...xattrs.keys()].sort()) {
    const value = xattrs.get(name) as Uint8Array
    const prefix = XATTR_PREFIXES.find(p => p.whole ? name === p.prefix : name.startsWith(p.prefix) && name.length > p.prefix.length)
    if (prefix === undefined) fail(`${where}: xattr '${name}' has no EROFS name prefix (user., trusted., security., system.posix_acl_*)`)
    const suffix = encoder.encode(name.slice(prefix.prefix.length))
    if (suffix.length > 255) fail(`${where}: xattr '${name}' is longer than 255 bytes after its prefix`)
    if (value.length > 0xffff) fail(`${where}: xattr '${name}' value is ${value.length} bytes, at most 65535`)
    const entry = new Uint8Array(alignUp(4 + suffix.length + value.length, 4))
    entry[0] = suffix.length
    entry[1] = prefix.index
    entry[2] = value.length & 0xff
    entry[3] = value.length >> 8
    entry.set(suffix, 4)
    entry.set(value, 4 + suffix.length)
    parts.push(entry)
    size += entry.length
  }
  if ((size - XATTR_IBODY_HEADER_SIZE) / 4 + 1 > 0xffff) fail(`${where}: ${size} bytes of xattrs do not fit an inode`)
  const out = new Uint8Array(size)
  let at = XATTR_IBODY_HEADER_SIZE
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

/** Packs sorted dirents into blocks: each block holds its dirents then their names. */
function packDirents (entries: DirentOut[]): { blocks: DirentOut[][], size: number } {
  const blocks: DirentOut[][] = [[]]
  let used = 0
  for (const entry of entries) {
    const length = DIRENT_SIZE + entry.name.length
    if (used + length > BLOCK_SIZE) {
      blocks.push([])
      used = 0
    }
    blocks[blocks.length - 1].push(entry)
    used += length
  }
  return { blocks, size: (blocks.length - 1) * BLOCK_SIZE + used }
}

class V6Writer {
  readonly plans = new Map<RafsNode, Plan>()
  readonly order: Plan[] = []
  readonly compact: boolean
  readonly merge: boolean
  readonly buildTime: number
  readonly buildTimeNsec: number
  metaAddr = 0
  hasXattr = false

  constructor (readonly image: RafsImage, readonly options: WriteBootstrapV6Options) {
    this.compact = options.compactInodes ?? true
    this.merge = options.mergeContiguousChunks ?? true
    this.buildTime = options.buildTime ?? 0
    this.buildTimeNsec = options.buildTimeNsec ?? 0
  }

  validateImage (): void {
    const { image } = this
    const cs = image.chunkSize
    if (!Number.isSafeInteger(cs) || cs < BLOCK_SIZE || cs > MAX_CHUNK_SIZE || (cs & (cs - 1)) !== 0) {
      fail(`chunk size ${cs} is not a power of two in 4 KiB..16 MiB`)
    }
    if (codeOfCompressor(image.compressor) < 0) fail(`unknown compressor '${image.compressor}'`)
    if (codeOfDigester(image.digester) < 0) fail(`unknown digester '${image.digester}'`)
    if (image.blobs.length > MAX_BLOBS) fail(`${image.blobs.length} blobs, at most ${MAX_BLOBS}`)
    image.blobs.forEach((blob, i) => {
      if (blob.index !== i) fail(`blob ${blob.blobId} has index ${blob.index} at position ${i}`)
      if (!/^[\x21-\x7e]{1,64}$/.test(blob.blobId)) fail(`blob ${i}: id '${blob.blobId}' is not 1..64 printable ASCII characters`)
      if (codeOfCompressor(blob.compressor) < 0 || codeOfDigester(blob.digester) < 0) fail(`blob ${i}: unknown compressor or digester`)
    })
    if (image.root.type !== 'directory') fail(`the root is a ${image.root.type}, not a directory`)
  }

  inodeSize (node: RafsNode): { compact: boolean, size: number } {
    const compact = this.compact && node.uid <= 0xffff && node.gid <= 0xffff && node.nlink <= 0xffff &&
      node.size <= 0xffffffff && node.mtime === this.buildTime && node.mtimeNsec === this.buildTimeNsec
    return { compact, size: compact ? COMPACT_INODE_SIZE : EXTENDED_INODE_SIZE }
  }

  newPlan (node: RafsNode, where: string): Plan {
    const xattrs = encodeXattrs(node.xattrs, where)
    if (xattrs.length > 0) this.hasXattr = true
    const plan: Plan = {
      node,
      offset: 0,
      ino: this.order.length + 1,
      compact: false,
      layout: LAYOUT_FLAT_PLAIN,
      xattrs,
      headerSize: 0,
      dataSize: 0,
      blockAddr: 0
    }
    this.plans.set(node, plan)
    this.order.push(plan)
    return plan
  }

  /** Places an inode whose data (dirents or symlink target) is `dataSize` bytes, tail-packing when it fits. */
  placeFlat (plan: Plan, alloc: MetaAllocator, dataSize: number): void {
    const { compact, size } = this.inodeSize({ ...plan.node, size: dataSize })
    plan.compact = compact
    plan.headerSize = size + plan.xattrs.length
    plan.dataSize = dataSize
    const tail = dataSize % BLOCK_SIZE
    if (tail !== 0 && plan.headerSize + tail <= BLOCK_SIZE) {
      plan.layout = LAYOUT_FLAT_INLINE
      plan.offset = alloc.slots(plan.headerSize + tail, plan.headerSize + tail)
      const full = Math.floor(dataSize / BLOCK_SIZE)
      plan.blockAddr = alloc.blocks(full) / BLOCK_SIZE
    } else {
      plan.layout = LAYOUT_FLAT_PLAIN
      plan.offset = alloc.slots(plan.headerSize, plan.headerSize)
      plan.blockAddr = alloc.blocks(Math.ceil(dataSize / BLOCK_SIZE)) / BLOCK_SIZE
    }
  }

  placeFile (plan: Plan, alloc: MetaAllocator, where: string): void {
    const node = plan.node
    const cs = this.image.chunkSize
    if (!Number.isSafeInteger(node.size) || node.size < 0) fail(`${where}: size ${node.size}`)
    const count = Math.ceil(node.size / cs)
    const slots: Array<RafsChunk | undefined> = new Array(count).fill(undefined)
    for (const chunk of node.chunks ?? []) {
      const slot = chunk.fileOffset / cs
      if (!Number.isInteger(slot) || slot < 0 || slot >= count) fail(`${where}: chunk at file offset ${chunk.fileOffset} is not on a ${cs}-byte boundary inside the ${node.size}-byte file`)
      if (slots[slot] !== undefined) fail(`${where}: two chunks at file offset ${chunk.fileOffset}`)
      if (chunk.blobIndex < 0 || chunk.blobIndex >= this.image.blobs.length || !Number.isInteger(chunk.blobIndex)) fail(`${where}: chunk at ${chunk.fileOffset} names blob ${chunk.blobIndex}, the image has ${this.image.blobs.length}`)
      if (!Number.isInteger(chunk.index) || chunk.index < 0 || chunk.index > MAX_CHUNK_INDEX) fail(`${where}: chunk index ${chunk.index} does not fit 24 bits`)
      if (chunk.uncompressedOffset % BLOCK_SIZE !== 0 || chunk.uncompressedOffset / BLOCK_SIZE >= NULL_ADDR) fail(`${where}: chunk at ${chunk.fileOffset} has uncompressed offset ${chunk.uncompressedOffset}, not a 4096-aligned block address`)
      if (chunk.digest.length !== 32) fail(`${where}: chunk at ${chunk.fileOffset} has a ${chunk.digest.length}-byte digest`)
      slots[slot] = chunk
    }
    let bits = Math.log2(cs) - BLOCK_BITS
    if (this.merge && count > 1 && slots.every((c, i) => c !== undefined && c.blobIndex === slots[0]?.blobIndex &&
      c.uncompressedOffset === (slots[0]?.uncompressedOffset ?? 0) + i * cs)) {
      // Back to back in the uncompressed blob: one EROFS chunk of the next power of two covers all.
      bits = Math.ceil(Math.log2(node.size)) - BLOCK_BITS
      if (bits > 0x1f) bits = Math.log2(cs) - BLOCK_BITS
    }
    const { compact, size } = this.inodeSize(node)
    plan.compact = compact
    plan.layout = LAYOUT_CHUNK_BASED
    plan.chunkSlots = slots
    plan.chunkBits = bits
    plan.headerSize = size + plan.xattrs.length
    const header = alignUp(plan.headerSize, CHUNK_ADDR_SIZE)
    const total = header + count * CHUNK_ADDR_SIZE
    plan.offset = alloc.slots(total, total <= BLOCK_SIZE ? total : plan.headerSize)
    if ((plan.offset % BLOCK_SIZE) + plan.headerSize > BLOCK_SIZE) {
      // A long chunk array may cross blocks; the inode and its xattrs may not.
      fail(`${where}: internal layout error, inode header crosses a block`)
    }
  }

  placeLeaf (plan: Plan, alloc: MetaAllocator, where: string): void {
    const node = plan.node
    switch (node.type) {
      case 'file':
        this.placeFile(plan, alloc, where)
        break
      case 'symlink': {
        if (node.target === undefined) fail(`${where}: symlink without a target`)
        this.placeFlat(plan, alloc, encoder.encode(node.target).length)
        break
      }
      default: {
        const { compact, size } = this.inodeSize({ ...node, size: 0 })
        plan.compact = compact
        plan.headerSize = size + plan.xattrs.length
        plan.offset = alloc.slots(plan.headerSize, plan.headerSize)
      }
    }
  }

  /** Pass 1: give every inode its place, directories in depth-first pre-order as nydus-image does. */
  layout (alloc: MetaAllocator): void {
    const root = this.image.root
    const rootPlan = this.newPlan(root, '/')
    rootPlan.parent = root
    const stack: Array<{ plan: Plan, path: string }> = [{ plan: rootPlan, path: '' }]
    while (stack.length > 0) {
      const { plan, path } = stack.pop() as { plan: Plan, path: string }
      const dir = plan.node
      const dirents: DirentOut[] = [
        { name: encoder.encode('.'), node: dir },
        { name: encoder.encode('..'), node: plan.parent as RafsNode }
      ]
      for (const entry of dir.entries ?? []) {
        const name = encoder.encode(entry.name)
        if (name.length === 0 || name.length > NAME_MAX || entry.name.includes('/') || entry.name.includes('\0') || entry.name === '.' || entry.name === '..') {
          fail(`${path}/: entry name '${entry.name}' is empty, longer than ${NAME_MAX} bytes, '.' or '..', or holds '/' or NUL`)
        }
        dirents.push({ name, node: entry.node })
      }
      dirents.sort((a, b) => compareBytes(a.name, b.name))
      for (let i = 1; i < dirents.length; i++) {
        if (compareBytes(dirents[i - 1].name, dirents[i].name) === 0) fail(`${path}/: two entries named '${Buffer.from(dirents[i].name).toString()}'`)
      }
      const packed = packDirents(dirents)
      plan.dirBlocks = packed.blocks
      this.placeFlat(plan, alloc, packed.size)
      const subdirs: Array<{ plan: Plan, path: string }> = []
      for (const entry of dir.entries ?? []) {
        const child = entry.node
        const childPath = `${path}/${entry.name}`
        const seen = this.plans.get(child)
        if (child.type === 'directory') {
          if (seen !== undefined) fail(`${childPath}: a directory reached twice (a loop or a hard-linked directory)`)
          const childPlan = this.newPlan(child, childPath)
          childPlan.parent = dir
          subdirs.push({ plan: childPlan, path: childPath })
        } else if (seen === undefined) {
          this.placeLeaf(this.newPlan(child, childPath), alloc, childPath)
        }
      }
      for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i])
    }
  }

  nid (node: RafsNode): number {
    const plan = this.plans.get(node)
    if (plan === undefined) fail('internal: a node without a place')
    return (plan.offset - this.metaAddr) / SLOT_SIZE
  }

  write (): Uint8Array {
    this.validateImage()
    const { image } = this
    const blobs = image.blobs
    const blobTableOffset = alignUp(DEVICE_TABLE_OFFSET + blobs.length * DEVICE_SLOT_SIZE, BLOCK_SIZE)
    const blobTableSize = blobs.length * BLOB_ENTRY_SIZE
    const prefetchOffset = blobTableOffset + blobTableSize
    const prefetchSize = image.prefetch.length * 4
    this.metaAddr = alignUp(prefetchOffset + prefetchSize, BLOCK_SIZE)
    // The root sits one block into the metadata area so that its nid is not 0, as nydus-image does.
    const alloc = new MetaAllocator(this.metaAddr + BLOCK_SIZE)
    this.layout(alloc)
    const rootNid = this.nid(image.root)
    if (rootNid > 0xffff) fail(`root nid ${rootNid} does not fit 16 bits`)

    // Chunk info table: one record per distinct chunk, ordered by digest as nydus-image orders them.
    const chunkRecords = new Map<string, RafsChunk>()
    const blobEnds = blobs.map(b => b.uncompressedSize)
    for (const plan of this.order) {
      for (const chunk of plan.chunkSlots ?? []) {
        if (chunk === undefined) continue
        const key = `${chunk.blobIndex}/${chunk.index}`
        const known = chunkRecords.get(key)
        if (known === undefined) chunkRecords.set(key, chunk)
        else if (known.uncompressedOffset !== chunk.uncompressedOffset || Buffer.compare(known.digest, chunk.digest) !== 0) {
          fail(`blob ${chunk.blobIndex} chunk ${chunk.index} appears with two different offsets or digests`)
        }
        blobEnds[chunk.blobIndex] = Math.max(blobEnds[chunk.blobIndex], chunk.uncompressedOffset + chunk.uncompressedSize)
      }
    }
    const chunkList = [...chunkRecords.values()].sort((a, b) => Buffer.compare(a.digest, b.digest) || a.blobIndex - b.blobIndex || a.index - b.index)
    const chunkTableOffset = alignUp(alloc.cursor, BLOCK_SIZE)
    const chunkTableSize = chunkList.length * CHUNK_INFO_SIZE
    const end = alignUp(chunkTableOffset + chunkTableSize, BLOCK_SIZE)

    const out = new Uint8Array(end)
    const view = new DataView(out.buffer)
    const u64 = (offset: number, value: number): void => view.setBigUint64(offset, BigInt(value), true)

    // Device slots: each blob is an EROFS device covering its uncompressed bytes.
    let mappedAddr = end
    let totalBlocks = 0
    blobs.forEach((blob, i) => {
      const o = DEVICE_TABLE_OFFSET + i * DEVICE_SLOT_SIZE
      const blocks = Math.ceil(blobEnds[i] / BLOCK_SIZE)
      if (blocks > 0xffffffff || totalBlocks + blocks > 0xffffffff) fail(`blob ${blob.blobId}: ${blocks} blocks overflow the 32-bit block count`)
      const mapped = alignUp(mappedAddr, DEVICE_MAP_ALIGNMENT) / BLOCK_SIZE
      out.set(encoder.encode(blob.blobId), o)
      view.setUint32(o + 64, blocks, true)
      view.setUint32(o + 68, mapped, true)
      mappedAddr = (mapped + blocks) * BLOCK_SIZE
      totalBlocks += blocks
    })

    blobs.forEach((blob, i) => this.writeBlobEntry(view, out, blobTableOffset + i * BLOB_ENTRY_SIZE, blob))

    image.prefetch.forEach((node, i) => {
      if (!this.plans.has(node)) fail(`prefetch entry ${i} is not in the tree`)
      view.setUint32(prefetchOffset + i * 4, this.nid(node), true)
    })

    for (const plan of this.order) this.writeInode(view, out, plan)

    chunkList.forEach((chunk, i) => {
      const o = chunkTableOffset + i * CHUNK_INFO_SIZE
      out.set(chunk.digest, o)
      view.setUint32(o + 32, chunk.blobIndex, true)
      view.setUint32(o + 36, chunk.compressed ? CHUNK_FLAG_COMPRESSED : 0, true)
      view.setUint32(o + 40, chunk.compressedSize, true)
      view.setUint32(o + 44, chunk.uncompressedSize, true)
      u64(o + 48, chunk.compressedOffset)
      u64(o + 56, chunk.uncompressedOffset)
      u64(o + 64, chunk.fileOffset)
      view.setUint32(o + 72, chunk.index, true)
    })

    // Superblock.
    const s = SUPER_OFFSET
    view.setUint32(s, EROFS_MAGIC, true)
    view.setUint32(s + 8, FEATURE_COMPAT_RAFS_V6, true)
    view.setUint8(s + 12, BLOCK_BITS)
    view.setUint16(s + 14, rootNid, true)
    u64(s + 16, this.order.length)
    u64(s + 24, this.buildTime)
    view.setUint32(s + 32, this.buildTimeNsec, true)
    // nydus-image stores the blob devices' block total here; EROFS uses it for statfs only.
    view.setUint32(s + 36, totalBlocks, true)
    view.setUint32(s + 40, this.metaAddr / BLOCK_SIZE, true)
    if (this.options.uuid !== undefined) out.set(this.options.uuid.subarray(0, 16), s + 48)
    if (this.options.volumeName !== undefined) out.set(encoder.encode(this.options.volumeName).subarray(0, 16), s + 64)
    view.setUint32(s + 80, FEATURE_INCOMPAT_CHUNKED_FILE | FEATURE_INCOMPAT_DEVICE_TABLE, true)
    view.setUint16(s + 86, blobs.length, true)
    view.setUint16(s + 88, DEVICE_TABLE_OFFSET / DEVICE_SLOT_SIZE, true)

    // Extended superblock.
    const inlinedDigests = blobs.length > 0 && blobs.every(b => (b.features & BLOB_FEATURE_INLINED_CHUNK_DIGEST) !== 0)
    const flags = flagOfCompressor(image.compressor) | flagOfDigester(image.digester) | FLAG_EXPLICIT_UID_GID |
      (this.hasXattr ? FLAG_HAS_XATTR : 0) | (inlinedDigests ? FLAG_INLINED_CHUNK_DIGEST : 0) | FLAG_ENCRYPTION_NONE
    const e = EXT_SUPER_OFFSET
    u64(e, flags)
    u64(e + 8, blobTableOffset)
    view.setUint32(e + 16, blobTableSize, true)
    view.setUint32(e + 20, image.chunkSize, true)
    u64(e + 24, chunkTableOffset)
    u64(e + 32, chunkTableSize)
    if (prefetchSize > 0) {
      u64(e + 40, prefetchOffset)
      view.setUint32(e + 48, prefetchSize, true)
    }
    return out
  }

  writeBlobEntry (view: DataView, out: Uint8Array, o: number, blob: RafsBlob): void {
    out.set(encoder.encode(blob.blobId), o)
    view.setUint32(o + 64, blob.index, true)
    view.setUint32(o + 68, blob.chunkSize, true)
    view.setUint32(o + 72, blob.chunkCount, true)
    view.setUint32(o + 76, codeOfCompressor(blob.compressor), true)
    view.setUint32(o + 80, codeOfDigester(blob.digester), true)
    // v6 chunks always sit at block-aligned uncompressed offsets; Nydus refuses blobs without the bit.
    view.setUint32(o + 84, (blob.features | BLOB_FEATURE_ALIGNED) >>> 0, true)
    view.setBigUint64(o + 88, BigInt(blob.compressedSize), true)
    view.setBigUint64(o + 96, BigInt(blob.uncompressedSize), true)
    const meta = blob.meta
    if (meta !== undefined) {
      view.setUint32(o + 104, meta.tocSize ?? 0, true)
      view.setUint32(o + 108, codeOfCompressor(meta.compressor), true)
      view.setBigUint64(o + 112, BigInt(meta.compressedOffset), true)
      view.setBigUint64(o + 120, BigInt(meta.compressedSize), true)
      view.setBigUint64(o + 128, BigInt(meta.uncompressedSize), true)
    }
  }

  writeInode (view: DataView, out: Uint8Array, plan: Plan): void {
    const { node, offset: o } = plan
    const xattrCount = plan.xattrs.length === 0 ? 0 : (plan.xattrs.length - XATTR_IBODY_HEADER_SIZE) / 4 + 1
    let size = node.size
    let union = 0
    if (node.type === 'directory' || node.type === 'symlink') {
      size = plan.dataSize
      union = plan.blockAddr
    } else if (node.type === 'file') {
      union = CHUNK_FORMAT_INDEXES | (plan.chunkBits ?? 0)
    } else if (node.type === 'char' || node.type === 'block') {
      union = node.rdev >>> 0
      size = 0
    } else {
      size = 0
    }
    view.setUint16(o, (plan.compact ? 0 : 1) | (plan.layout << 1), true)
    view.setUint16(o + 2, xattrCount, true)
    view.setUint16(o + 4, node.mode & 0xffff, true)
    if (plan.compact) {
      view.setUint16(o + 6, node.nlink, true)
      view.setUint32(o + 8, size, true)
      view.setUint32(o + 16, union, true)
      view.setUint32(o + 20, plan.ino, true)
      view.setUint16(o + 24, node.uid, true)
      view.setUint16(o + 26, node.gid, true)
    } else {
      view.setBigUint64(o + 8, BigInt(size), true)
      view.setUint32(o + 16, union, true)
      view.setUint32(o + 20, plan.ino, true)
      view.setUint32(o + 24, node.uid >>> 0, true)
      view.setUint32(o + 28, node.gid >>> 0, true)
      view.setBigUint64(o + 32, BigInt(node.mtime), true)
      view.setUint32(o + 40, node.mtimeNsec, true)
      view.setUint32(o + 44, node.nlink >>> 0, true)
    }
    const inodeSize = plan.compact ? COMPACT_INODE_SIZE : EXTENDED_INODE_SIZE
    out.set(plan.xattrs, o + inodeSize)

    if (node.type === 'directory') {
      const blocks = (plan.dirBlocks ?? []).map(entries => this.encodeDirBlock(entries))
      this.writeFlatData(out, plan, blocks)
    } else if (node.type === 'symlink') {
      const target = encoder.encode(node.target ?? '')
      const blocks: Uint8Array[] = []
      for (let at = 0; at < target.length; at += BLOCK_SIZE) blocks.push(target.subarray(at, at + BLOCK_SIZE))
      this.writeFlatData(out, plan, blocks)
    } else if (node.type === 'file') {
      const start = o + alignUp(plan.headerSize, CHUNK_ADDR_SIZE)
      ;(plan.chunkSlots ?? []).forEach((chunk, i) => {
        const at = start + i * CHUNK_ADDR_SIZE
        if (chunk === undefined) {
          view.setUint32(at + 4, NULL_ADDR, true)
          return
        }
        view.setUint16(at, chunk.index & 0xffff, true)
        view.setUint16(at + 2, ((chunk.blobIndex + 1) & 0xff) | ((chunk.index >>> 16) << 8), true)
        view.setUint32(at + 4, chunk.uncompressedOffset / BLOCK_SIZE, true)
      })
    }
  }

  /** Full blocks go to the inode's block address; a tail-packed last block follows the inode. */
  writeFlatData (out: Uint8Array, plan: Plan, blocks: Uint8Array[]): void {
    blocks.forEach((block, i) => {
      const isTail = plan.layout === LAYOUT_FLAT_INLINE && i === blocks.length - 1 && plan.dataSize % BLOCK_SIZE !== 0
      const at = isTail ? plan.offset + plan.headerSize : plan.blockAddr * BLOCK_SIZE + i * BLOCK_SIZE
      out.set(block, at)
    })
  }

  encodeDirBlock (entries: DirentOut[]): Uint8Array {
    const used = entries.reduce((sum, e) => sum + DIRENT_SIZE + e.name.length, 0)
    const block = new Uint8Array(used)
    const view = new DataView(block.buffer)
    let nameOffset = entries.length * DIRENT_SIZE
    entries.forEach((entry, i) => {
      const o = i * DIRENT_SIZE
      view.setBigUint64(o, BigInt(this.nid(entry.node)), true)
      view.setUint16(o + 8, nameOffset, true)
      view.setUint8(o + 10, FILE_TYPES[entry.node.type])
      block.set(entry.name, nameOffset)
      nameOffset += entry.name.length
    })
    return block
  }
}

/** Lays `image` out as a RAFS v6 bootstrap (block size 4096) that Nydus and Linux EROFS mount. */
export function writeBootstrapV6 (image: RafsImage, options: WriteBootstrapV6Options = {}): Uint8Array {
  return new V6Writer(image, options).write()
}
