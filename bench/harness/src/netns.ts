/**
 * Bandwidth-capped links between network namespaces the benchmark makes itself: veth pairs shaped
 * with `tc qdisc … tbf` in both directions (netem is not in this kernel, so no added delay). Every
 * address is inside 10.201.0.0/16 on links that exist only between these namespaces; nothing is
 * routed anywhere else. Names carry the benchmark's pid, so leftovers of a killed run are found and
 * removed by the next one.
 */
import type { AbortOptions } from '@shoal/interface'
import type { Cleanup } from './cleanup.js'
import { BenchNetworkError } from './errors.js'
import { run } from './exec.js'

const NAMESPACE_PREFIX = 'shoalb-'

async function ip (args: string[], options: AbortOptions = {}): Promise<string> {
  try {
    return (await run('ip', args, { ...options, timeoutMs: 15_000 })).stdout
  } catch (err: any) {
    throw new BenchNetworkError(`ip ${args.join(' ')}: ${String(err.message)}`)
  }
}

async function tc (args: string[], options: AbortOptions = {}): Promise<void> {
  try {
    await run('tc', args, { ...options, timeoutMs: 15_000 })
  } catch (err: any) {
    throw new BenchNetworkError(`tc ${args.join(' ')}: ${String(err.message)}`)
  }
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err: any) { return err?.code === 'EPERM' }
}

/** Deletes namespaces and root-side veths left by benchmark runs whose process is gone. */
export async function removeStaleNetworks (options: AbortOptions = {}): Promise<string[]> {
  const removed: string[] = []
  const namespaces = (await ip(['netns', 'list'], options)).split('\n').map(l => l.split(' ')[0]).filter(n => n.startsWith(NAMESPACE_PREFIX))
  for (const name of namespaces) {
    const pid = Number(/^shoalb-(\d+)-/.exec(name)?.[1])
    if (Number.isInteger(pid) && !alive(pid)) {
      await ip(['netns', 'delete', name], options).catch(() => {})
      removed.push(name)
    }
  }
  const links = JSON.parse(await ip(['-j', 'link', 'show'], options) || '[]') as Array<{ ifname: string }>
  for (const { ifname } of links) {
    const pid = Number(/^sb(\d+)[a-z]/.exec(ifname)?.[1])
    if (Number.isInteger(pid) && !alive(pid)) {
      await ip(['link', 'delete', ifname], options).catch(() => {})
      removed.push(ifname)
    }
  }
  return removed
}

export interface LinkShape {
  /** Megabits per second in each direction. */
  rateMbit: number
}

function tbfArgs (rateMbit: number): string[] {
  // The bucket must hold at least one timer tick of traffic; 4 ms of it, and never under 32 KiB.
  const burstBytes = Math.max(32 * 1024, Math.ceil(rateMbit * 1e6 / 8 / 250))
  return ['root', 'tbf', 'rate', `${rateMbit}mbit`, 'burst', String(burstBytes), 'latency', '50ms']
}

/** Caps the egress of one interface (in a namespace, or the root one when ns is undefined). */
export async function shapeInterface (device: string, namespace: string | undefined, shape: LinkShape, options: AbortOptions = {}): Promise<void> {
  if (!(shape.rateMbit > 0 && shape.rateMbit <= 100_000)) throw new BenchNetworkError(`a rate from 1 to 100000 Mbit/s was expected, got ${shape.rateMbit}`)
  await tc([...(namespace != null ? ['-n', namespace] : []), 'qdisc', 'replace', 'dev', device, ...tbfArgs(shape.rateMbit)], options)
}

export interface InterfaceCounters { rxBytes: number, txBytes: number }

export async function interfaceCounters (device: string, namespace?: string, options: AbortOptions = {}): Promise<InterfaceCounters> {
  const out = await ip([...(namespace != null ? ['-n', namespace] : []), '-j', '-s', 'link', 'show', 'dev', device], options)
  const [info] = JSON.parse(out) as Array<{ stats64?: { rx: { bytes: number }, tx: { bytes: number } } }>
  if (info?.stats64 == null) throw new BenchNetworkError(`no statistics for ${device}${namespace != null ? ` in ${namespace}` : ''}`)
  return { rxBytes: info.stats64.rx.bytes, txBytes: info.stats64.tx.bytes }
}

async function addNamespace (name: string, cleanup: Cleanup, options: AbortOptions): Promise<void> {
  await ip(['netns', 'add', name], options)
  cleanup.defer(`delete namespace ${name}`, async () => { await ip(['netns', 'delete', name]) })
  await ip(['-n', name, 'link', 'set', 'lo', 'up'], options)
}

/** The first 10.201.N.0/30 no root-namespace interface has yet, so two benchmarks at once do not collide. */
async function freeSubnet (options: AbortOptions): Promise<number> {
  const addresses = JSON.parse(await ip(['-j', 'addr', 'show'], options) || '[]') as Array<{ addr_info?: Array<{ local?: string }> }>
  const taken = new Set(addresses.flatMap(a => a.addr_info ?? []).map(i => /^10\.201\.(\d+)\./.exec(i.local ?? '')?.[1]).filter(n => n != null).map(Number))
  for (let n = 0; n < 256; n++) if (!taken.has(n)) return n
  throw new BenchNetworkError('every 10.201.N.0/30 link is in use by other benchmark runs')
}

export interface CappedLink {
  /** The namespace on the far side (where the registry listens). */
  namespace: string
  /** The address inside the namespace, and the root namespace's end. */
  farAddress: string
  nearAddress: string
  nearDevice: string
  farDevice: string
  shape: (shape: LinkShape, options?: AbortOptions) => Promise<void>
  /** Bytes seen on the root-side end: rx is what came from the namespace. */
  counters: (options?: AbortOptions) => Promise<InterfaceCounters>
}

