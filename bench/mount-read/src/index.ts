/**
 * Sequential read of one big file (real data: files from /usr/lib, concatenated) through each mount
 * mode, beside the same read from local disk:
 *
 * - local disk, caches dropped, then again from the page cache;
 * - per mode (`fuse`, `erofs`): cold (empty chunk cache, chunks from a local blob directory,
 *   caches dropped), the same mount again (the kernel's page cache), and a fresh mount over the
 *   filled chunk cache with caches dropped (warm).
 *
 * The mount is served by serve.js in a process of its own (node flags such as --cpu-prof pass
 * through --node-arg); the reader is `dd bs=1M`. Beside wall-clock MB/s each row gives the CPU
 * seconds the serving process spent, which a loaded machine disturbs far less.
 *
 * The input (the file, its image) is kept in --work for the next run, beside the bench images;
 * the chunk caches and mount work dirs are removed at the end.
 *
 * Usage: node bench/mount-read/dist/index.js [--work DIR] [--mib 256] [--source /usr/lib]
 *          [--modes fuse,erofs] [--runs 1] [--out bench/results] [--label NAME]
 *          [--serve-script FILE] [--node-arg FLAG]…
 * Needs root (drop_caches, erofs mode), /dev/fuse, libfuse2.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const repo = resolve(here, '../../..')

const { values } = parseArgs({
  options: {
    work: { type: 'string', default: '/var/tmp/shoal-bench-cache/mount-read' },
    mib: { type: 'string', default: '256' },
    source: { type: 'string', default: '/usr/lib' },
    modes: { type: 'string', default: 'fuse,erofs' },
    runs: { type: 'string', default: '1' },
    out: { type: 'string', default: join(repo, 'bench/results') },
    label: { type: 'string', default: 'mount-read' },
    'serve-script': { type: 'string', default: join(here, 'serve.js') },
    'node-arg': { type: 'string', multiple: true, default: [] }
  }
})

const work = resolve(values.work)
const fileBytes = Number(values.mib) * 2 ** 20
const runs = Math.max(1, Math.min(20, Number(values.runs)))
const modes = values.modes.split(',').filter(m => m === 'fuse' || m === 'erofs')
const treeDir = join(work, 'tree')
const bigFile = join(treeDir, 'big.bin')
const bootstrap = join(work, 'image.boot')
const blobDir = join(work, 'blobs')
const CLK_TCK = 100

interface Sample { wallSeconds: number, mbPerSecond: number, serveCpuSeconds?: number }
interface Row { what: string, mode: string, state: string, samples: Sample[], bytesBySource?: Record<string, number> }

async function exec (command: string, args: string[]): Promise<string> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', d => { out += String(d) })
  child.stderr.on('data', d => { err += String(d) })
  const [code] = await once(child, 'exit') as [number | null]
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${code}: ${err.trim()}`)
  return out
}

/** Regular files under `dir`, sorted by path, concatenated into `target` until `bytes`. */
async function makeBigFile (dir: string, target: string, bytes: number): Promise<void> {
  await mkdir(dirname(target), { recursive: true })
  const paths = (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter(e => e.isFile())
    .map(e => join(e.parentPath, e.name))
    .sort()
  const out = createWriteStream(target)
  let written = 0
  for (const path of paths) {
    if (written >= bytes) break
    const data = await readFile(path).catch(() => undefined)
    if (data == null || data.length === 0) continue
    const part = data.subarray(0, Math.min(data.length, bytes - written))
    if (!out.write(part)) await once(out, 'drain')
    written += part.length
  }
  out.end()
  await once(out, 'finish')
  if (written < bytes) throw new Error(`${dir} holds only ${written} bytes of regular files, wanted ${bytes}`)
}

async function prepare (): Promise<void> {
  const have = await stat(bigFile).then(s => s.size === fileBytes, () => false) &&
    await stat(bootstrap).then(() => true, () => false)
  if (have) return
  await rm(work, { recursive: true, force: true })
  await makeBigFile(values.source, bigFile, fileBytes)
  await exec(join(repo, 'packages/cli/bin/shoal'), ['build', treeDir, '--bootstrap', bootstrap, '--blob-dir', blobDir])
}

async function dropCaches (): Promise<void> {
  await exec('sync', [])
  const handle = await open('/proc/sys/vm/drop_caches', 'w')
  try { await handle.write('3\n') } finally { await handle.close() }
}

async function cpuSeconds (pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).replace(/^.*\) /s, '').split(' ')
  // utime and stime are fields 14 and 15 of stat(5); after the ") " they are at 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

/** dd of the whole file; wall seconds, and the serving process's CPU seconds when a pid is given. */
async function timedRead (path: string, servePid?: number): Promise<Sample> {
  const cpuBefore = servePid != null ? await cpuSeconds(servePid) : 0
  const started = performance.now()
  await exec('dd', [`if=${path}`, 'of=/dev/null', 'bs=1M'])
  const wallSeconds = (performance.now() - started) / 1000
  const sample: Sample = { wallSeconds, mbPerSecond: fileBytes / wallSeconds / 1e6 }
  if (servePid != null) sample.serveCpuSeconds = await cpuSeconds(servePid) - cpuBefore
  return sample
}

interface Server { pid: number, mode: string, stop: () => Promise<any> }

