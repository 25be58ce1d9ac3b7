/**
 * Reading and writing frames on a libp2p stream with bounded memory.
 *
 * libp2p 3 streams push 'message' events; `for await` over a stream queues them without bound
 * and lpStream fails past 4 MiB. FrameReader keeps its own queue of received buffers and pauses
 * the stream (yamux then stops granting window to the sender) once the queue holds more than
 * it needs, so memory per stream stays near max(highWater, current frame) + one yamux window.
 * A stream that ends inside a frame is an error, never a short read.
 */
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import { AbortError, type AbortOptions } from '@shoal/interface'
import { FrameTooLargeError, StreamTruncatedError, SwarmProtocolError } from './errors.js'
import { FRAME_HEADER_SIZE } from './protocol.js'

export interface FrameHeader {
  type: number
  /** Bytes of the body, after the type byte. */
  bodyLength: number
}

export class FrameReader {
  private readonly segments: Uint8Array[] = []
  private first = 0
  private firstOffset = 0
  private queued = 0
  private paused = false
  private ended = false
  private failure: Error | undefined
  private wanted = 0
  private wake: (() => void) | undefined
  private readonly scratch = Buffer.allocUnsafe(16)
  private readonly scratchView = new DataView(this.scratch.buffer, this.scratch.byteOffset, 16)

  constructor (private readonly stream: Stream, private readonly highWater = 1024 * 1024, private readonly where = 'peer') {
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('end', this.onEnd)
    stream.addEventListener('close', this.onClose)
    if (stream.readableEnded) this.ended = true
  }

  /** Stops listening; unread bytes are dropped. */
  release (): void {
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('end', this.onEnd)
    this.stream.removeEventListener('close', this.onClose)
    this.segments.length = 0
    this.first = 0
    this.queued = 0
  }

  /**
   * The next frame header, or undefined when the stream ended cleanly between frames.
   * `maxBody(type)` bounds the body of each type; a longer frame fails before it is read.
   */
  async readHeader (maxBody: (type: number) => number, options?: AbortOptions): Promise<FrameHeader | undefined> {
    if (!(await this.fill(FRAME_HEADER_SIZE, true, options))) return undefined
    this.take(FRAME_HEADER_SIZE, this.scratch)
    const length = this.scratchView.getUint32(0)
    const type = this.scratchView.getUint8(4)
    if (length < 1) throw new SwarmProtocolError(`${this.where}: frame of length 0 (no type byte)`)
    const bodyLength = length - 1
    const limit = maxBody(type)
    if (limit < 0) throw new SwarmProtocolError(`${this.where}: unexpected frame type 0x${type.toString(16)}`)
    if (bodyLength > limit) {
      throw new FrameTooLargeError(`${this.where}: frame type 0x${type.toString(16)} of ${bodyLength} body bytes, limit ${limit}`)
    }
    return { type, bodyLength }
  }

  /** Reads a big-endian u32 (for fields inside a body). */
  async readU32 (options?: AbortOptions): Promise<number> {
    await this.fill(4, false, options)
    this.take(4, this.scratch)
    return this.scratchView.getUint32(0)
  }

  async readU16 (options?: AbortOptions): Promise<number> {
    await this.fill(2, false, options)
    this.take(2, this.scratch)
    return this.scratchView.getUint16(0)
  }

  async readU8 (options?: AbortOptions): Promise<number> {
    await this.fill(1, false, options)
    this.take(1, this.scratch)
    return this.scratchView.getUint8(0)
  }

  /**
   * Exactly `length` bytes: a view of the received buffer when they arrived in one piece,
   * else one copy. The caller bounds `length` first.
   */
  async readBytes (length: number, options?: AbortOptions): Promise<Uint8Array> {
    await this.fill(length, false, options)
    if (length === 0) return new Uint8Array(0)
    const head = this.segments[this.first]!
    if (head.length - this.firstOffset >= length) {
      const view = head.subarray(this.firstOffset, this.firstOffset + length)
      this.advance(length)
      return view
    }
    const out = Buffer.allocUnsafe(length)
    this.take(length, out)
    return out
  }

