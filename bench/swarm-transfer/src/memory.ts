/**
 * The memory of real `shoal daemon` processes, idle and busy, read from /proc/PID/status: a seed
 * and two hosts bootstrapped to it, all on loopback, with Debian's docker-registry on loopback too.
 * Phases: all idle; the seed preheating an image (every chunk from the registry); host 1 preheating
 * it (every chunk from the seed over the swarm, the seed serving); host 2 preheating it (from the
 * seed and host 1: does a server's memory grow with what it serves?). Beside them, the floor:
 * a bare Node process and a bare swarm node (the transfer peer holding no data).
 *
 * VmRSS is the resident set now; VmHWM its peak, reset at each phase's start (clear_refs 5) so it is
 * the phase's own peak; VmRSS is also sampled every 100 ms while a phase runs.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  Cleanup, cleanupOnSignals, daemonStatus, markdownTable, publishImage, run, sortSources, startBackground, startBenchRegistry, startShoalDaemon,
  type RunningDaemon
} from '@shoal/bench-harness'
import { buildImage, recipes } from '@shoal/bench-images'

const MIB = 1024 * 1024
const SAMPLE_MS = 100

/** Bytes resident now (anonymous, and file-backed or shared), at the peak, and the thread count. */
export interface ProcessMemory { rss: number, hwm: number, anon: number, file: number, threads: number }

/** A process's memory from /proc/PID/status. */
export async function processMemory (pid: number): Promise<ProcessMemory> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const field = (name: string): number => {
    const value = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1]
    if (value == null) throw new Error(`/proc/${pid}/status has no ${name} line`)
    return Number(value)
  }
  return { rss: field('VmRSS') * 1024, hwm: field('VmHWM') * 1024, anon: field('RssAnon') * 1024, file: (field('RssFile') + field('RssShmem')) * 1024, threads: field('Threads') }
}

/** Resets VmHWM to the current VmRSS (Linux ≥ 4.0, needs the right to ptrace it); false when refused. */
async function resetPeak (pid: number): Promise<boolean> {
  try {
    await writeFile(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/** Samples the VmRSS of some processes every 100 ms until stopped; keeps each one's maximum. */
interface Sampled { max: Map<number, number>, samples: number }

function sampleRss (pids: number[]): { stop: () => Promise<Sampled> } {
  const max = new Map<number, number>(pids.map(pid => [pid, 0]))
  let samples = 0
  let pending: Promise<void> = Promise.resolve()
  const timer = setInterval(() => {
    // A slow read skips a tick rather than piling reads up.
    pending = pending.then(async () => {
      for (const pid of pids) {
        const { rss } = await processMemory(pid).catch(() => ({ rss: 0 }))
        max.set(pid, Math.max(max.get(pid) ?? 0, rss))
      }
      samples++
    })
  }, SAMPLE_MS)
  return {
    stop: async () => {
      clearInterval(timer)
      await pending
      return { max, samples }
    }
  }
}

/** The memory once VmRSS has stopped moving: two reads 1 s apart within 1 MiB, or the last read after 15 s. */
async function settled (pid: number): Promise<ProcessMemory> {
  let last = await processMemory(pid)
  for (let i = 0; i < 15; i++) {
    await sleep(1000)
    const now = await processMemory(pid)
    if (Math.abs(now.rss - last.rss) < MIB) return now
    last = now
  }
  return last
}

interface DaemonCounts { registry: number, peers: number, cache: number, served: number, chunksFetched: number, chunksServed: number, heapUsed: number }

async function daemonCounts (shoalBin: string, daemon: RunningDaemon, signal: AbortSignal): Promise<DaemonCounts> {
  const status = await daemonStatus(shoalBin, daemon.socket, { signal })
  const chunks = sortSources(status.chunksBySource)
  return {
    ...sortSources(status.bytesBySource),
    served: status.served?.bytes ?? 0,
    chunksFetched: chunks.registry + chunks.peers,
    chunksServed: status.served?.chunks ?? 0,
    heapUsed: status.memory?.heapUsed ?? NaN
  }
}

export interface MemoryRow {
  process: string
  phase: string
  /** VmRSS at the phase's start (idle rows: undefined). */
  rssBeforeMiB?: number
  /** VmHWM over the phase (idle rows: since the process started). */
  peakMiB: number
  /** The largest VmRSS sampled every 100 ms during the phase (idle rows: undefined). */
  sampledMaxMiB?: number
  samples?: number
  /** VmRSS at rest: idle rows a few seconds after ready, busy rows once settled after the phase; split into anonymous and file-backed/shared. */
  rssMiB: number
  anonMiB: number
  fileMiB: number
  threads: number
  /** V8 heap in use right after the phase, as the daemon reports it (daemons only). */
  heapUsedMiB?: number
  seconds?: number
  /**
   * What this process moved during the phase: bytes fetched from the registry (stored, i.e.
   * compressed) and from peers (as sent: uncompressed), bytes served to peers, and chunks.
   */
  registryMiB?: number
  peersMiB?: number
  servedMiB?: number
  chunksFetched?: number
  chunksServed?: number
}

export interface MemoryReport {
  image: string
  nydusMiB: number
  loadavgBefore: string
  loadavgAfter: string
  peakReset: boolean
  rows: MemoryRow[]
}

/** A process to measure beside the daemons, started by the caller; stop() ends it. */
export interface FloorProcess { what: string, pid: number, stop: () => Promise<void> }

const toMiB = (bytes: number): number => +(bytes / MIB).toFixed(1)
const atRest = (m: ProcessMemory): Pick<MemoryRow, 'rssMiB' | 'anonMiB' | 'fileMiB' | 'threads'> => ({ rssMiB: toMiB(m.rss), anonMiB: toMiB(m.anon), fileMiB: toMiB(m.file), threads: m.threads })
const idleMemory = (m: ProcessMemory): Pick<MemoryRow, 'peakMiB' | 'rssMiB' | 'anonMiB' | 'fileMiB' | 'threads'> => ({ peakMiB: toMiB(m.hwm), ...atRest(m) })

async function freeLoopbackPort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve) })
  const port = (server.address() as net.AddressInfo).port
  await new Promise(resolve => server.close(resolve))
  return port
}

