import { once } from 'node:events'
import { createReadStream } from 'node:fs'
import { open, rename, rm, stat } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import type { Writable } from 'node:stream'
import { BlobNotFoundError, InvalidArgumentError, ManifestNotFoundError, throwIfAborted } from '@shoal/interface'
import type { AbortOptions, BlobBackend, ProgressEvent, ProgressOptions } from '@shoal/interface'
import { BlobRangeError, DigestMismatchError, PlatformNotFoundError, RegistryError, RegistryProtocolError } from './errors.js'
import { computeDigest, digestAlgorithm, digestHasher, digestOfFile, isDigest } from './digest.js'
import { ConnectionLostError, readCapped, redact, RegistryTransport } from './http.js'
import type { TransportInit } from './http.js'
import { ALL_MANIFEST_MEDIA_TYPES, formatPlatform, isIndexMediaType, isManifestMediaType, parsePlatform, selectPlatform } from './manifest.js'
import type { ImageIndex, ImageManifest, Platform } from './manifest.js'
import { formatImageReference, manifestReference, parseImageReference } from './reference.js'
import type { ImageReference, RepositoryLocation } from './reference.js'

export interface RegistryInit extends TransportInit {
  /** Platform picked from an image index: `os/arch[/variant]` or an object. Default linux/amd64. */
  platform?: string | Platform
  /** Blobs bigger than this are uploaded in PATCH chunks of this size. Default 64 MiB. */
  uploadChunkSize?: number
  /** Largest manifest accepted. Default 4 MiB, distribution's own limit. */
  maxManifestBytes?: number
}

export type RegistryProgressEvent =
  ProgressEvent<'registry:blob:download', { digest: string, bytes: number, size?: number }> |
  ProgressEvent<'registry:blob:upload', { digest: string, bytes: number, size: number }>

export interface RegistryCallOptions extends AbortOptions, ProgressOptions<RegistryProgressEvent> {}

export interface GetManifestOptions extends AbortOptions {
  /** Accept header media types; default every OCI and Docker schema 2 manifest and index type. */
  accept?: string[]
}

export interface FetchedManifest {
  reference: ImageReference
  /** Digest of `bytes`, checked against the reference's digest or the registry's Docker-Content-Digest. */
  digest: string
  mediaType: string
  /** The manifest exactly as served: its digest is over these bytes. */
  bytes: Uint8Array
  /** Parsed JSON of `bytes`. */
  json: unknown
}

export interface ResolvedImage {
  reference: ImageReference
  digest: string
  mediaType: string
  bytes: Uint8Array
  manifest: ImageManifest
  /** The index the manifest was selected from, when the reference named an index. */
  index?: { digest: string, mediaType: string, bytes: Uint8Array, index: ImageIndex }
}

export interface ResolveImageOptions extends AbortOptions {
  /** Overrides the client's platform for this call. */
  platform?: string | Platform
}

export interface ManifestHead {
  digest: string
  mediaType: string
  size: number
}

export interface BlobHead {
  size: number
}

/**
 * Where downloaded blob bytes go: a file path (written whole or not at all) or a Node Writable
 * (written as bytes arrive, not ended: the caller owns it and discards it if the call fails).
 */
export type BlobSink = string | Writable

export interface GetBlobOptions extends RegistryCallOptions {
  /** Expected size (from the descriptor): more bytes than this is an error, not a fill of the disk. */
  size?: number
}

/** A blob to upload: bytes in memory, or a file read in place. */
export type BlobSource = Uint8Array | { path: string }

export interface PushBlobOptions extends RegistryCallOptions {
  /** The blob's digest when known; computed otherwise. The registry checks it too. */
  digest?: string
  /** Repositories in the same registry that may hold the blob already: mounted instead of uploaded. */
  mountFrom?: string[]
  /** Overrides the client's upload chunk size for this blob. */
  chunkSize?: number
}

export interface PushBlobResult {
  digest: string
  size: number
  /** How it got there: it was there, mounted from another repository, or uploaded. */
  how: 'exists' | 'mounted' | 'monolithic' | 'chunked'
}

export interface PushManifestResult {
  digest: string
  size: number
}

/** Reference or location as a string (`docker://host/repo:tag`) or already parsed. */
export type ReferenceLike = string | ImageReference
export type LocationLike = string | RepositoryLocation

