/**
 * Blob read throughput: a Nydus blob written from real files (a system library directory) is read
 * back chunk by chunk — decompressed and verified against each chunk digest, as every read in Shoal
 * is — and compared, side by side in one run, with node:crypto sha256 over the same uncompressed
 * bytes (the floor: any verified read hashes every byte once). The blob is held in memory, so this
 * measures CPU, not the disk.
 *
 * Usage: node bench/blob-read/dist/index.js [--dir DIR] [--mib N] [--rounds N] [--out DIR]
 */
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { BlobWriter, decodeChunk, type Compressor, type Digester, type RafsBlob, type RafsChunk } from '@shoal/rafs'

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '/usr/lib/x86_64-linux-gnu' },
    mib: { type: 'string', default: '128' },
    rounds: { type: 'string', default: '3' },
    out: { type: 'string', default: 'bench/results' }
  }
})
const chunkSize = 1024 * 1024
const budget = Number(values.mib) * 1024 * 1024
const rounds = Number(values.rounds)

/** Regular files under `dir`, sorted, until `budget` bytes. */
async function collectFiles (dir: string, budget: number): Promise<Buffer[]> {
  const files: Buffer[] = []
  let total = 0
  const entries = (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter(e => e.isFile())
    .map(e => join(e.parentPath, e.name))
    .sort()
  for (const path of entries) {
    if (total >= budget) break
    const data = await readFile(path).catch(() => undefined)
    if (data == null || data.length === 0) continue
    files.push(data)
    total += data.length
  }
  return files
}

interface WrittenBlob { bytes: Buffer, blob: RafsBlob, chunks: RafsChunk[], uncompressed: Buffer[] }

function writeBlob (files: Buffer[], compressor: Compressor, digester: Digester): WrittenBlob {
  const parts: Uint8Array[] = []
  const writer = new BlobWriter({ compressor, digester, chunkSize, write: bytes => { parts.push(Buffer.from(bytes)) } })
  const chunks: RafsChunk[] = []
  const uncompressed: Buffer[] = []
  for (const file of files) {
    for (let offset = 0; offset < file.length; offset += chunkSize) {
      const data = file.subarray(offset, Math.min(offset + chunkSize, file.length))
      chunks.push(writer.addChunk(data))
      uncompressed.push(data)
    }
  }
  const done = writer.finish()
  const blob: RafsBlob = {
    index: 0,
    blobId: done.blobId,
    compressor,
    digester,
    chunkSize,
    chunkCount: done.chunkCount,
    compressedSize: done.compressedSize,
    uncompressedSize: done.uncompressedSize,
    meta: done.meta,
    features: 0
  }
  return { bytes: Buffer.concat(parts), blob, chunks, uncompressed }
}

/** Best of `rounds` runs of `fn`, in MB/s (10^6 bytes) of `bytes` processed. */
function throughput (bytes: number, fn: () => void): number {
  let best = Infinity
  for (let i = 0; i < rounds; i++) {
    const start = process.hrtime.bigint()
    fn()
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9)
  }
  return bytes / best / 1e6
}

const files = await collectFiles(values.dir, budget)
const rows = []
for (const compressor of ['none', 'lz4_block', 'zstd'] as Compressor[]) {
  for (const digester of ['sha256', 'blake3'] as Digester[]) {
    const { bytes, blob, chunks, uncompressed } = writeBlob(files, compressor, digester)
    const total = uncompressed.reduce((sum, c) => sum + c.length, 0)
    const shoal = throughput(total, () => {
      for (const chunk of chunks) {
        decodeChunk(bytes.subarray(chunk.compressedOffset, chunk.compressedOffset + chunk.compressedSize), chunk, blob)
      }
    })
    const floor = throughput(total, () => {
      for (const data of uncompressed) createHash('sha256').update(data).digest()
    })
    rows.push({
      compressor,
      digester,
      chunks: chunks.length,
      uncompressedBytes: total,
      blobBytes: bytes.length,
      readMBps: Math.round(shoal),
      sha256MBps: Math.round(floor),
      ratio: Number((shoal / floor).toFixed(2))
    })
  }
}

const table = [
  '| compressor | digester | chunks | data MB | blob MB | read + verify MB/s | sha256 MB/s | ratio |',
  '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(r => `| ${r.compressor} | ${r.digester} | ${r.chunks} | ${(r.uncompressedBytes / 1e6).toFixed(0)} | ${(r.blobBytes / 1e6).toFixed(0)} | ${r.readMBps} | ${r.sha256MBps} | ${r.ratio} |`)
].join('\n')
console.log(`Blob read (decompress + verify) from ${values.dir}, ${files.length} files, 1 MiB chunks, best of ${rounds}, Node ${process.version}\n`)
console.log(table)
await mkdir(values.out, { recursive: true })
await writeFile(join(values.out, 'blob-read.json'), JSON.stringify({ node: process.version, dir: values.dir, rounds, rows }, null, 2) + '\n')
await writeFile(join(values.out, 'blob-read.md'), table + '\n')
