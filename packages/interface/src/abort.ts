import { AbortError } from './errors.js'
import type { AbortOptions } from './types.js'

/** Throws AbortError when the signal has already fired; call at the top of every async operation. */
export function throwIfAborted (options?: AbortOptions): void {
  if (options?.signal?.aborted === true) {
    throw new AbortError()
  }
}

/**
 * Waits for `promise`, or rejects with AbortError as soon as the caller's signal fires; the work
 * behind the promise goes on (it is shared with other callers).
 */
export async function raceAbort<T> (promise: Promise<T>, options?: AbortOptions): Promise<T> {
  const signal = options?.signal
  if (signal == null) return await promise
  throwIfAborted(options)
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => {
      onAbort = () => { reject(new AbortError()) }
      signal.addEventListener('abort', onAbort, { once: true })
    })])
  } finally {
    if (onAbort != null) signal.removeEventListener('abort', onAbort)
  }
}
