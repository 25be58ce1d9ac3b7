import { checkImage } from '@shoal/image-tools'
import { stringOption, type Command } from '../command.js'
import { openImage, registryOptions, storeOptionsOf } from '../image-ref.js'

export const check: Command = {
  name: 'check',
  summary: 'read every chunk of an image and verify every digest',
  args: 'IMAGE',
  description: 'IMAGE is bootstrap:PATH, docker://HOST/REPO[:TAG] or oci:DIR[:TAG]. Exits 0 only when every chunk holds; otherwise names the first bad\n' +
    'chunk: the file and offset where it is read, its blob, and the expected and actual digest.',
  positionals: { min: 1, max: 1 },
  options: {
    ...registryOptions,
    'blob-dir': { type: 'string', valueName: 'DIR', description: 'directory of blob files named by blob id (default: blobs/ beside the bootstrap)' },
    json: { type: 'boolean', description: 'print the result as JSON' }
  },
  async run ({ positionals, values, stdout, stderr, signal }) {
    const blobDir = stringOption(values, 'blob-dir')
    const { image, blobs, close } = await openImage(positionals[0], { signal, ...storeOptionsOf(values), ...(blobDir != null ? { blobDir } : {}) })
    try {
      const result = await checkImage(image, blobs, { signal })
      if (values.json === true) {
        const { bad, ...rest } = result
        stdout.write(`${JSON.stringify({ ...rest, ...(bad != null ? { bad: { ...bad, error: bad.error.message } } : {}) }, null, 2)}\n`)
      } else if (result.bad == null) {
        stdout.write(`ok: ${result.chunks} chunks (${result.bytes} bytes) in ${result.blobs} blobs verified\n`)
      } else {
        const { bad } = result
        stderr.write(`bad chunk: file ${bad.path} at offset ${bad.fileOffset}, blob ${bad.blobId} chunk ${bad.chunkIndex}: ` +
          `expected ${bad.expected}, ${bad.actual != null ? `got ${bad.actual}` : `could not be read: ${bad.error.message}`}\n`)
      }
      return result.ok ? 0 : 1
    } finally {
      await close()
    }
  }
}
