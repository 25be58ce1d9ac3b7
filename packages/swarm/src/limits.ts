/**
 * Small bounded-resource helpers for the chunk server: a counting semaphore with a bounded
 * wait queue, and a token bucket for upload bandwidth.
 */
import { AbortError, type AbortOptions } from '@shoal/interface'

export class Semaphore {
  private active = 0
  private readonly waiting: Array<() => void> = []

  constructor (private readonly limit: number, private readonly maxWaiting: number) {}

  get running (): number { return this.active }
  get queued (): number { return this.waiting.length }

  /** Resolves when a slot is free; false at once when the wait queue is full. */
  async acquire (options?: AbortOptions): Promise<boolean> {
    if (options?.signal?.aborted === true) throw new AbortError()
    if (this.active < this.limit) {
      this.active++
      return true
    }
    if (this.waiting.length >= this.maxWaiting) return false
    await new Promise<void>((resolve, reject) => {
      const signal = options?.signal
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      const onAbort = (): void => {
        const at = this.waiting.indexOf(grant)
        if (at >= 0) this.waiting.splice(at, 1)
        reject(new AbortError())
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiting.push(grant)
    })
    return true
  }

  release (): void {
    const next = this.waiting.shift()
    if (next != null) {
      next()
    } else {
      this.active--
    }
  }
}

/** Bytes per second with a burst of one second; Infinity means no limit. */
export class TokenBucket {
  private tokens: number
  private last = performance.now()

  constructor (private readonly rate: number) {
    this.tokens = rate
  }

  /** Waits until `bytes` may be sent; a request larger than the burst waits for its share of time. */
  async take (bytes: number, options?: AbortOptions): Promise<void> {
    if (!Number.isFinite(this.rate)) return
    this.refill()
    this.tokens -= bytes
    if (this.tokens >= 0) return
    const waitMs = (-this.tokens / this.rate) * 1000
    await sleep(waitMs, options)
  }

  private refill (): void {
    const now = performance.now()
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) / 1000) * this.rate)
    this.last = now
  }
}

export async function sleep (ms: number, options?: AbortOptions): Promise<void> {
  const signal = options?.signal
  if (signal?.aborted === true) throw new AbortError()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(new AbortError())
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
