/**
 * Driving the `shoal` CLI under measurement: which of its commands exist yet (the mount and swarm
 * parts land separately), a daemon started as a background process, and a daemon's bytes by source.
 */
import { chmod, mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AbortOptions } from '@shoal/interface'
import type { ByteCounts } from './contracts.js'
import { BenchCommandError } from './errors.js'
import { run, startBackground, type Background } from './exec.js'

/** The commands `shoal --help` lists. */
export async function shoalCommands (shoalBin: string, options: AbortOptions = {}): Promise<Set<string>> {
  try {
    const ran = await run(shoalBin, ['--help'], { ...options, timeoutMs: 30_000 })
    const names = ran.stdout.split('\n').map(l => /^ {2}(\S+)\s{2,}/.exec(l)?.[1]).filter((n): n is string => n != null)
    return new Set(names)
  } catch {
    return new Set()
  }
}

/** The --help text of one command ('' when it has none). */
async function commandHelp (shoalBin: string, command: string, options: AbortOptions): Promise<string> {
  try {
    return (await run(shoalBin, [command, '--help'], { ...options, timeoutMs: 30_000 })).stdout
  } catch {
    return ''
  }
}

/**
 * Why the needed commands (and options of them, as `run --daemon`) are missing, or undefined when
 * all are there: the mount and swarm parts of Shoal land separately.
 */
export async function missingShoalCommands (shoalBin: string, needed: string[], options: AbortOptions & { flags?: Record<string, string[]> } = {}): Promise<string | undefined> {
  const have = await shoalCommands(shoalBin, options)
  const missing = needed.filter(c => !have.has(c))
  if (missing.length > 0) {
    return `shoal has no ${missing.map(c => `'${c}'`).join(', ')} command yet (${missing.includes('run') ? 'packages/fuse' : 'packages/daemon'} has not landed in the CLI)`
  }
  for (const [command, flags] of Object.entries(options.flags ?? {})) {
    const help = await commandHelp(shoalBin, command, options)
    const absent = flags.filter(f => !help.includes(f))
    if (absent.length > 0) return `'shoal ${command}' has no ${absent.join(', ')} option yet`
  }
  return undefined
}

/** Sorts a daemon's or a run's per-source byte counts into registry, peers and cache. */
export function sortSources (bySource: Record<string, number> | undefined): ByteCounts {
  const counts: ByteCounts = { registry: 0, peers: 0, cache: 0 }
  for (const [source, bytes] of Object.entries(bySource ?? {})) {
    if (!Number.isFinite(bytes)) continue
    if (/registry|backend/i.test(source)) counts.registry += bytes
    else if (/peer|swarm/i.test(source)) counts.peers += bytes
    else if (/cache/i.test(source)) counts.cache += bytes
  }
  return counts
}

export interface RunningDaemon {
  background: Background
  socket: string
  peerId: string
  addresses: string[]
  stop: () => Promise<void>
}

/** Starts `shoal daemon ARGS` and waits (bounded) for it to print its peer id. */
export async function startShoalDaemon (shoalBin: string, args: string[], init: AbortOptions & { socket: string, netns?: string, timeoutMs?: number }): Promise<RunningDaemon> {
  // The daemon refuses a socket in a directory others can enter.
  await mkdir(dirname(init.socket), { recursive: true, mode: 0o700 })
  await chmod(dirname(init.socket), 0o700)
  const background = startBackground(shoalBin, ['daemon', '--api-socket', init.socket, ...args], { netns: init.netns })
  const deadline = Date.now() + (init.timeoutMs ?? 30_000)
  for (let attempt = 0; attempt < 1000; attempt++) {
    const output = background.output()
    const peerId = /^peer id: (\S+)/m.exec(output)?.[1]
    if (peerId != null && /^shoal daemon ready/m.test(output)) {
      const addresses = [...output.matchAll(/^address: (\S+)/gm)].map(m => m[1])
      return { background, socket: init.socket, peerId, addresses, stop: async () => { await background.stop(10_000) } }
    }
    if (background.child.exitCode != null || background.child.signalCode != null || Date.now() > deadline || init.signal?.aborted === true) {
      await background.stop()
      init.signal?.throwIfAborted()
      throw new BenchCommandError(`shoal daemon ${args.join(' ')} did not become ready: ${output.slice(-2000)}`)
    }
    await sleep(50)
  }
  await background.stop()
  throw new BenchCommandError(`shoal daemon ${args.join(' ')} did not become ready`)
}

/** The parts of `shoal status --json` the benchmarks read. */
export interface DaemonStatusJson {
  bytesBySource?: Record<string, number>
  chunksBySource?: Record<string, number>
  served?: { bytes: number, chunks: number }
  memory?: { rss: number, heapUsed: number }
}

/** `shoal status --json` of a daemon. */
export async function daemonStatus (shoalBin: string, socket: string, options: AbortOptions = {}): Promise<DaemonStatusJson> {
  const ran = await run(shoalBin, ['status', '--daemon', socket, '--json'], { ...options, timeoutMs: 30_000 })
  return JSON.parse(ran.stdout) as DaemonStatusJson
}

/** `shoal status --json` of a daemon, sorted by source. */
export async function daemonBytes (shoalBin: string, socket: string, options: AbortOptions = {}): Promise<ByteCounts & { raw: Record<string, number> }> {
  const status = await daemonStatus(shoalBin, socket, options)
  return { ...sortSources(status.bytesBySource), raw: status.bytesBySource ?? {} }
}
