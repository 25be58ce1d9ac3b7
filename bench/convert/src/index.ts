#!/usr/bin/env node
/**
 * Conversion time of a two-layer Debian bookworm (minbase) + python3 OCI image with `shoal
 * convert` (oci: → oci:), beside the floor over the same layers: `gzip -dc LAYER | sha256sum`
 * (decompress and hash, nothing else), as a ratio; and the conversion's peak RSS from
 * /usr/bin/time -v. The source image is built once (debootstrap, then `chroot apt-get install
 * python3` as a second layer, by @shoal/bench-images) and cached under /var/tmp/shoal-bench-cache.
 *
 *   npm run build && node bench/convert/dist/index.js [--runs N] [--cache DIR]
 */
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { ImageManifest } from '@shoal/interface'
import { ociLayout } from '@shoal/oci-layout'
import { buildImage, DEFAULT_CACHE_DIR, python3 } from '@shoal/bench-images'

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const shoalBin = join(repoRoot, 'packages', 'cli', 'bin', 'shoal')

interface Ran { stdout: string, stderr: string, seconds: number }

async function run (command: string, args: string[], options: { shell?: boolean, timeoutMs?: number } = {}): Promise<Ran> {
  const started = process.hrtime.bigint()
  return await new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: options.timeoutMs ?? 30 * 60_000, shell: options.shell ?? false })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-256 * 1024) })
    child.on('error', reject)
    child.on('close', code => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      if (code === 0) resolve({ stdout, stderr, seconds })
      else reject(new Error(`${command} ${args.join(' ')} exited with ${String(code)}: ${stderr.slice(-2000)}`))
    })
  })
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, cache: { type: 'string', default: DEFAULT_CACHE_DIR } } })
  const runs = Math.max(1, Math.min(20, Number(values.runs)))
  const cache = values.cache as string
  await mkdir(cache, { recursive: true })
  const { layout, tag: TAG } = await buildImage(python3, { cacheDir: cache, onProgress: line => { console.error(line) } })
  const store = ociLayout({ path: layout })
  const manifest = (await store.getManifest(TAG)).json as ImageManifest
  const layerPaths = manifest.layers.map(l => join(layout, 'blobs', 'sha256', l.digest.slice('sha256:'.length)))
  const compressed = manifest.layers.reduce((sum, l) => sum + l.size, 0)

  // The floor: decompress and hash every layer, as fast as the system tools go.
  const floor: number[] = []
  for (let i = 0; i < runs; i++) {
    let seconds = 0
    for (const path of layerPaths) seconds += (await run('sh', ['-c', `gzip -dc '${path}' | sha256sum`])).seconds
    floor.push(seconds)
  }
  let uncompressed = 0
  for (const path of layerPaths) uncompressed += Number((await run('sh', ['-c', `gzip -dc '${path}' | wc -c`])).stdout.trim())

  const convert: number[] = []
  const rss: number[] = []
  let summary: any
  for (let i = 0; i < runs; i++) {
    const out = await mkdtemp(join(tmpdir(), 'shoal-bench-convert-'))
    try {
      const ran = await run('/usr/bin/time', ['-v', shoalBin, 'convert', `oci:${layout}:${TAG}`, `oci:${out}:${TAG}-nydus`, '--json'])
      convert.push(ran.seconds)
      const peak = /Maximum resident set size \(kbytes\): (\d+)/.exec(ran.stderr)
      if (peak != null) rss.push(Number(peak[1]) * 1024)
      summary = JSON.parse(ran.stdout)
    } finally {
      await rm(out, { recursive: true, force: true })
    }
  }

  const result = {
    image: `oci:${layout}:${TAG}`,
    layers: manifest.layers.length,
    compressedBytes: compressed,
    uncompressedBytes: uncompressed,
    runs,
    convertSeconds: median(convert),
    convertSecondsAll: convert,
    floorSeconds: median(floor),
    floorSecondsAll: floor,
    ratio: median(convert) / median(floor),
    peakRssBytes: Math.max(...rss),
    nydus: {
      chunks: summary.totals.chunks,
      newChunks: summary.totals.newChunks,
      dedupChunks: summary.totals.dedupChunks,
      blobBytes: summary.totals.blobBytes,
      bootstrapBytes: summary.bootstrap.bootstrapSize,
      inodes: summary.bootstrap.inodes
    },
    command: `node bench/convert/dist/index.js --runs ${runs}`,
    node: process.version,
    date: new Date().toISOString()
  }
  const mb = (n: number): string => (n / 1e6).toFixed(1)
  const rows = [
    ['what', 'seconds (median)', 'MB/s of uncompressed layers'],
    ['shoal convert oci: → oci: (zstd, sha256, 1 MiB chunks)', result.convertSeconds.toFixed(2), mb(uncompressed / result.convertSeconds)],
    ['gzip -dc LAYER | sha256sum (the floor)', result.floorSeconds.toFixed(2), mb(uncompressed / result.floorSeconds)],
    ['ratio convert / floor', result.ratio.toFixed(2), '']
  ]
  const md = [
    '# Conversion benchmark',
    '',
    `Image: Debian bookworm minbase + python3, ${result.layers} layers, ${mb(compressed)} MB gzip, ${mb(uncompressed)} MB uncompressed; ${runs} runs each.`,
    '',
    '| ' + rows[0].join(' | ') + ' |',
    '| --- | ---: | ---: |',
    ...rows.slice(1).map(r => '| ' + r.map(c => c.replace(/\|/g, '\\|')).join(' | ') + ' |'),
    '',
    `Peak RSS of the conversion: ${mb(result.peakRssBytes)} MB. Nydus image: ${result.nydus.chunks} chunks (${result.nydus.dedupChunks} deduplicated), ` +
      `${mb(result.nydus.blobBytes)} MB of blobs, bootstrap ${mb(result.nydus.bootstrapBytes)} MB for ${result.nydus.inodes} inodes.`,
    '',
    `Command: \`${result.command}\` (${result.node}, ${result.date}).`,
    ''
  ].join('\n')
  const results = join(repoRoot, 'bench', 'results')
  await mkdir(results, { recursive: true })
  await writeFile(join(results, 'convert.json'), JSON.stringify(result, null, 2) + '\n')
  await writeFile(join(results, 'convert.md'), md)
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i])).join('  '))
  console.log(`peak RSS ${mb(result.peakRssBytes)} MB; results in bench/results/convert.{json,md}`)
}

await main()
