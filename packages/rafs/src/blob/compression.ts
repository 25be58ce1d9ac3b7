/**
 * The compressors Nydus uses for chunks and for blob.meta. Every decompression is bounded by the
 * size the caller expects: corrupt or lying input fails with DecompressError and never makes us
 * allocate more than that size.
 */
import { createRequire } from 'node:module'
import zlib from 'node:zlib'
import type { Compressor } from '@shoal/interface'
import { DecompressError, RafsUnsupportedError } from '../errors.js'

interface Lz4Binding {
  compressSync: (data: Buffer) => Buffer
  uncompressSync: (data: Buffer) => Buffer
}

let lz4: Lz4Binding | undefined

/** lz4-napi, loaded on first use: its native binding is not worth loading for images without lz4. */
function lz4Binding (): Lz4Binding {
  lz4 ??= createRequire(import.meta.url)('lz4-napi') as Lz4Binding
  return lz4
}

/** Largest buffer we ever decompress into (Node's Buffer limit on 64-bit is far above, this is a sanity cap). */
export const MAX_DECOMPRESSED_SIZE = 0x7fff_ffff

/** An LZ4 block can expand at most ~255 times (each extra length byte adds 255 output bytes). */
const LZ4_MAX_EXPANSION = 255
const LZ4_EXPANSION_SLACK = 64

/** Below this, zstd and gzip write straight into one buffer of the expected size. */
const SINGLE_BUFFER_LIMIT = 16 * 1024 * 1024
const STREAMING_CHUNK = 1024 * 1024

/**
 * Compresses `data` with `compressor`. The result may be larger than the input (use
 * `compressChunk` for Nydus's "keep it raw when compression does not help" rule).
 * lz4_block is a raw LZ4 block without size prefix or frame, as Nydus writes it.
 */
export function compress (data: Uint8Array, compressor: Compressor): Uint8Array {
  switch (compressor) {
    case 'none':
      return data
    case 'lz4_block': {
      // lz4-napi (lz4_flex) prepends the uncompressed size as 4 little-endian bytes; Nydus does not.
      const prefixed = lz4Binding().compressSync(asBuffer(data))
      return prefixed.subarray(4)
    }
    case 'zstd':
      // Level 3 is zstd's default and what Nydus uses (zstd::DEFAULT_COMPRESSION_LEVEL).
      return zlib.zstdCompressSync(data, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 3 } })
    case 'gzip':
      throw new RafsUnsupportedError('compressing with gzip is not supported: Nydus only reads gzip (stargz) chunks')
    default:
      throw new RafsUnsupportedError(`unknown compressor ${String(compressor)}`)
  }
}

/**
 * Compresses one chunk the way Nydus does: when the compressed form is not smaller than the
 * input, the chunk is stored as is and marked uncompressed.
 */
export function compressChunk (data: Uint8Array, compressor: Compressor): { bytes: Uint8Array, compressed: boolean } {
  if (compressor === 'none' || data.length === 0) return { bytes: data, compressed: false }
  const out = compress(data, compressor)
  if (out.length >= data.length) return { bytes: data, compressed: false }
  return { bytes: out, compressed: true }
}

/**
 * Decompresses `data`, which must yield exactly `uncompressedSize` bytes.
 * Throws DecompressError naming the compressor and both sizes otherwise.
 */
export function decompress (data: Uint8Array, compressor: Compressor, uncompressedSize: number): Uint8Array {
  if (!Number.isSafeInteger(uncompressedSize) || uncompressedSize < 0 || uncompressedSize > MAX_DECOMPRESSED_SIZE) {
    throw new DecompressError(`${compressor}: expected size ${uncompressedSize} is not a valid size`)
  }
  let out: Uint8Array
  switch (compressor) {
    case 'none':
      if (data.length !== uncompressedSize) {
        throw new DecompressError(`none: got ${data.length} bytes, expected ${uncompressedSize}`)
      }
      return data
    case 'lz4_block':
      out = lz4Decompress(data, uncompressedSize)
      break
    case 'zstd':
      out = boundedZlib(data, uncompressedSize, 'zstd', zlib.zstdDecompressSync)
      break
    case 'gzip':
      out = boundedZlib(data, uncompressedSize, 'gzip', zlib.gunzipSync)
      break
    default:
      throw new RafsUnsupportedError(`unknown compressor ${String(compressor)}`)
  }
  if (out.length !== uncompressedSize) {
    throw new DecompressError(`${compressor}: ${data.length} compressed bytes gave ${out.length} bytes, expected ${uncompressedSize}`)
  }
  return out
}

function lz4Decompress (data: Uint8Array, uncompressedSize: number): Uint8Array {
  if (uncompressedSize > data.length * LZ4_MAX_EXPANSION + LZ4_EXPANSION_SLACK) {
    throw new DecompressError(`lz4_block: ${data.length} compressed bytes cannot hold ${uncompressedSize} bytes`)
  }
  if (uncompressedSize === 0) {
    if (data.length === 0) return new Uint8Array(0)
    throw new DecompressError(`lz4_block: got ${data.length} compressed bytes, expected 0 bytes`)
  }
  // lz4-napi wants the lz4_flex "size prepended" form; the size we prepend is the one we expect,
  // so it never allocates more than that.
  const prefixed = Buffer.allocUnsafe(4 + data.length)
  prefixed.writeUInt32LE(uncompressedSize, 0)
  prefixed.set(data, 4)
  const binding = lz4Binding()
  try {
    return binding.uncompressSync(prefixed)
  } catch (err) {
    throw new DecompressError(`lz4_block: ${data.length} compressed bytes do not decompress to ${uncompressedSize} bytes: ${(err as Error).message}`)
  }
}

type ZlibSync = (data: Uint8Array, options: zlib.ZlibOptions & zlib.ZstdOptions) => Buffer

function boundedZlib (data: Uint8Array, uncompressedSize: number, name: string, fn: ZlibSync): Uint8Array {
  // maxOutputLength makes zlib stop (and throw) once output would exceed what we expect.
  // For chunk-sized data one output buffer a byte larger than expected is fastest (measured 3x
  // the default 16 KiB pieces): zlib never fills it, so it needs no second buffer to see the end.
  const limit = Math.max(1, uncompressedSize)
  const chunkSize = Math.max(64, limit <= SINGLE_BUFFER_LIMIT ? limit + 1 : STREAMING_CHUNK)
  try {
    return fn(data, { maxOutputLength: limit, chunkSize })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ERR_BUFFER_TOO_LARGE') {
      throw new DecompressError(`${name}: ${data.length} compressed bytes decompress to more than ${uncompressedSize} bytes`)
    }
    throw new DecompressError(`${name}: ${data.length} compressed bytes do not decompress to ${uncompressedSize} bytes: ${e.message}`)
  }
}

function asBuffer (data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
}

/** Compressor codes as Nydus stores them (compress::Algorithm: blob.meta header, v6 blob table). */
const COMPRESSOR_CODES: Record<Compressor, number> = { none: 0, lz4_block: 1, gzip: 2, zstd: 3 }

export function compressorCode (compressor: Compressor): number {
  return COMPRESSOR_CODES[compressor]
}

/** The compressor for a Nydus compressor code, or undefined for an unknown code. */
export function compressorFromCode (code: number): Compressor | undefined {
  switch (code) {
    case 0: return 'none'
    case 1: return 'lz4_block'
    case 2: return 'gzip'
    case 3: return 'zstd'
    default: return undefined
  }
}
