import { ShoalError } from '@shoal/interface'

/** The source image cannot be converted: already a Nydus image, no layers, a layer type we do not read. */
export class NotConvertibleError extends ShoalError {
  override name = 'NotConvertibleError'
  override readonly code = 'ERR_NOT_CONVERTIBLE'
}

/** A manifest that is not a Nydus image (no bootstrap layer), or whose bootstrap layer is malformed. */
export class NotNydusImageError extends ShoalError {
  override name = 'NotNydusImageError'
  override readonly code = 'ERR_NOT_NYDUS_IMAGE'
}

/** A blob the manifest would name is not in the destination after pushing: the manifest is not pushed. */
export class BlobMissingAfterPushError extends ShoalError {
  override name = 'BlobMissingAfterPushError'
  override readonly code = 'ERR_BLOB_MISSING_AFTER_PUSH'
  constructor (readonly digest: string, readonly expectedSize: number, readonly actualSize: number | undefined, readonly store: string) {
    super(`blob ${digest} should be in ${store} with ${expectedSize} bytes, but ${actualSize == null ? 'it is absent' : `it has ${actualSize}`}; the manifest was not pushed`)
  }
}
