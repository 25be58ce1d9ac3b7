/**
 * Serves one lazy mount of an image until SIGTERM, as `shoal mount` would (blob directory source,
 * chunk cache, the device's defaults), in a process of its own so it can be profiled
 * (`--cpu-prof`, `--trace-gc`) and so the reader never shares its event loop.
 *
 * Prints one JSON line when mounted ({ ready, mode, fallbackReason }) and one when unmounted
 * ({ stats }: the device's bytes by source, the mount's read counts).
 *
 * Usage: node serve.js --mode fuse|erofs --bootstrap FILE --blob-dir DIR --mountpoint DIR --work-dir DIR [--cache-dir DIR]
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { blobDevice, blobDirectorySource } from '@shoal/blob-device'
import { openChunkCache } from '@shoal/chunk-cache'
import { mountImage, type MountMode } from '@shoal/fuse'
import { readBootstrap } from '@shoal/rafs'

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'erofs' },
    bootstrap: { type: 'string' },
    'blob-dir': { type: 'string' },
    mountpoint: { type: 'string' },
    'work-dir': { type: 'string' },
    'cache-dir': { type: 'string' }
  }
})

async function main (): Promise<void> {
  const { bootstrap, 'blob-dir': blobDir, mountpoint, 'work-dir': workDir } = values
  if (bootstrap == null || blobDir == null || mountpoint == null || workDir == null) {
    throw new Error('--bootstrap, --blob-dir, --mountpoint and --work-dir are required')
  }
  const image = readBootstrap(await readFile(bootstrap))
  const cacheDir = values['cache-dir']
  const cache = cacheDir != null ? await openChunkCache({ path: join(cacheDir, 'cache'), maxBytes: 8 * 2 ** 30 }) : undefined
  const source = blobDirectorySource({ path: blobDir, name: 'blob-dir' })
  const device = blobDevice({ image, ...(cache != null ? { cache } : {}), sources: [source], logger: { warn: m => { process.stderr.write(`${m}\n`) } } })
  const mount = await mountImage({ device, mountpoint, mode: values.mode as MountMode, workDir, bootstrapPath: bootstrap, logger: m => { process.stderr.write(`${m}\n`) } })
  process.stdout.write(`${JSON.stringify({ ready: true, mode: mount.mode, fallbackReason: mount.fallbackReason ?? null })}\n`)
  await new Promise<void>(resolve => { process.once('SIGTERM', resolve); process.once('SIGINT', resolve) })
  await mount.unmount()
  const stats = { device: device.stats(), mount: mount.counters(), cache: cache?.stats() ?? null }
  await device.close()
  await source.close()
  await cache?.close()
  process.stdout.write(`${JSON.stringify({ stats })}\n`)
}

main().catch((err: any) => {
  process.stderr.write(`serve: ${err?.stack ?? err}\n`)
  process.exitCode = 1
})
