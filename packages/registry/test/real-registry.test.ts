/**
 * Against a real registry: Debian's docker-registry (CNCF distribution 2.8) started per suite.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { BlobNotFoundError, ManifestNotFoundError } from '@shoal/interface'
import {
  BlobRangeError, MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_INDEX,
  MEDIA_TYPE_OCI_MANIFEST, PlatformNotFoundError, RegistryAuthError, registry
} from '../src/index.js'
import type { RegistryClient } from '../src/index.js'
import { startRegistry } from './registry-server.js'
import type { RunningRegistry } from './registry-server.js'

const fastRetry = { attempts: 3, initialDelayMs: 20, maxDelayMs: 100, maxElapsedMs: 5000 }

function sha256 (bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

describe('a real registry without auth', () => {
  let server: RunningRegistry
  let client: RegistryClient
  let scratch: string

  before(async () => {
    server = await startRegistry()
    client = registry({ useAuthFiles: false, retry: fastRetry })
    scratch = await mkdtemp(join(tmpdir(), 'shoal-registry-test-'))
  })
  after(async () => {
    await server?.stop()
    if (scratch != null) await rm(scratch, { recursive: true, force: true })
  })

  test('GET /v2/ answers', async () => {
    await client.ping(server.registry)
  })

  test('a blob pushed monolithic comes back whole, by HEAD, GET and into a file; a second push is skipped', async () => {
    const data = randomBytes(100_000)
    const repo = `${server.registry}/mono/app`
    const pushed = await client.pushBlob(repo, data)
    assert.deepEqual(pushed, { digest: sha256(data), size: data.byteLength, how: 'monolithic' })
    assert.deepEqual(await client.headBlob(repo, pushed.digest), { size: data.byteLength })
    assert.deepEqual(Buffer.from(await client.getBlobBytes(repo, pushed.digest)), data)

    const target = join(scratch, 'mono.blob')
    const got = await client.getBlob(repo, pushed.digest, target)
    assert.equal(got.size, data.byteLength)
    assert.deepEqual(await readFile(target), data)
    assert.deepEqual((await readdir(scratch)).filter(f => f.includes('.partial-')), [])

    assert.equal((await client.pushBlob(repo, data)).how, 'exists')
  })

  test('a blob pushed in chunks (PATCH with Content-Range) from a file reads back byte for byte', async () => {
    const data = randomBytes(300_001)
    const file = join(scratch, 'chunked.src')
    await writeFile(file, data)
    const repo = `${server.registry}/chunked/app`
    const progress: number[] = []
    const pushed = await client.pushBlob(repo, { path: file }, { chunkSize: 64 * 1024, onProgress: e => progress.push(e.detail.bytes) })
    assert.equal(pushed.how, 'chunked')
    assert.equal(pushed.digest, sha256(data))
    assert.deepEqual(progress, [65536, 131072, 196608, 262144, 300001])

    const parts: Buffer[] = []
    const sink = new Writable({ write (chunk: Buffer, _encoding, callback) { parts.push(chunk); callback() } })
    await client.getBlob(repo, pushed.digest, sink, { size: data.byteLength })
    assert.deepEqual(Buffer.concat(parts), data)
  })

  test('Range reads return exactly the asked bytes; past the end is a BlobRangeError', async () => {
    const data = randomBytes(50_000)
    const repo = `${server.registry}/range/app`
    const { digest } = await client.pushBlob(repo, data)
    assert.deepEqual(Buffer.from(await client.readBlob(repo, digest, 1000, 5000)), data.subarray(1000, 6000))
    assert.deepEqual(Buffer.from(await client.readBlob(repo, digest, 49_999, 1)), data.subarray(49_999))
    assert.deepEqual(Buffer.from(await client.readBlob(repo, digest, 0, 50_000)), data)
    await assert.rejects(client.readBlob(repo, digest, 49_000, 2000), (err: unknown) =>
      err instanceof BlobRangeError && err.size === 50_000 && err.offset === 49_000)
    await assert.rejects(client.readBlob(repo, digest, 60_000, 10), BlobRangeError)

    const backend = client.blobBackend(repo)
    const blobId = digest.slice('sha256:'.length)
    assert.equal(await backend.size(blobId), 50_000)
    assert.deepEqual(Buffer.from(await backend.read(blobId, 7, 9)), data.subarray(7, 16))
    await assert.rejects(backend.size('0'.repeat(64)), BlobNotFoundError)
  })

  test('a missing blob is BlobNotFoundError on GET and undefined on HEAD', async () => {
    const repo = `${server.registry}/range/app`
    const missing = sha256(Buffer.from('not pushed'))
    assert.equal(await client.headBlob(repo, missing), undefined)
    await assert.rejects(client.getBlob(repo, missing, join(scratch, 'missing')), BlobNotFoundError)
    await assert.rejects(client.readBlob(repo, missing, 0, 10), BlobNotFoundError)
    assert.deepEqual((await readdir(scratch)).filter(f => f.startsWith('missing')), [])
  })

  test('a blob in another repository is mounted, not uploaded', async () => {
    const data = randomBytes(20_000)
    const source = `${server.registry}/mount/source`
    const target = `${server.registry}/mount/target`
    const { digest } = await client.pushBlob(source, data)
    assert.equal(await client.headBlob(target, digest), undefined)
    const pushed = await client.pushBlob(target, data, { mountFrom: ['mount/elsewhere', 'mount/source'] })
    assert.equal(pushed.how, 'mounted')
    assert.deepEqual(await client.headBlob(target, digest), { size: 20_000 })
    assert.deepEqual(Buffer.from(await client.getBlobBytes(target, digest)), data)

    const absent = sha256(Buffer.from('nowhere'))
    assert.equal(await client.mountBlob(target, absent, 'mount/source'), false)
    // A refused mount's session is used for the upload itself.
    const other = randomBytes(1000)
    assert.equal((await client.pushBlob(`${server.registry}/mount/third`, other, { mountFrom: ['mount/source'] })).how, 'monolithic')
    assert.deepEqual(Buffer.from(await client.getBlobBytes(`${server.registry}/mount/third`, sha256(other))), other)
  })

  test('OCI and Docker manifests go up and come back by tag and digest, bytes and digests intact', async () => {
    const repo = `${server.registry}/manifests/app`
    const layer = randomBytes(4096)
    const ociConfig = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
    await client.pushBlob(repo, layer)
    await client.pushBlob(repo, ociConfig)
    const oci = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_OCI_MANIFEST,
      config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: sha256(ociConfig), size: ociConfig.byteLength },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.byteLength }]
    }
    const bytes = Buffer.from(JSON.stringify(oci, null, 2))
    const put = await client.putManifest(`${repo}:oci`, bytes)
    assert.equal(put.digest, sha256(bytes))

    const byTag = await client.getManifest(`docker://${repo}:oci`)
    assert.equal(byTag.digest, put.digest)
    assert.equal(byTag.mediaType, MEDIA_TYPE_OCI_MANIFEST)
    assert.deepEqual(Buffer.from(byTag.bytes), bytes)
    const byDigest = await client.getManifest(`${repo}@${put.digest}`)
    assert.deepEqual(Buffer.from(byDigest.bytes), bytes)
    assert.deepEqual(await client.headManifest(`${repo}:oci`), { digest: put.digest, mediaType: MEDIA_TYPE_OCI_MANIFEST, size: bytes.byteLength })
    assert.equal(await client.headManifest(`${repo}:nope`), undefined)
    await assert.rejects(client.getManifest(`${repo}:nope`), ManifestNotFoundError)

    const dockerConfig = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', docker: true }))
    await client.pushBlob(repo, dockerConfig)
    const docker = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_DOCKER_MANIFEST,
      config: { mediaType: MEDIA_TYPE_DOCKER_CONFIG, digest: sha256(dockerConfig), size: dockerConfig.byteLength },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: sha256(layer), size: layer.byteLength }]
    }
    const dockerPut = await client.putManifest(`${repo}:docker`, docker)
    const resolved = await client.resolveImage(`${repo}:docker`)
    assert.equal(resolved.mediaType, MEDIA_TYPE_DOCKER_MANIFEST)
    assert.equal(resolved.digest, dockerPut.digest)
    assert.equal(resolved.manifest.config.digest, sha256(dockerConfig))
    assert.equal(resolved.index, undefined)
  })

  test('an index with two platforms: linux/amd64 by default, linux/arm64 on request, an absent one named', async () => {
    const repo = `${server.registry}/multi/app`
    const digests: Record<string, string> = {}
    const descriptors = []
    for (const architecture of ['amd64', 'arm64']) {
      const config = Buffer.from(JSON.stringify({ architecture, os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
      const layer = Buffer.from(`layer for ${architecture}`)
      await client.pushBlob(repo, config)
      await client.pushBlob(repo, layer)
      const manifest = {
        schemaVersion: 2,
        mediaType: MEDIA_TYPE_OCI_MANIFEST,
        config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: sha256(config), size: config.byteLength },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.byteLength }]
      }
      const bytes = Buffer.from(JSON.stringify(manifest))
      const put = await client.putManifest(`${repo}@${sha256(bytes)}`, bytes)
      digests[architecture] = put.digest
      descriptors.push({ mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: put.digest, size: bytes.byteLength, platform: { architecture, os: 'linux' } })
    }
    const index = { schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, manifests: descriptors.reverse() }
    const indexPut = await client.putManifest(`${repo}:multi`, index)

    const amd64 = await client.resolveImage(`${repo}:multi`)
    assert.equal(amd64.digest, digests.amd64)
    assert.equal(amd64.index?.digest, indexPut.digest)
    assert.equal(amd64.manifest.layers[0]?.size, 'layer for amd64'.length)

    const arm64 = await registry({ useAuthFiles: false, platform: 'linux/arm64' }).resolveImage(`${repo}:multi`)
    assert.equal(arm64.digest, digests.arm64)
    assert.equal((await client.resolveImage(`${repo}:multi`, { platform: 'linux/arm64/v8' })).digest, digests.arm64)

    await assert.rejects(client.resolveImage(`${repo}:multi`, { platform: 'linux/s390x' }), (err: unknown) =>
      err instanceof PlatformNotFoundError && /linux\/s390x/.test(err.message) && err.available.includes('linux/amd64') && err.available.includes('linux/arm64'))

    const raw = await client.getManifest(`${repo}:multi`)
    assert.equal(raw.mediaType, MEDIA_TYPE_OCI_INDEX)
    assert.equal(raw.digest, indexPut.digest)
  })
})

describe('a real registry with htpasswd auth', () => {
  let server: RunningRegistry
  let scratch: string

  before(async () => {
    server = await startRegistry({ auth: true })
    scratch = await mkdtemp(join(tmpdir(), 'shoal-registry-auth-'))
  })
  after(async () => {
    await server?.stop()
    if (scratch != null) await rm(scratch, { recursive: true, force: true })
  })

  test('the right password pushes and pulls; a wrong one fails once, clearly, and pushes nothing', async () => {
    const good = registry({ useAuthFiles: false, retry: fastRetry, credentials: { [server.registry]: { username: server.username as string, password: server.password as string } } })
    const logged: string[] = []
    const bad = registry({ useAuthFiles: false, retry: fastRetry, credentials: { [server.registry]: { username: 'mallory', password: 'hunter2' } }, log: line => logged.push(line) })
    const repo = `${server.registry}/private/app`
    const data = randomBytes(2000)

    await assert.rejects(bad.pushBlob(repo, data), (err: unknown) => {
      assert.ok(err instanceof RegistryAuthError, String(err))
      assert.equal(err.status, 401)
      assert.equal(err.username, 'mallory')
      assert.equal(err.registry, server.registry)
      assert.match(err.message, /authentication failed at registry 127\.0\.0\.1:\d+ as user "mallory"/)
      assert.doesNotMatch(err.message, /hunter2/)
      return true
    })
    // One anonymous try, one with the (wrong) password, then the error: no retries of a 401.
    assert.equal(logged.length, 2, logged.join('\n'))
    assert.ok(logged.every(line => line.endsWith('-> 401')))
    assert.ok(logged.every(line => !line.includes('hunter2') && !line.includes(Buffer.from('mallory:hunter2').toString('base64'))))
    assert.equal(await good.headBlob(repo, sha256(data)), undefined)

    await assert.rejects(registry({ useAuthFiles: false }).ping(server.registry), (err: unknown) =>
      err instanceof RegistryAuthError && /anonymously/.test(err.message))

    await good.ping(server.registry)
    assert.equal((await good.pushBlob(repo, data)).how, 'monolithic')
    assert.deepEqual(Buffer.from(await good.readBlob(repo, sha256(data), 10, 20)), data.subarray(10, 30))
  })

  test('credentials come from ~/.docker/config.json (base64 auth) and REGISTRY_AUTH_FILE (username/password)', async () => {
    const home = join(scratch, 'home')
    await writeFile(join(scratch, 'placeholder'), '')
    const { mkdir } = await import('node:fs/promises')
    await mkdir(join(home, '.docker'), { recursive: true })
    const auth = Buffer.from(`${server.username as string}:${server.password as string}`).toString('base64')
    await writeFile(join(home, '.docker', 'config.json'), JSON.stringify({ auths: { [server.registry]: { auth } } }))
    await registry({ home, env: {} }).ping(server.registry)

    const authFile = join(scratch, 'containers-auth.json')
    await writeFile(authFile, JSON.stringify({ auths: { [`http://${server.registry}`]: { username: server.username, password: server.password } } }))
    await registry({ home: join(scratch, 'nohome'), env: { REGISTRY_AUTH_FILE: authFile } }).ping(server.registry)

    await assert.rejects(registry({ home: join(scratch, 'nohome'), env: {} }).ping(server.registry), RegistryAuthError)
  })
})
