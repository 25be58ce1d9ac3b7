import type { Writable } from 'node:stream'

/**
 * One status line that updates in place on a terminal ("[3/12 25%] python3 · oci · run 1/3 …"), and
 * plain lines otherwise, so logs of CI runs read well too.
 */
export class Progress {
  private done = 0
  private total = 0
  private readonly started = Date.now()
  private lastLength = 0

  constructor (private readonly out: Writable = process.stderr, private readonly interactive = (out as any).isTTY === true) {}

  setTotal (total: number): void { this.total = total }

  /** Shows what is being measured now. */
  update (text: string): void {
    const line = `[${this.done}/${this.total} ${this.total > 0 ? Math.floor(100 * this.done / this.total) : 0}% ${this.elapsed()}] ${text}`
    if (this.interactive) {
      this.out.write(`\r${line.padEnd(this.lastLength)}`)
      this.lastLength = line.length
    } else {
      this.out.write(line + '\n')
    }
  }

  /** One unit finished; its result is printed as a line of its own. */
  advance (result?: string): void {
    this.done++
    if (result != null) this.log(result)
  }

  /** A line kept above the status line. */
  log (line: string): void {
    if (this.interactive && this.lastLength > 0) {
      this.out.write(`\r${' '.repeat(this.lastLength)}\r`)
      this.lastLength = 0
    }
    this.out.write(line + '\n')
  }

  finish (): void {
    if (this.interactive && this.lastLength > 0) this.out.write(`\r${' '.repeat(this.lastLength)}\r`)
    this.lastLength = 0
  }

  private elapsed (): string {
    const s = Math.floor((Date.now() - this.started) / 1000)
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
  }
}
