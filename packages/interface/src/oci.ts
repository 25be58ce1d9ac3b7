/**
 * OCI image shapes (image spec v1.1 and Docker schema 2, as Shoal reads them), the media types and
 * annotations of Nydus images as nydusify writes them, and the ImageStore contract that a registry
 * repository and an OCI image layout both offer.
 */
import type { AbortOptions } from './types.js'

export const MEDIA_TYPE_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const MEDIA_TYPE_OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const MEDIA_TYPE_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
export const MEDIA_TYPE_DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
export const MEDIA_TYPE_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const MEDIA_TYPE_DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json'
export const MEDIA_TYPE_OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar'
export const MEDIA_TYPE_OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'
export const MEDIA_TYPE_OCI_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd'
export const MEDIA_TYPE_DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip'

export const MANIFEST_MEDIA_TYPES = [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST] as const
export const INDEX_MEDIA_TYPES = [MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST] as const
/** Sent as Accept on every manifest request, so a registry never falls back to schema 1. */
export const ALL_MANIFEST_MEDIA_TYPES = [...MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES]

/** A Nydus data blob layer (chunks, blob.meta, ToC); not a tar. */
export const MEDIA_TYPE_NYDUS_BLOB = 'application/vnd.oci.image.layer.nydus.blob.v1'
/** `"true"` on every Nydus blob layer. */
export const ANNOTATION_NYDUS_BLOB = 'containerd.io/snapshot/nydus-blob'
/** `"true"` on the bootstrap layer: a tar.gz holding NYDUS_BOOTSTRAP_PATH. */
export const ANNOTATION_NYDUS_BOOTSTRAP = 'containerd.io/snapshot/nydus-bootstrap'
/** RAFS version of the image, `"5"` or `"6"`: on the bootstrap layer and the manifest. */
export const ANNOTATION_NYDUS_FS_VERSION = 'containerd.io/snapshot/nydus-fs-version'
/** Manifest annotations nydusify adds: the builder, and the image converted from. */
export const ANNOTATION_NYDUS_BUILDER_VERSION = 'containerd.io/snapshot/nydus-builder-version'
export const ANNOTATION_NYDUS_SOURCE_DIGEST = 'containerd.io/snapshot/nydus-source-digest'
export const ANNOTATION_NYDUS_SOURCE_REFERENCE = 'containerd.io/snapshot/nydus-source-reference'
/** Path of the bootstrap inside the bootstrap layer's tar. */
export const NYDUS_BOOTSTRAP_PATH = 'image/image.boot'

/** The tag of a manifest in an OCI image layout's index.json. */
export const ANNOTATION_OCI_REF_NAME = 'org.opencontainers.image.ref.name'

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
  urls?: string[]
  platform?: Platform
  artifactType?: string
}

export interface Platform {
  architecture: string
  os: string
  variant?: string
  'os.version'?: string
  'os.features'?: string[]
}

export interface ImageManifest {
  schemaVersion: 2
  mediaType?: string
  artifactType?: string
  config: Descriptor
  layers: Descriptor[]
  subject?: Descriptor
  annotations?: Record<string, string>
}

export interface ImageIndex {
  schemaVersion: 2
  mediaType?: string
  manifests: Descriptor[]
  annotations?: Record<string, string>
}

/** The image config fields Shoal touches; everything else is carried over as it came. */
export interface ImageConfig {
  architecture?: string
  os?: string
  variant?: string
  created?: string
  config?: Record<string, unknown>
  rootfs: { type: 'layers', diff_ids: string[] }
  history?: Array<Record<string, unknown>>
  [key: string]: unknown
}

/** A manifest or index as stored: `digest` is over `bytes`, checked before it is returned. */
export interface StoredManifest {
  digest: string
  mediaType: string
  bytes: Uint8Array
  /** Parsed JSON of `bytes`. */
  json: unknown
}

export interface GetBlobStreamOptions extends AbortOptions {
  /** Expected size (from the descriptor): more bytes than this is an error. */
  size?: number
}

export interface PutBlobOptions extends AbortOptions {
  /** The blob's digest when known; computed otherwise and always checked. */
  digest?: string
  /** Stores that may hold the blob already: a store mounts from one of them when it can. */
  mountFrom?: ImageStore[]
}

export interface PutBlobResult {
  digest: string
  size: number
  /** It was there, it was mounted (linked) from another store, or its bytes were sent. */
  how: 'exists' | 'mounted' | 'uploaded'
}

/**
 * One place images live: a repository of a registry, or an OCI image layout directory. Manifests
 * are named by tag or digest; every whole manifest or blob returned is checked against its
 * digest (streams at their end: a consumer must discard what it made if the stream throws).
 * Range reads are not checked here: callers check chunk digests.
 */
export interface ImageStore {
  /** `docker://host/repo` or `oci:/path`, for messages. */
  readonly name: string
  /** A manifest or an index by tag or digest; throws ManifestNotFoundError when absent. */
  getManifest(tagOrDigest: string, options?: AbortOptions): Promise<StoredManifest>
  /** Stores a manifest under a tag (or only by digest when `tag` is undefined); returns its digest. */
  putManifest(tag: string | undefined, bytes: Uint8Array, mediaType: string, options?: AbortOptions): Promise<{ digest: string, size: number }>
  /** Size of the blob, or undefined when absent. */
  hasBlob(digest: string, options?: AbortOptions): Promise<number | undefined>
  /** The whole blob's bytes as they come; throws at the end when they do not hash to `digest`. */
  getBlobStream(digest: string, options?: GetBlobStreamOptions): AsyncIterable<Uint8Array>
  /** A whole blob in memory, at most `maxSize` bytes, digest checked. */
  getBlobBytes(digest: string, options?: AbortOptions & { maxSize?: number }): Promise<Uint8Array>
  /** Bytes [offset, offset + length) of a blob. */
  readBlob(digest: string, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array>
  /** Stores the file at `path` as a blob (skipped when present; mounted when another store allows). */
  putBlob(path: string, options?: PutBlobOptions): Promise<PutBlobResult>
  /**
   * Makes a blob of `from` present here without sending its bytes (a registry's cross-repository
   * mount); false when this store cannot. Absent on stores that never can.
   */
  mountBlob?(digest: string, from: ImageStore, options?: AbortOptions): Promise<boolean>
}
