import { ShoalError } from '@shoal/interface'

/** A layer whose tar stream does not parse: bad checksum, truncated data, a malformed PAX record. */
export class TarFormatError extends ShoalError {
  override name = 'TarFormatError'
  override readonly code: string = 'ERR_TAR_FORMAT'
}

/** A tar entry kind or extension we do not build from (e.g. an unknown sparse format version). */
export class UnsupportedTarEntryError extends TarFormatError {
  override name = 'UnsupportedTarEntryError'
  override readonly code = 'ERR_TAR_UNSUPPORTED'
}

/** A layer compressed with something other than gzip or zstd (or not a tar at all). */
export class UnsupportedLayerCompressionError extends ShoalError {
  override name = 'UnsupportedLayerCompressionError'
  override readonly code = 'ERR_LAYER_COMPRESSION'
}

/** An entry path or hard link target that leaves the layer's root through `..`. */
export class UnsafeLayerPathError extends ShoalError {
  override name = 'UnsafeLayerPathError'
  override readonly code = 'ERR_UNSAFE_LAYER_PATH'
  constructor (readonly entryPath: string, readonly reason: string) {
    super(`unsafe path in layer: ${JSON.stringify(entryPath)}: ${reason}`)
  }
}

/** A hard link whose target is not a non-directory already present in the image. */
export class HardLinkTargetError extends ShoalError {
  override name = 'HardLinkTargetError'
  override readonly code = 'ERR_HARDLINK_TARGET'
  constructor (readonly entryPath: string, readonly target: string, reason: string) {
    super(`hard link ${JSON.stringify(entryPath)} -> ${JSON.stringify(target)}: ${reason}`)
  }
}