/** An OCI distribution client speaking to any number of registries. */
export interface RegistryClient {
  /** GET /v2/: the registry speaks the v2 API and (with credentials, if any) lets us in. */
  ping(registry: string, options?: AbortOptions): Promise<void>
  /** A manifest or index by tag or digest, verified against its digest. */
  getManifest(reference: ReferenceLike, options?: GetManifestOptions): Promise<FetchedManifest>
  /** The image manifest for the platform: follows an index to the matching entry. */
  resolveImage(reference: ReferenceLike, options?: ResolveImageOptions): Promise<ResolvedImage>
  /** HEAD of a manifest; undefined when absent. */
  headManifest(reference: ReferenceLike, options?: AbortOptions): Promise<ManifestHead | undefined>
  /** PUT a manifest under the reference's tag (or its digest); returns the digest. */
  putManifest(reference: ReferenceLike, manifest: Uint8Array | object, mediaType?: string, options?: AbortOptions): Promise<PushManifestResult>
  /** HEAD of a blob; undefined when absent. */
  headBlob(location: LocationLike, digest: string, options?: AbortOptions): Promise<BlobHead | undefined>
  /** Streams a whole blob into `sink`, checking its digest; resumes with Range after a cut connection. */
  getBlob(location: LocationLike, digest: string, sink: BlobSink, options?: GetBlobOptions): Promise<{ size: number }>
  /** A whole blob in memory (configs, bootstrap layers), at most `maxSize` bytes, digest checked. */
  getBlobBytes(location: LocationLike, digest: string, options?: AbortOptions & { maxSize?: number }): Promise<Uint8Array>
  /** Bytes [offset, offset + length) of a blob by a Range request. Not digest-checked: callers check chunk digests. */
  readBlob(location: LocationLike, digest: string, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array>
  /** Uploads a blob unless it is there or can be mounted; monolithic or chunked by size. */
  pushBlob(location: LocationLike, source: BlobSource, options?: PushBlobOptions): Promise<PushBlobResult>
  /** Mounts a blob from another repository of the same registry; false when the registry would not. */
  mountBlob(location: LocationLike, digest: string, from: string, options?: AbortOptions): Promise<boolean>
  /** The BlobBackend contract over one repository (blob ids are sha256 hex). */
  blobBackend(location: LocationLike): BlobBackend
}

const DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024
const DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
const DEFAULT_MAX_BLOB_BYTES_IN_MEMORY = 64 * 1024 * 1024
/** One Range read is for chunks, not whole blobs: refuse to allocate more than this at once. */
const MAX_RANGE_READ_BYTES = 512 * 1024 * 1024

export function registry (init: RegistryInit = {}): RegistryClient {
  return new DistributionClient(init)
}

class DistributionClient implements RegistryClient {
  private readonly transport: RegistryTransport
  private readonly platform: Platform
  private readonly chunkSize: number
  private readonly maxManifestBytes: number

  constructor (init: RegistryInit) {
    this.transport = new RegistryTransport(init)
    this.platform = toPlatform(init.platform ?? 'linux/amd64')
    this.chunkSize = positiveInteger(init.uploadChunkSize ?? DEFAULT_CHUNK_SIZE, 'uploadChunkSize')
    this.maxManifestBytes = init.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES
  }

  async ping (registry: string, options: AbortOptions = {}): Promise<void> {
    await this.transport.withRetries(`GET ${this.transport.baseUrl(registry)}/v2/`, options, async () => {
      const response = await this.transport.request({ method: 'GET', registry, url: '/v2/', expect: [200], signal: options.signal })
      await response.body?.cancel().catch(() => {})
    })
  }

  async getManifest (referenceLike: ReferenceLike, options: GetManifestOptions = {}): Promise<FetchedManifest> {
    const reference = toReference(referenceLike)
    const tagOrDigest = manifestReference(reference)
    const path = `/v2/${reference.repository}/manifests/${tagOrDigest}`
    const url = this.url(reference.registry, path)
    return await this.transport.withRetries(`GET ${url}`, options, async () => {
      const response = await this.transport.request({
        method: 'GET',
        registry: reference.registry,
        url: path,
        scopes: [pullScope(reference)],
        headers: { accept: (options.accept ?? ALL_MANIFEST_MEDIA_TYPES).join(', ') },
        expect: [200],
        notFound: () => new ManifestNotFoundError(tagOrDigest, `${reference.registry}/${reference.repository}`),
        signal: options.signal
      })
      const bytes = await readCapped(response, this.maxManifestBytes, `manifest ${formatImageReference(reference)}`)
      const claimed = response.headers.get('docker-content-digest')
      const expected = reference.digest ?? (claimed != null && isDigest(claimed) ? claimed : undefined)
      const digest = computeDigest(bytes, expected != null ? digestAlgorithm(expected) : 'sha256')
      if (expected != null && digest !== expected) throw new DigestMismatchError(expected, digest, url)
      const json = parseJson(bytes, `manifest from ${url}`)
      const declared = (json as { mediaType?: unknown }).mediaType
      const mediaType = typeof declared === 'string' ? declared : contentType(response) ?? ''
      return { reference, digest, mediaType, bytes, json }
    })
  }

