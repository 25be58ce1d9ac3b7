/**
 * The full OCI pull, the baseline: `skopeo copy` of every layer from the registry into a local
 * layout, `umoci unpack` into a bundle, `runc run`. All three are inside the timed command.
 */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { run, runUntilReady, unmountUnder, which, type StartupSystem, type StartupTarget } from '@shoal/bench-harness'

export function ociSystem (): StartupSystem {
  const ids = new Map<string, string>()
  let counter = 0
  return {
    name: 'oci',
    description: 'skopeo copy + umoci unpack + runc run (the full pull)',
    unavailable: async () => {
      for (const program of ['skopeo', 'umoci', 'runc']) if (!(await which(program))) return `${program} is not installed`
      return undefined
    },
    prepare: async (target) => {
      await rm(join(target.workDir, 'pull'), { recursive: true, force: true })
      await mkdir(join(target.workDir, 'pull'), { recursive: true })
    },
    start: async (target, options = {}) => {
      const dir = join(target.workDir, 'pull')
      const id = `shoal-bench-oci-${process.pid}-${++counter}`
      ids.set(target.workDir, id)
      const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`
      // One shell line, so the clock covers exactly what a person would type.
      const script = [
        `skopeo copy --quiet --src-tls-verify=false ${q(target.ociRef)} ${q(`oci:${dir}/layout:image`)}`,
        `umoci unpack --image ${q(`${dir}/layout:image`)} ${q(`${dir}/bundle`)} >/dev/null`,
        `sed -i 's/"terminal": *true/"terminal": false/' ${q(`${dir}/bundle/config.json`)}`,
        `exec runc --root ${q(`${dir}/runc`)} run -b ${q(`${dir}/bundle`)} ${id}`
      ].join(' && ')
      const ready = await runUntilReady('sh', ['-c', script], { ...options, readyLine: target.image.ready.line, timeoutMs: 10 * 60_000 })
      return { seconds: ready.seconds, bytes: {}, detail: { runtime: 'runc' } }
    },
    reset: async (target) => {
      const dir = join(target.workDir, 'pull')
      const id = ids.get(target.workDir)
      if (id != null) await run('runc', ['--root', join(dir, 'runc'), 'delete', '--force', id], { timeoutMs: 30_000 }).catch(() => {})
      await unmountUnder(dir)
      await rm(dir, { recursive: true, force: true })
    },
    close: async () => {}
  }
}
