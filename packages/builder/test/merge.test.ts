import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { UnsafeLayerPathError, HardLinkTargetError } from '../src/errors.js'
import { normalizeLayerPath } from '../src/path.js'
import { encodeDevice } from '../src/tree.js'
import { mergeLayers, listing, lookup, fileBytes } from './helpers.js'
import { nydusFixtures } from '@shoal/interface/test-fixtures'

const FIXTURES = join(nydusFixtures(), 'tar')

test('path normalization: leading / and ./, dot components, inner .. ; escaping .. refused by name', () => {
  assert.deepEqual(normalizeLayerPath('/etc/passwd'), ['etc', 'passwd'])
  assert.deepEqual(normalizeLayerPath('./a//b/./c/'), ['a', 'b', 'c'])
  assert.deepEqual(normalizeLayerPath('a/../b'), ['b'])
  assert.deepEqual(normalizeLayerPath('/'), [])
  assert.deepEqual(normalizeLayerPath('./'), [])
  assert.throws(() => normalizeLayerPath('../evil'), (err: Error) => err instanceof UnsafeLayerPathError && err.entryPath === '../evil')
  assert.throws(() => normalizeLayerPath('a/../../evil'), UnsafeLayerPathError)
  assert.throws(() => normalizeLayerPath('/../evil'), UnsafeLayerPathError)
})

test('whiteouts delete lower-layer entries and never appear in the result', async () => {
  const { merged } = await mergeLayers([
    [{ name: 'a/', type: '5' }, { name: 'a/x', data: 'x' }, { name: 'a/y', data: 'y' }, { name: 'b', data: 'b' }, { name: 'c/', type: '5' }, { name: 'c/deep', data: 'd' }],
    [{ name: 'a/.wh.x' }, { name: '.wh.b' }, { name: '.wh.c' }, { name: '.wh.never-existed' }]
  ])
  assert.deepEqual(listing(merged.root), ['/a directory', '/a/y file'])
})

test('a whiteout hides only lower layers: the name can come back in a later layer', async () => {
  const { merged, stores } = await mergeLayers([
    [{ name: 'f', data: 'old' }],
    [{ name: '.wh.f' }],
    [{ name: 'f', data: 'new' }]
  ])
  assert.deepEqual(listing(merged.root), ['/f file'])
  assert.equal(fileBytes(lookup(merged.root, 'f')!, stores).toString(), 'new')
})

test('opaque directories drop lower-layer children across three layers, keep their own and later ones', async () => {
  const { merged } = await mergeLayers([
    [{ name: 'd/', type: '5' }, { name: 'd/one', data: '1' }, { name: 'd/sub/', type: '5' }, { name: 'd/sub/deep', data: 'deep' }, { name: 'other', data: 'o' }],
    [{ name: 'd/', type: '5', mode: 0o750 }, { name: 'd/two', data: '2' }, { name: 'd/.wh..wh..opq' }],
    [{ name: 'd/three', data: '3' }]
  ])
  assert.deepEqual(listing(merged.root), ['/d directory', '/d/three file', '/d/two file', '/other file'])
  assert.equal(lookup(merged.root, 'd')!.mode & 0o7777, 0o750)
})

test('an opaque marker also clears lower content inside subdirectories this layer touched', async () => {
  const { merged } = await mergeLayers([
    [{ name: 'd/sub/old', data: 'o' }],
    [{ name: 'd/sub/new', data: 'n' }, { name: 'd/.wh..wh..opq' }]
  ])
  assert.deepEqual(listing(merged.root), ['/d directory', '/d/sub directory', '/d/sub/new file'])
})

test('an upper entry of another type replaces the lower one; a directory over a directory merges', async () => {
  const { merged } = await mergeLayers([
    [{ name: 'p', data: 'file' }, { name: 'q/', type: '5' }, { name: 'q/child', data: 'c' }, { name: 's', type: '2', linkname: 'x' },
      { name: 'm/', type: '5', mode: 0o755 }, { name: 'm/lower', data: 'l' }],
    [{ name: 'p/', type: '5' }, { name: 'p/in', data: 'i' }, { name: 'q', data: 'now a file' }, { name: 's', data: 'now a file too' },
      { name: 'm/', type: '5', mode: 0o700, uid: 5, gid: 6, mtime: 42 }, { name: 'm/upper', data: 'u' }]
  ])
  assert.deepEqual(listing(merged.root), [
    '/m directory', '/m/lower file', '/m/upper file', '/p directory', '/p/in file', '/q file', '/s file'
  ])
  const m = lookup(merged.root, 'm')!
  assert.deepEqual([m.mode, m.uid, m.gid, m.mtime], [0o040700, 5, 6, 42])
})

