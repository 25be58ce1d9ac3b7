/**
 * An OCI image layout directory (image spec v1.1 `image-layout.md`), as skopeo and umoci write
 * it: an `oci-layout` file, `index.json` whose entries carry their tag in
 * `org.opencontainers.image.ref.name`, and content-addressed files under `blobs/ALG/HEX`.
 * Whole blobs and manifests are checked against their digests when read; blobs are written to a
 * temporary name and renamed into place only once complete and verified.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  ANNOTATION_OCI_REF_NAME, BlobNotFoundError, InvalidArgumentError, ManifestNotFoundError, MEDIA_TYPE_OCI_INDEX, throwIfAborted
} from '@shoal/interface'
import type {
  AbortOptions, Descriptor, GetBlobStreamOptions, ImageIndex, ImageStore, PutBlobOptions, PutBlobResult, StoredManifest
} from '@shoal/interface'
import { LayoutBlobSizeError, LayoutDigestMismatchError, OciLayoutError } from './errors.js'

export interface OciLayoutInit {
  /** The layout directory. */
  path: string
  /** Create the directory, `oci-layout` and `index.json` on the first write when absent. Default true. */
  create?: boolean
  /** Largest manifest or index.json read into memory. Default 4 MiB. */
  maxManifestBytes?: number
}

export interface OciLayoutStore extends ImageStore {
  readonly path: string
  /** The tags index.json names, in its order. */
  tags(options?: AbortOptions): Promise<string[]>
  /** index.json as it is (an empty index when the layout does not exist yet). */
  readIndex(options?: AbortOptions): Promise<ImageIndex>
}

const LAYOUT_FILE = 'oci-layout'
const INDEX_FILE = 'index.json'
const LAYOUT_VERSION = '1.0.0'
const DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
const DIGEST_FORM = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/

/** `oci:DIR[:TAG]` → its directory and tag; the tag is what follows the last `:` when it holds no `/`. */
export function parseOciReference (reference: string): { path: string, tag?: string } {
  if (!reference.startsWith('oci:')) throw new InvalidArgumentError(`"${reference}" is not an oci:DIR[:TAG] reference`)
  const rest = reference.slice('oci:'.length)
  const colon = rest.lastIndexOf(':')
  const path = colon > 0 && !rest.slice(colon + 1).includes('/') ? rest.slice(0, colon) : rest
  const tag = path.length < rest.length ? rest.slice(path.length + 1) : undefined
  if (path === '') throw new InvalidArgumentError(`"${reference}" names no directory`)
  if (tag != null && !/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(tag)) throw new InvalidArgumentError(`"${reference}": "${tag}" is not a valid tag`)
  return { path, ...(tag != null ? { tag } : {}) }
}

export function ociLayout (init: OciLayoutInit): OciLayoutStore {
  return new Layout(init)
}

class Layout implements OciLayoutStore {
  readonly path: string
  readonly name: string
  private readonly create: boolean
  private readonly maxManifestBytes: number

  constructor (init: OciLayoutInit) {
    this.path = init.path
    this.name = `oci:${init.path}`
    this.create = init.create ?? true
    this.maxManifestBytes = init.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES
  }

  async readIndex (options: AbortOptions = {}): Promise<ImageIndex> {
    throwIfAborted(options)
    let bytes: Buffer
    try {
      bytes = await readCapped(join(this.path, INDEX_FILE), this.maxManifestBytes)
    } catch (err: any) {
      if (err?.code === 'ENOENT') {
        await this.checkLayoutFile()
        return { schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, manifests: [] }
      }
      throw err
    }
    await this.checkLayoutFile()
    const json = parseJsonObject(bytes, `${this.path}/${INDEX_FILE}`)
    const manifests = (json as { manifests?: unknown }).manifests
    if (!Array.isArray(manifests)) throw new OciLayoutError(`${this.path}/${INDEX_FILE} has no manifests array`)
    for (const entry of manifests as unknown[]) checkDescriptor(entry, `${this.path}/${INDEX_FILE}`)
    return json as ImageIndex
  }

