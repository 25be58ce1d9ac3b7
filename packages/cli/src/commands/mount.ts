import { spawn } from 'node:child_process'
import { mkdir, open, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { mountImage, isMountPoint } from '@shoal/fuse'
import { stringOption, UsageError, type Command } from '../command.js'
import {
  DEFAULT_CACHE_DIR, formatStats, lazyMountOptions, modeOf, MOUNT_STATE_DIR, openLazyImage, processAlive,
  readMountState, removeMountState, stateFileOf, writeMountState
} from './mount-support.js'
import { daemonOption } from '../daemon-socket.js'
import { daemonFor, mountThroughDaemon } from '../daemon-mounts.js'

/** How long `shoal mount` waits for the background process to report the mount ready. */
const READY_TIMEOUT_MS = 120_000

export const mount: Command = {
  name: 'mount',
  summary: 'mount an image read-only at DIR, lazily: chunks are fetched, verified and cached as they are read',
  args: 'IMAGE DIR',
  description: 'IMAGE is bootstrap:PATH, docker://HOST/REPO[:TAG|@DIGEST] or oci:DIR[:TAG]. Returns once the mount is\n' +
    'ready; a background process serves it until `shoal umount DIR`. Reads that cannot be verified fail with EIO.',
  positionals: { min: 2, max: 2 },
  options: {
    ...lazyMountOptions,
    ...daemonOption,
    foreground: { type: 'boolean', description: 'serve the mount in this process until SIGINT or SIGTERM' }
  },
  async run (context) {
    const { positionals, values, stdout, stderr, signal } = context
    const [reference, dir] = positionals
    const mode = modeOf(values)
    const mountpoint = resolve(dir)
    const info = await stat(mountpoint).catch(() => undefined)
    if (info == null || !info.isDirectory()) throw new UsageError(`mount: ${dir} is not a directory`)
    if (await isMountPoint(mountpoint)) throw new UsageError(`mount: ${dir} is already a mount point`)
    const verbose = values.verbose === true
    const daemon = daemonFor(values, reference, (m) => { stderr.write(`shoal mount: ${m}\n`) })
    if (daemon != null) return await mountThroughDaemon(daemon, reference, mountpoint, mode, context)

    if (values.foreground !== true) {
      // Serve from a detached child; it writes a state file once the mount is up (or failed).
      await removeMountState(mountpoint)
      await mkdir(MOUNT_STATE_DIR, { recursive: true, mode: 0o700 })
      const logPath = (await stateFileOf(mountpoint)).replace(/\.json$/, '.log')
      const log = await open(logPath, 'w')
      const main = fileURLToPath(new URL('../main.js', import.meta.url))
      const args = process.argv.slice(2).filter(a => a !== '--foreground')
      const child = spawn(process.execPath, [...process.execArgv, main, ...args, '--foreground'], { detached: true, stdio: ['ignore', log.fd, log.fd] })
      await log.close()
      child.unref()
      const started = Date.now()
      for (;;) {
        const state = await readMountState(mountpoint)
        if (state?.status === 'ok' && state.pid === child.pid) {
          stdout.write(`mounted ${reference} at ${mountpoint} (mode ${state.mode}${state.fallbackReason != null ? `; erofs not used: ${state.fallbackReason}` : ''}), served by process ${state.pid}; log ${logPath}\n`)
          return 0
        }
        if (state?.status === 'error' || child.exitCode != null || (child.pid != null && !processAlive(child.pid))) {
          stderr.write(`shoal mount: the mount failed: ${state?.message ?? `see ${logPath}`}\n`)
          return 1
        }
        if (signal.aborted || Date.now() - started > READY_TIMEOUT_MS) {
          if (child.pid != null) process.kill(child.pid, 'SIGTERM')
          stderr.write(`shoal mount: ${signal.aborted ? 'interrupted' : 'timed out'} waiting for the mount; see ${logPath}\n`)
          return 1
        }
        await sleep(50)
      }
    }

    const warn = (m: string): void => { stderr.write(`shoal mount: ${m}\n`) }
    let lazy
    try {
      lazy = await openLazyImage(reference, values, warn, { signal })
    } catch (err: any) {
      await writeMountState(mountpoint, { pid: process.pid, mountpoint, mode, image: reference, status: 'error', message: `${err?.name ?? 'Error'}: ${String(err?.message ?? err)}` })
      throw err
    }
    const workDir = join(resolve(stringOption(values, 'cache-dir') ?? DEFAULT_CACHE_DIR), 'mounts', `${process.pid}`)
    try {
      let mounted
      try {
        await mkdir(workDir, { recursive: true })
        mounted = await mountImage({
          device: lazy.device,
          mountpoint,
          mode,
          workDir,
          ...(lazy.bootstrapPath != null ? { bootstrapPath: lazy.bootstrapPath } : {}),
          logger: warn
        }, { signal })
      } catch (err: any) {
        await writeMountState(mountpoint, { pid: process.pid, mountpoint, mode, image: reference, status: 'error', message: `${err?.name ?? 'Error'}: ${String(err?.message ?? err)}` })
        throw err
      }
      try {
        void lazy.device.startPrefetch()
        await writeMountState(mountpoint, {
          pid: process.pid,
          mountpoint,
          mode: mounted.mode,
          image: reference,
          status: 'ok',
          workDir,
          ...(mounted.fallbackReason != null ? { fallbackReason: mounted.fallbackReason } : {})
        })
        if (verbose) stderr.write(`shoal mount: serving ${reference} at ${mountpoint} in mode ${mounted.mode}\n`)
        await new Promise<void>(resolve => {
          if (signal.aborted) resolve()
          else signal.addEventListener('abort', () => { resolve() }, { once: true })
        })
      } finally {
        await mounted.unmount()
        await removeMountState(mountpoint)
        if (verbose || values.stats === true) stderr.write(`shoal mount: ${formatStats(lazy.device)}\n`)
      }
      return 0
    } finally {
      await lazy.close()
      const { rm } = await import('node:fs/promises')
      await rm(workDir, { recursive: true, force: true })
    }
  }
}
