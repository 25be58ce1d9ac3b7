import { daemon as shoalDaemon, loadDaemonConfig, SERVE_FAULTS, type DaemonConfig, type Mounter, type ServeFault } from '@shoal/daemon'
import { clearMountWorkDir, forceUnmountFuse, isMountPoint, mountImage, unmountPath } from '@shoal/fuse'
import { stringOption, UsageError, type Command } from '../command.js'
import { DEFAULT_API_SOCKET } from '../daemon-socket.js'

const DEFAULT_STATE_DIR = '/var/lib/shoal'

function listOption (values: Record<string, unknown>, name: string): string[] | undefined {
  const value = values[name]
  return Array.isArray(value) && value.length > 0 ? value as string[] : undefined
}

function sizeOption (value: string | undefined, name: string): number | undefined {
  if (value == null) return undefined
  const match = /^(\d+)([KMGT]i?B?)?$/i.exec(value)
  if (match == null) throw new UsageError(`--${name}: expected a size such as 512MiB or 10GiB, got '${value}'`)
  const unit = (match[2] ?? '').toUpperCase()[0]
  const scale = unit === 'K' ? 2 ** 10 : unit === 'M' ? 2 ** 20 : unit === 'G' ? 2 ** 30 : unit === 'T' ? 2 ** 40 : 1
  return Number(match[1]) * scale
}

