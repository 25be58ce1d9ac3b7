import { AbortError } from './errors.js'
import type { AbortOptions } from './types.js'

/** Throws AbortError when the signal has already fired; call at the top of every async operation. */
export function throwIfAborted (options?: AbortOptions): void {
  if (options?.signal?.aborted === true) {
    throw new AbortError()
  }
}