  async resolveImage (referenceLike: ReferenceLike, options: ResolveImageOptions = {}): Promise<ResolvedImage> {
    const reference = toReference(referenceLike)
    const platform = options.platform != null ? toPlatform(options.platform) : this.platform
    let fetched = await this.getManifest(reference, options)
    let index: ResolvedImage['index']
    // Indexes nest at most once in practice; two levels are followed, no more.
    for (let depth = 0; depth < 2 && isIndexMediaType(fetched.mediaType); depth++) {
      const parsed = asIndex(fetched)
      index = { digest: fetched.digest, mediaType: fetched.mediaType, bytes: fetched.bytes, index: parsed }
      const entry = selectPlatform(parsed, platform)
      if (entry == null) {
        const available = parsed.manifests.filter(d => d.platform != null).map(d => formatPlatform(d.platform as Platform))
        throw new PlatformNotFoundError(formatPlatform(platform), available, formatImageReference(reference))
      }
      fetched = await this.getManifest({ registry: reference.registry, repository: reference.repository, digest: entry.digest }, options)
    }
    if (!isManifestMediaType(fetched.mediaType)) {
      throw new RegistryProtocolError(`${formatImageReference(fetched.reference)} is a ${fetched.mediaType === '' ? 'manifest without media type' : fetched.mediaType}, not an image manifest`)
    }
    return { reference, digest: fetched.digest, mediaType: fetched.mediaType, bytes: fetched.bytes, manifest: asManifest(fetched), ...(index != null ? { index } : {}) }
  }

  async headManifest (referenceLike: ReferenceLike, options: AbortOptions = {}): Promise<ManifestHead | undefined> {
    const reference = toReference(referenceLike)
    const path = `/v2/${reference.repository}/manifests/${manifestReference(reference)}`
    const head = await this.transport.withRetries(`HEAD ${this.url(reference.registry, path)}`, options, async () => {
      const response = await this.transport.request({
        method: 'HEAD',
        registry: reference.registry,
        url: path,
        scopes: [pullScope(reference)],
        headers: { accept: ALL_MANIFEST_MEDIA_TYPES.join(', ') },
        expect: [200, 404],
        signal: options.signal
      })
      if (response.status === 404) return undefined
      const size = Number(response.headers.get('content-length'))
      const claimed = response.headers.get('docker-content-digest')
      return {
        digest: claimed != null && isDigest(claimed) ? claimed : reference.digest,
        mediaType: contentType(response) ?? '',
        size: Number.isSafeInteger(size) ? size : -1
      }
    })
    if (head == null) return undefined
    if (head.digest != null && head.size >= 0) return { digest: head.digest, mediaType: head.mediaType, size: head.size }
    // A registry that leaves out the digest or size on HEAD: learn them from the bytes.
    const fetched = await this.getManifest(reference, options)
    return { digest: fetched.digest, mediaType: fetched.mediaType, size: fetched.bytes.byteLength }
  }

  async putManifest (referenceLike: ReferenceLike, manifest: Uint8Array | object, mediaType?: string, options: AbortOptions = {}): Promise<PushManifestResult> {
    const reference = toReference(referenceLike)
    const bytes = manifest instanceof Uint8Array ? manifest : Buffer.from(JSON.stringify(manifest), 'utf8')
    if (bytes.byteLength > this.maxManifestBytes) {
      throw new InvalidArgumentError(`manifest for ${formatImageReference(reference)} is ${bytes.byteLength} bytes, more than the ${this.maxManifestBytes} registries accept`)
    }
    const json = parseJson(bytes, `manifest for ${formatImageReference(reference)}`)
    const declared = (json as { mediaType?: unknown }).mediaType
    const type = mediaType ?? (typeof declared === 'string' ? declared : undefined)
    if (type == null) throw new InvalidArgumentError(`manifest for ${formatImageReference(reference)} has no mediaType and none was given`)
    const digest = computeDigest(bytes, reference.digest != null ? digestAlgorithm(reference.digest) : 'sha256')
    if (reference.digest != null && reference.digest !== digest) {
      throw new InvalidArgumentError(`manifest bytes have digest ${digest}, but the reference names ${reference.digest}`)
    }
    const path = `/v2/${reference.repository}/manifests/${reference.tag ?? digest}`
    const url = this.url(reference.registry, path)
    await this.transport.withRetries(`PUT ${url}`, options, async () => {
      const response = await this.transport.request({
        method: 'PUT',
        registry: reference.registry,
        url: path,
        scopes: [pushScope(reference)],
        headers: { 'content-type': type },
        body: bytes,
        expect: [201],
        signal: options.signal
      })
      await response.body?.cancel().catch(() => {})
      const claimed = response.headers.get('docker-content-digest')
      if (claimed != null && isDigest(claimed) && digestAlgorithm(claimed) === digestAlgorithm(digest) && claimed !== digest) {
        throw new DigestMismatchError(digest, claimed, url)
      }
    })
    return { digest, size: bytes.byteLength }
  }

