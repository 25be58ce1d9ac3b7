/** Test images built with the real builder into temporary directories. */
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { buildFromDirectory, type BlobSink } from '@shoal/builder'
import { readBootstrapV6, type Compressor, type RafsImage, type RafsNode } from '@shoal/rafs'

export interface TestImage {
  dir: string
  blobDir: string
  image: RafsImage
  contents: Map<string, Uint8Array>
  node: (path: string) => RafsNode
  cleanup: () => Promise<void>
}

/** Bytes that compress a little: random runs mixed with repeats, deterministic per seed. */
export function testBytes (size: number, seed: number, compressible = false): Uint8Array {
  const out = new Uint8Array(size)
  let x = (seed * 2654435761) | 1
  for (let i = 0; i < size; i++) {
    if (!compressible || (i & 0x40) === 0) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5
      out[i] = x & 0xff
    } else {
      out[i] = i & 0x0f
    }
  }
  return out
}

function fileSink (dir: string): BlobSink {
  return (layerIndex) => {
    const temp = join(dir, `layer-${layerIndex}.partial`)
    const fd = openSync(temp, 'w')
    return {
      write: (bytes) => { for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done) },
      close: (blob) => { closeSync(fd); renameSync(temp, join(dir, blob.blobId)) },
      discard: () => { closeSync(fd); rmSync(temp) }
    }
  }
}

export function lookup (root: RafsNode, path: string): RafsNode {
  let node = root
  for (const name of path.split('/').filter(Boolean)) {
    const next = node.entries?.find(e => e.name === name)?.node
    if (next == null) throw new Error(`no ${path} in the image`)
    node = next
  }
  return node
}

export async function buildTestImage (files: Record<string, Uint8Array>, options: { chunkSize?: number, compressor?: Compressor, prefetchFiles?: string[] } = {}): Promise<TestImage> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-device-'))
  const src = join(dir, 'src')
  const blobDir = join(dir, 'blobs')
  mkdirSync(blobDir, { recursive: true })
  const contents = new Map<string, Uint8Array>()
  for (const [path, data] of Object.entries(files)) {
    mkdirSync(dirname(join(src, path)), { recursive: true })
    writeFileSync(join(src, path), data)
    contents.set(path, data)
  }
  const result = await buildFromDirectory(src, {
    chunkSize: options.chunkSize ?? 4096,
    compressor: options.compressor ?? 'zstd',
    prefetchFiles: options.prefetchFiles,
    blobSink: fileSink(blobDir)
  })
  const image = readBootstrapV6(result.bootstrap)
  return {
    dir,
    blobDir,
    image,
    contents,
    node: (path) => lookup(image.root, path),
    cleanup: async () => { await rm(dir, { recursive: true, force: true }) }
  }
}
