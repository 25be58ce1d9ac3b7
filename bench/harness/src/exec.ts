import { spawn, type ChildProcess } from 'node:child_process'
import { AbortError, type AbortOptions } from '@shoal/interface'
import { BenchCommandError, NotReadyError } from './errors.js'

export interface RunOptions extends AbortOptions {
  /** Kill the command after this long. Default 10 minutes. */
  timeoutMs?: number
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Run inside this network namespace (`/run/netns/NAME`), by nsenter: only the network is switched, mounts stay shared. */
  netns?: string
  /** Exit statuses that count as success. Default [0]. */
  okStatuses?: number[]
}

interface RunHooks {
  /** Sees each piece of stdout as it comes, with the seconds since the spawn. */
  onStdout?: (data: string, seconds: number) => void
}

export interface Ran { stdout: string, stderr: string, status: number, seconds: number }

const KEEP_STDERR = 64 * 1024
const KEEP_STDOUT = 16 * 1024 * 1024

function commandLine (command: string, args: string[], netns?: string): [string, string[]] {
  return netns == null ? [command, args] : ['nsenter', [`--net=/run/netns/${netns}`, '--', command, ...args]]
}

function quote (command: string, args: string[]): string {
  const line = [command, ...args].map(a => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`).join(' ')
  return line.length > 400 ? `${line.slice(0, 200)}…${line.slice(-150)}` : line
}

/**
 * Every child still running, so an interrupted benchmark can stop them all: they run in process
 * groups of their own (detached), where a terminal's Ctrl-C does not reach them.
 */
const liveChildren = new Set<ChildProcess>()

function track (child: ChildProcess): void {
  if (child.pid == null) return
  liveChildren.add(child)
  child.once('close', () => { liveChildren.delete(child) })
  child.once('error', () => { liveChildren.delete(child) })
}

/** SIGTERM to every child's process group, then SIGKILL to those still there after graceMs. */
export async function stopAllChildren (graceMs = 10_000): Promise<number> {
  const children = [...liveChildren]
  for (const child of children) killTree(child, 'SIGTERM')
  const deadline = Date.now() + graceMs
  for (let i = 0; i < 1000 && [...liveChildren].some(c => children.includes(c)) && Date.now() < deadline; i++) {
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  for (const child of children) if (liveChildren.has(child)) killTree(child, 'SIGKILL')
  return children.length
}

/** Kills a child and its process group (it was started detached), first politely. */
export function killTree (child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): void {
  if (child.pid == null || child.exitCode != null || child.signalCode != null) return
  try { process.kill(-child.pid, signal) } catch { try { child.kill(signal) } catch {} }
}

/** Runs a command to its end; rejects with BenchCommandError on a bad status, AbortError on abort. */
export async function run (command: string, args: string[], options: RunOptions & RunHooks = {}): Promise<Ran> {
  options.signal?.throwIfAborted()
  const [file, argv] = commandLine(command, args, options.netns)
  const started = process.hrtime.bigint()
  return await new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: options.env ?? process.env, cwd: options.cwd })
    track(child)
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < KEEP_STDOUT) stdout += d
      options.onStdout?.(d, Number(process.hrtime.bigint() - started) / 1e9)
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-KEEP_STDERR) })
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; killTree(child, 'SIGKILL') }, options.timeoutMs ?? 10 * 60_000)
    const onAbort = (): void => { killTree(child, 'SIGKILL') }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    child.on('error', err => {
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      reject(new BenchCommandError(`${quote(command, args)} could not start: ${err.message}`))
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      if (options.signal?.aborted === true) { reject(new AbortError(`${quote(command, args)} was aborted`)); return }
      const status = code ?? 128
      if ((options.okStatuses ?? [0]).includes(status) && signal == null) { resolve({ stdout, stderr, status, seconds }); return }
      const why = timedOut ? `timed out after ${options.timeoutMs ?? 600_000} ms` : signal != null ? `was killed by ${signal}` : `exited with ${status}`
      reject(new BenchCommandError(`${quote(command, args)} ${why}: ${stderr.trim().slice(-1500)}`))
    })
  })
}

export interface ReadyResult {
  /** Seconds from the spawn to the ready line on stdout. */
  seconds: number
  stdout: string
  stderr: string
}

export interface RunUntilReadyOptions extends RunOptions {
  /** The exact line (trimmed) that says the app is ready. */
  readyLine: string
}

/**
 * Starts a command, times the moment its stdout shows the ready line (time to ready), then waits for
 * it to exit. A command that exits without the line, or with a bad status, is an error.
 */
export async function runUntilReady (command: string, args: string[], options: RunUntilReadyOptions): Promise<ReadyResult> {
  let pending = ''
  let readyAt: number | undefined
  const ran = await run(command, args, {
    ...options,
    onStdout: (data, seconds) => {
      if (readyAt != null) return
      pending += data
      const lines = pending.split('\n')
      pending = lines.pop() ?? ''
      if (pending.length > KEEP_STDERR) pending = pending.slice(-KEEP_STDERR)
      if (lines.some(l => l.trim() === options.readyLine)) readyAt = seconds
    }
  })
  // A ready line without a newline at the end of the output still counts (its time: the exit).
  if (readyAt == null && pending.trim() === options.readyLine) readyAt = ran.seconds
  if (readyAt == null) {
    throw new NotReadyError(`${quote(command, args)} exited without printing '${options.readyLine}'; stdout ended with ${JSON.stringify(ran.stdout.slice(-300))}, stderr with ${JSON.stringify(ran.stderr.slice(-600))}`)
  }
  return { seconds: readyAt, stdout: ran.stdout, stderr: ran.stderr }
}

export interface Background {
  child: ChildProcess
  output: () => string
  /** SIGTERM, then SIGKILL after graceMs; resolves once it has exited. Safe to call twice. */
  stop: (graceMs?: number) => Promise<void>
}

/** Starts a long-lived process (a registry, a daemon) in its own process group. */
export function startBackground (command: string, args: string[], options: Omit<RunOptions, 'timeoutMs' | 'okStatuses'> = {}): Background {
  const [file, argv] = commandLine(command, args, options.netns)
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: options.env ?? process.env, cwd: options.cwd })
  track(child)
  let output = ''
  const keep = (d: Buffer): void => { output = (output + d.toString('utf8')).slice(-KEEP_STDERR) }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  child.on('error', err => { output += `\n(could not start ${command}: ${err.message})` })
  const exited = new Promise<void>(resolve => {
    if (child.exitCode != null) resolve()
    child.once('close', () => { resolve() })
    child.once('error', () => { resolve() })
  })
  return {
    child,
    output: () => output,
    stop: async (graceMs = 3000) => {
      killTree(child, 'SIGTERM')
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<'late'>(resolve => { timer = setTimeout(() => { resolve('late') }, graceMs) })
      if (await Promise.race([exited, late]) === 'late') {
        killTree(child, 'SIGKILL')
        await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 2000))])
      }
      clearTimeout(timer)
    }
  }
}

/** True when the program is on PATH. */
export async function which (program: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v '${program}'`], { timeoutMs: 5000 })
    return true
  } catch {
    return false
  }
}
