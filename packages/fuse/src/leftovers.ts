import { execFile } from 'node:child_process'
import { readdir, readFile, rm } from 'node:fs/promises'
import { forceUnmountFuse } from './fuse-native.js'
import { mountPoints, unmountPath } from './exec.js'

/**
 * A serving process killed with SIGKILL (a `shoal mount` server, a daemon) leaves its helpers in
 * its work dir: erofs mode's blob-files FUSE mount, and loop devices over that mount's files and
 * the bootstrap (not autocleared). Loops go
 * first: once the FUSE mount under them is detached, their backing paths no longer name the work
 * dir. Then the mounts, then the dir; each step bounded, each failure only reported.
 */
export async function clearMountWorkDir (workDir: string, warn: (m: string) => void): Promise<void> {
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
