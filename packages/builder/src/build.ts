/**
 * OCI layers → one Nydus data blob per layer (only chunks never seen before) and one RAFS v6
 * bootstrap of the merged tree. File data streams from the layer through the chunker into the
 * blob writer and out through the caller's sink; memory does not grow with layer size.
 */
import {
  InvalidArgumentError, throwIfAborted,
  type AbortOptions, type Compressor, type Digester, type ProgressEvent, type ProgressOptions
} from '@shoal/interface'
import {
  BlobWriter, chunkDigest, writeBootstrapV6,
  type RafsBlob, type RafsImage, type RafsNode, type WriteBootstrapV6Options
} from '@shoal/rafs'
import { Chunker, emptyCounts, validateChunkSize, type ChunkCounts, type ChunkStore } from './chunker.js'
import { applyLayer } from './apply-layer.js'
import { applyDirectory } from './directory.js'
import type { LayerSource } from './layer-stream.js'
import { normalizeLayerPath } from './path.js'
import { LayerTree } from './tree.js'

/** Where one layer's blob goes. `write` is called synchronously with the blob's bytes in order. */
export interface BlobTarget {
  write: (bytes: Uint8Array) => void
  /**
   * The blob is complete (e.g. close the file, rename it to its id). `blob.blobIndex` is -1 here:
   * table positions are known only once every layer is read, and are set in the build result.
   */
  close?: (blob: LayerBlob) => void | Promise<void>
  /** The layer stored no chunk, or the build failed: nothing here is a blob (e.g. delete the file). */
  discard?: () => void | Promise<void>
}

/** Opens the destination of layer `layerIndex`'s blob. */
export type BlobSink = (layerIndex: number) => BlobTarget | Promise<BlobTarget>

export interface BuildOptions {
  /** Power of two from 4 KiB to 16 MiB; default 1 MiB. */
  chunkSize?: number
  /** Default zstd. */
  compressor?: Compressor
  /** Default sha256. */
  digester?: Digester
  /** An earlier Nydus image: chunks found in its blobs are referenced there, not stored again. */
  chunkDict?: RafsImage
  /** Paths in the image (`/usr/bin/python3`) whose inodes are prefetched first, in this order. */
  prefetchFiles?: string[]
  blobSink: BlobSink
  /** Passed to the v6 writer. */
  bootstrapOptions?: WriteBootstrapV6Options
}

export interface BuildImageOptions extends BuildOptions {
  /** The image's layers, lowest first: file paths or byte streams (tar, tar+gzip or tar+zstd). */
  layers: Iterable<LayerSource> | AsyncIterable<LayerSource>
}

export interface LayerBlob {
  /** sha256 hex of the blob file: its OCI layer digest. */
  blobId: string
  /** Position in the bootstrap's blob table. */
  blobIndex: number
  /** Bytes of chunk data in the file, and once uncompressed (4 KiB-aligned, as Nydus records it). */
  compressedSize: number
  uncompressedSize: number
  /** Size of the whole blob file (chunk data, blob.meta, digests, ToC). */
  fileSize: number
  chunkCount: number
}

export interface LayerBuildResult extends ChunkCounts {
  layerIndex: number
  /** Tar entries read (extension headers not counted). */
  entries: number
  /** Absent when the layer brought no chunk that was not already stored: no blob was written. */
  blob?: LayerBlob
}

export interface BuildResult {
  bootstrap: Uint8Array
  image: RafsImage
  layers: LayerBuildResult[]
  /** Prefetch paths that name nothing in the image (skipped). */
  missingPrefetch: string[]
}

export type BuildProgressEvent =
  ProgressEvent<'builder:layer-start', { layerIndex: number }> |
  ProgressEvent<'builder:layer-progress', { layerIndex: number, entries: number, fileBytes: number }> |
  ProgressEvent<'builder:layer-done', LayerBuildResult> |
  ProgressEvent<'builder:bootstrap-done', { size: number, inodeCount: number, blobCount: number }>

