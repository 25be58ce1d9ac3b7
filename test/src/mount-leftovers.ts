import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { join } from 'node:path'

/**
 * Mount points under `dir`, and loop devices backed by files under it. Synchronous on purpose:
 * tests call it from `after` hooks and between steps; it never touches a FUSE mount's files.
 */
export function mountLeftovers (dir: string): string[] {
  const mounts = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map(l => l.split(' ')[1]).filter(t => t?.startsWith(dir))
  const loops = spawnSync('losetup', ['-J', '-l']).stdout.toString()
  const devices: string[] = loops.trim() === '' ? [] : (JSON.parse(loops).loopdevices ?? []).filter((d: any) => String(d['back-file'] ?? '').startsWith(dir)).map((d: any) => String(d.name))
  return [...mounts, ...devices]
}

/**
 * What a failed test may leave under `dir`, cleared: the mount servers named by the state files in
 * `runDir` are stopped first, then loop devices are detached (before the FUSE mounts under them,
 * whose loss would hide their backing paths), then the mounts, deepest first.
 */
export function clearMountLeftovers (dir: string, runDir: string | undefined): void {
  if (runDir != null && fs.existsSync(runDir)) {
    for (const file of fs.readdirSync(runDir).filter(f => f.endsWith('.json'))) {
      try { process.kill(JSON.parse(fs.readFileSync(join(runDir, file), 'utf8')).pid, 'SIGTERM') } catch {}
    }
  }
  const detachLoops = (): void => {
    for (const device of mountLeftovers(dir).filter(l => l.startsWith('/dev/loop'))) spawnSync('losetup', ['-d', device])
  }
  detachLoops()
  for (const target of mountLeftovers(dir).filter(l => !l.startsWith('/dev/loop')).reverse()) {
    spawnSync('umount', ['-l', target])
    spawnSync('fusermount', ['-uz', target])
  }
  detachLoops()
}
