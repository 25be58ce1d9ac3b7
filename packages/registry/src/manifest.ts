/** Manifest media types, the shapes Shoal reads, and platform selection from an index. */

import { INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES } from '@shoal/interface'
import type { Descriptor, ImageIndex, Platform } from '@shoal/interface'

// The shapes and media types live in @shoal/interface (so an OCI layout needs no registry); re-exported here.
export {
  MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST,
  MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG, MANIFEST_MEDIA_TYPES, INDEX_MEDIA_TYPES, ALL_MANIFEST_MEDIA_TYPES
} from '@shoal/interface'
export type { Descriptor, Platform, ImageManifest, ImageIndex, ImageConfig } from '@shoal/interface'

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