  async headBlob (locationLike: LocationLike, digest: string, options: AbortOptions = {}): Promise<BlobHead | undefined> {
    const location = toLocation(locationLike)
    digestAlgorithm(digest)
    const path = `/v2/${location.repository}/blobs/${digest}`
    return await this.transport.withRetries(`HEAD ${this.url(location.registry, path)}`, options, async () => {
      const response = await this.transport.request({
        method: 'HEAD', registry: location.registry, url: path, scopes: [pullScope(location)], expect: [200, 404], signal: options.signal
      })
      if (response.status === 404) return undefined
      const size = Number(response.headers.get('content-length') ?? NaN)
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new RegistryProtocolError(`HEAD ${this.url(location.registry, path)}: no usable Content-Length (${response.headers.get('content-length') ?? 'none'})`)
      }
      return { size }
    })
  }

  async getBlob (locationLike: LocationLike, digest: string, sink: BlobSink, options: GetBlobOptions = {}): Promise<{ size: number }> {
    const location = toLocation(locationLike)
    const hash = digestHasher(digestAlgorithm(digest))
    const path = `/v2/${location.repository}/blobs/${digest}`
    const url = this.url(location.registry, path)
    const output = await openSink(sink)
    let received = 0
    try {
      await this.transport.withRetries(`GET ${url}`, options, async () => {
        // After a cut connection, ask only for what is missing; the hash carries on where it was.
        const response = await this.transport.request({
          method: 'GET',
          registry: location.registry,
          url: path,
          scopes: [pullScope(location)],
          headers: received > 0 ? { range: `bytes=${received}-` } : {},
          expect: [200, 206],
          notFound: () => new BlobNotFoundError(digest, `${location.registry}/${location.repository}`),
          signal: options.signal
        })
        let skip = 0
        if (received > 0) {
          if (response.status === 206) {
            const range = parseContentRange(response.headers.get('content-range'))
            if (range == null || range.start !== received) {
              await response.body?.cancel().catch(() => {})
              throw new RegistryProtocolError(`GET ${url} with Range from ${received}: Content-Range ${response.headers.get('content-range') ?? 'missing'}`)
            }
          } else {
            skip = received
          }
        } else if (response.status === 206) {
          await response.body?.cancel().catch(() => {})
          throw new RegistryProtocolError(`GET ${url} without Range answered 206`)
        }
        if (response.body == null) return
        for await (const chunk of response.body) {
          let piece: Uint8Array = chunk
          if (skip > 0) {
            if (piece.byteLength <= skip) { skip -= piece.byteLength; continue }
            piece = piece.subarray(skip)
            skip = 0
          }
          if (options.size != null && received + piece.byteLength > options.size) {
            await response.body.cancel().catch(() => {})
            throw new DigestMismatchError(digest, `(more than the expected ${options.size} bytes)`, url)
          }
          hash.update(piece)
          await output.write(piece, options)
          received += piece.byteLength
          options.onProgress?.({ type: 'registry:blob:download', detail: { digest, bytes: received, ...(options.size != null ? { size: options.size } : {}) } })
        }
        if (skip > 0) throw new ConnectionLostError(`GET ${url}: the body ended before the ${received} bytes already received`)
      })
      const actual = `${digestAlgorithm(digest)}:${hash.digest('hex')}`
      if (actual !== digest) throw new DigestMismatchError(digest, actual, url)
      await output.commit()
      return { size: received }
    } catch (err) {
      await output.abandon()
      throw err
    }
  }

  async getBlobBytes (locationLike: LocationLike, digest: string, options: AbortOptions & { maxSize?: number } = {}): Promise<Uint8Array> {
    const location = toLocation(locationLike)
    const algorithm = digestAlgorithm(digest)
    const path = `/v2/${location.repository}/blobs/${digest}`
    const url = this.url(location.registry, path)
    return await this.transport.withRetries(`GET ${url}`, options, async () => {
      const response = await this.transport.request({
        method: 'GET',
        registry: location.registry,
        url: path,
        scopes: [pullScope(location)],
        expect: [200],
        notFound: () => new BlobNotFoundError(digest, `${location.registry}/${location.repository}`),
        signal: options.signal
      })
      const bytes = await readCapped(response, options.maxSize ?? DEFAULT_MAX_BLOB_BYTES_IN_MEMORY, `blob ${digest} from ${url}`)
      const actual = computeDigest(bytes, algorithm)
      if (actual !== digest) throw new DigestMismatchError(digest, actual, url)
      return bytes
    })
  }

