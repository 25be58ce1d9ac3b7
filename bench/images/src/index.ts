/**
 * The images the benchmarks start, after HelloBench (Slacker, FAST '16): busybox; Debian minbase;
 * Debian + python3; Debian + nodejs. Each comes with the command that shows its app is ready and the
 * line that command prints. They are built from Debian packages (busybox-static, debootstrap, apt in
 * a chroot) into OCI image layouts under a cache directory and built only once: the Debian images
 * share one layout, so the minbase layer is stored once and each runtime is a second layer over it.
 *
 *   const image = await buildImage(recipes.python3, { cacheDir: DEFAULT_CACHE_DIR })
 *   // image.layout + image.tag name the OCI image; image.ready says how to tell it started
 */
import { spawn } from 'node:child_process'
import { copyFile, mkdir, rm, rmdir, stat, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ShoalError, type AbortOptions } from '@shoal/interface'
import { ociLayout } from '@shoal/oci-layout'

export const DEFAULT_CACHE_DIR = '/var/tmp/shoal-bench-cache'
const DEBIAN_MIRROR = 'http://deb.debian.org/debian'
const SUITE = 'bookworm'
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/** An image as the harness takes it (structurally the harness's BenchImage). */
export interface BuiltImage {
  name: string
  description: string
  layout: string
  tag: string
  ready: { command: string[], line: string }
}

export interface ImageRecipe {
  name: string
  description: string
  /** The layout directory under the cache, and the tag in it. */
  layoutName: string
  tag: string
  ready: { command: string[], line: string }
  /** The image this one adds a layer to. */
  base?: ImageRecipe
  /** Fills the rootfs of the new layer (the base's files are already there). */
  fill: (rootfs: string, options: BuildOptions) => Promise<void>
}

export interface BuildOptions extends AbortOptions {
  cacheDir?: string
  /** Progress lines (building takes minutes the first time). */
  onProgress?: (line: string) => void
}

export class ImageBuildError extends ShoalError {
  override name = 'ImageBuildError'
  override readonly code = 'ERR_BENCH_IMAGE_BUILD'
}

async function run (command: string, args: string[], options: AbortOptions & { timeoutMs?: number } = {}): Promise<{ stdout: string, seconds: number }> {
  options.signal?.throwIfAborted()
  const started = Date.now()
  return await new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: options.timeoutMs ?? 20 * 60_000, ...(options.signal != null ? { signal: options.signal } : {}) })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout = (stdout + d).slice(-1024 * 1024) })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-64 * 1024) })
    child.on('error', err => { reject(new ImageBuildError(`${command} ${args.join(' ')} could not run: ${err.message}`)) })
    child.on('close', code => {
      if (code === 0) resolve({ stdout, seconds: (Date.now() - started) / 1000 })
      else reject(new ImageBuildError(`${command} ${args.join(' ')} exited with ${String(code)}: ${stderr.slice(-2000)}`))
    })
  })
}

async function exists (path: string): Promise<boolean> {
  try { await stat(path); return true } catch { return false }
}

async function aptInstall (rootfs: string, packages: string[], options: BuildOptions): Promise<void> {
  await copyFile('/etc/resolv.conf', join(rootfs, 'etc', 'resolv.conf'))
  const script = 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ' + packages.join(' ') +
    ' && apt-get clean && rm -rf /var/lib/apt/lists/*'
  const ran = await run('chroot', [rootfs, '/bin/sh', '-c', script], options)
  options.onProgress?.(`apt-get install ${packages.join(' ')}: ${ran.seconds.toFixed(0)} s`)
}

