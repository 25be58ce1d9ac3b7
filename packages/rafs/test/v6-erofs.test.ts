/**
 * Real tools against our v6 writer: a bootstrap written from a real directory tree, with its
 * uncompressed blob, must pass fsck.erofs (erofs-utils) and mount with the kernel's EROFS driver,
 * and the mounted tree must equal the source: bytes, modes, owners, times, links, devices, xattrs.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { BlobWriter, readBootstrapV6, writeBootstrapV6, nodeTypeOfMode, walk } from '../src/index.js'
import type { RafsChunk, RafsImage, RafsNode } from '../src/index.js'
import { syntheticImage } from './v6-synthetic.js'
import { treeXattrsSync } from '@shoal/interface/test-fixtures'

const CHUNK_SIZE = 1024 * 1024
const LIB_DIR = '/usr/lib/x86_64-linux-gnu'

function have (command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0
}

/** Linux new_encode_dev of a glibc dev_t: what EROFS stores and stat reports back. */
function encodeDevice (rdev: bigint): number {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn))
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn))
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0
}

/** Builds an image of a real directory and its one uncompressed blob, chunks deduplicated by digest. */
function imageOfDirectory (root: string, blobPath: string): RafsImage {
  const xattrs = treeXattrsSync(root)
  const blobFd = fs.openSync(blobPath, 'w')
  const writer = new BlobWriter({ compressor: 'none', digester: 'sha256', chunkSize: CHUNK_SIZE, write: bytes => { fs.writeSync(blobFd, bytes) } })
  const byDigest = new Map<string, RafsChunk>()
  const byInode = new Map<string, RafsNode>()
  const nodeOf = (abs: string, rel: string): RafsNode => {
    const st = fs.lstatSync(abs, { bigint: true })
    const key = `${st.dev}:${st.ino}`
    const known = byInode.get(key)
    if (known !== undefined) return known
    const mode = Number(st.mode)
    const type = nodeTypeOfMode(mode)
    assert.ok(type !== undefined, `${abs}: mode ${mode}`)
    const node: RafsNode = {
      ino: 0,
      type,
      mode,
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: Number(st.size),
      mtime: Number(st.mtimeNs / 1_000_000_000n),
      mtimeNsec: Number(st.mtimeNs % 1_000_000_000n),
      nlink: Number(st.nlink),
      rdev: type === 'char' || type === 'block' ? encodeDevice(st.rdev) : 0,
      xattrs: new Map([...(xattrs.get(rel) ?? new Map<string, string>())].map(([k, v]) => [k, Buffer.from(v.slice(2), 'hex')]))
    }
    if (type === 'symlink') node.target = fs.readlinkSync(abs)
    if (type === 'file') {
      node.chunks = []
      const data = fs.readFileSync(abs)
      for (let at = 0; at < data.length; at += CHUNK_SIZE) {
        const piece = data.subarray(at, at + CHUNK_SIZE)
        const digest = createHash('sha256').update(piece).digest('hex')
        let chunk = byDigest.get(digest)
        if (chunk === undefined) {
          chunk = writer.addChunk(piece)
          byDigest.set(digest, chunk)
        }
        node.chunks.push({ ...chunk, fileOffset: at })
      }
    }
    if (type !== 'directory') byInode.set(key, node)
    return node
  }
  const root_ = nodeOf(root, '.')
  // Directories by an explicit stack: the tree may be deeper than the call stack.
  const stack: Array<{ node: RafsNode, abs: string, rel: string }> = [{ node: root_, abs: root, rel: '' }]
  while (stack.length > 0) {
    const { node, abs, rel } = stack.pop() as { node: RafsNode, abs: string, rel: string }
    const names = fs.readdirSync(abs).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    node.entries = names.map(name => {
      const childRel = rel === '' ? name : `${rel}/${name}`
      const child = nodeOf(path.join(abs, name), childRel)
      if (child.type === 'directory') stack.push({ node: child, abs: path.join(abs, name), rel: childRel })
      return { name, node: child }
    })
  }
  const result = writer.finish()
  fs.closeSync(blobFd)
  return {
    version: 6,
    chunkSize: CHUNK_SIZE,
    compressor: 'none',
    digester: 'sha256',
    blobs: [{ ...result.blob, index: 0 }],
    root: root_,
    prefetch: [],
    inodeCount: 0
  }
}

