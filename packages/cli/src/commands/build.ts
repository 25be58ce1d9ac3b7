import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildFromDirectory } from '@shoal/builder'
import type { Compressor, Digester } from '@shoal/rafs'
import { stringOption, UsageError, type Command } from '../command.js'

export const build: Command = {
  name: 'build',
  summary: 'build a Nydus image (RAFS v6 bootstrap + one blob) from a directory',
  args: 'DIR',
  description: 'As `nydus-image create`: the directory becomes one layer. Blobs are named by their sha256.',
  positionals: { min: 1, max: 1 },
  options: {
    bootstrap: { type: 'string', valueName: 'FILE', description: 'where to write the bootstrap (required)' },
    'blob-dir': { type: 'string', valueName: 'DIR', description: 'where to write the blob (required)' },
    'chunk-size': { type: 'string', valueName: 'BYTES', default: '1048576', description: 'chunk size, a power of two from 4096 to 16777216 (0x… accepted)' },
    compressor: { type: 'string', valueName: 'NAME', default: 'zstd', description: 'zstd, lz4_block or none' },
    digester: { type: 'string', valueName: 'NAME', default: 'sha256', description: 'sha256 or blake3' },
    'prefetch-files': { type: 'string', valueName: 'FILE', description: 'a file listing paths (one a line) to prefetch first' },
    json: { type: 'boolean', description: 'print the summary as JSON' }
  },
  async run ({ positionals, values, stdout, signal }) {
    const bootstrap = stringOption(values, 'bootstrap')
    const blobDir = stringOption(values, 'blob-dir')
    if (bootstrap == null || blobDir == null) throw new UsageError('build: --bootstrap FILE and --blob-dir DIR are required')
    const compressor = stringOption(values, 'compressor') as Compressor
    const digester = stringOption(values, 'digester') as Digester
    if (!['zstd', 'lz4_block', 'none'].includes(compressor)) throw new UsageError(`build: unknown compressor '${compressor}'`)
    if (!['sha256', 'blake3'].includes(digester)) throw new UsageError(`build: unknown digester '${digester}'`)
    const chunkSize = Number(stringOption(values, 'chunk-size'))
    const prefetchList = stringOption(values, 'prefetch-files')
    const prefetchFiles = prefetchList != null
      ? (await readFile(prefetchList, 'utf8')).split('\n').map(l => l.trim()).filter(l => l !== '')
      : undefined
    await mkdir(blobDir, { recursive: true })
    const result = await buildFromDirectory(positionals[0], {
      chunkSize,
      compressor,
      digester,
      ...(prefetchFiles != null ? { prefetchFiles } : {}),
      blobSink: layerIndex => {
        // Written under a temporary name, renamed to its id only once complete.
        const temp = join(blobDir, `.layer-${layerIndex}-${process.pid}.partial`)
        const fd = openSync(temp, 'w')
        return {
          write: bytes => { for (let n = 0; n < bytes.length;) n += writeSync(fd, bytes, n) },
          close: blob => { closeSync(fd); renameSync(temp, join(blobDir, blob.blobId)) },
          discard: () => { closeSync(fd); rmSync(temp, { force: true }) }
        }
      }
    }, { signal })
    const temp = `${bootstrap}.partial`
    await writeFile(temp, result.bootstrap)
    renameSync(temp, bootstrap)
    const blob = result.layers[0]?.blob
    const summary = {
      bootstrap,
      bootstrapBytes: result.bootstrap.length,
      blobId: blob?.blobId ?? null,
      blobBytes: blob?.fileSize ?? 0,
      chunks: result.layers[0]?.newChunks ?? 0,
      dedupChunks: result.layers[0]?.dedupChunks ?? 0,
      missingPrefetch: result.missingPrefetch
    }
    if (values.json === true) {
      stdout.write(`${JSON.stringify(summary, null, 2)}\n`)
    } else {
      stdout.write(`built ${bootstrap} (${summary.bootstrapBytes} bytes)` +
        (blob != null ? ` and blob ${blob.blobId} (${blob.fileSize} bytes, ${summary.chunks} chunks, ${summary.dedupChunks} deduplicated)` : ', no blob (no file data)') + '\n')
      if (result.missingPrefetch.length > 0) stdout.write(`prefetch paths not in the image: ${result.missingPrefetch.join(', ')}\n`)
    }
    return 0
  }
}
