import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync, readFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync, zstdCompressSync } from 'node:zlib'
import { randomBytes } from 'node:crypto'
import { readTar, type TarEntry } from '../src/tar.js'
import { openLayer } from '../src/layer-stream.js'
import { TarFormatError, UnsupportedLayerCompressionError } from '../src/errors.js'
import { tarArchive, inPieces, type TestEntry } from './tar-writer.js'
import { nydusFixtures } from '@shoal/interface/test-fixtures'

const FIXTURES = join(nydusFixtures(), 'tar')

interface ReadEntry extends Omit<TarEntry, 'body'> { data: Buffer }

async function readAll (source: AsyncIterable<Uint8Array>): Promise<ReadEntry[]> {
  const out: ReadEntry[] = []
  for await (const entry of readTar(source)) {
    const parts: Buffer[] = []
    for await (const piece of entry.body) parts.push(Buffer.from(piece))
    const { body: _body, ...rest } = entry
    out.push({ ...rest, data: Buffer.concat(parts) })
  }
  return out
}

async function readArchive (entries: TestEntry[], pieceSize = 100): Promise<ReadEntry[]> {
  return await readAll(inPieces(tarArchive(entries), pieceSize))
}

test('ustar entries of every type come out with their fields and bytes, across odd buffer boundaries', async () => {
  const entries = await readArchive([
    { name: 'dir/', type: '5', mode: 0o755, mtime: 1234567890 },
    { name: 'dir/file', data: 'hello world', mode: 0o4755, uid: 1000, gid: 2000 },
    { name: 'dir/link', type: '2', linkname: '../elsewhere' },
    { name: 'dir/hard', type: '1', linkname: 'dir/file' },
    { name: 'dev/null', type: '3', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'dev/sda', type: '4', devmajor: 8, devminor: 0 },
    { name: 'pipe', type: '6' },
    { name: 'contig', type: '7', data: 'contiguous' }
  ], 7)
  assert.deepEqual(entries.map(e => [e.path, e.type]), [
    ['dir/', 'directory'], ['dir/file', 'file'], ['dir/link', 'symlink'], ['dir/hard', 'hardlink'],
    ['dev/null', 'char'], ['dev/sda', 'block'], ['pipe', 'fifo'], ['contig', 'file']
  ])
  assert.equal(entries[0].mtime, 1234567890)
  assert.equal(entries[1].data.toString(), 'hello world')
  assert.equal(entries[1].size, 11)
  assert.equal(entries[1].mode, 0o4755)
  assert.equal(entries[1].uid, 1000)
  assert.equal(entries[1].gid, 2000)
  assert.equal(entries[2].linkpath, '../elsewhere')
  assert.equal(entries[3].linkpath, 'dir/file')
  assert.deepEqual([entries[4].devMajor, entries[4].devMinor], [1, 3])
  assert.deepEqual([entries[5].devMajor, entries[5].devMinor], [8, 0])
  assert.equal(entries[7].data.toString(), 'contiguous')
})

test('PAX headers set path, linkpath, size, fractional mtime, ids and binary xattrs; global headers apply to later entries', async () => {
  const longPath = 'a/'.repeat(80) + 'file.txt'
  const xattrValue = new Uint8Array([0, 1, 2, 255, 10, 61])
  const entries = await readArchive([
    {
      name: 'short-name',
      data: 'x'.repeat(600),
      globalPax: { uid: '77' },
      pax: { path: longPath, mtime: '1700000000.123456789', gid: '3000000000', 'SCHILY.xattr.user.bin': xattrValue, 'SCHILY.xattr.security.capability': 'cap' }
    },
    { name: 'l', type: '2', pax: { linkpath: 'b/'.repeat(70) + 'target', mtime: '-1.25' } },
    { name: 'ü-名前', data: 'utf8' }
  ])
  assert.equal(entries[0].path, longPath)
  assert.equal(entries[0].mtime, 1700000000)
  assert.equal(entries[0].mtimeNsec, 123456789)
  assert.equal(entries[0].uid, 77)
  assert.equal(entries[0].gid, 3000000000)
  assert.deepEqual(entries[0].xattrs.get('user.bin'), xattrValue)
  assert.equal(Buffer.from(entries[0].xattrs.get('security.capability') ?? []).toString(), 'cap')
  assert.equal(entries[0].data.length, 600)
  assert.equal(entries[1].linkpath, 'b/'.repeat(70) + 'target')
  assert.deepEqual([entries[1].mtime, entries[1].mtimeNsec], [-2, 750000000])
  assert.equal(entries[1].uid, 77, 'the global header still applies')
  assert.equal(entries[2].path, 'ü-名前')
})

