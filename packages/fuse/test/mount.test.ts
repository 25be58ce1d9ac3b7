/**
 * Real mounts of a real tree (busybox and every kind of inode) in both modes, compared with the
 * source; a corrupt chunk gives EIO for its file only; nothing is left mounted afterwards.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { mountImage, type ImageMount } from '../src/index.js'
import { buildImageOf, cannotMount, cleanupUnder, describeTree, execAsync, leftovers, linkGroups, localDevice, makeSourceTree, probeTree, type Seen } from './helpers.js'
import { treeXattrs, type TreeXattrs } from '@shoal/interface/test-fixtures'
import type { BuildResult } from '@shoal/builder'

const why = cannotMount()
const BUSYBOX = '/bin/busybox'
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-fuse-test-'))
let built: BuildResult & { bootstrapPath: string, blobDir: string }
let source: Map<string, Seen>
let sourceXattrs: TreeXattrs

function compare (copy: Map<string, Seen>, fields: Array<keyof Seen>): void {
  assert.deepEqual([...copy.keys()].sort(), [...source.keys()].sort())
  for (const [p, s] of source) {
    if (p === '.') continue // the mkdtemp root's mode is not the image's business
    const c = copy.get(p) as Seen
    for (const field of fields) {
      if (field === 'nlink' && s.type === 'directory') continue
      assert.equal(c[field], s[field], `${p}: ${field}`)
    }
  }
}

describe('mounted images equal their source tree', { skip: why }, () => {
  before(async () => {
    const src = path.join(work, 'src')
    makeSourceTree(src)
    built = await buildImageOf(src, path.join(work, 'image'))
    source = describeTree(src)
    sourceXattrs = await treeXattrs(src)
  })
  after(() => {
    cleanupUnder(work)
    const left = leftovers(work)
    fs.rmSync(work, { recursive: true, force: true })
    assert.deepEqual(left, [], 'mounts or loop devices left behind')
  })

  for (const mode of ['fuse', 'erofs'] as const) {
    test(`mode ${mode}: bytes, modes, owners, times, links, devices, xattrs`, async (t) => {
      const device = localDevice(built.image, built.blobDir)
      const mountpoint = path.join(work, `mnt-${mode}`)
      fs.mkdirSync(mountpoint)
      let mount: ImageMount | undefined
      try {
        mount = await mountImage({ device, mountpoint, mode, workDir: path.join(work, `state-${mode}`), bootstrapPath: built.bootstrapPath, logger: m => { t.diagnostic(m) } })
        t.diagnostic(`mode used: ${mount.mode}${mount.fallbackReason != null ? ` (fallback: ${mount.fallbackReason})` : ''}`)
        if (mode === 'erofs' && fs.readFileSync('/proc/filesystems', 'utf8').includes('erofs')) assert.equal(mount.mode, 'erofs', mount.fallbackReason)
        // Everything about the mount is looked at from child processes: this process serves it.
        const { tree: copy, xattrs: copyXattrs } = await probeTree(mountpoint)
        compare(copy, ['type', 'mode', 'uid', 'gid', 'size', 'mtimeMs', 'nlink', 'rdev', 'sha256', 'target'])
        assert.deepEqual(linkGroups(copy), linkGroups(source))
        assert.ok(linkGroups(copy).some(g => g.includes('data/hard-link')))
        copyXattrs.delete('.')
        const srcX = new Map(sourceXattrs)
        srcX.delete('.')
        assert.deepEqual(copyXattrs, srcX)
        // Read-only: writes are refused.
        const write = await execAsync(BUSYBOX, ['sh', '-c', `echo x > ${mountpoint}/data/new`])
        assert.notEqual(write.status, 0)
        assert.match(write.stderr, /Read-only file system/)
        const remove = await execAsync(BUSYBOX, ['rm', `${mountpoint}/data/hello.txt`])
        assert.match(remove.stderr, /Read-only file system/)
        // The image's own busybox runs from the mount.
        const echo = await execAsync(path.join(mountpoint, 'bin', 'busybox'), ['echo', 'busybox runs'])
        assert.equal(echo.stdout, 'busybox runs\n')
        const statfs = await execAsync(BUSYBOX, ['stat', '-f', '-c', '%b %c', mountpoint])
        const [blocks, files] = statfs.stdout.trim().split(' ').map(Number)
        assert.ok(blocks > 0 && files > 0, statfs.stdout)
      } finally {
        await mount?.unmount()
        await device.close()
      }
      assert.deepEqual(leftovers(work), [])
    })
  }

  test('a corrupt chunk: EIO for its file, the other files read fine, in both modes', async (t) => {
    const copyDir = path.join(work, 'corrupt')
    fs.cpSync(path.dirname(built.bootstrapPath), copyDir, { recursive: true })
    const image = built.image
    const target = image.root.entries?.find(e => e.name === 'data')?.node.entries?.find(e => e.name === 'multi-chunk')?.node
    assert.ok(target?.chunks != null && target.chunks.length > 2)
    const victim = target.chunks[2]
    const blobFile = path.join(copyDir, 'blobs', image.blobs[victim.blobIndex].blobId)
    const fd = fs.openSync(blobFile, 'r+')
    const byte = Buffer.alloc(1)
    fs.readSync(fd, byte, 0, 1, victim.compressedOffset + Math.floor(victim.compressedSize / 2))
    byte[0] ^= 0xff
    fs.writeSync(fd, byte, 0, 1, victim.compressedOffset + Math.floor(victim.compressedSize / 2))
    fs.closeSync(fd)
    for (const mode of ['fuse', 'erofs'] as const) {
      const device = localDevice(image, path.join(copyDir, 'blobs'))
      const mountpoint = path.join(work, `mnt-corrupt-${mode}`)
      fs.mkdirSync(mountpoint)
      const logged: string[] = []
      let mount: ImageMount | undefined
      try {
        mount = await mountImage({ device, mountpoint, mode, workDir: path.join(work, `state-corrupt-${mode}`), bootstrapPath: built.bootstrapPath, logger: m => { logged.push(m) } })
        const file = path.join(mountpoint, 'data', 'multi-chunk')
        // Chunks before the corrupt one read, the corrupt one fails: never wrong bytes.
        const head = await execAsync(BUSYBOX, ['sh', '-c', `dd if=${file} bs=${victim.fileOffset} count=1 2>/dev/null | wc -c`])
        assert.equal(head.stdout.trim(), String(victim.fileOffset))
        const bad = await execAsync(BUSYBOX, ['dd', `if=${file}`, 'of=/dev/null', 'bs=4096', `skip=${Math.floor(victim.fileOffset / 4096) + 1}`, 'count=1'])
        assert.notEqual(bad.status, 0)
        assert.match(bad.stderr, /I\/O error|Input\/output error/)
        const whole = await execAsync(BUSYBOX, ['cat', file])
        assert.match(whole.stderr, /I\/O error|Input\/output error/)
        const hello = await execAsync(BUSYBOX, ['cat', path.join(mountpoint, 'data', 'hello.txt')])
        assert.equal(hello.stdout, 'hello from shoal\n')
        assert.equal((await execAsync(path.join(mountpoint, 'bin', 'busybox'), ['true'])).status, 0)
        assert.ok(mount.counters().readErrors > 0, `${mode}: read errors counted`)
        assert.ok(logged.some(l => l.includes('EIO')), `${mode}: a log line for the failed read`)
        t.diagnostic(`${mode} (${mount.mode}): ${logged.find(l => l.includes('EIO'))}`)
      } finally {
        await mount?.unmount()
        await device.close()
      }
    }
    assert.deepEqual(leftovers(work), [])
  })
})