/** Builds the source tree: a share of the system's libraries plus every kind of inode and attribute. */
function makeSourceTree (root: string): void {
  fs.mkdirSync(root)
  // Small top-level entries of the library directory up to ~40 MB, and libc for files of several chunks.
  const sizes = execFileSync('sh', ['-c', `du -s -B1 --apparent-size ${LIB_DIR}/* 2>/dev/null`], { maxBuffer: 64 << 20 }).toString()
    .trim().split('\n').map(line => { const [size, p] = line.split('\t'); return { size: Number(size), p } })
    .sort((a, b) => a.size - b.size)
  const chosen: string[] = []
  let total = 0
  for (const { size, p } of sizes) {
    if (total + size > 40_000_000) break
    total += size
    chosen.push(p)
  }
  const libc = fs.realpathSync(`${LIB_DIR}/libc.so.6`)
  chosen.push(libc)
  fs.mkdirSync(path.join(root, 'lib'))
  execFileSync('cp', ['-a', ...chosen, path.join(root, 'lib')])

  const x = path.join(root, 'extras')
  fs.mkdirSync(x)
  fs.writeFileSync(path.join(x, 'empty'), '')
  fs.writeFileSync(path.join(x, 'hello.txt'), 'hello, erofs\n')
  const big = Buffer.alloc(3 * CHUNK_SIZE + 12345)
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24
  fs.writeFileSync(path.join(x, 'three-and-a-bit-chunks'), big)
  fs.writeFileSync(path.join(x, 'same-chunks'), Buffer.concat([big.subarray(0, CHUNK_SIZE), big.subarray(0, CHUNK_SIZE)]))
  fs.linkSync(path.join(x, 'hello.txt'), path.join(x, 'hardlink-to-hello'))
  fs.mkdirSync(path.join(x, 'sub'))
  fs.linkSync(path.join(x, 'hello.txt'), path.join(x, 'sub', 'another-link'))
  fs.symlinkSync('hello.txt', path.join(x, 'short-link'))
  fs.symlinkSync('t/'.repeat(1500) + 'end', path.join(x, 'long-link'))
  execFileSync('mkfifo', [path.join(x, 'fifo')])
  execFileSync('mknod', [path.join(x, 'null-dev'), 'c', '1', '3'])
  execFileSync('mknod', [path.join(x, 'block-dev'), 'b', '259', '300000'])
  fs.writeFileSync(path.join(x, 'owned'), 'owned by someone else')
  fs.chownSync(path.join(x, 'owned'), 1234, 100000)
  fs.chmodSync(path.join(x, 'owned'), 0o4751)
  fs.utimesSync(path.join(x, 'owned'), 1_600_000_000.123456, 1_500_000_000.987654)
  fs.writeFileSync(path.join(x, 'x'.repeat(255)), 'long name')
  fs.writeFileSync(path.join(x, 'ünïcødé-名前'), 'utf-8 name')
  fs.writeFileSync(path.join(x, '-before-dot'), 'sorts before "."')
  const many = path.join(x, 'many')
  fs.mkdirSync(many)
  for (let i = 0; i < 600; i++) fs.writeFileSync(path.join(many, `entry-${String(i).padStart(4, '0')}-${'n'.repeat(i % 50)}`), String(i))
  let deep = path.join(x, 'deep')
  for (let i = 0; i < 60; i++) deep = path.join(deep, `d${i}`)
  fs.mkdirSync(deep, { recursive: true })
  fs.writeFileSync(path.join(deep, 'bottom'), 'at the bottom')
  fs.chmodSync(path.join(x, 'sub'), 0o1777)
  const setfattr = (name: string, value: string, file: string): void => { execFileSync('setfattr', ['-n', name, '-v', value, file]) }
  setfattr('user.comment', 'a user attribute', path.join(x, 'hello.txt'))
  setfattr('user.empty', '""', path.join(x, 'hello.txt'))
  setfattr('trusted.overlay.opaque', 'y', path.join(x, 'sub'))
  setfattr('security.capability', '0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=', path.join(x, 'owned'))
  setfattr('user.big', '0x' + 'ab'.repeat(1500), path.join(x, 'three-and-a-bit-chunks'))
  setfattr('user.dir', 'on a directory', many)
}

interface Seen { type: string, mode: number, uid: number, gid: number, size: number, mtimeNs: string, nlink: number, rdev: string, sha256?: string, target?: string, ino: string }

/** Everything lstat and reading say about a tree, by relative path. */
function describeTree (root: string): Map<string, Seen> {
  const out = new Map<string, Seen>()
  const stack = ['']
  while (stack.length > 0) {
    const rel = stack.pop() as string
    const abs = rel === '' ? root : path.join(root, rel)
    const st = fs.lstatSync(abs, { bigint: true })
    const type = nodeTypeOfMode(Number(st.mode)) ?? '?'
    const seen: Seen = {
      type,
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === 'directory' ? 0 : Number(st.size),
      mtimeNs: st.mtimeNs.toString(),
      nlink: Number(st.nlink),
      rdev: st.rdev.toString(),
      ino: st.ino.toString()
    }
    if (type === 'file') seen.sha256 = createHash('sha256').update(fs.readFileSync(abs)).digest('hex')
    if (type === 'symlink') seen.target = fs.readlinkSync(abs)
    out.set(rel === '' ? '.' : rel, seen)
    if (type === 'directory') for (const name of fs.readdirSync(abs)) stack.push(rel === '' ? name : `${rel}/${name}`)
  }
  return out
}

