#!/usr/bin/env node
/**
 * shoal bench swarm [--quick] [--hosts N] [--image python3] [--modes oci,shoal-swarm] [--rate MBIT] [--registry-rate MBIT] [--out DIR]
 */
import { join } from 'node:path'
import { commonFlags, DEFAULT_OUT_DIR, numberFlag, parseFlags, runBenchmarkMain, usage, type FlagSpec } from '@shoal/bench-harness'
import { benchSwarm, SWARM_MODES } from './index.js'

const flags: Record<string, FlagSpec> = {
  ...commonFlags,
  hosts: { type: 'string', description: 'hosts, each a namespace with its own daemon (default 8; --quick: 2)' },
  image: { type: 'string', description: 'busybox, minbase, python3 or nodejs (default python3; --quick: busybox)' },
  modes: { type: 'string', description: `comma-separated, from ${SWARM_MODES.join(', ')} (default both)` },
  'registry-rate': { type: 'string', description: "the registry's own link cap in Mbit/s (default: --rate)" }
}

const argv = process.argv.slice(2)
let values: Record<string, string | boolean | undefined>
try {
  values = parseFlags(argv, flags)
} catch (err: any) {
  process.stderr.write(`shoal bench swarm: ${String(err.message)}\n`)
  process.exit(2)
}
if (values.help === true) {
  process.stdout.write(usage('swarm', 'N hosts, each in its own network namespace behind a capped link, start the same container at once; registry egress against bytes read, per-host time to ready, bytes by source; with Shoal and without it.', flags))
  process.exit(0)
}
const quick = values.quick === true

process.exitCode = await runBenchmarkMain('swarm', values, async stage => {
  const modes = typeof values.modes === 'string' ? values.modes.split(',').map(s => s.trim()).filter(s => s !== '') : undefined
  for (const mode of modes ?? []) if (!(SWARM_MODES as readonly string[]).includes(mode)) throw new Error(`--modes: unknown mode '${mode}'`)
  const rateMbit = numberFlag(values.rate, 'rate', 100, 1, 100_000)
  const { report, files } = await benchSwarm({
    ...stage,
    image: typeof values.image === 'string' ? values.image : quick ? 'busybox' : 'python3',
    hosts: numberFlag(values.hosts, 'hosts', quick ? 2 : 8, 1, 64),
    ...(modes != null ? { modes } : {}),
    rateMbit,
    registryRateMbit: numberFlag(values['registry-rate'], 'registry-rate', rateMbit, 1, 100_000),
    out: typeof values.out === 'string' ? values.out : join(DEFAULT_OUT_DIR, 'swarm'),
    ...(typeof values.cache === 'string' ? { cacheDir: values.cache } : {}),
    command: ['shoal', 'bench', 'swarm', ...argv].join(' ')
  })
  stage.progress.log(`results: ${files.join(', ')}`)
  const failed = report.cells.filter(c => c.status === 'failed')
  if (failed.length > 0) throw new Error(`${failed.length} mode(s) failed: ${failed.map(c => `${c.system}: ${c.reason ?? ''}`.slice(0, 300)).join('; ')}`)
})
