#!/usr/bin/env node
/**
 * shoal bench startup [--quick] [--images busybox,python3] [--modes oci,shoal-registry] [--runs N] [--rate MBIT] [--out DIR]
 */
import { join } from 'node:path'
import { commonFlags, DEFAULT_OUT_DIR, numberFlag, parseFlags, runBenchmarkMain, usage, type FlagSpec } from '@shoal/bench-harness'
import { benchStartup, STARTUP_MODES } from './index.js'

const flags: Record<string, FlagSpec> = {
  ...commonFlags,
  images: { type: 'string', description: 'comma-separated: busybox, minbase, python3, nodejs (default all four; --quick: busybox)' },
  modes: { type: 'string', description: `comma-separated, from ${STARTUP_MODES.join(', ')} (default all)` },
  runs: { type: 'string', description: 'runs per cell (default 2; --quick: 1)' }
}

const argv = process.argv.slice(2)
let values: Record<string, string | boolean | undefined>
try {
  values = parseFlags(argv, flags)
} catch (err: any) {
  process.stderr.write(`shoal bench startup: ${String(err.message)}\n`)
  process.exit(2)
}
if (values.help === true) {
  process.stdout.write(usage('startup', 'Time to ready of containers started from a registry behind a bandwidth-capped link, in every mode: a rootfs already on local disk (the floor), the full OCI pull (skopeo + umoci + runc; containerd), Shoal cold from the registry, Shoal with a warm seed, Shoal warm.', flags))
  process.exit(0)
}
const quick = values.quick === true
const list = (v: string | boolean | undefined): string[] | undefined => typeof v === 'string' ? v.split(',').map(s => s.trim()).filter(s => s !== '') : undefined

process.exitCode = await runBenchmarkMain('startup', values, async stage => {
  const modes = list(values.modes)
  for (const mode of modes ?? []) if (!(STARTUP_MODES as readonly string[]).includes(mode)) throw new Error(`--modes: unknown mode '${mode}'`)
  const { report, files } = await benchStartup({
    ...stage,
    images: list(values.images) ?? (quick ? ['busybox'] : ['busybox', 'minbase', 'python3', 'nodejs']),
    ...(modes != null ? { modes } : {}),
    runs: numberFlag(values.runs, 'runs', quick ? 1 : 2, 1, 50),
    rateMbit: numberFlag(values.rate, 'rate', 100, 1, 100_000),
    out: typeof values.out === 'string' ? values.out : join(DEFAULT_OUT_DIR, 'startup'),
    ...(typeof values.cache === 'string' ? { cacheDir: values.cache } : {}),
    command: ['shoal', 'bench', 'startup', ...argv].join(' ')
  })
  const failed = report.cells.filter(c => c.status === 'failed')
  stage.progress.log(`results: ${files.join(', ')}`)
  if (failed.length > 0) throw new Error(`${failed.length} cell(s) failed: ${failed.map(c => `${c.image}/${c.system}: ${c.reason ?? ''}`.slice(0, 300)).join('; ')}`)
})