  async tags (options: AbortOptions = {}): Promise<string[]> {
    const index = await this.readIndex(options)
    return index.manifests.map(d => d.annotations?.[ANNOTATION_OCI_REF_NAME]).filter((t): t is string => t != null)
  }

  /** By digest; by tag (index.json's ref.name); '' names the only manifest of a layout that holds one. */
  async getManifest (tagOrDigest: string, options: AbortOptions = {}): Promise<StoredManifest> {
    throwIfAborted(options)
    let descriptor: Pick<Descriptor, 'digest' | 'mediaType'> & { size?: number }
    if (DIGEST_FORM.test(tagOrDigest)) {
      descriptor = { digest: tagOrDigest, mediaType: '' }
    } else {
      const index = await this.readIndex(options)
      const found = tagOrDigest === ''
        ? (index.manifests.length === 1 ? index.manifests[0] : undefined)
        : index.manifests.find(d => d.annotations?.[ANNOTATION_OCI_REF_NAME] === tagOrDigest)
      if (found == null) {
        const why = tagOrDigest === '' ? `(no tag given, and the layout holds ${index.manifests.length} manifests)` : tagOrDigest
        throw new ManifestNotFoundError(why, this.name)
      }
      descriptor = found
    }
    let bytes: Buffer
    try {
      bytes = await readCapped(this.blobPath(descriptor.digest), this.maxManifestBytes)
    } catch (err: any) {
      if (err?.code === 'ENOENT') throw new ManifestNotFoundError(tagOrDigest === '' ? descriptor.digest : tagOrDigest, this.name)
      throw err
    }
    const actual = digestOf(bytes, descriptor.digest)
    if (actual !== descriptor.digest) throw new LayoutDigestMismatchError(descriptor.digest, actual, this.blobPath(descriptor.digest))
    if (descriptor.size != null && descriptor.size !== bytes.byteLength) {
      throw new LayoutBlobSizeError(descriptor.digest, descriptor.size, bytes.byteLength, this.blobPath(descriptor.digest))
    }
    const json = parseJsonObject(bytes, this.blobPath(descriptor.digest))
    const declared = (json as { mediaType?: unknown }).mediaType
    const mediaType = typeof declared === 'string' ? declared : descriptor.mediaType
    return { digest: descriptor.digest, mediaType, bytes, json }
  }

  async putManifest (tag: string | undefined, bytes: Uint8Array, mediaType: string, options: AbortOptions = {}): Promise<{ digest: string, size: number }> {
    throwIfAborted(options)
    parseJsonObject(bytes, 'manifest to store')
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
    await this.ensureLayout()
    await this.writeBlobBytes(digest, bytes)
    const index = await this.readIndex(options)
    // A tag names one manifest: the new entry replaces any entry holding the same tag.
    const kept = index.manifests.filter(d => tag != null
      ? d.annotations?.[ANNOTATION_OCI_REF_NAME] !== tag
      : !(d.digest === digest && d.annotations?.[ANNOTATION_OCI_REF_NAME] == null))
    const entry: Descriptor = { mediaType, digest, size: bytes.byteLength, ...(tag != null ? { annotations: { [ANNOTATION_OCI_REF_NAME]: tag } } : {}) }
    const next: ImageIndex = { ...index, schemaVersion: 2, manifests: [...kept, entry] }
    await this.writeAtomically(join(this.path, INDEX_FILE), Buffer.from(JSON.stringify(next), 'utf8'))
    return { digest, size: bytes.byteLength }
  }

  async hasBlob (digest: string, options: AbortOptions = {}): Promise<number | undefined> {
    throwIfAborted(options)
    try {
      const info = await stat(this.blobPath(digest))
      return info.isFile() ? info.size : undefined
    } catch (err: any) {
      if (err?.code === 'ENOENT') return undefined
      throw err
    }
  }

