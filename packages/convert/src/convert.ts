/**
 * The nydusify role: an OCI image in one store → a Nydus image in another. Layers stream from the
 * source into the builder (which never talks to a store); blobs land in temp files; then every
 * blob, the bootstrap layer and the config are pushed, each confirmed present, and the manifest
 * goes last, so no store ever holds a manifest naming a blob it lacks.
 */
import { createHash } from 'node:crypto'
import { closeSync, openSync, writeSync } from 'node:fs'
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  ANNOTATION_NYDUS_BLOB, ANNOTATION_NYDUS_BOOTSTRAP, ANNOTATION_NYDUS_BUILDER_VERSION, ANNOTATION_NYDUS_FS_VERSION,
  ANNOTATION_NYDUS_SOURCE_DIGEST, ANNOTATION_NYDUS_SOURCE_REFERENCE, MEDIA_TYPE_NYDUS_BLOB, MEDIA_TYPE_OCI_CONFIG,
  MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_OCI_MANIFEST, throwIfAborted
} from '@shoal/interface'
import type {
  AbortOptions, Compressor, Descriptor, Digester, ImageConfig, ImageManifest, ImageStore, Platform, ProgressEvent, ProgressOptions
} from '@shoal/interface'
import type { BlobTarget, BuildProgressEvent, LayerBuildResult } from '@shoal/builder'
import { makeBootstrapLayer } from './bootstrap-layer.js'
import { BlobMissingAfterPushError, NotConvertibleError } from './errors.js'
import { openNydusImage } from './nydus-image.js'
import { describeLocation, resolveManifest } from './resolve.js'
import type { ImageLocation } from './resolve.js'

export const BUILDER_VERSION = 'shoal-0.1.0'

/** Where the converted image goes: a store, and the tag to give it (none: by digest only). */
export interface ConvertTarget {
  store: ImageStore
  tag?: string
}

export interface ConvertLayerSummary {
  index: number
  source: { digest: string, size: number, mediaType: string }
  /** Tar entries read. */
  entries: number
  newChunks: number
  newBytes: number
  dedupChunks: number
  dedupBytes: number
  /** The layer's Nydus blob; absent when every chunk it has was stored before. */
  blob?: { digest: string, size: number, chunkCount: number, compressedSize: number, uncompressedSize: number }
}

export interface PushedBlob {
  digest: string
  size: number
  from: 'layer' | 'chunk-dict' | 'bootstrap' | 'config'
  how: 'exists' | 'mounted' | 'uploaded'
}

export interface ConvertSummary {
  source: { name: string, digest: string, layers: number, bytes: number }
  target: { name: string, tag?: string, digest: string, size: number, mediaType: string }
  chunkDict?: { name: string, digest: string, blobs: number }
  layers: ConvertLayerSummary[]
  blobs: PushedBlob[]
  bootstrap: { digest: string, size: number, bootstrapSize: number, inodes: number }
  config: { digest: string, size: number }
  totals: {
    chunks: number
    newChunks: number
    dedupChunks: number
    /** Uncompressed bytes of chunks stored in the new blobs. */
    newBytes: number
    /** Uncompressed bytes of chunks found already stored (in this image or the chunk dictionary): saved. */
    bytesSaved: number
    /** Bytes of blob files sent to the destination (not those that were there or mounted). */
    uploadedBytes: number
    /** Sum of the blob layers' sizes in the new manifest. */
    blobBytes: number
  }
  /** Prefetch paths that name nothing in the image. */
  missingPrefetch: string[]
  durationMs: number
}

export type ConvertProgressEvent =
  ProgressEvent<'convert:source', { name: string, digest: string, layers: number, bytes: number }> |
  ProgressEvent<'convert:chunk-dict', { name: string, digest: string, blobs: number }> |
  ProgressEvent<'convert:layer-start', { index: number, digest: string, size: number }> |
  ProgressEvent<'convert:layer-bytes', { index: number, bytes: number, size: number }> |
  ProgressEvent<'convert:layer-done', ConvertLayerSummary> |
  ProgressEvent<'convert:bootstrap', { digest: string, size: number, inodes: number }> |
  ProgressEvent<'convert:push', PushedBlob> |
  ProgressEvent<'convert:manifest', { digest: string, size: number }>

