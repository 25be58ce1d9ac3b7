/** Opening a Nydus image that lives in a store: its manifest, its bootstrap, its blobs. */
import { ANNOTATION_NYDUS_BOOTSTRAP, MEDIA_TYPE_NYDUS_BLOB } from '@shoal/interface'
import type { BlobBackend, Descriptor } from '@shoal/interface'
import { readBootstrap } from '@shoal/rafs'
import type { RafsImage } from '@shoal/rafs'
import { MAX_BOOTSTRAP_BYTES, readBootstrapLayer } from './bootstrap-layer.js'
import type { BootstrapLayerCache } from './bootstrap-cache.js'
import { NotNydusImageError } from './errors.js'
import { describeLocation, resolveManifest, storeBlobBackend } from './resolve.js'
import type { ImageLocation, ResolvedManifest, ResolveOptions } from './resolve.js'

export interface StoredNydusImage {
  manifest: ResolvedManifest
  /** The bootstrap layer's descriptor. */
  bootstrapLayer: Descriptor
  bootstrap: Uint8Array
  image: RafsImage
  /** Reads the image's blobs from the store with Range reads. */
  blobs: BlobBackend
}

/** The bootstrap layer of a Nydus manifest: the one annotated as such, else a last layer that is not a blob. */
export function findBootstrapLayer (manifest: ResolvedManifest, where: string): Descriptor {
  const layers = manifest.manifest.layers
  const annotated = layers.filter(l => l.annotations?.[ANNOTATION_NYDUS_BOOTSTRAP] === 'true')
  if (annotated.length > 1) throw new NotNydusImageError(`${where} has ${annotated.length} layers annotated as a Nydus bootstrap`)
  const last = layers[layers.length - 1]
  const layer = annotated[0] ?? (layers.some(l => l.mediaType === MEDIA_TYPE_NYDUS_BLOB) && last?.mediaType !== MEDIA_TYPE_NYDUS_BLOB ? last : undefined)
  if (layer == null) throw new NotNydusImageError(`${where} (manifest ${manifest.digest}) is not a Nydus image: no layer is annotated ${ANNOTATION_NYDUS_BOOTSTRAP}`)
  return layer
}

export interface OpenNydusImageOptions extends ResolveOptions {
  /** Where bootstrap layers are kept by digest between opens; a failure to use it is not fatal. */
  bootstrapCache?: BootstrapLayerCache
  /** The location's manifest, already resolved by the caller (it is not fetched again). */
  manifest?: ResolvedManifest
}

export async function openNydusImage (location: ImageLocation, options: OpenNydusImageOptions = {}): Promise<StoredNydusImage> {
  const where = describeLocation(location)
  const manifest = options.manifest ?? await resolveManifest(location, options)
  const bootstrapLayer = findBootstrapLayer(manifest, where)
  if (bootstrapLayer.size > MAX_BOOTSTRAP_BYTES) throw new NotNydusImageError(`bootstrap layer ${bootstrapLayer.digest} of ${where} is ${bootstrapLayer.size} bytes, more than the ${MAX_BOOTSTRAP_BYTES} accepted`)
  const layerBytes = await fetchBootstrapLayer(location, bootstrapLayer, options)
  const bootstrap = await readBootstrapLayer(layerBytes, `${bootstrapLayer.digest} of ${where}`, options)
  const image = readBootstrap(bootstrap)
  return { manifest, bootstrapLayer, bootstrap, image, blobs: storeBlobBackend(location.store) }
}

/** The bootstrap layer's bytes, from the cache when it holds them, else from the store (then kept). */
async function fetchBootstrapLayer (location: ImageLocation, layer: Descriptor, options: OpenNydusImageOptions): Promise<Uint8Array> {
  const cache = options.bootstrapCache
  const signal = options.signal != null ? { signal: options.signal } : {}
  // A cache that cannot be read or written costs a download, never the open.
  const cached = await cache?.get(layer.digest, signal).catch(() => undefined)
  if (cached != null && cached.length === layer.size) return cached
  const bytes = await location.store.getBlobBytes(layer.digest, { ...options, maxSize: Math.max(layer.size, 1) })
  await cache?.put(layer.digest, bytes, signal).catch(() => {})
  return bytes
}
