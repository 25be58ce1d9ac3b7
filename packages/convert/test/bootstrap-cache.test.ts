import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { bootstrapLayerDirectory } from '../src/index.js'

const dirs: string[] = []
after(async () => { await Promise.all(dirs.map(async dir => { await rm(dir, { recursive: true, force: true }) })) })

async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-bootstrap-cache-'))
  dirs.push(dir)
  return dir
}

const bytes = Buffer.from('a bootstrap layer, gzip in life, any bytes here')
const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`

test('a layer put is got back by its digest; an unknown digest is absent; nothing partial is left', async () => {
  const dir = join(await tempDir(), 'bootstraps')
  const cache = bootstrapLayerDirectory(dir)
  assert.equal(await cache.get(digest), undefined, 'absent before, even with no directory')
  await cache.put(digest, bytes)
  assert.deepEqual(Buffer.from((await cache.get(digest))!), bytes)
  assert.deepEqual(await readdir(dir), [`sha256-${digest.slice(7)}`])
  const other = `sha256:${'0'.repeat(64)}`
  assert.equal(await cache.get(other), undefined)
  assert.equal(cache.damaged, 0)
})

test('a file whose bytes do not match its digest is removed, counted, and reads as absent', async () => {
  const dir = await tempDir()
  const cache = bootstrapLayerDirectory(dir)
  await cache.put(digest, bytes)
  const flipped = Buffer.from(bytes)
  flipped[3]! ^= 1
  await writeFile(join(dir, `sha256-${digest.slice(7)}`), flipped)
  assert.equal(await cache.get(digest), undefined)
  assert.equal(cache.damaged, 1)
  assert.deepEqual(await readdir(dir), [])
})

test('a digest that is not sha256 or sha512 hex is refused before any path is made of it', async () => {
  const cache = bootstrapLayerDirectory(await tempDir())
  await assert.rejects(cache.get('sha256:../../etc/passwd'), /not a sha256 or sha512 digest/)
  await assert.rejects(cache.put('md5:abc', bytes), /not a sha256 or sha512 digest/)
})
