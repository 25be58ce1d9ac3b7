import { unpackImage } from '@shoal/image-tools'
import { stringOption, type Command } from '../command.js'
import { openImage, registryOptions, storeOptionsOf } from '../image-ref.js'

export const unpack: Command = {
  name: 'unpack',
  summary: "write an image's files into a directory, every chunk verified",
  args: 'IMAGE OUT',
  description: 'IMAGE is bootstrap:PATH, docker://HOST/REPO[:TAG] or oci:DIR[:TAG]. OUT must be absent or empty; nothing is written outside it.\n' +
    'Writes contents, modes, owners (as root), times, xattrs, symlinks, hard links and device nodes.',
  positionals: { min: 2, max: 2 },
  options: {
    ...registryOptions,
    'blob-dir': { type: 'string', valueName: 'DIR', description: 'directory of blob files named by blob id (default: blobs/ beside the bootstrap)' },
    json: { type: 'boolean', description: 'print the summary as JSON' }
  },
  async run ({ positionals, values, stdout, signal }) {
    const blobDir = stringOption(values, 'blob-dir')
    const { image, blobs, close } = await openImage(positionals[0], { signal, ...storeOptionsOf(values), ...(blobDir != null ? { blobDir } : {}) })
    try {
      const result = await unpackImage(image, blobs, positionals[1], { signal })
      if (values.json === true) {
        stdout.write(`${JSON.stringify(result, null, 2)}\n`)
      } else {
        stdout.write(`unpacked ${result.files} files (${result.bytes} bytes), ${result.directories} directories, ` +
          `${result.symlinks} symlinks, ${result.hardlinks} hard links, ${result.devices} device nodes into ${positionals[1]}\n`)
        if (result.skipped.length > 0) stdout.write(`skipped ${result.skipped.length} sockets: ${result.skipped.join(', ')}\n`)
      }
      return 0
    } finally {
      await close()
    }
  }
}
