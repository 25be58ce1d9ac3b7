/**
 * The in-memory model of a RAFS image, shared by the v5 and v6 readers, the v6 writer, and
 * every consumer (inspect, unpack, check, FUSE, the builder). A reader parses a bootstrap
 * into a `RafsImage`; the writer lays a `RafsImage` out as a v6 bootstrap.
 */
import type { Compressor, Digester } from '@shoal/interface'

export type { Compressor, Digester }

/** One data blob as the bootstrap's blob table names it. */
export interface RafsBlob {
  /** Position in the blob table; chunks refer to blobs by it. */
  index: number
  /** The blob id as stored: normally the sha256 hex of the blob file (its OCI layer digest). */
  blobId: string
  compressor: Compressor
  digester: Digester
  chunkSize: number
  chunkCount: number
  /** Bytes of chunk data in the blob file, compressed (blob.meta and ToC not included). */
  compressedSize: number
  /** Bytes of chunk data once every chunk is decompressed, in blob order. */
  uncompressedSize: number
  /** Where blob.meta (the compression info table) lives in the blob file, when the blob has one. */
  meta?: RafsBlobMetaLocation
  /** Raw feature bits as stored, for tools that print them. */
  features: number
}

export interface RafsBlobMetaLocation {
  /** Offset of the (possibly compressed) chunk info array in the blob file. */
  compressedOffset: number
  compressedSize: number
  /** Size of the chunk info array once decompressed. */
  uncompressedSize: number
  compressor: Compressor
  /** Bytes per chunk info entry: 16 (v1) or 24 (v2, with flags such as "stored uncompressed"). */
  entrySize: number
  /** Offset of the ToC in the blob file, when the blob has one. */
  tocOffset?: number
  tocSize?: number
  /** sha256 of the ToC with its tar header (a v6 blob table's blob_toc_digest), when known. */
  tocDigest?: Uint8Array
}

/** Where one chunk of one file lives. */
export interface RafsChunk {
  blobIndex: number
  /** Index of the chunk in its blob (its row in blob.meta). */
  index: number
  /** Digest of the uncompressed bytes, as the image's digester computes it. */
  digest: Uint8Array
  compressedOffset: number
  compressedSize: number
  uncompressedOffset: number
  uncompressedSize: number
  /** Offset of this chunk's first byte inside the file. */
  fileOffset: number
  /** False when the bytes are stored as is even though the blob has a compressor. */
  compressed: boolean
}

export type RafsNodeType = 'file' | 'directory' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket'

/**
 * One inode. Hard links are one RafsNode object reachable through several directory entries;
 * `nlink` is the link count as stored.
 */
export interface RafsNode {
  /** Inode number: v5's i_ino, v6's nid. Unique per inode, shared by hard links. */
  ino: number
  type: RafsNodeType
  /** Full st_mode: file type bits and permission bits. */
  mode: number
  uid: number
  gid: number
  /** File size in bytes; symlink target length for symlinks. */
  size: number
  mtime: number
  mtimeNsec: number
  nlink: number
  /** Device number (Linux new_encode_dev form as stored: major/minor) for char and block devices. */
  rdev: number
  /** Extended attributes by full name (`user.x`, `security.capability`, `trusted.overlay.opaque`). */
  xattrs: Map<string, Uint8Array>
  /** Symlink target. */
  target?: string
  /** Regular files: the chunks in file order; gaps between them are holes that read as zeros. */
  chunks?: RafsChunk[]
  /** Directories: the entries, excluding `.` and `..`, sorted by name (byte order). */
  entries?: RafsEntry[]
}

export interface RafsEntry {
  name: string
  node: RafsNode
}

export interface RafsImage {
  /** 5 or 6. */
  version: 5 | 6
  /** Image-wide defaults; each blob carries its own as well. */
  chunkSize: number
  compressor: Compressor
  digester: Digester
  /** Whether xattrs are present at all (v5 superblock flag; v6 always may). */
  blobs: RafsBlob[]
  root: RafsNode
  /** Inodes to prefetch first, in order. */
  prefetch: RafsNode[]
  /** Number of inodes as the superblock states it. */
  inodeCount: number
  /**
   * v5 only: false when the superblock says owners were not recorded (no EXPLICIT_UID_GID flag);
   * Nydus then reports the daemon's own uid and gid for every inode. Undefined: owners are stored.
   */
  explicitUidGid?: boolean
}

/**
 * Calls `visit` for every entry under `dir`, each directory before what it holds, with its path
 * from the image root ("/a/b"). Iterative, so a deep (or hostile) tree costs no stack.
 */
export function walk (dir: RafsNode, visit: (path: string, node: RafsNode, parent: RafsNode) => void): void {
  const pending: Array<{ dir: RafsNode, prefix: string }> = [{ dir, prefix: '' }]
  while (pending.length > 0) {
    const { dir, prefix } = pending.pop()!
    const entries = dir.entries ?? []
    for (const entry of entries) visit(`${prefix}/${entry.name}`, entry.node, dir)
    for (let i = entries.length - 1; i >= 0; i--) {
      const entry = entries[i]
      if (entry.node.type === 'directory') pending.push({ dir: entry.node, prefix: `${prefix}/${entry.name}` })
    }
  }
}

/** File-type bits of st_mode. */
export const S_IFMT = 0o170000
export const S_IFSOCK = 0o140000
export const S_IFLNK = 0o120000
export const S_IFREG = 0o100000
export const S_IFBLK = 0o060000
export const S_IFDIR = 0o040000
export const S_IFCHR = 0o020000
export const S_IFIFO = 0o010000

export function nodeTypeOfMode (mode: number): RafsNodeType | undefined {
  switch (mode & S_IFMT) {
    case S_IFREG: return 'file'
    case S_IFDIR: return 'directory'
    case S_IFLNK: return 'symlink'
    case S_IFCHR: return 'char'
    case S_IFBLK: return 'block'
    case S_IFIFO: return 'fifo'
    case S_IFSOCK: return 'socket'
    default: return undefined
  }
}
