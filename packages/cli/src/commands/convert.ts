import { readFile } from 'node:fs/promises'
import type { Compressor, Digester } from '@shoal/interface'
import { convertImage, type ConvertProgressEvent, type ConvertSummary } from '@shoal/convert'
import { stringOption, UsageError, type Command } from '../command.js'
import { openStore, registryClient, registryOptions, storeOptionsOf } from '../image-ref.js'

const COMPRESSORS: Compressor[] = ['zstd', 'lz4_block', 'none']
const DIGESTERS: Digester[] = ['sha256', 'blake3']

export const convert: Command = {
  name: 'convert',
  summary: 'convert an OCI image into a Nydus image and push it',
  args: 'SRC DST',
  description: 'SRC and DST are docker://HOST/REPO[:TAG] or oci:DIR[:TAG]. Layers stream from SRC; every blob, the\n' +
    'bootstrap layer and the config are pushed to DST, and the manifest last, once each blob is confirmed there.\n' +
    'Progress goes to stderr (one updating line on a terminal); the summary to stdout.',
  positionals: { min: 2, max: 2 },
  options: {
    'chunk-dict': { type: 'string', valueName: 'REF', description: 'an earlier Nydus image whose chunks are referenced, not stored again' },
    'prefetch-files': { type: 'string', valueName: 'FILE', description: 'file listing image paths to prefetch first, one a line' },
    'chunk-size': { type: 'string', valueName: 'N', description: 'chunk size in bytes (0x… allowed), a power of two from 4 KiB to 16 MiB (default 1 MiB, or the chunk dictionary\'s)' },
    compressor: { type: 'string', valueName: 'NAME', description: 'zstd, lz4_block or none (default zstd)' },
    digester: { type: 'string', valueName: 'NAME', description: 'sha256 or blake3 (default sha256, or the chunk dictionary\'s)' },
    ...registryOptions,
    'work-dir': { type: 'string', valueName: 'DIR', description: 'where blobs are staged before pushing (default the temp dir)' },
    json: { type: 'boolean', description: 'print the summary as JSON (no progress unless stderr is a terminal)' }
  },
  async run ({ positionals, values, stdout, stderr, signal }) {
    const [src, dst] = positionals
    const compressor = stringOption(values, 'compressor')
    if (compressor != null && !(COMPRESSORS as string[]).includes(compressor)) throw new UsageError(`--compressor: expected ${COMPRESSORS.join(', ')}, got '${compressor}'`)
    const digester = stringOption(values, 'digester')
    if (digester != null && !(DIGESTERS as string[]).includes(digester)) throw new UsageError(`--digester: expected ${DIGESTERS.join(', ')}, got '${digester}'`)
    const chunkSizeText = stringOption(values, 'chunk-size')
    const chunkSize = chunkSizeText != null ? Number(chunkSizeText) : undefined
    if (chunkSize != null && !Number.isSafeInteger(chunkSize)) throw new UsageError(`--chunk-size: '${chunkSizeText ?? ''}' is not a number`)
    const dictRef = stringOption(values, 'chunk-dict')
    const prefetchPath = stringOption(values, 'prefetch-files')
    const prefetchFiles = prefetchPath != null
      ? (await readFile(prefetchPath, { encoding: 'utf8', signal })).split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#'))
      : undefined
    const platform = stringOption(values, 'platform')
    const workDir = stringOption(values, 'work-dir')
    const references = [src, dst, ...(dictRef != null ? [dictRef] : [])]
    const client = references.some(r => r.startsWith('docker://')) ? registryClient(references, storeOptionsOf(values)) : undefined
    const source = openStore(src, client)
    const target = openStore(dst, client, true)
    if (target.reference !== '' && target.tag == null) throw new UsageError(`${dst}: the destination needs a tag, not a digest`)
    const chunkDict = dictRef != null ? openStore(dictRef, client) : undefined

    const json = values.json === true
    const tty = (stderr as { isTTY?: boolean }).isTTY === true
    const progress = json && !tty ? undefined : progressDisplay(stderr, tty)
    let summary: ConvertSummary
    try {
      summary = await convertImage({ store: source.store, reference: source.reference }, { store: target.store, ...(target.tag != null ? { tag: target.tag } : {}) }, {
        signal,
        ...(chunkSize != null ? { chunkSize } : {}),
        ...(compressor != null ? { compressor: compressor as Compressor } : {}),
        ...(digester != null ? { digester: digester as Digester } : {}),
        ...(prefetchFiles != null ? { prefetchFiles } : {}),
        ...(platform != null ? { platform } : {}),
        ...(chunkDict != null ? { chunkDict: { store: chunkDict.store, reference: chunkDict.reference } } : {}),
        ...(workDir != null ? { workDir } : {}),
        sourceReference: src,
        ...(progress != null ? { onProgress: progress.onProgress } : {})
      })
    } finally {
      progress?.finish()
    }
    stdout.write(json ? `${JSON.stringify(summary, null, 2)}\n` : renderSummary(summary, dst))
    return 0
  }
}

