import { execFile } from 'node:child_process'
import { throwIfAborted, type AbortOptions } from '@shoal/interface'
import { MountError } from './errors.js'

/** Runs a system command (mount, losetup, umount); a failure names the command and its stderr. */
export async function run (command: string, args: string[], options: AbortOptions = {}): Promise<string> {
  throwIfAborted(options)
  return await new Promise((resolve, reject) => {
    execFile(command, args, { signal: options.signal, maxBuffer: 16 << 20, timeout: 120_000 }, (err, stdout, stderr) => {
      if (err != null) {
        const detail = String(stderr).trim() !== '' ? String(stderr).trim() : err.message
        reject(new MountError(`${command} ${args.join(' ')} failed: ${detail}`))
      } else {
        resolve(String(stdout))
      }
    })
  })
}

/** Mount points as the kernel lists them (octal escapes decoded), newest last. */
export async function mountPoints (): Promise<Array<{ source: string, target: string, type: string }>> {
  const { readFile } = await import('node:fs/promises')
  const text = await readFile('/proc/self/mounts', 'utf8')
  const decode = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)))
  return text.split('\n').filter(l => l !== '').map(line => {
    const [source, target, type] = line.split(' ')
    return { source: decode(source), target: decode(target), type }
  })
}

export async function isMountPoint (path: string): Promise<boolean> {
  return (await mountPoints()).some(m => m.target === path)
}

/** umount, and a lazy umount when the first one says busy: the mount must go either way. */
export async function unmountPath (target: string): Promise<void> {
  if (!await isMountPoint(target)) return
  try {
    await run('umount', [target])
  } catch {
    await run('umount', ['-l', target])
  }
}