export const daemon: Command = {
  name: 'daemon',
  summary: 'run the host daemon: chunk cache, swarm peer, mounts, API and metrics',
  args: '',
  description: 'Serves the chunks it holds to peers and fetches what it lacks from them (found through the DHT),\n' +
    'going to the registry on a miss. Every flag can be set in the --config JSON file (keys: stateDir, apiSocket,\n' +
    'listen, bootstrap, seed, metrics, swarmKey, insecureRegistries, cacheMaxBytes, mountMode, allow, providerTimeout,\n' +
    'bitmapTimeout); flags win.\n' +
    'Prints its peer id and addresses when ready. SIGTERM or SIGINT unmounts, withdraws its blobs and exits 0.',
  positionals: { min: 0, max: 0 },
  options: {
    config: { type: 'string', valueName: 'FILE', description: 'JSON config file' },
    'state-dir': { type: 'string', valueName: 'DIR', description: `peer key, chunk cache, mount work dirs (default ${DEFAULT_STATE_DIR})` },
    'api-socket': { type: 'string', valueName: 'PATH', description: `the API's unix socket, root only (default ${DEFAULT_API_SOCKET})` },
    listen: { type: 'string', multiple: true, valueName: 'MULTIADDR', description: 'swarm listen address (default /ip4/127.0.0.1/tcp/0)' },
    bootstrap: { type: 'string', multiple: true, valueName: 'MULTIADDR', description: 'a seed to join through, with /p2p/PEER-ID' },
    seed: { type: 'boolean', description: "serve with a seed's higher limits" },
    metrics: { type: 'string', valueName: 'HOST:PORT', description: 'serve Prometheus /metrics on this loopback address' },
    'swarm-key': { type: 'string', valueName: 'FILE', description: 'pre-shared swarm key: only daemons with it connect' },
    'insecure-registry': { type: 'string', multiple: true, valueName: 'HOST[:PORT]', description: 'speak plain HTTP to this registry (loopback ones always are)' },
    'cache-size': { type: 'string', valueName: 'SIZE', description: 'cap of the chunk cache (default 10GiB)' },
    'mount-mode': { type: 'string', valueName: 'MODE', description: 'erofs (falls back to fuse) or fuse' },
    allow: { type: 'string', multiple: true, valueName: 'MULTIADDR', description: 'address prefix let past connection limits (e.g. /ip4/127.0.0.1)' },
    'test-serve-fault': { type: 'string', valueName: 'KIND', description: `TESTS ONLY: serve peers bad chunks (${SERVE_FAULTS.join(', ')})` }
  },
  async run ({ values, stdout, stderr, signal }) {
    const configPath = stringOption(values, 'config')
    const fromFile: Partial<DaemonConfig> = configPath != null ? await loadDaemonConfig(configPath, { signal }) : {}
    const mountMode = stringOption(values, 'mount-mode')
    if (mountMode != null && mountMode !== 'fuse' && mountMode !== 'erofs') throw new UsageError(`--mount-mode: expected erofs or fuse, got '${mountMode}'`)
    const fault = stringOption(values, 'test-serve-fault')
    if (fault != null && !SERVE_FAULTS.includes(fault as ServeFault)) throw new UsageError(`--test-serve-fault: expected one of ${SERVE_FAULTS.join(', ')}, got '${fault}'`)
    const flags: Partial<DaemonConfig> = {
      ...(stringOption(values, 'state-dir') != null ? { stateDir: stringOption(values, 'state-dir') } : {}),
      ...(stringOption(values, 'api-socket') != null ? { apiSocket: stringOption(values, 'api-socket') } : {}),
      ...(listOption(values, 'listen') != null ? { listen: listOption(values, 'listen') } : {}),
      ...(listOption(values, 'bootstrap') != null ? { bootstrap: listOption(values, 'bootstrap') } : {}),
      ...(values.seed === true ? { seed: true } : {}),
      ...(stringOption(values, 'metrics') != null ? { metrics: stringOption(values, 'metrics') } : {}),
      ...(stringOption(values, 'swarm-key') != null ? { swarmKey: stringOption(values, 'swarm-key') } : {}),
      ...(listOption(values, 'insecure-registry') != null ? { insecureRegistries: listOption(values, 'insecure-registry') } : {}),
      ...(sizeOption(stringOption(values, 'cache-size'), 'cache-size') != null ? { cacheMaxBytes: sizeOption(stringOption(values, 'cache-size'), 'cache-size') } : {}),
      ...(mountMode != null ? { mountMode: mountMode as 'fuse' | 'erofs' } : {}),
      ...(listOption(values, 'allow') != null ? { allow: listOption(values, 'allow') } : {}),
      ...(fault != null ? { testServeFault: fault as ServeFault } : {})
    }
    const config: DaemonConfig = { stateDir: DEFAULT_STATE_DIR, apiSocket: DEFAULT_API_SOCKET, ...fromFile, ...flags }
    const log = (line: string): void => { stderr.write(`${new Date().toISOString()} shoal daemon: ${line}\n`) }
    const mounter: Mounter = {
      mount: async (init, options) => await mountImage({ ...init, logger: (m) => { log(`mount ${init.mountpoint}: ${m}`) } }, options),
      // A mount left by a killed daemon: its FUSE server is gone, so only a (lazy) unmount clears it.
      forceUnmount: async (mountpoint) => {
        if (!await isMountPoint(mountpoint).catch(() => false)) return
        await unmountPath(mountpoint).catch(async () => { await forceUnmountFuse(mountpoint) }).catch((err: any) => { log(`could not clear ${mountpoint}: ${err?.message}`) })
      },
      clearWorkDir: async (workDir) => { await clearMountWorkDir(workDir, log) }
    }
    const running = shoalDaemon(config)({ log, mounter })
    await running.start({ signal })
    stdout.write([
      `shoal daemon ready${config.seed === true ? ' (seed)' : ''}`,
      `peer id: ${running.peerId}`,
      ...running.multiaddrs.map(a => `address: ${a}`),
      ...(running.metricsUrl != null ? [`metrics: ${running.metricsUrl}`] : []),
      // Last: scripts wait for this line.
      `api: ${config.apiSocket}`,
      ''
    ].join('\n'))
    if (!signal.aborted) await new Promise<void>(resolve => { signal.addEventListener('abort', () => { resolve() }, { once: true }) })
    log('stopping')
    await running.stop()
    // libp2p may leave timers behind; once everything is closed, nothing is left to wait for.
    setTimeout(() => { process.exit(process.exitCode ?? 0) }, 500).unref()
    return 0
  }
}
