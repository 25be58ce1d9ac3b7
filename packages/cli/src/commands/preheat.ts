import { daemonClient } from '@shoal/daemon/client'
import type { Command } from '../command.js'
import { daemonOption, requiredDaemonSocket } from '../daemon-socket.js'

function mib (bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`
}

export const preheat: Command = {
  name: 'preheat',
  summary: "have a daemon fetch every chunk of an image into its cache and provide every blob",
  args: 'IMAGE',
  description: 'IMAGE is docker://HOST/REPO[:TAG|@DIGEST], a Nydus image. Meant for seeds (shoal daemon --seed):\n' +
    'the fleet then fetches the image from them and the registry serves it once.',
  positionals: { min: 1, max: 1 },
  options: {
    ...daemonOption,
    json: { type: 'boolean', description: 'print the result as JSON' }
  },
  async run ({ positionals, values, stdout, signal }) {
    const client = daemonClient(requiredDaemonSocket(values, 'preheat'))
    const result = await client.preheat(positionals[0], { signal })
    if (values.json === true) {
      stdout.write(`${JSON.stringify(result, null, 2)}\n`)
    } else {
      const fetched = Object.entries(result.fetched).map(([source, bytes]) => `${mib(bytes)} from ${source}`).join(', ') || 'nothing (all cached)'
      stdout.write(`preheated ${result.image}: ${result.blobs} blobs, ${result.chunks} chunks, ${mib(result.bytes)} held; fetched ${fetched}; ${result.milliseconds} ms\n`)
    }
    return 0
  }
}
