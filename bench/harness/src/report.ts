/** The shapes of results.json for both benchmarks. */
import type { ByteCounts, StartupRun, SwarmHostRun } from './contracts.js'

export interface Spread { median: number, min: number, max: number }

export interface ReportImage {
  name: string
  description: string
  ready: { command: string[], line: string }
  ociBytes: number
  nydusBytes: number
}

export interface StartupCell {
  image: string
  system: string
  description: string
  /** `unavailable`: the system cannot run here (reason says why); `failed`: a run failed (reason holds the error). */
  status: 'ok' | 'unavailable' | 'failed'
  reason?: string
  runs: StartupRun[]
  /** Time to ready over the runs; absent unless status is ok. */
  seconds?: Spread
  /** Median bytes by source over the runs. */
  bytes?: ByteCounts
}

export interface Environment {
  command: string
  date: string
  node: string
  cpus: number
  kernel: string
  /** The cap on the registry link, each direction. */
  rateMbit: number
}

export interface StartupReport extends Environment {
  kind: 'startup'
  runs: number
  images: ReportImage[]
  cells: StartupCell[]
  /** Per image: shoal mode median / oci median (under 1 is faster). */
  ratios: Array<{ image: string, system: string, baseline: string, ratio: number }>
}

export interface SwarmCell {
  system: string
  description: string
  status: 'ok' | 'unavailable' | 'failed'
  reason?: string
  hosts: SwarmHostRun[]
  /** Per-host time to ready. */
  seconds?: { p50: number, p99: number, max: number }
  /** Bytes sent by the registry over its link during the whole run (setup included). */
  registryEgressBytes?: number
  /** Bytes the hosts took in from every source, summed. */
  bytesRead?: number
  /** Sums over hosts, by source. */
  bytes?: ByteCounts
  /** registryEgressBytes / bytesRead. */
  egressRatio?: number
}

export interface SwarmReport extends Environment {
  kind: 'swarm'
  image: ReportImage
  hostCount: number
  /** The registry's own link cap (the hosts' is rateMbit). */
  registryRateMbit: number
  cells: SwarmCell[]
}
