import { test } from 'node:test'
import assert from 'node:assert/strict'
import { lstat, readlink, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fixtures, md5File, readResultFile, shoal, withTempDir } from './helpers.js'

const v5Fixtures = ['sha256-nocompress-repeatable', 'blake3-lz4_block-non_repeatable']
const v5BlobDir = join(fixtures, 'repeatable', 'blobs')

for (const name of v5Fixtures) {
  const bootstrap = join(fixtures, 'repeatable', name)

  test(`inspect --tree --json of ${name} equals its .result tree`, async () => {
    const { tree } = await readResultFile(`${bootstrap}.result`)
    const result = await shoal(['inspect', `bootstrap:${bootstrap}`, '--tree', '--json'])
    assert.equal(result.code, 0, result.stderr)
    assert.deepEqual(JSON.parse(result.stdout), tree)
  })

  test(`unpack of ${name} gives the md5 sums of its .result file`, async () => {
    const { md5 } = await readResultFile(`${bootstrap}.result`)
    assert.ok(md5.size > 20, 'the .result file lists the md5 of every file')
    await withTempDir(async dir => {
      const out = join(dir, 'out')
      const result = await shoal(['unpack', `bootstrap:${bootstrap}`, '--blob-dir', v5BlobDir, out])
      assert.equal(result.code, 0, result.stderr)
      for (const [path, sum] of md5) {
        assert.equal(await md5File(join(out, path)), sum, path)
      }
    })
  })

  test(`check of ${name} passes`, async () => {
    const result = await shoal(['check', `bootstrap:${bootstrap}`, '--blob-dir', v5BlobDir])
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, /^ok: \d+ chunks \(\d+ bytes\) in 1 blobs verified$/m)
  })
}

test('check names the first bad chunk of a blob with one flipped byte, and exits 1', async () => {
  const bootstrap = join(fixtures, 'repeatable', 'sha256-nocompress-repeatable')
  const stats = JSON.parse((await shoal(['inspect', bootstrap, '--stats', '--json'])).stdout)
  assert.equal(stats.version, 5)
  await withTempDir(async dir => {
    const blobs = join(dir, 'blobs')
    await mkdir(blobs)
    const { md5 } = await readResultFile(`${bootstrap}.result`)
    assert.ok(md5.size > 0)
    // The blob the bootstrap names is the one file in the fixture directory that it verifies against.
    const blobId = '7334a2594e133cf8ae364189c2276b090fc490c627bcc3fb1077f0419a538e00'
    const bytes = await readFile(join(v5BlobDir, blobId))
    bytes[100] ^= 0x01
    await writeFile(join(blobs, blobId), bytes)
    const result = await shoal(['check', bootstrap, '--blob-dir', blobs])
    assert.equal(result.code, 1)
    assert.match(result.stderr, new RegExp(`^bad chunk: file /\\S+ at offset \\d+, blob ${blobId} chunk \\d+: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}$`, 'm'))
  })
})

test('the v6 fixture inspects, checks and unpacks', async () => {
  const bootstrap = join(fixtures, 'bootstrap', 'rafs-v6-2.2.boot')
  const blobDir = join(fixtures, 'blobs')
  const stats = JSON.parse((await shoal(['inspect', `bootstrap:${bootstrap}`, '--stats', '--json'])).stdout)
  assert.equal(stats.version, 6)
  assert.equal(stats.compressor, 'zstd')
  assert.equal(stats.digester, 'blake3')
  assert.equal(stats.chunkSize, 1024 * 1024)
  assert.equal(stats.inodes, 3)
  const checked = await shoal(['check', `bootstrap:${bootstrap}`, '--blob-dir', blobDir])
  assert.equal(checked.code, 0, checked.stderr)
  await withTempDir(async dir => {
    const out = join(dir, 'out')
    const result = await shoal(['unpack', `bootstrap:${bootstrap}`, '--blob-dir', blobDir, out])
    assert.equal(result.code, 0, result.stderr)
    const listed = JSON.parse((await shoal(['inspect', bootstrap, '--tree', '--json'])).stdout)
    for (const entry of listed[0].contents) {
      const stat = await lstat(join(out, entry.name))
      if (entry.type === 'link') assert.equal(await readlink(join(out, entry.name)), entry.target)
      else assert.equal(stat.isDirectory(), entry.type === 'directory', entry.name)
    }
  })
})

test('errors are one line on stderr with a non-zero exit; --debug adds the stack', async () => {
  await withTempDir(async dir => {
    const bogus = join(dir, 'bogus.boot')
    await writeFile(bogus, Buffer.alloc(4096, 7))
    const plain = await shoal(['inspect', bogus])
    assert.equal(plain.code, 1)
    assert.equal(plain.stderr.trim().split('\n').length, 1)
    assert.match(plain.stderr, /^shoal: RafsBadMagicError: not a RAFS bootstrap/)
    const debug = await shoal(['inspect', bogus, '--debug'])
    assert.match(debug.stderr, /\n\s+at /)
    const missing = await shoal(['unpack', bogus])
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /expected IMAGE OUT/)
    
  })
})

test('every command has --help', async () => {
  const top = await shoal(['--help'])
  assert.equal(top.code, 0)
  const names = [...top.stdout.matchAll(/^ {2}(\w+) {2,}/gm)].map(m => m[1])
  assert.ok(names.includes('inspect') && names.includes('unpack') && names.includes('check'), top.stdout)
  for (const name of names) {
    const help = await shoal([name, '--help'])
    assert.equal(help.code, 0, name)
    assert.match(help.stdout, new RegExp(`^Usage: shoal ${name}( |\n)`))
    assert.match(help.stdout, /--debug/)
  }
})