test('a PAX size overrides the header size', async () => {
  const entries = await readArchive([{ name: 'f', data: 'abcdef', sizeOverride: 0, pax: { size: '6' } }, { name: 'g', data: 'next' }])
  assert.equal(entries[0].data.toString(), 'abcdef')
  assert.equal(entries[1].data.toString(), 'next')
})

test('GNU long names and long links, and the ustar prefix field', async () => {
  const longName = 'n/'.repeat(120) + 'end'
  const longLink = 't/'.repeat(120) + 'target'
  const entries = await readArchive([
    { name: longName.slice(0, 99), longName, data: 'L', gnu: true },
    { name: 'sym', type: '2', longLink, linkname: longLink.slice(0, 99), gnu: true },
    { name: 'file.txt', prefix: 'some/prefix/dir', data: 'p' }
  ])
  assert.equal(entries[0].path, longName)
  assert.equal(entries[0].data.toString(), 'L')
  assert.equal(entries[1].linkpath, longLink)
  assert.equal(entries[2].path, 'some/prefix/dir/file.txt')
})

test('base-256 numeric fields (size, uid, mtime)', async () => {
  const data = randomBytes(1000)
  const entries = await readArchive([{ name: 'big', data, uid: 0x7fffffff + 5, mtime: 2 ** 40, base256: ['size', 'uid', 'mtime'], gnu: true }])
  assert.equal(entries[0].uid, 0x7fffffff + 5)
  assert.equal(entries[0].mtime, 2 ** 40)
  assert.deepEqual(entries[0].data, data)
})

test('an empty stream, and the empty.tar fixture, are layers with no entries', async () => {
  assert.deepEqual(await readAll(inPieces(new Uint8Array(0), 1)), [])
  assert.deepEqual(await readAll(openLayer(join(FIXTURES, 'empty.tar'))), [])
})

test('all-entry-type.tar: directories, a file, hard links and a symlink', async () => {
  const entries = await readAll(openLayer(join(FIXTURES, 'all-entry-type.tar')))
  assert.deepEqual(entries.map(e => `${e.type} ${e.path}${e.linkpath !== undefined ? ' -> ' + e.linkpath : ''}`), [
    'directory tar/',
    'directory tar/dir1/',
    'directory tar/dir1/dir3/',
    'file tar/dir1/dir3/hardlink1.txt',
    'hardlink tar/dir1/dir3/xfile.txt -> tar/dir1/dir3/hardlink1.txt',
    'hardlink tar/dir1/hardlink2.txt -> tar/dir1/dir3/hardlink1.txt',
    'directory tar/dir2/',
    'hardlink tar/dir2/hardlink3.txt -> tar/dir1/dir3/hardlink1.txt',
    'symlink tar/dir2/symlink1.txt -> ../dir1/dir3/file1.txt'
  ])
  assert.equal(entries[3].data.toString(), 'This is a test\n')
})

test('a bad checksum and a truncated body are TarFormatErrors that say where', async () => {
  await assert.rejects(readArchive([{ name: 'ok', data: 'a' }, { name: 'bad', data: 'b', corruptChecksum: true }]),
    (err: Error) => err instanceof TarFormatError && /offset 1024: checksum/.test(err.message))
  const truncated = tarArchive([{ name: 'f', data: 'x'.repeat(2000) }], false).subarray(0, 1500)
  await assert.rejects(readAll(inPieces(truncated, 512)), (err: Error) => err instanceof TarFormatError && /truncated data of "f"/.test(err.message))
  const lyingPax = tarArchive([{ name: 'f', pax: { size: '99999999999' } }])
  await assert.rejects(readAll(inPieces(lyingPax, 512)), TarFormatError)
})

