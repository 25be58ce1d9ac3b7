/**
 * `shoal convert` end to end against a real registry (Debian docker-registry on loopback) and
 * OCI layouts, on images built with umoci and pushed with skopeo: the unpacked Nydus image must
 * equal `umoci unpack` of its source, `shoal check` must pass, the chunk dictionary must keep
 * known chunks out of new blobs, and wrong credentials must push nothing.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import {
  ANNOTATION_NYDUS_BLOB, ANNOTATION_NYDUS_BOOTSTRAP, ANNOTATION_NYDUS_FS_VERSION, MEDIA_TYPE_NYDUS_BLOB, MEDIA_TYPE_OCI_LAYER_GZIP
} from '@shoal/interface'
import type { ImageConfig, ImageManifest } from '@shoal/interface'
import { registry } from '@shoal/registry'
import { startRegistry, TEST_PASSWORD, TEST_USERNAME } from '@shoal/registry/test/registry-server'
import type { RunningRegistry } from '@shoal/registry/test/registry-server'
import { ociLayout } from '@shoal/oci-layout'
import { fixtures, shoal, withTempDir } from './helpers.js'
import {
  buildBusyboxImage, buildMultiLayerImage, buildTarLayerImage, compareTrees, describeTree, pushWithSkopeo, registryFiles, run, umociUnpack
} from './oci-images.js'

const TIMEOUT = { timeout: 240_000 }

async function withRegistry<T> (options: Parameters<typeof startRegistry>[0], fn: (server: RunningRegistry) => Promise<T>): Promise<T> {
  const server = await startRegistry(options)
  try {
    return await fn(server)
  } finally {
    await server.stop()
  }
}

type Builder = (layout: string, tag: string, work: string) => Promise<void>
const images: Array<{ name: string, build: Builder, expect: (tree: Awaited<ReturnType<typeof describeTree>>) => void }> = [
  {
    name: 'busybox',
    build: buildBusyboxImage,
    expect: tree => {
      assert.equal(tree.get('/bin/sh')?.links?.includes('/bin/busybox'), true, 'sh is a hard link of busybox')
      assert.equal(tree.get('/bin/echo')?.target, 'busybox')
    }
  },
  {
    name: 'multi-layer',
    build: buildMultiLayerImage,
    expect: tree => {
      assert.equal(tree.has('/data/gone.txt'), false, 'the whiteout hid gone.txt')
      assert.equal(tree.has('/olddir/a'), false, 'the opaque directory hid a')
      assert.equal(tree.get('/olddir/c')?.xattrs['user.opaque'], '0x796573')
      assert.equal(tree.get('/data/keep.txt')?.xattrs['user.shoal'], '0x6c617965722d6f6e65')
      assert.equal(tree.get('/data/keep.txt')?.uid, 1234)
      assert.equal(tree.get('/dev/loop9')?.type, 'block')
      assert.equal(tree.get('/dev/fifo')?.type, 'fifo')
      assert.equal(tree.get('/data/abslink')?.target, '/etc/hello')
      assert.equal(tree.get('/bin/tool')?.mode, 0o4755)
    }
  },
  {
    name: 'all-entry-type',
    build: async (layout, tag, work) => { await buildTarLayerImage(layout, tag, join(fixtures, 'tar', 'all-entry-type.tar'), work) },
    expect: tree => {
      assert.deepEqual(tree.get('/tar/dir2/hardlink3.txt')?.links, ['/tar/dir1/dir3/hardlink1.txt', '/tar/dir1/dir3/xfile.txt', '/tar/dir1/hardlink2.txt'])
      assert.equal(tree.get('/tar/dir2/symlink1.txt')?.target, '../dir1/dir3/file1.txt')
    }
  }
]

async function assertNydusManifest (server: RunningRegistry, reference: string): Promise<ImageManifest> {
  const client = registry()
  const image = await client.resolveImage(`docker://${server.registry}/${reference}`)
  const layers = image.manifest.layers
  assert.ok(layers.length >= 2)
  for (const blob of layers.slice(0, -1)) {
    assert.equal(blob.mediaType, MEDIA_TYPE_NYDUS_BLOB)
    assert.deepEqual(blob.annotations, { [ANNOTATION_NYDUS_BLOB]: 'true' })
  }
  const boot = layers[layers.length - 1]
  assert.equal(boot.mediaType, MEDIA_TYPE_OCI_LAYER_GZIP)
  assert.deepEqual(boot.annotations, { [ANNOTATION_NYDUS_BOOTSTRAP]: 'true', [ANNOTATION_NYDUS_FS_VERSION]: '6' })
  const config = JSON.parse(Buffer.from(await client.getBlobBytes(image.reference, image.manifest.config.digest)).toString()) as ImageConfig
  assert.equal(config.rootfs.diff_ids.length, layers.length)
  assert.deepEqual(config.rootfs.diff_ids.slice(0, -1), layers.slice(0, -1).map(l => l.digest), 'a blob is its own diff_id')
  return image.manifest
}

for (const image of images) {
  test(`${image.name}: convert docker:// → docker://…-nydus, unpack equals umoci unpack, check passes`, TIMEOUT, async () => {
    await withTempDir(async dir => {
      await withRegistry({}, async server => {
        const layout = join(dir, 'src')
        await image.build(layout, 'v1', dir)
        await pushWithSkopeo(layout, 'v1', `docker://${server.registry}/img:v1`)
        const converted = await shoal(['convert', `docker://${server.registry}/img:v1`, `docker://${server.registry}/img:v1-nydus`, '--json'])
        assert.equal(converted.code, 0, converted.stderr)
        const summary = JSON.parse(converted.stdout)
        assert.equal(summary.target.tag, 'v1-nydus')
        const manifest = await assertNydusManifest(server, 'img:v1-nydus')
        assert.equal(manifest.annotations?.['containerd.io/snapshot/nydus-source-digest'], summary.source.digest)

        const reference = await umociUnpack(layout, 'v1', join(dir, 'reference'))
        const out = join(dir, 'unpacked')
        const unpacked = await shoal(['unpack', `docker://${server.registry}/img:v1-nydus`, out])
        assert.equal(unpacked.code, 0, unpacked.stderr)
        assert.deepEqual(await compareTrees(reference, out), [])
        image.expect(await describeTree(out))

        const checked = await shoal(['check', `docker://${server.registry}/img:v1-nydus`])
        assert.equal(checked.code, 0, checked.stderr)
        assert.match(checked.stdout, /^ok: \d+ chunks/)
        const inspected = await shoal(['inspect', `docker://${server.registry}/img:v1-nydus`, '--stats', '--json'])
        assert.equal(JSON.parse(inspected.stdout).version, 6)
      })
    })
  })

  test(`${image.name}: convert oci: → oci:, unpack equals umoci unpack, check passes`, TIMEOUT, async () => {
    await withTempDir(async dir => {
      const layout = join(dir, 'src')
      await image.build(layout, 'v1', dir)
      const converted = await shoal(['convert', `oci:${layout}:v1`, `oci:${join(dir, 'nydus')}:v1-nydus`])
      assert.equal(converted.code, 0, converted.stderr)
      assert.match(converted.stdout, /^converted oci:/)
      assert.deepEqual(await ociLayout({ path: join(dir, 'nydus') }).tags(), ['v1-nydus'])
      const reference = await umociUnpack(layout, 'v1', join(dir, 'reference'))
      const out = join(dir, 'unpacked')
      const unpacked = await shoal(['unpack', `oci:${join(dir, 'nydus')}:v1-nydus`, out])
      assert.equal(unpacked.code, 0, unpacked.stderr)
      assert.deepEqual(await compareTrees(reference, out), [])
      const checked = await shoal(['check', `oci:${join(dir, 'nydus')}:v1-nydus`])
      assert.equal(checked.code, 0, checked.stderr)
    })
  })
}

test('dedup: v2 (v1 plus a small file) with --chunk-dict v1-nydus uploads only the new chunks', TIMEOUT, async () => {
  await withTempDir(async dir => {
    await withRegistry({}, async server => {
      const layout = join(dir, 'src')
      await buildBusyboxImage(layout, 'v1', dir)
      // v2: v1's layer and one more with a small file.
      await run('umoci', ['unpack', '--image', `${layout}:v1`, join(dir, 'b2')])
      await run('sh', ['-c', `echo 'version 2' > ${join(dir, 'b2', 'rootfs', 'etc', 'version')}`])
      await run('umoci', ['repack', '--image', `${layout}:v2`, join(dir, 'b2')])
      const base = `docker://${server.registry}/app`
      await pushWithSkopeo(layout, 'v1', `${base}:v1`)
      await pushWithSkopeo(layout, 'v2', `${base}:v2`)

      const first = await shoal(['convert', `${base}:v1`, `${base}:v1-nydus`, '--json'])
      assert.equal(first.code, 0, first.stderr)
      const v1 = JSON.parse(first.stdout)
      const v1Blob = v1.layers[0].blob
      assert.ok(v1Blob.size > 500_000, 'busybox makes a blob of hundreds of KiB')

      const second = await shoal(['convert', `${base}:v2`, `${base}:v2-nydus`, '--chunk-dict', `${base}:v1-nydus`, '--json'])
      assert.equal(second.code, 0, second.stderr)
      const v2 = JSON.parse(second.stdout)
      // Layer 0 is all in the dictionary: no blob; layer 1 stores one tiny chunk.
      assert.equal(v2.layers[0].blob, undefined)
      assert.equal(v2.layers[0].newChunks, 0)
      assert.equal(v2.layers[0].dedupBytes, v1.layers[0].newBytes + v1.layers[0].dedupBytes)
      assert.equal(v2.layers[1].newChunks, 1)
      assert.equal(v2.layers[1].newBytes, 'version 2\n'.length)
      assert.ok(v2.layers[1].blob.size < 16 * 1024, `the new blob is ${v2.layers[1].blob.size} bytes`)
      assert.equal(v2.totals.bytesSaved, v2.layers[0].dedupBytes + v2.layers[1].dedupBytes)
      assert.ok(v2.totals.bytesSaved >= 1_000_000)
      const dictBlob = v2.blobs.find((b: any) => b.from === 'chunk-dict')
      assert.deepEqual({ digest: dictBlob.digest, how: dictBlob.how }, { digest: v1Blob.digest, how: 'exists' })
      const uploadedBlobs = v2.blobs.filter((b: any) => b.how === 'uploaded' && b.from !== 'bootstrap' && b.from !== 'config')
      assert.deepEqual(uploadedBlobs.map((b: any) => b.digest), [v2.layers[1].blob.digest])

      // The registry holds exactly those sizes, and the image reads back whole.
      const client = registry()
      const manifest = await assertNydusManifest(server, 'app:v2-nydus')
      assert.deepEqual(manifest.layers.slice(0, -1).map(l => l.digest), [v1Blob.digest, v2.layers[1].blob.digest])
      assert.equal((await client.headBlob(`${server.registry}/app`, v2.layers[1].blob.digest))?.size, v2.layers[1].blob.size)
      const reference = await umociUnpack(layout, 'v2', join(dir, 'reference'))
      const out = join(dir, 'unpacked')
      const unpacked = await shoal(['unpack', `${base}:v2-nydus`, out])
      assert.equal(unpacked.code, 0, unpacked.stderr)
      assert.deepEqual(await compareTrees(reference, out), [])

      // Into another repository: the dictionary blob is mounted, not uploaded.
      const third = await shoal(['convert', `${base}:v2`, `docker://${server.registry}/other:v2-nydus`, '--chunk-dict', `${base}:v1-nydus`, '--json'])
      assert.equal(third.code, 0, third.stderr)
      assert.equal(JSON.parse(third.stdout).blobs.find((b: any) => b.from === 'chunk-dict').how, 'mounted')
    })
  })
})

test('auth: wrong credentials give one clear error and push nothing; right ones work', TIMEOUT, async () => {
  await withTempDir(async dir => {
    await withRegistry({ auth: true }, async server => {
      const layout = join(dir, 'src')
      await buildBusyboxImage(layout, 'v1', dir)
      const creds = `${TEST_USERNAME}:${TEST_PASSWORD}`
      await pushWithSkopeo(layout, 'v1', `docker://${server.registry}/img:v1`, creds)
      const before = await registryFiles(join(server.dir, 'data'))

      const wrong = await shoal(['convert', `docker://${server.registry}/img:v1`, `docker://${server.registry}/img:v1-nydus`, '--creds', `${TEST_USERNAME}:wrong`])
      assert.equal(wrong.code, 1)
      const lines = wrong.stderr.trim().split('\n')
      assert.equal(lines.length, 1, wrong.stderr)
      assert.match(lines[0], /^shoal: RegistryAuthError: authentication failed at registry 127\.0\.0\.1:\d+ as user "shoal"/)
      assert.doesNotMatch(wrong.stderr, /wrong/)
      assert.deepEqual(await registryFiles(join(server.dir, 'data')), before, 'nothing was pushed')

      const right = await shoal(['convert', `docker://${server.registry}/img:v1`, `docker://${server.registry}/img:v1-nydus`, '--creds', creds, '--json'])
      assert.equal(right.code, 0, right.stderr)
      const client = registry({ credentials: { [server.registry]: { username: TEST_USERNAME, password: TEST_PASSWORD } } })
      const image = await client.resolveImage(`docker://${server.registry}/img:v1-nydus`)
      assert.equal(image.digest, JSON.parse(right.stdout).target.digest)
    })
  })
})
