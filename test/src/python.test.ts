/**
 * The python3 image end to end (Debian bookworm minbase + python3, built once by
 * @shoal/bench-images), pushed to a real registry with skopeo and converted there by `shoal convert`;
 * every byte the registry sends is counted by a proxy in front of it.
 *
 * - `shoal run … -- python3 -c 'print(42)'` from a cold cache, in both mount modes, fetches under a
 *   third of the image's blob bytes (as `--verbose` reports and as the proxy counts); a second run
 *   fetches no chunk.
 * - The `shoal mount` server killed with SIGKILL in the middle of reads: every chunk its cache holds
 *   verifies against the bootstrap, and a new mount over the same cache shows the tree of
 *   `umoci unpack` of the source, byte for byte.
 * - A small `--cache-size` holds on disk while several images are read one after another.
 * - A seed and four host daemons: after a preheat, four python containers start at once and the
 *   registry sends no more chunk bytes than the seed fetched.
 *
 * Mounts are looked at from child processes only, and everything (servers by PID, mounts, loop
 * devices, temp dirs) is torn down even when a test fails.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { buildImage, DEFAULT_CACHE_DIR, python3, type BuiltImage } from '@shoal/bench-images'
import { openChunkCache } from '@shoal/chunk-cache'
import { openNydusImage } from '@shoal/convert'
import { chunkDigest, digestsEqual, toHex, walk, type RafsChunk, type RafsImage } from '@shoal/rafs'
import { parseImageReference, registry as registryClient, registryImageStore } from '@shoal/registry'
import type { RunningRegistry } from '@shoal/registry/test/registry-server'
import {
  buildTestImage, Cleanup, startCountingProxy, startDaemon, startRegistryWithCleanup, tempDir, type CountingProxy, type TestImage
} from './daemon-harness.js'
import { shoal } from './helpers.js'
import { run } from './oci-images.js'

const MiB = 2 ** 20
/**
 * Mount mode of the four hosts' containers: erofs, the default mode (each host reads the same
 * ~10 MB as in fuse mode); PY_HOST_MODE=fuse runs the same test in fuse mode.
 */
const HOST_MODE = process.env.PY_HOST_MODE === 'fuse' ? 'fuse' : 'erofs'

function have (command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0
}

function cannotRun (): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root'
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse'
  for (const tool of ['runc', 'umoci', 'skopeo', 'docker-registry', 'losetup']) if (!have(tool)) return `${tool} is not installed`
  const cached = existsSync(join(DEFAULT_CACHE_DIR, python3.layoutName, 'index.json'))
  if (!cached && !have('debootstrap')) return 'the python3 image is not cached and debootstrap is not installed to build it'
  return undefined
}

const skip = cannotRun()

/** A program run as a child (never synchronously: the counting proxy lives in this process), bounded. */
async function runChild (command: string, args: string[], timeoutMs: number): Promise<{ code: number | string, stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-20_000) })
    child.on('error', reject)
    child.on('close', (code, signal) => { resolve({ code: code ?? signal ?? 'unknown', stdout, stderr }) })
  })
}

/**
 * Every entry of a tree (type, mode, owner, size of files, link targets), then the sha256 of every
 * regular file, as one text; read in a child process. Directory sizes and times are left out: they
 * differ between filesystems.
 */
async function describeTree (root: string, timeoutMs = 180_000): Promise<string> {
  const script = 'cd "$1" && find . -mindepth 1 \\( -type f -printf "f %m %U:%G %s %p\\n" \\) -o \\( -type l -printf "l %U:%G %p -> %l\\n" \\) ' +
    '-o -printf "%y %m %U:%G %p\\n" | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum'
  const described = await runChild('bash', ['-o', 'pipefail', '-c', script, 'bash', root], timeoutMs)
  if (described.code !== 0) throw new Error(`reading the tree at ${root} failed (${described.code}): ${described.stderr.slice(-2000)}`)
  return described.stdout
}

