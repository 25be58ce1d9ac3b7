import { RafsBadMagicError } from './errors.js'
import type { RafsImage } from './model.js'
import { readBootstrapV5 } from './v5/index.js'
import { readBootstrapV6 } from './v6/index.js'

const RAFS_V5_MAGIC = 0x52414653
const EROFS_MAGIC = 0xe0f5e1e2
const EROFS_SUPER_OFFSET = 1024

export function bootstrapVersion (bytes: Uint8Array): 5 | 6 | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.byteLength >= EROFS_SUPER_OFFSET + 4 && view.getUint32(EROFS_SUPER_OFFSET, true) === EROFS_MAGIC) return 6
  if (bytes.byteLength >= 4 && view.getUint32(0, true) === RAFS_V5_MAGIC) return 5
  return undefined
}

/** Reads a RAFS v5 or v6 bootstrap, whichever the bytes are. */
export function readBootstrap (bytes: Uint8Array): RafsImage {
  switch (bootstrapVersion(bytes)) {
    case 5: return readBootstrapV5(bytes)
    case 6: return readBootstrapV6(bytes)
    default: throw new RafsBadMagicError(`not a RAFS bootstrap: neither the RAFS v5 magic at offset 0 nor the EROFS magic at offset ${EROFS_SUPER_OFFSET} (${bytes.byteLength} bytes)`)
  }
}
