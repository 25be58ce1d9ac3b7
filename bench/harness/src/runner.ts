/**
 * The two runners. Both build the same stage: stale leftovers removed, a registry in a namespace of
 * its own, every image published into it (OCI and Nydus) before the link is capped, then the cap,
 * then the systems, one after another, each measured the same way.
 */
import { cpus, release } from 'node:os'
import { join } from 'node:path'
import { rm, mkdir } from 'node:fs/promises'
import type { AbortOptions } from '@shoal/interface'
import { type Cleanup, unmountUnder } from './cleanup.js'
import type { BenchImage, ByteCounts, StartupRun, StartupSystem, StartupTarget, SwarmHost, SwarmHostRun, SwarmSystem, SwarmTarget } from './contracts.js'
import { cappedLink, removeStaleNetworks, switchedNetwork } from './netns.js'
import type { Progress } from './progress.js'
import { publishImage, startBenchRegistry } from './registry.js'
import type { Environment, ReportImage, StartupCell, StartupReport, SwarmCell, SwarmReport } from './report.js'
import { median, percentile, summarize } from './stats.js'

export interface BenchInit extends AbortOptions {
  /** Scratch space for the registry, the systems' caches and containers; emptied at the end. */
  workDir: string
  /** The shoal launcher (packages/cli/bin/shoal). */
  shoalBin: string
  /** The cap, each direction. */
  rateMbit: number
  progress: Progress
  cleanup: Cleanup
  /** The command line, as recorded in the results. */
  command: string
}

function environment (init: BenchInit): Environment {
  return { command: init.command, date: new Date().toISOString(), node: process.version, cpus: cpus().length, kernel: release(), rateMbit: init.rateMbit }
}

function errorText (err: any): string {
  return `${err?.name != null && err.name !== 'Error' ? `${err.name}: ` : ''}${String(err?.message ?? err)}`
}

function reportImage (image: BenchImage, published: { ociBytes: number, nydusBytes: number }): ReportImage {
  return { name: image.name, description: image.description, ready: image.ready, ociBytes: published.ociBytes, nydusBytes: published.nydusBytes }
}

async function scratch (dir: string, cleanup: Cleanup): Promise<void> {
  await mkdir(dir, { recursive: true })
  cleanup.defer(`remove ${dir}`, async () => { await unmountUnder(dir); await rm(dir, { recursive: true, force: true }) })
}

export interface StartupBenchInit extends BenchInit {
  images: BenchImage[]
  systems: StartupSystem[]
  runs: number
}

