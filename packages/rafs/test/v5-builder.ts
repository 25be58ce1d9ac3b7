/**
 * A small RAFS v5 bootstrap writer for tests: just enough of the layout (v5.rs) to make images with
 * what the Nydus vectors lack (xattrs, devices, fifos, sockets, sparse files, compressed chunks,
 * several blobs, a prefetch table), and to make broken ones on purpose.
 */

export interface SynthChunk {
  blobIndex: number
  index: number
  digest?: Uint8Array
  flags?: number
  compressedOffset: number
  compressedSize: number
  uncompressedOffset: number
  uncompressedSize: number
  fileOffset: number
}

export interface SynthInode {
  ino: number
  parent: number
  mode: number
  name: string | Uint8Array
  size?: number
  nlink?: number
  uid?: number
  gid?: number
  rdev?: number
  mtime?: number
  mtimeNsec?: number
  /** Added to the flags the builder sets itself (SYMLINK, XATTR). */
  flags?: number
  target?: string
  xattrs?: Array<[string, Uint8Array]>
  childIndex?: number
  childCount?: number
  chunks?: SynthChunk[]
}

export interface SynthBlob { id: string, chunkCount: number, compressedSize: number, uncompressedSize: number, features?: number }

export interface SynthImage {
  flags: number
  chunkSize?: number
  inodesCount?: number
  blobs: SynthBlob[]
  /** Write the extended blob table (default true). */
  extended?: boolean
  /** Inodes in table order: the first is table index 1, the root. */
  inodes: SynthInode[]
  prefetch?: number[]
}

export interface SynthLayout {
  bytes: Uint8Array
  /** Byte offset of each table index's record (index 1 first). */
  recordOffsets: number[]
  inodeTableOffset: number
}

const encoder = new TextEncoder()
const align8 = (n: number): number => Math.ceil(n / 8) * 8

export const INODE_SIZE = 128
export const CHUNK_SIZE_ON_DISK = 80

/** Writes a 128-byte inode header at `at`. */
export function writeInodeHeader (bytes: Uint8Array, at: number, inode: SynthInode, nameSize: number, symlinkSize: number): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const size = inode.size ?? 0
  let flags = inode.flags ?? 0
  if (inode.target !== undefined) flags |= 0x1
  if (inode.xattrs !== undefined) flags |= 0x4
  dv.setBigUint64(at + 32, BigInt(inode.parent), true)
  dv.setBigUint64(at + 40, BigInt(inode.ino), true)
  dv.setUint32(at + 48, inode.uid ?? 0, true)
  dv.setUint32(at + 52, inode.gid ?? 0, true)
  dv.setUint32(at + 60, inode.mode, true)
  dv.setBigUint64(at + 64, BigInt(size), true)
  dv.setBigUint64(at + 72, BigInt(Math.ceil(size / 512)), true)
  dv.setBigUint64(at + 80, BigInt(flags), true)
  dv.setUint32(at + 88, inode.nlink ?? 1, true)
  dv.setUint32(at + 92, inode.childIndex ?? 0, true)
  dv.setUint32(at + 96, inode.chunks?.length ?? inode.childCount ?? 0, true)
  dv.setUint16(at + 100, nameSize, true)
  dv.setUint16(at + 102, symlinkSize, true)
  dv.setUint32(at + 104, inode.rdev ?? 0, true)
  dv.setUint32(at + 108, inode.mtimeNsec ?? 0, true)
  dv.setBigUint64(at + 112, BigInt(inode.mtime ?? 0), true)
}

