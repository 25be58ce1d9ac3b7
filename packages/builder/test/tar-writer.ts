/**
 * A small tar writer for tests: ustar or GNU headers, PAX extended headers, GNU long names,
 * base-256 numbers, and headers with deliberately broken fields.
 */
export interface TestEntry {
  name: string
  /** Type flag; '0' by default. */
  type?: string
  data?: Uint8Array | string
  mode?: number
  uid?: number
  gid?: number
  mtime?: number
  linkname?: string
  devmajor?: number
  devminor?: number
  /** ustar prefix field (the name field then holds the rest). */
  prefix?: string
  /** Emitted as a PAX 'x' header before the entry. */
  pax?: Record<string, string | Uint8Array>
  /** Emitted as a PAX 'g' header before the entry. */
  globalPax?: Record<string, string | Uint8Array>
  /** Emitted as a GNU 'L' / 'K' header before the entry (the header name field is then truncated). */
  longName?: string
  longLink?: string
  /** Numeric fields written in base-256. */
  base256?: Array<'size' | 'uid' | 'gid' | 'mtime'>
  /** GNU magic ("ustar  \0") instead of POSIX ustar. */
  gnu?: boolean
  /** Size field to write when it should differ from the data (to test truncation). */
  sizeOverride?: number
  corruptChecksum?: boolean
}

const enc = new TextEncoder()

function bytes (data: Uint8Array | string | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0)
  return typeof data === 'string' ? enc.encode(data) : data
}

function writeString (block: Uint8Array, offset: number, length: number, value: string): void {
  const b = enc.encode(value)
  block.set(b.subarray(0, length), offset)
}

function writeOctal (block: Uint8Array, offset: number, length: number, value: number): void {
  writeString(block, offset, length, value.toString(8).padStart(length - 1, '0') + '\0')
}

function writeBase256 (block: Uint8Array, offset: number, length: number, value: number): void {
  let v = BigInt(value)
  for (let i = length - 1; i >= 1; i--) {
    block[offset + i] = Number(v & 0xffn)
    v >>= 8n
  }
  block[offset] = 0x80
}

function header (e: TestEntry, size: number): Uint8Array {
  const block = new Uint8Array(512)
  writeString(block, 0, 100, e.name)
  writeOctal(block, 100, 8, e.mode ?? 0o644)
  const numbers: Array<['size' | 'uid' | 'gid' | 'mtime', number, number, number]> = [
    ['uid', 108, 8, e.uid ?? 0], ['gid', 116, 8, e.gid ?? 0], ['size', 124, 12, size], ['mtime', 136, 12, e.mtime ?? 1700000000]
  ]
  for (const [name, offset, length, value] of numbers) {
    if (e.base256?.includes(name) === true) writeBase256(block, offset, length, value)
    else writeOctal(block, offset, length, value)
  }
  block[156] = (e.type ?? '0').charCodeAt(0)
  writeString(block, 157, 100, e.linkname ?? '')
  if (e.gnu === true) writeString(block, 257, 8, 'ustar  \0')
  else { writeString(block, 257, 6, 'ustar\0'); writeString(block, 263, 2, '00') }
  writeString(block, 265, 32, 'root')
  writeString(block, 297, 32, 'root')
  writeOctal(block, 329, 8, e.devmajor ?? 0)
  writeOctal(block, 337, 8, e.devminor ?? 0)
  if (e.prefix !== undefined) writeString(block, 345, 155, e.prefix)
  block.fill(0x20, 148, 156)
  let sum = 0
  for (const b of block) sum += b
  if (e.corruptChecksum === true) sum += 1
  writeString(block, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ')
  return block
}

function pad (data: Uint8Array): Uint8Array[] {
  const rem = data.length % 512
  return rem === 0 ? [data] : [data, new Uint8Array(512 - rem)]
}

export function paxRecords (records: Record<string, string | Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = []
  for (const [key, value] of Object.entries(records)) {
    const v = bytes(value)
    const body = Buffer.concat([enc.encode(` ${key}=`), v, enc.encode('\n')])
    let length = body.length + 1
    while (String(length).length + body.length > length) length++
    parts.push(Buffer.concat([enc.encode(String(length)), body]))
  }
  return Buffer.concat(parts)
}

/** The bytes of one entry, with its extension headers. */
export function tarEntry (e: TestEntry): Uint8Array {
  const out: Uint8Array[] = []
  if (e.globalPax !== undefined) {
    const body = paxRecords(e.globalPax)
    out.push(header({ name: 'pax_global_header', type: 'g' }, body.length), ...pad(body))
  }
  if (e.pax !== undefined) {
    const body = paxRecords(e.pax)
    out.push(header({ name: 'PaxHeader/x', type: 'x' }, body.length), ...pad(body))
  }
  if (e.longName !== undefined) {
    const body = enc.encode(e.longName + '\0')
    out.push(header({ name: '././@LongLink', type: 'L', gnu: true }, body.length), ...pad(body))
  }
  if (e.longLink !== undefined) {
    const body = enc.encode(e.longLink + '\0')
    out.push(header({ name: '././@LongLink', type: 'K', gnu: true }, body.length), ...pad(body))
  }
  const data = bytes(e.data)
  out.push(header(e, e.sizeOverride ?? data.length), ...pad(data))
  return Buffer.concat(out)
}

/** A whole archive, with the two zero blocks that end it unless `end` is false. */
export function tarArchive (entries: TestEntry[], end = true): Uint8Array {
  return Buffer.concat([...entries.map(tarEntry), ...(end ? [new Uint8Array(1024)] : [])])
}

/** Yields the bytes in pieces of `size`, to exercise reads that straddle buffers. */
export async function * inPieces (data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size)
}
