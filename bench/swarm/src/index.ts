/**
 * `shoal bench swarm`: N hosts start the same container at once, with Shoal's swarm and without it.
 */
import { join } from 'node:path'
import { buildImage, recipes, DEFAULT_CACHE_DIR } from '@shoal/bench-images'
import { runSwarmBench, writeResults, type Cleanup, type Progress, type SwarmReport, type SwarmSystem } from '@shoal/bench-harness'
import type { AbortOptions } from '@shoal/interface'
import { ociSwarmSystem } from './systems/oci.js'
import { shoalSwarmSystem } from './systems/shoal.js'

export { ociSwarmSystem, shoalSwarmSystem }

export const SWARM_MODES = ['oci', 'shoal-swarm'] as const

export function swarmSystems (shoalBin: string): SwarmSystem[] {
  return [ociSwarmSystem(), shoalSwarmSystem(shoalBin)]
}

export interface SwarmOptions extends AbortOptions {
  image: string
  hosts: number
  modes?: string[]
  rateMbit: number
  registryRateMbit: number
  out: string
  cacheDir?: string
  workDir: string
  shoalBin: string
  command: string
  progress: Progress
  cleanup: Cleanup
}

export async function benchSwarm (options: SwarmOptions): Promise<{ report: SwarmReport, files: string[] }> {
  const recipe = recipes[options.image]
  if (recipe == null) throw new Error(`unknown image '${options.image}': expected one of ${Object.keys(recipes).join(', ')}`)
  options.progress.update(`image ${options.image}: building or finding it in the cache`)
  const image = await buildImage(recipe, { cacheDir: options.cacheDir ?? DEFAULT_CACHE_DIR, signal: options.signal, onProgress: line => { options.progress.log(line) } })
  const systems = swarmSystems(options.shoalBin).filter(s => options.modes == null || options.modes.includes(s.name))
  const report = await runSwarmBench({ ...options, image, systems, workDir: join(options.workDir, 'swarm') })
  const files = await writeResults(options.out, report)
  return { report, files }
}