  async * getBlobStream (digest: string, options: GetBlobStreamOptions = {}): AsyncGenerator<Uint8Array> {
    throwIfAborted(options)
    const path = this.blobPath(digest)
    const hash = createHash(algorithmOf(digest))
    let size = 0
    const stream = createReadStream(path, { highWaterMark: 1 << 20, ...(options.signal != null ? { signal: options.signal } : {}) })
    try {
      for await (const piece of stream as AsyncIterable<Buffer>) {
        size += piece.byteLength
        if (options.size != null && size > options.size) throw new LayoutBlobSizeError(digest, options.size, size, path)
        hash.update(piece)
        yield piece
      }
    } catch (err: any) {
      if (err?.code === 'ENOENT') throw new BlobNotFoundError(digest, this.name)
      throw err
    } finally {
      stream.destroy()
    }
    if (options.size != null && size !== options.size) throw new LayoutBlobSizeError(digest, options.size, size, path)
    const actual = `${algorithmOf(digest)}:${hash.digest('hex')}`
    if (actual !== digest) throw new LayoutDigestMismatchError(digest, actual, path)
  }

  async getBlobBytes (digest: string, options: AbortOptions & { maxSize?: number } = {}): Promise<Uint8Array> {
    throwIfAborted(options)
    const path = this.blobPath(digest)
    let bytes: Buffer
    try {
      bytes = await readCapped(path, options.maxSize ?? 64 * 1024 * 1024)
    } catch (err: any) {
      if (err?.code === 'ENOENT') throw new BlobNotFoundError(digest, this.name)
      throw err
    }
    const actual = digestOf(bytes, digest)
    if (actual !== digest) throw new LayoutDigestMismatchError(digest, actual, path)
    return bytes
  }

  async readBlob (digest: string, offset: number, length: number, options: AbortOptions = {}): Promise<Uint8Array> {
    throwIfAborted(options)
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new InvalidArgumentError(`cannot read ${length} bytes at offset ${offset} of blob ${digest}`)
    }
    const path = this.blobPath(digest)
    let handle
    try {
      handle = await open(path, 'r')
    } catch (err: any) {
      if (err?.code === 'ENOENT') throw new BlobNotFoundError(digest, this.name)
      throw err
    }
    try {
      const { size } = await handle.stat()
      if (offset + length > size) throw new InvalidArgumentError(`blob ${digest} in ${this.name} is ${size} bytes: cannot read ${length} bytes at offset ${offset}`)
      const buffer = Buffer.alloc(length)
      let done = 0
      // Bounded: each pass reads at least one byte or stops at end of file.
      while (done < length) {
        const { bytesRead } = await handle.read(buffer, done, length - done, offset + done)
        if (bytesRead === 0) throw new OciLayoutError(`${path} ended at ${offset + done} while reading ${length} bytes at ${offset}`)
        done += bytesRead
      }
      return buffer
    } finally {
      await handle.close()
    }
  }

  async putBlob (source: string, options: PutBlobOptions = {}): Promise<PutBlobResult> {
    throwIfAborted(options)
    if (options.digest != null) {
      const present = await this.hasBlob(options.digest, options)
      if (present != null) return { digest: options.digest, size: present, how: 'exists' }
    }
    await this.ensureLayout()
    const algorithm = options.digest != null ? algorithmOf(options.digest) : 'sha256'
    const hash = createHash(algorithm)
    const partial = join(this.path, 'blobs', algorithm, `.partial-${randomBytes(8).toString('hex')}`)
    await mkdir(join(this.path, 'blobs', algorithm), { recursive: true })
    const out = await open(partial, 'wx')
    let size = 0
    try {
      const input = createReadStream(source, { highWaterMark: 1 << 20, ...(options.signal != null ? { signal: options.signal } : {}) })
      for await (const piece of input as AsyncIterable<Buffer>) {
        hash.update(piece)
        await writeAll(out, piece)
        size += piece.byteLength
      }
      await out.sync()
      await out.close()
      const digest = `${algorithm}:${hash.digest('hex')}`
      if (options.digest != null && digest !== options.digest) throw new LayoutDigestMismatchError(options.digest, digest, source)
      const already = await this.hasBlob(digest, options)
      if (already != null) {
        await rm(partial, { force: true })
        return { digest, size, how: 'exists' }
      }
      await rename(partial, this.blobPath(digest))
      return { digest, size, how: 'uploaded' }
    } catch (err) {
      await out.close().catch(() => {})
      await rm(partial, { force: true })
      throw err
    }
  }

  private blobPath (digest: string): string {
    if (!DIGEST_FORM.test(digest)) throw new InvalidArgumentError(`"${digest}" is not a sha256 or sha512 digest in lower-case hex`)
    const [algorithm, hex] = digest.split(':')
    return join(this.path, 'blobs', algorithm, hex)
  }

  private async writeBlobBytes (digest: string, bytes: Uint8Array): Promise<void> {
    if ((await this.hasBlob(digest)) != null) return
    await mkdir(join(this.path, 'blobs', algorithmOf(digest)), { recursive: true })
    await this.writeAtomically(this.blobPath(digest), bytes)
  }

  private async writeAtomically (path: string, bytes: Uint8Array): Promise<void> {
    const partial = `${path}.partial-${randomBytes(8).toString('hex')}`
    try {
      const handle = await open(partial, 'wx')
      try {
        await writeAll(handle, bytes)
        await handle.sync()
      } finally {
        await handle.close()
      }
      await rename(partial, path)
    } catch (err) {
      await rm(partial, { force: true })
      throw err
    }
  }

  private async checkLayoutFile (): Promise<void> {
    let bytes: Buffer
    try {
      bytes = await readCapped(join(this.path, LAYOUT_FILE), 4096)
    } catch (err: any) {
      if (err?.code === 'ENOENT') throw new OciLayoutError(`${this.path} is not an OCI image layout: it has no ${LAYOUT_FILE} file`)
      throw err
    }
    const version = (parseJsonObject(bytes, `${this.path}/${LAYOUT_FILE}`) as { imageLayoutVersion?: unknown }).imageLayoutVersion
    if (typeof version !== 'string' || !version.startsWith('1.')) {
      throw new OciLayoutError(`${this.path}/${LAYOUT_FILE}: imageLayoutVersion ${JSON.stringify(version)}, expected 1.x`)
    }
  }

  private async ensureLayout (): Promise<void> {
    try {
      await stat(join(this.path, LAYOUT_FILE))
      return
    } catch (err: any) {
      if (err?.code !== 'ENOENT') throw err
    }
    if (!this.create) throw new OciLayoutError(`${this.path} is not an OCI image layout, and creating one was not allowed`)
    await mkdir(join(this.path, 'blobs', 'sha256'), { recursive: true })
    await writeFile(join(this.path, LAYOUT_FILE), JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }))
    try {
      await stat(join(this.path, INDEX_FILE))
    } catch {
      await this.writeAtomically(join(this.path, INDEX_FILE), Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, manifests: [] }), 'utf8'))
    }
  }
}

