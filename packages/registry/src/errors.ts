import { ShoalError } from '@shoal/interface'

export { BlobNotFoundError, ManifestNotFoundError } from '@shoal/interface'

/** One entry of the error list a registry returns: `{"errors":[{"code","message","detail"}]}`. */
export interface RegistryErrorDetail {
  code: string
  message: string
  detail?: unknown
}

/**
 * A registry answered with a status Shoal does not handle as success, not-found or auth: the
 * message carries the method, URL, status and the registry's own error list.
 */
export class RegistryError extends ShoalError {
  override name = 'RegistryError'
  override readonly code: string = 'ERR_REGISTRY'
  constructor (
    readonly method: string,
    readonly url: string,
    readonly status: number,
    readonly errors: RegistryErrorDetail[] = [],
    message?: string
  ) {
    super(message ?? `${method} ${url}: HTTP ${status}${describeErrors(errors)}`)
  }
}

/** 401 or 403 after the credentials Shoal had were tried; names the registry and user, never the secret. */
export class RegistryAuthError extends RegistryError {
  override name = 'RegistryAuthError'
  override readonly code = 'ERR_REGISTRY_AUTH'
  constructor (
    readonly registry: string,
    readonly username: string | undefined,
    method: string,
    url: string,
    status: number,
    errors: RegistryErrorDetail[] = []
  ) {
    super(method, url, status, errors,
      `${status === 403 ? 'access denied' : 'authentication failed'} at registry ${registry} ` +
      `${username != null ? `as user "${username}"` : 'anonymously'}: ${method} ${url}: HTTP ${status}${describeErrors(errors)}`)
  }
}

/** A manifest or blob whose bytes do not hash to the digest it was asked for, or that the registry claimed. */
export class DigestMismatchError extends ShoalError {
  override name = 'DigestMismatchError'
  override readonly code = 'ERR_DIGEST_MISMATCH'
  constructor (readonly expected: string, readonly actual: string, readonly url: string) {
    super(`content from ${url} has digest ${actual}, expected ${expected}`)
  }
}

/** The registry broke the protocol: a bad Content-Range, a missing Location, a body longer than declared. */
export class RegistryProtocolError extends ShoalError {
  override name = 'RegistryProtocolError'
  override readonly code = 'ERR_REGISTRY_PROTOCOL'
}

/** A read past the end of a blob. */
export class BlobRangeError extends ShoalError {
  override name = 'BlobRangeError'
  override readonly code = 'ERR_BLOB_RANGE'
  constructor (readonly digest: string, readonly offset: number, readonly length: number, readonly size: number | undefined, readonly url: string) {
    super(`blob ${digest} at ${url}: cannot read ${length} bytes at offset ${offset}` +
      (size != null ? `, the blob is ${size} bytes` : ''))
  }
}

/** An image index that has no manifest for the requested platform. */
export class PlatformNotFoundError extends ShoalError {
  override name = 'PlatformNotFoundError'
  override readonly code = 'ERR_PLATFORM_NOT_FOUND'
  constructor (readonly platform: string, readonly available: string[], readonly reference: string) {
    super(`image index ${reference} has no manifest for platform ${platform}; it has ${available.length > 0 ? available.join(', ') : 'none'}`)
  }
}

/** A string that is not an image reference `[docker://]host[:port]/repo[:tag][@digest]`. */
export class InvalidReferenceError extends ShoalError {
  override name = 'InvalidReferenceError'
  override readonly code = 'ERR_INVALID_REFERENCE'
}

/** The retry budget (attempts or time) ran out; `cause` is the last failure. */
export class RetriesExhaustedError extends ShoalError {
  override name = 'RetriesExhaustedError'
  override readonly code = 'ERR_RETRIES_EXHAUSTED'
  constructor (readonly method: string, readonly url: string, readonly attempts: number, cause: unknown) {
    super(`${method} ${url} failed after ${attempts} attempts: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
  }
}

function describeErrors (errors: RegistryErrorDetail[]): string {
  if (errors.length === 0) return ''
  return ': ' + errors.map(e => `${e.code}${e.message !== '' ? ` (${e.message})` : ''}`).join('; ')
}
