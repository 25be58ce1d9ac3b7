import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, rm, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { nydusFixtures } from '@shoal/interface/test-fixtures'

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const fixtures = nydusFixtures()
const shoalBin = join(repoRoot, 'packages', 'cli', 'bin', 'shoal')

export interface RunResult { code: number, stdout: string, stderr: string }

/** Runs the real `shoal` CLI (bounded by a timeout) and collects its output. */
export async function shoal (args: string[], options: { timeoutMs?: number } = {}): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(shoalBin, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: options.timeoutMs ?? 120_000 })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    child.on('error', reject)
    child.on('close', (code, signal) => { resolve({ code: code ?? (signal != null ? 128 : 1), stdout, stderr }) })
  })
}

/** A temp dir removed after `fn`, whatever happens. */
export async function withTempDir<T> (fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-test-'))
  try {
    return await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export async function md5File (path: string): Promise<string> {
  return createHash('md5').update(await readFile(path)).digest('hex')
}

/** Splits a fixture `.result` file into its `tree -J` JSON and its md5sum lines. */
export async function readResultFile (path: string): Promise<{ tree: unknown, md5: Map<string, string> }> {
  const text = await readFile(path, 'utf8')
  const end = text.indexOf('\n]\n') + 2
  const tree = JSON.parse(text.slice(0, end))
  const md5 = new Map<string, string>()
  for (const line of text.slice(end).split('\n')) {
    const match = /^([0-9a-f]{32}) {2}(.+)$/.exec(line)
    if (match != null) md5.set(match[2], match[1])
  }
  return { tree, md5 }
}
