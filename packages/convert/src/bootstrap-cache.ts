/**
 * Bootstrap layers kept on disk by digest, so that mounting an image again (a tag resolved to
 * the same manifest) reads its bootstrap from here, not from the registry. Every read is checked
 * against the digest; a file that does not match is removed and counts as absent.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { throwIfAborted, type AbortOptions } from '@shoal/interface'
import { computeDigest, digestAlgorithm } from '@shoal/registry'

export interface BootstrapLayerCache {
  /** The layer's bytes when held and they match `digest`. */
  get(digest: string, options?: AbortOptions): Promise<Uint8Array | undefined>
  /** Keeps bytes already verified against `digest`. */
  put(digest: string, bytes: Uint8Array, options?: AbortOptions): Promise<void>
}

export interface BootstrapLayerDirectory extends BootstrapLayerCache {
  /** Files found not to match their digest (and removed). */
  readonly damaged: number
}

/** A BootstrapLayerCache in `dir`, one file per digest (`sha256-<hex>`), written whole by rename. */
export function bootstrapLayerDirectory (dir: string): BootstrapLayerDirectory {
  let damaged = 0
  const fileOf = (digest: string): string => join(dir, `${digestAlgorithm(digest)}-${digest.slice(digest.indexOf(':') + 1)}`)
  return {
    get damaged () { return damaged },
    async get (digest, options = {}) {
      throwIfAborted(options)
      const file = fileOf(digest)
      const bytes = await readFile(file, options.signal != null ? { signal: options.signal } : {}).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined
        throw err
      })
      if (bytes == null) return undefined
      if (computeDigest(bytes, digestAlgorithm(digest)) !== digest) {
        damaged++
        await rm(file, { force: true })
        return undefined
      }
      return bytes
    },
    async put (digest, bytes, options = {}) {
      throwIfAborted(options)
      const file = fileOf(digest)
      await mkdir(dir, { recursive: true })
      const partial = `${file}.${process.pid}.${Date.now()}.partial`
      try {
        await writeFile(partial, bytes, { flush: true, ...(options.signal != null ? { signal: options.signal } : {}) })
        await rename(partial, file)
      } catch (err) {
        await rm(partial, { force: true })
        throw err
      }
    }
  }
}
