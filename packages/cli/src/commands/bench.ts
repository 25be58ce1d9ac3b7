import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { UsageError, type Command } from '../command.js'

// The benchmarks live above the CLI: they run `shoal` itself as a user would (convert, run, daemon)
// and are private packages of the repository, not part of the CLI. So `shoal bench` starts their
// entry point as a process instead of importing them, keeping the package arrows pointing down.
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', '..')
const BENCHMARKS: Record<string, string> = {
  startup: join(repoRoot, 'bench', 'startup', 'dist', 'main.js'),
  swarm: join(repoRoot, 'bench', 'swarm', 'dist', 'main.js')
}

const FORWARDED = ['quick', 'rate', 'out', 'runs', 'images', 'image', 'modes', 'hosts', 'registry-rate', 'cache', 'work-dir'] as const

export const bench: Command = {
  name: 'bench',
  summary: 'measure container startup (startup) or many hosts starting one image (swarm) against a plain OCI pull',
  args: 'startup|swarm',
  description: 'startup: time to ready of busybox, Debian minbase, python3 and nodejs images in every mode (oci: skopeo + umoci + runc, and\n' +
    'containerd; shoal-registry; shoal-swarm; shoal-warm), the registry behind a veth capped with tc tbf. swarm: N hosts, each in\n' +
    'its own network namespace behind a capped link, start one image at once, with Shoal and with plain OCI pulls. Both write\n' +
    'results.json, results.md and chart.svg to --out, and clean up namespaces, mounts and processes, also when interrupted.\n' +
    'Needs root. Images are built once with debootstrap and cached under /var/tmp/shoal-bench-cache.',
  positionals: { min: 1, max: 1 },
  options: {
    quick: { type: 'boolean', description: 'a small image and one run (startup), two hosts (swarm)' },
    rate: { type: 'string', valueName: 'MBIT', description: 'link cap in Mbit/s, each direction (default 100)' },
    out: { type: 'string', valueName: 'DIR', description: 'where results go (default bench/results/startup or bench/results/swarm)' },
    runs: { type: 'string', valueName: 'N', description: 'startup: runs per cell (default 2)' },
    images: { type: 'string', valueName: 'LIST', description: 'startup: images, comma-separated (default busybox,minbase,python3,nodejs)' },
    image: { type: 'string', valueName: 'NAME', description: 'swarm: the image (default python3)' },
    modes: { type: 'string', valueName: 'LIST', description: 'modes to measure, comma-separated (default all)' },
    hosts: { type: 'string', valueName: 'N', description: 'swarm: hosts (default 8)' },
    'registry-rate': { type: 'string', valueName: 'MBIT', description: "swarm: the registry's link cap (default --rate)" },
    cache: { type: 'string', valueName: 'DIR', description: 'built images (default /var/tmp/shoal-bench-cache)' },
    'work-dir': { type: 'string', valueName: 'DIR', description: 'scratch space, removed at the end (default under the temp dir)' }
  },
  async run ({ positionals, values, signal }) {
    const entry = BENCHMARKS[positionals[0]]
    if (entry == null) throw new UsageError(`bench: expected startup or swarm, got '${positionals[0]}'`)
    if (!existsSync(entry)) throw new UsageError(`bench: ${entry} is not there: the benchmarks come with the repository (run \`npx tsc -b\` in it)`)
    const args: string[] = []
    for (const name of FORWARDED) {
      const value = values[name]
      if (value === true) args.push(`--${name}`)
      else if (typeof value === 'string') args.push(`--${name}`, value)
    }
    const child = spawn(process.execPath, ['--enable-source-maps', entry, ...args], { stdio: 'inherit' })
    // The benchmark cleans up on SIGTERM itself; give it the time to.
    const onAbort = (): void => { child.kill('SIGTERM') }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      return await new Promise<number>((resolve, reject) => {
        child.on('error', reject)
        child.on('close', (code, killedBy) => { resolve(code ?? (killedBy === 'SIGINT' ? 130 : 143)) })
      })
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }
}
