/**
 * The bootstrap layer of a Nydus image, as nydusify writes it: a gzip-compressed tar holding the
 * directory `image/` and the RAFS bootstrap as `image/image.boot`.
 */
import { createHash } from 'node:crypto'
import { gunzipSync, gzipSync } from 'node:zlib'
import { NYDUS_BOOTSTRAP_PATH } from '@shoal/interface'
import type { AbortOptions } from '@shoal/interface'
import { readTar } from '@shoal/builder'
import { NotNydusImageError } from './errors.js'

export interface BootstrapLayer {
  /** The tar.gz bytes: the layer blob. */
  bytes: Uint8Array
  /** `sha256:` of `bytes`: the layer digest. */
  digest: string
  /** `sha256:` of the uncompressed tar: the layer's diff_id in the image config. */
  diffId: string
}

/** Largest bootstrap accepted out of a layer (a million-inode image is a few hundred MiB). */
export const MAX_BOOTSTRAP_BYTES = 1024 * 1024 * 1024

const BLOCK = 512

/** Packs a bootstrap into its layer: deterministic (mtime 0, owner 0:0), so equal bootstraps give equal digests. */
export function makeBootstrapLayer (bootstrap: Uint8Array): BootstrapLayer {
  const directory = tarHeader(NYDUS_BOOTSTRAP_PATH.slice(0, NYDUS_BOOTSTRAP_PATH.lastIndexOf('/') + 1), 0o755, 0, '5')
  const file = tarHeader(NYDUS_BOOTSTRAP_PATH, 0o644, bootstrap.byteLength, '0')
  const padding = (BLOCK - (bootstrap.byteLength % BLOCK)) % BLOCK
  const tar = Buffer.concat([directory, file, bootstrap, Buffer.alloc(padding), Buffer.alloc(2 * BLOCK)])
  const bytes = gzipSync(tar, { level: 6 })
  return {
    bytes,
    digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
    diffId: `sha256:${createHash('sha256').update(tar).digest('hex')}`
  }
}

/** The bootstrap out of a bootstrap layer (tar.gz, or a plain tar); `where` names the layer in errors. */
export async function readBootstrapLayer (layer: Uint8Array, where: string, options: AbortOptions = {}): Promise<Uint8Array> {
  let tar: Uint8Array = layer
  if (layer.byteLength >= 2 && layer[0] === 0x1f && layer[1] === 0x8b) {
    try {
      tar = gunzipSync(layer, { maxOutputLength: MAX_BOOTSTRAP_BYTES + 64 * 1024 })
    } catch (err) {
      throw new NotNydusImageError(`bootstrap layer ${where} does not gunzip: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
  const wanted = NYDUS_BOOTSTRAP_PATH
  try {
    for await (const entry of readTar(once(tar), options)) {
      const name = entry.path.replace(/^(\.\/|\/)+/, '')
      if (entry.type !== 'file' || name !== wanted) continue
      if (entry.size > MAX_BOOTSTRAP_BYTES) throw new NotNydusImageError(`${wanted} in ${where} is ${entry.size} bytes, more than the ${MAX_BOOTSTRAP_BYTES} accepted`)
      const pieces: Uint8Array[] = []
      for await (const piece of entry.body) pieces.push(piece)
      return Buffer.concat(pieces)
    }
  } catch (err) {
    if (err instanceof NotNydusImageError) throw err
    throw new NotNydusImageError(`bootstrap layer ${where} is not a readable tar: ${err instanceof Error ? err.message : String(err)}`)
  }
  throw new NotNydusImageError(`bootstrap layer ${where} holds no ${wanted}`)
}

function tarHeader (name: string, mode: number, size: number, type: '0' | '5'): Buffer {
  const header = Buffer.alloc(BLOCK)
  if (Buffer.byteLength(name) > 100) throw new RangeError(`tar name ${name} is longer than 100 bytes`)
  header.write(name, 0, 100, 'utf8')
  writeOctal(header, 100, 8, mode)
  writeOctal(header, 108, 8, 0)
  writeOctal(header, 116, 8, 0)
  writeOctal(header, 124, 12, size)
  writeOctal(header, 136, 12, 0)
  header.write(type, 156, 1, 'ascii')
  header.write('ustar\u000000', 257, 8, 'ascii')
  header.fill(0x20, 148, 156)
  let sum = 0
  for (const byte of header) sum += byte
  header.write(sum.toString(8).padStart(6, '0') + '\u0000 ', 148, 8, 'ascii')
  return header
}

function writeOctal (header: Buffer, offset: number, width: number, value: number): void {
  const text = value.toString(8).padStart(width - 1, '0')
  if (text.length > width - 1) throw new RangeError(`${value} does not fit a ${width}-byte tar field`)
  header.write(text + '\u0000', offset, width, 'ascii')
}

async function * once (bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes
}
