import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { shoal, withTempDir } from './helpers.js'
import { makeBusyboxRootfs } from './rootfs.js'
import { describeTree, diffTrees } from './tree-compare.js'

const run = promisify(execFile)
const ignoreXattr = /^security\.selinux$/

for (const compressor of ['none', 'zstd', 'lz4_block']) {
  test(`shoal build of a busybox rootfs with ${compressor}: check passes and unpack gives the same tree`, async () => {
    await withTempDir(async dir => {
      const source = join(dir, 'rootfs')
      await makeBusyboxRootfs(source)
      const bootstrap = join(dir, 'image.boot')
      const blobs = join(dir, 'blobs')
      const built = await shoal(['build', source, '--bootstrap', bootstrap, '--blob-dir', blobs, '--compressor', compressor, '--chunk-size', '0x100000', '--json'])
      assert.equal(built.code, 0, built.stderr)
      const summary = JSON.parse(built.stdout)
      assert.deepEqual(await readdir(blobs), [summary.blobId])
      // The 2 MiB file of one repeated pattern is two equal chunks: stored once.
      assert.ok(summary.dedupChunks >= 1, built.stdout)

      const stats = JSON.parse((await shoal(['inspect', bootstrap, '--stats', '--json'])).stdout)
      assert.equal(stats.version, 6)
      assert.equal(stats.compressor, compressor)

      const checked = await shoal(['check', bootstrap, '--blob-dir', blobs])
      assert.equal(checked.code, 0, checked.stderr)

      if (compressor === 'none') {
        // The blob is laid out as an EROFS device: erofs-utils checks the image with it (exit 0).
        await run('fsck.erofs', [`--device=${join(blobs, summary.blobId)}`, bootstrap])
      }

      const out = join(dir, 'out')
      const unpacked = await shoal(['unpack', bootstrap, '--blob-dir', blobs, out])
      assert.equal(unpacked.code, 0, unpacked.stderr)
      assert.deepEqual(diffTrees(await describeTree(out, { mtime: true, ignoreXattr }), await describeTree(source, { mtime: true, ignoreXattr })), [])
    })
  })
}

test('shoal build refuses a chunk size that is not a power of two, naming it', async () => {
  await withTempDir(async dir => {
    const result = await shoal(['build', dir, '--bootstrap', join(dir, 'b'), '--blob-dir', join(dir, 'blobs'), '--chunk-size', '3000'])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /3000/)
  })
})