function encodeRecord (inode: SynthInode): Uint8Array {
  const name = typeof inode.name === 'string' ? encoder.encode(inode.name) : inode.name
  const target = inode.target !== undefined ? encoder.encode(inode.target) : new Uint8Array(0)
  let xattrs = new Uint8Array(0)
  if (inode.xattrs !== undefined) {
    const pairs = inode.xattrs.map(([key, value]) => {
      const k = encoder.encode(key)
      const pair = new Uint8Array(4 + k.length + 1 + value.length)
      new DataView(pair.buffer).setUint32(0, k.length + 1 + value.length, true)
      pair.set(k, 4)
      pair.set(value, 4 + k.length + 1)
      return pair
    })
    const size = pairs.reduce((n, p) => n + p.length, 0)
    xattrs = new Uint8Array(8 + align8(size))
    new DataView(xattrs.buffer).setBigUint64(0, BigInt(size), true)
    let pos = 8
    for (const pair of pairs) { xattrs.set(pair, pos); pos += pair.length }
  }
  const chunks = inode.chunks ?? []
  const total = INODE_SIZE + align8(name.length) + align8(target.length) + xattrs.length + chunks.length * CHUNK_SIZE_ON_DISK
  const bytes = new Uint8Array(total)
  writeInodeHeader(bytes, 0, inode, name.length, target.length)
  let pos = INODE_SIZE
  bytes.set(name, pos); pos += align8(name.length)
  bytes.set(target, pos); pos += align8(target.length)
  bytes.set(xattrs, pos); pos += xattrs.length
  const dv = new DataView(bytes.buffer)
  for (const chunk of chunks) {
    if (chunk.digest !== undefined) bytes.set(chunk.digest, pos)
    dv.setUint32(pos + 32, chunk.blobIndex, true)
    dv.setUint32(pos + 36, chunk.flags ?? 0, true)
    dv.setUint32(pos + 40, chunk.compressedSize, true)
    dv.setUint32(pos + 44, chunk.uncompressedSize, true)
    dv.setBigUint64(pos + 48, BigInt(chunk.compressedOffset), true)
    dv.setBigUint64(pos + 56, BigInt(chunk.uncompressedOffset), true)
    dv.setBigUint64(pos + 64, BigInt(chunk.fileOffset), true)
    dv.setUint32(pos + 72, chunk.index, true)
    pos += CHUNK_SIZE_ON_DISK
  }
  return bytes
}

export function buildV5 (image: SynthImage): SynthLayout {
  const prefetch = image.prefetch ?? []
  const extended = image.extended ?? true
  const blobTable = image.blobs.map((blob, i) => {
    const id = encoder.encode(blob.id)
    const entry = new Uint8Array(8 + id.length + (i < image.blobs.length - 1 ? 1 : 0))
    entry.set(id, 8)
    return entry
  })
  const blobTableSize = blobTable.reduce((n, e) => n + e.length, 0)
  const records = image.inodes.map(encodeRecord)

  const inodeTableOffset = 8192
  const prefetchOffset = inodeTableOffset + align8(image.inodes.length * 4)
  const blobTableOffset = prefetchOffset + align8(prefetch.length * 4)
  const extOffset = blobTableOffset + align8(blobTableSize)
  let pos = extOffset + (extended ? image.blobs.length * 64 : 0)
  const recordOffsets = records.map(r => { const at = pos; pos += r.length; return at })

  const bytes = new Uint8Array(pos)
  const dv = new DataView(bytes.buffer)
  dv.setUint32(0, 0x52414653, true)
  dv.setUint32(4, 0x500, true)
  dv.setUint32(8, 8192, true)
  dv.setUint32(12, image.chunkSize ?? 0x1000, true)
  dv.setBigUint64(16, BigInt(image.flags), true)
  dv.setBigUint64(24, BigInt(image.inodesCount ?? image.inodes.length), true)
  dv.setBigUint64(32, BigInt(inodeTableOffset), true)
  dv.setBigUint64(40, BigInt(prefetchOffset), true)
  dv.setBigUint64(48, BigInt(blobTableOffset), true)
  dv.setUint32(56, image.inodes.length, true)
  dv.setUint32(60, prefetch.length, true)
  dv.setUint32(64, blobTableSize, true)
  dv.setUint32(68, extended ? image.blobs.length : 0, true)
  dv.setBigUint64(72, BigInt(extended ? extOffset : 0), true)

  recordOffsets.forEach((at, i) => dv.setUint32(inodeTableOffset + i * 4, at / 8, true))
  prefetch.forEach((ino, i) => dv.setUint32(prefetchOffset + i * 4, ino, true))
  let at = blobTableOffset
  for (const entry of blobTable) { bytes.set(entry, at); at += entry.length }
  if (extended) {
    image.blobs.forEach((blob, i) => {
      const e = extOffset + i * 64
      dv.setUint32(e, blob.chunkCount, true)
      dv.setUint32(e + 4, blob.features ?? 0, true)
      dv.setBigUint64(e + 8, BigInt(blob.uncompressedSize), true)
      dv.setBigUint64(e + 16, BigInt(blob.compressedSize), true)
    })
  }
  records.forEach((record, i) => bytes.set(record, recordOffsets[i]))
  return { bytes, recordOffsets, inodeTableOffset }
}
