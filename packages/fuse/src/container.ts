/**
 * A container on a lazy mount: overlayfs (upper and work on local disk) over the image's tree, an
 * OCI runtime bundle from the image config, runc. Torn down in order: container, overlay, and the
 * caller's mount after that (the overlay must go before the FUSE mount under it).
 */
import { spawn, type StdioOptions } from 'node:child_process'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { throwIfAborted, type AbortOptions } from '@shoal/interface'
import { ContainerError } from './errors.js'
import { run, unmountPath } from './exec.js'

/** The `config` member of an OCI image config (what `docker inspect` calls Config). */
export interface ImageRunConfig {
  Entrypoint?: string[] | null
  Cmd?: string[] | null
  Env?: string[] | null
  WorkingDir?: string
  User?: string
}

export interface ContainerInit {
  /** The image's tree (a mount point); the container never writes to it. */
  lowerDir: string
  /** Local scratch: upper, work, rootfs, bundle and runc state live here, and are removed after. */
  workDir: string
  config?: ImageRunConfig
  /** Replaces the image's Cmd; the Entrypoint stays, as with `docker run IMAGE CMD…`. */
  command?: string[]
  id?: string
  stdio?: StdioOptions
  /** Seconds between SIGTERM and SIGKILL when the caller aborts. Default 10. */
  stopTimeout?: number
}

export interface ContainerResult {
  /** Exit status as a shell reports it: the code, or 128 + signal number. */
  status: number
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 }

/** Mounts overlayfs with `lowerDir` below and a fresh upper and work directory on local disk. */
export async function mountOverlay (lowerDir: string, workDir: string, options: AbortOptions = {}): Promise<{ rootfs: string, unmount: () => Promise<void> }> {
  const upper = join(workDir, 'upper')
  const work = join(workDir, 'work')
  const rootfs = join(workDir, 'rootfs')
  for (const dir of [upper, work, rootfs]) await mkdir(dir, { recursive: true })
  for (const dir of [lowerDir, upper, work]) {
    if (/[,:\\]/.test(dir)) throw new ContainerError(`overlay directory '${dir}' contains a comma, colon or backslash, which mount options cannot carry`)
  }
  await run('mount', ['-t', 'overlay', 'shoal-rootfs', '-o', `lowerdir=${resolve(lowerDir)},upperdir=${resolve(upper)},workdir=${resolve(work)}`, rootfs], options)
  return { rootfs, unmount: async () => { await unmountPath(rootfs) } }
}

/** uid and gid for an image's `User` (`name`, `uid`, `uid:gid`, `name:group`), from the rootfs's passwd and group. */
export async function resolveUser (rootfs: string, user: string | undefined): Promise<{ uid: number, gid: number }> {
  if (user == null || user === '') return { uid: 0, gid: 0 }
  const [userPart, groupPart] = user.split(':', 2)
  const table = async (file: string): Promise<string[][]> => {
    const text = await readFile(join(rootfs, 'etc', file), 'utf8').catch(() => '')
    return text.split('\n').slice(0, 100_000).map(l => l.split(':'))
  }
  let uid: number
  let gid: number | undefined
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart)
    const row = (await table('passwd')).find(r => r[2] === userPart)
    if (row != null && /^\d+$/.test(row[3] ?? '')) gid = Number(row[3])
  } else {
    const row = (await table('passwd')).find(r => r[0] === userPart)
    if (row == null || !/^\d+$/.test(row[2] ?? '')) throw new ContainerError(`user '${userPart}' of the image config is not in the image's /etc/passwd`)
    uid = Number(row[2])
    gid = Number(row[3])
  }
  if (groupPart != null && groupPart !== '') {
    if (/^\d+$/.test(groupPart)) {
      gid = Number(groupPart)
    } else {
      const row = (await table('group')).find(r => r[0] === groupPart)
      if (row == null || !/^\d+$/.test(row[2] ?? '')) throw new ContainerError(`group '${groupPart}' of the image config is not in the image's /etc/group`)
      gid = Number(row[2])
    }
  }
  return { uid, gid: gid ?? 0 }
}

