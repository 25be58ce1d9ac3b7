/**
 * The images of the conversion tests (busybox; several layers with whiteouts, an opaque directory,
 * hard links, symlinks, xattrs and devices; the all-entry-type fixture tar), converted to Nydus and
 * mounted by the real CLI in both modes: the mounted tree must equal `umoci unpack` of the source
 * (bytes, mode, owner, xattrs, link targets, hard-link groups and counts, rdev, mtime as far as the
 * mode keeps it), and `shoal umount` must leave no mount and no loop device behind.
 */
import { after, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import { join } from 'node:path'
import { fixtures, shoal } from './helpers.js'
import { buildBusyboxImage, buildMultiLayerImage, buildTarLayerImage, compareTrees, umociUnpack } from './oci-images.js'
import { clearMountLeftovers, mountLeftovers } from './mount-leftovers.js'

function have (command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0
}

function cannotRun (): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root'
  if (!fs.existsSync('/dev/fuse')) return 'no /dev/fuse'
  for (const tool of ['umoci', 'getfattr', 'setfattr', 'losetup', 'mknod']) if (!have(tool)) return `${tool} is not installed`
  if (!fs.existsSync('/bin/busybox')) return 'busybox-static is not installed'
  return undefined
}

const skip = cannotRun()
const work = fs.mkdtempSync(join(os.tmpdir(), 'shoal-mount-converted-'))
// Mount state files of these mounts, away from the host's /run/shoal.
process.env.SHOAL_RUN_DIR = join(work, 'run')

type Builder = (layout: string, tag: string, work: string) => Promise<void>
const images: Array<{ name: string, build: Builder }> = [
  { name: 'busybox', build: buildBusyboxImage },
  { name: 'multi-layer', build: buildMultiLayerImage },
  { name: 'all-entry-type', build: async (layout, tag, dir) => { await buildTarLayerImage(layout, tag, join(fixtures, 'tar', 'all-entry-type.tar'), dir) } }
]

/** Mounts and loop devices under the work directory. */
function leftovers (): string[] {
  return mountLeftovers(work)
}

function cleanup (): void {
  clearMountLeftovers(work, process.env.SHOAL_RUN_DIR)
}

describe('converted images, mounted in both modes, equal umoci unpack of their source', { skip }, () => {
  after(() => {
    cleanup()
    const left = leftovers()
    fs.rmSync(work, { recursive: true, force: true })
    assert.deepEqual(left, [])
  })

  for (const image of images) {
    test(`${image.name}: shoal mount --mode fuse and --mode erofs show umoci's tree; umount leaves nothing`, { timeout: 300_000 }, async (t) => {
      const dir = join(work, image.name)
      fs.mkdirSync(dir)
      const layout = join(dir, 'src')
      await image.build(layout, 'v1', dir)
      const nydus = `oci:${join(dir, 'nydus')}:v1-nydus`
      const converted = await shoal(['convert', `oci:${layout}:v1`, nydus])
      assert.equal(converted.code, 0, converted.stderr)
      const reference = await umociUnpack(layout, 'v1', join(dir, 'reference'))

      // Both modes run before any assertion on the trees, so a failure names every mode that differs.
      const differences: Record<string, string[]> = {}
      // FUSE mode gets times through fuse-native in milliseconds; EROFS keeps nanoseconds.
      for (const [mode, mtimeDigits] of [['fuse', 3], ['erofs', 9]] as const) {
        const mnt = join(dir, `mnt-${mode}`)
        fs.mkdirSync(mnt)
        const mounted = await shoal(['mount', nydus, mnt, '--mode', mode, '--cache-dir', join(dir, `cache-${mode}`)])
        assert.equal(mounted.code, 0, mounted.stderr)
        t.diagnostic(mounted.stdout.trim())
        assert.match(mounted.stdout, new RegExp(`mode ${mode}`), 'no fallback to another mode')
        try {
          // The leftovers check sees this mount's own loop devices (the bootstrap's and one per blob).
          const ours = leftovers().filter(l => l.startsWith('/dev/loop'))
          assert.equal(ours.length > 0, mode === 'erofs', `mode ${mode}: loop devices ${ours.join(', ')}`)
          differences[mode] = await compareTrees(reference, mnt, { mtimeDigits, nlink: true })
        } finally {
          const unmounted = await shoal(['umount', mnt])
          assert.equal(unmounted.code, 0, unmounted.stderr)
        }
        assert.deepEqual(leftovers(), [], `mode ${mode}: nothing mounted or attached under the work directory`)
      }
      assert.deepEqual(differences, { fuse: [], erofs: [] })
    })
  }
})
