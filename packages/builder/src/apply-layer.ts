import type { AbortOptions } from '@shoal/interface'
import type { ChunkCounts, ChunkStore, Chunker } from './chunker.js'
import { openLayer, type LayerSource } from './layer-stream.js'
import { normalizeLayerPath } from './path.js'
import { readTar } from './tar.js'
import { LayerTree, type NodeSpec } from './tree.js'

export interface ApplyLayerContext extends AbortOptions {
  index: number
  chunker: Chunker
  store: ChunkStore
  counts: ChunkCounts
  /** Called after each entry with the number of file bytes chunked so far in this layer. */
  onEntry?: (path: string, fileBytes: number) => void
}

/** Streams one layer (tar, tar+gzip or tar+zstd) into the tree; file data goes through the chunker. */
export async function applyLayer (tree: LayerTree, layer: LayerSource, context: ApplyLayerContext): Promise<{ entries: number }> {
  const options: AbortOptions = context.signal != null ? { signal: context.signal } : {}
  tree.beginLayer(context.index)
  let entries = 0
  let fileBytes = 0
  for await (const entry of readTar(openLayer(layer, options), options)) {
    entries++
    const parts = normalizeLayerPath(entry.path)
    if (LayerTree.isWhiteout(parts)) {
      tree.whiteout(parts)
    } else if (entry.type === 'hardlink') {
      tree.link(parts, entry.linkpath ?? '', entry.path)
    } else {
      const spec: NodeSpec = {
        type: entry.type,
        mode: entry.mode,
        uid: entry.uid,
        gid: entry.gid,
        mtime: entry.mtime,
        mtimeNsec: entry.mtimeNsec,
        xattrs: entry.xattrs,
        devMajor: entry.devMajor,
        devMinor: entry.devMinor
      }
      if (entry.type === 'symlink') spec.target = entry.linkpath ?? ''
      if (entry.type === 'file') {
        const { chunks, size } = await context.chunker.chunkFile(entry.body, context.store, context.counts, options)
        spec.chunks = chunks
        spec.size = size
        fileBytes += size
      }
      tree.add(parts, spec, entry.path)
    }
    context.onEntry?.(entry.path, fileBytes)
  }
  return { entries }
}
