import { createHash } from 'node:crypto'
import type { Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { InvalidArgumentError } from '@shoal/interface'
import type { AbortOptions } from '@shoal/interface'

export type DigestAlgorithm = 'sha256' | 'sha512'

const DIGEST_FORM: Record<DigestAlgorithm, RegExp> = {
  sha256: /^sha256:[0-9a-f]{64}$/,
  sha512: /^sha512:[0-9a-f]{128}$/
}

/** The algorithm of a `sha256:<hex>` or `sha512:<hex>` digest; anything else is refused. */
export function digestAlgorithm (digest: string): DigestAlgorithm {
  for (const algorithm of Object.keys(DIGEST_FORM) as DigestAlgorithm[]) {
    if (DIGEST_FORM[algorithm].test(digest)) return algorithm
  }
  throw new InvalidArgumentError(`"${digest}" is not a sha256 or sha512 digest in lower-case hex`)
}

export function isDigest (text: string): boolean {
  return DIGEST_FORM.sha256.test(text) || DIGEST_FORM.sha512.test(text)
}

export function digestHasher (algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm)
}

export function computeDigest (bytes: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`
}

export async function digestOfFile (path: string, options: AbortOptions = {}, algorithm: DigestAlgorithm = 'sha256'): Promise<{ digest: string, size: number }> {
  const hash = createHash(algorithm)
  let size = 0
  const stream = createReadStream(path, { highWaterMark: 1 << 20, ...(options.signal != null ? { signal: options.signal } : {}) })
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk)
    size += chunk.byteLength
  }
  return { digest: `${algorithm}:${hash.digest('hex')}`, size }
}
