/**
 * Device numbers as RAFS stores them (Linux's new_encode_dev in 32 bits: minor's low byte, major's
 * 12 bits, minor's high bits), the same form st_rdev has for the common 12/20-bit ranges.
 */
export function deviceMajor (rdev: number): number {
  return (rdev >>> 8) & 0xfff
}

export function deviceMinor (rdev: number): number {
  return ((rdev & 0xff) | ((rdev >>> 12) & 0xfff00)) >>> 0
}

export function makeDevice (major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0
}
