import type { RafsImage, RafsNode } from './model.js'

export interface RafsImageStats {
  version: 5 | 6
  compressor: string
  digester: string
  chunkSize: number
  /** Inodes in the tree (hard links counted once). */
  inodes: number
  files: number
  directories: number
  symlinks: number
  /** Directory entries that are further names of a file already counted. */
  hardlinks: number
  /** Character and block devices, fifos and sockets. */
  specials: number
  /** Chunk references of all files, and distinct chunks among them. */
  chunkRefs: number
  chunks: number
  blobs: number
  /** Sum of regular file sizes (each inode once). */
  fileBytes: number
  /** Bytes of chunk data in the blobs: as stored, and decompressed. */
  compressedBytes: number
  uncompressedBytes: number
}

/** Counts what a bootstrap holds; walks the tree iteratively, each inode once. */
export function imageStats (image: RafsImage): RafsImageStats {
  const stats: RafsImageStats = {
    version: image.version,
    compressor: image.compressor,
    digester: image.digester,
    chunkSize: image.chunkSize,
    inodes: 1,
    files: 0,
    directories: 1,
    symlinks: 0,
    hardlinks: 0,
    specials: 0,
    chunkRefs: 0,
    chunks: 0,
    blobs: image.blobs.length,
    fileBytes: 0,
    compressedBytes: image.blobs.reduce((sum, b) => sum + b.compressedSize, 0),
    uncompressedBytes: image.blobs.reduce((sum, b) => sum + b.uncompressedSize, 0)
  }
  const seen = new Set<RafsNode>([image.root])
  const distinctChunks = new Set<string>()
  const pending: RafsNode[] = [image.root]
  while (pending.length > 0) {
    const dir = pending.pop()!
    for (const { node } of dir.entries ?? []) {
      if (seen.has(node)) {
        stats.hardlinks++
        continue
      }
      seen.add(node)
      stats.inodes++
      switch (node.type) {
        case 'directory':
          stats.directories++
          pending.push(node)
          break
        case 'file':
          stats.files++
          stats.fileBytes += node.size
          for (const chunk of node.chunks ?? []) {
            stats.chunkRefs++
            distinctChunks.add(`${chunk.blobIndex}:${chunk.index}:${chunk.compressedOffset}`)
          }
          break
        case 'symlink':
          stats.symlinks++
          break
        default:
          stats.specials++
      }
    }
  }
  stats.chunks = distinctChunks.size
  return stats
}