  async readBlob (locationLike: LocationLike, digest: string, offset: number, length: number, options: AbortOptions = {}): Promise<Uint8Array> {
    const location = toLocation(locationLike)
    digestAlgorithm(digest)
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidArgumentError(`offset ${offset} is not a non-negative integer`)
    if (!Number.isSafeInteger(length) || length < 0 || length > MAX_RANGE_READ_BYTES) {
      throw new InvalidArgumentError(`length ${length} is not an integer from 0 to ${MAX_RANGE_READ_BYTES}`)
    }
    throwIfAborted(options)
    if (length === 0) return new Uint8Array(0)
    const path = `/v2/${location.repository}/blobs/${digest}`
    const url = this.url(location.registry, path)
    const last = offset + length - 1
    return await this.transport.withRetries(`GET ${url} bytes=${offset}-${last}`, options, async () => {
      const response = await this.transport.request({
        method: 'GET',
        registry: location.registry,
        url: path,
        scopes: [pullScope(location)],
        headers: { range: `bytes=${offset}-${last}` },
        expect: [200, 206, 416],
        notFound: () => new BlobNotFoundError(digest, `${location.registry}/${location.repository}`),
        signal: options.signal
      })
      if (response.status === 416) {
        await response.body?.cancel().catch(() => {})
        const unsatisfied = /^bytes \*\/(\d+)$/.exec(response.headers.get('content-range') ?? '')
        throw new BlobRangeError(digest, offset, length, unsatisfied != null ? Number(unsatisfied[1]) : undefined, url)
      }
      const out = new Uint8Array(length)
      if (response.status === 206) {
        const range = parseContentRange(response.headers.get('content-range'))
        if (range == null || range.start !== offset || range.end > last) {
          await response.body?.cancel().catch(() => {})
          throw new RegistryProtocolError(`GET ${url} asked bytes=${offset}-${last}, got Content-Range ${response.headers.get('content-range') ?? 'missing'}`)
        }
        if (range.end < last) {
          await response.body?.cancel().catch(() => {})
          throw new BlobRangeError(digest, offset, length, range.total, url)
        }
        const filled = await fillFrom(response, out, 0)
        if (filled < length) throw new ConnectionLostError(`GET ${url} bytes=${offset}-${last}: body ended after ${filled} of ${length} bytes`)
        return out
      }
      // The registry ignored Range and sends the whole blob: skip to the offset, take what is
      // asked, and hang up rather than download the rest.
      const filled = await fillFrom(response, out, offset)
      if (filled < length) throw new BlobRangeError(digest, offset, length, offset + filled, url)
      return out
    })
  }

  async pushBlob (locationLike: LocationLike, source: BlobSource, options: PushBlobOptions = {}): Promise<PushBlobResult> {
    const location = toLocation(locationLike)
    throwIfAborted(options)
    const blob = await openSource(source, options)
    const digest = options.digest ?? blob.digest ?? (await blob.computeDigest(options))
    digestAlgorithm(digest)
    const size = blob.size

    const existing = await this.headBlob(location, digest, options)
    if (existing != null) {
      if (existing.size !== size) {
        throw new RegistryProtocolError(`blob ${digest} exists in ${location.registry}/${location.repository} with size ${existing.size}, but the local one is ${size} bytes`)
      }
      return { digest, size, how: 'exists' }
    }

    // A refused mount still opens an upload session; the first one is used for the upload.
    let session: string | undefined
    for (const from of (options.mountFrom ?? []).slice(0, 16)) {
      if (from === location.repository) continue
      const mounted = await this.startUpload(location, options, { digest, from })
      if (mounted.mounted) return { digest, size, how: 'mounted' }
      if (session == null) session = mounted.location
      else await this.cancelUpload(location, mounted.location, options)
    }

    const chunkSize = positiveInteger(options.chunkSize ?? this.chunkSize, 'chunkSize')
    if (size <= chunkSize) {
      await this.uploadMonolithic(location, blob, digest, session, options)
      return { digest, size, how: 'monolithic' }
    }
    await this.uploadChunked(location, blob, digest, chunkSize, session, options)
    return { digest, size, how: 'chunked' }
  }

  async mountBlob (locationLike: LocationLike, digest: string, from: string, options: AbortOptions = {}): Promise<boolean> {
    const location = toLocation(locationLike)
    digestAlgorithm(digest)
    const result = await this.startUpload(location, options, { digest, from })
    if (!result.mounted) await this.cancelUpload(location, result.location, options)
    return result.mounted
  }

