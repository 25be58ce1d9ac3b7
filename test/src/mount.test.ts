/**
 * `shoal mount`, `shoal umount` and `shoal run` end to end: a busybox rootfs with every kind of
 * inode built into a Nydus image, mounted in both modes by the real CLI and compared with its
 * source; containers run on it with their exit status passed through; a corrupt chunk gives EIO
 * for its file only; nothing stays mounted, no loop device stays attached, even when a test fails.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { readBootstrap } from '@shoal/rafs'
import { treeXattrs } from '@shoal/interface/test-fixtures'
import { shoal } from './helpers.js'
import { clearMountLeftovers, mountLeftovers } from './mount-leftovers.js'

const CHUNK_SIZE = 65536

function have (command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0
}

function cannotRun (): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root'
  if (!fs.existsSync('/dev/fuse')) return 'no /dev/fuse'
  for (const tool of ['runc', 'getfattr', 'setfattr', 'losetup']) if (!have(tool)) return `${tool} is not installed`
  if (!fs.existsSync('/bin/busybox')) return 'busybox-static is not installed'
  return undefined
}

const skip = cannotRun()
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-mount-e2e-'))
const src = path.join(work, 'src')
const bootstrap = path.join(work, 'image', 'bootstrap')
const blobDir = path.join(work, 'image', 'blobs')
// Mount state files of this test's mounts, away from the host's /run/shoal.
process.env.SHOAL_RUN_DIR = path.join(work, 'run')

function makeRootfs (root: string): void {
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true })
  fs.copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'))
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755)
  for (const applet of execFileSync('/bin/busybox', ['--list']).toString().trim().split('\n')) {
    if (applet !== 'busybox' && !applet.includes('/')) fs.symlinkSync('busybox', path.join(root, 'bin', applet))
  }
  for (const dir of ['etc', 'tmp', 'proc', 'sys', 'dev', 'root', 'data']) fs.mkdirSync(path.join(root, dir), { recursive: true })
  fs.writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n')
  fs.writeFileSync(path.join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n')
  const d = path.join(root, 'data')
  fs.writeFileSync(path.join(d, 'hello.txt'), 'hello from shoal\n')
  const big = Buffer.alloc(4 * CHUNK_SIZE + 99)
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24
  fs.writeFileSync(path.join(d, 'multi-chunk'), big)
  const sparse = fs.openSync(path.join(d, 'sparse'), 'w')
  fs.writeSync(sparse, Buffer.alloc(100, 0x61), 0, 100, 5 * CHUNK_SIZE)
  fs.ftruncateSync(sparse, 9 * CHUNK_SIZE)
  fs.closeSync(sparse)
  fs.linkSync(path.join(d, 'hello.txt'), path.join(d, 'hard-link'))
  fs.symlinkSync('hello.txt', path.join(d, 'sym-link'))
  execFileSync('mknod', [path.join(d, 'null'), 'c', '1', '3'])
  execFileSync('mkfifo', [path.join(d, 'fifo')])
  fs.writeFileSync(path.join(d, 'owned'), 'by somebody')
  fs.chownSync(path.join(d, 'owned'), 1234, 5678)
  fs.chmodSync(path.join(d, 'owned'), 0o640)
  execFileSync('setfattr', ['-n', 'user.comment', '-v', 'an attribute', path.join(d, 'hello.txt')])
  execFileSync('setfattr', ['-n', 'security.capability', '-v', '0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=', path.join(d, 'owned')])
}

interface Entry { type: string, mode: number, uid: number, gid: number, size: number, nlink: number, rdev: number, ino: number, sha256?: string, target?: string }

/** lstat, bytes and link targets of a tree by relative path (the root itself left out). */
function describeTree (root: string): Map<string, Entry> {
  const out = new Map<string, Entry>()
  const stack = ['']
  while (stack.length > 0) {
    const rel = stack.pop() as string
    const abs = path.join(root, rel)
    const st = fs.lstatSync(abs)
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other'
    if (rel !== '') {
      out.set(rel, {
        type, mode: st.mode, uid: st.uid, gid: st.gid, size: type === 'directory' ? 0 : st.size, nlink: type === 'directory' ? 0 : st.nlink, rdev: st.rdev, ino: st.ino,
        ...(type === 'file' ? { sha256: createHash('sha256').update(fs.readFileSync(abs)).digest('hex') } : {}),
        ...(type === 'symlink' ? { target: fs.readlinkSync(abs) } : {})
      })
    }
    if (type === 'directory') for (const name of fs.readdirSync(abs)) stack.push(path.join(rel, name))
  }
  return out
}

/** xattrs of every path but the root (the mountpoint's own), paths sorted (getfattr lists in directory order, which differs between filesystems), names in the order getfattr lists them. */
async function xattrsOf (root: string): Promise<Array<[string, Array<[string, string]>]>> {
  const xattrs = await treeXattrs(root)
  xattrs.delete('.')
  return [...xattrs].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([file, names]) => [file, [...names]])
}

function sameInode (tree: Map<string, Entry>, a: string, b: string): boolean {
  return tree.get(a)?.ino === tree.get(b)?.ino
}

/** Mounts and loop devices under the work directory. */
function leftovers (): string[] {
  return mountLeftovers(work)
}

function cleanup (): void {
  clearMountLeftovers(work, process.env.SHOAL_RUN_DIR)
}