  /**
   * Exactly `length` bytes in a new buffer that owns its whole ArrayBuffer (never pooled), so
   * it can be handed on or transferred to a worker. The caller bounds `length` first.
   */
  async readOwnedBytes (length: number, options?: AbortOptions): Promise<Uint8Array> {
    await this.fill(length, false, options)
    const out = Buffer.allocUnsafeSlow(length)
    this.take(length, out)
    return out
  }

  /** Skips `length` bytes without keeping them (memory stays bounded by highWater). */
  async skip (length: number, options?: AbortOptions): Promise<void> {
    let left = length
    while (left > 0) {
      const step = Math.min(left, this.highWater)
      await this.fill(step, false, options)
      this.advance(step)
      left -= step
    }
  }

  private readonly onMessage = (event: StreamMessageEvent): void => {
    const data = event.data
    if (data instanceof Uint8Array) {
      this.push(data)
    } else {
      for (const buf of data) this.push(buf)
    }
    if (!this.paused && this.queued >= Math.max(this.highWater, this.wanted)) {
      this.paused = true
      try { this.stream.pause() } catch { /* already closing: nothing more will come */ }
    }
    this.notify()
  }

  private readonly onEnd = (): void => {
    this.ended = true
    this.notify()
  }

  private readonly onClose = (event: StreamCloseEvent): void => {
    if (event.error != null) this.failure = event.error
    // A clean close can leave bytes in the stream's own buffer while we are paused: those
    // arrive after resume() and end with 'end'. Otherwise nothing more is coming.
    if (event.error != null || !this.paused || this.stream.readBufferLength === 0) this.ended = true
    this.notify()
  }

  private push (buf: Uint8Array): void {
    if (buf.length === 0) return
    this.segments.push(buf)
    this.queued += buf.length
  }

  private notify (): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  /** Waits until `length` bytes are queued; false only when `atBoundary` and the stream ended with none. */
  private async fill (length: number, atBoundary: boolean, options?: AbortOptions): Promise<boolean> {
    while (this.queued < length) {
      if (this.failure != null && this.queued === 0 && atBoundary) throw this.failure
      if (this.ended || this.failure != null) {
        if (atBoundary && this.queued === 0 && this.failure == null) return false
        throw new StreamTruncatedError(`${this.where}: stream ended with ${this.queued} of ${length} bytes of a frame${this.failure != null ? ` (${this.failure.message})` : ''}`)
      }
      this.wanted = length
      if (this.paused) {
        this.paused = false
        try { this.stream.resume() } catch { /* closing: 'end' or 'close' follows */ }
      }
      await this.waitForData(options)
    }
    this.wanted = 0
    return true
  }

  private async waitForData (options?: AbortOptions): Promise<void> {
    const signal = options?.signal
    if (signal?.aborted === true) throw new AbortError()
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.wake = undefined
        reject(new AbortError())
      }
      this.wake = () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Copies the next `length` queued bytes into `into` and consumes them. */
  private take (length: number, into: Uint8Array): void {
    let written = 0
    while (written < length) {
      const head = this.segments[this.first]!
      const n = Math.min(length - written, head.length - this.firstOffset)
      into.set(head.subarray(this.firstOffset, this.firstOffset + n), written)
      written += n
      this.advance(n)
    }
  }

  private advance (length: number): void {
    this.queued -= length
    let left = length
    while (left > 0) {
      const head = this.segments[this.first]!
      const rest = head.length - this.firstOffset
      if (left < rest) {
        this.firstOffset += left
        return
      }
      left -= rest
      this.segments[this.first] = EMPTY
      this.first++
      this.firstOffset = 0
    }
    if (this.first > 64 && this.first * 2 > this.segments.length) {
      this.segments.splice(0, this.first)
      this.first = 0
    }
  }
}

const EMPTY = new Uint8Array(0)

/** Sends every part in order, waiting for the stream to drain whenever its buffer is full. */
export async function sendAll (stream: Stream, parts: readonly Uint8Array[], options?: AbortOptions): Promise<void> {
  for (const part of parts) {
    if (part.length === 0) continue
    if (!stream.send(part)) await stream.onDrain(options)
  }
}
