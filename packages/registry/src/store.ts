/**
 * The ImageStore contract (from @shoal/interface) over one repository of a registry, so the
 * converter and the CLI treat a registry and an OCI image layout alike.
 */
import { PassThrough } from 'node:stream'
import { throwIfAborted } from '@shoal/interface'
import type { AbortOptions, GetBlobStreamOptions, ImageStore, PutBlobOptions, PutBlobResult, StoredManifest } from '@shoal/interface'
import type { RegistryClient } from './client.js'
import { isDigest } from './digest.js'
import type { RepositoryLocation } from './reference.js'

/** An ImageStore that is one repository of a registry; also says where it is, for mounts. */
export interface RegistryImageStore extends ImageStore {
  readonly location: RepositoryLocation
}

export function registryImageStore (client: RegistryClient, location: RepositoryLocation): RegistryImageStore {
  const where = { registry: location.registry, repository: location.repository }
  const name = `docker://${where.registry}/${where.repository}`
  const reference = (tagOrDigest: string): { registry: string, repository: string, tag?: string, digest?: string } =>
    isDigest(tagOrDigest) ? { ...where, digest: tagOrDigest } : { ...where, tag: tagOrDigest }

  return {
    name,
    location: where,
    async getManifest (tagOrDigest: string, options: AbortOptions = {}): Promise<StoredManifest> {
      const fetched = await client.getManifest(reference(tagOrDigest), options)
      return { digest: fetched.digest, mediaType: fetched.mediaType, bytes: fetched.bytes, json: fetched.json }
    },
    async putManifest (tag: string | undefined, bytes: Uint8Array, mediaType: string, options: AbortOptions = {}) {
      const target = tag != null ? { ...where, tag } : where
      return await client.putManifest(target, bytes, mediaType, options)
    },
    async hasBlob (digest: string, options: AbortOptions = {}): Promise<number | undefined> {
      return (await client.headBlob(where, digest, options))?.size
    },
    getBlobStream (digest: string, options: GetBlobStreamOptions = {}): AsyncIterable<Uint8Array> {
      return streamBlob(client, where, digest, options)
    },
    async getBlobBytes (digest: string, options: AbortOptions & { maxSize?: number } = {}): Promise<Uint8Array> {
      return await client.getBlobBytes(where, digest, options)
    },
    async readBlob (digest: string, offset: number, length: number, options: AbortOptions = {}): Promise<Uint8Array> {
      return await client.readBlob(where, digest, offset, length, options)
    },
    async mountBlob (digest: string, from: ImageStore, options: AbortOptions = {}): Promise<boolean> {
      const source = (from as Partial<RegistryImageStore>).location
      if (source == null || source.registry !== where.registry) return false
      if (source.repository === where.repository) return (await client.headBlob(where, digest, options)) != null
      return await client.mountBlob(where, digest, source.repository, options)
    },
    async putBlob (path: string, options: PutBlobOptions = {}): Promise<PutBlobResult> {
      // Cross-repository mounts work only inside one registry.
      const mountFrom = (options.mountFrom ?? [])
        .map(store => (store as Partial<RegistryImageStore>).location)
        .filter((l): l is RepositoryLocation => l != null && l.registry === where.registry && l.repository !== where.repository)
        .map(l => l.repository)
      const pushed = await client.pushBlob(where, { path }, {
        ...(options.signal != null ? { signal: options.signal } : {}),
        ...(options.digest != null ? { digest: options.digest } : {}),
        ...(mountFrom.length > 0 ? { mountFrom: [...new Set(mountFrom)] } : {})
      })
      return { digest: pushed.digest, size: pushed.size, how: pushed.how === 'exists' || pushed.how === 'mounted' ? pushed.how : 'uploaded' }
    }
  }
}

/**
 * The client's getBlob writes into a Writable and checks the digest at the end; this turns that
 * into a pull stream. A consumer that stops early aborts the download.
 */
async function * streamBlob (client: RegistryClient, location: RepositoryLocation, digest: string, options: GetBlobStreamOptions): AsyncGenerator<Uint8Array> {
  throwIfAborted(options)
  const stop = new AbortController()
  const signal = options.signal != null ? AbortSignal.any([options.signal, stop.signal]) : stop.signal
  const pipe = new PassThrough({ highWaterMark: 1 << 20 })
  let finished = false
  const download = client.getBlob(location, digest, pipe, { signal, ...(options.size != null ? { size: options.size } : {}) })
    .then(() => { finished = true; pipe.end() }, (err: unknown) => { finished = true; pipe.destroy(err as Error) })
  try {
    for await (const piece of pipe) yield piece as Uint8Array
  } finally {
    if (!finished) stop.abort()
    pipe.destroy()
    await download
  }
}
