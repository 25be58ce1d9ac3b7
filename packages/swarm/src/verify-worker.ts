/**
 * A verification thread (see verify-pool.ts): decodes and checks received chunks off the event
 * loop. Buffers come in and go back as transferred ArrayBuffers, never copied.
 */
import { parentPort } from 'node:worker_threads'
import { ChunkDigestMismatchError } from '@shoal/interface'
import { chunkDigest, decodeChunkRef, DecompressError, digestsEqual, toHex } from '@shoal/rafs'
import type { VerifyJob, VerifyReply } from './verify-pool.js'
import { ChunkEncoding } from './protocol.js'

const port = parentPort
if (port == null) throw new Error('verify-worker.js runs only as a worker thread')

port.on('message', (job: VerifyJob) => {
  const { id, ref, encoding } = job
  const bytes = new Uint8Array(job.buffer, job.byteOffset, job.byteLength)
  let reply: VerifyReply
  try {
    if (encoding === ChunkEncoding.STORED) {
      const data = decodeChunkRef(bytes, ref)
      reply = { id, ok: true, buffer: data.buffer as ArrayBuffer, byteOffset: data.byteOffset, byteLength: data.byteLength }
    } else {
      const actual = chunkDigest(bytes, ref.digester)
      if (!digestsEqual(actual, ref.digest)) {
        reply = { id, ok: false, kind: 'digest', message: '', expected: toHex(ref.digest), actual: toHex(actual) }
      } else {
        reply = { id, ok: true, buffer: job.buffer, byteOffset: job.byteOffset, byteLength: job.byteLength }
      }
    }
  } catch (err: any) {
    reply = err instanceof ChunkDigestMismatchError
      ? { id, ok: false, kind: 'digest', message: err.message, expected: err.expected, actual: err.actual }
      : { id, ok: false, kind: err instanceof DecompressError ? 'decompress' : 'internal', message: String(err?.message ?? err) }
  }
  if (reply.ok) {
    // Only a buffer this thread owns alone may move; a pooled or shared one goes as a copy.
    const whole = reply.byteOffset === 0 && reply.byteLength === reply.buffer.byteLength && reply.byteLength >= 4096
    port.postMessage(reply, whole ? [reply.buffer] : [])
  } else {
    port.postMessage(reply)
  }
})
