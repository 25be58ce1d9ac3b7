import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { clearMountWorkDir, forceUnmountFuse, isMountPoint, unmountPath } from '@shoal/fuse'
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
    if (state?.workDir != null) await clearMountWorkDir(state.workDir, (m) => { stderr.write(`shoal umount: ${m}\n`) })
    await removeMountState(mountpoint)
    stdout.write(`unmounted ${mountpoint}\n`)
    return 0
  }
}
