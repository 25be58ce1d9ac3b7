/** Lower-case hex sha256 of a blob file; also its OCI layer digest without the `sha256:` prefix. */
export type BlobId = string

/** A content digest as OCI writes it: `sha256:<hex>`. */
export type Digest = `sha256:${string}`

export type Compressor = 'none' | 'lz4_block' | 'zstd' | 'gzip'
export type Digester = 'sha256' | 'blake3'

export interface AbortOptions {
  signal?: AbortSignal
}

/** Progress reported by long work instead of printing. */
export interface ProgressEvent<T extends string = string, D = unknown> {
  type: T
  detail: D
}

export interface ProgressOptions<E extends ProgressEvent = ProgressEvent> {
  onProgress?: (event: E) => void
}

/** Where one chunk lives inside one blob, and what its bytes must hash to. */
export interface ChunkRef {
  blobId: BlobId
  /** Index of the chunk inside its blob (its row in blob.meta). */
  index: number
  compressedOffset: number
  compressedSize: number
  uncompressedOffset: number
  uncompressedSize: number
  /** False when the chunk is stored as is although the blob has a compressor. */
  compressed: boolean
  compressor: Compressor
  digester: Digester
  /** Digest of the uncompressed bytes. */
  digest: Uint8Array
}

/**
 * Something that can produce the stored (compressed) bytes of chunks of a blob:
 * a local blob directory, the registry, a peer. Callers verify what comes back.
 */
export interface ChunkSource {
  readonly name: string
  /**
   * What getChunks returns: 'stored' (the default) is the chunk as it sits in the blob, to be
   * decoded with decodeChunkRef; 'uncompressed' is the chunk's uncompressed bytes, already checked
   * against its digest by the source. Callers still verify: an uncompressed chunk decodes with
   * decodeChunkRef(bytes, { ...ref, compressed: false, compressedSize: ref.uncompressedSize }).
   */
  readonly delivers?: 'stored' | 'uncompressed'
  /**
   * Returns the stored bytes of each requested chunk, in request order, or undefined for a
   * chunk the source does not have. Chunks passed together are adjacent in the blob when
   * the caller can arrange it, so a source may fetch them in one range.
   */
  getChunks(chunks: ChunkRef[], options?: AbortOptions): Promise<Array<Uint8Array | undefined>>
}

/** Reads byte ranges of whole blobs (a registry, a directory). */
export interface BlobBackend {
  readonly name: string
  /** Size of the blob in bytes; throws BlobNotFoundError when it is absent. */
  size(blobId: BlobId, options?: AbortOptions): Promise<number>
  /** Reads [offset, offset + length); throws BlobNotFoundError when it is absent. */
  read(blobId: BlobId, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array>
}

/**
 * What the swarm needs from the local chunk cache to serve peers. Only verified chunks are
 * ever in it, so whatever it returns may be sent as is.
 */
export interface ChunkStore {
  /** Whether chunk `index` of `blobId` is held. */
  has(blobId: BlobId, index: number, options?: AbortOptions): Promise<boolean>
  /**
   * Which chunks of `blobId` are held: bit i (byte i >> 3, bit i & 7, least significant first)
   * is set when chunk i is held. Undefined when no chunk of the blob is held.
   */
  bitmap(blobId: BlobId, options?: AbortOptions): Promise<Uint8Array | undefined>
  /** The uncompressed, verified bytes of chunk `index` of `blobId`, or undefined when not held. */
  getUncompressed(blobId: BlobId, index: number, options?: AbortOptions): Promise<Uint8Array | undefined>
}