export interface ConvertOptions extends AbortOptions, ProgressOptions<ConvertProgressEvent> {
  /** Power of two, 4 KiB–16 MiB; default the chunk dictionary's, else 1 MiB. */
  chunkSize?: number
  /** Default zstd. */
  compressor?: Compressor
  /** Default the chunk dictionary's, else sha256. */
  digester?: Digester
  /** Image paths prefetched first, in order. */
  prefetchFiles?: string[]
  /** Picked from an index; default linux/amd64. */
  platform?: string | Platform
  /** An earlier Nydus image: chunks it stores are referenced, not stored again. */
  chunkDict?: ImageLocation
  /** Where blobs are staged before pushing; default the system temp dir. */
  workDir?: string
  /** Recorded as the manifest's source reference annotation; default the source's name. */
  sourceReference?: string
}

const MAX_CONFIG_BYTES = 16 * 1024 * 1024
/** Layer byte progress is reported at most this often per layer. */
const PROGRESS_BYTES = 1024 * 1024

export async function convertImage (source: ImageLocation, target: ConvertTarget, options: ConvertOptions = {}): Promise<ConvertSummary> {
  throwIfAborted(options)
  const started = Date.now()
  const signal = options.signal != null ? { signal: options.signal } : {}
  const emit = (event: ConvertProgressEvent): void => { options.onProgress?.(event) }
  const sourceName = describeLocation(source)

  const resolved = await resolveManifest(source, { ...signal, ...(options.platform != null ? { platform: options.platform } : {}) })
  const sourceLayers = resolved.manifest.layers
  checkConvertible(resolved.manifest, `${sourceName} (${resolved.digest})`)
  const sourceBytes = sourceLayers.reduce((sum, l) => sum + l.size, 0)
  emit({ type: 'convert:source', detail: { name: sourceName, digest: resolved.digest, layers: sourceLayers.length, bytes: sourceBytes } })
  const config = parseConfig(await source.store.getBlobBytes(resolved.manifest.config.digest, { ...signal, maxSize: MAX_CONFIG_BYTES }), resolved.manifest.config.digest)

  const dict = options.chunkDict != null ? await openNydusImage(options.chunkDict, signal) : undefined
  if (dict != null && options.chunkDict != null) {
    emit({ type: 'convert:chunk-dict', detail: { name: describeLocation(options.chunkDict), digest: dict.manifest.digest, blobs: dict.image.blobs.length } })
  }

  const work = await mkdtemp(join(options.workDir ?? tmpdir(), 'shoal-convert-'))
  try {
    // Build: every layer streams from the source store; its blob goes to a file named by layer.
    const blobFiles = new Map<string, string>()
    const blobSink = (layerIndex: number): BlobTarget => {
      const path = join(work, `layer-${layerIndex}.blob`)
      const fd = openSync(path, 'w')
      let open = true
      const close = (): void => { if (open) { open = false; closeSync(fd) } }
      return {
        write: bytes => {
          // Bounded: each pass writes at least one byte or throws.
          for (let done = 0; done < bytes.byteLength;) done += writeSync(fd, bytes, done, bytes.byteLength - done)
        },
        close: blob => { close(); blobFiles.set(blob.blobId, path) },
        discard: async () => { close(); await rm(path, { force: true }) }
      }
    }
    async function * layerStreams (): AsyncGenerator<AsyncIterable<Uint8Array>> {
      for (const [index, layer] of sourceLayers.entries()) {
        emit({ type: 'convert:layer-start', detail: { index, digest: layer.digest, size: layer.size } })
        yield counted(source.store.getBlobStream(layer.digest, { ...signal, size: layer.size }), bytes => {
          emit({ type: 'convert:layer-bytes', detail: { index, bytes, size: layer.size } })
        })
      }
    }
    const layerSummaries: ConvertLayerSummary[] = []
    const onBuild = (event: BuildProgressEvent): void => {
      if (event.type !== 'builder:layer-done') return
      const summary = layerSummary(event.detail, sourceLayers[event.detail.layerIndex])
      layerSummaries.push(summary)
      emit({ type: 'convert:layer-done', detail: summary })
    }
    // Loaded here, not at import: opening and resolving Nydus images (every `shoal run`) never builds.
    const { buildImage } = await import('@shoal/builder')
    const built = await buildImage({
      layers: layerStreams(),
      blobSink,
      ...(options.chunkSize ?? dict?.image.chunkSize) != null ? { chunkSize: options.chunkSize ?? dict?.image.chunkSize } : {},
      ...(options.compressor != null ? { compressor: options.compressor } : {}),
      ...(options.digester ?? dict?.image.digester) != null ? { digester: options.digester ?? dict?.image.digester } : {},
      ...(options.prefetchFiles != null ? { prefetchFiles: options.prefetchFiles } : {}),
      ...(dict != null ? { chunkDict: dict.image } : {})
    }, { ...signal, onProgress: onBuild })

    const bootstrapLayer = makeBootstrapLayer(built.bootstrap)
    emit({ type: 'convert:bootstrap', detail: { digest: bootstrapLayer.digest, size: bootstrapLayer.bytes.byteLength, inodes: built.image.inodeCount } })

    // Push the blobs, in the order of the bootstrap's blob table (dictionary blobs first, as it lists them).
    const pushed: PushedBlob[] = []
    const blobLayers: Descriptor[] = []
    const mountFrom = [source.store, ...(options.chunkDict != null ? [options.chunkDict.store] : [])]
    for (const blob of built.image.blobs) {
      throwIfAborted(options)
      const digest = `sha256:${blob.blobId}`
      const file = blobFiles.get(blob.blobId)
      let result: PushedBlob
      if (file != null) {
        const put = await target.store.putBlob(file, { ...signal, digest, mountFrom })
        result = { digest, size: put.size, from: 'layer', how: put.how }
      } else if (dict != null && options.chunkDict != null) {
        result = await copyDictBlob(options.chunkDict.store, dict.manifest.manifest, target.store, digest, work, signal)
      } else {
        throw new NotConvertibleError(`blob ${blob.blobId} in the new bootstrap comes from neither a layer nor a chunk dictionary`)
      }
      pushed.push(result)
      emit({ type: 'convert:push', detail: result })
      blobLayers.push({ mediaType: MEDIA_TYPE_NYDUS_BLOB, digest, size: result.size, annotations: { [ANNOTATION_NYDUS_BLOB]: 'true' } })
    }

    const bootstrapPath = join(work, 'bootstrap.tar.gz')
    await writeFile(bootstrapPath, bootstrapLayer.bytes, signal)
    const bootstrapPut = await target.store.putBlob(bootstrapPath, { ...signal, digest: bootstrapLayer.digest })
    const bootstrapPushed: PushedBlob = { digest: bootstrapLayer.digest, size: bootstrapPut.size, from: 'bootstrap', how: bootstrapPut.how }
    pushed.push(bootstrapPushed)
    emit({ type: 'convert:push', detail: bootstrapPushed })
    const bootstrapDescriptor: Descriptor = {
      mediaType: MEDIA_TYPE_OCI_LAYER_GZIP,
      digest: bootstrapLayer.digest,
      size: bootstrapLayer.bytes.byteLength,
      annotations: { [ANNOTATION_NYDUS_BOOTSTRAP]: 'true', [ANNOTATION_NYDUS_FS_VERSION]: '6' }
    }

    // The config is carried over; its diff_ids name the new layers (a blob is its own diff_id: it is not compressed as a whole).
    const newConfig: ImageConfig = { ...config, rootfs: { ...config.rootfs, type: 'layers', diff_ids: [...blobLayers.map(l => l.digest), bootstrapLayer.diffId] } }
    const configBytes = Buffer.from(JSON.stringify(newConfig), 'utf8')
    const configDigest = `sha256:${createHash('sha256').update(configBytes).digest('hex')}`
    const configPath = join(work, 'config.json')
    await writeFile(configPath, configBytes, signal)
    const configPut = await target.store.putBlob(configPath, { ...signal, digest: configDigest })
    const configPushed: PushedBlob = { digest: configDigest, size: configPut.size, from: 'config', how: configPut.how }
    pushed.push(configPushed)
    emit({ type: 'convert:push', detail: configPushed })

    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_OCI_MANIFEST,
      config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: configDigest, size: configBytes.byteLength },
      layers: [...blobLayers, bootstrapDescriptor],
      annotations: {
        [ANNOTATION_NYDUS_BUILDER_VERSION]: BUILDER_VERSION,
        [ANNOTATION_NYDUS_FS_VERSION]: '6',
        [ANNOTATION_NYDUS_SOURCE_DIGEST]: resolved.digest,
        [ANNOTATION_NYDUS_SOURCE_REFERENCE]: options.sourceReference ?? sourceName
      }
    }
    // Last: only once every blob the manifest names is confirmed there with its size.
    for (const descriptor of [manifest.config, ...manifest.layers]) {
      const size = await target.store.hasBlob(descriptor.digest, signal)
      if (size !== descriptor.size) throw new BlobMissingAfterPushError(descriptor.digest, descriptor.size, size, target.store.name)
    }
    const manifestBytes = Buffer.from(JSON.stringify(manifest), 'utf8')
    const put = await target.store.putManifest(target.tag, manifestBytes, MEDIA_TYPE_OCI_MANIFEST, signal)
    emit({ type: 'convert:manifest', detail: put })

    const totals = {
      chunks: 0, newChunks: 0, dedupChunks: 0, newBytes: 0, bytesSaved: 0,
      uploadedBytes: pushed.filter(p => p.how === 'uploaded').reduce((sum, p) => sum + p.size, 0),
      blobBytes: blobLayers.reduce((sum, l) => sum + l.size, 0)
    }
    for (const layer of layerSummaries) {
      totals.newChunks += layer.newChunks
      totals.dedupChunks += layer.dedupChunks
      totals.newBytes += layer.newBytes
      totals.bytesSaved += layer.dedupBytes
    }
    totals.chunks = totals.newChunks + totals.dedupChunks
    return {
      source: { name: sourceName, digest: resolved.digest, layers: sourceLayers.length, bytes: sourceBytes },
      target: { name: target.store.name, ...(target.tag != null ? { tag: target.tag } : {}), digest: put.digest, size: put.size, mediaType: MEDIA_TYPE_OCI_MANIFEST },
      ...(dict != null && options.chunkDict != null ? { chunkDict: { name: describeLocation(options.chunkDict), digest: dict.manifest.digest, blobs: dict.image.blobs.length } } : {}),
      layers: layerSummaries,
      blobs: pushed,
      bootstrap: { digest: bootstrapLayer.digest, size: bootstrapLayer.bytes.byteLength, bootstrapSize: built.bootstrap.byteLength, inodes: built.image.inodeCount },
      config: { digest: configDigest, size: configBytes.byteLength },
      totals,
      missingPrefetch: built.missingPrefetch,
      durationMs: Date.now() - started
    }
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