test('hard links in all-entry-type.tar share one node whose link count is 4; devices keep their numbers', async () => {
  const { merged, stores } = await mergeLayers([join(FIXTURES, 'all-entry-type.tar'), [
    { name: 'dev/null', type: '3', devmajor: 1, devminor: 3 }, { name: 'dev/loop300', type: '4', devmajor: 7, devminor: 300 }, { name: 'fifo', type: '6' }
  ]])
  const paths = ['tar/dir1/dir3/hardlink1.txt', 'tar/dir1/dir3/xfile.txt', 'tar/dir1/hardlink2.txt', 'tar/dir2/hardlink3.txt']
  const nodes = paths.map(p => lookup(merged.root, p))
  assert.ok(nodes.every(n => n === nodes[0]))
  assert.equal(nodes[0]!.nlink, 4)
  assert.equal(fileBytes(nodes[0]!, stores).toString(), 'This is a test\n')
  const symlink = lookup(merged.root, 'tar/dir2/symlink1.txt')!
  assert.equal(symlink.target, '../dir1/dir3/file1.txt')
  assert.equal(symlink.size, 22)
  // The tar header says 0755; Linux shows every symlink as 0777, and so does the image.
  assert.equal(symlink.mode, 0o120777)
  assert.equal(lookup(merged.root, 'tar/dir1')!.nlink, 3)
  assert.equal(lookup(merged.root, 'dev/null')!.rdev, encodeDevice(1, 3))
  assert.equal(encodeDevice(1, 3), 0x103)
  assert.equal(lookup(merged.root, 'dev/loop300')!.rdev, (300 & 0xff) | (7 << 8) | ((300 & ~0xff) << 12))
  assert.equal(lookup(merged.root, 'fifo')!.mode, 0o010644)
  // Inode numbers are distinct per inode and counted once per hard-linked file.
  const inos = new Set<number>()
  const visit = (n: typeof merged.root): void => { inos.add(n.ino); for (const e of n.entries ?? []) visit(e.node) }
  visit(merged.root)
  assert.equal(inos.size, merged.inodeCount)
  assert.equal(merged.root.ino, 1)
})

test('a whited-out hard link leaves the other name and lowers its link count', async () => {
  const { merged } = await mergeLayers([
    [{ name: 'a', data: 'shared' }, { name: 'b', type: '1', linkname: 'a' }, { name: 'c', type: '1', linkname: '/a' }],
    [{ name: '.wh.a' }]
  ])
  assert.deepEqual(listing(merged.root), ['/b file', '/c file'])
  assert.equal(lookup(merged.root, 'b'), lookup(merged.root, 'c'))
  assert.equal(lookup(merged.root, 'b')!.nlink, 2)
})

test('root entries named / and ./ set the root directory; absolute names land under the root', async () => {
  const { merged } = await mergeLayers([
    [{ name: '/', type: '5', mode: 0o711, uid: 3 }, { name: '/etc/passwd', data: 'root:x:0:0' }],
    [{ name: './', type: '5', mode: 0o755, mtime: 99 }, { name: './etc/hosts', data: '127.0.0.1' }]
  ])
  assert.deepEqual(listing(merged.root), ['/etc directory', '/etc/hosts file', '/etc/passwd file'])
  assert.equal(merged.root.mode, 0o040755)
  assert.equal(merged.root.mtime, 99)
})

test('unsafe entry names and hard link targets are refused, naming the entry', async () => {
  await assert.rejects(mergeLayers([[{ name: 'ok', data: 'x' }, { name: '../../etc/cron.d/evil', data: 'x' }]]),
    (err: Error) => err instanceof UnsafeLayerPathError && err.entryPath === '../../etc/cron.d/evil' && /escapes the layer root/.test(err.message))
  await assert.rejects(mergeLayers([[{ name: 'link', type: '1', linkname: '../../etc/shadow' }]]),
    (err: Error) => err instanceof UnsafeLayerPathError && err.entryPath === 'link')
  await assert.rejects(mergeLayers([[{ name: 'a/../../b', type: '5' }]]), UnsafeLayerPathError)
  await assert.rejects(mergeLayers([[{ name: 'link', type: '1', linkname: 'missing' }]]), HardLinkTargetError)
  await assert.rejects(mergeLayers([[{ name: 'd/', type: '5' }, { name: 'link', type: '1', linkname: 'd' }]]), HardLinkTargetError)
  // Symlinks may point anywhere: they are resolved inside the container.
  const { merged } = await mergeLayers([[{ name: 'up', type: '2', linkname: '../../../../etc/passwd' }]])
  assert.equal(lookup(merged.root, 'up')!.target, '../../../../etc/passwd')
})

test('a path through a lower symlink makes a directory there instead of following it', async () => {
  const { merged } = await mergeLayers([
    [{ name: 'real/', type: '5' }, { name: 'a', type: '2', linkname: 'real' }],
    [{ name: 'a/b', data: 'x' }]
  ])
  assert.deepEqual(listing(merged.root), ['/a directory', '/a/b file', '/real directory'])
})

test('xattrs from PAX headers land on the node', async () => {
  const { merged } = await mergeLayers([[{ name: 'f', data: 'x', pax: { 'SCHILY.xattr.security.capability': new Uint8Array([1, 0, 0, 2]), 'SCHILY.xattr.user.k': 'v' } }]])
  const node = lookup(merged.root, 'f')!
  assert.deepEqual([...node.xattrs.keys()].sort(), ['security.capability', 'user.k'])
  assert.deepEqual(node.xattrs.get('security.capability'), new Uint8Array([1, 0, 0, 2]))
})

test('directory entries are sorted by name bytes', async () => {
  const { merged } = await mergeLayers([[{ name: 'b', data: '' }, { name: 'B', data: '' }, { name: 'é', data: '' }, { name: 'a', data: '' }, { name: 'z', data: '' }]])
  assert.deepEqual(merged.root.entries!.map(e => e.name), ['B', 'a', 'b', 'z', 'é'])
  assert.equal(lookup(merged.root, 'b')!.chunks!.length, 0, 'an empty file has no chunks')
})
