import { TarFormatError } from './errors.js'

/**
 * Pulls bytes from an async iterable of buffers without copying more than asked: `readSome`
 * hands out views of the source's own buffers, `readExact` copies only when a read spans two.
 */
export class ByteReader {
  private readonly source: AsyncIterator<Uint8Array>
  private current: Uint8Array = new Uint8Array(0)
  private position = 0
  private ended = false
  /** Bytes consumed so far: the offset of the next byte in the stream. */
  offset = 0

  constructor (source: AsyncIterable<Uint8Array>) {
    this.source = source[Symbol.asyncIterator]()
  }

  /** Makes sure some unread bytes are buffered; false at the end of the stream. */
  private async fill (): Promise<boolean> {
    while (this.position >= this.current.length) {
      if (this.ended) return false
      const next = await this.source.next()
      if (next.done === true) {
        this.ended = true
        return false
      }
      this.current = next.value
      this.position = 0
    }
    return true
  }

  /** Up to `max` bytes (at least one), or undefined at the end of the stream. The view is only valid until the next read. */
  async readSome (max: number): Promise<Uint8Array | undefined> {
    if (!await this.fill()) return undefined
    const length = Math.min(max, this.current.length - this.position)
    const view = this.current.subarray(this.position, this.position + length)
    this.position += length
    this.offset += length
    return view
  }

  /**
   * Exactly `length` bytes; undefined when the stream ends before the first byte, and
   * TarFormatError when it ends part way (`what` names the structure being read).
   */
  async readExact (length: number, what: string): Promise<Uint8Array | undefined> {
    const start = this.offset
    const first = await this.readSome(length)
    if (first === undefined) return undefined
    if (first.length === length) return first
    const out = new Uint8Array(length)
    out.set(first, 0)
    let filled = first.length
    while (filled < length) {
      const more = await this.readSome(length - filled)
      if (more === undefined) {
        throw new TarFormatError(`truncated ${what} at offset ${start}: expected ${length} bytes, stream ended after ${filled}`)
      }
      out.set(more, filled)
      filled += more.length
    }
    return out
  }

  /** Skips `length` bytes; TarFormatError if the stream ends first. */
  async skip (length: number, what: string): Promise<void> {
    let left = length
    while (left > 0) {
      const some = await this.readSome(left)
      if (some === undefined) {
        throw new TarFormatError(`truncated ${what} at offset ${this.offset}: ${left} of ${length} bytes missing`)
      }
      left -= some.length
    }
  }

  /** Reads and discards everything left, so a caller hashing the stream as it flows sees all of it. */
  async drain (): Promise<void> {
    while (await this.readSome(Number.MAX_SAFE_INTEGER) !== undefined) { /* discard */ }
  }
}
