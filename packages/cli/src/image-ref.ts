import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { AbortOptions, BlobBackend } from '@shoal/interface'
import { readBootstrap, type RafsImage } from '@shoal/rafs'
import { blobDirectory } from '@shoal/blob-device'
import { UsageError } from './command.js'

export interface OpenedImage {
  image: RafsImage
  /** Where the image's blobs are read from. */
  blobs: BlobBackend
  close: () => Promise<void>
}

export interface OpenImageOptions extends AbortOptions {
  /** A directory of blob files named by blob id. */
  blobDir?: string
}

/**
 * Opens an image reference: `bootstrap:PATH` (or a plain path) to a RAFS bootstrap file, its blobs
 * in `--blob-dir` (default: a `blobs` directory beside the bootstrap).
 */
export async function openImage (reference: string, options: OpenImageOptions = {}): Promise<OpenedImage> {
  if (/^[a-z][a-z0-9+.-]*:\/\//.test(reference) || reference.startsWith('oci:')) {
    throw new UsageError(`image reference '${reference}': only bootstrap:PATH is supported so far`)
  }
  const path = reference.startsWith('bootstrap:') ? reference.slice('bootstrap:'.length) : reference
  if (path === '') throw new UsageError(`image reference '${reference}' names no file`)
  const image = readBootstrap(await readFile(path, { signal: options.signal }))
  const blobs = blobDirectory({ path: options.blobDir ?? join(dirname(path), 'blobs') })
  return { image, blobs, close: async () => { await blobs.close() } }
}
