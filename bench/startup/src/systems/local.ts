/**
 * The floor: a rootfs already unpacked on local disk. Untimed, `skopeo copy` of the image (once per
 * image) and a fresh `umoci unpack` into a bundle before each run; timed, only `runc run` of that
 * bundle until the ready line. No mode that fetches anything can start faster.
 */
import { access, mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { run, runUntilReady, unmountUnder, which, type StartupSystem } from '@shoal/bench-harness'

export function localSystem (): StartupSystem {
  const ids = new Map<string, string>()
  let counter = 0
  return {
    name: 'local',
    description: 'runc run of a rootfs already unpacked on local disk (skopeo copy + umoci unpack untimed)',
    unavailable: async () => {
      for (const program of ['skopeo', 'umoci', 'runc']) if (!(await which(program))) return `${program} is not installed`
      return undefined
    },
    prepare: async (target, options = {}) => {
      const layout = join(target.workDir, 'layout')
      const dir = join(target.workDir, 'run')
      await rm(dir, { recursive: true, force: true })
      await mkdir(dir, { recursive: true })
      // The pulled layout serves every run of this image; each run gets a fresh unpack, as its container may write.
      const pulled = await access(join(layout, 'index.json')).then(() => true, () => false)
      if (!pulled) await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', target.ociRef, `oci:${layout}:image`], { ...options, timeoutMs: 30 * 60_000 })
      await run('umoci', ['unpack', '--image', `${layout}:image`, join(dir, 'bundle')], { ...options, timeoutMs: 10 * 60_000 })
      await run('sed', ['-i', 's/"terminal": *true/"terminal": false/', join(dir, 'bundle', 'config.json')], options)
    },
    start: async (target, options = {}) => {
      const dir = join(target.workDir, 'run')
      const id = `shoal-bench-local-${process.pid}-${++counter}`
      ids.set(target.workDir, id)
      const ready = await runUntilReady('runc', ['--root', join(dir, 'runc'), 'run', '-b', join(dir, 'bundle'), id], { ...options, readyLine: target.image.ready.line, timeoutMs: 10 * 60_000 })
      return { seconds: ready.seconds, bytes: {}, detail: { runtime: 'runc' } }
    },
    reset: async (target) => {
      const dir = join(target.workDir, 'run')
      const id = ids.get(target.workDir)
      if (id != null) await run('runc', ['--root', join(dir, 'runc'), 'delete', '--force', id], { timeoutMs: 30_000 }).catch(() => {})
      await unmountUnder(dir)
      await rm(dir, { recursive: true, force: true })
    },
    close: async () => {}
  }
}