export async function runStartupBench (init: StartupBenchInit): Promise<StartupReport> {
  const { progress, cleanup, signal } = init
  await removeStaleNetworks({ signal })
  await scratch(init.workDir, cleanup)
  progress.update('setting up the capped link and the registry')
  const link = await cappedLink({ tag: 'reg' }, cleanup, { signal })
  const registry = await startBenchRegistry({ namespace: link.namespace, address: link.farAddress, dir: join(init.workDir, 'registry') }, cleanup, { signal })

  const targets: StartupTarget[] = []
  for (const image of init.images) {
    progress.update(`publishing ${image.name} (OCI and Nydus) into the registry`)
    const published = await publishImage(image, registry, init.shoalBin, { signal, workDir: join(init.workDir, 'convert') })
    targets.push({ image, registry: registry.registry, ...published, workDir: '' })
  }
  await link.shape({ rateMbit: init.rateMbit }, { signal })

  const available = new Map<StartupSystem, string | undefined>()
  for (const system of init.systems) available.set(system, await system.unavailable({ signal }))
  progress.setTotal(targets.length * [...available.values()].filter(r => r == null).length * init.runs)

  const cells: StartupCell[] = []
  for (const target of targets) {
    for (const system of init.systems) {
      const reason = available.get(system)
      const cell: StartupCell = { image: target.image.name, system: system.name, description: system.description, status: 'ok', runs: [] }
      cells.push(cell)
      if (reason != null) {
        cell.status = 'unavailable'
        cell.reason = reason
        progress.log(`${target.image.name} · ${system.name}: unavailable (${reason})`)
        continue
      }
      const systemTarget = { ...target, workDir: join(init.workDir, 'systems', system.name, target.image.name) }
      await mkdir(systemTarget.workDir, { recursive: true })
      for (let r = 0; r < init.runs && cell.status === 'ok'; r++) {
        signal?.throwIfAborted()
        progress.update(`${target.image.name} · ${system.name} · run ${r + 1}/${init.runs}`)
        try {
          await system.prepare(systemTarget, { signal })
          const before = await link.counters({ signal })
          const ran = await system.start(systemTarget, { signal })
          const after = await link.counters({ signal })
          const run: StartupRun = { ...ran, bytes: { registry: after.rxBytes - before.rxBytes, peers: 0, cache: 0, ...ran.bytes } }
          cell.runs.push(run)
          progress.advance(`${target.image.name} · ${system.name} · run ${r + 1}: ${run.seconds.toFixed(2)} s, ${((run.bytes.registry ?? 0) / 1e6).toFixed(1)} MB from the registry`)
        } catch (err: any) {
          if (signal?.aborted === true) throw err
          cell.status = 'failed'
          cell.reason = errorText(err)
          progress.advance(`${target.image.name} · ${system.name} · run ${r + 1} failed: ${cell.reason.slice(0, 400)}`)
        } finally {
          await system.reset(systemTarget, { signal }).catch((err: any) => { progress.log(`${system.name}: reset failed: ${errorText(err)}`) })
        }
      }
      if (cell.status === 'ok' && cell.runs.length > 0) {
        cell.seconds = summarize(cell.runs.map(r => r.seconds))
        cell.bytes = medianBytes(cell.runs)
      }
    }
  }
  for (const system of init.systems) await system.close({ signal }).catch(() => {})

  // Every mode against the full pull (`oci`) and against the floor, a rootfs already on local disk (`local`).
  const ratios: StartupReport['ratios'] = []
  for (const baselineName of ['oci', 'local']) {
    for (const target of targets) {
      const baseline = cells.find(c => c.image === target.image.name && c.system === baselineName && c.status === 'ok')
      if (baseline?.seconds == null) continue
      for (const cell of cells.filter(c => c.image === target.image.name && c.status === 'ok' && c !== baseline)) {
        ratios.push({ image: cell.image, system: cell.system, baseline: baselineName, ratio: (cell.seconds?.median ?? NaN) / baseline.seconds.median })
      }
    }
  }
  progress.finish()
  return {
    kind: 'startup',
    ...environment(init),
    runs: init.runs,
    images: targets.map(t => reportImage(t.image, t)),
    cells,
    ratios
  }
}

function medianBytes (runs: StartupRun[]): ByteCounts {
  return {
    registry: median(runs.map(r => r.bytes.registry ?? 0)),
    peers: median(runs.map(r => r.bytes.peers ?? 0)),
    cache: median(runs.map(r => r.bytes.cache ?? 0))
  }
}

export interface SwarmBenchInit extends BenchInit {
  image: BenchImage
  systems: SwarmSystem[]
  hosts: number
  registryRateMbit: number
}