export const busybox: ImageRecipe = {
  name: 'busybox',
  description: 'busybox-static alone (1 layer)',
  layoutName: 'busybox',
  tag: 'latest',
  ready: { command: ['/bin/sh', '-c', 'echo ready'], line: 'ready' },
  fill: async (rootfs, options) => {
    for (const dir of ['bin', 'tmp', 'etc', 'proc', 'sys', 'dev']) await mkdir(join(rootfs, dir), { recursive: true })
    await copyFile('/usr/bin/busybox', join(rootfs, 'bin', 'busybox'))
    const applets = (await run('/usr/bin/busybox', ['--list'], options)).stdout.split('\n').filter(a => /^[\w.[-]+$/.test(a) && a !== 'busybox')
    for (const applet of applets.slice(0, 1000)) await symlink('busybox', join(rootfs, 'bin', applet)).catch(() => {})
  }
}

export const minbase: ImageRecipe = {
  name: 'minbase',
  description: `Debian ${SUITE}, debootstrap --variant=minbase (1 layer)`,
  layoutName: 'debian',
  tag: `${SUITE}-minbase`,
  ready: { command: ['/bin/bash', '-c', '. /etc/os-release && echo "$ID ready"'], line: 'debian ready' },
  fill: async (rootfs, options) => {
    const ran = await run('debootstrap', ['--variant=minbase', SUITE, rootfs, DEBIAN_MIRROR], options)
    options.onProgress?.(`debootstrap: ${ran.seconds.toFixed(0)} s`)
    // debootstrap keeps every .deb it installed (~60 MB) and the package lists: no image ships those.
    await run('sh', ['-c', 'rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*', 'sh', rootfs], options)
  }
}

export const python3: ImageRecipe = {
  name: 'python3',
  description: `Debian ${SUITE} minbase + python3 (2 layers)`,
  layoutName: 'debian',
  tag: `${SUITE}-python3`,
  base: minbase,
  ready: { command: ['python3', '-c', 'import json, email.parser; print("ready")'], line: 'ready' },
  fill: async (rootfs, options) => { await aptInstall(rootfs, ['python3'], options) }
}

export const nodejs: ImageRecipe = {
  name: 'nodejs',
  description: `Debian ${SUITE} minbase + nodejs (2 layers)`,
  layoutName: 'debian',
  tag: `${SUITE}-nodejs`,
  base: minbase,
  ready: { command: ['node', '-e', 'require("http"); console.log("ready")'], line: 'ready' },
  fill: async (rootfs, options) => { await aptInstall(rootfs, ['nodejs'], options) }
}

export const recipes: Record<string, ImageRecipe> = { busybox, minbase, python3, nodejs }

/** A directory used as a lock, so two benchmarks never build into one layout at once. */
async function withLock<T> (path: string, fn: () => Promise<T>, options: AbortOptions): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      await mkdir(path)
      break
    } catch (err: any) {
      if (err?.code !== 'EEXIST') throw err
      // A lock older than 30 minutes belongs to a build that died.
      const age = Date.now() - (await stat(path).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs
      if (age > 30 * 60_000) { await rmdir(path).catch(() => {}); continue }
      if (attempt >= 1200) throw new ImageBuildError(`${path} stayed locked for 20 minutes`)
      options.signal?.throwIfAborted()
      await sleep(1000)
    }
  }
  try { return await fn() } finally { await rmdir(path).catch(() => {}) }
}

function built (recipe: ImageRecipe, layout: string): BuiltImage {
  return { name: recipe.name, description: recipe.description, layout, tag: recipe.tag, ready: recipe.ready }
}

async function hasTag (layout: string, tag: string): Promise<boolean> {
  return await exists(join(layout, 'index.json')) && (await ociLayout({ path: layout }).tags()).includes(tag)
}

/** The image, built (with its base) unless the cache holds it already. */
export async function buildImage (recipe: ImageRecipe, options: BuildOptions = {}): Promise<BuiltImage> {
  const cacheDir = options.cacheDir ?? DEFAULT_CACHE_DIR
  const layout = join(cacheDir, recipe.layoutName)
  if (await hasTag(layout, recipe.tag)) return built(recipe, layout)
  if (recipe.base != null) {
    await buildImage(recipe.base, options)
    if (recipe.base.layoutName !== recipe.layoutName) throw new ImageBuildError(`${recipe.name} must share ${recipe.base.name}'s layout to add a layer to it`)
  }
  await mkdir(cacheDir, { recursive: true })
  return await withLock(`${layout}.lock`, async () => {
    if (await hasTag(layout, recipe.tag)) return built(recipe, layout)
    options.onProgress?.(`building ${layout}:${recipe.tag}${recipe.base != null ? ` over ${recipe.base.tag}` : ''}…`)
    const bundle = join(cacheDir, `bundle-${recipe.name}`)
    await rm(bundle, { recursive: true, force: true })
    try {
      if (recipe.base == null) {
        if (!(await exists(join(layout, 'index.json')))) await run('umoci', ['init', '--layout', layout], options)
        await run('umoci', ['new', '--image', `${layout}:${recipe.tag}`], options)
        await run('umoci', ['unpack', '--image', `${layout}:${recipe.tag}`, bundle], options)
      } else {
        await run('umoci', ['unpack', '--image', `${layout}:${recipe.base.tag}`, bundle], options)
      }
      await recipe.fill(join(bundle, 'rootfs'), options)
      // resolv.conf was the build machine's; the runtime supplies its own.
      await rm(join(bundle, 'rootfs', 'etc', 'resolv.conf'), { force: true })
      await run('umoci', ['repack', '--image', `${layout}:${recipe.tag}`, bundle], options)
      await run('umoci', ['config', '--image', `${layout}:${recipe.tag}`, '--config.env', PATH_ENV,
        '--clear=config.cmd', ...recipe.ready.command.flatMap(a => ['--config.cmd', a])], options)
      return built(recipe, layout)
    } finally {
      await rm(bundle, { recursive: true, force: true })
    }
  }, options)
}