function algorithmOf (digest: string): 'sha256' | 'sha512' {
  if (!DIGEST_FORM.test(digest)) throw new InvalidArgumentError(`"${digest}" is not a sha256 or sha512 digest in lower-case hex`)
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256'
}

function digestOf (bytes: Uint8Array, like: string): string {
  const algorithm = algorithmOf(like)
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`
}

/** Reads a whole file, refusing one larger than `max` before allocating for it. */
async function readCapped (path: string, max: number): Promise<Buffer> {
  const info = await stat(path)
  if (info.size > max) throw new OciLayoutError(`${path} is ${info.size} bytes, more than the ${max} accepted`)
  const bytes = await readFile(path)
  if (bytes.byteLength > max) throw new OciLayoutError(`${path} grew past ${max} bytes while read`)
  return bytes
}

async function writeAll (handle: import('node:fs/promises').FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done)
    if (bytesWritten <= 0) throw new OciLayoutError('a write made no progress')
    done += bytesWritten
  }
}

function parseJsonObject (bytes: Uint8Array, what: string): object {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
  } catch (err) {
    throw new OciLayoutError(`${what} is not JSON: ${err instanceof Error ? err.message : String(err)}`)
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new OciLayoutError(`${what} is not a JSON object`)
  return parsed
}

function checkDescriptor (entry: unknown, where: string): void {
  const d = entry as Partial<Descriptor> | null
  if (d == null || typeof d.digest !== 'string' || !DIGEST_FORM.test(d.digest) || typeof d.mediaType !== 'string' ||
      typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new OciLayoutError(`${where} has an entry without a valid digest, media type and size: ${JSON.stringify(entry)?.slice(0, 200)}`)
  }
}