/** The process args of a container: Entrypoint, then the command given or the image's Cmd. */
export function containerArgs (config: ImageRunConfig | undefined, command: string[] | undefined): string[] {
  const args = [...(config?.Entrypoint ?? []), ...(command != null && command.length > 0 ? command : (config?.Cmd ?? []))]
  if (args.length === 0) throw new ContainerError('nothing to run: the image config has no Entrypoint or Cmd and no command was given')
  return args
}

/** Writes `config.json` into `bundleDir` from `runc spec`'s template and the image config. */
export async function writeBundle (bundleDir: string, rootfs: string, config: ImageRunConfig | undefined, command: string[] | undefined, options: AbortOptions = {}): Promise<Record<string, any>> {
  await mkdir(bundleDir, { recursive: true })
  await rm(join(bundleDir, 'config.json'), { force: true })
  await run('runc', ['spec', '--bundle', bundleDir], options)
  const spec = JSON.parse(await readFile(join(bundleDir, 'config.json'), 'utf8'))
  const env = [...(config?.Env ?? [])]
  if (!env.some(e => e.startsWith('PATH='))) env.unshift(DEFAULT_PATH)
  const { uid, gid } = await resolveUser(rootfs, config?.User)
  spec.root = { path: resolve(rootfs), readonly: false }
  spec.hostname = 'shoal'
  spec.process = {
    ...spec.process,
    terminal: false,
    args: containerArgs(config, command),
    env,
    cwd: config?.WorkingDir != null && config.WorkingDir !== '' ? config.WorkingDir : '/',
    user: { uid, gid }
  }
  await writeFile(join(bundleDir, 'config.json'), JSON.stringify(spec, null, 2))
  return spec
}

/**
 * Runs a container with runc on an overlay over `lowerDir` and returns its exit status. Aborting
 * the signal stops the container (SIGTERM, then SIGKILL) and still tears everything down.
 */
export async function runContainer (init: ContainerInit, options: AbortOptions = {}): Promise<ContainerResult> {
  throwIfAborted(options)
  const id = init.id ?? `shoal-${process.pid}-${Date.now().toString(36)}`
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id)) throw new ContainerError(`container id '${id}' is not a plain name`)
  const state = join(init.workDir, 'runc')
  const bundle = join(init.workDir, 'bundle')
  await mkdir(state, { recursive: true })
  const overlay = await mountOverlay(init.lowerDir, init.workDir, options)
  let started = false
  try {
    await writeBundle(bundle, overlay.rootfs, init.config, init.command, options)
    throwIfAborted(options)
    const child = spawn('runc', ['--root', state, 'run', '-b', bundle, id], { stdio: init.stdio ?? 'inherit' })
    started = true
    const onAbort = (): void => {
      void run('runc', ['--root', state, 'kill', id, 'SIGTERM']).catch(() => {})
      const timer = setTimeout(() => { void run('runc', ['--root', state, 'kill', id, 'SIGKILL']).catch(() => {}) }, (init.stopTimeout ?? 10) * 1000)
      timer.unref()
      child.once('exit', () => { clearTimeout(timer) })
    }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const status = await new Promise<number>((resolve, reject) => {
        child.once('error', err => { reject(new ContainerError(`runc could not be started: ${err.message}`)) })
        child.once('exit', (code, signal) => { resolve(code ?? 128 + (signal != null ? SIGNAL_NUMBERS[signal] ?? 1 : 1)) })
      })
      return { status }
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
    }
  } finally {
    if (started) await run('runc', ['--root', state, 'delete', '-f', id]).catch(() => {})
    await overlay.unmount()
    await rm(init.workDir, { recursive: true, force: true })
  }
}
