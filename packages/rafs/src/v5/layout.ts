/**
 * The on-disk layout of a RAFS v5 bootstrap, as nydus-image writes it (rafs/src/metadata/layout/v5.rs).
 * All integers are little endian; every structure starts on an 8-byte boundary.
 *
 *   superblock (8192 bytes)
 *   inode table: u32 per child index, the record's byte offset >> 3 (index 1 is the root)
 *   prefetch table: u32 inode numbers, 0 ends it
 *   blob table: per blob u32 readahead offset, u32 readahead size, blob id, '\0' between entries
 *   extended blob table: 64 bytes per blob
 *   inode records: inode (128) | name | symlink target | xattrs | chunk infos (80 each, files only)
 */

export const RAFS_V5_MAGIC = 0x5241_4653
export const RAFS_V5_VERSION = 0x500
/** Version numbers this reader recognises only to say they are not v5. */
export const RAFS_V4_VERSION = 0x400
export const RAFS_V6_VERSION = 0x600

export const RAFS_V5_ALIGNMENT = 8
export const RAFS_V5_SUPERBLOCK_SIZE = 8192
export const RAFS_V5_INODE_SIZE = 128
export const RAFS_V5_CHUNK_INFO_SIZE = 80
export const RAFS_V5_EXT_BLOB_ENTRY_SIZE = 64
export const RAFS_V5_DIGEST_SIZE = 32
/** Child index of the root directory in the inode table (inode number 1 as well). */
export const RAFS_V5_ROOT_INDEX = 1

export const RAFS_V5_MIN_CHUNK_SIZE = 0x1000
export const RAFS_V5_MAX_CHUNK_SIZE = 16 << 20
/** Longest file name Linux allows; the builder never writes longer. */
export const RAFS_V5_MAX_NAME = 255

/** Superblock field offsets. */
export const SB = {
  magic: 0,
  version: 4,
  sbSize: 8,
  blockSize: 12,
  flags: 16,
  inodesCount: 24,
  inodeTableOffset: 32,
  prefetchTableOffset: 40,
  blobTableOffset: 48,
  inodeTableEntries: 56,
  prefetchTableEntries: 60,
  blobTableSize: 64,
  extendedBlobTableEntries: 68,
  extendedBlobTableOffset: 72
} as const

/** Superblock flags (RafsSuperFlags). */
export const RafsV5SuperFlags = {
  COMPRESSION_NONE: 0x0000_0001,
  COMPRESSION_LZ4: 0x0000_0002,
  HASH_BLAKE3: 0x0000_0004,
  HASH_SHA256: 0x0000_0008,
  EXPLICIT_UID_GID: 0x0000_0010,
  HAS_XATTR: 0x0000_0020,
  COMPRESSION_GZIP: 0x0000_0040,
  COMPRESSION_ZSTD: 0x0000_0080,
  INLINED_CHUNK_DIGEST: 0x0000_0100,
  TARTFS_MODE: 0x0000_0200,
  ENCRYPTION_NONE: 0x0100_0000,
  ENCRYPTION_AES_128_XTS: 0x0200_0000,
  /** Bits 26..31 are reserved by Nydus for compatible additions: accepted and ignored. */
  RESERVED_COMPAT: 0xfc00_0000
} as const

/** Every superblock flag bit Nydus defines; others make Nydus refuse the image, and so do we. */
export const RAFS_V5_KNOWN_SUPER_FLAGS = 0x0000_03ff | 0x0100_0000 | 0x0200_0000 | 0xfc00_0000

/** Inode record field offsets. */
export const INODE = {
  digest: 0,
  parent: 32,
  ino: 40,
  uid: 48,
  gid: 52,
  projid: 56,
  mode: 60,
  size: 64,
  blocks: 72,
  flags: 80,
  nlink: 88,
  childIndex: 92,
  childCount: 96,
  nameSize: 100,
  symlinkSize: 102,
  rdev: 104,
  mtimeNsec: 108,
  mtime: 112
} as const

/** Inode flags (RafsInodeFlags, a u64 of which only the low bits are defined). */
export const RafsV5InodeFlags = {
  SYMLINK: 0x1,
  HARDLINK: 0x2,
  XATTR: 0x4,
  HAS_HOLE: 0x8
} as const

/** Chunk info field offsets. */
export const CHUNK = {
  digest: 0,
  blobIndex: 32,
  flags: 36,
  compressedSize: 40,
  uncompressedSize: 44,
  compressedOffset: 48,
  uncompressedOffset: 56,
  fileOffset: 64,
  index: 72,
  crc32: 76
} as const

/** Chunk flags (BlobChunkFlags). */
export const RafsV5ChunkFlags = {
  COMPRESSED: 0x01,
  HOLE: 0x02,
  ENCRYPTED: 0x04,
  BATCH: 0x08,
  HAS_CRC32: 0x10
} as const

/** Extended blob table entry field offsets. */
export const EXT_BLOB = {
  chunkCount: 0,
  features: 4,
  uncompressedSize: 8,
  compressedSize: 16
} as const

export function alignV5 (size: number): number {
  // Arithmetic, not bit masks: sizes may exceed 2^31.
  return Math.ceil(size / RAFS_V5_ALIGNMENT) * RAFS_V5_ALIGNMENT
}
