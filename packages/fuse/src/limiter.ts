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
