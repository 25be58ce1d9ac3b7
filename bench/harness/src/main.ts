/**
 * What both benchmark entry points share: the common flags, the stage (cleanup on signals and on
 * failure, a scratch dir, the shoal launcher found beside this package) and the exit status.
 */
import { rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { Cleanup, cleanupOnSignals } from './cleanup.js'
import { stopAllChildren } from './exec.js'
import { Progress } from './progress.js'

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
export const DEFAULT_SHOAL_BIN = join(REPO_ROOT, 'packages', 'cli', 'bin', 'shoal')
export const DEFAULT_OUT_DIR = join(REPO_ROOT, 'bench', 'results')

export const commonFlags = {
  quick: { type: 'boolean', description: 'a small image and one run (for tests)' },
  rate: { type: 'string', description: 'the link cap in Mbit/s, each direction (default 100)' },
  out: { type: 'string', description: 'where results.json, results.md and chart.svg go (default bench/results/<benchmark>)' },
  cache: { type: 'string', description: 'where built images are cached (default /var/tmp/shoal-bench-cache)' },
  'work-dir': { type: 'string', description: 'scratch space, removed at the end (default a new dir under the temp dir)' },
  shoal: { type: 'string', description: 'the shoal launcher to measure (default packages/cli/bin/shoal)' },
  help: { type: 'boolean', short: 'h', description: 'show this help' }
} as const

export interface FlagSpec { type: 'string' | 'boolean', short?: string, description: string }

export function usage (name: string, summary: string, flags: Record<string, FlagSpec>): string {
  const rows = Object.entries(flags).map(([flag, spec]) => [`${spec.short != null ? `-${spec.short}, ` : '    '}--${flag}${spec.type === 'string' ? ' VALUE' : ''}`, spec.description])
  const width = Math.max(...rows.map(r => r[0].length))
  return [`Usage: shoal bench ${name} [options]`, '', summary, '', 'Options:', ...rows.map(([f, d]) => `  ${f.padEnd(width)}  ${d}`), ''].join('\n')
}

export function parseFlags (argv: string[], flags: Record<string, FlagSpec>): Record<string, string | boolean | undefined> {
  const options = Object.fromEntries(Object.entries(flags).map(([k, v]) => [k, { type: v.type, ...(v.short != null ? { short: v.short } : {}) }])) as ParseArgsConfig['options']
  return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>
}

export function numberFlag (value: string | boolean | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value == null || typeof value === 'boolean') return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`--${name}: a number from ${min} to ${max} was expected, got '${value}'`)
  return n
}

export interface Stage {
  cleanup: Cleanup
  progress: Progress
  signal: AbortSignal
  workDir: string
  shoalBin: string
}

/**
 * Runs a benchmark body with cleanup on SIGINT/SIGTERM (exit 130/143), on failure (exit 1) and at
 * the end; prints the error on one line.
 */
export async function runBenchmarkMain (name: string, values: Record<string, string | boolean | undefined>, body: (stage: Stage) => Promise<void>): Promise<number> {
  const cleanup = new Cleanup()
  const progress = new Progress(process.stderr)
  const signals = cleanupOnSignals(cleanup, line => { progress.log(line) })
  const workDir = typeof values['work-dir'] === 'string' ? resolve(values['work-dir']) : join(tmpdir(), `shoal-bench-${name}-${process.pid}`)
  const shoalBin = typeof values.shoal === 'string' ? resolve(values.shoal) : DEFAULT_SHOAL_BIN
  let status = 0
  // The runners empty their own dir under workDir; a workDir made here goes too (when left empty).
  if (typeof values['work-dir'] !== 'string') cleanup.defer(`remove ${workDir}`, async () => { await rmdir(workDir).catch(() => {}) })
  try {
    await body({ cleanup, progress, signal: signals.signal, workDir, shoalBin })
  } catch (err: any) {
    if (signals.signal.aborted) return 130
    progress.finish()
    progress.log(`shoal bench ${name}: ${err?.name != null && err.name !== 'Error' ? `${err.name}: ` : ''}${String(err?.message ?? err)}`)
    if (process.env.SHOAL_BENCH_DEBUG != null) progress.log(String(err?.stack))
    status = 1
  }
  progress.update('cleaning up')
  // After a failure, daemons and pulls may still run: stop them before their namespaces go.
  if (status !== 0) await stopAllChildren()
  const failures = await cleanup.runAll()
  const stray = await stopAllChildren()
  if (stray > 0) progress.log(`stopped ${stray} process(es) left running`)
  progress.finish()
  for (const failure of failures) progress.log(`cleanup: ${failure}`)
  signals.dispose()
  return status
}