/** Progress as one line rewritten in place on a terminal, or a plain line per step otherwise. */
function progressDisplay (out: NodeJS.WritableStream, tty: boolean): { onProgress: (event: ConvertProgressEvent) => void, finish: () => void } {
  let layers = 0
  let lastDraw = 0
  let drawn = false
  const line = (text: string, final = false): void => {
    if (tty) {
      const now = Date.now()
      if (!final && now - lastDraw < 100) return
      lastDraw = now
      const width = (out as { columns?: number }).columns ?? 100
      out.write(`\r\u001b[2K${text.slice(0, Math.max(20, width - 1))}`)
      drawn = true
    } else if (final) {
      out.write(`${text}\n`)
    }
  }
  return {
    onProgress: (event) => {
      switch (event.type) {
        case 'convert:source':
          layers = event.detail.layers
          line(`source ${event.detail.name} ${event.detail.digest}: ${layers} layers, ${bytes(event.detail.bytes)}`, true)
          if (tty) out.write('\n')
          break
        case 'convert:chunk-dict':
          line(`chunk dictionary ${event.detail.name}: ${event.detail.blobs} blobs`, true)
          if (tty) out.write('\n')
          break
        case 'convert:layer-start':
          line(`layer ${event.detail.index + 1}/${layers} ${event.detail.digest.slice(0, 19)}: reading`, true)
          break
        case 'convert:layer-bytes':
          line(`layer ${event.detail.index + 1}/${layers}: ${bytes(event.detail.bytes)} of ${bytes(event.detail.size)} (${percent(event.detail.bytes, event.detail.size)})`)
          break
        case 'convert:layer-done': {
          const d = event.detail
          line(`layer ${d.index + 1}/${layers}: ${d.entries} entries, ${d.newChunks} new chunks (${bytes(d.newBytes)}), ${d.dedupChunks} deduplicated (${bytes(d.dedupBytes)})` +
            (d.blob != null ? `, blob ${bytes(d.blob.size)}` : ', no blob'), true)
          if (tty) out.write('\n')
          break
        }
        case 'convert:bootstrap':
          line(`bootstrap: ${event.detail.inodes} inodes, layer ${bytes(event.detail.size)}`, true)
          if (tty) out.write('\n')
          break
        case 'convert:push':
          line(`push ${event.detail.from} ${event.detail.digest.slice(0, 19)} ${bytes(event.detail.size)}: ${event.detail.how}`, true)
          break
        case 'convert:manifest':
          line(`push manifest ${event.detail.digest}`, true)
          if (tty) out.write('\n')
          break
      }
    },
    finish: () => {
      if (tty && drawn) out.write('\r\u001b[2K')
    }
  }
}

function renderSummary (s: ConvertSummary, dst: string): string {
  const rows = s.layers.map(l => [
    String(l.index), l.source.digest.slice(7, 19), bytes(l.source.size), String(l.entries),
    `${l.newChunks} / ${bytes(l.newBytes)}`, `${l.dedupChunks} / ${bytes(l.dedupBytes)}`, l.blob != null ? bytes(l.blob.size) : '-'
  ])
  const header = ['layer', 'source', 'size', 'entries', 'new chunks', 'dedup chunks', 'blob']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  const fmt = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()
  const pushed = s.blobs.filter(b => b.from === 'layer' || b.from === 'chunk-dict')
  return [
    `converted ${s.source.name} (${s.source.digest})`,
    `       to ${dst} (${s.target.digest}) in ${(s.durationMs / 1000).toFixed(1)} s`,
    '',
    fmt(header),
    ...rows.map(fmt),
    '',
    `chunks: ${s.totals.chunks} (${s.totals.newChunks} new, ${s.totals.dedupChunks} deduplicated); bytes saved by dedup: ${bytes(s.totals.bytesSaved)} (${s.totals.bytesSaved})`,
    `blobs: ${pushed.length} (${pushed.filter(b => b.how === 'uploaded').length} uploaded, ${pushed.filter(b => b.how === 'exists').length} already there, ` +
      `${pushed.filter(b => b.how === 'mounted').length} mounted), ${bytes(s.totals.blobBytes)}; uploaded ${bytes(s.totals.uploadedBytes)} in all`,
    `bootstrap: ${s.bootstrap.inodes} inodes, ${bytes(s.bootstrap.bootstrapSize)} (layer ${bytes(s.bootstrap.size)})`,
    ...(s.missingPrefetch.length > 0 ? [`prefetch paths not in the image: ${s.missingPrefetch.join(', ')}`] : []),
    ''
  ].join('\n')
}

function bytes (n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`
}

function percent (part: number, whole: number): string {
  return whole > 0 ? `${Math.min(100, Math.floor(part / whole * 100))}%` : '-'
}