export async function runSwarmBench (init: SwarmBenchInit): Promise<SwarmReport> {
  const { progress, cleanup, signal } = init
  await removeStaleNetworks({ signal })
  await scratch(init.workDir, cleanup)
  progress.update(`setting up ${init.hosts} host namespaces, a switch and the registry`)
  const network = await switchedNetwork({ hosts: init.hosts, subnet: 1 }, cleanup, { signal })
  const registry = await startBenchRegistry({ namespace: network.registry.namespace, address: network.registry.address, dir: join(init.workDir, 'registry') }, cleanup, { signal })
  progress.update(`publishing ${init.image.name} (OCI and Nydus) into the registry`)
  const published = await publishImage(init.image, { ...registry, clientNamespace: network.hosts[0].namespace }, init.shoalBin, { signal, workDir: join(init.workDir, 'convert') })
  await network.shape({ rateMbit: init.rateMbit }, { rateMbit: init.registryRateMbit }, { signal })

  const cells: SwarmCell[] = []
  progress.setTotal(init.systems.length)
  for (const system of init.systems) {
    const cell: SwarmCell = { system: system.name, description: system.description, status: 'ok', hosts: [] }
    cells.push(cell)
    const reason = await system.unavailable({ signal })
    if (reason != null) {
      cell.status = 'unavailable'
      cell.reason = reason
      progress.advance(`${system.name}: unavailable (${reason})`)
      continue
    }
    const hosts: SwarmHost[] = network.hosts.map((h, index) => ({ index, namespace: h.namespace, address: h.address, workDir: join(init.workDir, 'systems', system.name, `host${index}`) }))
    for (const host of hosts) await mkdir(host.workDir, { recursive: true })
    const target: SwarmTarget = { image: init.image, registry: registry.registry, ...published, workDir: join(init.workDir, 'systems', system.name), hosts }
    try {
      const before = await network.registry.counters({ signal })
      progress.update(`${system.name}: setting up ${hosts.length} hosts`)
      await system.setup(target, { signal })
      progress.update(`${system.name}: ${hosts.length} hosts start ${init.image.name} at once`)
      let ready = 0
      const runs = await Promise.all(hosts.map(async host => {
        const link = network.hosts[host.index]
        const before = await link.counters({ signal })
        const started = await system.startOnHost(target, host, { signal })
        const after = await link.counters({ signal })
        // What the host took in over its link, less what came from peers, is what the registry sent it.
        const linkBytes = after.rxBytes - before.rxBytes
        const ran: SwarmHostRun = { ...started, bytes: { peers: 0, cache: 0, registry: Math.max(0, linkBytes - (started.bytes.peers ?? 0)), ...started.bytes }, detail: { ...started.detail, linkRxBytes: linkBytes } }
        progress.update(`${system.name}: ${++ready}/${hosts.length} hosts ready`)
        return ran
      }))
      const after = await network.registry.counters({ signal })
      cell.hosts = runs
      const seconds = runs.map(r => r.seconds)
      cell.seconds = { p50: percentile(seconds, 50), p99: percentile(seconds, 99), max: Math.max(...seconds) }
      cell.registryEgressBytes = after.txBytes - before.txBytes
      cell.bytes = {
        registry: runs.reduce((s, r) => s + (r.bytes.registry ?? 0), 0),
        peers: runs.reduce((s, r) => s + (r.bytes.peers ?? 0), 0),
        cache: runs.reduce((s, r) => s + (r.bytes.cache ?? 0), 0)
      }
      cell.bytesRead = cell.bytes.registry + cell.bytes.peers
      cell.egressRatio = cell.bytesRead > 0 ? cell.registryEgressBytes / cell.bytesRead : undefined
      progress.advance(`${system.name}: p50 ${cell.seconds.p50.toFixed(2)} s, max ${cell.seconds.max.toFixed(2)} s; registry sent ${(cell.registryEgressBytes / 1e6).toFixed(1)} MB for ${(cell.bytesRead / 1e6).toFixed(1)} MB read`)
    } catch (err: any) {
      if (signal?.aborted === true) throw err
      cell.status = 'failed'
      cell.reason = errorText(err)
      progress.advance(`${system.name} failed: ${cell.reason.slice(0, 400)}`)
    } finally {
      await system.teardown(target, { signal }).catch((err: any) => { progress.log(`${system.name}: teardown failed: ${errorText(err)}`) })
    }
  }
  progress.finish()
  return {
    kind: 'swarm',
    ...environment(init),
    image: reportImage(init.image, published),
    hostCount: init.hosts,
    registryRateMbit: init.registryRateMbit,
    cells
  }
}

export type { SwarmHostRun }
