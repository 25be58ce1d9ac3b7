import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { S_IFDIR, S_IFLNK, S_IFREG, type RafsImage, type RafsNode } from '@shoal/rafs'
import { blobDirectory } from '@shoal/blob-device'
import { listImage, OutputNotEmptyError, unpackImage, UnsafeImagePathError } from '../src/index.js'

function node (type: RafsNode['type'], extra: Partial<RafsNode> = {}): RafsNode {
  const mode = type === 'directory' ? S_IFDIR | 0o755 : type === 'symlink' ? S_IFLNK | 0o777 : S_IFREG | 0o644
  return { ino: 0, type, mode, uid: 0, gid: 0, size: 0, mtime: 0, mtimeNsec: 0, nlink: 1, rdev: 0, xattrs: new Map(), ...(type === 'directory' ? { entries: [] } : {}), ...extra }
}

function imageOf (root: RafsNode): RafsImage {
  return { version: 6, chunkSize: 1 << 20, compressor: 'none', digester: 'sha256', blobs: [], root, prefetch: [], inodeCount: 1 }
}

for (const name of ['..', '.', '', 'a/b', '../../etc/passwd', 'nul\0byte']) {
  test(`an entry named ${JSON.stringify(name)} is refused before anything is written`, async () => {
    const root = node('directory', { entries: [{ name: 'ok', node: node('file') }, { name, node: node('file') }] })
    assert.throws(() => listImage(root), UnsafeImagePathError)
    const out = await mkdtemp(join(tmpdir(), 'shoal-unpack-'))
    try {
      await assert.rejects(unpackImage(imageOf(root), blobDirectory({ path: out }), join(out, 'x')), UnsafeImagePathError)
      assert.deepEqual(await readdir(out), [])
    } finally {
      await rm(out, { recursive: true, force: true })
    }
  })
}

test('a name listed twice in one directory is refused (a symlink could otherwise shadow a directory)', () => {
  const dir = node('directory', { entries: [{ name: 'passwd', node: node('file') }] })
  const root = node('directory', { entries: [{ name: 'etc', node: node('symlink', { target: '/etc' }) }, { name: 'etc', node: dir }] })
  assert.throws(() => listImage(root), /lists 'etc' twice/)
})

test('a directory reachable by two paths is refused (it could multiply the tree)', () => {
  const shared = node('directory', { entries: [{ name: 'f', node: node('file') }] })
  const root = node('directory', { entries: [{ name: 'a', node: shared }, { name: 'b', node: shared }] })
  assert.throws(() => listImage(root), /reachable by more than one path/)
})

test('hard links are listed once as the file and then as links', () => {
  const file = node('file', { nlink: 2 })
  const entries = listImage(node('directory', { entries: [{ name: 'a', node: file }, { name: 'b', node: file }] }))
  assert.deepEqual(entries.map(e => [e.path, e.hardlink]), [['/a', false], ['/b', true]])
})

test('unpack refuses an output directory that is not empty', async () => {
  const out = await mkdtemp(join(tmpdir(), 'shoal-unpack-'))
  try {
    await writeFile(join(out, 'existing'), 'x')
    await assert.rejects(unpackImage(imageOf(node('directory')), blobDirectory({ path: out }), out), OutputNotEmptyError)
  } finally {
    await rm(out, { recursive: true, force: true })
  }
})
