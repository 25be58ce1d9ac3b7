import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { mountImage, runContainer } from '@shoal/fuse'
import { stringOption, type Command } from '../command.js'
import { DEFAULT_CACHE_DIR, formatStats, lazyMountOptions, modeOf, openLazyImage } from './mount-support.js'
import { daemonOption } from '../daemon-socket.js'
import { daemonFor, formatDaemonDelta, imageRunConfig } from '../daemon-mounts.js'

export const run: Command = {
  name: 'run',
  summary: "run a container from an image mounted lazily, and exit with the container's status",
  args: 'IMAGE [-- CMD...]',
  description: 'The rootfs is overlayfs over the lazy mount (upper and work under --cache-dir); the OCI bundle comes\n' +
    "from the image config (entrypoint, cmd, env, working dir, user); runc runs it. CMD replaces the image's Cmd.",
  positionals: { min: 1, max: Number.MAX_SAFE_INTEGER },
  options: { ...lazyMountOptions, ...daemonOption },
  async run ({ positionals, values, stderr, signal }) {
    const [reference, ...command] = positionals
    const mode = modeOf(values)
    const verbose = values.verbose === true
    const warn = (m: string): void => { stderr.write(`shoal run: ${m}\n`) }
    const cacheDir = resolve(stringOption(values, 'cache-dir') ?? DEFAULT_CACHE_DIR)
    await mkdir(join(cacheDir, 'run'), { recursive: true, mode: 0o700 })
    const workDir = await mkdtemp(join(cacheDir, 'run', 'c-'))
    const daemon = daemonFor(values, reference, warn)
    if (daemon != null) {
      // The daemon serves the lazy mount (its cache, its peers); the overlay and runc stay here.
      try {
        const lower = join(workDir, 'image')
        await mkdir(lower)
        const config = await imageRunConfig(reference, values, { signal })
        const before = await daemon.status({ signal })
        const mounted = await daemon.mount(reference, lower, { mode, signal })
        try {
          if (verbose) warn(`mode ${mounted.mode}${mounted.fallbackReason != null ? ` (erofs not used: ${mounted.fallbackReason})` : ''}, served by the daemon at ${daemon.socketPath}`)
          const { status } = await runContainer({
            lowerDir: lower,
            workDir: join(workDir, 'container'),
            ...(config != null ? { config } : {}),
            ...(command.length > 0 ? { command } : {}),
            id: `shoal-${process.pid}`
          }, { signal })
          return status
        } finally {
          await daemon.unmount(mounted.id)
          if (verbose || values.stats === true) warn(formatDaemonDelta(before, await daemon.status()))
        }
      } finally {
        await rm(workDir, { recursive: true, force: true })
      }
    }
    const lazy = await openLazyImage(reference, values, warn, { signal })
    try {
      const lower = join(workDir, 'image')
      await mkdir(lower)
      // Teardown order: the container and its overlay (inside runContainer), then the lazy mount.
      const mounted = await mountImage({
        device: lazy.device,
        mountpoint: lower,
        mode,
        workDir: join(workDir, 'mount'),
        ...(lazy.bootstrapPath != null ? { bootstrapPath: lazy.bootstrapPath } : {}),
        logger: warn
      }, { signal })
      try {
        if (verbose) warn(`mode ${mounted.mode}${mounted.fallbackReason != null ? ` (erofs not used: ${mounted.fallbackReason})` : ''}`)
        const { status } = await runContainer({
          lowerDir: lower,
          workDir: join(workDir, 'container'),
          ...(lazy.config != null ? { config: lazy.config } : {}),
          ...(command.length > 0 ? { command } : {}),
          id: `shoal-${process.pid}`
        }, { signal })
        return status
      } finally {
        await mounted.unmount()
        if (verbose || values.stats === true) warn(formatStats(lazy.device))
      }
    } finally {
      await lazy.close()
      await rm(workDir, { recursive: true, force: true })
    }
  }
}