  blobBackend (locationLike: LocationLike): BlobBackend {
    const location = toLocation(locationLike)
    const name = `registry ${location.registry}/${location.repository}`
    return {
      name,
      size: async (blobId, options) => {
        const digest = `sha256:${blobId}`
        const head = await this.headBlob(location, digest, options)
        if (head == null) throw new BlobNotFoundError(blobId, name)
        return head.size
      },
      read: async (blobId, offset, length, options) => await this.readBlob(location, `sha256:${blobId}`, offset, length, options)
    }
  }

  /** POST .../blobs/uploads/, optionally as a mount; returns the session Location or that it mounted. */
  private async startUpload (location: RepositoryLocation, options: AbortOptions, mount?: { digest: string, from: string }): Promise<{ mounted: true } | { mounted: false, location: string }> {
    const query = mount != null ? `?${new URLSearchParams({ mount: mount.digest, from: mount.from }).toString()}` : ''
    const path = `/v2/${location.repository}/blobs/uploads/${query}`
    const scopes = [pushScope(location)]
    if (mount != null) scopes.push(`repository:${mount.from}:pull`)
    return await this.transport.withRetries(`POST ${this.url(location.registry, path)}`, options, async () => {
      const response = await this.transport.request({
        method: 'POST', registry: location.registry, url: path, scopes, expect: [201, 202], signal: options.signal
      })
      await response.body?.cancel().catch(() => {})
      if (response.status === 201) {
        if (mount == null) throw new RegistryProtocolError(`POST ${this.url(location.registry, path)} answered 201 to a plain upload start`)
        return { mounted: true as const }
      }
      return { mounted: false as const, location: this.uploadLocation(location.registry, path, response) }
    })
  }

  private async cancelUpload (location: RepositoryLocation, uploadUrl: string, options: AbortOptions): Promise<void> {
    try {
      const response = await this.transport.request({
        method: 'DELETE', registry: location.registry, url: uploadUrl, scopes: [pushScope(location)], expect: [204, 404], signal: options.signal
      })
      await response.body?.cancel().catch(() => {})
    } catch (err) {
      // A session left open expires on the registry by itself; not worth failing the caller.
      this.transport.log(`DELETE ${redact(uploadUrl)} failed: ${err instanceof Error ? err.message : String(err)}`)
    }
  }

  private async uploadMonolithic (location: RepositoryLocation, blob: OpenSource, digest: string, session: string | undefined, options: PushBlobOptions): Promise<void> {
    let reusable = session
    await this.transport.withRetries(`upload ${digest} to ${location.registry}/${location.repository}`, options, async () => {
      // A session is used once; a retry starts a new one, as a failed PUT may have consumed it.
      const uploadUrl = reusable ?? (await this.startUploadSession(location, options))
      reusable = undefined
      await this.finishUpload(location, uploadUrl, digest, blob.body(), options)
    })
    options.onProgress?.({ type: 'registry:blob:upload', detail: { digest, bytes: blob.size, size: blob.size } })
  }