/** Bytes a directory takes on disk (allocated blocks: a sparse blob file counts only what it holds). */
async function diskUsage (dir: string): Promise<number> {
  const du = await runChild('du', ['-s', '-B1', dir], 30_000)
  if (du.code !== 0) return 0
  return Number(du.stdout.split('\t')[0])
}

/** Mounts whose target, and loop devices whose backing file, lie under `dir`. */
async function leftoversUnder (dir: string): Promise<string[]> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map(l => l.split(' ')[1] ?? '').filter(t => t.startsWith(`${dir}/`))
  const loops: string[] = []
  for (const device of (await readdir('/sys/block').catch(() => [] as string[])).filter(n => /^loop\d+$/.test(n))) {
    const backing = await readFile(`/sys/block/${device}/loop/backing_file`, 'utf8').catch(() => '')
    if (backing.startsWith(`${dir}/`)) loops.push(`/dev/${device} (${backing.trim()})`)
  }
  return [...mounts, ...loops]
}

/** Last resort after a failure: unmount (lazily) and detach whatever is left under `dir`. */
async function forceClear (dir: string): Promise<void> {
  for (const device of (await readdir('/sys/block').catch(() => [] as string[])).filter(n => /^loop\d+$/.test(n))) {
    const backing = await readFile(`/sys/block/${device}/loop/backing_file`, 'utf8').catch(() => '')
    if (backing.startsWith(`${dir}/`)) await runChild('losetup', ['-d', `/dev/${device}`], 10_000)
  }
  const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map(l => l.split(' ')[1] ?? '').filter(t => t.startsWith(`${dir}/`))
  for (const target of mounts.reverse()) await runChild('umount', ['-l', target], 10_000)
}

/** `shoal mount` in the background; the server's PID, killed at cleanup (by PID) and unmounted. */
async function mountInBackground (reference: string, mountpoint: string, args: string[], cleanup: Cleanup): Promise<number> {
  await mkdir(mountpoint, { recursive: true })
  const mounted = await shoal(['mount', ...args, reference, mountpoint], { timeoutMs: 150_000 })
  assert.equal(mounted.code, 0, mounted.stderr)
  const pid = Number(/served by process (\d+)/.exec(mounted.stdout)?.[1])
  assert.ok(Number.isSafeInteger(pid) && pid > 0, mounted.stdout)
  cleanup.add(`mount server ${pid} at ${mountpoint}`, async () => {
    try { process.kill(pid, 'SIGKILL') } catch {}
    await shoal(['umount', mountpoint], { timeoutMs: 60_000 })
  })
  return pid
}

/** The first `SOURCE N bytes` of a `--stats` / `--verbose` line. */
function bytesFrom (stderr: string, source: string): number {
  return Number(new RegExp(`\\b${source} (\\d+) bytes`).exec(stderr)?.[1] ?? 0)
}