function checkConvertible (manifest: ImageManifest, where: string): void {
  if (manifest.layers.length === 0) throw new NotConvertibleError(`${where} has no layers`)
  for (const [index, layer] of manifest.layers.entries()) {
    if (layer.mediaType === MEDIA_TYPE_NYDUS_BLOB || layer.annotations?.[ANNOTATION_NYDUS_BOOTSTRAP] != null) {
      throw new NotConvertibleError(`${where} is already a Nydus image (layer ${index} is ${layer.mediaType === MEDIA_TYPE_NYDUS_BLOB ? 'a Nydus blob' : 'a Nydus bootstrap'})`)
    }
    // Layers are recognised by their bytes (tar, gzip, zstd); the media type must at least claim a tar.
    if (!/\.(tar|layer)|rootfs\.diff\.tar/.test(layer.mediaType) && !layer.mediaType.includes('tar')) {
      throw new NotConvertibleError(`${where}: layer ${index} (${layer.digest}) has media type ${layer.mediaType}, not a tar layer`)
    }
    if (!Number.isSafeInteger(layer.size) || layer.size < 0) throw new NotConvertibleError(`${where}: layer ${index} has size ${String(layer.size)}`)
  }
}

function parseConfig (bytes: Uint8Array, digest: string): ImageConfig {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
  } catch (err) {
    throw new NotConvertibleError(`image config ${digest} is not JSON: ${err instanceof Error ? err.message : String(err)}`)
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new NotConvertibleError(`image config ${digest} is not a JSON object`)
  const config = parsed as ImageConfig
  if (config.rootfs == null || typeof config.rootfs !== 'object') {
    return { ...config, rootfs: { type: 'layers', diff_ids: [] } }
  }
  return config
}

