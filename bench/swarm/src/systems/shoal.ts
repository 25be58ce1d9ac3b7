/**
 * Shoal's swarm: a daemon per host, each in its own namespace, listening on its own address; host 0
 * is the others' bootstrap peer. No seed, nothing preheated: every host starts cold at once, and the
 * chunks one host fetched from the registry are offered to the rest through the DHT.
 */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import {
  daemonBytes, missingShoalCommands, runUntilReady, startShoalDaemon, unmountUnder,
  type RunningDaemon, type SwarmSystem
} from '@shoal/bench-harness'

export function shoalSwarmSystem (shoalBin: string): SwarmSystem {
  const daemons = new Map<number, RunningDaemon>()
  return {
    name: 'shoal-swarm',
    description: 'a shoal daemon per host, cold caches, chunks shared over the swarm; shoal run through it',
    unavailable: async (options) => await missingShoalCommands(shoalBin, ['run', 'daemon', 'status'], { ...options, flags: { run: ['--daemon'] } }),
    setup: async (target, options = {}) => {
      const subnet = target.hosts[0].address.replace(/\.\d+$/, '.0')
      let bootstrap: string | undefined
      for (const host of target.hosts) {
        const dir = join(host.workDir, 'state')
        await mkdir(dir, { recursive: true })
        const daemon = await startShoalDaemon(shoalBin, [
          '--state-dir', dir,
          '--listen', `/ip4/${host.address}/tcp/4001`,
          '--allow', `/ip4/${subnet}/ipcidr/24`,
          '--insecure-registry', target.registry,
          ...(bootstrap != null ? ['--bootstrap', bootstrap] : [])
        ], { ...options, socket: join(host.workDir, 'run', 'api.sock'), netns: host.namespace })
        daemons.set(host.index, daemon)
        bootstrap ??= `/ip4/${host.address}/tcp/4001/p2p/${daemon.peerId}`
      }
    },
    startOnHost: async (target, host, options = {}) => {
      const daemon = daemons.get(host.index)
      if (daemon == null) throw new Error(`shoal-swarm: no daemon on host ${host.index}`)
      const ready = await runUntilReady(shoalBin, ['run', '--daemon', daemon.socket, target.nydusRef, '--insecure-registry', target.registry, '--', ...target.image.ready.command], {
        ...options, netns: host.namespace, readyLine: target.image.ready.line, timeoutMs: 10 * 60_000
      })
      const bytes = await daemonBytes(shoalBin, daemon.socket, options)
      return { host: host.index, seconds: ready.seconds, bytes: { registry: bytes.registry, peers: bytes.peers, cache: bytes.cache } }
    },
    teardown: async (target) => {
      for (const daemon of daemons.values()) await daemon.stop()
      daemons.clear()
      for (const host of target.hosts) {
        await unmountUnder(host.workDir)
        await rm(join(host.workDir, 'state'), { recursive: true, force: true })
      }
    }
  }
}
