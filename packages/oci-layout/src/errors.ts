import { ShoalError } from '@shoal/interface'

/** An OCI image layout that breaks the spec: no oci-layout file, a malformed index.json, a bad blob path. */
export class OciLayoutError extends ShoalError {
  override name = 'OciLayoutError'
  override readonly code = 'ERR_OCI_LAYOUT'
}

/** A blob or manifest of a layout whose bytes do not hash to the digest that names it. */
export class LayoutDigestMismatchError extends ShoalError {
  override name = 'LayoutDigestMismatchError'
  override readonly code = 'ERR_LAYOUT_DIGEST_MISMATCH'
  constructor (readonly expected: string, readonly actual: string, readonly path: string) {
    super(`${path} has digest ${actual}, expected ${expected}`)
  }
}

/** A blob longer or shorter than its descriptor says. */
export class LayoutBlobSizeError extends ShoalError {
  override name = 'LayoutBlobSizeError'
  override readonly code = 'ERR_LAYOUT_BLOB_SIZE'
  constructor (readonly digest: string, readonly expected: number, readonly actual: number, readonly path: string) {
    super(`${path} (blob ${digest}) is ${actual} bytes, expected ${expected}`)
  }
}
