/** Manifest media types, the shapes Shoal reads, and platform selection from an index. */

export const MEDIA_TYPE_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const MEDIA_TYPE_OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const MEDIA_TYPE_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
export const MEDIA_TYPE_DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
export const MEDIA_TYPE_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const MEDIA_TYPE_DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json'

export const MANIFEST_MEDIA_TYPES = [MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST] as const
export const INDEX_MEDIA_TYPES = [MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST] as const
/** Sent as Accept on every manifest request, so a registry never falls back to schema 1. */
export const ALL_MANIFEST_MEDIA_TYPES = [...MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES]

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

export function isIndexMediaType (mediaType: string): boolean {
  return (INDEX_MEDIA_TYPES as readonly string[]).includes(mediaType)
}

export function isManifestMediaType (mediaType: string): boolean {
  return (MANIFEST_MEDIA_TYPES as readonly string[]).includes(mediaType)
}

/** `linux/arm64/v8` → { os, architecture, variant }. */
export function parsePlatform (text: string): Platform {
  const [os, architecture, variant] = text.split('/')
  if (os == null || os === '' || architecture == null || architecture === '') {
    throw new TypeError(`platform "${text}" is not os/architecture[/variant]`)
  }
  return { os, architecture, ...(variant != null && variant !== '' ? { variant } : {}) }
}

export function formatPlatform (platform: Platform): string {
  return `${platform.os}/${platform.architecture}${platform.variant != null ? `/${platform.variant}` : ''}`
}

/**
 * The index entry for `wanted`: same os and architecture; when a variant is asked for it must
 * match (arm64 without a variant counts as v8, as containerd reads it); otherwise an entry without
 * variant is preferred. Entries that are not image manifests (attestations) are skipped.
 */
export function selectPlatform (index: ImageIndex, wanted: Platform): Descriptor | undefined {
  const candidates = index.manifests.filter(d =>
    d.platform != null &&
    d.platform.os === wanted.os &&
    d.platform.architecture === wanted.architecture &&
    (isManifestMediaType(d.mediaType) || isIndexMediaType(d.mediaType)))
  if (wanted.variant != null) {
    return candidates.find(d => normalVariant(d.platform as Platform) === normalVariant(wanted))
  }
  return candidates.find(d => d.platform?.variant == null) ?? candidates[0]
}

function normalVariant (platform: Platform): string | undefined {
  if (platform.architecture === 'arm64' && platform.variant == null) return 'v8'
  return platform.variant
}
