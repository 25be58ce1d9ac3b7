import { daemonClient } from '@shoal/daemon/client'
import type { DaemonStatus } from '@shoal/daemon'
import type { Command } from '../command.js'
import { daemonOption, requiredDaemonSocket } from '../daemon-socket.js'

function mib (bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(2)} MiB`
}

function describe (status: DaemonStatus): string {
  // `memory` is verified chunks read again (FUSE reads a chunk in pieces): not where bytes came from.
  const sources = Object.entries(status.bytesBySource).filter(([source]) => source !== 'memory').sort((a, b) => b[1] - a[1])
  const lines = [
    `peer ${status.peerId}${status.seed ? ' (seed)' : ''}`,
    ...status.addresses.map(a => `  listening on ${a}`),
    ...(status.metricsUrl != null ? [`  metrics at ${status.metricsUrl}`] : []),
    `peers: ${status.peers.length}`,
    ...status.peers.map(p => `  ${p.peer}`),
    `blobs held: ${status.blobsHeld.length} (${status.blobsProvided.length} provided)`,
    `cache: ${mib(status.cache.bytes)} in ${status.cache.chunks} chunks of ${status.cache.blobs} blobs at ${status.cache.path}`,
    'bytes read, by source:',
    ...(sources.length > 0 ? sources.map(([source, bytes]) => `  ${source.padEnd(9)} ${mib(bytes).padStart(12)}  (${status.chunksBySource[source] ?? 0} chunks)`) : ['  none yet']),
    ...(status.bytesBySource.memory != null ? [`  (and ${mib(status.bytesBySource.memory)} re-read from verified chunks in memory)`] : []),
    `served to peers: ${status.served.chunks} chunks, ${mib(status.served.bytes)}`,
    ...(Object.keys(status.errors).length > 0 ? [`errors: ${Object.entries(status.errors).map(([k, v]) => `${k} ${v}`).join(', ')}`] : []),
    ...(status.blocklisted.length > 0 ? [`blocklisted: ${status.blocklisted.map(b => `${b.peer} (${b.reason})`).join(', ')}`] : []),
    `memory: ${mib(status.memory.rss)} resident, ${mib(status.memory.heapUsed)} heap`,
    `mounts: ${status.mounts.length}`,
    ...status.mounts.map(m => `  ${m.mountpoint}  ${m.image}  (${m.mode})`)
  ]
  return lines.join('\n') + '\n'
}

export const status: Command = {
  name: 'status',
  summary: "show a daemon's peers, blobs held, cache and where its bytes came from",
  args: '',
  positionals: { min: 0, max: 0 },
  options: {
    ...daemonOption,
    json: { type: 'boolean', description: 'print the status as JSON' }
  },
  async run ({ values, stdout, signal }) {
    const client = daemonClient(requiredDaemonSocket(values, 'status'))
    const result = await client.status({ signal })
    stdout.write(values.json === true ? `${JSON.stringify(result, null, 2)}\n` : describe(result))
    return 0
  }
}