async function loadavg (): Promise<string> {
  return (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')
}

export async function measureDaemonMemory (init: { imageName: string, shoalBin: string, floors: Array<() => Promise<FloorProcess>>, log: (line: string) => void }): Promise<MemoryReport> {
  const recipe = recipes[init.imageName]
  if (recipe == null) throw new Error(`--image: one of ${Object.keys(recipes).join(', ')} was expected, got '${init.imageName}'`)
  const cleanup = new Cleanup()
  const { signal, dispose } = cleanupOnSignals(cleanup)
  try {
    const workDir = await mkdtemp(join(tmpdir(), 'shoal-bench-memory-'))
    cleanup.defer(`remove ${workDir}`, async () => { await rm(workDir, { recursive: true, force: true }) })
    const loadavgBefore = await loadavg()
    const rows: MemoryRow[] = []

    init.log('memory: the floor (bare processes)')
    const bareNode = startBackground(process.execPath, ['-e', 'setInterval(() => {}, 1000)'])
    cleanup.defer(`stop bare node (pid ${bareNode.child.pid ?? '?'})`, async () => { await bareNode.stop() })
    const floors: FloorProcess[] = [{ what: `bare Node ${process.version} (setInterval)`, pid: bareNode.child.pid!, stop: async () => { await bareNode.stop() } }]
    for (const start of init.floors) {
      const floor = await start()
      cleanup.defer(`stop ${floor.what} (pid ${floor.pid})`, floor.stop)
      floors.push(floor)
    }
    await sleep(3000)
    for (const floor of floors) {
      rows.push({ process: floor.what, phase: 'idle', ...idleMemory(await processMemory(floor.pid)) })
      await floor.stop()
    }

    init.log(`memory: docker-registry on loopback, ${recipe.name} converted to Nydus`)
    const image = await buildImage(recipe, { signal, onProgress: init.log })
    const registry = await startBenchRegistry({ address: '127.0.0.1', port: await freeLoopbackPort(), dir: join(workDir, 'registry') }, cleanup, { signal })
    const published = await publishImage(image, registry, init.shoalBin, { signal, workDir: join(workDir, 'convert') })

    init.log('memory: a seed and two host daemons')
    const daemonArgs = (name: string): string[] => ['--state-dir', join(workDir, name, 'state'), '--listen', '/ip4/127.0.0.1/tcp/0', '--allow', '/ip4/127.0.0.1', '--insecure-registry', registry.registry]
    const daemons: Array<{ name: string, what: string, daemon: RunningDaemon, pid: number }> = []
    for (const name of ['seed', 'host 1', 'host 2']) {
      const dir = name.replace(' ', '')
      const role = name === 'seed' ? ['--seed'] : ['--bootstrap', daemons[0]!.daemon.addresses[0]!]
      const daemon = await startShoalDaemon(init.shoalBin, [...daemonArgs(dir), ...role], { signal, socket: join(workDir, dir, 'run', 'api.sock') })
      cleanup.defer(`stop the ${name} daemon (pid ${daemon.background.child.pid ?? '?'})`, daemon.stop)
      // `shoal` execs node, so the spawned pid is the daemon's.
      daemons.push({ name, what: `shoal daemon (${name})`, daemon, pid: daemon.background.child.pid! })
    }
    await sleep(3000)
    for (const { what, pid } of daemons) {
      rows.push({ process: what, phase: 'idle, 3 s after ready', ...idleMemory(await processMemory(pid)) })
    }

    let peakReset = true
    /** Rows for the preheating daemon and every daemon that served it. */
    const busyPhase = async (preheater: typeof daemons[number]): Promise<void> => {
      const before = new Map<number, { rss: number, counts: DaemonCounts }>()
      for (const { daemon, pid } of daemons) before.set(pid, { rss: (await processMemory(pid)).rss, counts: await daemonCounts(init.shoalBin, daemon, signal) })
      for (const { pid } of daemons) peakReset = await resetPeak(pid) && peakReset
      const sampler = sampleRss(daemons.map(d => d.pid))
      const started = performance.now()
      let sampled: Sampled
      try {
        await run(init.shoalBin, ['preheat', '--daemon', preheater.daemon.socket, published.nydusRef, '--json'], { signal, timeoutMs: 10 * 60_000 })
      } finally {
        sampled = await sampler.stop()
      }
      const seconds = (performance.now() - started) / 1000
      for (const { what, daemon, pid } of daemons) {
        const peak = (await processMemory(pid)).hwm
        const counts = await daemonCounts(init.shoalBin, daemon, signal)
        const start = before.get(pid)!
        if (pid !== preheater.pid && counts.served === start.counts.served) continue
        const rest = await settled(pid)
        rows.push({
          process: what,
          phase: `${preheater.name} preheats`,
          rssBeforeMiB: toMiB(start.rss),
          peakMiB: toMiB(peak),
          sampledMaxMiB: toMiB(sampled.max.get(pid) ?? 0),
          samples: sampled.samples,
          ...atRest(rest),
          heapUsedMiB: toMiB(counts.heapUsed),
          seconds: +seconds.toFixed(2),
          registryMiB: toMiB(counts.registry - start.counts.registry),
          peersMiB: toMiB(counts.peers - start.counts.peers),
          servedMiB: toMiB(counts.served - start.counts.served),
          chunksFetched: counts.chunksFetched - start.counts.chunksFetched,
          chunksServed: counts.chunksServed - start.counts.chunksServed
        })
      }
    }
    for (const preheater of daemons) {
      init.log(`memory: ${preheater.name} preheats`)
      await busyPhase(preheater)
    }

    return { image: `${recipe.name}: ${recipe.description}`, nydusMiB: toMiB(published.nydusBytes), loadavgBefore, loadavgAfter: await loadavg(), peakReset, rows }
  } finally {
    const failures = await cleanup.runAll()
    for (const failure of failures) init.log(`cleanup: ${failure}`)
    dispose()
  }
}

export function memoryMarkdown (report: MemoryReport): string {
  const cell = (n: number | undefined): string => n == null || !Number.isFinite(n) ? '' : String(n)
  const table = markdownTable(
    ['process', 'phase', 'RSS before MiB', `peak MiB (VmHWM${report.peakReset ? ', this phase' : ', since start'})`, 'max sampled MiB', 'RSS at rest MiB', 'anon MiB', 'file+shmem MiB', 'threads', 'V8 heap used MiB', 's', 'from registry MiB', 'from peers MiB', 'served MiB', 'chunks fetched', 'chunks served'],
    report.rows.map(r => [r.process, r.phase, cell(r.rssBeforeMiB), cell(r.peakMiB), cell(r.sampledMaxMiB), cell(r.rssMiB), cell(r.anonMiB), cell(r.fileMiB), cell(r.threads), cell(r.heapUsedMiB), cell(r.seconds),
      cell(r.registryMiB), cell(r.peersMiB), cell(r.servedMiB), cell(r.chunksFetched), cell(r.chunksServed)]),
    2)
  return [
    `Memory of shoal daemons on loopback; image ${report.image}, ${report.nydusMiB} MiB as Nydus in the registry. ` +
      `VmRSS sampled every ${SAMPLE_MS} ms while busy; idle peaks (VmHWM) are since the process started; at rest is a few seconds after ready (idle) or once VmRSS settled after the phase. ` +
      'Each busy phase has a row for the daemon preheating and for each daemon that served it. ' +
      'Registry bytes are stored (compressed), peer and served bytes uncompressed, as each side sent them. ' +
      `Load average ${report.loadavgBefore} before, ${report.loadavgAfter} after.`,
    '',
    table,
    ''
  ].join('\n')
}
