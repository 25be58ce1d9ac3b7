/**
 * Many `shoal daemon` processes on loopback for end-to-end tests: a real registry behind a
 * counting proxy (bytes served per blob, so a test can say what the registry sent), a small image
 * with many chunks converted into it, and daemons started, stopped and killed by PID. Everything a
 * test starts is registered in a `Cleanup` and torn down even when the test fails.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { createServer, request, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { daemonClient, type DaemonClient, type DaemonStatus } from '@shoal/daemon'
import { startRegistry, type RunningRegistry } from '@shoal/registry/test/registry-server'
import { repoRoot, shoal } from './helpers.js'
import { run } from './oci-images.js'

const shoalBin = join(repoRoot, 'packages', 'cli', 'bin', 'shoal')

/** Teardown steps run in reverse order, each bounded and each allowed to fail. */
export class Cleanup {
  private readonly steps: Array<{ what: string, fn: () => Promise<void> }> = []
  add (what: string, fn: () => Promise<void>): void { this.steps.push({ what, fn }) }
  async run (): Promise<void> {
    for (const step of this.steps.reverse()) {
      await Promise.race([step.fn().catch(err => { console.error(`cleanup ${step.what}: ${err?.message}`) }), sleep(15_000)])
    }
    this.steps.length = 0
  }
}

