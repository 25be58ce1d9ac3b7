/**
 * The swarm without Shoal: every host pulls the whole OCI image from the registry itself (skopeo
 * copy + umoci unpack + runc run, in its own namespace), all at once.
 */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { run, runUntilReady, unmountUnder, which, type SwarmSystem } from '@shoal/bench-harness'

export function ociSwarmSystem (): SwarmSystem {
  const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`
  const idOf = (index: number): string => `shoal-bench-swarm-${process.pid}-${index}`
  return {
    name: 'oci',
    description: 'every host pulls the full image: skopeo copy + umoci unpack + runc run',
    unavailable: async () => {
      for (const program of ['skopeo', 'umoci', 'runc']) if (!(await which(program))) return `${program} is not installed`
      return undefined
    },
    setup: async (target) => {
      for (const host of target.hosts) await mkdir(join(host.workDir, 'pull'), { recursive: true })
    },
    startOnHost: async (target, host, options = {}) => {
      const dir = join(host.workDir, 'pull')
      const script = [
        `skopeo copy --quiet --src-tls-verify=false ${q(target.ociRef)} ${q(`oci:${dir}/layout:image`)}`,
        `umoci unpack --image ${q(`${dir}/layout:image`)} ${q(`${dir}/bundle`)} >/dev/null`,
        `sed -i 's/"terminal": *true/"terminal": false/' ${q(`${dir}/bundle/config.json`)}`,
        `exec runc --root ${q(`${dir}/runc`)} run -b ${q(`${dir}/bundle`)} ${idOf(host.index)}`
      ].join(' && ')
      const ready = await runUntilReady('sh', ['-c', script], { ...options, netns: host.namespace, readyLine: target.image.ready.line, timeoutMs: 10 * 60_000 })
      return { host: host.index, seconds: ready.seconds, bytes: { peers: 0, cache: 0 } }
    },
    teardown: async (target) => {
      for (const host of target.hosts) {
        const dir = join(host.workDir, 'pull')
        await run('runc', ['--root', join(dir, 'runc'), 'delete', '--force', idOf(host.index)], { timeoutMs: 30_000 }).catch(() => {})
        await unmountUnder(dir)
        await rm(dir, { recursive: true, force: true })
      }
    }
  }
}
