import { execFile } from 'node:child_process'
import { readdir, readFile, rm } from 'node:fs/promises'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { forceUnmountFuse, isMountPoint, mountPoints, unmountPath } from '@shoal/fuse'
import type { Command } from '../command.js'
import { processAlive, readMountState, removeMountState } from './mount-support.js'
import { daemonOption } from '../daemon-socket.js'
import { unmountThroughDaemon } from '../daemon-mounts.js'

const STOP_TIMEOUT_MS = 30_000

export const umount: Command = {
  name: 'umount',
  summary: 'unmount an image mounted with `shoal mount` and stop the process serving it',
  args: 'DIR',
  positionals: { min: 1, max: 1 },
  options: { ...daemonOption },
  async run ({ positionals, values, stdout, stderr, signal }) {
    const mountpoint = resolve(positionals[0])
    if (await unmountThroughDaemon(values, mountpoint, { signal })) {
      stdout.write(`unmounted ${mountpoint} (served by the daemon)\n`)
      return 0
    }
    const state = await readMountState(mountpoint)
    if (state != null && state.status === 'ok' && processAlive(state.pid)) {
      process.kill(state.pid, 'SIGTERM')
      const started = Date.now()
      while (processAlive(state.pid) && Date.now() - started < STOP_TIMEOUT_MS) await sleep(50)
      if (processAlive(state.pid)) {
        stderr.write(`shoal umount: process ${state.pid} did not stop within ${STOP_TIMEOUT_MS / 1000} s; unmounting lazily\n`)
        process.kill(state.pid, 'SIGKILL')
      }
    } else if (!await isMountPoint(mountpoint)) {
      await removeMountState(mountpoint)
      stderr.write(`shoal umount: nothing is mounted at ${mountpoint}\n`)
      return 1
    }
    // Whatever the serving process left (it was killed, or died): detach it so DIR is usable again.
    if (await isMountPoint(mountpoint)) {
      await unmountPath(mountpoint).catch(async () => { await forceUnmountFuse(mountpoint) })
    }
    if (state?.workDir != null) await clearWorkDir(state.workDir, (m) => { stderr.write(`shoal umount: ${m}\n`) })
    await removeMountState(mountpoint)
    stdout.write(`unmounted ${mountpoint}\n`)
    return 0
  }
}

/**
 * A serving process killed with SIGKILL leaves its helpers in its work dir: erofs mode's blob-files
 * FUSE mount, and loop devices over that mount's files and the bootstrap (not autocleared). Loops go
 * first: once the FUSE mount under them is detached, their backing paths no longer name the work
 * dir. Then the mounts, then the dir; each step bounded, each failure only reported.
 */
async function clearWorkDir (workDir: string, warn: (m: string) => void): Promise<void> {
  const devices = (await readdir('/sys/block').catch(() => [] as string[])).filter(name => /^loop\d+$/.test(name))
  for (const device of devices) {
    const backing = (await readFile(`/sys/block/${device}/loop/backing_file`, 'utf8').catch(() => '')).trim()
    if (!backing.startsWith(`${workDir}/`)) continue
    await new Promise<void>(resolve => {
      execFile('losetup', ['-d', `/dev/${device}`], { timeout: 10_000 }, (err) => {
        if (err != null) warn(`could not detach /dev/${device} (${backing}): ${err.message}`)
        resolve()
      })
    })
  }
  const inside = (await mountPoints()).map(m => m.target).filter(target => target.startsWith(`${workDir}/`)).reverse()
  for (const target of inside) {
    await unmountPath(target).catch(async () => { await forceUnmountFuse(target) }).catch((err: any) => { warn(`could not unmount ${target}: ${err?.message}`) })
  }
  await rm(workDir, { recursive: true, force: true }).catch((err: any) => { warn(`could not remove ${workDir}: ${err?.message}`) })
}
