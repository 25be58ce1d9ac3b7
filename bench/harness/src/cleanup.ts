import { readFile } from 'node:fs/promises'
import { run, stopAllChildren } from './exec.js'

interface Step { what: string, undo: () => Promise<void> }

/**
 * What to undo, newest first: processes, mounts, namespaces, temp dirs. Every step is bounded in
 * time and a failing step does not stop the others, so an interrupted or failed run still leaves the
 * machine as it found it.
 */
export class Cleanup {
  private readonly steps: Step[] = []
  private running: Promise<string[]> | undefined

  /** Registers an undo step; returns a function that runs it now, once, and forgets it. */
  defer (what: string, undo: () => Promise<void>): () => Promise<void> {
    const step: Step = { what, undo }
    this.steps.push(step)
    return async () => {
      const at = this.steps.indexOf(step)
      if (at < 0) return
      this.steps.splice(at, 1)
      await bounded(step)
    }
  }

  /** Runs every step still registered, newest first; resolves to the failures (as text). Safe to call twice. */
  async runAll (): Promise<string[]> {
    this.running ??= (async () => {
      const failures: string[] = []
      for (let step = this.steps.pop(); step != null; step = this.steps.pop()) {
        const failure = await bounded(step)
        if (failure != null) failures.push(failure)
      }
      return failures
    })()
    const failures = await this.running
    this.running = undefined
    return failures
  }
}

async function bounded (step: Step, ms = 20_000): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([step.undo(), new Promise((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`took over ${ms} ms`)) }, ms) })])
    return undefined
  } catch (err: any) {
    return `${step.what}: ${String(err?.message ?? err)}`
  } finally {
    clearTimeout(timer)
  }
}

/**
 * On SIGINT or SIGTERM: aborts the returned signal, runs the cleanup, exits 130 / 143. A second
 * signal while cleaning up is ignored (cleanup is what stops half-made namespaces from lingering).
 */
export function cleanupOnSignals (cleanup: Cleanup, onMessage: (line: string) => void = line => { process.stderr.write(line + '\n') }): { signal: AbortSignal, dispose: () => void } {
  const controller = new AbortController()
  let handling = false
  const handler = (name: NodeJS.Signals): void => {
    if (handling) return
    handling = true
    controller.abort()
    onMessage(`\n${name}: cleaning up…`)
    // Daemons first (they unmount what they mounted on SIGTERM), then namespaces, mounts, dirs.
    void stopAllChildren().then(async () => await cleanup.runAll()).then(failures => {
      for (const failure of failures) onMessage(`cleanup: ${failure}`)
      process.exit(name === 'SIGINT' ? 130 : 143)
    })
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
  return {
    signal: controller.signal,
    dispose: () => { process.off('SIGINT', handler); process.off('SIGTERM', handler) }
  }
}

/** Mount points at or under dir, deepest first (from /proc/self/mountinfo, octal escapes decoded). */
export async function mountsUnder (dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8')
  const prefix = dir.endsWith('/') ? dir : dir + '/'
  const points = text.split('\n').map(line => line.split(' ')[4]).filter((p): p is string => p != null)
    .map(p => p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter(p => p === dir || p.startsWith(prefix))
  return [...new Set(points)].sort((a, b) => b.length - a.length)
}

/** Lazily unmounts everything at or under dir, deepest first. */
export async function unmountUnder (dir: string): Promise<void> {
  for (let round = 0; round < 4; round++) {
    const points = await mountsUnder(dir)
    if (points.length === 0) return
    for (const point of points) {
      try { await run('umount', ['-l', point], { timeoutMs: 10_000 }) } catch {}
    }
  }
}