export type BuildRunOptions = AbortOptions & ProgressOptions<BuildProgressEvent>

const DEFAULT_CHUNK_SIZE = 1024 * 1024
/** Progress events per layer are spaced by at least this many file bytes. */
const PROGRESS_STEP = 64 * 1024 * 1024

/** One layer's contribution: reads its source into the tree, chunks through `context`. */
type LayerApplier = (tree: LayerTree, context: { index: number, chunker: Chunker, store: ChunkStore, counts: ChunkCounts, signal?: AbortSignal, onEntry: (path: string, fileBytes: number) => void }) => Promise<{ entries: number }>

function signalOnly (options: AbortOptions): AbortOptions {
  return options.signal != null ? { signal: options.signal } : {}
}

/** Builds a Nydus image from OCI layers. */
export async function buildImage (options: BuildImageOptions, run: BuildRunOptions = {}): Promise<BuildResult> {
  throwIfAborted(run)
  async function * appliers (): AsyncGenerator<LayerApplier> {
    for await (const layer of options.layers) {
      yield async (tree, context) => await applyLayer(tree, layer, context)
    }
  }
  return await build(options, appliers(), run)
}

/** Builds a Nydus image whose single layer is a directory on disk (symlinks are stored, never followed). */
export async function buildFromDirectory (dir: string, options: BuildOptions, run: BuildRunOptions = {}): Promise<BuildResult> {
  throwIfAborted(run)
  async function * appliers (): AsyncGenerator<LayerApplier> {
    yield async (tree, context) => await applyDirectory(tree, dir, context)
  }
  return await build(options, appliers(), run)
}

interface LayerState {
  writer?: BlobWriter
  provisionalIndex: number
  result: LayerBuildResult
  finished?: ReturnType<BlobWriter['finish']>
}

