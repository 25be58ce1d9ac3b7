/**
 * The registry the benchmarks pull from: Debian's docker-registry, listening inside a namespace of
 * the benchmark's own, so every byte a client pulls crosses a capped link (or, with no namespace, in
 * the root one, e.g. on loopback); and publishing an image into it as OCI (skopeo copy) and as Nydus
 * (shoal convert).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AbortOptions } from '@shoal/interface'
import { dockerRegistryConfig } from '@shoal/registry'
import type { Cleanup } from './cleanup.js'
import type { BenchImage } from './contracts.js'
import { BenchCommandError } from './errors.js'
import { run, startBackground } from './exec.js'

export interface BenchRegistry {
  /** `ADDRESS:PORT` as clients name it. */
  registry: string
  /** The namespace to run a client in that can reach it before shaping (undefined: the root one). */
  clientNamespace?: string
}

export async function startBenchRegistry (init: { namespace?: string, address: string, dir: string, port?: number }, cleanup: Cleanup, options: AbortOptions = {}): Promise<BenchRegistry> {
  const port = init.port ?? 5000
  await mkdir(init.dir, { recursive: true })
  const config = join(init.dir, 'config.yml')
  await writeFile(config, dockerRegistryConfig({ root: join(init.dir, 'data'), address: `${init.address}:${port}`, secret: 'shoal-bench-secret' }))
  const server = startBackground('docker-registry', ['serve', config], { netns: init.namespace })
  cleanup.defer(`stop docker-registry (pid ${server.child.pid ?? '?'})`, async () => { await server.stop() })
  const registry = `${init.address}:${port}`
  // /v2/ is asked from inside the namespace (if any): the root namespace may have no route to it.
  for (let attempt = 0; attempt < 100; attempt++) {
    options.signal?.throwIfAborted()
    if (server.child.exitCode != null) throw new BenchCommandError(`docker-registry exited with ${server.child.exitCode}: ${server.output()}`)
    try {
      await run('busybox', ['wget', '-q', '-O', '/dev/null', `http://${registry}/v2/`], { netns: init.namespace, timeoutMs: 2000 })
      return { registry }
    } catch {}
    await sleep(100)
  }
  throw new BenchCommandError(`docker-registry did not answer http://${registry}/v2/ within 10 s: ${server.output()}`)
}

export interface PublishedImage {
  ociRef: string
  nydusRef: string
  ociBytes: number
  nydusBytes: number
}

/** Bytes of an image in a registry: its manifest, config and layers. */
export async function imageBytes (reference: string, options: AbortOptions & { netns?: string } = {}): Promise<number> {
  const ran = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', reference], { ...options, timeoutMs: 60_000 })
  const manifest = JSON.parse(ran.stdout) as { config?: { size: number }, layers?: Array<{ size: number }> }
  return Buffer.byteLength(ran.stdout.trim()) + (manifest.config?.size ?? 0) + (manifest.layers ?? []).reduce((sum, l) => sum + l.size, 0)
}

/** Pushes the image as it is, and its Nydus conversion, into the registry. */
export async function publishImage (image: BenchImage, registry: BenchRegistry, shoalBin: string, options: AbortOptions & { workDir: string }): Promise<PublishedImage> {
  const ociRef = `docker://${registry.registry}/bench/${image.name}:oci`
  const nydusRef = `docker://${registry.registry}/bench/${image.name}:nydus`
  const netns = registry.clientNamespace
  await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${image.layout}:${image.tag}`, ociRef], { ...options, netns, timeoutMs: 10 * 60_000 })
  await mkdir(options.workDir, { recursive: true })
  await run(shoalBin, ['convert', `oci:${image.layout}:${image.tag}`, nydusRef, '--insecure-registry', registry.registry, '--work-dir', options.workDir, '--json'], { ...options, netns, timeoutMs: 10 * 60_000 })
  return {
    ociRef,
    nydusRef,
    ociBytes: await imageBytes(ociRef, { ...options, netns }),
    nydusBytes: await imageBytes(nydusRef, { ...options, netns })
  }
}
