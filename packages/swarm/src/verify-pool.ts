/**
 * Chunk verification off the event loop. The event loop already spends its time on the
 * transport (Noise decryption, Yamux framing); hashing (and decompressing a stored chunk) in a
 * small pool of worker threads lets that run on another core, overlapped with receiving the
 * next chunk. A chunk's buffer is transferred to the worker and back, never copied. Small
 * chunks are checked inline: a round trip to a thread costs more than hashing them.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { ChunkDigestMismatchError, type ChunkRef } from '@shoal/interface'
import { DecompressError } from '@shoal/rafs'
import { SwarmProtocolError } from './errors.js'
import type { ReceivedChunk } from './chunk-client.js'
import { ChunkEncoding } from './protocol.js'
import { verifyReceived } from './verify.js'

/** @internal message to a verify worker */
export interface VerifyJob {
  id: number
  ref: ChunkRef
  encoding: number
  buffer: ArrayBuffer
  byteOffset: number
  byteLength: number
}

/** @internal message from a verify worker */
export type VerifyReply =
  | { id: number, ok: true, buffer: ArrayBuffer, byteOffset: number, byteLength: number }
  | { id: number, ok: false, kind: 'digest' | 'decompress' | 'internal', message: string, expected?: string, actual?: string }

/** Chunks smaller than this are verified inline. */
export const INLINE_VERIFY_BELOW = 64 * 1024

/**
 * Threads only where cores are left over: the event loop takes one core and the other
 * processes of a host (the FUSE server, the serving side of the swarm) another. Measured on a
 * 2-core host (bench/swarm-transfer), a thread there cost more than it saved, so none below 3.
 */
export function defaultVerifyThreads (): number {
  return Math.max(0, Math.min(4, availableParallelism() - 2))
}

interface Pending {
  ref: ChunkRef
  peer: string
  resolve: (bytes: Uint8Array) => void
  reject: (err: Error) => void
}

interface PoolWorker {
  worker: Worker
  pending: Map<number, Pending>
}

const WORKER_URL = new URL('./verify-worker.js', import.meta.url)

export class VerifyPool {
  private readonly workers: PoolWorker[] = []
  private nextId = 1

  constructor (readonly threads: number) {}

  /**
   * The verified uncompressed bytes of `chunk`, or a rejection with ChunkDigestMismatchError,
   * DecompressError or SwarmProtocolError. `chunk.bytes` must own its whole ArrayBuffer (it is
   * transferred away); the bytes resolved may be the same memory handed back.
   */
  async verify (chunk: ReceivedChunk, peer: string): Promise<Uint8Array> {
    const { ref, encoding, bytes } = chunk
    const owned = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer)
    if (this.threads === 0 || bytes.length < INLINE_VERIFY_BELOW || !owned ||
      (encoding !== ChunkEncoding.UNCOMPRESSED && encoding !== ChunkEncoding.STORED)) {
      return verifyReceived(chunk, peer)
    }
    if (encoding === ChunkEncoding.UNCOMPRESSED && bytes.length !== ref.uncompressedSize) {
      throw new SwarmProtocolError(`peer ${peer}: chunk ${ref.index} of blob ${ref.blobId} has ${bytes.length} bytes, expected ${ref.uncompressedSize}`)
    }
    const target = this.pick()
    const id = this.nextId++
    return await new Promise<Uint8Array>((resolve, reject) => {
      // A thread with work keeps the process alive until it answers; an idle one never does.
      if (target.pending.size === 0) target.worker.ref()
      target.pending.set(id, { ref, peer, resolve, reject })
      const job: VerifyJob = { id, ref, encoding, buffer: bytes.buffer as ArrayBuffer, byteOffset: 0, byteLength: bytes.byteLength }
      target.worker.postMessage(job, [job.buffer])
    })
  }

  /** Ends the threads; chunks still being verified are rejected. A later verify starts a thread again. */
  async close (): Promise<void> {
    const workers = this.workers.splice(0)
    for (const w of workers) this.failAll(w, new Error('verify pool closed'))
    await Promise.all(workers.map(async w => await w.worker.terminate()))
  }

  /** The thread with the fewest chunks waiting, started on first use. */
  private pick (): PoolWorker {
    let best: PoolWorker | undefined
    for (const w of this.workers) if (best == null || w.pending.size < best.pending.size) best = w
    if (best != null && (best.pending.size === 0 || this.workers.length >= this.threads)) return best
    return this.spawn()
  }

  private spawn (): PoolWorker {
    const worker = new Worker(WORKER_URL)
    // The pool must never keep a process alive by itself.
    worker.unref()
    const entry: PoolWorker = { worker, pending: new Map() }
    worker.on('message', (reply: VerifyReply) => { this.settle(entry, reply) })
    worker.on('error', (err) => { this.retire(entry, err) })
    worker.on('exit', (code) => { this.retire(entry, new Error(`verify worker exited with code ${code}`)) })
    this.workers.push(entry)
    return entry
  }

  private settle (entry: PoolWorker, reply: VerifyReply): void {
    const job = entry.pending.get(reply.id)
    if (job == null) return
    entry.pending.delete(reply.id)
    if (entry.pending.size === 0) entry.worker.unref()
    if (reply.ok) {
      job.resolve(new Uint8Array(reply.buffer, reply.byteOffset, reply.byteLength))
      return
    }
    const { ref, peer } = job
    if (reply.kind === 'digest') {
      job.reject(new ChunkDigestMismatchError(ref.blobId, ref.index, reply.expected ?? '', reply.actual ?? '', `peer ${peer}`))
    } else if (reply.kind === 'decompress') {
      job.reject(new DecompressError(`peer ${peer}: ${reply.message}`))
    } else {
      job.reject(new Error(`verifying chunk ${ref.index} of blob ${ref.blobId} from peer ${peer}: ${reply.message}`))
    }
  }

  private retire (entry: PoolWorker, err: Error): void {
    const at = this.workers.indexOf(entry)
    if (at >= 0) this.workers.splice(at, 1)
    this.failAll(entry, err)
  }

  private failAll (entry: PoolWorker, err: Error): void {
    for (const job of entry.pending.values()) job.reject(err)
    entry.pending.clear()
  }
}