test('gzip and zstd layers are detected by their magic; xz is refused by name', async () => {
  const tar = tarArchive([{ name: 'f', data: 'compressed contents' }, { name: 'd/', type: '5' }])
  for (const compressed of [gzipSync(tar), zstdCompressSync(tar), Buffer.concat([gzipSync(tar.subarray(0, 1000)), gzipSync(tar.subarray(1000))])]) {
    const entries = await readAll(openLayer(inPieces(compressed, 13)))
    assert.deepEqual(entries.map(e => e.path), ['f', 'd/'])
    assert.equal(entries[0].data.toString(), 'compressed contents')
  }
  await assert.rejects(readAll(openLayer(inPieces(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2]), 3))), UnsupportedLayerCompressionError)
  const corrupt = gzipSync(tar)
  corrupt[20] ^= 0xff
  await assert.rejects(readAll(openLayer(inPieces(corrupt, 64))), TarFormatError)
})

test('the rest of the stream is drained after the end-of-archive blocks', async () => {
  let delivered = 0
  const archive = Buffer.concat([tarArchive([{ name: 'f', data: 'x' }]), Buffer.alloc(10 * 512)])
  async function * counting (): AsyncGenerator<Uint8Array> {
    for await (const piece of inPieces(archive, 512)) { delivered += piece.length; yield piece }
  }
  await readAll(counting())
  assert.equal(delivered, archive.length)
})

/** GNU tar writes the sparse formats we must read; compare the logical contents with the source file. */
test('sparse files from GNU tar: old GNU format and PAX 0.0, 0.1, 1.0 read to their full size with holes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'builder-sparse-'))
  try {
    const src = join(dir, 'src')
    mkdirSync(src)
    const file = join(src, 'sparse.bin')
    const fd = openSync(file, 'w')
    // Eight data segments: more than the four an old GNU header holds, so extension blocks are read too.
    const pieces: Array<[number, Buffer]> = [[0, randomBytes(5000)], [1 << 20, randomBytes(70000)], [5 << 20, randomBytes(10)],
      ...[6, 7, 8, 9, 10].map((n): [number, Buffer] => [(n << 20) + 4096, randomBytes(3000)])]
    for (const [offset, data] of pieces) writeSync(fd, data, 0, data.length, offset)
    ftruncateSync(fd, 12 << 20)
    closeSync(fd)
    const expected = readFileSync(file)
    const variants: string[][] = [
      ['--format=gnu'],
      ['--format=pax', '--sparse-version=0.0'],
      ['--format=pax', '--sparse-version=0.1'],
      ['--format=pax', '--sparse-version=1.0']
    ]
    for (const flags of variants) {
      const tarFile = join(dir, 'layer.tar')
      execFileSync('tar', ['-c', '-S', ...flags, '-f', tarFile, '-C', src, 'sparse.bin'])
      assert.ok(readFileSync(tarFile).length < 1 << 20, `${flags.join(' ')} wrote a sparse archive`)
      const entries = await readAll(openLayer(tarFile))
      assert.equal(entries.length, 1, flags.join(' '))
      assert.equal(entries[0].path, 'sparse.bin', flags.join(' '))
      assert.equal(entries[0].size, 12 << 20, flags.join(' '))
      assert.ok(entries[0].data.equals(expected), `${flags.join(' ')}: logical contents equal the file`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('xattrs written by GNU tar --xattrs (PAX SCHILY.xattr) are read', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'builder-xattr-'))
  try {
    const file = join(dir, 'f')
    writeFileSync(file, 'with xattr')
    try {
      execFileSync('setfattr', ['-n', 'user.shoal', '-v', 'value-1', file], { stdio: 'ignore' })
    } catch {
      t.skip('setfattr or user xattrs unavailable here')
      return
    }
    const tarFile = join(dir, 'layer.tar')
    execFileSync('tar', ['-c', '--format=pax', '--xattrs', '--xattrs-include=user.*', '-f', tarFile, '-C', dir, 'f'])
    const entries = await readAll(openLayer(tarFile))
    assert.equal(Buffer.from(entries[0].xattrs.get('user.shoal') ?? []).toString(), 'value-1')
    assert.equal(entries[0].data.toString(), 'with xattr')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
