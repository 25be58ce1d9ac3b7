/** Order statistics over a small list of samples (nearest rank; the median of an even count is the mean of the middle two). */
export function median (values: number[]): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** The p-th percentile (0–100) by nearest rank: p99 of 8 samples is the largest. */
export function percentile (values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p / 100 * sorted.length)))
  return sorted[rank - 1]
}

export function summarize (values: number[]): { median: number, min: number, max: number } {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) }
}
