import { createReadStream } from 'node:fs'
import { Readable, pipeline } from 'node:stream'
import { createGunzip, createZstdDecompress } from 'node:zlib'
import { throwIfAborted, type AbortOptions } from '@shoal/interface'
import { TarFormatError, UnsupportedLayerCompressionError } from './errors.js'

/** An OCI layer: a file path, or the layer's bytes as they come (a Node stream is an AsyncIterable). */
export type LayerSource = string | AsyncIterable<Uint8Array>

export type LayerCompression = 'none' | 'gzip' | 'zstd'

const DECOMPRESS_CHUNK = 256 * 1024

function startsWith (bytes: Uint8Array, magic: number[]): boolean {
  return bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b)
}

/** Which compression the first bytes of a layer announce; `none` is a plain tar (or an empty layer). */
export function detectLayerCompression (head: Uint8Array): LayerCompression {
  if (startsWith(head, [0x1f, 0x8b])) return 'gzip'
  if (startsWith(head, [0x28, 0xb5, 0x2f, 0xfd])) return 'zstd'
  if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) throw new UnsupportedLayerCompressionError('layer is xz-compressed; expected tar, tar+gzip or tar+zstd')
  if (startsWith(head, [0x42, 0x5a, 0x68])) throw new UnsupportedLayerCompressionError('layer is bzip2-compressed; expected tar, tar+gzip or tar+zstd')
  return 'none'
}

function openSource (source: LayerSource, options: AbortOptions): AsyncIterable<Uint8Array> {
  if (typeof source === 'string') {
    return createReadStream(source, { highWaterMark: 1024 * 1024, ...(options.signal != null ? { signal: options.signal } : {}) })
  }
  return source
}

/**
 * The uncompressed tar bytes of a layer, decompressing gzip or zstd as detected from the magic
 * bytes. Streams: memory stays at a few buffers whatever the layer's size.
 */
export async function * openLayer (source: LayerSource, options: AbortOptions = {}): AsyncGenerator<Uint8Array> {
  throwIfAborted(options)
  const input = openSource(source, options)[Symbol.asyncIterator]()
  // Peek far enough to see the longest magic we check.
  const head: Uint8Array[] = []
  let headLength = 0
  let ended = false
  while (headLength < 6) {
    const next = await input.next()
    if (next.done === true) { ended = true; break }
    head.push(next.value)
    headLength += next.value.length
  }
  const first = head.length === 1 ? head[0] : Buffer.concat(head)
  const compression = detectLayerCompression(first)

  const rest = async function * (): AsyncGenerator<Uint8Array> {
    yield * head
    if (ended) return
    for (;;) {
      const next = await input.next()
      if (next.done === true) return
      yield next.value
    }
  }
  if (compression === 'none') {
    yield * rest()
    return
  }
  const decompressor = compression === 'gzip'
    ? createGunzip({ chunkSize: DECOMPRESS_CHUNK })
    : createZstdDecompress({ chunkSize: DECOMPRESS_CHUNK })
  const output = pipeline(Readable.from(rest(), { objectMode: false }), decompressor, () => {})
  try {
    for await (const piece of output) {
      throwIfAborted(options)
      yield piece as Uint8Array
    }
  } catch (err: any) {
    if (typeof err?.code === 'string' && (err.code.startsWith('Z_') || err.code.startsWith('ERR_ZSTD') || err.errno != null)) {
      throw new TarFormatError(`layer ${compression} stream does not decompress: ${err.message as string}`)
    }
    throw err
  } finally {
    output.destroy()
  }
}
