/**
 * SwarmChunkSource against blob-device's ChunkSource compliance suite: a real peer process
 * caches every chunk of the suite's blobs (uncompressed, as the daemon's cache holds them) and
 * provides them; a node in this process asks for them through the DHT and the chunk protocol.
 */
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import type { ChunkRef, ChunkSource } from '@shoal/interface'
import { chunkRefOf, decodeChunkRef, walk, type RafsImage } from '@shoal/rafs'
import { swarm } from '../src/index.js'
import { MemoryChunkStore } from './fixture.js'
import { startNode } from './harness.js'

interface ChunkSourceFactory {
  create: (fixture: { blobDir: string, image: RafsImage }) => Promise<{ source: ChunkSource, close?: () => Promise<void> }>
}

// The suite lives in blob-device's tests (compiled beside this package's): load the built file.
const suitePath = new URL('../../../blob-device/dist/test/chunk-source-compliance.js', import.meta.url).href
const { chunkSourceCompliance } = await import(suitePath) as { chunkSourceCompliance: (name: string, factory: ChunkSourceFactory) => void }

const LOOPBACK = { listen: ['/ip4/127.0.0.1/tcp/0'], allow: ['/ip4/127.0.0.1'] }

/** Every chunk of the image once, with its verified uncompressed bytes read from the blob files. */
async function cachedChunks (blobDir: string, image: RafsImage): Promise<Array<{ ref: ChunkRef, bytes: Uint8Array }>> {
  const refs = new Map<string, ChunkRef>()
  walk(image.root, (_path, node) => {
    for (const chunk of node.chunks ?? []) {
      const ref = chunkRefOf(chunk, image.blobs[chunk.blobIndex]!)
      refs.set(`${ref.blobId}/${ref.index}`, ref)
    }
  })
  const out: Array<{ ref: ChunkRef, bytes: Uint8Array }> = []
  for (const ref of refs.values()) {
    const file = await open(join(blobDir, ref.blobId), 'r')
    try {
      const stored = Buffer.alloc(ref.compressedSize)
      await file.read(stored, 0, stored.length, ref.compressedOffset)
      out.push({ ref, bytes: decodeChunkRef(stored, ref) })
    } finally {
      await file.close()
    }
  }
  return out
}

chunkSourceCompliance('SwarmChunkSource (a peer process serving a cached blob)', {
  create: async ({ blobDir, image }) => {
    const peer = await startNode({ swarm: { ...LOOPBACK, seed: true } })
    const chunks = await cachedChunks(blobDir, image)
    for (const { ref, bytes } of chunks) {
      await peer.call('put', { blobId: ref.blobId, index: ref.index, base64: Buffer.from(bytes).toString('base64') })
    }
    const blobIds = [...new Set(chunks.map(c => c.ref.blobId))]
    const client = swarm({ ...LOOPBACK, bootstrap: [peer.multiaddrs[0]!] })({ chunkStore: new MemoryChunkStore() })
    await client.start()
    try {
      for (const blobId of blobIds) await peer.call('provide', { blobId })
      // The DHT needs a moment after a provide; the source caches an empty answer, so wait here.
      for (const blobId of blobIds) {
        const until = Date.now() + 15_000
        while ((await client.findProviders(blobId, { timeout: 200 })).length === 0) {
          if (Date.now() > until) throw new Error(`no provider of blob ${blobId} found after 15 s`)
          await new Promise(resolve => setTimeout(resolve, 100))
        }
      }
    } catch (err) {
      await client.stop()
      await peer.stop()
      throw err
    }
    return {
      source: client.chunkSource,
      close: async () => {
        await client.stop()
        await peer.stop()
      }
    }
  }
})
