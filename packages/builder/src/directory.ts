/**
 * A directory on disk as a single layer. Entries are read with lstat and readlink: symlinks are
 * stored as symlinks and never followed. Extended attributes are not read (Node has no API).
 */
import { createReadStream } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { throwIfAborted, type AbortOptions } from '@shoal/interface'
import { nodeTypeOfMode } from '@shoal/rafs'
import type { ChunkCounts, ChunkStore, Chunker } from './chunker.js'
import { joinLayerPath } from './path.js'
import type { LayerTree, NodeSpec } from './tree.js'
import { readTreeXattrs } from './xattrs.js'

export interface ApplyDirectoryContext extends AbortOptions {
  index: number
  chunker: Chunker
  store: ChunkStore
  counts: ChunkCounts
  onEntry?: (path: string, fileBytes: number) => void
}

/** glibc's dev_t layout (what stat returns) → major and minor. */
function splitDevice (rdev: bigint): { major: number, minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn))
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn))
  return { major, minor }
}

export async function applyDirectory (tree: LayerTree, dir: string, context: ApplyDirectoryContext): Promise<{ entries: number }> {
  const options: AbortOptions = context.signal != null ? { signal: context.signal } : {}
  tree.beginLayer(context.index)
  const firstPathOfInode = new Map<string, string>()
  const xattrsByPath = await readTreeXattrs(dir)
  let entries = 0
  let fileBytes = 0
  // Depth first with an explicit stack: deep trees do not grow the call stack.
  const stack: string[][] = [[]]
  while (stack.length > 0) {
    throwIfAborted(options)
    const parts = stack.pop() as string[]
    const path = join(dir, ...parts)
    const stat = await lstat(path, { bigint: true })
    const type = nodeTypeOfMode(Number(stat.mode))
    if (type === undefined) continue
    entries++
    const layerPath = joinLayerPath(parts)
    const spec: NodeSpec = {
      type,
      mode: Number(stat.mode) & 0o7777,
      uid: Number(stat.uid),
      gid: Number(stat.gid),
      mtime: Number(stat.mtimeNs / 1_000_000_000n),
      mtimeNsec: Number(stat.mtimeNs % 1_000_000_000n),
      xattrs: xattrsByPath.get(resolve(path)) ?? new Map()
    }
    if (type !== 'directory' && stat.nlink > 1n) {
      const key = `${stat.dev}:${stat.ino}`
      const first = firstPathOfInode.get(key)
      if (first !== undefined) {
        tree.link(parts, first, layerPath)
        context.onEntry?.(layerPath, fileBytes)
        continue
      }
      firstPathOfInode.set(key, layerPath)
    }
    if (type === 'file') {
      const { chunks, size } = await context.chunker.chunkFile(createReadStream(path, { highWaterMark: 1024 * 1024, ...options }), context.store, context.counts, options)
      spec.chunks = chunks
      spec.size = size
      fileBytes += size
    } else if (type === 'symlink') {
      spec.target = await readlink(path)
    } else if (type === 'char' || type === 'block') {
      const { major, minor } = splitDevice(stat.rdev)
      spec.devMajor = major
      spec.devMinor = minor
    }
    tree.add(parts, spec, layerPath)
    context.onEntry?.(layerPath, fileBytes)
    if (type === 'directory') {
      const names = (await readdir(path)).sort()
      for (let i = names.length - 1; i >= 0; i--) stack.push([...parts, names[i]])
    }
  }
  return { entries }
}
