import type { AbortOptions } from '@shoal/interface'
import type { RafsImage, RafsNode } from '@shoal/rafs'

/**
 * The part of `BlobDevice` (@shoal/blob-device) a mount needs. Declared here by shape so a mount
 * works over any read path that returns verified bytes: the real device, or a test double.
 */
export interface MountDevice {
  readonly image: RafsImage
  /** Bytes [offset, offset+length) of a regular file, holes as zeros, clipped at EOF; verified. */
  readFile: (node: RafsNode, offset: number, length: number, options?: AbortOptions) => Promise<Uint8Array>
  /** Bytes of a blob's uncompressed address space, zeros in gaps; verified. */
  readBlob: (blobIndex: number, offset: number, length: number, options?: AbortOptions) => Promise<Uint8Array>
  /** readFile straight into FUSE's reply buffer (resolves to the byte count); used when present. */
  readFileInto?: (node: RafsNode, offset: number, target: Uint8Array, options?: AbortOptions) => Promise<number>
  /** readBlob straight into FUSE's reply buffer (resolves to the byte count); used when present. */
  readBlobInto?: (blobIndex: number, offset: number, target: Uint8Array, options?: AbortOptions) => Promise<number>
  stats?: () => { bytesBySource: Record<string, number>, chunksBySource?: Record<string, number>, cacheHits?: number, cacheMisses?: number, errors?: Record<string, number> }
}

/** Where a mount reports what went wrong: a read that failed becomes EIO, and a line here. */
export interface MountLogger {
  (message: string): void
}