describe('shoal mount, umount and run', { skip }, () => {
  let source: Map<string, Entry>
  before(async () => {
    makeRootfs(src)
    source = describeTree(src)
    const built = await shoal(['build', src, '--bootstrap', bootstrap, '--blob-dir', blobDir, '--chunk-size', String(CHUNK_SIZE)])
    assert.equal(built.code, 0, built.stderr)
  })
  after(() => {
    cleanup()
    const left = leftovers()
    fs.rmSync(work, { recursive: true, force: true })
    assert.deepEqual(left, [])
  })

  for (const mode of ['fuse', 'erofs']) {
    test(`mode ${mode}: the mounted tree equals the source, and umount leaves nothing`, async (t) => {
      const mnt = path.join(work, `mnt-${mode}`)
      fs.mkdirSync(mnt)
      const mounted = await shoal(['mount', `bootstrap:${bootstrap}`, mnt, '--mode', mode, '--cache-dir', path.join(work, `cache-${mode}`)])
      assert.equal(mounted.code, 0, mounted.stderr)
      t.diagnostic(mounted.stdout.trim())
      assert.match(mounted.stdout, new RegExp(`mode ${mode}`))
      try {
        const copy = describeTree(mnt)
        assert.deepEqual([...copy.keys()].sort(), [...source.keys()].sort())
        for (const [p, s] of source) {
          const c = copy.get(p) as Entry
          for (const field of ['type', 'mode', 'uid', 'gid', 'size', 'nlink', 'rdev', 'sha256', 'target'] as const) assert.equal(c[field], s[field], `${p}: ${field}`)
        }
        assert.ok(sameInode(copy, 'data/hello.txt', 'data/hard-link'), 'hard links share an inode')
        assert.ok(!sameInode(copy, 'data/hello.txt', 'data/multi-chunk'))
        assert.deepEqual(await xattrsOf(mnt), await xattrsOf(src))
        assert.throws(() => { fs.writeFileSync(path.join(mnt, 'data', 'new'), 'x') }, { code: 'EROFS' })
      } finally {
        const unmounted = await shoal(['umount', mnt])
        assert.equal(unmounted.code, 0, unmounted.stderr)
      }
      assert.deepEqual(leftovers(), [])
      assert.equal((await shoal(['umount', mnt])).code, 1, 'a second umount finds nothing')
    })
  }

  for (const mode of ['fuse', 'erofs']) {
    test(`mode ${mode}: shoal run prints what the container echoes and exits with its status`, async () => {
      const cache = path.join(work, `run-cache-${mode}`)
      const ran = await shoal(['run', `bootstrap:${bootstrap}`, '--mode', mode, '--cache-dir', cache, '--verbose', '--',
        'sh', '-c', 'echo "container says $(cat /data/hello.txt)"; echo scratch > /tmp/w && cat /tmp/w; id -u; exit 3'])
      assert.equal(ran.code, 3, ran.stderr)
      assert.equal(ran.stdout, 'container says hello from shoal\nscratch\n0\n')
      assert.match(ran.stderr, /read: blob-dir \d+ bytes/)
      // A second run reads every chunk from the cache.
      const again = await shoal(['run', `bootstrap:${bootstrap}`, '--mode', mode, '--cache-dir', cache, '--stats', '--', 'sh', '-c', 'cat /data/hello.txt'])
      assert.equal(again.code, 0, again.stderr)
      assert.equal(again.stdout, 'hello from shoal\n')
      assert.doesNotMatch(again.stderr, /blob-dir \d+ bytes/)
      assert.deepEqual(leftovers(), [])
    })
  }

  test('a corrupt chunk: EIO for the file that holds it, other files read fine', async () => {
    const corrupt = path.join(work, 'corrupt-blobs')
    fs.cpSync(blobDir, corrupt, { recursive: true })
    // Flip a byte inside the third chunk of /data/multi-chunk, as stored in its blob.
    const image = readBootstrap(fs.readFileSync(bootstrap))
    const file = image.root.entries?.find(e => e.name === 'data')?.node.entries?.find(e => e.name === 'multi-chunk')?.node
    const victim = file?.chunks?.[2]
    assert.ok(victim != null, 'multi-chunk has a third chunk')
    const blob = path.join(corrupt, image.blobs[victim.blobIndex].blobId)
    const data = fs.readFileSync(blob)
    data[victim.compressedOffset + Math.floor(victim.compressedSize / 2)] ^= 0xff
    fs.writeFileSync(blob, data)
    for (const mode of ['fuse', 'erofs']) {
      const cache = path.join(work, `corrupt-cache-${mode}`)
      const whole = await shoal(['run', `bootstrap:${bootstrap}`, '--mode', mode, '--blob-dir', corrupt, '--cache-dir', cache, '--',
        'sh', '-c', 'for f in /data/multi-chunk /data/sparse; do cat $f > /dev/null || echo "failed $f"; done; cat /data/hello.txt'])
      assert.match(whole.stdout + whole.stderr, /I\/O error|Input\/output error/, `${mode}: ${whole.stdout}${whole.stderr}`)
      assert.match(whole.stdout, /^failed \/data\/multi-chunk\nhello from shoal\n$/, `${mode}: only the corrupt file fails`)
      // The log line names the blob, the chunk and both digests.
      const blobId = image.blobs[victim.blobIndex].blobId
      const expected = Buffer.from(victim.digest).toString('hex')
      assert.match(whole.stderr, new RegExp(`chunk ${victim.index} of blob ${blobId}: digest [0-9a-f]{64}, expected ${expected}`), `${mode}: ${whole.stderr}`)
    }
    assert.deepEqual(leftovers(), [])
  })
})