  private async uploadChunked (location: RepositoryLocation, blob: OpenSource, digest: string, chunkSize: number, session: string | undefined, options: PushBlobOptions): Promise<void> {
    let uploadUrl = session ?? (await this.startUploadSession(location, options))
    let offset = 0
    const maxChunks = Math.ceil(blob.size / chunkSize) + 8
    for (let sent = 0; offset < blob.size; sent++) {
      if (sent >= maxChunks) throw new RegistryProtocolError(`upload of ${digest} did not progress after ${sent} chunks`)
      await this.transport.withRetries(`PATCH ${redact(uploadUrl)}`, options, async attempt => {
        if (attempt > 1) {
          // The last PATCH may or may not have landed: ask the registry where the upload stands.
          const status = await this.uploadStatus(location, uploadUrl, options)
          uploadUrl = status.location
          offset = status.offset
          if (offset >= blob.size) return
        }
        const end = Math.min(blob.size, offset + chunkSize)
        const bytes = await blob.slice(offset, end)
        const response = await this.transport.request({
          method: 'PATCH',
          registry: location.registry,
          url: uploadUrl,
          scopes: [pushScope(location)],
          headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${end - 1}` },
          body: bytes,
          expect: [202],
          signal: options.signal
        })
        await response.body?.cancel().catch(() => {})
        const stored = parseUploadRange(response.headers.get('range'))
        if (stored != null && stored !== end) {
          throw new RegistryProtocolError(`PATCH ${redact(uploadUrl)}: sent bytes up to ${end}, the registry holds ${stored}`)
        }
        uploadUrl = this.uploadLocation(location.registry, uploadUrl, response)
        offset = end
      })
      options.onProgress?.({ type: 'registry:blob:upload', detail: { digest, bytes: offset, size: blob.size } })
    }
    const finalUrl = uploadUrl
    await this.transport.withRetries(`PUT ${redact(finalUrl)}`, options, async attempt => {
      try {
        await this.finishUpload(location, finalUrl, digest, undefined, options)
      } catch (err) {
        // A retried PUT whose first try landed finds the session closed: the blob is what counts.
        if (attempt > 1 && err instanceof RegistryError && err.status === 404 && (await this.headBlob(location, digest, options)) != null) return
        throw err
      }
    })
  }

  private async startUploadSession (location: RepositoryLocation, options: AbortOptions): Promise<string> {
    const started = await this.startUpload(location, options)
    if (started.mounted) throw new RegistryProtocolError('upload start reported a mount')
    return started.location
  }

  private async uploadStatus (location: RepositoryLocation, uploadUrl: string, options: AbortOptions): Promise<{ location: string, offset: number }> {
    const response = await this.transport.request({
      method: 'GET', registry: location.registry, url: uploadUrl, scopes: [pushScope(location)], expect: [204], signal: options.signal
    })
    await response.body?.cancel().catch(() => {})
    return { location: this.uploadLocation(location.registry, uploadUrl, response), offset: parseUploadRange(response.headers.get('range')) ?? 0 }
  }

  private async finishUpload (location: RepositoryLocation, uploadUrl: string, digest: string, body: Uint8Array | (() => ReadableStream<Uint8Array>) | undefined, options: AbortOptions): Promise<void> {
    const url = new URL(uploadUrl, this.transport.baseUrl(location.registry))
    url.searchParams.set('digest', digest)
    const response = await this.transport.request({
      method: 'PUT',
      registry: location.registry,
      url: url.toString(),
      scopes: [pushScope(location)],
      headers: { 'content-type': 'application/octet-stream' },
      body: body ?? new Uint8Array(0),
      expect: [201],
      signal: options.signal
    })
    await response.body?.cancel().catch(() => {})
    const claimed = response.headers.get('docker-content-digest')
    if (claimed != null && isDigest(claimed) && claimed !== digest) throw new DigestMismatchError(digest, claimed, redact(url.toString()))
  }

  private uploadLocation (registry: string, requestUrl: string, response: Response): string {
    const header = response.headers.get('location')
    if (header == null || header === '') {
      throw new RegistryProtocolError(`${redact(new URL(requestUrl, this.transport.baseUrl(registry)).toString())}: HTTP ${response.status} without a Location for the upload`)
    }
    return new URL(header, new URL(requestUrl, this.transport.baseUrl(registry))).toString()
  }

  private url (registry: string, path: string): string {
    return `${this.transport.baseUrl(registry)}${path}`
  }
}

interface OpenSource {
  size: number
  digest?: string
  computeDigest(options: AbortOptions): Promise<string>
  slice(start: number, end: number): Promise<Uint8Array>
  /** A body for a PUT: the bytes, or a stream factory (a retry needs a fresh stream). */
  body(): Uint8Array | (() => ReadableStream<Uint8Array>)
}

async function openSource (source: BlobSource, options: AbortOptions): Promise<OpenSource> {
  if (source instanceof Uint8Array) {
    return {
      size: source.byteLength,
      computeDigest: async () => computeDigest(source),
      slice: async (start, end) => source.subarray(start, end),
      body: () => source
    }
  }
  const path = source.path
  const info = await stat(path)
  if (!info.isFile()) throw new InvalidArgumentError(`${path} is not a regular file`)
  const size = info.size
  return {
    size,
    computeDigest: async (o) => {
      const { digest, size: hashed } = await digestOfFile(path, o)
      if (hashed !== size) throw new InvalidArgumentError(`${path} changed size while being hashed (${size} then ${hashed} bytes)`)
      return digest
    },
    slice: async (start, end) => {
      throwIfAborted(options)
      const handle = await open(path, 'r')
      try {
        const buffer = Buffer.alloc(end - start)
        let done = 0
        // A short read means the file shrank under us; bounded by the chunk length.
        while (done < buffer.byteLength) {
          const { bytesRead } = await handle.read(buffer, done, buffer.byteLength - done, start + done)
          if (bytesRead === 0) throw new InvalidArgumentError(`${path} ended at ${start + done}, expected ${size} bytes`)
          done += bytesRead
        }
        return buffer
      } finally {
        await handle.close()
      }
    },
    body: () => () => Readable.toWeb(createReadStream(path, { highWaterMark: 1 << 20 })) as ReadableStream<Uint8Array>
  }
}

interface OpenSink {
  write(bytes: Uint8Array, options: AbortOptions): Promise<void>
  commit(): Promise<void>
  abandon(): Promise<void>
}

/** A file sink writes to a temporary name beside the target and renames only once the digest is right. */
async function openSink (sink: BlobSink): Promise<OpenSink> {
  if (typeof sink !== 'string') {
    return {
      write: async (bytes, options) => {
        if (!sink.write(bytes)) await once(sink, 'drain', options.signal != null ? { signal: options.signal } : {})
      },
      commit: async () => {},
      abandon: async () => {}
    }
  }
  const partial = `${sink}.partial-${randomBytes(6).toString('hex')}`
  const handle = await open(partial, 'w')
  let closed = false
  const close = async (): Promise<void> => {
    if (!closed) { closed = true; await handle.close() }
  }
  return {
    write: async (bytes) => {
      let done = 0
      while (done < bytes.byteLength) {
        const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done)
        if (bytesWritten <= 0) throw new Error(`writing ${partial} made no progress`)
        done += bytesWritten
      }
    },
    commit: async () => {
      await handle.sync()
      await close()
      await rename(partial, sink)
    },
    abandon: async () => {
      await close().catch(() => {})
      await rm(partial, { force: true })
    }
  }
}

/** Copies the body from byte `skip` on into `out`; returns how many bytes were filled, and hangs up when full. */
async function fillFrom (response: Response, out: Uint8Array, skip: number): Promise<number> {
  if (response.body == null) return 0
  let filled = 0
  let toSkip = skip
  for await (const chunk of response.body) {
    let piece: Uint8Array = chunk
    if (toSkip > 0) {
      if (piece.byteLength <= toSkip) { toSkip -= piece.byteLength; continue }
      piece = piece.subarray(toSkip)
      toSkip = 0
    }
    const take = Math.min(piece.byteLength, out.byteLength - filled)
    out.set(piece.subarray(0, take), filled)
    filled += take
    if (filled === out.byteLength) {
      await response.body.cancel().catch(() => {})
      break
    }
  }
  return filled
}

function parseContentRange (header: string | null): { start: number, end: number, total?: number } | undefined {
  if (header == null) return undefined
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim())
  if (match == null) return undefined
  const start = Number(match[1])
  const end = Number(match[2])
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return undefined
  const total = match[3] === '*' ? undefined : Number(match[3])
  return { start, end, ...(total != null ? { total } : {}) }
}

/** An upload's `Range: 0-N` header: the registry holds N + 1 bytes. */
function parseUploadRange (header: string | null): number | undefined {
  if (header == null) return undefined
  const match = /^(?:bytes=)?0-(\d+)$/.exec(header.trim())
  if (match == null) return undefined
  const last = Number(match[1])
  return Number.isSafeInteger(last) ? last + 1 : undefined
}

function contentType (response: Response): string | undefined {
  const header = response.headers.get('content-type')
  return header?.split(';')[0]?.trim()
}

function parseJson (bytes: Uint8Array, what: string): unknown {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
    if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object')
    return parsed
  } catch (err) {
    throw new RegistryProtocolError(`${what} is not a JSON object: ${err instanceof Error ? err.message : String(err)}`)
  }
}

function asIndex (fetched: FetchedManifest): ImageIndex {
  const json = fetched.json as { manifests?: unknown }
  if (!Array.isArray(json.manifests)) throw new RegistryProtocolError(`index ${fetched.digest} has no manifests array`)
  for (const entry of json.manifests as unknown[]) {
    const d = entry as { digest?: unknown, mediaType?: unknown } | null
    if (d == null || typeof d.digest !== 'string' || !isDigest(d.digest) || typeof d.mediaType !== 'string') {
      throw new RegistryProtocolError(`index ${fetched.digest} has an entry without a valid digest and media type`)
    }
  }
  return fetched.json as ImageIndex
}

function asManifest (fetched: FetchedManifest): ImageManifest {
  const json = fetched.json as { config?: { digest?: unknown }, layers?: unknown }
  if (json.config == null || typeof json.config.digest !== 'string' || !Array.isArray(json.layers)) {
    throw new RegistryProtocolError(`manifest ${fetched.digest} lacks a config descriptor or a layers array`)
  }
  return fetched.json as ImageManifest
}

function toReference (reference: ReferenceLike): ImageReference {
  return typeof reference === 'string' ? parseImageReference(reference) : reference
}

function toLocation (location: LocationLike): RepositoryLocation {
  if (typeof location !== 'string') return { registry: location.registry, repository: location.repository }
  const parsed = parseImageReference(location)
  return { registry: parsed.registry, repository: parsed.repository }
}

function toPlatform (platform: string | Platform): Platform {
  return typeof platform === 'string' ? parsePlatform(platform) : platform
}

function pullScope (location: RepositoryLocation): string {
  return `repository:${location.repository}:pull`
}

function pushScope (location: RepositoryLocation): string {
  return `repository:${location.repository}:pull,push`
}

function positiveInteger (value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`)
  return value
}