async function build (options: BuildOptions, layers: AsyncIterable<LayerApplier>, run: BuildRunOptions): Promise<BuildResult> {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE
  const compressor = options.compressor ?? 'zstd'
  const digester = options.digester ?? 'sha256'
  validateChunkSize(chunkSize)
  const dict = options.chunkDict
  if (dict !== undefined) {
    if (dict.digester !== digester) throw new InvalidArgumentError(`chunk dictionary uses ${dict.digester} digests, the build uses ${digester}`)
    if (dict.chunkSize !== chunkSize) throw new InvalidArgumentError(`chunk dictionary has ${dict.chunkSize}-byte chunks, the build uses ${chunkSize}`)
  }

  const chunker = new Chunker({ chunkSize, digest: data => chunkDigest(data, digester) })
  // Chunks name blobs by provisional index while building: the dictionary's blobs keep theirs,
  // layer i's blob is dictBlobs + i. Final indexes are given once we know which blobs are used.
  const dictBlobs = dict?.blobs ?? []
  if (dict !== undefined) {
    const seen = new Set<RafsNode>()
    const visit = (node: RafsNode): void => {
      if (seen.has(node)) return
      seen.add(node)
      for (const chunk of node.chunks ?? []) chunker.addKnown(chunk)
      for (const entry of node.entries ?? []) visit(entry.node)
    }
    visit(dict.root)
  }

  const tree = new LayerTree()
  const states: LayerState[] = []
  let index = 0
  for await (const apply of layers) {
    throwIfAborted(run)
    const layerIndex = index++
    run.onProgress?.({ type: 'builder:layer-start', detail: { layerIndex } })
    const target = await options.blobSink(layerIndex)
    const state: LayerState = {
      provisionalIndex: dictBlobs.length + layerIndex,
      result: { layerIndex, entries: 0, ...emptyCounts() }
    }
    states.push(state)
    const store: ChunkStore = {
      add: (data, digest) => {
        state.writer ??= new BlobWriter({ compressor, digester, chunkSize, write: bytes => target.write(bytes) })
        const chunk = state.writer.addChunk(data, digest)
        chunk.blobIndex = state.provisionalIndex
        return chunk
      }
    }
    let nextReport = PROGRESS_STEP
    try {
      const { entries } = await apply(tree, {
        index: layerIndex,
        chunker,
        store,
        counts: state.result,
        ...signalOnly(run),
        onEntry: (_path, fileBytes) => {
          state.result.entries++
          if (fileBytes >= nextReport) {
            nextReport = fileBytes + PROGRESS_STEP
            run.onProgress?.({ type: 'builder:layer-progress', detail: { layerIndex, entries: state.result.entries, fileBytes } })
          }
        }
      })
      state.result.entries = entries
      if (state.writer === undefined) {
        await target.discard?.()
      } else {
        state.finished = state.writer.finish()
      }
    } catch (err) {
      await target.discard?.()
      throw err
    }
    if (state.finished !== undefined) {
      const f = state.finished
      state.result.blob = { blobId: f.blobId, blobIndex: -1, compressedSize: f.compressedSize, uncompressedSize: f.uncompressedSize, fileSize: f.fileSize, chunkCount: f.chunkCount }
    }
    // The sink learns the blob's final table index below, once all layers are known; close now.
    if (state.result.blob !== undefined) await target.close?.(state.result.blob)
    run.onProgress?.({ type: 'builder:layer-done', detail: state.result })
  }

  const merged = tree.finish()
  throwIfAborted(run)

  // Which provisional blobs are referenced: every layer blob, and the dictionary blobs some file uses.
  const usedDict = new Set<number>()
  for (const file of merged.files) {
    for (const chunk of file.chunks ?? []) if (chunk.blobIndex < dictBlobs.length) usedDict.add(chunk.blobIndex)
  }
  const finalIndex = new Map<number, number>()
  const blobs: RafsBlob[] = []
  dictBlobs.forEach((blob, i) => {
    if (!usedDict.has(i)) return
    finalIndex.set(i, blobs.length)
    blobs.push({ ...blob, index: blobs.length })
  })
  for (const state of states) {
    if (state.finished === undefined || state.result.blob === undefined) continue
    finalIndex.set(state.provisionalIndex, blobs.length)
    state.result.blob.blobIndex = blobs.length
    blobs.push({ ...state.finished.blob, index: blobs.length })
  }
  for (const file of merged.files) {
    for (const chunk of file.chunks ?? []) {
      const mapped = finalIndex.get(chunk.blobIndex)
      if (mapped === undefined) throw new InvalidArgumentError(`chunk at offset ${chunk.fileOffset} names blob ${chunk.blobIndex}, which no layer or dictionary provides`)
      chunk.blobIndex = mapped
    }
  }

  const { prefetch, missing } = resolvePrefetch(merged.root, options.prefetchFiles ?? [])
  const image: RafsImage = {
    version: 6,
    chunkSize,
    compressor,
    digester,
    blobs,
    root: merged.root,
    prefetch,
    inodeCount: merged.inodeCount
  }
  const bootstrap = writeBootstrapV6(image, options.bootstrapOptions)
  run.onProgress?.({ type: 'builder:bootstrap-done', detail: { size: bootstrap.length, inodeCount: image.inodeCount, blobCount: blobs.length } })
  return { bootstrap, image, layers: states.map(s => s.result), missingPrefetch: missing }
}

/** Image paths → their inodes, in the order given, each once; paths naming nothing are returned apart. */
export function resolvePrefetch (root: RafsNode, paths: readonly string[]): { prefetch: RafsNode[], missing: string[] } {
  const prefetch: RafsNode[] = []
  const missing: string[] = []
  const seen = new Set<RafsNode>()
  for (const path of paths) {
    let node: RafsNode | undefined = root
    let parts: string[]
    try {
      parts = normalizeLayerPath(path)
    } catch {
      missing.push(path)
      continue
    }
    for (const part of parts) {
      node = node?.entries?.find(e => e.name === part)?.node
      if (node === undefined) break
    }
    if (node === undefined) {
      missing.push(path)
    } else if (!seen.has(node)) {
      seen.add(node)
      prefetch.push(node)
    }
  }
  return { prefetch, missing }
}
