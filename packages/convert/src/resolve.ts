/** Resolving a tag or digest in an ImageStore to one image manifest, through an index when there is one. */
import { BlobNotFoundError, throwIfAborted } from '@shoal/interface'
import type { AbortOptions, BlobBackend, BlobId, ImageIndex, ImageManifest, ImageStore, Platform } from '@shoal/interface'
import { formatPlatform, isIndexMediaType, isManifestMediaType, parsePlatform, PlatformNotFoundError, selectPlatform } from '@shoal/registry'
import { NotConvertibleError } from './errors.js'

/** An image in a store: the store and the tag or digest naming it there ('' for a layout's only image). */
export interface ImageLocation {
  store: ImageStore
  reference: string
}

export interface ResolvedManifest {
  digest: string
  mediaType: string
  bytes: Uint8Array
  manifest: ImageManifest
}

export interface ResolveOptions extends AbortOptions {
  /** `os/arch[/variant]` picked from an index; default linux/amd64. */
  platform?: string | Platform
}

export function describeLocation (location: ImageLocation): string {
  if (location.reference === '') return location.store.name
  return /^sha(256|512):/.test(location.reference) ? `${location.store.name}@${location.reference}` : `${location.store.name}:${location.reference}`
}

/** The image manifest a location names; an index is followed to the platform's entry (two levels at most). */
export async function resolveManifest (location: ImageLocation, options: ResolveOptions = {}): Promise<ResolvedManifest> {
  throwIfAborted(options)
  const platform = typeof options.platform === 'string' ? parsePlatform(options.platform) : options.platform ?? { os: 'linux', architecture: 'amd64' }
  let fetched = await location.store.getManifest(location.reference, options)
  for (let depth = 0; depth < 2 && isIndexMediaType(fetched.mediaType); depth++) {
    const index = fetched.json as ImageIndex
    if (!Array.isArray(index.manifests)) throw new NotConvertibleError(`index ${fetched.digest} in ${location.store.name} has no manifests array`)
    const entry = selectPlatform(index, platform)
    if (entry == null) {
      const available = index.manifests.filter(d => d.platform != null).map(d => formatPlatform(d.platform as Platform))
      throw new PlatformNotFoundError(formatPlatform(platform), available, describeLocation(location))
    }
    fetched = await location.store.getManifest(entry.digest, options)
  }
  if (!isManifestMediaType(fetched.mediaType)) {
    throw new NotConvertibleError(`${describeLocation(location)} is ${fetched.mediaType === '' ? 'a manifest without media type' : `a ${fetched.mediaType}`}, not an image manifest`)
  }
  const manifest = fetched.json as ImageManifest
  if (manifest.config == null || typeof manifest.config.digest !== 'string' || !Array.isArray(manifest.layers)) {
    throw new NotConvertibleError(`manifest ${fetched.digest} in ${location.store.name} lacks a config descriptor or a layers array`)
  }
  return { digest: fetched.digest, mediaType: fetched.mediaType, bytes: fetched.bytes, manifest }
}

/** The BlobBackend contract over a store: blob ids are sha256 hex, sizes are remembered once learned. */
export function storeBlobBackend (store: ImageStore): BlobBackend {
  const sizes = new Map<BlobId, number>()
  return {
    name: store.name,
    async size (blobId, options) {
      const known = sizes.get(blobId)
      if (known != null) return known
      const size = await store.hasBlob(`sha256:${blobId}`, options)
      if (size == null) throw new BlobNotFoundError(blobId, store.name)
      sizes.set(blobId, size)
      return size
    },
    async read (blobId, offset, length, options) {
      return await store.readBlob(`sha256:${blobId}`, offset, length, options)
    }
  }
}
