/**
 * On-disk constants of RAFS v6: the EROFS structures (superblock, inodes, dirents, xattrs, chunk
 * indexes, device slots) and the Nydus additions after them (extended superblock, blob table,
 * chunk info table, prefetch table). Offsets are in bytes, little endian throughout.
 */
import type { Compressor, Digester } from '../model.js'

export const EROFS_MAGIC = 0xe0f5e1e2
export const SUPER_OFFSET = 1024
export const SUPER_SIZE = 128
export const EXT_SUPER_OFFSET = SUPER_OFFSET + SUPER_SIZE
export const EXT_SUPER_SIZE = 256
/** Where Nydus puts the EROFS device table: right after the extended superblock. */
export const DEVICE_TABLE_OFFSET = EXT_SUPER_OFFSET + EXT_SUPER_SIZE
export const DEVICE_SLOT_SIZE = 128
export const BLOB_ENTRY_SIZE = 256
export const CHUNK_INFO_SIZE = 80
export const CHUNK_ADDR_SIZE = 8
export const DIRENT_SIZE = 12
export const SLOT_SIZE = 32
export const COMPACT_INODE_SIZE = 32
export const EXTENDED_INODE_SIZE = 64
export const XATTR_IBODY_HEADER_SIZE = 12
export const XATTR_ENTRY_HEADER_SIZE = 4
export const BLOCK_SIZE = 4096
export const BLOCK_BITS = 12
export const NAME_MAX = 255
/** A chunk index whose block address is this is a hole. */
export const NULL_ADDR = 0xffffffff
export const MAX_BLOBS = 255
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024
export const MAX_CHUNK_INDEX = 0xffffff
/** nydus-image spreads the devices' mapped block addresses on 512 KiB boundaries. */
export const DEVICE_MAP_ALIGNMENT = 512 * 1024

// superblock feature bits
export const FEATURE_COMPAT_SB_CHKSUM = 0x1
export const FEATURE_COMPAT_RAFS_V6 = 0x40000000
export const FEATURE_INCOMPAT_ZERO_PADDING = 0x1
export const FEATURE_INCOMPAT_CHUNKED_FILE = 0x4
export const FEATURE_INCOMPAT_DEVICE_TABLE = 0x8
/** Incompatible features this reader understands; anything else changes the layout. */
export const FEATURE_INCOMPAT_KNOWN = FEATURE_INCOMPAT_ZERO_PADDING | FEATURE_INCOMPAT_CHUNKED_FILE | FEATURE_INCOMPAT_DEVICE_TABLE

// inode i_format
export const INODE_VERSION_MASK = 0x1
export const LAYOUT_FLAT_PLAIN = 0
export const LAYOUT_FLAT_INLINE = 2
export const LAYOUT_CHUNK_BASED = 4
export const CHUNK_FORMAT_BLKBITS_MASK = 0x1f
export const CHUNK_FORMAT_INDEXES = 0x20

// dirent file types
export const FT_UNKNOWN = 0
export const FT_REG_FILE = 1
export const FT_DIR = 2
export const FT_CHRDEV = 3
export const FT_BLKDEV = 4
export const FT_FIFO = 5
export const FT_SOCK = 6
export const FT_SYMLINK = 7

// RafsSuperFlags of the extended superblock
export const FLAG_COMPRESSION_NONE = 0x1
export const FLAG_COMPRESSION_LZ4 = 0x2
export const FLAG_HASH_BLAKE3 = 0x4
export const FLAG_HASH_SHA256 = 0x8
export const FLAG_EXPLICIT_UID_GID = 0x10
export const FLAG_HAS_XATTR = 0x20
export const FLAG_COMPRESSION_GZIP = 0x40
export const FLAG_COMPRESSION_ZSTD = 0x80
export const FLAG_INLINED_CHUNK_DIGEST = 0x100
export const FLAG_TARFS_MODE = 0x200
export const FLAG_ENCRYPTION_NONE = 0x01000000

// blob features
export const BLOB_FEATURE_ALIGNED = 0x1
export const BLOB_FEATURE_CHUNK_INFO_V2 = 0x4
export const BLOB_FEATURE_INLINED_CHUNK_DIGEST = 0x20

// chunk info flags
export const CHUNK_FLAG_COMPRESSED = 0x1

const COMPRESSOR_CODES: Compressor[] = ['none', 'lz4_block', 'gzip', 'zstd']
const DIGESTER_CODES: Digester[] = ['blake3', 'sha256']

export function compressorOfCode (code: number): Compressor | undefined {
  return COMPRESSOR_CODES[code]
}

export function codeOfCompressor (compressor: Compressor): number {
  return COMPRESSOR_CODES.indexOf(compressor)
}

export function digesterOfCode (code: number): Digester | undefined {
  return DIGESTER_CODES[code]
}

export function codeOfDigester (digester: Digester): number {
  return DIGESTER_CODES.indexOf(digester)
}

const COMPRESSOR_FLAGS: Array<[number, Compressor]> = [
  [FLAG_COMPRESSION_NONE, 'none'],
  [FLAG_COMPRESSION_LZ4, 'lz4_block'],
  [FLAG_COMPRESSION_GZIP, 'gzip'],
  [FLAG_COMPRESSION_ZSTD, 'zstd']
]
const DIGESTER_FLAGS: Array<[number, Digester]> = [
  [FLAG_HASH_BLAKE3, 'blake3'],
  [FLAG_HASH_SHA256, 'sha256']
]

/** The one compressor the flags name, or undefined when they name none or several. */
export function compressorOfFlags (flags: number): Compressor | undefined {
  const named = COMPRESSOR_FLAGS.filter(([bit]) => (flags & bit) !== 0)
  return named.length === 1 ? named[0][1] : undefined
}

export function digesterOfFlags (flags: number): Digester | undefined {
  const named = DIGESTER_FLAGS.filter(([bit]) => (flags & bit) !== 0)
  return named.length === 1 ? named[0][1] : undefined
}

export function flagOfCompressor (compressor: Compressor): number {
  return COMPRESSOR_FLAGS.find(([, c]) => c === compressor)?.[0] ?? 0
}

export function flagOfDigester (digester: Digester): number {
  return DIGESTER_FLAGS.find(([, d]) => d === digester)?.[0] ?? 0
}

/**
 * EROFS xattr name indexes: the entry stores the index and the rest of the name. The two POSIX
 * ACL names are whole names (their entries carry an empty suffix).
 */
export const XATTR_PREFIXES: ReadonlyArray<{ index: number, prefix: string, whole: boolean }> = [
  { index: 1, prefix: 'user.', whole: false },
  { index: 2, prefix: 'system.posix_acl_access', whole: true },
  { index: 3, prefix: 'system.posix_acl_default', whole: true },
  { index: 4, prefix: 'trusted.', whole: false },
  { index: 5, prefix: 'lustre.', whole: false },
  { index: 6, prefix: 'security.', whole: false }
]

export function alignUp (value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment
}

/** Bytes taken by the inline xattr area whose i_xattr_icount is `count`. */
export function xattrAreaSize (count: number): number {
  return count === 0 ? 0 : XATTR_IBODY_HEADER_SIZE + (count - 1) * 4
}