/** Groups of paths that share an inode, as sorted path lists: hard links must survive. */
function linkGroups (tree: Map<string, Seen>): string[][] {
  const groups = new Map<string, string[]>()
  for (const [p, s] of tree) if (s.type !== 'directory') groups.set(s.ino, [...(groups.get(s.ino) ?? []), p])
  return [...groups.values()].filter(g => g.length > 1).map(g => g.sort()).sort()
}

function compareTrees (source: Map<string, Seen>, copy: Map<string, Seen>, fields: Array<keyof Seen>): void {
  assert.deepEqual([...copy.keys()].sort(), [...source.keys()].sort())
  for (const [p, s] of source) {
    const c = copy.get(p) as Seen
    for (const field of fields) assert.equal(c[field], s[field], `${p}: ${field}`)
  }
}

test('v6 bootstrap of a real tree passes fsck.erofs and mounts with the kernel as the same tree', async (t) => {
  if (!have('fsck.erofs') || !have('getfattr')) {
    t.skip('erofs-utils (fsck.erofs) or attr (getfattr) is not installed')
    return
  }
  if (process.getuid?.() !== 0) {
    t.skip('needs root: the source tree has device nodes, foreign owners and trusted.* xattrs')
    return
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-v6-erofs-'))
  const loops: string[] = []
  const mountDir = path.join(work, 'mnt')
  let mounted = false
  try {
    const src = path.join(work, 'src')
    makeSourceTree(src)
    const blobPath = path.join(work, 'blob')
    const bootPath = path.join(work, 'boot')
    const image = imageOfDirectory(src, blobPath)
    const boot = writeBootstrapV6(image)
    fs.writeFileSync(bootPath, boot)
    t.diagnostic(`bootstrap ${boot.length} bytes, blob ${fs.statSync(blobPath).size} bytes, ${image.blobs[0].chunkCount} chunks`)

    // Our own reader agrees with what we wrote.
    const back = readBootstrapV6(boot)
    assert.equal(back.blobs[0].blobId, image.blobs[0].blobId)

    const fsck = spawnSync('fsck.erofs', [`--device=${blobPath}`, bootPath])
    assert.equal(fsck.status, 0, `fsck.erofs failed:\n${fsck.stdout.toString()}${fsck.stderr.toString()}`)

    const source = describeTree(src)
    const extractDir = path.join(work, 'extract')
    const extract = spawnSync('fsck.erofs', [`--device=${blobPath}`, `--extract=${extractDir}`, bootPath])
    assert.equal(extract.status, 0, `fsck.erofs --extract failed:\n${extract.stdout.toString()}${extract.stderr.toString()}`)
    // erofs-utils 1.5 extracts regular files, directories and symlinks with their bytes and modes.
    const extracted = describeTree(extractDir)
    for (const [p, s] of source) {
      const e = extracted.get(p)
      if (s.type === 'file') assert.equal(e?.sha256, s.sha256, `extracted ${p}`)
      if (s.type === 'symlink') assert.equal(e?.target, s.target, `extracted ${p}`)
    }

    if (!fs.readFileSync('/proc/filesystems', 'utf8').includes('erofs')) {
      t.diagnostic('kernel mount skipped: this kernel has no EROFS')
      return
    }
    const losetup = (file: string): string => {
      const device = execFileSync('losetup', ['-r', '-f', '--show', file]).toString().trim()
      loops.push(device)
      return device
    }
    const bootLoop = losetup(bootPath)
    const blobLoop = losetup(blobPath)
    fs.mkdirSync(mountDir)
    execFileSync('mount', ['-t', 'erofs', '-o', `ro,device=${blobLoop}`, bootLoop, mountDir])
    mounted = true
    const copy = describeTree(mountDir)
    compareTrees(source, copy, ['type', 'mode', 'uid', 'gid', 'size', 'mtimeNs', 'nlink', 'rdev', 'sha256', 'target'])
    assert.deepEqual(linkGroups(copy), linkGroups(source))
    assert.ok(linkGroups(source).some(g => g.includes('extras/hello.txt')))
    assert.deepEqual(treeXattrsSync(mountDir), treeXattrsSync(src))
    assert.ok(source.size > 1000, `source tree has ${source.size} entries`)
  } finally {
    if (mounted) spawnSync('umount', [mountDir])
    for (const device of loops.reverse()) spawnSync('losetup', ['-d', device])
    fs.rmSync(work, { recursive: true, force: true })
  }
})

/** The bytes a made-up chunk holds: its digest repeated. */
function chunkBytes (chunk: RafsChunk): Buffer {
  const out = Buffer.alloc(chunk.uncompressedSize)
  for (let at = 0; at < out.length; at += 32) out.set(chunk.digest.subarray(0, Math.min(32, out.length - at)), at)
  return out
}

test('the synthetic v6 tree (two blobs, holes, compact inodes, ACLs, long symlinks) mounts as modelled', async (t) => {
  if (process.getuid?.() !== 0 || !fs.readFileSync('/proc/filesystems', 'utf8').includes('erofs') || !have('fsck.erofs') || !have('getfattr')) {
    t.skip('needs root, a kernel with EROFS, fsck.erofs and getfattr')
    return
  }
  // Paths must stay under PATH_MAX once mounted: a shallower deep path than the unit tests use.
  const { image } = syntheticImage(100)
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-v6-synthetic-'))
  const loops: string[] = []
  const mountDir = path.join(work, 'mnt')
  let mounted = false
  try {
    const blobPaths = image.blobs.map((blob, i) => {
      const data = Buffer.alloc(blob.uncompressedSize)
      const p = path.join(work, `blob${i}`)
      walk(image.root, (_p, n) => { for (const c of n.chunks ?? []) if (c.blobIndex === i) data.set(chunkBytes(c), c.uncompressedOffset) })
      fs.writeFileSync(p, data)
      return p
    })
    const bootPath = path.join(work, 'boot')
    fs.writeFileSync(bootPath, writeBootstrapV6(image))
    const fsck = spawnSync('fsck.erofs', [...blobPaths.map(p => `--device=${p}`), bootPath])
    assert.equal(fsck.status, 0, `fsck.erofs failed:\n${fsck.stdout.toString()}${fsck.stderr.toString()}`)

    const bootLoop = execFileSync('losetup', ['-r', '-f', '--show', bootPath]).toString().trim()
    loops.push(bootLoop)
    const blobLoops = blobPaths.map(p => {
      const device = execFileSync('losetup', ['-r', '-f', '--show', p]).toString().trim()
      loops.push(device)
      return device
    })
    fs.mkdirSync(mountDir)
    execFileSync('mount', ['-t', 'erofs', '-o', ['ro', ...blobLoops.map(d => `device=${d}`)].join(','), bootLoop, mountDir])
    mounted = true

    const seen = describeTree(mountDir)
    const xattrs = treeXattrsSync(mountDir)
    let files = 0
    const check = (rel: string, node: RafsNode): void => {
      const s = seen.get(rel)
      assert.ok(s !== undefined, `${rel} is missing from the mount`)
      assert.equal(s.type, node.type, rel)
      assert.equal(s.mode, node.mode, rel)
      assert.equal(s.uid, node.uid, rel)
      assert.equal(s.gid, node.gid, rel)
      assert.equal(s.mtimeNs, (BigInt(node.mtime) * 1_000_000_000n + BigInt(node.mtimeNsec)).toString(), rel)
      assert.equal(s.nlink, node.nlink, rel)
      if (node.type === 'char' || node.type === 'block') assert.equal(encodeDevice(BigInt(s.rdev)), node.rdev, rel)
      if (node.type === 'symlink') assert.equal(s.target, node.target, rel)
      if (node.type === 'file') {
        assert.equal(s.size, node.size, rel)
        const expected = Buffer.alloc(node.size)
        for (const c of node.chunks ?? []) expected.set(chunkBytes(c), c.fileOffset)
        assert.equal(s.sha256, createHash('sha256').update(expected).digest('hex'), `${rel}: bytes`)
        files++
      }
      const want = [...node.xattrs].map(([k, v]) => `${k}=0x${Buffer.from(v).toString('hex')}`).sort()
      const got = [...(xattrs.get(rel) ?? new Map<string, string>())].map(([k, v]) => `${k}=${v === '""' ? '0x' : v}`).sort()
      assert.deepEqual(got, want, `${rel}: xattrs`)
    }
    check('.', image.root)
    walk(image.root, (p, n) => { check(p.slice(1), n) })
    assert.equal(seen.size, [...seen.keys()].length)
    assert.ok(files > 700, `${files} files compared`)
  } finally {
    if (mounted) spawnSync('umount', [mountDir])
    for (const device of loops.reverse()) spawnSync('losetup', ['-d', device])
    fs.rmSync(work, { recursive: true, force: true })
  }
})
