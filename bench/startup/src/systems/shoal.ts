/**
 * Shoal's lazy start, three ways: cold from the registry (`shoal-registry`), from the local cache
 * filled by an earlier run (`shoal-warm`), and with a cold local cache but a seed daemon that holds
 * the whole image (`shoal-swarm`). The seed sits on the root namespace's loopback: the datacenter
 * LAN, uncapped; only the registry is behind the capped link.
 */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import {
  daemonBytes, missingShoalCommands, run, runUntilReady, sortSources, startShoalDaemon, unmountUnder,
  type ByteCounts, type RunningDaemon, type StartupRun, type StartupSystem, type StartupTarget
} from '@shoal/bench-harness'
import type { AbortOptions } from '@shoal/interface'

function registryHost (target: StartupTarget): string {
  return target.registry
}

/**
 * Bytes by source from `shoal run --verbose` on stderr ("read: registry 123 bytes (4 chunks), …"),
 * and the mount mode it used ("mode erofs").
 */
export function parseRunOutput (stderr: string): { bytes: Partial<ByteCounts>, mode?: string } {
  const mode = /\bmode (fuse|erofs)\b/.exec(stderr)?.[1]
  const line = stderr.split('\n').reverse().find(l => /\bread: /.test(l))
  if (line == null) return { bytes: {}, ...(mode != null ? { mode } : {}) }
  const bySource: Record<string, number> = {}
  for (const match of line.slice(line.indexOf('read: ')).matchAll(/([\w-]+) (\d+) bytes/g)) bySource[match[1]] = (bySource[match[1]] ?? 0) + Number(match[2])
  const sorted = sortSources(bySource)
  // A source the daemon or device did not name as registry, peers or cache is left out, not guessed.
  return { bytes: { peers: sorted.peers, cache: sorted.cache, ...(sorted.registry > 0 ? { reportedRegistry: sorted.registry } : {}) } as Partial<ByteCounts>, ...(mode != null ? { mode } : {}) }
}

async function shoalRun (shoalBin: string, target: StartupTarget, extra: string[], options: AbortOptions): Promise<{ seconds: number, stderr: string }> {
  const ready = await runUntilReady(shoalBin, ['run', target.nydusRef, '--insecure-registry', registryHost(target), '--verbose', ...extra, '--', ...target.image.ready.command], {
    ...options, readyLine: target.image.ready.line, timeoutMs: 10 * 60_000
  })
  return { seconds: ready.seconds, stderr: ready.stderr }
}

function runResult (ran: { seconds: number, stderr: string }): StartupRun {
  const { bytes, mode } = parseRunOutput(ran.stderr)
  const { reportedRegistry, ...counts } = bytes as Partial<ByteCounts> & { reportedRegistry?: number }
  return { seconds: ran.seconds, bytes: counts, detail: { ...(mode != null ? { mode } : {}), ...(reportedRegistry != null ? { reportedRegistryBytes: reportedRegistry } : {}) } }
}

export function shoalRegistrySystem (shoalBin: string): StartupSystem {
  return {
    name: 'shoal-registry',
    description: 'shoal run, cold cache: every chunk read comes from the registry',
    unavailable: async (options) => await missingShoalCommands(shoalBin, ['run'], options),
    prepare: async (target) => {
      await unmountUnder(join(target.workDir, 'cache'))
      await rm(join(target.workDir, 'cache'), { recursive: true, force: true })
    },
    start: async (target, options = {}) => {
      const ran = await shoalRun(shoalBin, target, ['--cache-dir', join(target.workDir, 'cache')], options)
      return runResult(ran)
    },
    reset: async (target) => {
      await unmountUnder(target.workDir)
      await rm(join(target.workDir, 'cache'), { recursive: true, force: true })
    },
    close: async () => {}
  }
}

export function shoalWarmSystem (shoalBin: string): StartupSystem {
  const warmed = new Set<string>()
  return {
    name: 'shoal-warm',
    description: 'shoal run, warm cache: the chunks an earlier run read are on local disk',
    unavailable: async (options) => await missingShoalCommands(shoalBin, ['run'], options),
    prepare: async (target, options = {}) => {
      if (warmed.has(target.workDir)) return
      await shoalRun(shoalBin, target, ['--cache-dir', join(target.workDir, 'cache')], options)
      warmed.add(target.workDir)
    },
    start: async (target, options = {}) => {
      const ran = await shoalRun(shoalBin, target, ['--cache-dir', join(target.workDir, 'cache')], options)
      return runResult(ran)
    },
    reset: async (target) => { await unmountUnder(target.workDir) },
    close: async () => {}
  }
}

export function shoalSwarmSystem (shoalBin: string): StartupSystem {
  const seeds = new Map<string, RunningDaemon>()
  let host: RunningDaemon | undefined
  let counter = 0
  const stopHost = async (workDir: string): Promise<void> => {
    await host?.stop()
    host = undefined
    await unmountUnder(join(workDir, 'host'))
    await rm(join(workDir, 'host'), { recursive: true, force: true })
  }
  return {
    name: 'shoal-swarm',
    description: 'shoal run through a host daemon with a cold cache; a seed daemon (preheated, on the LAN) holds the image',
    unavailable: async (options) => await missingShoalCommands(shoalBin, ['run', 'daemon', 'preheat', 'status'], { ...options, flags: { run: ['--daemon'] } }),
    prepare: async (target, options = {}) => {
      let seed = seeds.get(target.workDir)
      if (seed == null) {
        const dir = join(target.workDir, 'seed')
        await mkdir(dir, { recursive: true })
        seed = await startShoalDaemon(shoalBin, ['--seed', '--state-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--allow', '/ip4/127.0.0.1',
          '--insecure-registry', registryHost(target)], { ...options, socket: join(dir, 'run', 'api.sock') })
        seeds.set(target.workDir, seed)
        await run(shoalBin, ['preheat', '--daemon', seed.socket, target.nydusRef], { ...options, timeoutMs: 10 * 60_000 })
      }
      await stopHost(target.workDir)
      const dir = join(target.workDir, 'host')
      await mkdir(dir, { recursive: true })
      const bootstrap = seed.addresses.find(a => a.includes('/ip4/127.0.0.1/')) ?? seed.addresses[0]
      host = await startShoalDaemon(shoalBin, ['--state-dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--allow', '/ip4/127.0.0.1',
        '--bootstrap', bootstrap.includes('/p2p/') ? bootstrap : `${bootstrap}/p2p/${seed.peerId}`,
        '--insecure-registry', registryHost(target)], { ...options, socket: join(dir, 'run', `api-${++counter}.sock`) })
    },
    start: async (target, options = {}) => {
      if (host == null) throw new Error('shoal-swarm: prepare did not start a host daemon')
      const ran = await shoalRun(shoalBin, target, ['--daemon', host.socket], options)
      const bytes = await daemonBytes(shoalBin, host.socket, options)
      return { seconds: ran.seconds, bytes: { peers: bytes.peers, cache: bytes.cache }, detail: { daemonRegistryBytes: bytes.registry } }
    },
    reset: async (target) => { await stopHost(target.workDir) },
    close: async () => {
      for (const seed of seeds.values()) await seed.stop()
      seeds.clear()
    }
  }
}
