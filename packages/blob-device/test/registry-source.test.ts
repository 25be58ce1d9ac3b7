/** backendSource over the registry client's BlobBackend, against a real docker-registry 2.8. */
import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import type { AbortOptions, BlobBackend } from '@shoal/interface'
import { registry } from '@shoal/registry'
import { startRegistry, type RunningRegistry } from '@shoal/registry/test/registry-server'
import { backendSource, blobDevice } from '../src/index.js'
import { chunkSourceCompliance } from './chunk-source-compliance.js'
import { buildTestImage, testBytes } from './images.js'

let server: RunningRegistry
let repoCount = 0
const client = registry({ useAuthFiles: false, retry: { attempts: 2, initialDelayMs: 20, maxDelayMs: 100, maxElapsedMs: 3000 } })

before(async () => { server = await startRegistry() })
after(async () => { await server?.stop() })

async function pushAll (blobDir: string): Promise<string> {
  const repo = `${server.registry}/device/test-${repoCount++}`
  for (const name of readdirSync(blobDir)) await client.pushBlob(repo, { path: join(blobDir, name) })
  return repo
}

chunkSourceCompliance('backendSource over the registry', {
  create: async ({ blobDir }) => ({ source: backendSource(client.blobBackend(await pushAll(blobDir))) })
})

test('a cold read of a file through the registry is one Range request for its run of chunks', async () => {
  const data = testBytes(30 * 4096, 21, true)
  const fixture = await buildTestImage({ '/f': data })
  try {
    const inner = client.blobBackend(await pushAll(fixture.blobDir))
    const ranges: Array<[number, number]> = []
    const counted: BlobBackend = {
      name: inner.name,
      size: async (blobId: string, options?: AbortOptions) => await inner.size(blobId, options),
      read: async (blobId: string, offset: number, length: number, options?: AbortOptions) => {
        ranges.push([offset, length])
        return await inner.read(blobId, offset, length, options)
      }
    }
    const device = blobDevice({ image: fixture.image, sources: [backendSource(counted, 'registry')], readahead: 0 })
    const got = await device.readFile(fixture.node('/f'), 0, data.length)
    assert.ok(Buffer.from(got).equals(data))
    assert.equal(ranges.length, 1)
    assert.equal(device.stats().chunksBySource.registry, fixture.node('/f').chunks!.length)
    await device.close()
  } finally {
    await fixture.cleanup()
  }
})