/**
 * One namespace joined to the root namespace by a veth pair on 10.201.<subnet>.0/30 (near .1, far
 * .2; by default the first subnet no other run holds). Unshaped until shape() is called, so images can be pushed at full speed first.
 */
export async function cappedLink (init: { tag: string, subnet?: number }, cleanup: Cleanup, options: AbortOptions = {}): Promise<CappedLink> {
  const subnet = init.subnet ?? await freeSubnet(options)
  if (!Number.isInteger(subnet) || subnet < 0 || subnet > 255) throw new BenchNetworkError(`a subnet index from 0 to 255 was expected, got ${subnet}`)
  const namespace = `${NAMESPACE_PREFIX}${process.pid}-${init.tag}`
  const nearDevice = `sb${process.pid}${init.tag.slice(0, 2)}a`
  const farDevice = `sb${process.pid}${init.tag.slice(0, 2)}b`
  const nearAddress = `10.201.${subnet}.1`
  const farAddress = `10.201.${subnet}.2`
  await addNamespace(namespace, cleanup, options)
  await ip(['link', 'add', nearDevice, 'type', 'veth', 'peer', 'name', farDevice], options)
  cleanup.defer(`delete veth ${nearDevice}`, async () => { await ip(['link', 'delete', nearDevice]).catch(() => {}) })
  await ip(['link', 'set', farDevice, 'netns', namespace], options)
  await ip(['addr', 'add', `${nearAddress}/30`, 'dev', nearDevice], options)
  await ip(['link', 'set', nearDevice, 'up'], options)
  await ip(['-n', namespace, 'addr', 'add', `${farAddress}/30`, 'dev', farDevice], options)
  await ip(['-n', namespace, 'link', 'set', farDevice, 'up'], options)
  return {
    namespace,
    farAddress,
    nearAddress,
    nearDevice,
    farDevice,
    shape: async (shape, opts = {}) => {
      await shapeInterface(nearDevice, undefined, shape, opts)
      await shapeInterface(farDevice, namespace, shape, opts)
    },
    counters: async (opts = {}) => await interfaceCounters(nearDevice, undefined, opts)
  }
}

export interface SwitchedHost {
  namespace: string
  address: string
  /** The host's end of its veth (inside its namespace). */
  device: string
  counters: (options?: AbortOptions) => Promise<InterfaceCounters>
}

export interface SwitchedNetwork {
  /** The namespace holding the bridge. */
  switchNamespace: string
  registry: SwitchedHost
  hosts: SwitchedHost[]
  /** Caps every host's link and the registry's, both directions. */
  shape: (hosts: LinkShape, registry: LinkShape, options?: AbortOptions) => Promise<void>
}

/**
 * A bridge in a namespace of its own, with the registry and N hosts each in its own namespace on a
 * veth to it, all on 10.201.<subnet>.0/24: the registry .2, host i .(10 + i). The bridge switches
 * frames itself, so no forwarding is turned on anywhere.
 */
export async function switchedNetwork (init: { hosts: number, subnet?: number }, cleanup: Cleanup, options: AbortOptions = {}): Promise<SwitchedNetwork> {
  if (!Number.isInteger(init.hosts) || init.hosts < 1 || init.hosts > 64) throw new BenchNetworkError(`from 1 to 64 hosts were expected, got ${init.hosts}`)
  const subnet = init.subnet ?? 1
  const pid = process.pid
  const switchNamespace = `${NAMESPACE_PREFIX}${pid}-switch`
  await addNamespace(switchNamespace, cleanup, options)
  await ip(['-n', switchNamespace, 'link', 'add', 'br0', 'type', 'bridge'], options)
  await ip(['-n', switchNamespace, 'link', 'set', 'br0', 'up'], options)
  const shaped: Array<{ device: string, namespace: string, role: 'host' | 'registry' }> = []

  const attach = async (tag: string, address: string, role: 'host' | 'registry'): Promise<SwitchedHost> => {
    const namespace = `${NAMESPACE_PREFIX}${pid}-${tag}`
    const device = `sb${pid}${tag}a`
    const port = `sb${pid}${tag}b`
    await addNamespace(namespace, cleanup, options)
    await ip(['link', 'add', device, 'type', 'veth', 'peer', 'name', port], options)
    cleanup.defer(`delete veth ${device}`, async () => { await ip(['link', 'delete', device]).catch(() => {}); await ip(['-n', namespace, 'link', 'delete', device]).catch(() => {}) })
    await ip(['link', 'set', device, 'netns', namespace], options)
    await ip(['link', 'set', port, 'netns', switchNamespace], options)
    await ip(['-n', switchNamespace, 'link', 'set', port, 'master', 'br0'], options)
    await ip(['-n', switchNamespace, 'link', 'set', port, 'up'], options)
    await ip(['-n', namespace, 'addr', 'add', `${address}/24`, 'dev', device], options)
    await ip(['-n', namespace, 'link', 'set', device, 'up'], options)
    shaped.push({ device, namespace, role }, { device: port, namespace: switchNamespace, role })
    return { namespace, address, device, counters: async (opts = {}) => await interfaceCounters(device, namespace, opts) }
  }

  const registry = await attach('r', `10.201.${subnet}.2`, 'registry')
  const hosts: SwitchedHost[] = []
  for (let i = 0; i < init.hosts; i++) hosts.push(await attach(`h${i}`, `10.201.${subnet}.${10 + i}`, 'host'))
  return {
    switchNamespace,
    registry,
    hosts,
    shape: async (hostShape, registryShape, opts = {}) => {
      for (const { device, namespace, role } of shaped) await shapeInterface(device, namespace, role === 'host' ? hostShape : registryShape, opts)
    }
  }
}
