/**
 * Child process of the SIGKILL test: writes chunks of many blobs into the cache at argv[2] in an
 * endless loop, several at once, under a cap small enough that evictions run too. The parent
 * kills it with SIGKILL at random moments and checks what a reopened cache holds.
 */
import { openChunkCache } from '../src/index.js'
import { crashChunkKey, crashChunkBytes, blobIdOf } from './chunk-data.js'

const dir = process.argv[2]
const cache = await openChunkCache({ path: dir, maxBytes: 4 * 1024 * 1024 })
process.stdout.write('ready\n')
// Runs until killed; the bound only guards against a parent that never kills.
for (let n = 0; n < 1_000_000; n++) {
  // Random blobs and slots, so unwritten slots lie below written ones (holes, not just a short file).
  const blobId = blobIdOf(`crash-${Math.floor(Math.random() * 40)}`)
  const indexes = new Set(Array.from({ length: 8 }, () => Math.floor(Math.random() * 64)))
  await Promise.all([...indexes].map(async (index) => {
    await cache.put(crashChunkKey(blobId, index), crashChunkBytes(blobId, index))
  }))
}