describe('the python3 image in a real registry', { skip }, () => {
  const shared = new Cleanup()
  let work: string
  let registry: RunningRegistry
  let proxy: CountingProxy
  let source: BuiltImage
  /** docker://PROXY/debian:py-nydus */
  let reference: string
  let image: RafsImage
  /** Data blobs (hex digest → size in the registry) and the bootstrap layer. */
  const dataBlobs = new Map<string, number>()
  let bootstrapLayer: string
  let blobTotal = 0
  /** Chunk bytes the proxy counted for each mode's cold run. */
  const coldFetched = new Map<string, number>()
  /** The source tree as `umoci unpack` makes it, described once when a test needs it. */
  let sourceTree: Promise<string> | undefined

  const dataBlobBytes = (): number => [...dataBlobs.keys()].reduce((sum, blob) => sum + (proxy.blobBytes.get(blob) ?? 0), 0)
  const describeSource = async (): Promise<string> => {
    sourceTree ??= (async () => {
      const bundle = join(work, 'source-bundle')
      await run('umoci', ['unpack', '--image', `${source.layout}:${source.tag}`, bundle], { timeoutMs: 180_000 })
      return await describeTree(join(bundle, 'rootfs'))
    })()
    return await sourceTree
  }

  before(async () => {
    const started = performance.now()
    source = await buildImage(python3, { signal: AbortSignal.timeout(15 * 60_000), onProgress: line => { console.error(`python.test: ${line}`) } })
    const builtMs = performance.now() - started
    work = await tempDir(shared, 'shoal-python-e2e-')
    // Mount state files of these mounts, away from the host's /run/shoal (the CLI children inherit it).
    process.env.SHOAL_RUN_DIR = join(work, 'run')
    shared.add('leftover mounts', async () => { await forceClear(work) })
    registry = await startRegistryWithCleanup(shared)
    proxy = await startCountingProxy(registry.registry, shared)
    await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${source.layout}:${source.tag}`, `docker://${registry.registry}/debian:py`], { timeoutMs: 180_000 })
    const pushedMs = performance.now() - started
    // Converted at the registry itself (not through the proxy): the proxy counts only what mounts fetch.
    const converted = await shoal(['convert', '--json', `docker://${registry.registry}/debian:py`, `docker://${registry.registry}/debian:py-nydus`], { timeoutMs: 300_000 })
    assert.equal(converted.code, 0, converted.stderr)
    const convertedMs = performance.now() - started
    reference = `docker://${proxy.address}/debian:py-nydus`
    const parsed = parseImageReference(`docker://${registry.registry}/debian:py-nydus`)
    const stored = await openNydusImage({ store: registryImageStore(registryClient(), parsed), reference: 'py-nydus' }, { signal: AbortSignal.timeout(60_000) })
    image = stored.image
    bootstrapLayer = stored.bootstrapLayer.digest.slice('sha256:'.length)
    for (const layer of stored.manifest.manifest.layers) {
      const hex = layer.digest.slice('sha256:'.length)
      if (hex !== bootstrapLayer) dataBlobs.set(hex, layer.size)
    }
    blobTotal = [...dataBlobs.values()].reduce((a, b) => a + b, 0)
    assert.equal(dataBlobs.size, 2, 'one data blob per source layer')
    const uncompressed = image.blobs.reduce((sum, b) => sum + b.uncompressedSize, 0)
    console.error(`python.test: image ready (built or found in ${Math.round(builtMs / 1000)} s, pushed by ${Math.round(pushedMs / 1000)} s, ` +
      `converted by ${Math.round(convertedMs / 1000)} s): ${dataBlobs.size} data blobs of ${blobTotal} bytes (${uncompressed} uncompressed, ` +
      `${image.blobs.reduce((sum, b) => sum + b.chunkCount, 0)} chunks), bootstrap layer ${stored.bootstrapLayer.size} bytes`)
  }, { timeout: 20 * 60_000 })

  after(async () => {
    const left = work != null ? await leftoversUnder(work) : []
    await shared.run()
    assert.deepEqual(left, [], 'nothing stays mounted or attached after the tests')
  })

  for (const mode of ['fuse', 'erofs'] as const) {
    test(`mode ${mode}: python3 prints 42 from a cold cache, fetching under a third of the image's blob bytes; a second run fetches no chunk`, { timeout: 240_000 }, async (t) => {
      const cache = join(work, `run-${mode}`)
      proxy.reset()
      let started = performance.now()
      const cold = await shoal(['run', '--mode', mode, '--cache-dir', cache, '--verbose', reference, '--', 'python3', '-c', 'print(42)'], { timeoutMs: 120_000 })
      const coldMs = performance.now() - started
      assert.equal(cold.code, 0, cold.stderr)
      assert.equal(cold.stdout, '42\n')
      assert.match(cold.stderr, new RegExp(`mode ${mode}\\b`))
      const reported = bytesFrom(cold.stderr, 'registry')
      const counted = dataBlobBytes()
      t.diagnostic(`cold: ${Math.round(coldMs)} ms; shoal reports ${reported} bytes from the registry, the proxy counted ${counted} chunk bytes ` +
        `(${(100 * counted / blobTotal).toFixed(1)}% of ${blobTotal}) in ${proxy.blobRequests()} blob requests, ` +
        `plus ${proxy.manifestBytes()} manifest and ${proxy.blobBytes.get(bootstrapLayer) ?? 0} bootstrap bytes; ${cold.stderr.trim().split('\n').pop() ?? ''}`)
      assert.ok(counted > 0, 'the cold run fetched chunks from the registry')
      assert.ok(reported > 0)
      assert.ok(counted < blobTotal / 3, `the proxy counted ${counted} chunk bytes, not under a third of ${blobTotal}`)
      assert.ok(reported < blobTotal / 3, `shoal reports ${reported} bytes from the registry, not under a third of ${blobTotal}`)
      coldFetched.set(mode, counted)
      const fuseFetched = coldFetched.get('fuse')
      if (mode === 'erofs' && fuseFetched != null) {
        // EROFS reads the pages of the files python reads, as FUSE does: nothing beside them in a blob.
        assert.ok(counted <= fuseFetched * 1.1, `mode erofs fetched ${counted} chunk bytes, mode fuse ${fuseFetched}: more than a tenth over`)
      }

      proxy.reset()
      started = performance.now()
      const warm = await shoal(['run', '--mode', mode, '--cache-dir', cache, '--stats', reference, '--', 'python3', '-c', 'print(42)'], { timeoutMs: 120_000 })
      const warmMs = performance.now() - started
      assert.equal(warm.code, 0, warm.stderr)
      assert.equal(warm.stdout, '42\n')
      t.diagnostic(`warm: ${Math.round(warmMs)} ms; ${warm.stderr.trim()}; the proxy counted ${dataBlobBytes()} chunk bytes, ` +
        `${proxy.manifestBytes()} manifest and ${proxy.blobBytes.get(bootstrapLayer) ?? 0} bootstrap bytes`)
      assert.equal(dataBlobBytes(), 0, 'the second run fetched no chunk from the registry')
      assert.equal(proxy.blobBytes.get(bootstrapLayer) ?? 0, 0, 'the second run read the bootstrap layer from the cache dir')
      assert.equal(bytesFrom(warm.stderr, 'registry'), 0)
      assert.ok(bytesFrom(warm.stderr, 'cache') > 0, warm.stderr)
      assert.deepEqual(await leftoversUnder(work), [])
    })
  }

  test('the mount server killed with SIGKILL mid-read: every cached chunk verifies, and a new mount over the same cache equals umoci unpack of the source', { timeout: 600_000 }, async (t) => {
    const cleanup = new Cleanup()
    try {
      const cache = join(work, 'kill-cache')
      const mountpoint = join(work, 'mnt-kill')
      proxy.reset()
      const pid = await mountInBackground(reference, mountpoint, ['--mode', 'erofs', '--cache-dir', cache], cleanup)
      // Readers of every file in a child; the server is killed once chunks are landing in the cache.
      const reader = runChild('sh', ['-c', 'cd "$1" && find . -type f -print0 | xargs -0 cat > /dev/null', 'sh', mountpoint], 180_000)
      const data = join(cache, 'cache', 'data')
      const deadline = Date.now() + 60_000
      let cachedBefore = 0
      while (cachedBefore < 16 * MiB && Date.now() < deadline) {
        await sleep(100)
        cachedBefore = await diskUsage(data)
      }
      assert.ok(cachedBefore >= 16 * MiB, `only ${cachedBefore} bytes cached after 60 s of reads`)
      process.kill(pid, 'SIGKILL')
      const read = await reader
      const fetchedBefore = dataBlobBytes()
      t.diagnostic(`killed the server with ${cachedBefore} bytes on disk in the cache and ${fetchedBefore} chunk bytes fetched; the readers exited ${read.code}: ${read.stderr.split('\n')[0] ?? ''}`)
      assert.notEqual(read.code, 0, 'the readers saw the server die (they had not read everything)')
      const unmounted = await shoal(['umount', mountpoint], { timeoutMs: 60_000 })
      assert.equal(unmounted.code, 0, unmounted.stderr)
      assert.deepEqual(await leftoversUnder(work), [], 'umount after SIGKILL leaves no mount and no loop device')

      // Every chunk the cache lists is the chunk the bootstrap names: offset, size and digest.
      const chunksByBlob = new Map<string, Map<number, RafsChunk>>()
      walk(image.root, (_path, node) => {
        for (const chunk of node.chunks ?? []) {
          const blobId = image.blobs[chunk.blobIndex]!.blobId
          let chunks = chunksByBlob.get(blobId)
          if (chunks == null) chunksByBlob.set(blobId, chunks = new Map())
          chunks.set(chunk.index, chunk)
        }
      })
      const opened = await openChunkCache({ path: join(cache, 'cache'), maxBytes: 2 ** 40 })
      let verified = 0
      let verifiedBytes = 0
      const bad: string[] = []
      try {
        for (const blobId of opened.blobs()) {
          const blob = image.blobs.find(b => b.blobId === blobId)
          const chunks = chunksByBlob.get(blobId)
          if (blob == null || chunks == null) { bad.push(`blob ${blobId} is not the image's`); continue }
          for (const index of opened.chunks(blobId)) {
            const chunk = chunks.get(index)
            const key = opened.locate(blobId, index)
            if (chunk == null || key == null) { bad.push(`${blobId} chunk ${index}: not in the image`); continue }
            if (key.uncompressedOffset !== chunk.uncompressedOffset || key.uncompressedSize !== chunk.uncompressedSize) {
              bad.push(`${blobId} chunk ${index}: cached at ${key.uncompressedOffset}+${key.uncompressedSize}, the bootstrap says ${chunk.uncompressedOffset}+${chunk.uncompressedSize}`)
              continue
            }
            const bytes = await opened.get(key)
            if (bytes == null) { bad.push(`${blobId} chunk ${index}: listed but not readable`); continue }
            const actual = chunkDigest(bytes, blob.digester)
            if (!digestsEqual(actual, chunk.digest)) bad.push(`${blobId} chunk ${index}: digest ${toHex(actual)}, expected ${toHex(chunk.digest)}`)
            else { verified++; verifiedBytes += bytes.length }
          }
        }
      } finally {
        await opened.close()
      }
      t.diagnostic(`after the kill the cache holds ${verified} chunks (${verifiedBytes} bytes) that verify`)
      assert.deepEqual(bad, [])
      assert.ok(verified > 0 && verifiedBytes > 8 * MiB, `${verified} chunks, ${verifiedBytes} bytes verified`)

      // A new mount over the same cache: the whole tree is right, and what was cached is not fetched again.
      proxy.reset()
      const started = performance.now()
      const expected = describeSource()
      await mountInBackground(reference, mountpoint, ['--mode', 'erofs', '--cache-dir', cache], cleanup)
      const mounted = await describeTree(mountpoint)
      const readMs = performance.now() - started
      const lines = (await expected).split('\n')
      const got = mounted.split('\n')
      const differing = lines.filter(l => !got.includes(l)).slice(0, 5)
      assert.equal(got.length, lines.length, `entries differ, first missing: ${differing.join('; ')}`)
      assert.ok(mounted === await expected, `the mounted tree differs from umoci unpack: first lines missing from it: ${differing.join('; ')}`)
      const fetchedAfter = dataBlobBytes()
      t.diagnostic(`the new mount read ${lines.length} lines of tree and sums in ${Math.round(readMs)} ms (with umoci unpack beside it), fetching ${fetchedAfter} chunk bytes of ${blobTotal}`)
      assert.ok(fetchedAfter < blobTotal, 'what the killed mount cached was not fetched again')
      assert.equal((await shoal(['umount', mountpoint], { timeoutMs: 60_000 })).code, 0)
      assert.deepEqual(await leftoversUnder(work), [])
    } finally {
      await cleanup.run()
    }
  })

  test('a small --cache-size holds on disk while several images are read one after another', { timeout: 300_000 }, async (t) => {
    const cleanup = new Cleanup()
    try {
      const cap = 16 * MiB
      // The largest chunk any of these images has: the python image's 1 MiB.
      const slack = Math.max(...image.blobs.map(b => b.chunkSize))
      const cache = join(work, 'capped')
      const apps: TestImage[] = []
      for (const name of ['cap-a', 'cap-b', 'cap-c']) {
        const dir = join(work, `build-${name}`)
        await mkdir(dir)
        apps.push(await buildTestImage(registry, proxy, dir, name))
      }
      let peak = 0
      const sizes: string[] = []
      /** Runs `step` while sampling the cache's size on disk every 50 ms. */
      const sampled = async (what: string, step: () => Promise<void>): Promise<void> => {
        let done = false
        let stepPeak = 0
        const sampler = (async () => {
          while (!done) {
            stepPeak = Math.max(stepPeak, await diskUsage(join(cache, 'cache')))
            await sleep(50)
          }
        })()
        try { await step() } finally { done = true; await sampler }
        const now = await diskUsage(join(cache, 'cache'))
        stepPeak = Math.max(stepPeak, now)
        peak = Math.max(peak, stepPeak)
        sizes.push(`${what} ${now} (peak ${stepPeak})`)
      }
      const readApp = async (app: TestImage): Promise<void> => {
        const mountpoint = join(work, `mnt-${app.reference.split('/').pop()!.split(':')[0]!}`)
        await mountInBackground(app.reference, mountpoint, ['--mode', 'fuse', '--cache-dir', cache, '--cache-size', String(cap)], cleanup)
        const sums = await runChild('sh', ['-c', 'cd "$1" && find . -type f -exec sha256sum {} +', 'sh', mountpoint], 120_000)
        assert.equal(sums.code, 0, sums.stderr)
        const got = new Map(sums.stdout.trim().split('\n').map(line => [line.slice(66).replace(/^\./, ''), line.slice(0, 64)] as const))
        assert.deepEqual(got, app.files, `${app.reference}: every file's bytes`)
        assert.equal((await shoal(['umount', mountpoint], { timeoutMs: 60_000 })).code, 0)
      }
      await sampled('cap-a', async () => { await readApp(apps[0]!) })
      await sampled('python', async () => {
        const ran = await shoal(['run', '--mode', 'fuse', '--cache-dir', cache, '--cache-size', String(cap), '--stats', reference, '--', 'python3', '-c', 'print(42)'], { timeoutMs: 120_000 })
        assert.equal(ran.code, 0, ran.stderr)
        assert.equal(ran.stdout, '42\n')
      })
      await sampled('cap-b', async () => { await readApp(apps[1]!) })
      await sampled('cap-c', async () => { await readApp(apps[2]!) })
      t.diagnostic(`cap ${cap} + ${slack} slack; cache dir on disk after each image: ${sizes.join(', ')}`)
      assert.ok(peak <= cap + slack, `the cache took ${peak} bytes on disk, over ${cap} + ${slack}`)
      // The cap was what kept it there: the first image's blob is gone, the last one's is held.
      const opened = await openChunkCache({ path: join(cache, 'cache'), maxBytes: 2 ** 40 })
      try {
        const held = opened.blobs()
        t.diagnostic(`blobs held at the end: ${held.length}, ${opened.stats().bytes} bytes of chunks`)
        for (const blob of apps[0]!.dataBlobs) assert.ok(!held.includes(blob), 'the first image was evicted')
        for (const blob of apps[2]!.dataBlobs) assert.ok(held.includes(blob), 'the last image is held')
      } finally {
        await opened.close()
      }
    } finally {
      await cleanup.run()
    }
  })

  test('after a preheat on the seed, four hosts start the python container at once; the registry sends no chunk bytes beyond what the seed fetched', { timeout: 300_000 }, async (t) => {
    const cleanup = new Cleanup()
    try {
      const hostConfig = join(work, 'host.json')
      // Six daemons and four containers share two cores: give a DHT lookup 3 s, and a peer 5 s to answer.
      await writeFile(hostConfig, JSON.stringify({ providerTimeout: 3000, bitmapTimeout: 5000 }))
      const seed = await startDaemon('py-seed', { stateDir: join(work, 'py-seed'), args: ['--seed'] }, cleanup)
      proxy.reset()
      let started = performance.now()
      const preheat = await seed.client.preheat(reference, { signal: AbortSignal.timeout(180_000) })
      const preheatMs = performance.now() - started
      const seedFetched = dataBlobBytes()
      t.diagnostic(`preheat: ${preheat.chunks} chunks in ${Math.round(preheatMs)} ms; the proxy counted ${seedFetched} chunk bytes of ${blobTotal}`)
      assert.ok(seedFetched > 0)

      const hosts = await Promise.all([1, 2, 3, 4].map(async i => await startDaemon(`py-host${i}`, {
        stateDir: join(work, `py-host${i}`),
        args: ['--config', hostConfig, '--bootstrap', seed.addresses[0]!]
      }, cleanup)))
      started = performance.now()
      const runs = await Promise.all(hosts.map(async host => {
        const began = performance.now()
        const ran = await shoal(['run', '--daemon', host.socket, '--mode', HOST_MODE, '--cache-dir', join(host.stateDir, 'containers'), '--stats', reference,
          '--', 'python3', '-c', 'print(42)'], { timeoutMs: 180_000 })
        return { ...ran, ms: performance.now() - began }
      }))
      const allMs = performance.now() - started
      for (const [i, ran] of runs.entries()) {
        assert.equal(ran.code, 0, `host ${i + 1}: ${ran.stderr}\n${hosts[i]!.log().slice(-3000)}`)
        assert.equal(ran.stdout, '42\n', `host ${i + 1}`)
      }
      const statuses = await Promise.all(hosts.map(async host => await host.status()))
      const hostsFromRegistry = statuses.reduce((sum, s) => sum + (s.bytesBySource.registry ?? 0), 0)
      t.diagnostic(`4 python containers at once in ${Math.round(allMs)} ms (each ${runs.map(r => Math.round(r.ms)).join(', ')} ms); ` +
        `the registry sent ${dataBlobBytes()} chunk bytes in all (the seed fetched ${seedFetched}); ` +
        `hosts got ${statuses.map(s => s.bytesBySource.peers ?? 0).join(', ')} bytes from peers and ${hostsFromRegistry} from the registry; ` +
        `the seed served ${(await seed.status()).served.bytes}`)
      for (const [i, s] of statuses.entries()) t.diagnostic(`host ${i + 1}: ${JSON.stringify({ bytes: s.bytesBySource, fetching: s.fetching, errors: s.errors })}`)
      assert.ok(dataBlobBytes() <= seedFetched, `the registry sent ${dataBlobBytes()} chunk bytes, the seed fetched ${seedFetched}`)
      assert.equal(hostsFromRegistry, 0)
      for (const [i, s] of statuses.entries()) assert.ok((s.bytesBySource.peers ?? 0) > 0, `host ${i + 1} got bytes from peers`)
      assert.deepEqual((await Promise.all(hosts.map(async host => await host.client.mounts()))).flat(), [], 'every mount is gone after its container')
    } finally {
      await cleanup.run()
    }
  })
})