async function serve (mode: string, cacheDir: string): Promise<Server> {
  const mountpoint = join(work, 'mnt')
  const workDir = join(work, `work-${mode}`)
  await mkdir(mountpoint, { recursive: true })
  await mkdir(workDir, { recursive: true })
  const child = spawn(process.execPath, [...values['node-arg'], values['serve-script'], '--mode', mode, '--bootstrap', bootstrap,
    '--blob-dir', blobDir, '--mountpoint', mountpoint, '--work-dir', workDir, '--cache-dir', cacheDir],
  { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines: any[] = []
  let buffered = ''
  let wake: (() => void) | undefined
  child.stdout.on('data', d => {
    buffered += String(d)
    let nl: number
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buffered.slice(0, nl)))
      buffered = buffered.slice(nl + 1)
      wake?.()
    }
  })
  const exited = once(child, 'exit')
  const next = async (what: string): Promise<any> => {
    const deadline = Date.now() + 60_000
    // Bounded by the deadline: each pass waits for a line, the exit, or a tick.
    while (lines.length === 0) {
      if (child.exitCode != null || Date.now() > deadline) throw new Error(`serve (${mode}) gave no ${what} line (exit ${child.exitCode})`)
      await Promise.race([new Promise<void>(resolve => { wake = resolve }), exited, new Promise(resolve => setTimeout(resolve, 500))])
    }
    return lines.shift()
  }
  const ready = await next('ready')
  if (ready.mode !== mode) {
    child.kill('SIGTERM')
    await exited
    throw new Error(`asked for mode ${mode}, the mount is ${ready.mode}: ${ready.fallbackReason}`)
  }
  return {
    pid: child.pid!,
    mode,
    stop: async () => {
      child.kill('SIGTERM')
      const stats = await next('stats')
      await exited
      return stats.stats
    }
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

async function main (): Promise<void> {
  await prepare()
  try {
    await measure()
  } finally {
    for (const mode of modes) {
      await rm(join(work, `cache-${mode}`), { recursive: true, force: true })
      await rm(join(work, `work-${mode}`), { recursive: true, force: true })
    }
  }
}

async function measure (): Promise<void> {
  const rows: Row[] = []
  const row = (what: string, mode: string, state: string): Row => {
    let r = rows.find(x => x.what === what && x.mode === mode && x.state === state)
    if (r == null) { r = { what, mode, state, samples: [] }; rows.push(r) }
    return r
  }
  for (let run = 0; run < runs; run++) {
    await dropCaches()
    row('local disk', '-', 'cold').samples.push(await timedRead(bigFile))
    row('local disk', '-', 'page cache').samples.push(await timedRead(bigFile))
    for (const mode of modes) {
      const cacheDir = join(work, `cache-${mode}`)
      await rm(cacheDir, { recursive: true, force: true })
      const path = join(work, 'mnt', 'big.bin')
      let server = await serve(mode, cacheDir)
      try {
        await dropCaches()
        row('mount', mode, 'cold (blob dir)').samples.push(await timedRead(path, server.pid))
        row('mount', mode, 'page cache').samples.push(await timedRead(path, server.pid))
      } finally {
        row('mount', mode, 'cold (blob dir)').bytesBySource = (await server.stop()).device.bytesBySource
      }
      server = await serve(mode, cacheDir)
      try {
        await dropCaches()
        row('mount', mode, 'warm (chunk cache)').samples.push(await timedRead(path, server.pid))
      } finally {
        row('mount', mode, 'warm (chunk cache)').bytesBySource = (await server.stop()).device.bytesBySource
      }
    }
  }
  const localCold = median(row('local disk', '-', 'cold').samples.map(s => s.mbPerSecond))
  const localCached = median(row('local disk', '-', 'page cache').samples.map(s => s.mbPerSecond))
  const table = rows.map(r => {
    const mbps = median(r.samples.map(s => s.mbPerSecond))
    const cpu = r.samples[0].serveCpuSeconds != null ? median(r.samples.map(s => s.serveCpuSeconds!)) : undefined
    const base = r.state === 'page cache' ? localCached : localCold
    return { what: r.what, mode: r.mode, state: r.state, mbPerSecond: mbps, ratioToLocal: mbps / base, serveCpuSeconds: cpu, runs: r.samples.length, samples: r.samples, bytesBySource: r.bytesBySource }
  })
  const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')
  const result = {
    label: values.label,
    date: new Date().toISOString(),
    fileBytes,
    source: values.source,
    command: `node ${process.argv.slice(1).map(a => a.replace(repo + '/', '')).join(' ')}`,
    loadAverage: load,
    nodeArgs: values['node-arg'],
    rows: table
  }
  const md = [
    `Sequential read (dd bs=1M) of a ${values.mib} MiB file (files from ${values.source}, concatenated), ` +
      `median of ${runs} run(s); ratio: to local disk cold (page-cache rows: to local page cache). Load average at the end: ${load}.`,
    '',
    '| read | mode | state | MB/s | ratio to local | serve CPU s | bytes by source |',
    '| --- | --- | --- | ---: | ---: | ---: | --- |',
    ...table.map(r => `| ${r.what} | ${r.mode} | ${r.state} | ${r.mbPerSecond.toFixed(0)} | ${r.ratioToLocal.toFixed(3)} | ${r.serveCpuSeconds?.toFixed(2) ?? '-'} | ` +
      `${Object.entries(r.bytesBySource ?? {}).map(([k, v]) => `${k} ${(v / 2 ** 20).toFixed(0)} MiB`).join(', ')} |`),
    '',
    `Command: \`${result.command}\``,
    ''
  ].join('\n')
  await mkdir(values.out, { recursive: true })
  await writeFile(join(values.out, `${values.label}.json`), `${JSON.stringify(result, null, 2)}\n`)
  await writeFile(join(values.out, `${values.label}.md`), md)
  process.stdout.write(md)
}

main().catch((err: any) => {
  process.stderr.write(`mount-read: ${err?.stack ?? err}\n`)
  process.exitCode = 1
})
