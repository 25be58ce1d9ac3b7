/**
 * `shoal bench startup`: time to ready of the benchmark images in every mode, over a capped link to
 * the registry. One StartupSystem per mode; the harness runs them all the same way.
 */
import { join } from 'node:path'
import { buildImage, recipes, DEFAULT_CACHE_DIR } from '@shoal/bench-images'
import { Cleanup, Progress, runStartupBench, writeResults, type StartupReport, type StartupSystem } from '@shoal/bench-harness'
import type { AbortOptions } from '@shoal/interface'
import { localSystem } from './systems/local.js'
import { ociSystem } from './systems/oci.js'
import { containerdSystem } from './systems/containerd.js'
import { shoalRegistrySystem, shoalSwarmSystem, shoalWarmSystem } from './systems/shoal.js'

export { localSystem, ociSystem, containerdSystem, shoalRegistrySystem, shoalSwarmSystem, shoalWarmSystem }

export const STARTUP_MODES = ['local', 'oci', 'oci-containerd', 'shoal-registry', 'shoal-swarm', 'shoal-warm'] as const

export function startupSystems (shoalBin: string): StartupSystem[] {
  return [localSystem(), ociSystem(), containerdSystem(), shoalRegistrySystem(shoalBin), shoalSwarmSystem(shoalBin), shoalWarmSystem(shoalBin)]
}

export interface StartupOptions extends AbortOptions {
  images: string[]
  modes?: string[]
  runs: number
  rateMbit: number
  out: string
  cacheDir?: string
  workDir: string
  shoalBin: string
  command: string
  progress: Progress
  cleanup: Cleanup
}

export async function benchStartup (options: StartupOptions): Promise<{ report: StartupReport, files: string[] }> {
  const images = []
  for (const name of options.images) {
    const recipe = recipes[name]
    if (recipe == null) throw new Error(`unknown image '${name}': expected one of ${Object.keys(recipes).join(', ')}`)
    options.progress.update(`image ${name}: building or finding it in the cache`)
    images.push(await buildImage(recipe, { cacheDir: options.cacheDir ?? DEFAULT_CACHE_DIR, signal: options.signal, onProgress: line => { options.progress.log(line) } }))
  }
  const systems = startupSystems(options.shoalBin).filter(s => options.modes == null || options.modes.includes(s.name))
  const report = await runStartupBench({ ...options, images, systems, workDir: join(options.workDir, 'startup') })
  const files = await writeResults(options.out, report)
  return { report, files }
}
