import { throwIfAborted, ChunkDigestMismatchError, type AbortOptions, type BlobBackend, type ProgressOptions, type ProgressEvent } from '@shoal/interface'
import type { RafsChunk, RafsImage } from '@shoal/rafs'
import { readVerifiedChunk } from '@shoal/blob-device'
import { listImage } from './image-walk.js'

export type CheckProgressEvent = ProgressEvent<'check:chunk', { checked: number, total: number }>

export interface CheckOptions extends AbortOptions, ProgressOptions<CheckProgressEvent> {}

/** The first chunk that failed, and where a reader would have met it. */
export interface BadChunk {
  path: string
  fileOffset: number
  blobId: string
  chunkIndex: number
  /** `digester:hex` */
  expected: string
  /** `digester:hex`, or undefined when the bytes could not even be read or decompressed. */
  actual?: string
  error: Error
}

export interface CheckResult {
  ok: boolean
  /** Distinct chunks verified (a chunk shared by several files counts once). */
  chunks: number
  /** Uncompressed bytes verified. */
  bytes: number
  blobs: number
  bad?: BadChunk
}

/**
 * Reads every chunk of every file once and verifies it against its digest; stops at the first
 * chunk that fails and says where it is.
 */
export async function checkImage (image: RafsImage, blobs: BlobBackend, options: CheckOptions = {}): Promise<CheckResult> {
  throwIfAborted(options)
  const unique = new Map<string, { chunk: RafsChunk, path: string }>()
  for (const { path, node, hardlink } of listImage(image.root)) {
    if (node.type !== 'file' || hardlink) continue
    for (const chunk of node.chunks ?? []) {
      const key = `${chunk.blobIndex}:${chunk.index}:${chunk.compressedOffset}`
      if (!unique.has(key)) unique.set(key, { chunk, path })
    }
  }
  const usedBlobs = new Set<number>()
  let checked = 0
  let bytes = 0
  for (const { chunk, path } of unique.values()) {
    throwIfAborted(options)
    const blob = image.blobs[chunk.blobIndex]
    try {
      await readVerifiedChunk(blobs, image, chunk, options)
    } catch (err: any) {
      if (err.name === 'AbortError') throw err
      return {
        ok: false,
        chunks: checked,
        bytes,
        blobs: usedBlobs.size,
        bad: {
          path,
          fileOffset: chunk.fileOffset,
          blobId: blob?.blobId ?? `#${chunk.blobIndex}`,
          chunkIndex: chunk.index,
          expected: `${blob?.digester ?? image.digester}:${Buffer.from(chunk.digest).toString('hex')}`,
          ...(err instanceof ChunkDigestMismatchError ? { actual: `${blob?.digester ?? image.digester}:${err.actual}` } : {}),
          error: err
        }
      }
    }
    usedBlobs.add(chunk.blobIndex)
    checked++
    bytes += chunk.uncompressedSize
    options.onProgress?.({ type: 'check:chunk', detail: { checked, total: unique.size } })
  }
  return { ok: true, chunks: checked, bytes, blobs: usedBlobs.size }
}
