import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { AbortOptions, BlobBackend, ImageStore } from '@shoal/interface'
import { readBootstrap, type RafsImage } from '@shoal/rafs'
import { blobDirectory } from '@shoal/blob-device'
import { parseImageReference, registry, registryImageStore } from '@shoal/registry'
import type { Credentials, RegistryClient } from '@shoal/registry'
import { ociLayout, parseOciReference } from '@shoal/oci-layout'
import { bootstrapLayerDirectory, openNydusImage } from '@shoal/convert'
import type { ImageLocation, StoredNydusImage } from '@shoal/convert'
import { stringOption, UsageError, type CommandContext, type OptionSpec } from './command.js'

export interface OpenedImage {
  image: RafsImage
  /** Where the image's blobs are read from. */
  blobs: BlobBackend
  close: () => Promise<void>
  /** For a store reference: the store, and the manifest and bootstrap read from it. */
  location?: ImageLocation
  stored?: StoredNydusImage
}

export interface OpenImageOptions extends AbortOptions, StoreOptions {
  /** A directory of blob files named by blob id. */
  blobDir?: string
  /** Where a store image's bootstrap layer is kept by digest between runs. */
  bootstrapCacheDir?: string
}

export interface StoreOptions {
  /** Registries spoken to over plain HTTP besides loopback ones (`host[:port]`). */
  insecureRegistries?: string[]
  /** `USER:PASS` for every registry the command names; else the auth files. */
  creds?: string
  /** Picked from an image index; default linux/amd64. */
  platform?: string
  /** Share one client (and its token cache) between references. */
  client?: RegistryClient
}

/** The flags of every command that names images in registries. */
export const registryOptions: Record<string, OptionSpec> = {
  platform: { type: 'string', valueName: 'OS/ARCH', description: 'platform picked from an image index (default linux/amd64)' },
  'insecure-registry': { type: 'string', multiple: true, valueName: 'HOST[:PORT]', description: 'speak plain HTTP to this registry (loopback ones always are)' },
  creds: { type: 'string', valueName: 'USER:PASS', description: 'credentials for the registries named (default: the auth files)' }
}

/** StoreOptions from the flags of `registryOptions`. */
export function storeOptionsOf (values: CommandContext['values']): StoreOptions {
  const insecure = values['insecure-registry']
  const creds = stringOption(values, 'creds')
  const platform = stringOption(values, 'platform')
  return {
    ...(Array.isArray(insecure) ? { insecureRegistries: insecure } : {}),
    ...(creds != null ? { creds } : {}),
    ...(platform != null ? { platform } : {})
  }
}

/** An image reference that names a store: `docker://HOST/REPO[:TAG|@DIGEST]` or `oci:DIR[:TAG]`. */
export function isStoreReference (reference: string): boolean {
  return reference.startsWith('docker://') || reference.startsWith('oci:')
}

/** A registry client for the references a command names, with `--creds` given to each of their registries. */
export function registryClient (references: string[], options: StoreOptions = {}): RegistryClient {
  if (options.client != null) return options.client
  const credentials: Record<string, Credentials> = {}
  if (options.creds != null) {
    const colon = options.creds.indexOf(':')
    if (colon <= 0) throw new UsageError('--creds: expected USER:PASS')
    const creds = { username: options.creds.slice(0, colon), password: options.creds.slice(colon + 1) }
    for (const reference of references) {
      if (reference.startsWith('docker://')) credentials[parseImageReference(reference).registry] = creds
    }
  }
  return registry({
    ...(options.insecureRegistries != null ? { insecureRegistries: options.insecureRegistries } : {}),
    ...(Object.keys(credentials).length > 0 ? { credentials } : {}),
    ...(options.platform != null ? { platform: options.platform } : {})
  })
}

/**
 * The store and tag or digest a `docker://` or `oci:` reference names. `forWriting` lets an
 * oci: layout be created; a missing tag is `latest` in a registry, and in a layout "its only
 * image" for reading, no tag for writing.
 */
export function openStore (reference: string, client: RegistryClient | undefined, forWriting = false): ImageLocation & { tag?: string } {
  if (reference.startsWith('docker://')) {
    if (client == null) throw new UsageError(`${reference}: no registry client`)
    const parsed = parseImageReference(reference)
    const store: ImageStore = registryImageStore(client, parsed)
    const tag = parsed.tag ?? (parsed.digest == null ? 'latest' : undefined)
    return { store, reference: parsed.digest ?? tag ?? 'latest', ...(tag != null ? { tag } : {}) }
  }
  if (reference.startsWith('oci:')) {
    const parsed = parseOciReference(reference)
    const store = ociLayout({ path: parsed.path, create: forWriting })
    return { store, reference: parsed.tag ?? '', ...(parsed.tag != null ? { tag: parsed.tag } : {}) }
  }
  throw new UsageError(`image reference '${reference}': expected docker://HOST/REPO[:TAG] or oci:DIR[:TAG]`)
}

/**
 * Opens an image reference: `bootstrap:PATH` (or a plain path) to a RAFS bootstrap file, its blobs
 * in `--blob-dir` (default: a `blobs` directory beside the bootstrap); or a Nydus image in a
 * registry (`docker://…`) or an OCI layout (`oci:DIR[:TAG]`), its blobs read from there with
 * Range reads.
 */
export async function openImage (reference: string, options: OpenImageOptions = {}): Promise<OpenedImage> {
  if (isStoreReference(reference)) {
    const client = reference.startsWith('docker://') ? registryClient([reference], options) : undefined
    const location = openStore(reference, client)
    const opened = await openNydusImage(location, {
      ...(options.signal != null ? { signal: options.signal } : {}),
      ...(options.platform != null ? { platform: options.platform } : {}),
      ...(options.bootstrapCacheDir != null ? { bootstrapCache: bootstrapLayerDirectory(options.bootstrapCacheDir) } : {})
    })
    const blobs = options.blobDir != null ? blobDirectory({ path: options.blobDir }) : opened.blobs
    return {
      image: opened.image,
      blobs,
      close: async () => { if (options.blobDir != null) await (blobs as ReturnType<typeof blobDirectory>).close() },
      location,
      stored: opened
    }
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//.test(reference)) {
    throw new UsageError(`image reference '${reference}': expected bootstrap:PATH, docker://HOST/REPO[:TAG] or oci:DIR[:TAG]`)
  }
  const path = reference.startsWith('bootstrap:') ? reference.slice('bootstrap:'.length) : reference
  if (path === '') throw new UsageError(`image reference '${reference}' names no file`)
  const image = readBootstrap(await readFile(path, { signal: options.signal }))
  const blobs = blobDirectory({ path: options.blobDir ?? join(dirname(path), 'blobs') })
  return { image, blobs, close: async () => { await blobs.close() } }
}