function layerSummary (result: LayerBuildResult, source: Descriptor | undefined): ConvertLayerSummary {
  return {
    index: result.layerIndex,
    source: { digest: source?.digest ?? '', size: source?.size ?? 0, mediaType: source?.mediaType ?? '' },
    entries: result.entries,
    newChunks: result.newChunks,
    newBytes: result.newBytes,
    dedupChunks: result.dedupChunks,
    dedupBytes: result.dedupBytes,
    ...(result.blob != null
      ? { blob: { digest: `sha256:${result.blob.blobId}`, size: result.blob.fileSize, chunkCount: result.blob.chunkCount, compressedSize: result.blob.compressedSize, uncompressedSize: result.blob.uncompressedSize } }
      : {})
  }
}

/** Passes bytes through, reporting how many went by about every PROGRESS_BYTES. */
async function * counted (stream: AsyncIterable<Uint8Array>, report: (bytes: number) => void): AsyncGenerator<Uint8Array> {
  let bytes = 0
  let next = PROGRESS_BYTES
  for await (const piece of stream) {
    bytes += piece.byteLength
    if (bytes >= next) { next = bytes + PROGRESS_BYTES; report(bytes) }
    yield piece
  }
  report(bytes)
}

/**
 * A chunk-dictionary blob the new image uses: present already, mounted from the dictionary's
 * repository, or copied (downloaded, verified, uploaded) when the stores cannot share.
 */
async function copyDictBlob (from: ImageStore, dictManifest: ImageManifest, to: ImageStore, digest: string, work: string, signal: AbortOptions): Promise<PushedBlob> {
  const declared = dictManifest.layers.find(l => l.digest === digest)?.size
  const size = declared ?? await from.hasBlob(digest, signal)
  if (size == null) throw new BlobMissingAfterPushError(digest, -1, undefined, from.name)
  const present = await to.hasBlob(digest, signal)
  if (present === size) return { digest, size, from: 'chunk-dict', how: 'exists' }
  if (to.mountBlob != null && await to.mountBlob(digest, from, signal)) return { digest, size, from: 'chunk-dict', how: 'mounted' }
  const path = join(work, `dict-${digest.slice('sha256:'.length)}.blob`)
  const file = await open(path, 'w')
  try {
    for await (const piece of from.getBlobStream(digest, { ...signal, size })) {
      for (let done = 0; done < piece.byteLength;) done += (await file.write(piece, done, piece.byteLength - done)).bytesWritten
    }
  } finally {
    await file.close()
  }
  const put = await to.putBlob(path, { ...signal, digest })
  await rm(path, { force: true })
  return { digest, size: put.size, from: 'chunk-dict', how: put.how }
}
