/**
 * The daemon's settings as a JSON config file holds them; `shoal daemon` flags override them
 * one by one. Every key is checked: an unknown key or a wrong type is an error naming the file.
 */
import { readFile } from 'node:fs/promises'
import { throwIfAborted, type AbortOptions } from '@shoal/interface'
import { DaemonConfigError } from './errors.js'

export type ServeFault = 'corrupt' | 'truncate' | 'wrong-index'
export const SERVE_FAULTS: readonly ServeFault[] = ['corrupt', 'truncate', 'wrong-index']

export interface DaemonConfig {
  /** Peer key, chunk cache and mount work directories live here; created 0700. */
  stateDir: string
  /** The HTTP API's unix socket; its directory is created 0700 and the socket is 0600. */
  apiSocket: string
  /** libp2p listen multiaddrs (default /ip4/127.0.0.1/tcp/0). */
  listen?: string[]
  /** Seed multiaddrs, each with /p2p/PEER-ID. */
  bootstrap?: string[]
  /** Serve with a seed's limits. */
  seed?: boolean
  /** Prometheus /metrics on this loopback HOST:PORT (port 0: any free port). */
  metrics?: string
  /** Pre-shared swarm key file: only daemons holding the same key connect. */
  swarmKey?: string
  /** Registries spoken to over plain HTTP besides loopback ones (`host[:port]`). */
  insecureRegistries?: string[]
  /** Cap of the chunk cache in bytes (default 10 GiB). */
  cacheMaxBytes?: number
  /** Mount mode asked of the mounter (default erofs, which falls back to fuse). */
  mountMode?: 'fuse' | 'erofs'
  /** Multiaddr prefixes let past connection limits (many daemons on one loopback). */
  allow?: string[]
  /** How long a DHT lookup may find nobody before the registry is asked (ms, default 100). */
  providerTimeout?: number
  /** How long a peer may take to say which chunks of a blob it holds (ms, default 1000). */
  bitmapTimeout?: number
  /**
   * TESTS ONLY: this daemon serves peers wrong chunks, to show that receivers refuse them.
   * Never set it on a real host.
   */
  testServeFault?: ServeFault
}

const STRING_KEYS = ['stateDir', 'apiSocket', 'metrics', 'swarmKey'] as const
const LIST_KEYS = ['listen', 'bootstrap', 'insecureRegistries', 'allow'] as const
const ALL_KEYS = new Set<string>([...STRING_KEYS, ...LIST_KEYS, 'seed', 'cacheMaxBytes', 'mountMode', 'providerTimeout', 'bitmapTimeout', 'testServeFault'])
/** A config file is a few hundred bytes; refuse to read a huge one. */
const MAX_CONFIG_BYTES = 1024 * 1024

/** Checks a parsed JSON config; `where` (the file) goes into every message. */
export function parseDaemonConfig (value: unknown, where: string): Partial<DaemonConfig> {
  if (value == null || typeof value !== 'object' || Array.isArray(value)) {
    throw new DaemonConfigError(`${where}: expected a JSON object, got ${Array.isArray(value) ? 'an array' : typeof value}`)
  }
  const input = value as Record<string, unknown>
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(input)) {
    if (!ALL_KEYS.has(key)) throw new DaemonConfigError(`${where}: unknown key '${key}' (known: ${[...ALL_KEYS].join(', ')})`)
    if ((STRING_KEYS as readonly string[]).includes(key)) {
      if (typeof v !== 'string' || v === '') throw new DaemonConfigError(`${where}: '${key}' must be a non-empty string, got ${JSON.stringify(v)}`)
    } else if ((LIST_KEYS as readonly string[]).includes(key)) {
      if (!Array.isArray(v) || v.some(item => typeof item !== 'string' || item === '')) {
        throw new DaemonConfigError(`${where}: '${key}' must be an array of non-empty strings, got ${JSON.stringify(v)}`)
      }
    } else if (key === 'seed') {
      if (typeof v !== 'boolean') throw new DaemonConfigError(`${where}: 'seed' must be true or false, got ${JSON.stringify(v)}`)
    } else if (key === 'cacheMaxBytes' || key === 'providerTimeout' || key === 'bitmapTimeout') {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new DaemonConfigError(`${where}: '${key}' must be a non-negative integer, got ${JSON.stringify(v)}`)
    } else if (key === 'mountMode') {
      if (v !== 'fuse' && v !== 'erofs') throw new DaemonConfigError(`${where}: 'mountMode' must be "fuse" or "erofs", got ${JSON.stringify(v)}`)
    } else if (key === 'testServeFault') {
      if (!SERVE_FAULTS.includes(v as ServeFault)) throw new DaemonConfigError(`${where}: 'testServeFault' must be one of ${SERVE_FAULTS.join(', ')}, got ${JSON.stringify(v)}`)
    }
    out[key] = v
  }
  return out as Partial<DaemonConfig>
}

export async function loadDaemonConfig (path: string, options: AbortOptions = {}): Promise<Partial<DaemonConfig>> {
  throwIfAborted(options)
  const bytes = await readFile(path, { signal: options.signal })
  if (bytes.length > MAX_CONFIG_BYTES) throw new DaemonConfigError(`${path}: ${bytes.length} bytes, more than the ${MAX_CONFIG_BYTES} a config file may have`)
  let parsed: unknown
  try {
    parsed = JSON.parse(bytes.toString('utf8'))
  } catch (err: any) {
    throw new DaemonConfigError(`${path}: not JSON: ${err?.message}`)
  }
  return parseDaemonConfig(parsed, path)
}

/** `HOST:PORT` (IPv6 as `[::1]:PORT`) on a loopback address; metrics are never served beyond the host. */
export function parseLoopbackAddress (value: string, what: string): { host: string, port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value)
  if (match == null) throw new DaemonConfigError(`${what}: expected HOST:PORT, got '${value}'`)
  const host = match[1] ?? match[2]!
  const port = Number(match[3])
  if (port > 65535) throw new DaemonConfigError(`${what}: port ${port} is above 65535`)
  const loopback = host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
  if (!loopback) throw new DaemonConfigError(`${what}: '${host}' is not a loopback address (127.0.0.0/8, ::1, localhost)`)
  return { host, port }
}
