/**
 * The full OCI pull through containerd 1.6 (Debian's): `ctr image pull` (which fetches and unpacks
 * into the overlayfs snapshotter) then `ctr run`. Each run gets a containerd of its own with an
 * empty root, started before the clock and stopped after, so every pull is cold.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { BenchCommandError, run, runUntilReady, startBackground, unmountUnder, which, type Background, type StartupSystem } from '@shoal/bench-harness'

export function containerdSystem (): StartupSystem {
  let daemon: Background | undefined
  let counter = 0
  const socketOf = (workDir: string): string => join(workDir, 'ctd', 'containerd.sock')
  const stopDaemon = async (workDir: string): Promise<void> => {
    await daemon?.stop(10_000)
    daemon = undefined
    await unmountUnder(join(workDir, 'ctd'))
    await rm(join(workDir, 'ctd'), { recursive: true, force: true })
  }
  return {
    name: 'oci-containerd',
    description: 'ctr image pull + ctr run (containerd 1.6, overlayfs, runc)',
    unavailable: async () => {
      for (const program of ['containerd', 'ctr', 'containerd-shim-runc-v2', 'runc']) if (!(await which(program))) return `${program} is not installed (Debian package containerd)`
      return undefined
    },
    prepare: async (target, options = {}) => {
      await stopDaemon(target.workDir)
      const dir = join(target.workDir, 'ctd')
      await mkdir(dir, { recursive: true })
      const config = join(dir, 'config.toml')
      await writeFile(config, [
        'version = 2',
        `root = "${join(dir, 'root')}"`,
        `state = "${join(dir, 'state')}"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${socketOf(target.workDir)}"`,
        '[ttrpc]',
        `  address = "${join(dir, 'ttrpc.sock')}"`,
        ''
      ].join('\n'))
      daemon = startBackground('containerd', ['--config', config])
      for (let attempt = 0; ; attempt++) {
        options.signal?.throwIfAborted()
        try {
          await run('ctr', ['-a', socketOf(target.workDir), 'version'], { timeoutMs: 5000 })
          return
        } catch {}
        if (attempt >= 200 || daemon.child.exitCode != null) throw new BenchCommandError(`containerd did not start: ${daemon.output().slice(-1500)}`)
        await sleep(50)
      }
    },
    start: async (target, options = {}) => {
      const socket = socketOf(target.workDir)
      const reference = target.ociRef.replace(/^docker:\/\//, '')
      const id = `shoal-bench-${process.pid}-${++counter}`
      const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`
      const script = [
        `ctr -a ${q(socket)} -n bench image pull --plain-http ${q(reference)} >/dev/null`,
        `exec ctr -a ${q(socket)} -n bench run --rm ${q(reference)} ${id}`
      ].join(' && ')
      const ready = await runUntilReady('sh', ['-c', script], { ...options, readyLine: target.image.ready.line, timeoutMs: 10 * 60_000 })
      return { seconds: ready.seconds, bytes: {}, detail: { runtime: 'containerd + runc' } }
    },
    reset: async (target) => { await stopDaemon(target.workDir) },
    close: async () => {}
  }
}
