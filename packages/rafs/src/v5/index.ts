/**
 * RAFS v5: the bootstrap format Nydus used before v6. Read only: Shoal writes v6.
 */
export { readBootstrapV5 } from './reader.js'
export {
  RAFS_V5_MAGIC, RAFS_V5_VERSION, RAFS_V5_SUPERBLOCK_SIZE, RAFS_V5_INODE_SIZE, RAFS_V5_CHUNK_INFO_SIZE,
  RAFS_V5_EXT_BLOB_ENTRY_SIZE, RAFS_V5_ROOT_INDEX, RafsV5SuperFlags, RafsV5InodeFlags, RafsV5ChunkFlags
} from './layout.js'
