/**
 * Chunk digests as Nydus computes them: sha256 or blake3 (32 bytes) of the uncompressed bytes.
 */
import { hash } from 'node:crypto'
import { createRequire } from 'node:module'
import type { IHasher } from 'hash-wasm'
import type { Digester } from '@shoal/interface'
import { RafsUnsupportedError } from '../errors.js'

export const DIGEST_SIZE = 32

// One wasm hasher, created when the module loads, so that chunkDigest stays synchronous.
// Safe to share: JavaScript runs one call to completion before the next starts.
// Only hash-wasm's blake3 build (22 KB) is loaded, not its index of every algorithm (280 KB of
// base64 wasm that each process start would parse).
const { createBLAKE3 } = createRequire(import.meta.url)('hash-wasm/dist/blake3.umd.min.js') as { createBLAKE3: (bits: number) => Promise<IHasher> }
const blake3 = await createBLAKE3(256)

export function chunkDigest (data: Uint8Array, digester: Digester): Uint8Array {
  switch (digester) {
    case 'sha256':
      return hash('sha256', data, 'buffer')
    case 'blake3':
      blake3.init()
      blake3.update(data)
      return blake3.digest('binary')
    default:
      throw new RafsUnsupportedError(`unknown digester ${String(digester)}`)
  }
}

/** sha256 of `data`: what Nydus uses for ToC entries and blob ids whatever the chunk digester is. */
export function sha256 (data: Uint8Array): Uint8Array {
  return hash('sha256', data, 'buffer')
}

export function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export function digestsEqual (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Digester codes as Nydus stores them (digest::Algorithm: v6 blob table). */
export function digesterCode (digester: Digester): number {
  return digester === 'blake3' ? 0 : 1
}

export function digesterFromCode (code: number): Digester | undefined {
  switch (code) {
    case 0: return 'blake3'
    case 1: return 'sha256'
    default: return undefined
  }
}