export async function tempDir (cleanup: Cleanup, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  cleanup.add(`rm ${dir}`, async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

/** Bytes the registry sent, counted by a proxy in front of it. */
export interface CountingProxy {
  /** `127.0.0.1:PORT`, for references the daemons use. */
  address: string
  /** Response body bytes of GET .../blobs/sha256:HEX, by blob hex digest. */
  blobBytes: Map<string, number>
  /** Response body bytes of manifests. */
  manifestBytes: () => number
  /** Blob GET requests seen. */
  blobRequests: () => number
  reset: () => void
}

export async function startCountingProxy (target: string, cleanup: Cleanup): Promise<CountingProxy> {
  const blobBytes = new Map<string, number>()
  let manifestBytes = 0
  let blobRequests = 0
  const [targetHost, targetPort] = target.split(':')
  const server: Server = createServer((req, res) => {
    const blob = /\/blobs\/sha256:([0-9a-f]{64})$/.exec((req.url ?? '').split('?')[0]!)?.[1]
    const isManifest = (req.url ?? '').includes('/manifests/')
    if (blob != null && req.method === 'GET') blobRequests++
    const upstream = request({ host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.on('data', (part: Buffer) => {
        if (req.method === 'GET' && blob != null) blobBytes.set(blob, (blobBytes.get(blob) ?? 0) + part.length)
        else if (req.method === 'GET' && isManifest) manifestBytes += part.length
      })
      up.pipe(res)
    })
    upstream.on('error', () => { res.destroy() })
    req.pipe(upstream)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  cleanup.add('proxy', async () => {
    server.closeAllConnections()
    await new Promise<void>(resolve => { server.close(() => { resolve() }) })
  })
  return {
    address: `127.0.0.1:${port}`,
    blobBytes,
    manifestBytes: () => manifestBytes,
    blobRequests: () => blobRequests,
    reset: () => { blobBytes.clear(); manifestBytes = 0; blobRequests = 0 }
  }
}

export interface TestImage {
  /** Through the counting proxy. */
  reference: string
  /** Image path → sha256 hex of its bytes, for every regular file. */
  files: Map<string, string>
  /** The Nydus data blobs (hex), and the bootstrap layer's digest. */
  dataBlobs: string[]
  bootstrapLayer: string
}

function pseudoRandom (size: number, seed: string): Buffer {
  const out = Buffer.alloc(size)
  let block = createHash('sha256').update(seed).digest()
  for (let offset = 0; offset < size; offset += block.length) {
    block.copy(out, offset)
    block = createHash('sha256').update(block).digest()
  }
  return out
}

/**
 * A busybox image with a few MiB of incompressible data, in 256 KiB chunks (about 40 of them, so
 * several peers share the work), converted into the registry as `NAME:nydus`; read back through
 * the proxy. `variant` seeds the data (default: the name), so one tag can be pushed again with
 * other contents.
 */
export async function buildTestImage (registry: RunningRegistry, proxy: CountingProxy, work: string, name = 'app', variant = name): Promise<TestImage> {
  const layout = join(work, 'oci')
  const bundle = join(work, 'bundle')
  await run('umoci', ['init', '--layout', layout])
  await run('umoci', ['new', '--image', `${layout}:src`])
  await run('umoci', ['unpack', '--image', `${layout}:src`, bundle])
  const rootfs = join(bundle, 'rootfs')
  await mkdir(join(rootfs, 'bin'), { recursive: true })
  await mkdir(join(rootfs, 'etc'), { recursive: true })
  await mkdir(join(rootfs, 'data', 'small'), { recursive: true })
  await copyFile('/bin/busybox', join(rootfs, 'bin', 'busybox'))
  await chmod(join(rootfs, 'bin', 'busybox'), 0o755)
  for (const applet of ['sh', 'cat', 'sha256sum']) await symlink('busybox', join(rootfs, 'bin', applet))
  await writeFile(join(rootfs, 'etc', 'motd'), 'hello from the swarm\n')
  await writeFile(join(rootfs, 'data', 'random-5m'), pseudoRandom(5 * 1024 * 1024 + 4321, `${variant}-a`))
  await writeFile(join(rootfs, 'data', 'random-3m'), pseudoRandom(3 * 1024 * 1024 + 17, `${variant}-b`))
  for (let i = 0; i < 20; i++) await writeFile(join(rootfs, 'data', 'small', `f${i}`), pseudoRandom(1000 + i * 997, `${variant}-s${i}`))
  const files = new Map<string, string>()
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) await walk(path, `${prefix}/${entry.name}`)
      else if (entry.isFile()) files.set(`${prefix}/${entry.name}`, createHash('sha256').update(await readFile(path)).digest('hex'))
    }
  }
  await walk(rootfs, '')
  await run('umoci', ['repack', '--image', `${layout}:src`, bundle])
  await rm(bundle, { recursive: true, force: true })
  const target = `docker://${registry.registry}/${name}:nydus`
  const converted = await shoal(['convert', '--chunk-size', '0x40000', '--json', `oci:${layout}:src`, target])
  if (converted.code !== 0) throw new Error(`shoal convert failed: ${converted.stderr}`)
  const manifestResponse = await fetch(`${registry.url}/v2/${name}/manifests/nydus`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
  const manifest = await manifestResponse.json() as { layers: Array<{ digest: string, annotations?: Record<string, string> }> }
  const bootstrap = manifest.layers.find(l => l.annotations?.['containerd.io/snapshot/nydus-bootstrap'] === 'true')
  if (bootstrap == null) throw new Error('the converted manifest has no bootstrap layer')
  return {
    reference: `docker://${proxy.address}/${name}:nydus`,
    files,
    dataBlobs: manifest.layers.filter(l => l !== bootstrap).map(l => l.digest.slice('sha256:'.length)),
    bootstrapLayer: bootstrap.digest.slice('sha256:'.length)
  }
}

export interface RunningDaemon {
  name: string
  pid: number
  peerId: string
  addresses: string[]
  socket: string
  stateDir: string
  metricsUrl?: string
  client: DaemonClient
  process: ChildProcess
  /** stderr so far (the daemon's log), for failure messages. */
  log: () => string
  /** Sends `signal` and waits (bounded) for the exit; resolves with the exit code or signal. */
  stop: (signal?: NodeJS.Signals, timeoutMs?: number) => Promise<number | string>
  status: () => Promise<DaemonStatus>
}

export interface DaemonOptions {
  stateDir: string
  /** Extra `shoal daemon` flags. */
  args?: string[]
  metrics?: boolean
  readyTimeoutMs?: number
}

/** Starts `shoal daemon` as its own process (the binary execs node: the PID is the daemon's). */
export async function startDaemon (name: string, options: DaemonOptions, cleanup: Cleanup): Promise<RunningDaemon> {
  const socket = join(options.stateDir, 'run', 'api.sock')
  const args = [
    'daemon', '--state-dir', join(options.stateDir, 'state'), '--api-socket', socket,
    '--listen', '/ip4/127.0.0.1/tcp/0', '--allow', '/ip4/127.0.0.1',
    ...(options.metrics === true ? ['--metrics', '127.0.0.1:0'] : []),
    ...(options.args ?? [])
  ]
  const child = spawn(shoalBin, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-20_000) })
  const exited = new Promise<number | string>(resolve => { child.once('exit', (code, signal) => { resolve(code ?? signal ?? 'unknown') }) })
  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<number | string> => {
    if (child.exitCode != null || child.signalCode != null) return await exited
    child.kill(signal)
    const result = await Promise.race([exited, sleep(timeoutMs).then(() => 'timeout' as const)])
    if (result === 'timeout') {
      child.kill('SIGKILL')
      await exited
      return 'timeout'
    }
    return result
  }
  cleanup.add(`daemon ${name}`, async () => { await stop('SIGKILL') })
  const lines = createInterface({ input: child.stdout! })
  const ready = await new Promise<{ peerId: string, addresses: string[], metricsUrl?: string }>((resolve, reject) => {
    const addresses: string[] = []
    let peerId = ''
    let metricsUrl: string | undefined
    const timer = setTimeout(() => { reject(new Error(`daemon ${name} not ready after ${options.readyTimeoutMs ?? 30_000} ms: ${stderr}`)) }, options.readyTimeoutMs ?? 30_000)
    void exited.then(code => { clearTimeout(timer); reject(new Error(`daemon ${name} exited (${code}) before it was ready: ${stderr}`)) })
    lines.on('line', (line) => {
      if (line.startsWith('peer id: ')) peerId = line.slice('peer id: '.length)
      else if (line.startsWith('address: ')) addresses.push(line.slice('address: '.length))
      else if (line.startsWith('metrics: ')) metricsUrl = line.slice('metrics: '.length)
      else if (line.startsWith('api: ')) {
        clearTimeout(timer)
        resolve({ peerId, addresses, ...(metricsUrl != null ? { metricsUrl } : {}) })
      }
    })
  })
  const client = daemonClient(socket)
  return {
    name,
    pid: child.pid!,
    ...ready,
    socket,
    stateDir: options.stateDir,
    client,
    process: child,
    log: () => stderr,
    stop,
    status: async () => await client.status({ signal: AbortSignal.timeout(10_000) })
  }
}

