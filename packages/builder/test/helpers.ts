import { createHash } from 'node:crypto'
import type { RafsChunk, RafsNode } from '@shoal/rafs'
import { Chunker, emptyCounts, type ChunkCounts, type ChunkStore } from '../src/chunker.js'
import { applyLayer } from '../src/apply-layer.js'
import { LayerTree, type MergedTree } from '../src/tree.js'
import type { LayerSource } from '../src/layer-stream.js'
import { tarArchive, inPieces, type TestEntry } from './tar-writer.js'

export function sha256 (data: Uint8Array): Uint8Array {
  return createHash('sha256').update(data).digest()
}

/** A blob kept in memory, chunks back to back: enough to read files back in tests. */
export class MemoryStore implements ChunkStore {
  readonly chunks: Uint8Array[] = []
  private offset = 0
  constructor (readonly blobIndex: number) {}
  add (data: Uint8Array, digest: Uint8Array): RafsChunk {
    const chunk: RafsChunk = {
      blobIndex: this.blobIndex,
      index: this.chunks.length,
      digest,
      compressedOffset: this.offset,
      compressedSize: data.length,
      uncompressedOffset: this.offset,
      uncompressedSize: data.length,
      fileOffset: 0,
      compressed: false
    }
    this.chunks.push(data.slice())
    this.offset += data.length
    return chunk
  }
}

/** A store that keeps nothing (for memory tests). */
export class CountingStore implements ChunkStore {
  count = 0
  add (data: Uint8Array, digest: Uint8Array): RafsChunk {
    return { blobIndex: 0, index: this.count++, digest, compressedOffset: 0, compressedSize: data.length, uncompressedOffset: 0, uncompressedSize: data.length, fileOffset: 0, compressed: false }
  }
}

export interface MergeResult {
  merged: MergedTree
  stores: MemoryStore[]
  counts: ChunkCounts[]
  chunker: Chunker
}

export async function mergeLayers (layers: Array<TestEntry[] | LayerSource>, options: { chunkSize?: number, chunker?: Chunker } = {}): Promise<MergeResult> {
  const chunker = options.chunker ?? new Chunker({ chunkSize: options.chunkSize ?? 4096, digest: sha256 })
  const tree = new LayerTree()
  const stores: MemoryStore[] = []
  const counts: ChunkCounts[] = []
  for (const [index, layer] of layers.entries()) {
    const store = new MemoryStore(index)
    const layerCounts = emptyCounts()
    const source = Array.isArray(layer) ? inPieces(tarArchive(layer), 1000) : layer
    await applyLayer(tree, source, { index, chunker, store, counts: layerCounts })
    stores.push(store)
    counts.push(layerCounts)
  }
  return { merged: tree.finish(), stores, counts, chunker }
}

/** `path type` lines for the whole tree, depth first, entries in stored order. */
export function listing (root: RafsNode): string[] {
  const out: string[] = []
  const visit = (dir: RafsNode, prefix: string): void => {
    for (const entry of dir.entries ?? []) {
      const path = `${prefix}/${entry.name}`
      out.push(`${path} ${entry.node.type}`)
      if (entry.node.type === 'directory') visit(entry.node, path)
    }
  }
  visit(root, '')
  return out
}

export function lookup (root: RafsNode, path: string): RafsNode | undefined {
  let at: RafsNode | undefined = root
  for (const part of path.split('/').filter(p => p !== '')) {
    at = at?.entries?.find(e => e.name === part)?.node
    if (at === undefined) return undefined
  }
  return at
}

/** A file's bytes put back together from the in-memory blobs. */
export function fileBytes (node: RafsNode, stores: MemoryStore[]): Buffer {
  const out = Buffer.alloc(node.size)
  for (const chunk of node.chunks ?? []) {
    out.set(stores[chunk.blobIndex].chunks[chunk.index], chunk.fileOffset)
  }
  return out
}
