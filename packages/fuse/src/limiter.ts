/** At most `limit` tasks run at once; the rest wait in arrival order. */
export class Limiter {
  private running = 0
  private readonly waiting: Array<() => void> = []

  constructor (private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`concurrency limit must be a positive integer, got ${limit}`)
  }

  get active (): number { return this.running }
  get queued (): number { return this.waiting.length }

  async run<T> (task: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>(resolve => { this.waiting.push(resolve) })
    else this.running++
    try {
      return await task()
    } finally {
      const next = this.waiting.shift()
      // The slot passes straight to the next waiter, so `running` never dips and rises again.
      if (next != null) next()
      else this.running--
    }
  }
}

/**
 * Deadlines of the reads in flight, on one timer: each read gets an AbortController that aborts
 * when its time is up or when the filesystem closes. (AbortSignal.timeout plus AbortSignal.any on
 * every 128 KiB read cost a timer and a composite signal each, and the garbage they leave.)
 */
export class ReadDeadlines {
  /** Controllers in flight and their deadlines; all share one timeout, so oldest first is earliest first. */
  private readonly active = new Map<AbortController, number>()
  private timer: ReturnType<typeof setTimeout> | undefined
  private closed = false
  private readonly tickMs: number

  constructor (private readonly timeoutMs: number) {
    if (!(timeoutMs > 0)) throw new RangeError(`read timeout must be a positive number of ms, got ${timeoutMs}`)
    // A read fails between timeoutMs and timeoutMs + tickMs after it started.
    this.tickMs = Math.min(1000, Math.max(5, timeoutMs / 4))
  }

  /** A controller for one read; pass it to finish() when the read settles. */
  start (): AbortController {
    const controller = new AbortController()
    if (this.closed) {
      controller.abort(new DOMException('the filesystem is closing', 'AbortError'))
      return controller
    }
    this.active.set(controller, performance.now() + this.timeoutMs)
    this.timer ??= setTimeout(() => { this.expire() }, this.tickMs)
    return controller
  }

  finish (controller: AbortController): void {
    this.active.delete(controller)
  }

  private expire (): void {
    this.timer = undefined
    const now = performance.now()
    // Bounded: each pass removes one entry, or stops at the first that is not due.
    for (const [controller, deadline] of this.active) {
      if (deadline > now) break
      this.active.delete(controller)
      controller.abort(new DOMException(`the read took longer than ${this.timeoutMs} ms`, 'TimeoutError'))
    }
    if (this.active.size > 0) this.timer = setTimeout(() => { this.expire() }, this.tickMs)
  }

  /** Aborts every read in flight and every later one. */
  close (): void {
    this.closed = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    const controllers = [...this.active.keys()]
    this.active.clear()
    for (const controller of controllers) controller.abort(new DOMException('the filesystem is closing', 'AbortError'))
  }
}