/**
 * Reads every file of the image through a daemon and returns the paths whose bytes differ from
 * what was built (empty when all are right). Reads run a few at a time; each is bounded.
 */
export async function readAllFiles (daemon: RunningDaemon, image: TestImage, concurrency = 4): Promise<string[]> {
  const paths = [...image.files.keys()]
  const wrong: string[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const path = paths[next++]!
      const bytes = await daemon.client.readFile(image.reference, path, { signal: AbortSignal.timeout(60_000) })
      const digest = createHash('sha256').update(bytes).digest('hex')
      if (digest !== image.files.get(path)) wrong.push(`${daemon.name}:${path}`)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return wrong
}

/** Sum of a counter's samples in Prometheus text, optionally only those whose labels contain `labels`. */
export function metricValue (text: string, name: string, labels = ''): number {
  let total = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const match = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line)
    if (match == null || match[1] !== name) continue
    if (labels !== '' && !(match[2] ?? '').includes(labels)) continue
    total += Number(match[3])
  }
  return total
}

export async function startRegistryWithCleanup (cleanup: Cleanup): Promise<RunningRegistry> {
  const server = await startRegistry()
  cleanup.add('registry', async () => { await server.stop() })
  return server
}

/** A pnet swarm key file in the standard format (`/key/swarm/psk/1.0.0/`, base16). */
export async function writeTestSwarmKey (path: string, seed: string): Promise<void> {
  const key = createHash('sha256').update(seed).digest('hex')
  await writeFile(path, `/key/swarm/psk/1.0.0/\n/base16/\n${key}\n`, { mode: 0o600 })
}

/** What the daemon e2e files share: a registry behind a counting proxy, a converted test image. */
export interface SwarmTestWorld {
  work: string
  registry: RunningRegistry
  proxy: CountingProxy
  image: TestImage
  /**
   * A host config for loaded machines: six node processes share two cores here (and other work),
   * so a DHT lookup gets a second, and a peer three to say which chunks it holds, before the
   * registry is asked.
   */
  hostConfig: string
}

export async function setUpSwarmTestWorld (cleanup: Cleanup, prefix: string): Promise<SwarmTestWorld> {
  const work = await tempDir(cleanup, prefix)
  const registry = await startRegistryWithCleanup(cleanup)
  const proxy = await startCountingProxy(registry.registry, cleanup)
  const image = await buildTestImage(registry, proxy, work)
  const hostConfig = join(work, 'host.json')
  await writeFile(hostConfig, JSON.stringify({ providerTimeout: 1000, bitmapTimeout: 3000 }))
  return { work, registry, proxy, image, hostConfig }
}
